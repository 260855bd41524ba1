//! Tracks of a stored segment, and the segment cut down to some of them.
//!
//! A multi-language or multi-bitrate channel is recorded as one transport
//! stream; HLS wants a playlist per track. [`select`] gives any subset of a
//! segment's tracks by keeping their packets and rewriting the PMT to list
//! only them, never touching a payload: no decoder, no encoder, the bytes
//! of every kept packet are the stored ones. So a track's segment is as
//! immutable as the stored segment it comes from, and any replica cuts it
//! the same way.
//!
//! The one subtlety is the clock: the PCR usually rides on the video PID,
//! and an audio-only cut would lose it. Packets of a dropped PCR PID that
//! carry a PCR are kept as adaptation-only packets (PCR, no payload), as
//! ISO/IEC 13818-1 allows; having no payload, they keep one continuity
//! counter value.
//!
//! [`probe`] reads what a segment holds (it starts with PAT, PMT and a
//! random-access point, so its first access units name every codec) and how
//! many bytes each track takes, for a master playlist's `CODECS` and
//! `BANDWIDTH`.

use std::sync::Arc;

use bytes::BytesMut;

use crate::codec::{self, TrackInfo, TrackKind};
use crate::demux::{DemuxEvent, Demuxer};
use crate::psi::{write_section, PidRole, Program, ProgramTracker};
use crate::stats::DemuxStats;
use crate::ts::{self, PACKET_SIZE, PAT_PID, SYNC_BYTE};
use dvr_common::Ticks;

/// What one segment holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentTracks {
    /// The program (PMT order is track order: track `n` is `streams[n - 1]`).
    pub program: Arc<Program>,
    /// Every track with the parameters its first access unit gave.
    pub tracks: Vec<TrackInfo>,
    /// Bits per second each track took in this segment (payload and
    /// headers of its packets), in track order.
    pub bitrates: Vec<u64>,
}

impl SegmentTracks {
    /// Track numbers (1-based) of the given kind, in PMT order.
    pub fn numbers_of(&self, kind: TrackKind) -> Vec<usize> {
        self.tracks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.kind == kind)
            .map(|(i, _)| i + 1)
            .collect()
    }

    /// Whether HLS needs a master playlist for this stream: more than one
    /// video or more than one audio track.
    pub fn needs_master(&self) -> bool {
        self.numbers_of(TrackKind::Video).len() > 1 || self.numbers_of(TrackKind::Audio).len() > 1
    }
}

/// The program at the head of a segment (its PAT and PMT), reading only as
/// many packets as it takes. `None` if the bytes hold no PAT and PMT.
pub fn program_of(segment: &[u8]) -> Option<Arc<Program>> {
    let mut tracker = ProgramTracker::new(None);
    let mut stats = DemuxStats::default();
    for packet in packets(segment) {
        if matches!(tracker.role(ts::pid(packet)), PidRole::Pat | PidRole::Pmt) {
            tracker.push(packet, &mut stats);
            if let Some(program) = tracker.program() {
                return Some(Arc::clone(program));
            }
        }
    }
    None
}

/// Every track of a segment with its codec parameters and bitrate over
/// `duration`. `None` if the bytes hold no program.
pub fn probe(segment: &[u8], duration: Ticks) -> Option<SegmentTracks> {
    let mut demuxer = Demuxer::new(None);
    let mut program: Option<Arc<Program>> = None;
    let mut tracks: Vec<TrackInfo> = Vec::new();
    let mut on_event = |event: DemuxEvent<'_>| match event {
        DemuxEvent::Program(p) if program.is_none() => {
            tracks = p
                .streams
                .iter()
                .map(crate::psi::Stream::track_info)
                .collect();
            program = Some(p);
        }
        DemuxEvent::AccessUnit(au) => {
            let Some(track) = tracks.get_mut(au.stream) else {
                return;
            };
            match track.kind {
                TrackKind::Video if track.video.is_none() => {
                    track.video = codec::probe_video(track.codec, au.data);
                }
                TrackKind::Audio if track.audio.is_none() => {
                    track.audio = codec::probe_audio(track.codec, au.data);
                }
                _ => {}
            }
        }
        _ => {}
    };
    demuxer.push(segment, &mut on_event);
    demuxer.finish(&mut on_event);
    let program = program?;
    let mut packets_of = vec![0u64; program.streams.len()];
    for packet in packets(segment) {
        let pid = ts::pid(packet);
        if let Some(i) = program.streams.iter().position(|s| s.pid == pid) {
            packets_of[i] += 1;
        }
    }
    let ms = duration.as_ms().max(1);
    let bitrates = packets_of
        .iter()
        .map(|&n| {
            let bits = n * PACKET_SIZE as u64 * 8;
            bits * 1000 / u64::try_from(ms).unwrap_or(1)
        })
        .collect();
    Some(SegmentTracks {
        program,
        tracks,
        bitrates,
    })
}

/// Why a segment cannot be cut to the asked tracks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// The bytes hold no PAT and PMT.
    #[error("the segment has no program tables")]
    NoProgram,
    /// A track number beyond the program's tracks.
    #[error("there is no track {asked}: the stream has {count} tracks here")]
    NoSuchTrack {
        /// The number asked for (1-based).
        asked: usize,
        /// How many tracks the segment's program has.
        count: usize,
    },
}

/// The segment with only tracks `numbers` (1-based, PMT order): PAT as
/// stored, each PMT rewritten to list only those tracks (same continuity
/// counter, new CRC), the tracks' packets untouched, and the clock kept.
pub fn select(segment: &[u8], numbers: &[usize]) -> Result<Vec<u8>, SelectError> {
    let mut program = program_of(segment).ok_or(SelectError::NoProgram)?;
    let mut keep = pids_of(&program, numbers)?;
    let mut pmt = program.pmt_section_with(&keep);
    let mut tracker = ProgramTracker::new(None);
    let mut stats = DemuxStats::default();
    let mut out = BytesMut::with_capacity(segment.len());
    for packet in packets(segment) {
        let pid = ts::pid(packet);
        let role = tracker.role(pid);
        if matches!(role, PidRole::Pat | PidRole::Pmt) {
            tracker.push(packet, &mut stats);
            if let Some(now) = tracker.program().filter(|p| !Arc::ptr_eq(p, &program)) {
                // A new PMT version mid-segment: follow it.
                program = Arc::clone(now);
                keep = pids_of(&program, numbers)?;
                pmt = program.pmt_section_with(&keep);
            }
        }
        if pid == PAT_PID || (pid != program.pmt_pid && keep.contains(&pid)) {
            out.extend_from_slice(packet);
        } else if pid == program.pmt_pid {
            if ts::payload_unit_start(packet) {
                let mut cc = ts::continuity_counter(packet);
                write_section(&mut out, pid, &pmt, &mut cc);
            }
        } else if pid == program.pcr_pid {
            if let Some(field) = pcr_field(packet) {
                write_pcr_only(&mut out, pid, field);
            }
        }
    }
    Ok(out.to_vec())
}

fn pids_of(program: &Program, numbers: &[usize]) -> Result<Vec<u16>, SelectError> {
    numbers
        .iter()
        .map(|&n| {
            n.checked_sub(1)
                .and_then(|i| program.streams.get(i))
                .map(|s| s.pid)
                .ok_or(SelectError::NoSuchTrack {
                    asked: n,
                    count: program.streams.len(),
                })
        })
        .collect()
}

/// Whole packets of a segment (stored segments are packet-aligned).
fn packets(segment: &[u8]) -> impl Iterator<Item = &[u8]> {
    segment
        .chunks_exact(PACKET_SIZE)
        .filter(|p| p[0] == SYNC_BYTE)
}

/// The first seven bytes of the adaptation field (flags and PCR) of a
/// packet carrying a PCR.
fn pcr_field(packet: &[u8]) -> Option<[u8; 7]> {
    ts::pcr_base(packet)?;
    let field = ts::adaptation_field(packet)?;
    field.get(..7)?.try_into().ok()
}

/// An adaptation-only packet on `pid` carrying the PCR of `field`.
fn write_pcr_only(out: &mut BytesMut, pid: u16, field: [u8; 7]) {
    out.extend_from_slice(&[SYNC_BYTE, (pid >> 8) as u8 & 0x1f, pid as u8, 0x20]);
    out.extend_from_slice(&[183]);
    // Keep the discontinuity and PCR flags only.
    out.extend_from_slice(&[field[0] & 0x90]);
    out.extend_from_slice(&field[1..7]);
    out.extend_from_slice(&[0xff; PACKET_SIZE - 4 - 1 - 7]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_without_tables_have_no_program() {
        assert!(program_of(&[0x47; 188 * 3]).is_none());
        assert!(probe(&[], Ticks::from_secs(2)).is_none());
        assert_eq!(select(&[0x47; 188], &[1]), Err(SelectError::NoProgram));
    }
}
