//! The unit everything downstream stores and serves.
//!
//! A [`Segment`] is a self-contained slice of MPEG-TS: it starts with PAT and
//! PMT, then (when `independent`) a random-access point, so a player can start
//! decoding at its first byte. Segments are never re-cut after ingest, so the
//! same bytes serve live, archive and restreaming (ARCHITECTURE section 4).

use std::sync::Arc;

use bytes::Bytes;
use dvr_common::{Ticks, UtcMs};
use serde::{Deserialize, Serialize};

use crate::codec::CodecSummary;

/// A hole on the tape longer than this between two segments is a gap:
/// time with nothing recorded. Shorter ones are rounding between wall-clock
/// anchors (segment ends are rounded to the millisecond; signal loss leaves
/// at least twice the segment target of nothing).
pub const TIMELINE_GAP_TOLERANCE_MS: i64 = 500;

/// Whether nothing is recorded between a segment (or span of tape) that
/// ended at `previous_end` and the next one starting at `next_start`: the
/// one gap rule. Recorded ranges (the catalog's spans, the live log's part
/// of `recording_status.json`) split where it holds, and playlists mark a
/// discontinuity there ([`breaks_timeline`]), so `ranges` and
/// `#EXT-X-DISCONTINUITY` never disagree about where the tape has a hole.
pub fn leaves_gap(previous_end: UtcMs, next_start: UtcMs) -> bool {
    next_start.0.saturating_sub(previous_end.0) > TIMELINE_GAP_TOLERANCE_MS
}

/// Whether a segment starting at `next_start` with the discontinuity flag
/// `next_discontinuity` does not continue a segment that ended at
/// `previous_end`: a gap ([`leaves_gap`]), or a flagged restart of the
/// timeline with no time missing (a PTS jump). The one definition that
/// playlists (which mark the break) and the catalog (which counts breaks
/// for `EXT-X-DISCONTINUITY-SEQUENCE`) share, so the count and the marks
/// cannot disagree.
pub fn breaks_timeline(previous_end: UtcMs, next_start: UtcMs, next_discontinuity: bool) -> bool {
    next_discontinuity || leaves_gap(previous_end, next_start)
}

/// Properties of a segment that players must be told about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SegmentFlags {
    /// The timeline does not continue from the previous segment: a PTS jump,
    /// a source restart, signal loss or a changed program. Playlists put
    /// `#EXT-X-DISCONTINUITY` before it.
    pub discontinuity: bool,
    /// The segment starts with a random-access point and decodes alone. False
    /// only when the source sent no keyframe within the maximum duration.
    pub independent: bool,
}

/// A keyframe-aligned slice of a stream's transport stream, with its metadata.
#[derive(Clone, Debug)]
pub struct Segment {
    /// Position on the stream's tape; only grows, kept across restarts.
    pub seq: u64,
    /// Unwrapped presentation time of the first access unit that starts it.
    pub pts_start: Ticks,
    /// Presentation duration.
    pub duration: Ticks,
    /// Wall-clock time of `pts_start`.
    pub utc_start: UtcMs,
    /// Discontinuity and independence.
    pub flags: SegmentFlags,
    /// The tracks in the segment; shared by consecutive segments that agree.
    pub codecs: Arc<CodecSummary>,
    /// The transport-stream bytes: a whole number of 188-byte packets.
    pub payload: Bytes,
}

impl Segment {
    /// Wall-clock end of the segment (exclusive).
    pub fn utc_end(&self) -> UtcMs {
        self.utc_start.plus_ticks(self.duration)
    }

    /// Everything about the segment but its bytes.
    pub fn meta(&self) -> SegmentMeta {
        SegmentMeta {
            seq: self.seq,
            utc_start: self.utc_start,
            duration: self.duration,
            pts_start: self.pts_start,
            bytes: self.payload.len() as u64,
            flags: self.flags,
        }
    }
}

/// A segment's metadata without its bytes or codecs: what logs, indexes and
/// playlists are made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// Position on the tape.
    pub seq: u64,
    /// Wall-clock start.
    pub utc_start: UtcMs,
    /// Presentation duration in 90 kHz ticks.
    pub duration: Ticks,
    /// Unwrapped PTS of the first access unit.
    pub pts_start: Ticks,
    /// Payload length in bytes.
    pub bytes: u64,
    /// Discontinuity and independence.
    pub flags: SegmentFlags,
}

impl SegmentMeta {
    /// Wall-clock end (exclusive).
    pub fn utc_end(&self) -> UtcMs {
        self.utc_start.plus_ticks(self.duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_is_a_hole_beyond_the_tolerance_and_always_breaks_the_timeline() {
        let end = UtcMs(10_000);
        let after = |ms: i64| UtcMs(end.0 + ms);
        assert!(!leaves_gap(end, after(TIMELINE_GAP_TOLERANCE_MS)));
        assert!(leaves_gap(end, after(TIMELINE_GAP_TOLERANCE_MS + 1)));
        // Overlap is not a gap; extreme values do not overflow.
        assert!(!leaves_gap(end, after(-3_000)));
        assert!(leaves_gap(UtcMs(i64::MIN), UtcMs(i64::MAX)));
        assert!(!leaves_gap(UtcMs(i64::MAX), UtcMs(i64::MIN)));
        // A flagged restart breaks the timeline without a gap; a gap breaks
        // it with or without the flag.
        assert!(breaks_timeline(end, end, true));
        assert!(!breaks_timeline(
            end,
            after(TIMELINE_GAP_TOLERANCE_MS),
            false
        ));
        assert!(breaks_timeline(end, after(6_000), false));
    }
}
