//! Rewriting a transport stream's clocks in place, so a file played in a
//! loop reaches every decoder as one continuous stream.
//!
//! Looping a clip naively makes PTS, DTS and PCR jump back at every pass and
//! the continuity counters restart: players flush, the segmenter sees a
//! discontinuity, and the tape gets a cut every few seconds. Instead each
//! pass is shifted by the length of the passes before it ([`shift_timestamps`],
//! modulo 2^33 like the clocks themselves, marker bits untouched) and the
//! continuity counters are renumbered per PID ([`ContinuityRenumberer`]), so
//! the loop point looks like any other frame boundary.
//!
//! [`PassSpan`] measures how long one pass is (where the next one must start),
//! and [`pacing_stamp`] gives the file pacer the clock of a packet.

use dvr_common::Ticks;

use crate::timestamp::{Unwrapper, WRAP};
use crate::ts::{self, PACKET_SIZE, SYNC_BYTE};

/// Mask of a 33-bit timestamp.
const MASK33: u64 = WRAP as u64 - 1;

/// Where the 5-byte PTS and DTS fields of a PES header start within the
/// packet, if this packet starts a PES whose header carries them.
fn pes_timestamp_offsets(packet: &[u8]) -> (Option<usize>, Option<usize>) {
    if packet.len() < PACKET_SIZE || packet[0] != SYNC_BYTE || !ts::payload_unit_start(packet) {
        return (None, None);
    }
    if !ts::has_payload(packet) {
        return (None, None);
    }
    let start = if packet[3] & 0x20 != 0 {
        5 + usize::from(packet[4])
    } else {
        4
    };
    let Some(pes) = packet.get(start..) else {
        return (None, None);
    };
    if pes.len() < 9 || pes[..3] != [0, 0, 1] {
        return (None, None);
    }
    // Stream ids without the optional PES header (program stream map,
    // padding, private stream 2, ECM, EMM, DSM-CC, H.222.1 type E, directory).
    if matches!(
        pes[3],
        0xbc | 0xbe | 0xbf | 0xf0 | 0xf1 | 0xf2 | 0xf8 | 0xff
    ) {
        return (None, None);
    }
    if pes[6] & 0xc0 != 0x80 {
        return (None, None);
    }
    let header_len = usize::from(pes[8]);
    let fits = |fields: usize| header_len >= 5 * fields && pes.len() >= 9 + 5 * fields;
    match pes[7] >> 6 {
        0b10 if fits(1) => (Some(start + 9), None),
        0b11 if fits(2) => (Some(start + 9), Some(start + 14)),
        _ => (None, None),
    }
}

/// Reads a 5-byte PES timestamp field.
fn read_pes_ts(b: &[u8]) -> u64 {
    (u64::from(b[0] >> 1) & 0x07) << 30
        | u64::from(b[1]) << 22
        | (u64::from(b[2]) >> 1) << 15
        | u64::from(b[3]) << 7
        | u64::from(b[4]) >> 1
}

/// Writes a 5-byte PES timestamp field, keeping its prefix and marker bits.
fn write_pes_ts(b: &mut [u8], v: u64) {
    let v = v & MASK33;
    b[0] = (b[0] & 0xf1) | ((v >> 29) as u8 & 0x0e);
    b[1] = (v >> 22) as u8;
    b[2] = (b[2] & 0x01) | ((v >> 14) as u8 & 0xfe);
    b[3] = (v >> 7) as u8;
    b[4] = (b[4] & 0x01) | ((v << 1) as u8 & 0xfe);
}

/// Writes the 33-bit base of a PCR or OPCR field; the reserved bits and the
/// 27 MHz extension stay as they are.
fn write_pcr_base(b: &mut [u8], v: u64) {
    let v = v & MASK33;
    b[0] = (v >> 25) as u8;
    b[1] = (v >> 17) as u8;
    b[2] = (v >> 9) as u8;
    b[3] = (v >> 1) as u8;
    b[4] = (b[4] & 0x7f) | (((v & 1) as u8) << 7);
}

/// Where the PCR and OPCR fields start within the packet, if present.
fn pcr_offsets(packet: &[u8]) -> (Option<usize>, Option<usize>) {
    if packet.len() < PACKET_SIZE || packet[3] & 0x20 == 0 {
        return (None, None);
    }
    let af_len = usize::from(packet[4]);
    if af_len == 0 || 5 + af_len > PACKET_SIZE {
        return (None, None);
    }
    let flags = packet[5];
    let mut at = 6;
    let mut pcr = None;
    if flags & 0x10 != 0 {
        if af_len < 1 + 6 {
            return (None, None);
        }
        pcr = Some(at);
        at += 6;
    }
    let opcr = (flags & 0x08 != 0 && at + 6 <= 5 + af_len).then_some(at);
    (pcr, opcr)
}

fn add_mod33(v: u64, offset: i64) -> u64 {
    (v as i64 + offset).rem_euclid(WRAP) as u64
}

/// Shifts the PTS and DTS (in a PES header starting in this packet) and the
/// PCR and OPCR (in its adaptation field) by `offset` ticks, modulo 2^33.
/// Packets that are not 188 bytes, or whose fields do not fit, are left as
/// they are.
pub fn shift_timestamps(packet: &mut [u8], offset: i64) {
    if packet.len() != PACKET_SIZE || packet[0] != SYNC_BYTE {
        return;
    }
    let offset = offset.rem_euclid(WRAP);
    if offset == 0 {
        return;
    }
    let (pcr, opcr) = pcr_offsets(packet);
    for at in [pcr, opcr].into_iter().flatten() {
        let field = &mut packet[at..at + 6];
        let v = add_mod33(ts::read_pcr_base(field), offset);
        write_pcr_base(field, v);
    }
    let (pts, dts) = pes_timestamp_offsets(packet);
    for at in [pts, dts].into_iter().flatten() {
        let field = &mut packet[at..at + 5];
        let v = add_mod33(read_pes_ts(field), offset);
        write_pes_ts(field, v);
    }
}

/// The clock of a packet for pacing: its PCR, or failing that the PTS of a
/// PES starting in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacingStamp {
    /// Program clock reference base, 33 bits.
    Pcr(u64),
    /// Presentation timestamp, 33 bits.
    Pts(u64),
}

/// The PCR of a packet, or failing that the PTS of a PES starting in it.
pub fn pacing_stamp(packet: &[u8]) -> Option<PacingStamp> {
    if packet.len() != PACKET_SIZE || packet[0] != SYNC_BYTE {
        return None;
    }
    if let (Some(at), _) = pcr_offsets(packet) {
        return Some(PacingStamp::Pcr(ts::read_pcr_base(&packet[at..at + 6])));
    }
    let (pts, _) = pes_timestamp_offsets(packet);
    pts.map(|at| PacingStamp::Pts(read_pes_ts(&packet[at..at + 5])))
}

/// Gives every PID's continuity counters one unbroken sequence across
/// passes of a looped file (or any other splice).
#[derive(Debug)]
pub struct ContinuityRenumberer {
    /// Last counter written per PID; 0xff when none yet.
    written: Box<[u8; 8192]>,
    /// Last counter read per PID, to keep the source's legal duplicates.
    read: Box<[u8; 8192]>,
}

impl Default for ContinuityRenumberer {
    fn default() -> Self {
        Self {
            written: Box::new([0xff; 8192]),
            read: Box::new([0xff; 8192]),
        }
    }
}

impl ContinuityRenumberer {
    /// Rewrites the packet's counter: the next in sequence for its PID when it
    /// carries payload, the last one when it does not (such packets do not
    /// advance it), the same again for a duplicate of the previous packet.
    pub fn renumber(&mut self, packet: &mut [u8]) {
        if packet.len() != PACKET_SIZE || packet[0] != SYNC_BYTE {
            return;
        }
        let pid = usize::from(ts::pid(packet));
        if pid == usize::from(ts::NULL_PID) {
            return;
        }
        let source_cc = ts::continuity_counter(packet);
        let last_read = std::mem::replace(&mut self.read[pid], source_cc);
        let written = &mut self.written[pid];
        let cc = if *written == 0xff {
            source_cc
        } else if !ts::has_payload(packet) || source_cc == last_read {
            *written
        } else {
            (*written + 1) & 0x0f
        };
        *written = cc;
        packet[3] = (packet[3] & 0xf0) | cc;
    }

    /// Marks the start of a new pass: the next packet of each PID continues
    /// the written sequence even if its source counter equals the last one
    /// read (which would otherwise look like a duplicate).
    pub fn new_pass(&mut self) {
        self.read.fill(0xff);
    }
}

/// Shifts timestamps and renumbers continuity counters: everything a looped
/// file needs to be one stream.
#[derive(Debug, Default)]
pub struct Retimer {
    offset: i64,
    cc: ContinuityRenumberer,
}

impl Retimer {
    /// A retimer that shifts by nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current shift in ticks.
    pub fn offset(&self) -> Ticks {
        Ticks(self.offset)
    }

    /// Starts another pass, `by` later than the previous one.
    pub fn next_pass(&mut self, by: Ticks) {
        self.offset += by.0;
        self.cc.new_pass();
    }

    /// Rewrites one packet in place.
    pub fn apply(&mut self, packet: &mut [u8]) {
        shift_timestamps(packet, self.offset);
        self.cc.renumber(packet);
    }
}

/// Per-PID presentation span, to learn where a pass ends.
#[derive(Clone, Copy, Debug)]
struct PidSpan {
    pid: u16,
    /// Whether the PES stream id says video (0xe0 to 0xef).
    video: bool,
    /// Unwrapped decode time of the last PES.
    last_decode: Ticks,
    /// Last positive step of the decode time: the frame duration.
    frame: Ticks,
    /// Smallest and largest presentation times seen.
    min_pts: Ticks,
    max_pts: Ticks,
}

/// Measures one pass of a file: from its first presentation time to the end
/// of its last frame.
///
/// The video tracks decide when there are any: their frames have a known,
/// fixed duration, so the next pass follows the last frame exactly and the
/// segmenter's durations add up to whole passes. Audio PES often carry
/// several frames, whose length can only be guessed, and a track that ends a
/// few milliseconds later than the video just overlaps that much at the loop
/// point, which decoders absorb. Without video, the longest track decides.
#[derive(Debug, Default)]
pub struct PassSpan {
    unwrapper: Unwrapper,
    pids: Vec<PidSpan>,
}

impl PassSpan {
    /// Observes a packet of the (unshifted) pass.
    pub fn observe(&mut self, packet: &[u8]) {
        let (Some(pts_at), dts_at) = pes_timestamp_offsets(packet) else {
            return;
        };
        let pts = self
            .unwrapper
            .unwrap(read_pes_ts(&packet[pts_at..pts_at + 5]));
        let decode = dts_at.map_or(pts, |at| {
            let raw = read_pes_ts(&packet[at..at + 5]);
            // Unwrap the DTS near the PTS without disturbing the unwrapper.
            let mut near = self.unwrapper;
            near.unwrap(raw)
        });
        let pid = ts::pid(packet);
        // The stream id sits three bytes before the PES header's flags.
        let video = packet
            .get(pts_at - 6)
            .is_some_and(|id| (0xe0..=0xef).contains(id));
        match self.pids.iter_mut().find(|s| s.pid == pid) {
            Some(span) => {
                if decode > span.last_decode {
                    span.frame = decode - span.last_decode;
                }
                span.last_decode = decode;
                span.min_pts = span.min_pts.min(pts);
                span.max_pts = span.max_pts.max(pts);
            }
            None => self.pids.push(PidSpan {
                pid,
                video,
                last_decode: decode,
                frame: Ticks::ZERO,
                min_pts: pts,
                max_pts: pts,
            }),
        }
    }

    /// The length of the pass: how far the next pass's timestamps must be
    /// shifted so it follows this one. `None` before any timestamp was seen.
    pub fn duration(&self) -> Option<Ticks> {
        let any_video = self.pids.iter().any(|s| s.video);
        let deciding = || self.pids.iter().filter(move |s| s.video || !any_video);
        let first = deciding().map(|s| s.min_pts).min()?;
        let end = deciding().map(|s| s.max_pts + s.frame).max()?;
        Some((end - first).max(Ticks::ZERO))
    }
}

/// A clip played `passes` times as one continuous stream (timestamps
/// shifted by a pass each time, continuity counters renumbered), as ingest
/// loops a file: for benchmarks and tools that need a long stream from a
/// short clip.
pub fn looped(clip: &[u8], passes: usize) -> Vec<u8> {
    let mut span = PassSpan::default();
    for packet in clip.chunks_exact(PACKET_SIZE) {
        span.observe(packet);
    }
    let mut retimer = Retimer::new();
    let mut out = Vec::with_capacity(clip.len() * passes);
    for _ in 0..passes {
        for packet in clip.chunks_exact(PACKET_SIZE) {
            let start = out.len();
            out.extend_from_slice(packet);
            retimer.apply(&mut out[start..]);
        }
        retimer.next_pass(span.duration().unwrap_or_default());
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ts::ContinuityTracker;

    /// A video packet starting a PES with PTS and DTS, and a PCR.
    fn pes_packet(pid: u16, cc: u8, pcr: Option<u64>, pts: u64, dts: Option<u64>) -> Vec<u8> {
        pes_packet_of(0xe0, pid, cc, pcr, pts, dts)
    }

    fn pes_packet_of(
        stream_id: u8,
        pid: u16,
        cc: u8,
        pcr: Option<u64>,
        pts: u64,
        dts: Option<u64>,
    ) -> Vec<u8> {
        let mut p = vec![SYNC_BYTE, 0x40 | (pid >> 8) as u8, pid as u8, 0x10 | cc];
        if let Some(pcr) = pcr {
            p[3] |= 0x20;
            p.extend_from_slice(&[7, 0x10, 0, 0, 0, 0, 0x7e, 0x05]);
            let at = p.len() - 6;
            write_pcr_base(&mut p[at..at + 6], pcr);
        }
        let enc = |prefix: u8, v: u64| {
            let mut b = [prefix << 4 | 1, 0, 1, 0, 1];
            write_pes_ts(&mut b, v);
            b
        };
        let flags = if dts.is_some() { 0xc0 } else { 0x80 };
        let hlen = if dts.is_some() { 10 } else { 5 };
        p.extend_from_slice(&[0, 0, 1, stream_id, 0, 0, 0x80, flags, hlen]);
        p.extend_from_slice(&enc(if dts.is_some() { 3 } else { 2 }, pts));
        if let Some(dts) = dts {
            p.extend_from_slice(&enc(1, dts));
        }
        p.resize(PACKET_SIZE, 0xff);
        p
    }

    #[test]
    fn shifts_pts_dts_and_pcr_keeping_markers() {
        let mut p = pes_packet(0x100, 3, Some(1000), 9000, Some(5400));
        shift_timestamps(&mut p, 90_000);
        assert_eq!(ts::pcr_base(&p), Some(91_000));
        let header = crate::timestamp::parse_pes_header(ts::payload(&p).unwrap()).unwrap();
        assert_eq!(header.pts, Some(99_000));
        assert_eq!(header.dts, Some(95_400));
        // The PCR extension and reserved bits are untouched.
        assert_eq!(p[10] & 0x7f, 0x7e);
        assert_eq!(p[11], 0x05);
        assert_eq!(
            pacing_stamp(&p),
            Some(PacingStamp::Pcr(91_000)),
            "the PCR is preferred"
        );
    }

    #[test]
    fn wraps_modulo_2_pow_33() {
        let mut p = pes_packet(0x100, 0, None, WRAP as u64 - 10, None);
        shift_timestamps(&mut p, 25);
        assert_eq!(pacing_stamp(&p), Some(PacingStamp::Pts(15)));
        shift_timestamps(&mut p, -25);
        assert_eq!(pacing_stamp(&p), Some(PacingStamp::Pts(WRAP as u64 - 10)));
    }

    #[test]
    fn renumbers_counters_into_one_sequence_across_passes() {
        let pass: Vec<Vec<u8>> = (0..5u8)
            .map(|i| pes_packet(0x100, (i + 7) & 0x0f, None, u64::from(i) * 3600, None))
            .collect();
        let mut retimer = Retimer::new();
        let mut tracker = ContinuityTracker::default();
        for n in 0..3 {
            for p in &pass {
                let mut p = p.clone();
                retimer.apply(&mut p);
                assert!(tracker.check(&p), "pass {n}");
            }
            retimer.next_pass(Ticks(5 * 3600));
        }
        // Without renumbering the second pass would break continuity.
        let mut naive = ContinuityTracker::default();
        let ok = pass.iter().chain(&pass).all(|p| naive.check(p));
        assert!(!ok);
    }

    #[test]
    fn keeps_duplicates_and_adaptation_only_packets() {
        let mut r = ContinuityRenumberer::default();
        let mut a = pes_packet(0x101, 4, None, 0, None);
        r.renumber(&mut a);
        let mut dup = a.clone();
        r.renumber(&mut dup);
        assert_eq!(ts::continuity_counter(&dup), ts::continuity_counter(&a));
        let mut af_only = a.clone();
        af_only[3] = 0x20 | 9;
        af_only[4] = 183;
        r.renumber(&mut af_only);
        assert_eq!(ts::continuity_counter(&af_only), 4);
    }

    #[test]
    fn pass_span_follows_video_and_falls_back_to_the_longest_track() {
        let mut span = PassSpan::default();
        assert_eq!(span.duration(), None);
        // Audio: PES of 4 AAC frames (4 × 1920 ticks) from 124080, ending
        // after the video.
        for i in 0..25u64 {
            span.observe(&pes_packet_of(
                0xc0,
                0x101,
                0,
                None,
                124_080 + i * 7680,
                None,
            ));
        }
        assert_eq!(span.duration(), Some(Ticks(25 * 7680)), "audio only");
        // Video: 25 fps from 126000 with B-frames (DTS one frame behind), 50
        // frames: 2 s.
        for i in 0..50u64 {
            let pts = 126_000 + i * 3600;
            span.observe(&pes_packet(0x100, 0, None, pts, Some(pts - 3600)));
        }
        assert_eq!(span.duration(), Some(Ticks::from_secs(2)));
    }

    proptest! {
        #[test]
        fn never_panics_and_shift_back_is_identity(
            bytes in proptest::collection::vec(any::<u8>(), PACKET_SIZE..=PACKET_SIZE),
            pusi in any::<bool>(),
            offset in -(1i64 << 40)..(1i64 << 40),
        ) {
            let mut p = bytes.clone();
            p[0] = SYNC_BYTE;
            if pusi { p[1] |= 0x40; }
            let original = p.clone();
            shift_timestamps(&mut p, offset);
            let _ = pacing_stamp(&p);
            shift_timestamps(&mut p, -offset);
            prop_assert_eq!(p, original);
        }

        #[test]
        fn shift_back_is_identity_on_real_headers(
            pcr in 0u64..(1 << 33),
            pts in 0u64..(1 << 33),
            dts in 0u64..(1 << 33),
            offset in any::<i64>(),
        ) {
            let original = pes_packet(0x100, 1, Some(pcr), pts, Some(dts));
            let mut p = original.clone();
            shift_timestamps(&mut p, offset);
            let expect = add_mod33(pcr, offset.rem_euclid(WRAP));
            prop_assert_eq!(ts::pcr_base(&p), Some(expect));
            shift_timestamps(&mut p, offset.wrapping_neg());
            prop_assert_eq!(p, original);
        }

        #[test]
        fn helpers_never_panic_on_any_length(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut p = bytes;
            shift_timestamps(&mut p, 12345);
            let _ = pacing_stamp(&p);
            ContinuityRenumberer::default().renumber(&mut p);
            let mut span = PassSpan::default();
            span.observe(&p);
        }
    }
}
