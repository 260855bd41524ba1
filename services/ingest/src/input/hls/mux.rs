//! Muxing an HLS audio rendition delivered in its own playlist beside the
//! variant's video, so the segmenter sees one program.
//!
//! Both arrive as transport streams with their own PAT, PMT and PIDs (often
//! the same PID). The video's packets pass through; its PMT is rewritten to
//! list the audio stream too, under a PID the video does not use; the audio's
//! PES packets get that PID and a continuity counter of their own, and are
//! written just before the first video PES whose decoding time is not
//! earlier than theirs. The two renditions come from one encoder clock, so
//! their timestamps compare directly (modulo the 33-bit wrap). Pure: no I/O.

use std::collections::VecDeque;
use std::sync::Arc;

use dvr_media::codec::TrackKind;
use dvr_media::psi::{write_section, PidRole, Program, ProgramTracker};
use dvr_media::stats::DemuxStats;
use dvr_media::timestamp::parse_pes_header;
use dvr_media::ts::{self, PACKET_SIZE, SYNC_BYTE};

/// Audio waiting for its video, at most (about 15 minutes of 128 kb/s).
const MAX_PENDING_BYTES: usize = 16 << 20;
/// 2^33: PTS and DTS wrap there.
const WRAP: u64 = 1 << 33;

/// Whether 33-bit timestamp `a` is not later than `b`.
fn not_later(a: u64, b: u64) -> bool {
    let diff = a.wrapping_sub(b) & (WRAP - 1);
    diff == 0 || diff >= WRAP / 2
}

/// One audio PES: its PTS and its packets as received.
#[derive(Debug)]
struct AudioPes {
    pts: u64,
    packets: Vec<u8>,
}

/// The state of one video + audio pair.
#[derive(Debug)]
pub struct RenditionMux {
    video: ProgramTracker,
    audio: ProgramTracker,
    stats: DemuxStats,
    /// The PID the audio stream gets in the output, once both programs are known.
    audio_pid: Option<u16>,
    audio_cc: u8,
    pmt_cc: u8,
    pending: VecDeque<AudioPes>,
    pending_bytes: usize,
    /// Audio PES dropped because the video did not come for them.
    pub dropped_audio: u64,
}

impl Default for RenditionMux {
    fn default() -> Self {
        RenditionMux {
            video: ProgramTracker::new(None),
            audio: ProgramTracker::new(None),
            stats: DemuxStats::default(),
            audio_pid: None,
            audio_cc: 0,
            pmt_cc: 0,
            pending: VecDeque::new(),
            pending_bytes: 0,
            dropped_audio: 0,
        }
    }
}

/// The index and PID of the first audio stream of a program.
fn audio_stream(program: &Program) -> Option<(usize, u16)> {
    program
        .streams
        .iter()
        .enumerate()
        .find(|(_, s)| s.codec.kind() == TrackKind::Audio)
        .map(|(i, s)| (i, s.pid))
}

impl RenditionMux {
    /// Takes one audio segment: its PES are kept until the video reaches them.
    pub fn push_audio(&mut self, data: &[u8]) {
        let mut current: Option<AudioPes> = None;
        for packet in data.chunks_exact(PACKET_SIZE) {
            if packet[0] != SYNC_BYTE {
                continue;
            }
            let pid = ts::pid(packet);
            match self.audio.role(pid) {
                PidRole::Pat | PidRole::Pmt => {
                    self.audio.push(packet, &mut self.stats);
                }
                PidRole::Stream(index) => {
                    let wanted = self
                        .audio
                        .program()
                        .and_then(|p| audio_stream(p))
                        .is_some_and(|(i, _)| i == usize::from(index));
                    if !wanted {
                        continue;
                    }
                    if ts::payload_unit_start(packet) {
                        self.keep(current.take());
                        let pts = ts::payload(packet)
                            .and_then(parse_pes_header)
                            .and_then(|h| h.pts);
                        current = pts.map(|pts| AudioPes {
                            pts,
                            packets: Vec::new(),
                        });
                    }
                    if let Some(pes) = &mut current {
                        pes.packets.extend_from_slice(packet);
                    }
                }
                PidRole::Pcr | PidRole::Other => {}
            }
        }
        // HLS segments end on PES boundaries.
        self.keep(current);
    }

    fn keep(&mut self, pes: Option<AudioPes>) {
        let Some(pes) = pes else { return };
        self.pending_bytes += pes.packets.len();
        self.pending.push_back(pes);
        while self.pending_bytes > MAX_PENDING_BYTES {
            let Some(old) = self.pending.pop_front() else {
                break;
            };
            self.pending_bytes -= old.packets.len();
            self.dropped_audio += 1;
        }
    }

    /// The output PID of the audio, chosen once both programs are known: the
    /// first PID from 0x100 on that the video program does not use.
    fn audio_pid(&mut self) -> Option<u16> {
        if self.audio_pid.is_none() {
            let video = self.video.program()?;
            self.audio.program().and_then(|p| audio_stream(p))?;
            let used = |pid: u16| {
                pid == video.pmt_pid
                    || pid == video.pcr_pid
                    || video.streams.iter().any(|s| s.pid == pid)
            };
            self.audio_pid = (0x100..0x1fff).find(|&pid| !used(pid));
        }
        self.audio_pid
    }

    /// The PMT to write: the video's, with the audio stream added once known.
    fn pmt_section(&mut self) -> Option<(u16, Vec<u8>)> {
        let audio_pid = self.audio_pid();
        let video: &Arc<Program> = self.video.program()?;
        let merged = audio_pid.and_then(|new_pid| {
            let audio = self.audio.program()?;
            let (_, pid) = audio_stream(audio)?;
            video.pmt_section_adding(audio, pid, new_pid)
        });
        Some((
            video.pmt_pid,
            merged.unwrap_or_else(|| video.pmt_section.clone()),
        ))
    }

    /// Writes the audio PES not later than `until` (all of them with `None`).
    fn flush_audio(&mut self, until: Option<u64>, out: &mut Vec<u8>) {
        let Some(pid) = self.audio_pid() else { return };
        while let Some(pes) = self.pending.front() {
            if until.is_some_and(|t| !not_later(pes.pts, t)) {
                break;
            }
            let Some(pes) = self.pending.pop_front() else {
                break;
            };
            self.pending_bytes -= pes.packets.len();
            for packet in pes.packets.chunks_exact(PACKET_SIZE) {
                let at = out.len();
                out.extend_from_slice(packet);
                out[at + 1] = (out[at + 1] & 0xe0) | (pid >> 8) as u8 & 0x1f;
                out[at + 2] = pid as u8;
                out[at + 3] = (out[at + 3] & 0xf0) | self.audio_cc;
                self.audio_cc = (self.audio_cc + 1) & 0x0f;
            }
        }
    }

    /// Muxes one video segment with the audio that belongs before each of
    /// its PES, appending to `out`.
    pub fn push_video(&mut self, data: &[u8], out: &mut Vec<u8>) {
        out.reserve(data.len() + self.pending_bytes);
        for packet in data.chunks_exact(PACKET_SIZE) {
            if packet[0] != SYNC_BYTE {
                continue;
            }
            let pid = ts::pid(packet);
            match self.video.role(pid) {
                PidRole::Pmt => {
                    self.video.push(packet, &mut self.stats);
                    if ts::payload_unit_start(packet) {
                        if let Some((pmt_pid, section)) = self.pmt_section() {
                            let mut packets = bytes::BytesMut::new();
                            write_section(&mut packets, pmt_pid, &section, &mut self.pmt_cc);
                            out.extend_from_slice(&packets);
                        }
                    }
                }
                PidRole::Pat => {
                    self.video.push(packet, &mut self.stats);
                    out.extend_from_slice(packet);
                }
                PidRole::Stream(index) if ts::payload_unit_start(packet) => {
                    let primary = self
                        .video
                        .program()
                        .and_then(|p| p.primary_stream())
                        .is_some_and(|i| i == usize::from(index));
                    if primary {
                        let header = ts::payload(packet).and_then(parse_pes_header);
                        if let Some(time) = header.and_then(|h| h.dts.or(h.pts)) {
                            self.flush_audio(Some(time), out);
                        }
                    }
                    out.extend_from_slice(packet);
                }
                _ => out.extend_from_slice(packet),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_compare_across_the_wrap() {
        assert!(not_later(5, 5) && not_later(4, 5) && !not_later(6, 5));
        assert!(not_later(WRAP - 10, 5) && !not_later(5, WRAP - 10));
    }
}
