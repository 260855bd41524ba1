//! HLS playlists (`dvr_ingest::input::playlist::parse`) from any bytes: an
//! HLS input reads them from an origin we do not control.
//!
//! Shared by the `m3u8` fuzz target and the ingest crate's corpus replay
//! test. Besides not panicking, what parses keeps the parser's bounds (at
//! most `MAX_SEGMENTS` segments, `MAX_VARIANTS` variants, a target duration
//! within its range), numbers its segments one by one from the media
//! sequence, never carries a program date-time across a discontinuity it
//! was not given after, and every program date-time written back in RFC
//! 3339 reads as the same instant.

use dvr_common::{Ticks, UtcMs};
use dvr_ingest::input::playlist::{
    self, Playlist, MAX_SEGMENTS, MAX_TARGET_DURATION_SECS, MAX_VARIANTS,
};

/// Parses `data` as a playlist and checks what came out.
pub fn exercise_m3u8(data: &[u8]) {
    match playlist::parse(data) {
        Err(e) => assert!(!e.to_string().is_empty()),
        Ok(Playlist::Master(master)) => {
            assert!(!master.variants.is_empty());
            assert!(master.variants.len() + master.renditions.len() <= MAX_VARIANTS);
            for v in &master.variants {
                assert!(!v.uri.is_empty() && !v.uri.starts_with('#'), "{v:?}");
            }
        }
        Ok(Playlist::Media(media)) => {
            assert!(media.segments.len() <= MAX_SEGMENTS);
            let target = media.target_duration;
            assert!(
                target >= Ticks::from_secs(1)
                    && target <= Ticks::from_secs(MAX_TARGET_DURATION_SECS)
            );
            for (i, s) in (0u64..).zip(&media.segments) {
                // The last segment may be numbered u64::MAX: count from 0.
                assert_eq!(
                    Some(s.msn),
                    media.media_sequence.checked_add(i),
                    "numbered one by one"
                );
                assert!(s.duration >= Ticks::ZERO, "{s:?}");
                assert!(!s.uri.is_empty() && !s.uri.starts_with('#'), "{s:?}");
                if let Some(t) = s.program_date_time {
                    round_trips(t);
                }
            }
        }
    }
    // Any line may be a date-time.
    if let Ok(text) = std::str::from_utf8(data) {
        for line in text.lines().take(64) {
            if let Some(t) = playlist::parse_date_time(line) {
                round_trips(t);
            }
        }
    }
}

/// A date-time written in RFC 3339 (years 0 to 9999) parses back to itself.
fn round_trips(t: UtcMs) {
    let year_10000 = 253_402_300_800_000;
    let year_0 = -62_167_219_200_000;
    if (year_0..year_10000).contains(&t.0) {
        assert_eq!(playlist::parse_date_time(&t.to_string()), Some(t), "{t}");
    }
}
