//! Stream mode: a recorded moment played as if it were live.
//!
//! `timeshift_abs-T`, `timeshift_rel-N` and `rewind-N` all serve a sliding
//! window that ends at a *play head* instead of at live. Everything here is
//! pure: the head and the window are computed from the tape, the wall clock
//! and what the URL carries, so any replica gives the same playlist.
//!
//! - `timeshift_abs-T`: the first request fixes when the viewer started (the
//!   packager redirects to a URL carrying it), and the head is T plus the
//!   wall time since then. Two viewers never share a timeline, and reloads on
//!   any replica continue the same one.
//! - `timeshift_rel-N`: the head is N seconds behind now.
//! - `rewind-N`: live, with every segment of the last N seconds.
//!
//! At a gap in the recording stream mode stops: the playlist is empty until
//! the head reaches recorded time again, as the seeds describe. With
//! `ignore_gaps=true` the head of `timeshift_abs` moves along recorded time
//! only, so a gap is skipped as if it had not been there.

use dvr_common::UtcMs;
use dvr_media::SegmentMeta;

use crate::playlist::GAP_TOLERANCE_MS;

/// How far a window reaches back from its head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowLimit {
    /// The newest `n` segments (a live-style window).
    Count(usize),
    /// Every segment that plays within the last `ms` milliseconds
    /// (`rewind-N`): at least N seconds once that much is recorded.
    Span(i64),
}

/// Where `timeshift_abs` from `at`, started at wall time `started`, plays at
/// `now`: `at` plus the time elapsed, never past live. `recorded` are the
/// segments from `at` onward (oldest first); with `ignore_gaps` the elapsed
/// time is spent on recorded segments only, skipping the gaps between them.
pub fn abs_head(
    at: UtcMs,
    started: UtcMs,
    now: UtcMs,
    recorded: &[SegmentMeta],
    ignore_gaps: bool,
) -> UtcMs {
    let elapsed = (now.0 - started.0).max(0);
    if !ignore_gaps {
        return UtcMs((at.0 + elapsed).min(now.0));
    }
    let mut left = elapsed;
    let mut head = at;
    for segment in recorded.iter().filter(|s| s.utc_end() > at) {
        let begin = segment.utc_start.max(head);
        let length = segment.utc_end().0 - begin.0;
        if left < length {
            return UtcMs((begin.0 + left).min(now.0));
        }
        left -= length;
        head = segment.utc_end();
    }
    // Past everything recorded: time keeps running from the last end.
    UtcMs((head.0 + left).min(now.0))
}

/// Whether `head` falls where nothing is recorded.
pub fn in_gap(segments: &[SegmentMeta], head: UtcMs) -> bool {
    !segments.iter().any(|s| {
        s.utc_start.0 - GAP_TOLERANCE_MS <= head.0 && head.0 < s.utc_end().0 + GAP_TOLERANCE_MS
    })
}

/// The window of a shifted live playlist: the segments that have fully
/// played by `head` plus `lead_ms`, not before `not_before`, limited by
/// `limit`. Empty when the head sits in a gap and `ignore_gaps` is off.
/// `segments` are oldest first and should reach from before the window to
/// past the head.
///
/// The lead is for `timeshift_abs`: a player joins a live playlist about
/// three segments before its end, so a window that ends that far past the
/// head makes it play from the head, not from three segments before it.
pub fn window(
    segments: &[SegmentMeta],
    position: UtcMs,
    lead_ms: i64,
    limit: WindowLimit,
    not_before: Option<UtcMs>,
    ignore_gaps: bool,
) -> Vec<SegmentMeta> {
    if !ignore_gaps && in_gap(segments, position) {
        return Vec::new();
    }
    let head = UtcMs(position.0 + lead_ms);
    let played: Vec<SegmentMeta> = segments
        .iter()
        .filter(|s| s.utc_end() <= head)
        .filter(|s| not_before.is_none_or(|t| s.utc_end() > t))
        .copied()
        .collect();
    let keep = match limit {
        WindowLimit::Count(n) => n,
        WindowLimit::Span(ms) => played
            .iter()
            .rev()
            .take_while(|s| s.utc_end().0 > head.0 - ms)
            .count(),
    };
    played[played.len().saturating_sub(keep)..].to_vec()
}

#[cfg(test)]
mod tests {
    use dvr_common::Ticks;
    use dvr_media::SegmentFlags;

    use super::*;

    const T: i64 = 1_795_356_000_000;

    fn seg(seq: u64, start_s: i64) -> SegmentMeta {
        SegmentMeta {
            seq,
            utc_start: UtcMs(T + start_s * 1000),
            duration: Ticks::from_secs(2),
            pts_start: Ticks(0),
            bytes: 188,
            flags: SegmentFlags {
                discontinuity: false,
                independent: true,
            },
        }
    }

    /// 0..20 s recorded, nothing 20..60 s, 60..80 s recorded.
    fn tape() -> Vec<SegmentMeta> {
        (0..10)
            .map(|i| seg(i, 2 * i as i64))
            .chain((0..10).map(|i| seg(10 + i, 60 + 2 * i as i64)))
            .collect()
    }

    fn seqs(w: &[SegmentMeta]) -> Vec<u64> {
        w.iter().map(|s| s.seq).collect()
    }

    #[test]
    fn abs_head_runs_with_the_wall_clock_and_never_passes_live() {
        let tape = tape();
        let at = UtcMs(T + 4000);
        let started = UtcMs(T + 1_000_000);
        let now = UtcMs(started.0 + 10_000);
        assert_eq!(abs_head(at, started, now, &tape, false), UtcMs(T + 14_000));
        // Requests before the start time (clock skew) stay at `at`.
        assert_eq!(abs_head(at, now, started, &tape, false), at);
        // A head that would pass live is held at live.
        let late = UtcMs(T + 10_000);
        assert_eq!(abs_head(at, UtcMs(T), late, &tape, false), late);
    }

    #[test]
    fn ignore_gaps_spends_elapsed_time_on_recorded_segments_only() {
        let tape = tape();
        let at = UtcMs(T + 16_000);
        let started = UtcMs(T + 1_000_000);
        // 4 s of 16..20, then the gap is skipped: 6 s more lands at 66 s.
        let now = UtcMs(started.0 + 10_000);
        assert_eq!(abs_head(at, started, now, &tape, true), UtcMs(T + 66_000));
        assert_eq!(abs_head(at, started, now, &tape, false), UtcMs(T + 26_000));
        // Starting inside a segment counts only its rest.
        let at = UtcMs(T + 17_000);
        let now = UtcMs(started.0 + 3000);
        assert_eq!(abs_head(at, started, now, &tape, true), UtcMs(T + 60_000));
    }

    #[test]
    fn a_window_holds_what_has_played_and_stops_at_a_gap() {
        let tape = tape();
        let w = window(
            &tape,
            UtcMs(T + 15_000),
            0,
            WindowLimit::Count(3),
            None,
            false,
        );
        assert_eq!(seqs(&w), [4, 5, 6]);
        // A lead of 6 s shows three more.
        let w = window(
            &tape,
            UtcMs(T + 4000),
            6000,
            WindowLimit::Count(6),
            None,
            false,
        );
        assert_eq!(seqs(&w), [0, 1, 2, 3, 4]);
        // Inside the gap: empty, unless gaps are ignored.
        let head = UtcMs(T + 40_000);
        assert!(window(&tape, head, 0, WindowLimit::Count(3), None, false).is_empty());
        assert_eq!(
            seqs(&window(&tape, head, 0, WindowLimit::Count(3), None, true)),
            [7, 8, 9]
        );
        // Past the gap, the window crosses it.
        let head = UtcMs(T + 65_000);
        assert_eq!(
            seqs(&window(&tape, head, 0, WindowLimit::Count(3), None, false)),
            [9, 10, 11]
        );
        // Nothing before the viewer's start time.
        let from = Some(UtcMs(T + 60_000));
        assert_eq!(
            seqs(&window(&tape, head, 0, WindowLimit::Count(3), from, false)),
            [10, 11]
        );
    }

    #[test]
    fn a_rewind_window_spans_seconds() {
        let tape = tape();
        let head = UtcMs(T + 80_000);
        assert_eq!(
            seqs(&window(
                &tape,
                head,
                0,
                WindowLimit::Span(10_000),
                None,
                false
            )),
            [15, 16, 17, 18, 19]
        );
        let head = UtcMs(T + 78_500);
        let all = window(&tape, head, 0, WindowLimit::Span(3_600_000), None, false);
        assert_eq!(all.len(), 19);
    }
}
