//! HLS media playlists (RFC 8216) over a run of stored segments.
//!
//! Segments are named by the time they start and how long they last
//! (`2026/11/21/14/05/32-02000.ts`), relative to the playlist, so a segment
//! URL means the same bytes forever and any packager replica resolves it. A
//! new `#EXT-X-PROGRAM-DATE-TIME` opens the playlist and follows every
//! discontinuity, which is also marked wherever the tape has a gap.

use std::fmt::Write;

use dvr_common::{Ticks, UtcMs};
use dvr_media::SegmentMeta;

/// A gap on the tape longer than this between two segments is a discontinuity.
pub const GAP_TOLERANCE_MS: i64 = dvr_media::TIMELINE_GAP_TOLERANCE_MS;

/// How the playlist behaves as the tape grows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaylistKind {
    /// A sliding window over live: no type, no end.
    Live,
    /// Grows with live from a fixed start: `EVENT`, no end.
    Event,
    /// A closed range: `VOD` with `#EXT-X-ENDLIST`.
    Vod,
}

/// The path of a segment relative to its stream's playlists.
pub fn segment_path(meta: &SegmentMeta) -> String {
    let mut out = String::with_capacity(32);
    push_segment_path(&mut out, meta);
    out
}

/// [`segment_path`] appended to `out`, without a temporary string: a day's
/// playlist writes thousands.
fn push_segment_path(out: &mut String, meta: &SegmentMeta) {
    let c = meta.utc_start.civil();
    let _ = write!(
        out,
        "{:04}/{:02}/{:02}/{:02}/{:02}/{:02}-{:05}.ts",
        c.year,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        meta.duration.as_ms()
    );
}

/// Whether `next` does not continue `previous` on the tape.
pub fn starts_new_run(previous: &SegmentMeta, next: &SegmentMeta) -> bool {
    dvr_media::breaks_timeline(previous.utc_end(), next.utc_start, next.flags.discontinuity)
}

/// At most `max_entries` playlist entries for `segments`: when there are
/// more, runs of consecutive segments are listed as one longer segment.
/// Stored segments start at keyframes, so their concatenation is a valid
/// segment; a merged entry never crosses a discontinuity or a gap, and its
/// URL (start and summed duration) is resolved back to the run it covers.
pub fn coalesce(segments: &[SegmentMeta], max_entries: usize) -> Vec<SegmentMeta> {
    let max_entries = max_entries.max(1);
    if segments.len() <= max_entries {
        return segments.to_vec();
    }
    let mut per_entry = segments.len().div_ceil(max_entries);
    loop {
        let merged = merge_runs(segments, per_entry);
        if merged.len() <= max_entries || per_entry >= segments.len() {
            return merged;
        }
        per_entry += 1;
    }
}

fn merge_runs(segments: &[SegmentMeta], per_entry: usize) -> Vec<SegmentMeta> {
    let mut out: Vec<SegmentMeta> = Vec::new();
    let mut in_entry = 0;
    let mut previous: Option<&SegmentMeta> = None;
    for segment in segments {
        let joins = previous.is_some_and(|p| !starts_new_run(p, segment)) && in_entry < per_entry;
        match out.last_mut() {
            Some(entry) if joins => {
                entry.duration = Ticks(entry.duration.0 + segment.duration.0);
                entry.bytes += segment.bytes;
                entry.flags.independent &= segment.flags.independent;
                in_entry += 1;
            }
            _ => {
                out.push(*segment);
                in_entry = 1;
            }
        }
        previous = Some(segment);
    }
    out
}

/// How a media playlist is written besides its segments.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rendering<'a> {
    /// A `tracks-1,2/` directory before every segment path (`videoN`).
    pub prefix: &'a str,
    /// Appended to every segment URI (e.g. `token=abc`), so authorization
    /// follows the player.
    pub query: Option<&'a str>,
    /// `EXT-X-DISCONTINUITY-SEQUENCE`: timeline breaks on the tape before
    /// the first segment (written when not 0).
    pub discontinuity_sequence: u64,
}

/// Renders a media playlist.
pub fn media_playlist(kind: PlaylistKind, segments: &[SegmentMeta], how: Rendering<'_>) -> String {
    let Rendering {
        prefix,
        query,
        discontinuity_sequence,
    } = how;
    let mut out = String::with_capacity(128 + segments.len() * 96);
    let target = segments
        .iter()
        .map(|s| s.duration)
        .max()
        .unwrap_or(Ticks::from_secs(2));
    // TARGETDURATION is the longest EXTINF rounded up to whole seconds.
    let target_secs = (target.0 + 89_999) / 90_000;
    out.push_str("#EXTM3U\n#EXT-X-VERSION:3\n");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", target_secs.max(1));
    let _ = writeln!(
        out,
        "#EXT-X-MEDIA-SEQUENCE:{}",
        segments.first().map_or(0, |s| s.seq)
    );
    if discontinuity_sequence > 0 {
        let _ = writeln!(
            out,
            "#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}"
        );
    }
    match kind {
        PlaylistKind::Live => {}
        PlaylistKind::Event => out.push_str("#EXT-X-PLAYLIST-TYPE:EVENT\n"),
        PlaylistKind::Vod => out.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n"),
    }
    if segments.iter().all(|s| s.flags.independent) {
        out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    }
    let mut previous: Option<&SegmentMeta> = None;
    for segment in segments {
        let new_run = previous.is_none_or(|p| starts_new_run(p, segment));
        if previous.is_some() && new_run {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if new_run {
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", segment.utc_start);
        }
        let _ = writeln!(out, "#EXTINF:{},", segment.duration.display_secs());
        out.push_str(prefix);
        push_segment_path(&mut out, segment);
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        out.push('\n');
        previous = Some(segment);
    }
    if kind == PlaylistKind::Vod {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

/// The UTC instant at the end of the last segment, if any.
pub fn end_of(segments: &[SegmentMeta]) -> Option<UtcMs> {
    segments.last().map(SegmentMeta::utc_end)
}

#[cfg(test)]
mod tests {
    use dvr_media::SegmentFlags;

    use super::*;

    fn meta(seq: u64, start_ms: i64, dur_ms: i64, discontinuity: bool) -> SegmentMeta {
        SegmentMeta {
            seq,
            utc_start: UtcMs(start_ms),
            duration: Ticks::from_ms(dur_ms),
            pts_start: Ticks(0),
            bytes: 188,
            flags: SegmentFlags {
                discontinuity,
                independent: true,
            },
        }
    }

    #[test]
    fn vod_playlist_with_a_gap() {
        let t = 1_795_356_332_040;
        let segments = [
            meta(7, t, 2000, false),
            meta(8, t + 2000, 2000, false),
            // 10 s of nothing, then the source came back.
            meta(9, t + 14_000, 1960, true),
        ];
        let text = media_playlist(
            PlaylistKind::Vod,
            &segments,
            Rendering {
                query: Some("token=abc"),
                ..Rendering::default()
            },
        );
        let expected = "#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-PROGRAM-DATE-TIME:2026-11-22T14:05:32.040Z
#EXTINF:2.000,
2026/11/22/14/05/32-02000.ts?token=abc
#EXTINF:2.000,
2026/11/22/14/05/34-02000.ts?token=abc
#EXT-X-DISCONTINUITY
#EXT-X-PROGRAM-DATE-TIME:2026-11-22T14:05:46.040Z
#EXTINF:1.960,
2026/11/22/14/05/46-01960.ts?token=abc
#EXT-X-ENDLIST
";
        assert_eq!(text, expected);
    }

    #[test]
    fn long_lists_are_coalesced_within_runs() {
        // Ten 2 s segments, a gap, five more.
        let segments: Vec<SegmentMeta> = (0..10)
            .map(|i| meta(i, i as i64 * 2000, 2000, false))
            .chain((10..15).map(|i| meta(i, 30_000 + (i as i64 - 10) * 2000, 2000, i == 10)))
            .collect();
        assert_eq!(coalesce(&segments, 100), segments);
        let merged = coalesce(&segments, 4);
        assert!(merged.len() <= 4, "{merged:?}");
        let total: i64 = merged.iter().map(|m| m.duration.0).sum();
        assert_eq!(total, Ticks::from_secs(30).0);
        assert_eq!(merged.iter().map(|m| m.bytes).sum::<u64>(), 15 * 188);
        // No entry spans the gap: one starts exactly where the tape resumes.
        assert!(merged.iter().any(|m| m.seq == 10 && m.flags.discontinuity));
        let text = media_playlist(PlaylistKind::Vod, &merged, Rendering::default());
        assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{text}");
    }

    #[test]
    fn a_time_gap_without_a_flag_is_still_a_discontinuity() {
        let segments = [meta(1, 0, 2000, false), meta(2, 3000, 2000, false)];
        let text = media_playlist(PlaylistKind::Event, &segments, Rendering::default());
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:EVENT\n"));
        assert!(!text.contains("DISCONTINUITY-SEQUENCE"), "{text}");
        let live = Rendering {
            discontinuity_sequence: 7,
            ..Rendering::default()
        };
        let text = media_playlist(PlaylistKind::Live, &segments, live);
        assert!(
            text.contains("#EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-DISCONTINUITY-SEQUENCE:7\n"),
            "{text}"
        );
        assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1);
        assert!(!text.contains("ENDLIST"));
        assert_eq!(end_of(&segments), Some(UtcMs(5000)));
    }
}
