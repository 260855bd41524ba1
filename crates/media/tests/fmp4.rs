//! The fMP4 writer on every committed clip, judged by ffprobe and ffmpeg.
//!
//! Each clip is cut by the real segmenter, every segment is written as
//! fMP4, and each track's init segment followed by its media segments is
//! handed to ffprobe as one file. It must name the right codec, hold as
//! many frames as the stored TS segments do, at the same presentation times
//! (relative to the first, to the tick), decode without a warning, and
//! the media segments must tile the tape: one's `tfdt` plus its duration is
//! the next one's `tfdt`. Two clips are pinned by hash (golden tests).
//!
//! ffmpeg and ffprobe are required (`make test-deps`); a missing tool fails
//! the test, it never skips it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use dvr_common::{SimulatedClock, UtcMs};
use dvr_media::codec::{Codec, TrackKind};
use dvr_media::fmp4::{Fmp4Error, Fragments, SegmentTiming, TapeClock, Track};
use dvr_media::{Segment, Segmenter, SegmenterConfig};
use dvr_testkit::clips::read as clip;
use serde_json::Value;

/// 2026-11-21T14:00:00Z: where the simulated recording starts.
const T0: UtcMs = UtcMs(1_795_269_600_000);
/// PTS, DTS and PCR are 33-bit.
const WRAP: i64 = 1 << 33;

/// The clip cut as the recorder cuts a live input (2 s target).
fn segments(name: &str) -> Vec<Segment> {
    let clock = SimulatedClock::new(T0);
    let mut segmenter = Segmenter::new(SegmenterConfig::default(), Arc::new(clock));
    let mut out = segmenter.push(&clip(name));
    out.extend(segmenter.finish());
    assert!(out.len() >= 3, "{name} gives several segments");
    out
}

/// Each segment with the timing the index gives it: the run's anchor is
/// the run's first segment.
fn timings(segments: &[Segment]) -> Vec<SegmentTiming> {
    let mut run_start = segments[0].meta();
    segments
        .iter()
        .map(|s| {
            if s.flags.discontinuity {
                run_start = s.meta();
            }
            SegmentTiming::new(&run_start, &s.meta())
        })
        .collect()
}

/// Every segment as fMP4, all tracks.
fn fragments(segments: &[Segment]) -> Vec<Fragments> {
    segments
        .iter()
        .zip(timings(segments))
        .map(|(s, timing)| Fragments::from_ts(&s.payload, &timing, None).unwrap())
        .collect()
}

fn run(program: &str, args: &[&str], path: &Path) -> (String, String) {
    let out = Command::new(program)
        .args(args)
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("{program} (make test-deps): {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{program} failed on {path:?}: {stderr}"
    );
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// ffprobe's streams and packets of a file; ffprobe's own warnings too.
fn probe(path: &Path, streams: &str) -> (Value, String) {
    let (out, warnings) = run(
        "ffprobe",
        &[
            "-v",
            "warning",
            "-of",
            "json",
            "-select_streams",
            streams,
            "-show_entries",
            "stream=id,codec_name,time_base:packet=pts,dts,duration,flags",
        ],
        path,
    );
    (serde_json::from_str(&out).unwrap(), warnings)
}

/// Presentation times of the packets, in 90 kHz ticks relative to the first
/// packet in file order, sorted; and the stream's codec name.
fn relative_pts(probed: &Value) -> (String, Vec<i64>) {
    let stream = &probed["streams"][0];
    let codec = stream["codec_name"].as_str().unwrap_or_default().to_owned();
    let (num, den) = stream["time_base"]
        .as_str()
        .and_then(|tb| tb.split_once('/'))
        .map(|(n, d)| (n.parse::<i64>().unwrap(), d.parse::<i64>().unwrap()))
        .unwrap();
    let pts: Vec<i64> = probed["packets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pts"].as_i64().unwrap())
        .collect();
    let first = pts[0];
    let mut relative: Vec<i64> = pts
        .iter()
        .map(|&p| {
            // TS timestamps wrap at 2^33; mp4 ones do not.
            let d = if den == 90_000 && num == 1 {
                (p - first + WRAP / 2).rem_euclid(WRAP) - WRAP / 2
            } else {
                p - first
            };
            d * num * 90_000 / den
        })
        .collect();
    relative.sort_unstable();
    (codec, relative)
}

/// From the first packet's presentation to the end of the last one, in
/// 90 kHz ticks.
fn span(probed: &Value) -> i64 {
    let stream = &probed["streams"][0];
    let (num, den) = stream["time_base"]
        .as_str()
        .and_then(|tb| tb.split_once('/'))
        .map(|(n, d)| (n.parse::<i64>().unwrap(), d.parse::<i64>().unwrap()))
        .unwrap();
    let packets = probed["packets"].as_array().unwrap();
    let first = packets[0]["pts"].as_i64().unwrap();
    let end = packets
        .iter()
        .map(|p| {
            let pts = p["pts"].as_i64().unwrap();
            let d = (pts - first + WRAP / 2).rem_euclid(WRAP) - WRAP / 2;
            d + p["duration"].as_i64().unwrap_or(0)
        })
        .max()
        .unwrap();
    let begin = packets
        .iter()
        .map(|p| (p["pts"].as_i64().unwrap() - first + WRAP / 2).rem_euclid(WRAP) - WRAP / 2)
        .min()
        .unwrap();
    (end - begin) * num * 90_000 / den
}

/// Each sample of a video media segment is whole 4-byte-length-prefixed NAL
/// units, without parameter sets (the init segment has them), access unit
/// delimiters or filler.
fn check_nal_units(media: &[u8], codec: Codec) {
    let trun = media.windows(4).position(|w| w == b"trun").unwrap() - 4;
    let count = u32::from_be_bytes(media[trun + 12..trun + 16].try_into().unwrap()) as usize;
    let offset = u32::from_be_bytes(media[trun + 16..trun + 20].try_into().unwrap()) as usize;
    let moof = media.windows(4).position(|w| w == b"moof").unwrap() - 4;
    let mut at = moof + offset;
    for i in 0..count {
        let entry = trun + 20 + i * 16;
        let size = u32::from_be_bytes(media[entry + 4..entry + 8].try_into().unwrap()) as usize;
        let end = at + size;
        while at < end {
            let len = u32::from_be_bytes(media[at..at + 4].try_into().unwrap()) as usize;
            let header = media[at + 4];
            let forbidden = match codec {
                Codec::H265 => matches!((header >> 1) & 0x3f, 32..=35 | 38),
                _ => matches!(header & 0x1f, 7..=9 | 12),
            };
            assert!(!forbidden, "sample {i} holds NAL unit header {header:#x}");
            at += 4 + len;
        }
        assert_eq!(at, end, "sample {i}: its NAL units fill it exactly");
    }
}

/// The `tfdt` of each `traf` of a media segment, walking the boxes.
fn tfdts(media: &[u8]) -> Vec<u64> {
    fn walk(bytes: &[u8], out: &mut Vec<u64>) {
        let mut at = 0;
        while at + 8 <= bytes.len() {
            let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            let kind = &bytes[at + 4..at + 8];
            assert!(size >= 8 && at + size <= bytes.len(), "box sizes add up");
            match kind {
                b"moof" | b"traf" => walk(&bytes[at + 8..at + size], out),
                b"tfdt" => {
                    assert_eq!(bytes[at + 8], 1, "tfdt version 1");
                    out.push(u64::from_be_bytes(
                        bytes[at + 12..at + 20].try_into().unwrap(),
                    ));
                }
                _ => {}
            }
            at += size;
        }
    }
    let mut out = Vec::new();
    walk(media, &mut out);
    out
}

/// What a clip's tracks must come out as.
struct Expect {
    /// (track number, ffprobe codec name) of each written track.
    tracks: &'static [(usize, &'static str)],
    /// (track number, codec) of each track left out.
    left_out: &'static [(usize, Codec)],
}

/// Runs the whole check on a clip; returns the fragments for more checks.
fn check_clip(name: &str, expect: &Expect) -> Vec<Fragments> {
    let segments = segments(name);
    let all = fragments(&segments);
    let dir = tempfile::tempdir().unwrap();
    // The stored TS, as the tape holds it: the reference for frames and times.
    let stored: Vec<u8> = segments.iter().flat_map(|s| s.payload.to_vec()).collect();
    let stored_path = dir.path().join("stored.ts");
    std::fs::write(&stored_path, &stored).unwrap();

    let numbers: Vec<usize> = all[0].tracks().iter().map(|t| t.number).collect();
    let expected: Vec<usize> = expect.tracks.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, expected, "{name}: the tracks written");
    for fragments in &all {
        let left: Vec<(usize, Codec)> = fragments
            .left_out()
            .iter()
            .map(|l| (l.number, l.codec))
            .collect();
        assert_eq!(left, expect.left_out, "{name}: the tracks left out");
        for l in fragments.left_out() {
            assert!(matches!(l.reason, Fmp4Error::UnsupportedCodec { .. }));
        }
    }

    for &(number, codec_name) in expect.tracks {
        let per_segment: Vec<&Track> = all.iter().map(|f| f.track(number).unwrap()).collect();
        let first = per_segment[0];
        assert!(
            per_segment.iter().all(|t| t.init_id == first.init_id),
            "{name} track {number}: one configuration, one init segment"
        );
        let mut file = first.init().to_vec();
        for track in &per_segment {
            file.extend_from_slice(&track.media());
        }
        let path: PathBuf = dir.path().join(format!("track{number}.mp4"));
        std::fs::write(&path, &file).unwrap();

        // The codec, the frames and their times, against the stored TS.
        let (mp4, warnings) = probe(&path, "0");
        assert_eq!(warnings, "", "{name} track {number}: ffprobe warns");
        let (codec, pts) = relative_pts(&mp4);
        assert_eq!(codec, codec_name, "{name} track {number}");
        let (ts, _) = probe(&stored_path, &format!("i:{}", first.pid));
        let (_, ts_pts) = relative_pts(&ts);
        assert_eq!(
            pts.len(),
            ts_pts.len(),
            "{name} track {number}: as many frames as the stored TS"
        );
        // Video is at 90 kHz: exact. Audio at its sample rate: within one
        // sample of the 90 kHz PTS.
        let tolerance = if first.kind == TrackKind::Video { 0 } else { 2 };
        for (i, (a, b)) in pts.iter().zip(&ts_pts).enumerate() {
            assert!(
                (a - b).abs() <= tolerance,
                "{name} track {number}: frame {i} at {a}, the TS has it at {b}"
            );
        }
        let samples: usize = per_segment.iter().map(|t| t.sample_count).sum();
        assert_eq!(samples, pts.len());
        // The track lasts as long as the stored TS's stream, within a frame.
        let frame = if first.kind == TrackKind::Video {
            3600
        } else {
            2880
        };
        let (span, ts_span) = (span(&mp4), span(&ts));
        assert!(
            (span - ts_span).abs() <= frame,
            "{name} track {number}: lasts {span} ticks, the TS {ts_span}"
        );
        if first.kind == TrackKind::Video {
            for track in &per_segment {
                check_nal_units(&track.media(), first.codec);
            }
        }

        // Decoding the whole track gives no error or warning.
        let out = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "warning", "-i"])
            .arg(&path)
            .args(["-map", "0", "-f", "null", "-"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "{name} track {number}: ffmpeg decodes with complaints: {stderr}"
        );

        // The tape is tiled: tfdt in the bytes as in the API, and each
        // segment starts where the one before ended.
        for (i, track) in per_segment.iter().enumerate() {
            assert_eq!(tfdts(&track.media()), [track.base_decode_time]);
            if let Some(next) = per_segment.get(i + 1) {
                if !segments[i + 1].flags.discontinuity {
                    assert_eq!(
                        track.base_decode_time + track.duration,
                        next.base_decode_time,
                        "{name} track {number}: segment {i} ends where {} starts",
                        i + 1
                    );
                }
            }
        }
    }
    all
}

/// The primary video's `tfdt` is the segment's start on the tape, and its
/// duration the segment's.
fn assert_video_tracks_the_index(name: &str, number: usize) {
    let segments = segments(name);
    let timings = timings(&segments);
    for (fragments, timing) in fragments(&segments).iter().zip(&timings) {
        let track = fragments.track(number).unwrap();
        assert_eq!(track.base_decode_time as i64, timing.tape_start().0);
        assert_eq!(track.duration as i64, timing.duration.0);
        assert_eq!(track.sap_type, 1);
    }
}

#[test]
fn h264_aac_720p() {
    let all = check_clip(
        "h264_aac_720p.ts",
        &Expect {
            tracks: &[(1, "h264"), (2, "aac")],
            left_out: &[],
        },
    );
    let video = all[0].track(1).unwrap();
    assert_eq!(video.codec_string, "avc1.64001f");
    assert_eq!(video.timescale, 90_000);
    let audio = all[0].track(2).unwrap();
    assert_eq!(audio.codec_string, "mp4a.40.2");
    assert_eq!(audio.timescale, 48_000);
    assert_eq!(audio.language.as_deref(), Some("eng"));
    assert_video_tracks_the_index("h264_aac_720p.ts", 1);
}

#[test]
fn h265_aac() {
    let all = check_clip(
        "h265_aac.ts",
        &Expect {
            tracks: &[(1, "hevc"), (2, "aac")],
            left_out: &[],
        },
    );
    let video = all[0].track(1).unwrap();
    assert_eq!(video.codec_string, "hvc1.1.6.L63.90");
    let init = video.init();
    assert!(
        init.windows(4).any(|w| w == b"hvc1"),
        "hvc1, as Apple wants"
    );
}

#[test]
fn h264_ac3_mp2_keeps_ac3_and_leaves_mp2_out() {
    let all = check_clip(
        "h264_ac3_mp2.ts",
        &Expect {
            tracks: &[(1, "h264"), (2, "ac3")],
            left_out: &[(3, Codec::MpegAudio)],
        },
    );
    let ac3 = all[0].track(2).unwrap();
    assert_eq!(ac3.codec_string, "ac-3");
    assert_eq!(ac3.audio.as_ref().map(|a| a.channels), Some(6));
}

#[test]
fn two_audio_langs() {
    let all = check_clip(
        "two_audio_langs.ts",
        &Expect {
            tracks: &[(1, "h264"), (2, "aac"), (3, "aac")],
            left_out: &[],
        },
    );
    let languages: Vec<Option<&str>> = all[0].tracks()[1..]
        .iter()
        .map(|t| t.language.as_deref())
        .collect();
    assert_eq!(languages, [Some("eng"), Some("deu")]);
    assert_ne!(
        all[0].track(2).unwrap().init_id,
        all[0].track(3).unwrap().init_id,
        "the language is part of the init segment"
    );
}

#[test]
fn two_renditions() {
    check_clip(
        "two_renditions.ts",
        &Expect {
            tracks: &[(1, "h264"), (2, "h264"), (3, "aac")],
            left_out: &[],
        },
    );
}

#[test]
fn unaligned_renditions_say_where_they_cannot_start() {
    let all = check_clip(
        "unaligned_renditions.ts",
        &Expect {
            tracks: &[(1, "h264"), (2, "h264")],
            left_out: &[],
        },
    );
    let saps = |number| -> Vec<u8> {
        all.iter()
            .map(|f| f.track(number).unwrap().sap_type)
            .collect()
    };
    // The first rendition is cut at its keyframes; the second's 1.2 s GOP
    // only starts with a segment at 0 s.
    assert_eq!(saps(1), [1, 1, 1]);
    assert_eq!(saps(2), [1, 0, 0]);
    // The bytes say it too: the first sample of those segments is not a
    // sync sample (sample_is_non_sync_sample set in its trun flags).
    for f in &all[1..] {
        let media = f.track(2).unwrap().media();
        let trun = media.windows(4).position(|w| w == b"trun").unwrap() - 4;
        let flags = u32::from_be_bytes(media[trun + 28..trun + 32].try_into().unwrap());
        assert_eq!(flags & 0x0001_0000, 0x0001_0000);
    }
}

#[test]
fn eac3_made_by_ffmpeg() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eac3.ts");
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-f", "lavfi", "-i"])
        .arg("sine=frequency=440:sample_rate=48000:duration=7")
        .args(["-ac", "6", "-c:a", "eac3", "-b:a", "256k", "-f", "mpegts"])
        .arg(&path)
        .output()
        .expect("ffmpeg (make test-deps)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&path).unwrap();
    let clock = SimulatedClock::new(T0);
    let mut segmenter = Segmenter::new(SegmenterConfig::default(), Arc::new(clock));
    let mut segments = segmenter.push(&bytes);
    segments.extend(segmenter.finish());
    let mut file = Vec::new();
    let mut tfdt_end = None;
    for (segment, timing) in segments.iter().zip(timings(&segments)) {
        let fragments = Fragments::from_ts(&segment.payload, &timing, None).unwrap();
        let track = fragments.track(1).unwrap();
        assert_eq!(track.codec, Codec::Eac3);
        assert_eq!(track.codec_string, "ec-3");
        if file.is_empty() {
            file.extend_from_slice(&track.init());
        }
        file.extend_from_slice(&track.media());
        if let Some(end) = tfdt_end {
            assert_eq!(track.base_decode_time, end);
        }
        tfdt_end = Some(track.base_decode_time + track.duration);
    }
    let mp4 = dir.path().join("eac3.mp4");
    std::fs::write(&mp4, &file).unwrap();
    let (probed, warnings) = probe(&mp4, "0");
    assert_eq!(warnings, "");
    let (codec, pts) = relative_pts(&probed);
    assert_eq!(codec, "eac3");
    let (ts, _) = probe(&path, "0");
    assert_eq!(pts.len(), relative_pts(&ts).1.len());
}

#[test]
fn aac_only() {
    check_clip(
        "aac_only.ts",
        &Expect {
            tracks: &[(1, "aac")],
            left_out: &[],
        },
    );
}

#[test]
fn interleaved() {
    check_clip(
        "interleaved.ts",
        &Expect {
            tracks: &[(1, "h264"), (2, "aac")],
            left_out: &[],
        },
    );
}

#[test]
fn pts_wrap() {
    let all = check_clip(
        "pts_wrap.ts",
        &Expect {
            tracks: &[(1, "h264"), (2, "aac")],
            left_out: &[],
        },
    );
    // The tape runs on across the wrap.
    let tfdts: Vec<u64> = all
        .iter()
        .map(|f| f.track(1).unwrap().base_decode_time)
        .collect();
    assert!(tfdts.windows(2).all(|w| w[1] > w[0]));
    assert_video_tracks_the_index("pts_wrap.ts", 1);
}

#[test]
fn combined_form_holds_every_track() {
    let segments = segments("h264_aac_720p.ts");
    let all = fragments(&segments);
    let dir = tempfile::tempdir().unwrap();
    let (init, _) = all[0].combined().unwrap();
    let mut file = init.bytes.to_vec();
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for fragments in &all {
        let (same_init, media) = fragments.combined().unwrap();
        assert_eq!(same_init.id, init.id);
        file.extend_from_slice(&media);
        for t in fragments.tracks() {
            *counts.entry(t.number).or_default() += t.sample_count;
        }
        assert_eq!(tfdts(&media).len(), 2, "a traf per track");
    }
    let path = dir.path().join("combined.mp4");
    std::fs::write(&path, &file).unwrap();
    for (index, number) in [(0, 1), (1, 2)] {
        let (probed, warnings) = probe(&path, &index.to_string());
        assert_eq!(warnings, "");
        let (_, pts) = relative_pts(&probed);
        assert_eq!(pts.len(), counts[&number]);
    }
}

#[test]
fn one_track_asked_is_the_same_track() {
    let segments = segments("two_audio_langs.ts");
    let timing = timings(&segments)[1];
    let all = Fragments::from_ts(&segments[1].payload, &timing, None).unwrap();
    let one = Fragments::from_ts(&segments[1].payload, &timing, Some(&[3])).unwrap();
    assert_eq!(one.tracks().len(), 1);
    assert_eq!(one.track(3).unwrap().media(), all.track(3).unwrap().media());
    assert_eq!(one.track(3).unwrap().init(), all.track(3).unwrap().init());
    assert_eq!(
        Fragments::from_ts(&segments[1].payload, &timing, Some(&[4])).unwrap_err(),
        Fmp4Error::NoSuchTrack { asked: 4, count: 3 }
    );
}

#[test]
fn the_tape_clock_sets_tfdt() {
    let segments = segments("h264_aac_720p.ts");
    let meta = segments[0].meta();
    let timing = SegmentTiming::new(&meta, &meta);
    let later = SegmentTiming {
        clock: TapeClock::new(UtcMs(T0.0 + 3_600_000), meta.pts_start),
        ..timing
    };
    let a = Fragments::from_ts(&segments[0].payload, &timing, None).unwrap();
    let b = Fragments::from_ts(&segments[0].payload, &later, None).unwrap();
    let (va, vb) = (a.track(1).unwrap(), b.track(1).unwrap());
    assert_eq!(va.base_decode_time as i64, T0.0 * 90);
    assert_eq!(vb.base_decode_time - va.base_decode_time, 3600 * 90_000);
    let (aa, ab) = (a.track(2).unwrap(), b.track(2).unwrap());
    assert_eq!(ab.base_decode_time - aa.base_decode_time, 3600 * 48_000);
    assert_eq!(va.init_id, vb.init_id, "time is not in the init segment");
}

/// Golden tests: the bytes of every init and media segment of two clips,
/// pinned by hash. A change here is a change of every replica's output.
fn digest(name: &str) -> String {
    let segments = segments(name);
    let mut hasher = blake3::Hasher::new();
    for fragments in fragments(&segments) {
        for track in fragments.tracks() {
            hasher.update(&track.init());
            hasher.update(&track.media());
        }
        let (init, media) = fragments.combined().unwrap();
        hasher.update(&init.bytes);
        hasher.update(&media);
    }
    hasher.finalize().to_hex()[..16].to_owned()
}

#[test]
fn golden_h264_aac_720p() {
    assert_eq!(digest("h264_aac_720p.ts"), "bb64bf7d0b355907");
}

#[test]
fn golden_h265_aac() {
    assert_eq!(digest("h265_aac.ts"), "7c5d63506e9e8b3d");
}

/// Buffers handed back dirty and too small (or too large) hold exactly
/// the samples a fresh conversion gives, segment after segment, in every
/// clip with video and audio.
#[test]
fn reused_buffers_give_the_same_sample_data() {
    for name in ["h264_aac_720p.ts", "h265_aac.ts", "h264_ac3_mp2.ts"] {
        let segments = segments(name);
        let mut spare = vec![vec![0xa5; 7], vec![0x5a; 3 << 20]];
        for (segment, timing) in segments.iter().zip(timings(&segments)) {
            let fresh = Fragments::from_ts(&segment.payload, &timing, None)
                .unwrap()
                .into_data();
            let reused = Fragments::from_ts_reusing(&segment.payload, &timing, None, &mut spare)
                .unwrap()
                .into_data();
            assert_eq!(reused, fresh, "{name} segment {}", segment.seq);
            spare.extend(reused.into_iter().map(|(_, data)| {
                let mut dirty = Vec::from(data);
                dirty.extend_from_slice(&[0xee; 100]);
                dirty
            }));
        }
    }
}
