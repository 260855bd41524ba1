//! Made-up segments for tests of the live log, the recorder and the
//! packager: one builder instead of a `fn segment(seq)` in every test file.
//!
//! A segment from [`segment`] is 2 s long and sits where its `seq` puts it
//! on a tape of 2 s segments (PTS `seq * 2 s`, wall clock `seq * 2 s` after
//! the tape's start); what differs between tests — where the tape starts, a
//! discontinuity, the program number, the bytes — is one builder call
//! each. The payload is never parsed by the tests that use these, so any
//! bytes do; pick ones that show a mix-up when the test compares them.

use std::sync::Arc;

use bytes::Bytes;
use dvr_common::{Ticks, UtcMs};
use dvr_media::{CodecSummary, Segment, SegmentFlags};

/// How long every fixture segment is.
pub const SEGMENT_DURATION: Ticks = Ticks::from_secs(2);

/// 2026-11-21T14:00:00Z in UTC ms: where the recorder's and the packager's
/// test tapes start.
pub const T0_MS: i64 = 1_795_269_600_000;

/// Segment `seq` of a tape that starts at the Unix epoch, independent, with
/// no discontinuity, default codecs and one TS packet of `0x47` bytes;
/// change any of it with the builder's methods, then [`SegmentBuilder::build`].
pub fn segment(seq: u64) -> SegmentBuilder {
    SegmentBuilder {
        seq,
        pts_start: tape_offset(seq),
        utc_start: UtcMs(0).plus_ticks(tape_offset(seq)),
        discontinuity: false,
        codecs: CodecSummary::default(),
        payload: Bytes::from_static(&[0x47; 188]),
    }
}

/// A [`Segment`] being described; see [`segment`].
#[derive(Clone, Debug)]
#[must_use]
pub struct SegmentBuilder {
    seq: u64,
    pts_start: Ticks,
    utc_start: UtcMs,
    discontinuity: bool,
    codecs: CodecSummary,
    payload: Bytes,
}

impl SegmentBuilder {
    /// On a tape that starts at `tape_start_ms` (UTC ms): the segment starts
    /// `seq * 2 s` after it.
    pub fn on_tape_from(mut self, tape_start_ms: i64) -> Self {
        self.utc_start = UtcMs(tape_start_ms).plus_ticks(tape_offset(self.seq));
        self
    }

    /// Starts at `utc_ms` (UTC ms) whatever its `seq`.
    pub fn starting_at(mut self, utc_ms: i64) -> Self {
        self.utc_start = UtcMs(utc_ms);
        self
    }

    /// Starts at presentation time `pts` whatever its `seq`.
    pub fn pts_start(mut self, pts: Ticks) -> Self {
        self.pts_start = pts;
        self
    }

    /// Flags a discontinuity before it (a new run of tape).
    pub fn discontinuity(mut self, discontinuity: bool) -> Self {
        self.discontinuity = discontinuity;
        self
    }

    /// The program number its codec summary names (no tracks).
    pub fn program_number(mut self, program_number: u16) -> Self {
        self.codecs = CodecSummary {
            program_number,
            tracks: Vec::new(),
        };
        self
    }

    /// These payload bytes.
    pub fn payload(mut self, payload: impl Into<Bytes>) -> Self {
        self.payload = payload.into();
        self
    }

    /// `len` bytes of `0x47`, the TS sync byte.
    pub fn sync_bytes(self, len: usize) -> Self {
        self.payload(vec![0x47; len])
    }

    /// `len` bytes each equal to `seq` (truncated to a byte), so a segment
    /// read back under the wrong seq shows.
    pub fn seq_bytes(self, len: usize) -> Self {
        let byte = self.seq as u8;
        self.payload(vec![byte; len])
    }

    /// `len` bytes that vary along the payload and with `seq`, so a
    /// reordered or truncated read shows too.
    pub fn patterned(self, len: usize) -> Self {
        let seq = self.seq as u8;
        self.payload(
            (0..len)
                .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seq))
                .collect::<Vec<u8>>(),
        )
    }

    /// The segment.
    pub fn build(self) -> Segment {
        Segment {
            seq: self.seq,
            pts_start: self.pts_start,
            duration: SEGMENT_DURATION,
            utc_start: self.utc_start,
            flags: SegmentFlags {
                discontinuity: self.discontinuity,
                independent: true,
            },
            codecs: Arc::new(self.codecs),
            payload: self.payload,
        }
    }
}

/// Where segment `seq` starts on its tape: `seq` segments in.
fn tape_offset(seq: u64) -> Ticks {
    Ticks(SEGMENT_DURATION.0 * seq as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_sits_where_its_seq_puts_it() {
        let s = segment(3).on_tape_from(T0_MS).build();
        assert_eq!(s.pts_start, Ticks(540_000));
        assert_eq!(s.duration, Ticks(180_000));
        assert_eq!(s.utc_start, UtcMs(T0_MS + 6000));
        assert_eq!(s.utc_end(), UtcMs(T0_MS + 8000));
        assert!(s.flags.independent && !s.flags.discontinuity);
        assert_eq!(*s.codecs, CodecSummary::default());
        assert_eq!(&s.payload[..], &[0x47; 188][..]);
    }

    #[test]
    fn the_builder_changes_only_what_it_is_asked_to() {
        let s = segment(2)
            .starting_at(5_000)
            .pts_start(Ticks(90))
            .discontinuity(true)
            .program_number(1)
            .seq_bytes(4)
            .build();
        assert_eq!(s.utc_start, UtcMs(5_000));
        assert_eq!(s.pts_start, Ticks(90));
        assert!(s.flags.discontinuity);
        assert_eq!(s.codecs.program_number, 1);
        assert_eq!(&s.payload[..], &[2, 2, 2, 2]);
        assert_eq!(&segment(1).patterned(3).build().payload[..], &[1, 32, 63]);
        assert_eq!(segment(0).sync_bytes(376).build().payload.len(), 376);
    }
}
