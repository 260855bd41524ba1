//! HLS media playlists (RFC 8216) over a run of stored segments.
//!
//! Segments are named by the time they start and how long they last
//! (`2026/11/21/14/05/32-02000.ts`), relative to the playlist, so a segment
//! URL means the same bytes forever and any packager replica resolves it. A
//! new `#EXT-X-PROGRAM-DATE-TIME` opens the playlist and follows every
//! discontinuity, which is also marked wherever the tape has a gap.
//!
//! The same writer gives CMAF HLS ([`Media::Fmp4`]): version 7, an
//! `#EXT-X-MAP` naming each run's init segment where it changes, and
//! `frag-T-MS.m4s` segments named by their tape time in 90 kHz ticks, which
//! the packager makes from the same stored TS on request ([`crate::cmaf`]).

use std::io::Write;

use dvr_common::{Ticks, UtcMs};
use dvr_media::fmp4::InitId;
use dvr_media::SegmentMeta;

/// A gap on the tape longer than this between two segments is a discontinuity.
pub const GAP_TOLERANCE_MS: i64 = dvr_media::TIMELINE_GAP_TOLERANCE_MS;

/// The most stored segments one playlist entry (and so one segment URL)
/// joins: a URL's work is bounded by it, not by what the URL claims. A
/// day of 0.5 s segments fits 7,200 entries with 24 per entry; a range
/// whose gaps break the runs so often that it does not fit lists more
/// entries rather than longer ones.
pub const MAX_RUN_SEGMENTS: usize = 64;

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
    let mut out = Vec::with_capacity(32);
    push_segment_path(&mut out, meta);
    text_of(out)
}

/// Two ASCII digits of every number below 100.
const PAIRS: &[u8; 200] = b"00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";

/// The two digits of `value` (below 100) into `slot`.
fn put2(slot: &mut [u8], value: u32) {
    let at = (value % 100) as usize * 2;
    slot.copy_from_slice(&PAIRS[at..at + 2]);
}

/// [`segment_path`] appended to `out`. A day's playlist writes 7,200, so
/// the usual shape (a four-digit year, under 100 s) is filled into a fixed
/// template two digits at a time: `write!` with seven padded fields was
/// most of the playlist's generation time.
fn push_segment_path(out: &mut Vec<u8>, meta: &SegmentMeta) {
    let c = meta.utc_start.civil();
    let ms = meta.duration.as_ms();
    match (u32::try_from(c.year), u32::try_from(ms)) {
        (Ok(year), Ok(ms)) if year < 10_000 && ms < 100_000 => {
            let mut path = *b"0000/00/00/00/00/00-00000.ts";
            put2(&mut path[0..2], year / 100);
            put2(&mut path[2..4], year);
            put2(&mut path[5..7], c.month);
            put2(&mut path[8..10], c.day);
            put2(&mut path[11..13], c.hour);
            put2(&mut path[14..16], c.minute);
            put2(&mut path[17..19], c.second);
            path[20] = b'0' + (ms / 10_000) as u8;
            put2(&mut path[21..23], ms / 100);
            put2(&mut path[23..25], ms);
            out.extend_from_slice(&path);
        }
        // Any other year or duration: never recorded, but exact.
        _ => {
            let _ = write!(
                out,
                "{:04}/{:02}/{:02}/{:02}/{:02}/{:02}-{:05}.ts",
                c.year, c.month, c.day, c.hour, c.minute, c.second, ms
            );
        }
    }
}

/// `#EXTINF:{seconds},` and a newline, the seconds as
/// [`Ticks::display_secs`] writes them (`2.000`).
fn push_extinf(out: &mut Vec<u8>, duration: Ticks) {
    out.extend_from_slice(b"#EXTINF:");
    match u64::try_from(duration.as_ms()) {
        Ok(ms) => {
            match ms / 1000 {
                secs @ 0..=9 => out.push(b'0' + secs as u8),
                secs @ 10..=99 => out.extend_from_slice(&PAIRS[secs as usize * 2..][..2]),
                secs => {
                    let _ = write!(out, "{secs}");
                }
            }
            let fraction = (ms % 1000) as u32;
            let mut tail = *b".000,\n";
            tail[1] = b'0' + (fraction / 100) as u8;
            put2(&mut tail[2..4], fraction);
            out.extend_from_slice(&tail);
        }
        Err(_) => {
            let _ = writeln!(out, "{},", duration.display_secs());
        }
    }
}

/// Text written as ASCII bytes.
fn text_of(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
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
///
/// `segments` is read in place (a day's are 43,200 records of the index
/// cache), once, or again for each wider merge a gappy tape needs.
pub fn coalesce<I>(segments: I, max_entries: usize) -> Vec<SegmentMeta>
where
    I: ExactSizeIterator<Item = SegmentMeta> + Clone,
{
    let max_entries = max_entries.max(1);
    let count = segments.len();
    if count <= max_entries {
        return segments.collect();
    }
    let mut per_entry = count.div_ceil(max_entries).min(MAX_RUN_SEGMENTS);
    loop {
        let merged = merge_runs(segments.clone(), per_entry, max_entries);
        if merged.len() <= max_entries || per_entry >= count.min(MAX_RUN_SEGMENTS) {
            return merged;
        }
        per_entry += 1;
    }
}

fn merge_runs(
    segments: impl Iterator<Item = SegmentMeta>,
    per_entry: usize,
    expected: usize,
) -> Vec<SegmentMeta> {
    let mut out: Vec<SegmentMeta> = Vec::with_capacity(expected + 1);
    let mut in_entry = 0;
    let mut previous: Option<SegmentMeta> = None;
    for segment in segments {
        let joins = previous.is_some_and(|p| !starts_new_run(&p, &segment)) && in_entry < per_entry;
        match out.last_mut() {
            Some(entry) if joins => {
                entry.duration = Ticks(entry.duration.0 + segment.duration.0);
                entry.bytes += segment.bytes;
                entry.flags.independent &= segment.flags.independent;
                in_entry += 1;
            }
            _ => {
                out.push(segment);
                in_entry = 1;
            }
        }
        previous = Some(segment);
    }
    out
}

/// What a playlist's segments are.
#[derive(Clone, Copy, Debug, Default)]
pub enum Media<'a> {
    /// The stored MPEG-TS.
    #[default]
    Ts,
    /// fMP4 made from it: the init segment of each run of the playlist (a
    /// run ends at a gap or discontinuity), in order.
    Fmp4(&'a [RunInit]),
}

/// A run's init segment: its id and the segment it is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunInit {
    /// The tape time of the segment it is made from (the run's first,
    /// unless that one could not be read).
    pub at: i64,
    /// Its name.
    pub id: InitId,
}

/// The tape time of a segment in fMP4 names and DASH: its UTC start in
/// 90 kHz ticks since the epoch (a millisecond is 90 ticks).
pub fn tape_start(meta: &SegmentMeta) -> i64 {
    meta.utc_start.0.saturating_mul(dvr_common::TICKS_PER_MS)
}

/// The name of an init segment: `init-T-ID.mp4`, `T` the tape time of the
/// segment the packager reads to make it.
pub fn init_name(init: RunInit) -> String {
    format!("init-{}-{}.mp4", init.at, init.id)
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
    /// TS or fMP4 segments.
    pub media: Media<'a>,
}

/// Renders a media playlist.
pub fn media_playlist(kind: PlaylistKind, segments: &[SegmentMeta], how: Rendering<'_>) -> String {
    let Rendering {
        prefix,
        query,
        discontinuity_sequence,
        media,
    } = how;
    // An entry is 45 bytes, plus the prefix and the query.
    let per_entry = 48 + prefix.len() + query.map_or(0, |q| q.len() + 1);
    let mut out: Vec<u8> = Vec::with_capacity(256 + segments.len() * per_entry);
    let target = segments
        .iter()
        .map(|s| s.duration)
        .max()
        .unwrap_or(Ticks::from_secs(2));
    // TARGETDURATION is the longest EXTINF rounded up to whole seconds.
    let target_secs = (target.0 + 89_999) / 90_000;
    out.extend_from_slice(match media {
        Media::Ts => b"#EXTM3U\n#EXT-X-VERSION:3\n",
        // EXT-X-MAP in a playlist without I-frames only needs 6; 7 is what
        // Apple's authoring spec asks of fMP4.
        Media::Fmp4(_) => b"#EXTM3U\n#EXT-X-VERSION:7\n",
    });
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
        PlaylistKind::Event => out.extend_from_slice(b"#EXT-X-PLAYLIST-TYPE:EVENT\n"),
        PlaylistKind::Vod => out.extend_from_slice(b"#EXT-X-PLAYLIST-TYPE:VOD\n"),
    }
    if segments.iter().all(|s| s.flags.independent) {
        out.extend_from_slice(b"#EXT-X-INDEPENDENT-SEGMENTS\n");
    }
    let mut previous: Option<&SegmentMeta> = None;
    let mut run = 0usize;
    let mut mapped: Option<InitId> = None;
    for segment in segments {
        let new_run = previous.is_none_or(|p| starts_new_run(p, segment));
        if previous.is_some() && new_run {
            out.extend_from_slice(b"#EXT-X-DISCONTINUITY\n");
            run += 1;
        }
        if new_run {
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", segment.utc_start);
            if let Media::Fmp4(inits) = media {
                // A new map only where the init changes: the same
                // parameter sets after a gap keep the one loaded.
                let init = inits.get(run).or(inits.last()).copied();
                if let Some(init) = init.filter(|i| mapped != Some(i.id)) {
                    let _ = write!(out, "#EXT-X-MAP:URI=\"{prefix}{}", init_name(init));
                    if let Some(q) = query {
                        out.push(b'?');
                        out.extend_from_slice(q.replace('"', "%22").as_bytes());
                    }
                    out.extend_from_slice(b"\"\n");
                    mapped = Some(init.id);
                }
            }
        }
        push_extinf(&mut out, segment.duration);
        out.extend_from_slice(prefix.as_bytes());
        match media {
            Media::Ts => push_segment_path(&mut out, segment),
            Media::Fmp4(_) => {
                let _ = write!(
                    out,
                    "frag-{}-{}.m4s",
                    tape_start(segment),
                    segment.duration.as_ms()
                );
            }
        }
        if let Some(q) = query {
            out.push(b'?');
            out.extend_from_slice(q.as_bytes());
        }
        out.push(b'\n');
        previous = Some(segment);
    }
    if kind == PlaylistKind::Vod {
        out.extend_from_slice(b"#EXT-X-ENDLIST\n");
    }
    text_of(out)
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
    fn hand_written_numbers_match_the_formatter() {
        // Times from 1970 to past the year 9999, durations from 0 to past
        // 99,999 ms: the template and the fallback both.
        let mut t: i64 = 0;
        let mut d: i64 = 0;
        for _ in 0..5000 {
            t += 52_003_117_251;
            let m = meta(1, t, d, false);
            let c = m.utc_start.civil();
            let expected = format!(
                "{:04}/{:02}/{:02}/{:02}/{:02}/{:02}-{:05}.ts",
                c.year,
                c.month,
                c.day,
                c.hour,
                c.minute,
                c.second,
                m.duration.as_ms()
            );
            assert_eq!(segment_path(&m), expected);
            let mut extinf = Vec::new();
            push_extinf(&mut extinf, m.duration);
            assert_eq!(
                text_of(extinf),
                format!("#EXTINF:{},\n", m.duration.display_secs())
            );
            d = (d * 7 + 13) % 400_000;
        }
        assert!(t > 253_402_300_800_000, "reached past year 9999");
    }

    #[test]
    fn long_lists_are_coalesced_within_runs() {
        // Ten 2 s segments, a gap, five more.
        let segments: Vec<SegmentMeta> = (0..10)
            .map(|i| meta(i, i as i64 * 2000, 2000, false))
            .chain((10..15).map(|i| meta(i, 30_000 + (i as i64 - 10) * 2000, 2000, i == 10)))
            .collect();
        assert_eq!(coalesce(segments.iter().copied(), 100), segments);
        let merged = coalesce(segments.iter().copied(), 4);
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
    fn fmp4_playlists_map_each_init_where_it_changes() {
        let t = 1_795_356_332_040;
        let segments = [
            meta(7, t, 2000, false),
            meta(8, t + 2000, 2000, false),
            meta(9, t + 14_000, 1960, true),
            meta(10, t + 20_000, 2000, true),
        ];
        let init = |segment: &SegmentMeta, byte| RunInit {
            at: tape_start(segment),
            id: InitId([byte; 8]),
        };
        let inits = [
            init(&segments[0], 1),
            init(&segments[2], 1),
            init(&segments[3], 2),
        ];
        let how = Rendering {
            prefix: "tracks-1/",
            query: Some("token=abc"),
            media: Media::Fmp4(&inits),
            ..Rendering::default()
        };
        let text = media_playlist(PlaylistKind::Vod, &segments, how);
        let expected = "#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-PROGRAM-DATE-TIME:2026-11-22T14:05:32.040Z
#EXT-X-MAP:URI=\"tracks-1/init-161582069883600-0101010101010101.mp4?token=abc\"
#EXTINF:2.000,
tracks-1/frag-161582069883600-2000.m4s?token=abc
#EXTINF:2.000,
tracks-1/frag-161582070063600-2000.m4s?token=abc
#EXT-X-DISCONTINUITY
#EXT-X-PROGRAM-DATE-TIME:2026-11-22T14:05:46.040Z
#EXTINF:1.960,
tracks-1/frag-161582071143600-1960.m4s?token=abc
#EXT-X-DISCONTINUITY
#EXT-X-PROGRAM-DATE-TIME:2026-11-22T14:05:52.040Z
#EXT-X-MAP:URI=\"tracks-1/init-161582071683600-0202020202020202.mp4?token=abc\"
#EXTINF:2.000,
tracks-1/frag-161582071683600-2000.m4s?token=abc
#EXT-X-ENDLIST
";
        assert_eq!(text, expected);
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
