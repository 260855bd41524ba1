//! HLS master playlists for streams with several video or audio tracks.
//!
//! A channel recorded as one transport stream with two languages (or two
//! renditions of the picture) is offered the way RFC 8216 and Apple's
//! players expect: one `EXT-X-STREAM-INF` variant per video track and one
//! `EXT-X-MEDIA` audio rendition per audio track, each a per-track playlist
//! in a `tracks-N/` directory next to the master (the seeds' Flussonic
//! naming). The per-track playlists list the same segments as the master's
//! form would; their segment URLs resolve under `tracks-N/`, where the
//! packager cuts each stored segment down to that track.
//!
//! Set-top boxes that know no `EXT-X-MEDIA` ask for `video.m3u8` instead: a
//! variant playlist of `videoN` playlists, each the N-th video track with
//! every audio track in one transport stream ([`video_variants`]).
//!
//! Everything here is pure: the tracks come from probing the first segment
//! of the window, the names from the request.

use std::fmt::Write;

use dvr_media::codec::TrackKind;
use dvr_media::tracks::SegmentTracks;

use crate::url::TrackSet;

const AUDIO_GROUP: &str = "audio";

/// The master playlist for `tracks`, whose variants are `file` (the
/// requested playlist's own name, e.g. `index-1700000000-3600.m3u8`) in
/// per-track directories. `query` (the request's, whole: a token, a
/// `timeshift_abs` start) follows every URI so all renditions share one
/// timeline and one authorization.
pub fn master_playlist(tracks: &SegmentTracks, file: &str, query: Option<&str>) -> String {
    let videos = tracks.numbers_of(TrackKind::Video);
    let audios = tracks.numbers_of(TrackKind::Audio);
    let uri = |numbers: &[usize]| {
        let dir = TrackSet::of(numbers).map_or_else(String::new, TrackSet::dir);
        with_query(format!("{dir}/{file}"), query)
    };
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:4\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    let audio_codecs = distinct_codecs(tracks, &audios);
    let audio_known = audios
        .iter()
        .all(|&n| tracks.tracks[n - 1].codec_string().is_some());
    let audio_peak = audios.iter().map(|&n| rate(tracks, n)).max().unwrap_or(0);
    if !videos.is_empty() {
        for (i, &n) in audios.iter().enumerate() {
            let track = &tracks.tracks[n - 1];
            let name = track
                .language
                .clone()
                .unwrap_or_else(|| format!("audio {}", i + 1));
            let _ = write!(
                out,
                "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"{AUDIO_GROUP}\",NAME=\"{name}\","
            );
            if let Some(language) = &track.language {
                let _ = write!(out, "LANGUAGE=\"{language}\",");
            }
            let default = if i == 0 { "YES" } else { "NO" };
            let _ = writeln!(
                out,
                "DEFAULT={default},AUTOSELECT=YES,URI=\"{}\"",
                uri(&[n])
            );
        }
        for &n in &videos {
            let track = &tracks.tracks[n - 1];
            let mut codecs: Vec<&str> = track.codec_string().into_iter().collect();
            codecs.extend(audio_codecs.iter().copied());
            let _ = write!(
                out,
                "#EXT-X-STREAM-INF:BANDWIDTH={}",
                rate(tracks, n) + audio_peak
            );
            // CODECS must name every format or none.
            if track.codec_string().is_some() && audio_known {
                let _ = write!(out, ",CODECS=\"{}\"", codecs.join(","));
            }
            if let Some(v) = &track.video {
                let _ = write!(out, ",RESOLUTION={}x{}", v.width, v.height);
            }
            if !audios.is_empty() {
                let _ = write!(out, ",AUDIO=\"{AUDIO_GROUP}\"");
            }
            let _ = writeln!(out, "\n{}", uri(&[n]));
        }
    } else {
        // Audio only: each language is a variant of its own.
        for &n in &audios {
            let track = &tracks.tracks[n - 1];
            let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={}", rate(tracks, n));
            if let Some(codec) = track.codec_string() {
                let _ = write!(out, ",CODECS=\"{codec}\"");
            }
            let _ = writeln!(out, "\n{}", uri(&[n]));
        }
    }
    out
}

/// The `video` variant playlist: one `videoN` playlist per video track.
/// `file` is the requested name; its `video` becomes `videoN`.
pub fn video_variants(tracks: &SegmentTracks, file: &str, query: Option<&str>) -> String {
    let videos = tracks.numbers_of(TrackKind::Video);
    let audios = tracks.numbers_of(TrackKind::Audio);
    let audio_rate: u64 = audios.iter().map(|&n| rate(tracks, n)).sum();
    let audio_codecs = distinct_codecs(tracks, &audios);
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for (i, &n) in videos.iter().enumerate() {
        let track = &tracks.tracks[n - 1];
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={}",
            rate(tracks, n) + audio_rate
        );
        if let Some(codec) = track.codec_string() {
            let mut codecs = vec![codec];
            codecs.extend(audio_codecs.iter().copied());
            let _ = write!(out, ",CODECS=\"{}\"", codecs.join(","));
        }
        if let Some(v) = &track.video {
            let _ = write!(out, ",RESOLUTION={}x{}", v.width, v.height);
        }
        let name = file.replacen("video", &format!("video{}", i + 1), 1);
        let _ = writeln!(out, "\n{}", with_query(name, query));
    }
    out
}

/// The tracks of `videoN`: the N-th video track (1-based) and every audio
/// track, or `None` if there is no such video track.
pub fn video_track_set(tracks: &SegmentTracks, n: u8) -> Option<TrackSet> {
    let video = *tracks
        .numbers_of(TrackKind::Video)
        .get(usize::from(n).checked_sub(1)?)?;
    let mut numbers = vec![video];
    numbers.extend(tracks.numbers_of(TrackKind::Audio));
    TrackSet::of(&numbers)
}

fn rate(tracks: &SegmentTracks, n: usize) -> u64 {
    tracks.bitrates.get(n - 1).copied().unwrap_or(0).max(1)
}

/// The distinct known codec strings of `numbers`.
fn distinct_codecs<'a>(tracks: &'a SegmentTracks, numbers: &[usize]) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for &n in numbers {
        if let Some(codec) = tracks.tracks[n - 1].codec_string() {
            if !out.contains(&codec) {
                out.push(codec);
            }
        }
    }
    out
}

fn with_query(mut uri: String, query: Option<&str>) -> String {
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        uri.push('?');
        uri.push_str(q);
    }
    uri
}
