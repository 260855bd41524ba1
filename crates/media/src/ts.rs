//! Transport-stream packets: finding them in a byte stream and reading their
//! headers.
//!
//! Input arrives in arbitrary pieces (UDP datagrams, HTTP chunks, file reads)
//! and may be corrupt. [`PacketSync`] turns it into runs of whole, sync-checked
//! 188-byte packets, carrying a partial packet across calls and resynchronising
//! after garbage. A run is handed out as one slice so that later stages can
//! copy many packets with one `memcpy`.

use crate::stats::DemuxStats;

/// Size of a transport-stream packet.
pub const PACKET_SIZE: usize = 188;
/// The byte every packet starts with.
pub const SYNC_BYTE: u8 = 0x47;
/// PID of the program association table.
pub const PAT_PID: u16 = 0;
/// PID of null (stuffing) packets.
pub const NULL_PID: u16 = 0x1fff;

/// The PID of a packet.
#[inline]
pub fn pid(packet: &[u8]) -> u16 {
    (u16::from(packet[1] & 0x1f) << 8) | u16::from(packet[2])
}

/// Whether a PES packet or PSI section starts in this packet.
#[inline]
pub fn payload_unit_start(packet: &[u8]) -> bool {
    packet[1] & 0x40 != 0
}

/// Whether the transport error indicator is set.
#[inline]
pub fn transport_error(packet: &[u8]) -> bool {
    packet[1] & 0x80 != 0
}

/// The 4-bit continuity counter.
#[inline]
pub fn continuity_counter(packet: &[u8]) -> u8 {
    packet[3] & 0x0f
}

/// Whether the packet carries payload (adaptation-only packets do not, and do
/// not advance the continuity counter).
#[inline]
pub fn has_payload(packet: &[u8]) -> bool {
    packet[3] & 0x10 != 0
}

/// Whether the packet is scrambled (encrypted); its payload cannot be parsed.
#[inline]
pub fn is_scrambled(packet: &[u8]) -> bool {
    packet[3] & 0xc0 != 0
}

/// The adaptation field body (after its length byte), if present and sane.
#[inline]
pub fn adaptation_field(packet: &[u8]) -> Option<&[u8]> {
    if packet[3] & 0x20 == 0 {
        return None;
    }
    let len = usize::from(packet[4]);
    packet.get(5..5 + len).filter(|af| !af.is_empty())
}

/// Whether the adaptation field's discontinuity indicator is set.
#[inline]
pub fn discontinuity_indicator(packet: &[u8]) -> bool {
    adaptation_field(packet).is_some_and(|af| af[0] & 0x80 != 0)
}

/// The program clock reference base (90 kHz, 33 bits), if this packet has one.
pub fn pcr_base(packet: &[u8]) -> Option<u64> {
    let af = adaptation_field(packet)?;
    if af[0] & 0x10 == 0 || af.len() < 7 {
        return None;
    }
    Some(read_pcr_base(&af[1..6]))
}

/// The 33-bit base of a 6-byte PCR or OPCR field (the 27 MHz extension is
/// ignored: the DVR keeps time in 90 kHz).
pub fn read_pcr_base(b: &[u8]) -> u64 {
    u64::from(b[0]) << 25
        | u64::from(b[1]) << 17
        | u64::from(b[2]) << 9
        | u64::from(b[3]) << 1
        | u64::from(b[4]) >> 7
}

/// The packet payload after the header and adaptation field, if any.
#[inline]
pub fn payload(packet: &[u8]) -> Option<&[u8]> {
    if !has_payload(packet) {
        return None;
    }
    let start = if packet[3] & 0x20 != 0 {
        5 + usize::from(packet[4])
    } else {
        4
    };
    packet.get(start..).filter(|p| !p.is_empty())
}

/// Splits a byte stream into sync-checked packets.
#[derive(Debug, Default)]
pub struct PacketSync {
    /// A partial packet (starting with the sync byte) from the previous call.
    carry: Vec<u8>,
    /// Set while searching for sync, so one loss is counted once.
    lost: bool,
    bytes_in: u64,
    sync_losses: u64,
    bytes_skipped: u64,
}

impl PacketSync {
    /// A splitter expecting a packet boundary at the first byte.
    pub fn new() -> Self {
        Self {
            carry: Vec::with_capacity(PACKET_SIZE),
            ..Self::default()
        }
    }

    /// Adds this splitter's counters to `stats`.
    pub fn report(&self, stats: &mut DemuxStats) {
        stats.bytes_in = self.bytes_in;
        stats.sync_losses = self.sync_losses;
        stats.bytes_skipped = self.bytes_skipped;
    }

    /// Feeds bytes; `on_run` receives runs of whole packets (a multiple of 188
    /// bytes, every packet starting with 0x47), in order.
    pub fn push(&mut self, mut data: &[u8], mut on_run: impl FnMut(&[u8])) {
        self.bytes_in += data.len() as u64;
        if !self.carry.is_empty() {
            let need = PACKET_SIZE - self.carry.len();
            let take = need.min(data.len());
            self.carry.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.carry.len() < PACKET_SIZE {
                return;
            }
            if data.first().is_none_or(|&b| b == SYNC_BYTE) {
                on_run(&self.carry);
            } else {
                // The carried packet is not followed by another: it was
                // garbage that happened to start with 0x47.
                self.bytes_skipped += PACKET_SIZE as u64;
            }
            self.carry.clear();
        }
        while !data.is_empty() {
            let mut run = 0;
            while run + PACKET_SIZE <= data.len() && data[run] == SYNC_BYTE {
                run += PACKET_SIZE;
            }
            if run > 0 {
                self.lost = false;
                on_run(&data[..run]);
                data = &data[run..];
                continue;
            }
            if data[0] == SYNC_BYTE {
                // A partial packet at the end of this piece.
                self.carry.extend_from_slice(data);
                return;
            }
            if !self.lost {
                self.lost = true;
                self.sync_losses += 1;
            }
            let skip = find_resync(data);
            self.bytes_skipped += skip as u64;
            data = &data[skip..];
        }
    }

    /// Drops a held partial packet (end of input, or a source switch).
    pub fn reset(&mut self) {
        self.carry.clear();
        self.lost = false;
    }
}

/// The offset of the next plausible packet start: a sync byte followed by
/// sync bytes one and two packets later, as far as the data reaches. Returns
/// `data.len()` when there is none.
fn find_resync(data: &[u8]) -> usize {
    let mut i = 1;
    while i < data.len() {
        if data[i] == SYNC_BYTE
            && data.get(i + PACKET_SIZE).is_none_or(|&b| b == SYNC_BYTE)
            && data
                .get(i + 2 * PACKET_SIZE)
                .is_none_or(|&b| b == SYNC_BYTE)
        {
            return i;
        }
        i += 1;
    }
    data.len()
}

/// Continuity-counter checking for every PID.
#[derive(Debug)]
pub struct ContinuityTracker {
    /// Last counter per PID; 0xff when none seen yet.
    last: Box<[u8; 8192]>,
}

impl Default for ContinuityTracker {
    fn default() -> Self {
        Self {
            last: Box::new([0xff; 8192]),
        }
    }
}

impl ContinuityTracker {
    /// Checks a packet; returns false on a continuity error. A repeated counter
    /// (a legal duplicate) and packets without payload are fine.
    #[inline]
    pub fn check(&mut self, packet: &[u8]) -> bool {
        if !has_payload(packet) {
            return true;
        }
        let slot = &mut self.last[usize::from(pid(packet))];
        let cc = continuity_counter(packet);
        let ok = *slot == 0xff
            || cc == *slot
            || cc == (*slot + 1) & 0x0f
            || discontinuity_indicator(packet);
        *slot = cc;
        ok
    }

    /// Forgets every PID (after a source switch, continuity restarts).
    pub fn reset(&mut self) {
        self.last.fill(0xff);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A packet with the given PID and counter, PUSI set, payload filled with `fill`.
    pub(crate) fn packet(pid: u16, cc: u8, fill: u8) -> [u8; PACKET_SIZE] {
        let mut p = [fill; PACKET_SIZE];
        p[0] = SYNC_BYTE;
        p[1] = 0x40 | (pid >> 8) as u8;
        p[2] = pid as u8;
        p[3] = 0x10 | (cc & 0x0f);
        p
    }

    fn collect(sync: &mut PacketSync, stats: &mut DemuxStats, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        sync.push(data, |run| out.extend_from_slice(run));
        sync.report(stats);
        out
    }

    #[test]
    fn reassembles_packets_split_at_any_byte() {
        let stream: Vec<u8> = (0..5).flat_map(|i| packet(0x100, i, i)).collect();
        for split in 0..stream.len() {
            let mut sync = PacketSync::new();
            let mut stats = DemuxStats::default();
            let mut out = collect(&mut sync, &mut stats, &stream[..split]);
            out.extend(collect(&mut sync, &mut stats, &stream[split..]));
            assert_eq!(out, stream, "split at {split}");
            assert_eq!(stats.sync_losses, 0);
        }
    }

    #[test]
    fn resyncs_after_garbage_and_counts_one_loss() {
        let mut stream: Vec<u8> = packet(0x100, 0, 1).to_vec();
        stream.extend_from_slice(&[0x12, 0x47, 0x00, 0x99, 0x47]);
        let tail: Vec<u8> = (1..4).flat_map(|i| packet(0x100, i, 2)).collect();
        stream.extend_from_slice(&tail);
        let mut sync = PacketSync::new();
        let mut stats = DemuxStats::default();
        let out = collect(&mut sync, &mut stats, &stream);
        assert_eq!(&out[..PACKET_SIZE], &packet(0x100, 0, 1));
        assert_eq!(&out[PACKET_SIZE..], &tail[..]);
        assert_eq!(stats.sync_losses, 1);
        assert_eq!(stats.bytes_skipped, 5);
    }

    #[test]
    fn continuity_errors_and_duplicates() {
        let mut cc = ContinuityTracker::default();
        assert!(cc.check(&packet(5, 3, 0)));
        assert!(cc.check(&packet(5, 4, 0)));
        assert!(cc.check(&packet(5, 4, 0)), "a duplicate is legal");
        assert!(!cc.check(&packet(5, 7, 0)));
        assert!(cc.check(&packet(6, 9, 0)), "first packet of a PID");
    }

    #[test]
    fn header_fields() {
        let mut p = packet(0x1abc, 0xf, 0);
        assert_eq!(pid(&p), 0x1abc);
        assert!(payload_unit_start(&p));
        assert_eq!(continuity_counter(&p), 0xf);
        assert_eq!(payload(&p).map(<[u8]>::len), Some(184));
        // adaptation field of 7 bytes with a PCR of base 1.
        p[3] = 0x30;
        p[4] = 7;
        p[5] = 0x10;
        p[6..12].copy_from_slice(&[0, 0, 0, 0, 0x80, 0]);
        assert_eq!(pcr_base(&p), Some(1));
        assert_eq!(payload(&p).map(<[u8]>::len), Some(176));
    }
}
