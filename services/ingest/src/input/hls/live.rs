//! Following a live media playlist: which segments are new at each reload.
//!
//! Segments are known by media sequence number; each is fetched once, in
//! order. A first load starts near the live edge. A reload whose newest
//! segment is behind what was already fetched is either a stale copy (a CDN
//! cache serving an older version: its segments are ones we fetched, with
//! the same sequence numbers and URIs) or a reset (the origin restarted its
//! numbering: segments we never saw), told apart by the recently fetched
//! (number, URI) pairs. A rendition followed beside another (HLS audio
//! beside video) starts at the segment whose program date-time covers the
//! other's start rather than at its own live edge, since renditions need
//! not have the same number of segments. Pure state, no I/O.

use std::collections::VecDeque;

use dvr_common::UtcMs;

use super::playlist::{MediaPlaylist, MediaSegment};

/// How many segments from the end a first load (or a reset) starts at: the
/// RFC's "not less than three target durations from the end".
const LIVE_EDGE_SEGMENTS: usize = 3;
/// How many fetched (number, URI) pairs are remembered to recognise a stale
/// playlist.
const RECENT: usize = 64;

/// What a reload brings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// Segments to fetch, in order.
    pub new: Vec<MediaSegment>,
    /// Segments that left the window before we fetched them.
    pub skipped: u64,
    /// The media sequence went back to segments never seen.
    pub reset: bool,
}

/// The state of one live playlist.
#[derive(Clone, Debug, Default)]
pub struct LiveWindow {
    /// The media sequence number of the next segment to fetch.
    next: Option<u64>,
    recent: VecDeque<(u64, String)>,
}

impl LiveWindow {
    /// Takes a reloaded playlist; returns what is new in it. A first load
    /// (or a reset) starts at the live edge, or with `align`, at the last
    /// segment whose program date-time is not after it.
    pub fn update(&mut self, playlist: &MediaPlaylist, align: Option<UtcMs>) -> Update {
        let segments = &playlist.segments;
        let (Some(first), Some(last)) = (segments.first(), segments.last()) else {
            return Update::default();
        };
        let aligned = align.and_then(|t| {
            segments
                .iter()
                .rev()
                .find(|s| s.program_date_time.is_some_and(|p| p <= t))
        });
        let edge = aligned
            .unwrap_or(&segments[segments.len().saturating_sub(LIVE_EDGE_SEGMENTS)])
            .msn;
        let seen = |s: &MediaSegment| self.recent.iter().any(|(n, u)| *n == s.msn && *u == s.uri);
        // A segment with a number we fetched but another URI: renumbered.
        let renumbered = segments
            .iter()
            .any(|s| self.recent.iter().any(|(n, u)| *n == s.msn && *u != s.uri));
        let (from, skipped, reset) = match self.next {
            None => (edge, 0, false),
            Some(next) if last.msn < next || renumbered => {
                if !renumbered && seen(last) {
                    return Update::default();
                }
                (edge, 0, true)
            }
            Some(next) if next < first.msn => (first.msn, first.msn - next, false),
            Some(next) => (next, 0, false),
        };
        if reset {
            self.recent.clear();
        }
        let new: Vec<MediaSegment> = segments.iter().filter(|s| s.msn >= from).cloned().collect();
        for s in &new {
            if self.recent.len() == RECENT {
                self.recent.pop_front();
            }
            self.recent.push_back((s.msn, s.uri.clone()));
        }
        self.next = Some(last.msn.saturating_add(1));
        Update {
            new,
            skipped,
            reset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dvr_common::Ticks;

    fn playlist(first: u64, count: u64, prefix: &str) -> MediaPlaylist {
        MediaPlaylist {
            target_duration: Ticks::from_secs(2),
            media_sequence: first,
            segments: (first..first + count)
                .map(|msn| MediaSegment {
                    msn,
                    uri: format!("{prefix}{msn}.ts"),
                    duration: Ticks::from_secs(2),
                    program_date_time: None,
                    discontinuity: false,
                    key: None,
                })
                .collect(),
            ..MediaPlaylist::default()
        }
    }

    impl LiveWindow {
        fn update_plain(&mut self, playlist: &MediaPlaylist) -> Update {
            self.update(playlist, None)
        }
    }

    fn numbers(u: &Update) -> Vec<u64> {
        u.new.iter().map(|s| s.msn).collect()
    }

    #[test]
    fn follows_the_window_once_per_segment_in_order() {
        let mut w = LiveWindow::default();
        assert_eq!(
            numbers(&w.update_plain(&playlist(10, 6, "a"))),
            vec![13, 14, 15]
        );
        assert_eq!(
            w.update_plain(&playlist(10, 6, "a")),
            Update::default(),
            "unchanged"
        );
        assert_eq!(
            numbers(&w.update_plain(&playlist(12, 6, "a"))),
            vec![16, 17]
        );
        // A stale copy from a cache: nothing, and no reset.
        assert_eq!(w.update_plain(&playlist(11, 6, "a")), Update::default());
        // We fell behind: what left the window is counted.
        let u = w.update_plain(&playlist(30, 6, "a"));
        assert_eq!(
            (numbers(&u), u.skipped, u.reset),
            ((30..36).collect(), 12, false)
        );
    }

    #[test]
    fn a_restarted_sequence_is_a_reset_from_the_live_edge() {
        let mut w = LiveWindow::default();
        w.update_plain(&playlist(100, 5, "a"));
        let u = w.update_plain(&playlist(0, 4, "b"));
        assert_eq!((numbers(&u), u.reset), (vec![1, 2, 3], true));
        assert_eq!(numbers(&w.update_plain(&playlist(1, 4, "b"))), vec![4]);
        // Renumbered without going back: the same numbers, other URIs.
        let u = w.update_plain(&playlist(2, 4, "c"));
        assert_eq!((numbers(&u), u.reset), (vec![3, 4, 5], true));
        assert_eq!(w.update_plain(&MediaPlaylist::default()), Update::default());
    }

    #[test]
    fn a_rendition_starts_where_the_other_does() {
        let t0 = UtcMs(1_800_000_000_000);
        let mut audio = playlist(0, 11, "s1_");
        for s in &mut audio.segments {
            s.program_date_time = Some(t0.saturating_add_ms(i64::try_from(s.msn).unwrap() * 2_000));
        }
        let mut w = LiveWindow::default();
        let start = t0.saturating_add_ms(14_000 + 300);
        assert_eq!(numbers(&w.update(&audio, Some(start))), vec![7, 8, 9, 10]);
        // Without date-times, or none early enough: the live edge.
        let mut w = LiveWindow::default();
        assert_eq!(numbers(&w.update(&audio, Some(UtcMs(0)))), vec![8, 9, 10]);
    }
}
