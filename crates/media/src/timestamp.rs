//! 33-bit MPEG timestamps made into a continuous `i64` timeline, and the
//! reading of PES headers.
//!
//! PTS and DTS wrap every 2^33 ticks (about 26.5 hours). [`Unwrapper`] maps
//! each raw value to the `i64` congruent to it modulo 2^33 that lies closest
//! to the previous value, so streams cross the wrap without a jump and the
//! small backward steps of B-frame reordering stay small.

use dvr_common::Ticks;
use mpeg2ts_reader::pes::{PesContents, PesHeader, PtsDts};

/// 2^33: the period of PTS, DTS and PCR base.
pub const WRAP: i64 = 1 << 33;

/// Unwraps 33-bit timestamps against the last value seen.
#[derive(Clone, Copy, Debug, Default)]
pub struct Unwrapper {
    last: Option<i64>,
}

impl Unwrapper {
    /// The continuous value of a raw 33-bit timestamp.
    pub fn unwrap(&mut self, raw: u64) -> Ticks {
        Ticks(self.unwrap_period(raw, WRAP))
    }

    /// The continuous value of a raw timestamp that wraps every `period`
    /// (a power of two): 2^33 for MPEG, 2^32 for RTMP's milliseconds.
    pub fn unwrap_period(&mut self, raw: u64, period: i64) -> i64 {
        let raw = (raw & (period as u64 - 1)) as i64;
        let value = match self.last {
            None => raw,
            Some(last) => {
                let base = last - last.rem_euclid(period);
                // The candidate in the same, previous or next period that is
                // nearest to `last`.
                [base - period + raw, base + raw, base + period + raw]
                    .into_iter()
                    .min_by_key(|c| (c - last).abs())
                    .unwrap_or(base + raw)
            }
        };
        self.last = Some(value);
        value
    }

    /// The last unwrapped value.
    pub fn last(&self) -> Option<Ticks> {
        self.last.map(Ticks)
    }
}

/// Encodes a 33-bit timestamp as the 5-byte PES field with the given 4-bit
/// prefix (`0b0010` PTS only, `0b0011` PTS with DTS, `0b0001` DTS) and marker
/// bits set.
pub fn encode_pes_timestamp(prefix: u8, v: u64) -> [u8; 5] {
    [
        prefix << 4 | ((v >> 29) as u8 & 0x0e) | 1,
        (v >> 22) as u8,
        ((v >> 14) as u8 & 0xfe) | 1,
        (v >> 7) as u8,
        ((v << 1) as u8 & 0xfe) | 1,
    ]
}

/// Timestamps and payload offset of a PES packet header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PesTimestamps {
    /// Raw 33-bit presentation timestamp.
    pub pts: Option<u64>,
    /// Raw 33-bit decoding timestamp (absent when equal to PTS).
    pub dts: Option<u64>,
    /// Offset of the elementary-stream bytes within the PES bytes given.
    pub payload_offset: usize,
}

/// Parses the header of a PES packet starting at `pes` (the payload of a TS
/// packet with the unit-start flag). `None` if it is not a valid PES header
/// or is cut short.
pub fn parse_pes_header(pes: &[u8]) -> Option<PesTimestamps> {
    let header = PesHeader::from_bytes(pes)?;
    match header.contents() {
        PesContents::Parsed(Some(parsed)) => {
            let (pts, dts) = match parsed.pts_dts() {
                Ok(PtsDts::PtsOnly(Ok(pts))) => (Some(pts.value()), None),
                Ok(PtsDts::Both {
                    pts: Ok(pts),
                    dts: Ok(dts),
                }) => (Some(pts.value()), Some(dts.value())),
                _ => (None, None),
            };
            let payload_len = parsed.payload().len();
            Some(PesTimestamps {
                pts,
                dts,
                payload_offset: pes.len() - payload_len,
            })
        }
        PesContents::Payload(payload) => Some(PesTimestamps {
            pts: None,
            dts: None,
            payload_offset: pes.len() - payload.len(),
        }),
        PesContents::Parsed(None) => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn crosses_the_wrap_forward_without_a_jump() {
        let mut u = Unwrapper::default();
        assert_eq!(u.unwrap((WRAP - 3600) as u64), Ticks(WRAP - 3600));
        assert_eq!(u.unwrap(0), Ticks(WRAP));
        assert_eq!(u.unwrap(3600), Ticks(WRAP + 3600));
        // B-frame reordering just after the wrap stays small.
        assert_eq!(u.unwrap((WRAP - 1800) as u64), Ticks(WRAP - 1800));
    }

    #[test]
    fn parses_pts_and_dts() {
        // PES header: start code, stream id 0xe0, length 0, flags 0x80 0xc0,
        // header length 10, PTS = 0x1_0000_0000 (marker bits set), DTS = 90000.
        let pts: u64 = 0x1_0000_0000;
        let dts: u64 = 90_000;
        let enc = encode_pes_timestamp;
        let mut pes = vec![0, 0, 1, 0xe0, 0, 0, 0x80, 0xc0, 10];
        pes.extend_from_slice(&enc(3, pts));
        pes.extend_from_slice(&enc(1, dts));
        pes.extend_from_slice(&[0, 0, 0, 1, 0x09]);
        let t = parse_pes_header(&pes).unwrap();
        assert_eq!(t.pts, Some(pts));
        assert_eq!(t.dts, Some(dts));
        assert_eq!(t.payload_offset, 19);
        assert_eq!(parse_pes_header(&pes[..5]), None);
    }

    proptest! {
        #[test]
        fn steps_smaller_than_half_a_period_are_preserved(
            start in 0i64..WRAP,
            steps in proptest::collection::vec(-(1i64 << 31)..(1i64 << 31), 1..50),
        ) {
            let mut u = Unwrapper::default();
            let mut expected = u.unwrap(start as u64).0;
            for step in steps {
                expected += step;
                prop_assert_eq!(u.unwrap(expected.rem_euclid(WRAP) as u64).0, expected);
            }
        }

        #[test]
        fn pes_header_parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_pes_header(&bytes);
        }
    }
}
