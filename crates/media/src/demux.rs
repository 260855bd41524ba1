//! Elementary streams reassembled into access units.
//!
//! The segmenter never needs whole frames, but probing, fMP4 packaging and
//! MP4 export do. [`Demuxer`] shares the packet layer, PSI tracking and
//! timestamp unwrapping with the segmenter and adds PES reassembly: one
//! [`AccessUnit`] per PES packet (the unit of timestamps in TS), emitted as
//! soon as its declared length is complete or the next PES starts.
//!
//! An access unit borrows its bytes from the demuxer's reassembly buffer,
//! which is reused for the next PES of its stream: demuxing a segment
//! allocates per stream, not per frame, which the fMP4 writer's speed
//! depends on. A caller that keeps the bytes copies them.

use std::sync::Arc;

use dvr_common::Ticks;

use crate::codec::nal::{self, RandomAccess};
use crate::codec::{Codec, TrackKind};
use crate::psi::{PidRole, Program, ProgramTracker, PsiEvent};
use crate::stats::DemuxStats;
use crate::timestamp::{parse_pes_header, Unwrapper};
use crate::ts::{self, ContinuityTracker, PacketSync, PACKET_SIZE};

/// PES payload kept per stream at most; a PES that grows past it is dropped.
const MAX_PES_BYTES: usize = 16 << 20;

/// One PES packet's elementary-stream bytes with its timestamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessUnit<'a> {
    /// Index of the stream in [`Program::streams`].
    pub stream: usize,
    /// The PID it came on.
    pub pid: u16,
    /// Unwrapped presentation time.
    pub pts: Option<Ticks>,
    /// Unwrapped decoding time (equal to `pts` when the header has none).
    pub dts: Option<Ticks>,
    /// Whether decoding can start here (video keyframe; always for audio).
    pub random_access: bool,
    /// The elementary-stream bytes, valid until the callback returns.
    pub data: &'a [u8],
}

/// What the demuxer found.
#[derive(Clone, Debug)]
pub enum DemuxEvent<'a> {
    /// The program appeared or changed.
    Program(Arc<Program>),
    /// A complete access unit.
    AccessUnit(AccessUnit<'a>),
    /// A program clock reference (33-bit base, 90 kHz).
    Pcr(u64),
}

#[derive(Debug, Default)]
struct PesAssembly {
    data: Vec<u8>,
    pts: Option<Ticks>,
    dts: Option<Ticks>,
    /// Bytes still expected when the header declared a length.
    remaining: Option<usize>,
    active: bool,
}

/// Reassembles the chosen program's elementary streams.
#[derive(Debug)]
pub struct Demuxer {
    sync: PacketSync,
    continuity: ContinuityTracker,
    psi: ProgramTracker,
    stats: DemuxStats,
    unwrapper: Unwrapper,
    program: Option<Arc<Program>>,
    pes: Vec<PesAssembly>,
    /// Stream indices to reassemble; all when `None`.
    only: Option<Vec<usize>>,
}

impl Demuxer {
    /// Demuxes program `program`, or the first in the PAT.
    pub fn new(program: Option<u16>) -> Self {
        Self {
            sync: PacketSync::new(),
            continuity: ContinuityTracker::default(),
            psi: ProgramTracker::new(program),
            stats: DemuxStats::default(),
            unwrapper: Unwrapper::default(),
            program: None,
            pes: Vec::new(),
            only: None,
        }
    }

    /// Reassembles only the streams at these indices of
    /// [`Program::streams`]; packets of the others are skipped unread, which
    /// saves their copying when a caller wants one track of many.
    pub fn only_streams(mut self, indices: &[usize]) -> Self {
        self.only = Some(indices.to_vec());
        self
    }

    /// What went wrong with the input so far.
    pub fn stats(&self) -> DemuxStats {
        let mut stats = self.stats.clone();
        self.sync.report(&mut stats);
        stats
    }

    /// Feeds bytes; events arrive in stream order.
    pub fn push(&mut self, data: &[u8], mut on_event: impl FnMut(DemuxEvent<'_>)) {
        let mut sync = std::mem::take(&mut self.sync);
        sync.push(data, |run| {
            for packet in run.chunks_exact(PACKET_SIZE) {
                self.on_packet(packet, &mut on_event);
            }
        });
        self.sync = sync;
    }

    /// Emits the access units still being assembled.
    pub fn finish(&mut self, mut on_event: impl FnMut(DemuxEvent<'_>)) {
        for index in 0..self.pes.len() {
            self.emit(index, &mut on_event);
        }
    }

    fn on_packet(&mut self, packet: &[u8], on_event: &mut impl FnMut(DemuxEvent<'_>)) {
        self.stats.packets += 1;
        let pid = ts::pid(packet);
        if pid == self.program.as_ref().map_or(u16::MAX, |p| p.pcr_pid) {
            if let Some(pcr) = ts::pcr_base(packet) {
                on_event(DemuxEvent::Pcr(pcr));
            }
        }
        match self.psi.role(pid) {
            PidRole::Pat | PidRole::Pmt => {
                if self.psi.push(packet, &mut self.stats) == PsiEvent::ProgramChanged {
                    self.finish(&mut *on_event);
                    let program = self.psi.program().cloned();
                    if let Some(program) = program {
                        self.pes = program
                            .streams
                            .iter()
                            .map(|_| PesAssembly::default())
                            .collect();
                        self.program = Some(Arc::clone(&program));
                        on_event(DemuxEvent::Program(program));
                    }
                }
            }
            PidRole::Stream(index) => {
                if !self.continuity.check(packet) {
                    self.stats.cc_errors += 1;
                }
                self.on_stream_packet(usize::from(index), packet, on_event);
            }
            PidRole::Pcr => {}
            PidRole::Other => self.stats.filtered_packets += 1,
        }
    }

    fn on_stream_packet(
        &mut self,
        index: usize,
        packet: &[u8],
        on_event: &mut impl FnMut(DemuxEvent<'_>),
    ) {
        if index >= self.pes.len() || ts::is_scrambled(packet) {
            return;
        }
        if self
            .only
            .as_ref()
            .is_some_and(|only| !only.contains(&index))
        {
            return;
        }
        let Some(payload) = ts::payload(packet) else {
            return;
        };
        if ts::payload_unit_start(packet) {
            self.emit(index, on_event);
            let Some(header) = parse_pes_header(payload) else {
                self.stats.pes_errors += 1;
                return;
            };
            let dts = header.dts.map(|d| self.unwrapper.unwrap(d));
            let pts = header.pts.map(|p| self.unwrapper.unwrap(p));
            let declared = usize::from(u16::from_be_bytes([payload[4], payload[5]]));
            let body = &payload[header.payload_offset..];
            let pes = &mut self.pes[index];
            pes.active = true;
            pes.pts = pts;
            pes.dts = dts.or(pts);
            pes.data.clear();
            pes.data.extend_from_slice(body);
            // The declared length counts from after the 6-byte prefix.
            pes.remaining = (declared != 0)
                .then(|| (declared + 6).checked_sub(header.payload_offset + body.len()))
                .flatten();
        } else {
            let pes = &mut self.pes[index];
            if !pes.active {
                return;
            }
            pes.data.extend_from_slice(payload);
            if let Some(remaining) = &mut pes.remaining {
                *remaining = remaining.saturating_sub(payload.len());
            }
            if pes.data.len() > MAX_PES_BYTES {
                self.stats.pes_errors += 1;
                *pes = PesAssembly::default();
                return;
            }
        }
        if self.pes[index].remaining == Some(0) {
            self.emit(index, on_event);
        }
    }

    fn emit(&mut self, index: usize, on_event: &mut impl FnMut(DemuxEvent<'_>)) {
        let Some(program) = &self.program else { return };
        let pes = &mut self.pes[index];
        if !pes.active {
            return;
        }
        pes.active = false;
        let stream = &program.streams[index];
        let data = pes.data.as_slice();
        let random_access = match stream.codec {
            Codec::H264 => nal::h264_random_access(data) == RandomAccess::Yes,
            Codec::H265 => nal::h265_random_access(data) == RandomAccess::Yes,
            Codec::Mpeg2Video => nal::mpeg2_random_access(data) == RandomAccess::Yes,
            other => other.kind() == TrackKind::Audio,
        };
        on_event(DemuxEvent::AccessUnit(AccessUnit {
            stream: index,
            pid: stream.pid,
            pts: pes.pts,
            dts: pes.dts,
            random_access,
            data,
        }));
        pes.data.clear();
    }
}
