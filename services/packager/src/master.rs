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
use dvr_media::psi::Program;
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

/// The tracks of `videoN` in `program`: the N-th video track (1-based) and
/// every audio track, or `None` if there is no such video track.
pub fn video_track_set(program: &Program, n: u8) -> Option<TrackSet> {
    let numbers_of = |kind| {
        program
            .streams
            .iter()
            .enumerate()
            .filter(move |(_, s)| s.codec.kind() == kind)
            .map(|(i, _)| i + 1)
    };
    let video = numbers_of(TrackKind::Video).nth(usize::from(n).checked_sub(1)?)?;
    let mut numbers = vec![video];
    numbers.extend(numbers_of(TrackKind::Audio));
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

/// `uri?query`; a `"` (which would end a quoted `URI=` attribute) is
/// percent-encoded.
fn with_query(mut uri: String, query: Option<&str>) -> String {
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        uri.push('?');
        uri.push_str(q);
    }
    uri.replace('"', "%22")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use dvr_media::codec::{AudioParams, Codec, TrackInfo, VideoParams};
    use dvr_media::psi::{Program, Stream};

    use super::*;

    /// Tracks `(codec, language, codec string, width)` with `rates`.
    fn tracks(list: &[(Codec, Option<&str>, &str, u32)], rates: &[u64]) -> SegmentTracks {
        let streams: Vec<Stream> = list
            .iter()
            .enumerate()
            .map(|(i, (codec, language, _, _))| Stream {
                pid: 256 + i as u16,
                stream_type: 0x1b,
                codec: *codec,
                language: language.map(str::to_owned),
            })
            .collect();
        let infos = list
            .iter()
            .zip(&streams)
            .map(|((_, _, codec_string, width), s)| TrackInfo {
                video: (s.codec.kind() == TrackKind::Video).then(|| VideoParams {
                    codec_string: (*codec_string).into(),
                    width: *width,
                    height: width * 9 / 16,
                    frame_rate: None,
                }),
                audio: (s.codec.kind() == TrackKind::Audio).then(|| AudioParams {
                    codec_string: (*codec_string).into(),
                    sample_rate: 48_000,
                    channels: 2,
                }),
                ..s.track_info()
            })
            .collect();
        SegmentTracks {
            program: Arc::new(Program {
                number: 1,
                pmt_pid: 0x1000,
                pcr_pid: 256,
                version: 0,
                streams,
                pat_section: Vec::new(),
                pmt_section: Vec::new(),
            }),
            tracks: infos,
            bitrates: rates.to_vec(),
        }
    }

    #[test]
    fn two_renditions_and_two_languages() {
        let t = tracks(
            &[
                (Codec::H264, None, "avc1.64001f", 1280),
                (Codec::H264, None, "avc1.4d401e", 640),
                (Codec::Aac, Some("eng"), "mp4a.40.2", 0),
                (Codec::Ac3, Some("deu"), "ac-3", 0),
            ],
            &[3_000_000, 800_000, 128_000, 384_000],
        );
        assert!(t.needs_master());
        let text = master_playlist(&t, "index-1700000000-60.m3u8", Some("token=x"));
        let expected = "#EXTM3U
#EXT-X-VERSION:4
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"eng\",LANGUAGE=\"eng\",DEFAULT=YES,AUTOSELECT=YES,URI=\"tracks-3/index-1700000000-60.m3u8?token=x\"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"deu\",LANGUAGE=\"deu\",DEFAULT=NO,AUTOSELECT=YES,URI=\"tracks-4/index-1700000000-60.m3u8?token=x\"
#EXT-X-STREAM-INF:BANDWIDTH=3384000,CODECS=\"avc1.64001f,mp4a.40.2,ac-3\",RESOLUTION=1280x720,AUDIO=\"audio\"
tracks-1/index-1700000000-60.m3u8?token=x
#EXT-X-STREAM-INF:BANDWIDTH=1184000,CODECS=\"avc1.4d401e,mp4a.40.2,ac-3\",RESOLUTION=640x360,AUDIO=\"audio\"
tracks-2/index-1700000000-60.m3u8?token=x
";
        assert_eq!(text, expected);

        let variants = video_variants(&t, "timeshift_abs_video-1700000000.m3u8", None);
        let uris: Vec<&str> = variants.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            uris,
            [
                "timeshift_abs_video1-1700000000.m3u8",
                "timeshift_abs_video2-1700000000.m3u8"
            ]
        );
        assert!(variants.contains("BANDWIDTH=3512000,CODECS=\"avc1.64001f,mp4a.40.2,ac-3\""));
        assert_eq!(
            video_track_set(&t.program, 2).map(TrackSet::dir).as_deref(),
            Some("tracks-2,3,4")
        );
        assert_eq!(video_track_set(&t.program, 3), None);
        assert_eq!(video_track_set(&t.program, 0), None);
    }

    #[test]
    fn audio_only_languages_are_variants_and_unknown_codecs_are_left_out() {
        let mut t = tracks(
            &[
                (Codec::Aac, Some("eng"), "mp4a.40.2", 0),
                (Codec::Aac, Some("fra"), "mp4a.40.2", 0),
            ],
            &[64_000, 0],
        );
        let text = master_playlist(&t, "index.m3u8", None);
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:4\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=64000,CODECS=\"mp4a.40.2\"\ntracks-1/index.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=1,CODECS=\"mp4a.40.2\"\ntracks-2/index.m3u8\n"
        );
        // A video whose SPS was not found: no CODECS rather than a wrong one.
        t = tracks(
            &[
                (Codec::H264, None, "avc1.64001f", 640),
                (Codec::Aac, Some("eng"), "mp4a.40.2", 0),
                (Codec::Aac, Some("deu"), "mp4a.40.2", 0),
            ],
            &[1, 1, 1],
        );
        t.tracks[2].audio = None;
        let text = master_playlist(&t, "index.m3u8", None);
        assert!(!text.contains("CODECS"), "{text}");
        assert!(
            text.contains("RESOLUTION=640x360,AUDIO=\"audio\""),
            "{text}"
        );
    }
}
