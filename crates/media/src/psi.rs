//! Program-specific information: which PIDs make up the program we record.
//!
//! [`ProgramTracker`] reassembles PAT and PMT sections (they may span packets
//! and arrive mid-section after a join), checks their CRC, picks the program
//! (by number, or the first), and answers "what is this PID?" in one array
//! lookup. It also keeps the sections so the segmenter can write a fresh PAT
//! and PMT at the head of every segment: the PAT it writes lists only the
//! chosen program, so a segment of a multi-program input is a clean
//! single-program stream.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use mpeg2ts_reader::descriptor::{Descriptor as DescriptorTrait, DescriptorError};
use mpeg2ts_reader::mpegts_crc;
use mpeg2ts_reader::psi::pat::{PatSection, ProgramDescriptor};
use mpeg2ts_reader::psi::pmt::PmtSection;

use crate::codec::{Codec, Descriptor, TrackInfo};
use crate::stats::DemuxStats;
use crate::ts::{self, PACKET_SIZE, PAT_PID, SYNC_BYTE};

/// Longest PSI section allowed (ISO/IEC 13818-1 limits PAT/PMT to 1024 bytes).
const MAX_SECTION: usize = 1024;

/// An elementary stream of the chosen program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream {
    /// The PID carrying it.
    pub pid: u16,
    /// PMT stream type.
    pub stream_type: u8,
    /// Codec identified from stream type and descriptors.
    pub codec: Codec,
    /// ISO 639 language code, if the PMT gives one.
    pub language: Option<String>,
}

impl Stream {
    /// The track description, before any parameters are probed.
    pub fn track_info(&self) -> TrackInfo {
        TrackInfo {
            pid: self.pid,
            stream_type: self.stream_type,
            codec: self.codec,
            kind: self.codec.kind(),
            language: self.language.clone(),
            video: None,
            audio: None,
        }
    }
}

/// The program being recorded, as its PMT describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// Program number from the PAT.
    pub number: u16,
    /// PID of its PMT.
    pub pmt_pid: u16,
    /// PID carrying its PCR.
    pub pcr_pid: u16,
    /// PMT version number.
    pub version: u8,
    /// Elementary streams in PMT order.
    pub streams: Vec<Stream>,
    /// A PAT section listing only this program (CRC included).
    pub pat_section: Vec<u8>,
    /// The PMT section as received (CRC included).
    pub pmt_section: Vec<u8>,
}

impl Program {
    /// Index of the stream that drives segmentation: the first video stream
    /// with known random-access detection, else the first audio stream.
    pub fn primary_stream(&self) -> Option<usize> {
        let video = self
            .streams
            .iter()
            .position(|s| matches!(s.codec, Codec::H264 | Codec::H265));
        video.or_else(|| {
            self.streams
                .iter()
                .position(|s| s.codec.kind() == crate::codec::TrackKind::Audio)
        })
    }

    /// Writes this program's PAT and PMT as packets, advancing the given
    /// continuity counters.
    pub fn write_psi(&self, out: &mut BytesMut, pat_cc: &mut u8, pmt_cc: &mut u8) {
        write_section(out, PAT_PID, &self.pat_section, pat_cc);
        write_section(out, self.pmt_pid, &self.pmt_section, pmt_cc);
    }

    /// This program's PMT section listing only the elementary streams on
    /// `keep` (in PMT order), with its length and CRC recomputed. The PCR
    /// PID and the program descriptors stay: a dropped PCR PID keeps its
    /// clock in adaptation-only packets (see [`crate::tracks`]).
    pub fn pmt_section_with(&self, keep: &[u16]) -> Vec<u8> {
        let mut out = self.pmt_section[..self.es_loop_start()].to_vec();
        for (pid, entry) in self.es_entries() {
            if keep.contains(&pid) {
                out.extend_from_slice(entry);
            }
        }
        finish_section(out)
    }

    /// This program's PMT section with stream `pid` of `other` appended as
    /// `new_pid` (its stream type and descriptors kept), length and CRC
    /// recomputed: how a separately delivered rendition (HLS audio) joins
    /// the program. `None` if `other` has no stream `pid`.
    pub fn pmt_section_adding(&self, other: &Program, pid: u16, new_pid: u16) -> Option<Vec<u8>> {
        let (_, entry) = other.es_entries().find(|(p, _)| *p == pid)?;
        let mut out = self.pmt_section[..self.pmt_section.len().saturating_sub(4)].to_vec();
        let at = out.len();
        out.extend_from_slice(entry);
        out[at + 1] = (out[at + 1] & 0xe0) | (new_pid >> 8) as u8 & 0x1f;
        out[at + 2] = new_pid as u8;
        Some(finish_section(out))
    }

    /// Where the elementary-stream loop of the PMT section begins.
    fn es_loop_start(&self) -> usize {
        let s = &self.pmt_section;
        let info_len = usize::from(u16::from_be_bytes([s[10], s[11]]) & 0x0fff);
        (12 + info_len).min(s.len().saturating_sub(4))
    }

    /// The PMT's elementary-stream entries: (PID, the entry's bytes).
    fn es_entries(&self) -> impl Iterator<Item = (u16, &[u8])> {
        let s = &self.pmt_section;
        let end = s.len().saturating_sub(4);
        let mut at = self.es_loop_start();
        std::iter::from_fn(move || {
            if at + 5 > end {
                return None;
            }
            let pid = u16::from_be_bytes([s[at + 1], s[at + 2]]) & 0x1fff;
            let es_len = usize::from(u16::from_be_bytes([s[at + 3], s[at + 4]]) & 0x0fff);
            let stop = (at + 5 + es_len).min(end);
            let entry = (pid, &s[at..stop]);
            at = stop;
            Some(entry)
        })
    }

    /// Whether two programs carry the same streams with the same codecs (a new
    /// PMT version that only changes descriptors is not a discontinuity).
    pub fn same_streams(&self, other: &Program) -> bool {
        self.streams.len() == other.streams.len()
            && self
                .streams
                .iter()
                .zip(&other.streams)
                .all(|(a, b)| a.pid == b.pid && a.codec == b.codec)
    }
}

/// A section whose CRC is still to come: sets its length (which counts the
/// bytes after it, CRC included) and appends the CRC.
pub(crate) fn finish_section(mut out: Vec<u8>) -> Vec<u8> {
    let length = u16::try_from(out.len() + 4 - 3).unwrap_or(0x3fd) & 0x0fff;
    out[1] = (out[1] & 0xf0) | (length >> 8) as u8;
    out[2] = length as u8;
    let crc = mpegts_crc::sum32(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Packetizes one PSI section on `pid`, starting at continuity counter
/// `cc` and advancing it.
pub fn write_section(out: &mut BytesMut, pid: u16, section: &[u8], cc: &mut u8) {
    let mut rest = section;
    let mut first = true;
    while first || !rest.is_empty() {
        let pusi = if first { 0x40 } else { 0 };
        out.put_u8(SYNC_BYTE);
        out.put_u8(pusi | (pid >> 8) as u8 & 0x1f);
        out.put_u8(pid as u8);
        out.put_u8(0x10 | *cc);
        *cc = (*cc + 1) & 0x0f;
        let mut room = PACKET_SIZE - 4;
        if first {
            out.put_u8(0); // pointer_field
            room -= 1;
        }
        let take = room.min(rest.len());
        out.put_slice(&rest[..take]);
        out.put_bytes(0xff, room - take);
        rest = &rest[take..];
        first = false;
    }
}

/// Collects one PID's section bytes across packets.
#[derive(Debug, Default)]
struct SectionAssembler {
    buf: Vec<u8>,
    collecting: bool,
}

impl SectionAssembler {
    /// Feeds a packet's payload; calls `on_section` for each complete section.
    fn push(&mut self, pusi: bool, payload: &[u8], mut on_section: impl FnMut(&[u8])) {
        let mut data = payload;
        if pusi {
            let Some((&pointer, rest)) = data.split_first() else {
                return;
            };
            let pointer = usize::from(pointer);
            if self.collecting {
                if let Some(tail) = rest.get(..pointer) {
                    self.buf.extend_from_slice(tail);
                    self.emit_if_complete(&mut on_section);
                }
            }
            self.buf.clear();
            self.collecting = true;
            data = rest.get(pointer..).unwrap_or_default();
        } else if !self.collecting {
            return;
        }
        loop {
            if self.buf.is_empty() && data.first().is_none_or(|&b| b == 0xff) {
                // Stuffing (or the end) after the last section: the next
                // section can only start in a packet with a pointer field.
                self.collecting = false;
                return;
            }
            let needed = section_length(&self.buf, data).map(|len| len - self.buf.len());
            match needed {
                Some(n) if n <= data.len() => {
                    self.buf.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    self.emit_if_complete(&mut on_section);
                    self.buf.clear();
                }
                Some(_) | None => {
                    self.buf.extend_from_slice(data);
                    if self.buf.len() > MAX_SECTION + 3 {
                        self.buf.clear();
                        self.collecting = false;
                    }
                    return;
                }
            }
        }
    }

    fn emit_if_complete(&self, on_section: &mut impl FnMut(&[u8])) {
        if section_length(&self.buf, &[]) == Some(self.buf.len()) {
            on_section(&self.buf);
        }
    }
}

/// The total length of the section starting at `head ++ tail`, once its
/// 3-byte header is available.
fn section_length(head: &[u8], tail: &[u8]) -> Option<usize> {
    let byte = |i: usize| head.get(i).or_else(|| tail.get(i - head.len())).copied();
    let hi = byte(1)?;
    let lo = byte(2)?;
    let len = (usize::from(hi & 0x0f) << 8 | usize::from(lo)) + 3;
    Some(len.min(MAX_SECTION + 3))
}

/// What a PSI packet changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsiEvent {
    /// Nothing complete yet, or a repeat of what we know.
    None,
    /// A complete PMT section repeated the current program unchanged.
    Refreshed,
    /// The program appeared or its PMT changed.
    ProgramChanged,
}

/// What a PID is to the chosen program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PidRole {
    /// Not part of the program: dropped.
    Other,
    /// The PAT.
    Pat,
    /// The chosen program's PMT.
    Pmt,
    /// An elementary stream of the program, by index into `Program::streams`.
    Stream(u8),
    /// Carries only the PCR.
    Pcr,
}

/// Follows PAT and PMT to know the chosen program at every packet.
#[derive(Debug)]
pub struct ProgramTracker {
    wanted: Option<u16>,
    roles: Box<[PidRole; 8192]>,
    /// The PIDs whose role was set from a PAT or PMT, so a new program
    /// resets those rather than all 8192 (a tracker is made per stored
    /// segment when packaging, where that reset was most of the PSI cost).
    assigned: Vec<u16>,
    pat: SectionAssembler,
    pmt: SectionAssembler,
    /// (program number, PMT PID) from the last PAT, and its transport stream id.
    selected: Option<(u16, u16, u16, u8)>,
    program: Option<Arc<Program>>,
}

impl ProgramTracker {
    /// Tracks program `wanted`, or the first program of the PAT when `None`.
    pub fn new(wanted: Option<u16>) -> Self {
        let mut roles = Box::new([PidRole::Other; 8192]);
        roles[usize::from(PAT_PID)] = PidRole::Pat;
        Self {
            wanted,
            roles,
            assigned: Vec::new(),
            pat: SectionAssembler::default(),
            pmt: SectionAssembler::default(),
            selected: None,
            program: None,
        }
    }

    /// The role of a PID, in one lookup.
    #[inline]
    pub fn role(&self, pid: u16) -> PidRole {
        self.roles[usize::from(pid & 0x1fff)]
    }

    /// The current program, once a PMT has been seen.
    pub fn program(&self) -> Option<&Arc<Program>> {
        self.program.as_ref()
    }

    /// Feeds a packet whose role is `Pat` or `Pmt`.
    pub fn push(&mut self, packet: &[u8], stats: &mut DemuxStats) -> PsiEvent {
        let Some(payload) = ts::payload(packet) else {
            return PsiEvent::None;
        };
        if ts::is_scrambled(packet) {
            return PsiEvent::None;
        }
        let pusi = ts::payload_unit_start(packet);
        let mut event = PsiEvent::None;
        if ts::pid(packet) == PAT_PID {
            let mut pat = std::mem::take(&mut self.pat);
            pat.push(pusi, payload, |s| self.on_pat(s, stats));
            self.pat = pat;
        } else {
            let mut pmt = std::mem::take(&mut self.pmt);
            pmt.push(pusi, payload, |s| {
                let e = self.on_pmt(s, stats);
                if e != PsiEvent::None {
                    event = e;
                }
            });
            self.pmt = pmt;
        }
        event
    }

    fn on_pat(&mut self, section: &[u8], stats: &mut DemuxStats) {
        let Some(body) = checked_body(section, 0x00, stats) else {
            return;
        };
        let ts_id = u16::from_be_bytes([section[3], section[4]]);
        let version = (section[5] >> 1) & 0x1f;
        let choice = PatSection::new(body).programs().find_map(|p| match p {
            ProgramDescriptor::Program {
                program_number,
                pid,
            } if self.wanted.is_none_or(|w| w == program_number) => {
                Some((program_number, u16::from(pid)))
            }
            _ => None,
        });
        let Some((number, pmt_pid)) = choice else {
            return;
        };
        let new = (number, pmt_pid, ts_id, version);
        if self.selected == Some(new) {
            return;
        }
        if let Some((_, old_pid, _, _)) = self.selected {
            if old_pid != pmt_pid {
                self.clear_program_roles();
                self.program = None;
                self.pmt = SectionAssembler::default();
            }
        }
        self.selected = Some(new);
        self.assign(pmt_pid, PidRole::Pmt);
    }

    fn on_pmt(&mut self, section: &[u8], stats: &mut DemuxStats) -> PsiEvent {
        let Some((number, pmt_pid, ts_id, pat_version)) = self.selected else {
            return PsiEvent::None;
        };
        let Some(body) = checked_body(section, 0x02, stats) else {
            return PsiEvent::None;
        };
        if u16::from_be_bytes([section[3], section[4]]) != number {
            return PsiEvent::None; // another program sharing the PID
        }
        if let Some(current) = &self.program {
            if current.pmt_section == section {
                return PsiEvent::Refreshed;
            }
        }
        let Ok(pmt) = PmtSection::from_bytes(body) else {
            stats.psi_errors += 1;
            return PsiEvent::None;
        };
        let mut streams = Vec::new();
        for info in pmt.streams() {
            let mut raw = Vec::new();
            for d in info.descriptors::<RawDescriptor<'_>>().flatten() {
                raw.push(Descriptor {
                    tag: d.0[0],
                    data: &d.0[2..],
                });
            }
            let language = raw
                .iter()
                .find(|d| d.tag == 0x0a && d.data.len() >= 3)
                .and_then(|d| std::str::from_utf8(&d.data[..3]).ok())
                .filter(|code| code.bytes().all(|b| b.is_ascii_alphabetic()))
                .map(str::to_ascii_lowercase);
            streams.push(Stream {
                pid: u16::from(info.elementary_pid()),
                stream_type: info.stream_type().0,
                codec: Codec::from_pmt(info.stream_type().0, &raw),
                language,
            });
        }
        streams.truncate(usize::from(u8::MAX));
        let program = Program {
            number,
            pmt_pid,
            pcr_pid: u16::from(pmt.pcr_pid()),
            version: (section[5] >> 1) & 0x1f,
            streams,
            pat_section: pat_for(ts_id, pat_version, number, pmt_pid),
            pmt_section: section.to_vec(),
        };
        if self.program.is_some() {
            stats.pmt_changes += 1;
        }
        self.clear_program_roles();
        self.assign(pmt_pid, PidRole::Pmt);
        if program.pcr_pid != ts::NULL_PID {
            self.assign(program.pcr_pid, PidRole::Pcr);
        }
        for (i, s) in program.streams.iter().enumerate() {
            if s.pid != PAT_PID && s.pid != pmt_pid {
                // i < 256 by the truncate above.
                self.assign(s.pid, PidRole::Stream(i as u8));
            }
        }
        self.program = Some(Arc::new(program));
        PsiEvent::ProgramChanged
    }

    fn assign(&mut self, pid: u16, role: PidRole) {
        let pid = pid & 0x1fff;
        if pid != PAT_PID {
            self.roles[usize::from(pid)] = role;
            if !self.assigned.contains(&pid) {
                self.assigned.push(pid);
            }
        }
    }

    fn clear_program_roles(&mut self) {
        for pid in self.assigned.drain(..) {
            self.roles[usize::from(pid)] = PidRole::Other;
        }
    }
}

/// The section's body between the 8-byte long header and the CRC, if the
/// table id matches and the CRC checks.
fn checked_body<'a>(section: &'a [u8], table_id: u8, stats: &mut DemuxStats) -> Option<&'a [u8]> {
    if section.len() < 12 || section[0] != table_id || section[1] & 0x80 == 0 {
        stats.psi_errors += 1;
        return None;
    }
    if mpegts_crc::sum32(section) != 0 {
        stats.psi_errors += 1;
        return None;
    }
    // Only current (not "next") tables apply.
    if section[5] & 0x01 == 0 {
        return None;
    }
    Some(&section[8..section.len() - 4])
}

/// A PAT section listing one program.
fn pat_for(ts_id: u16, version: u8, number: u16, pmt_pid: u16) -> Vec<u8> {
    let mut s = Vec::with_capacity(16);
    s.push(0x00);
    s.extend_from_slice(&[0xb0, 13]); // section_syntax_indicator, length 13
    s.extend_from_slice(&ts_id.to_be_bytes());
    s.push(0xc1 | (version & 0x1f) << 1);
    s.extend_from_slice(&[0, 0]);
    s.extend_from_slice(&number.to_be_bytes());
    s.extend_from_slice(&(0xe000 | pmt_pid).to_be_bytes());
    let crc = mpegts_crc::sum32(&s);
    s.extend_from_slice(&crc.to_be_bytes());
    s
}

/// A descriptor kept as raw bytes (tag, length, body).
struct RawDescriptor<'buf>(&'buf [u8]);

impl<'buf> DescriptorTrait<'buf> for RawDescriptor<'buf> {
    fn from_bytes(buf: &'buf [u8]) -> Result<Self, DescriptorError> {
        if buf.len() < 2 {
            return Err(DescriptorError::BufferTooShort { buflen: buf.len() });
        }
        Ok(RawDescriptor(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pmt_section(number: u16, streams: &[(u8, u16, &[u8])]) -> Vec<u8> {
        let mut body = vec![0xe1, 0x00, 0xf0, 0x00]; // PCR PID 0x100, no program info
        for (stream_type, pid, descriptors) in streams {
            body.push(*stream_type);
            body.extend_from_slice(&(0xe000 | pid).to_be_bytes());
            body.extend_from_slice(&(0xf000 | descriptors.len() as u16).to_be_bytes());
            body.extend_from_slice(descriptors);
        }
        let mut s = vec![0x02];
        s.extend_from_slice(&(0xb000 | (body.len() as u16 + 9)).to_be_bytes());
        s.extend_from_slice(&number.to_be_bytes());
        s.extend_from_slice(&[0xc1, 0, 0]);
        s.extend_from_slice(&body);
        let crc = mpegts_crc::sum32(&s);
        s.extend_from_slice(&crc.to_be_bytes());
        s
    }

    fn packets(pid: u16, section: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        let mut cc = 0;
        write_section(&mut out, pid, section, &mut cc);
        out
    }

    #[test]
    fn follows_pat_and_pmt_and_maps_pids() {
        let mut tracker = ProgramTracker::new(None);
        let mut stats = DemuxStats::default();
        let pat = packets(0, &pat_for(1, 0, 1, 0x1000));
        assert_eq!(tracker.push(&pat, &mut stats), PsiEvent::None);
        assert_eq!(tracker.role(0x1000), PidRole::Pmt);
        let lang = [0x0a, 4, b'd', b'e', b'u', 0];
        let pmt = packets(
            0x1000,
            &pmt_section(1, &[(0x1b, 0x100, &[]), (0x0f, 0x101, &lang)]),
        );
        assert_eq!(tracker.push(&pmt, &mut stats), PsiEvent::ProgramChanged);
        assert_eq!(tracker.push(&pmt, &mut stats), PsiEvent::Refreshed);
        let program = tracker.program().unwrap();
        assert_eq!(program.streams[0].codec, Codec::H264);
        assert_eq!(program.streams[1].codec, Codec::Aac);
        assert_eq!(program.streams[1].language.as_deref(), Some("deu"));
        assert_eq!(program.primary_stream(), Some(0));
        assert_eq!(tracker.role(0x100), PidRole::Stream(0));
        assert_eq!(tracker.role(0x101), PidRole::Stream(1));
        assert_eq!(tracker.role(0x102), PidRole::Other);
        assert_eq!(stats.psi_errors, 0);
    }

    /// The program a PAT and one PMT section describe.
    fn program_of(pmt: &[u8]) -> Arc<Program> {
        let mut tracker = ProgramTracker::new(None);
        let mut stats = DemuxStats::default();
        tracker.push(&packets(0, &pat_for(1, 0, 1, 0x1000)), &mut stats);
        tracker.push(&packets(0x1000, pmt), &mut stats);
        assert_eq!(stats.psi_errors, 0);
        Arc::clone(tracker.program().expect("a program"))
    }

    #[test]
    fn a_stream_of_another_program_joins_under_a_new_pid() {
        let lang = [0x0a, 4, b'e', b'n', b'g', 0];
        let video = program_of(&pmt_section(1, &[(0x1b, 0x100, &[])]));
        let audio = program_of(&pmt_section(1, &[(0x0f, 0x100, &lang)]));
        let merged = video.pmt_section_adding(&audio, 0x100, 0x101).unwrap();
        let program = program_of(&merged);
        let streams: Vec<_> = program
            .streams
            .iter()
            .map(|s| (s.pid, s.codec, s.language.as_deref()))
            .collect();
        assert_eq!(
            streams,
            vec![(0x100, Codec::H264, None), (0x101, Codec::Aac, Some("eng"))]
        );
        assert_eq!(video.pmt_section_adding(&audio, 0x102, 0x101), None);
        // Removing it again gives the video's own section back.
        assert_eq!(program.pmt_section_with(&[0x100]), video.pmt_section);
    }

    #[test]
    fn a_section_spanning_packets_is_reassembled() {
        let many: Vec<(u8, u16, &[u8])> = (0..40)
            .map(|i| (0x06, 0x200 + i, &[0x56, 5, b'e', b'n', b'g', 9, 0][..]))
            .collect();
        let section = pmt_section(7, &many);
        assert!(section.len() > 184);
        let mut tracker = ProgramTracker::new(Some(7));
        let mut stats = DemuxStats::default();
        tracker.push(&packets(0, &pat_for(1, 0, 7, 0x20)), &mut stats);
        let pmt = packets(0x20, &section);
        let mut last = PsiEvent::None;
        for p in pmt.chunks(PACKET_SIZE) {
            last = tracker.push(p, &mut stats);
        }
        assert_eq!(last, PsiEvent::ProgramChanged);
        assert_eq!(tracker.program().unwrap().streams.len(), 40);
        assert_eq!(tracker.program().unwrap().streams[0].codec, Codec::Teletext);
    }

    #[test]
    fn bad_crc_is_counted_and_ignored() {
        let mut tracker = ProgramTracker::new(None);
        let mut stats = DemuxStats::default();
        let mut pat = pat_for(1, 0, 1, 0x1000);
        let last = pat.len() - 1;
        pat[last] ^= 1;
        tracker.push(&packets(0, &pat), &mut stats);
        assert_eq!(stats.psi_errors, 1);
        assert_eq!(tracker.role(0x1000), PidRole::Other);
    }

    #[test]
    fn picks_the_requested_program_and_writes_a_single_program_pat() {
        let mut pat = vec![
            0x00, 0xb0, 17, 0, 1, 0xc1, 0, 0, 0, 1, 0xe1, 0, 0, 2, 0xe2, 0,
        ];
        let crc = mpegts_crc::sum32(&pat);
        pat.extend_from_slice(&crc.to_be_bytes());
        let mut tracker = ProgramTracker::new(Some(2));
        let mut stats = DemuxStats::default();
        tracker.push(&packets(0, &pat), &mut stats);
        assert_eq!(tracker.role(0x200), PidRole::Pmt);
        assert_eq!(tracker.role(0x100), PidRole::Other);
        tracker.push(
            &packets(0x200, &pmt_section(2, &[(0x0f, 0x300, &[])])),
            &mut stats,
        );
        let program = tracker.program().unwrap();
        assert_eq!(program.number, 2);
        let single = PatSection::new(&program.pat_section[8..program.pat_section.len() - 4]);
        assert_eq!(single.programs().count(), 1);
        assert_eq!(mpegts_crc::sum32(&program.pat_section), 0);
    }
}
