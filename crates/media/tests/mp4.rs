//! Progressive MP4 exports of committed clips, judged by ffprobe and ffmpeg.
//!
//! Each clip is cut by the real segmenter; every segment's sample table is
//! taken (and round-tripped through its binary form, as the recorder
//! stores it), an export is laid out from the tables alone, and its bytes
//! are written span by span from the segments' converted data. ffprobe must
//! read the duration the tape has (to a frame), without a warning; `moov`
//! must come before `mdat`; ffmpeg must decode every stream without a
//! complaint; and bytes of a range must equal the same span of the whole.
//!
//! ffmpeg and ffprobe are required (`make test-deps`); a missing tool fails
//! the test, it never skips it.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use dvr_common::{SimulatedClock, Ticks, UtcMs};
use dvr_media::fmp4::{Fragments, SegmentTiming};
use dvr_media::mp4::{Layout, SampleTable, SegmentTables, Span};
use dvr_media::{Segment, Segmenter, SegmenterConfig};
use dvr_testkit::clips;
use serde_json::Value;

/// 2026-11-21T14:00:00Z: where the simulated recording starts.
const T0: UtcMs = UtcMs(1_795_269_600_000);

fn segments(name: &str) -> Vec<Segment> {
    let clip = clips::read(name);
    let clock = SimulatedClock::new(T0);
    let mut segmenter = Segmenter::new(SegmenterConfig::default(), Arc::new(clock));
    let mut out = segmenter.push(&clip);
    out.extend(segmenter.finish());
    assert!(out.len() >= 3, "{name} gives several segments");
    out
}

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

/// The stored tables, decoded from their binary form.
fn tables(segments: &[Segment]) -> Vec<SampleTable> {
    segments
        .iter()
        .map(|s| {
            let meta = s.meta();
            let table = SampleTable::from_ts(&s.payload, meta.pts_start, meta.duration).unwrap();
            SampleTable::decode(&table.encode()).unwrap()
        })
        .collect()
}

/// The bytes of `range` of the export, read segment by segment.
fn read(
    layout: &Layout,
    segments: &[Segment],
    timings: &[SegmentTiming],
    range: std::ops::Range<u64>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut converted: Option<(usize, Fragments)> = None;
    for span in layout.spans(range) {
        match span {
            Span::Head(r) => out.extend_from_slice(&layout.head()[r]),
            Span::Media {
                segment,
                track,
                data,
            } => {
                if converted.as_ref().map(|c| c.0) != Some(segment) {
                    let f = Fragments::from_ts(&segments[segment].payload, &timings[segment], None)
                        .unwrap();
                    converted = Some((segment, f));
                }
                let f = &converted.as_ref().unwrap().1;
                let bytes = f.track(track).unwrap().data();
                out.extend_from_slice(&bytes[data.start as usize..data.end as usize]);
            }
        }
    }
    out
}

fn tool(program: &str, args: &[&str], path: &Path) -> (String, String) {
    let out = Command::new(program)
        .args(args)
        .arg(path)
        .args(if program == "ffmpeg" {
            &["-map", "0", "-f", "null", "-"][..]
        } else {
            &[][..]
        })
        .output()
        .unwrap_or_else(|e| panic!("{program} (make test-deps): {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{program} failed: {stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

fn export(name: &str) {
    let segments = segments(name);
    let timings = timings(&segments);
    let tables = tables(&segments);
    let at: Vec<SegmentTables<'_>> = tables
        .iter()
        .zip(&timings)
        .map(|(table, timing)| SegmentTables {
            table,
            tape_start: timing.tape_start(),
        })
        .collect();
    let start = timings[0].tape_start();
    let end = timings.last().unwrap().tape_end();
    let layout = Layout::new(&at, None, start..end).unwrap();
    let bytes = read(&layout, &segments, &timings, 0..layout.len());
    assert_eq!(bytes.len() as u64, layout.len(), "{name}: exact length");
    let moov = bytes.windows(4).position(|w| w == b"moov").unwrap();
    let mdat = bytes.windows(4).position(|w| w == b"mdat").unwrap();
    assert!(moov < mdat, "{name}: moov first");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.mp4"));
    std::fs::write(&path, &bytes).unwrap();
    let (out, warnings) = tool(
        "ffprobe",
        &[
            "-v",
            "warning",
            "-of",
            "json",
            "-show_entries",
            "format=duration:stream=codec_name,nb_frames",
        ],
        &path,
    );
    assert!(warnings.is_empty(), "{name}: ffprobe warns: {warnings}");
    let probed: Value = serde_json::from_str(&out).unwrap();
    let duration: f64 = probed["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let tape = (end - start).0 as f64 / 90_000.0;
    // The tape's span to a video frame (audio may end up to a frame later).
    assert!(
        (duration - tape).abs() <= 0.045,
        "{name}: ffprobe says {duration} s, the tape {tape} s"
    );
    let (_, complaints) = tool("ffmpeg", &["-nostdin", "-v", "warning", "-i"], &path);
    assert!(
        complaints.is_empty(),
        "{name}: ffmpeg decodes with complaints: {complaints}"
    );
    // Frames: every video sample of the tables; audio from the first
    // frame at or after the first keyframe to the last that starts before
    // the tape's end, so at most one frame fewer at each end.
    let streams = probed["streams"].as_array().unwrap();
    for (number, stream) in (1..).zip(streams) {
        let frames: usize = stream["nb_frames"].as_str().unwrap().parse().unwrap();
        let codec = stream["codec_name"].as_str().unwrap();
        let listed: usize = tables
            .iter()
            .filter_map(|t| t.tracks.iter().find(|t| usize::from(t.number) == number))
            .map(|t| t.samples.len())
            .sum();
        if codec == "h264" || codec == "hevc" {
            assert_eq!(frames, listed, "{name}: every video sample in the file");
        } else {
            assert!(
                frames <= listed && frames + 2 >= listed,
                "{name}: {codec}: {frames} frames of {listed}"
            );
        }
    }

    // Ranges: the same bytes as the span of the whole.
    let len = layout.len();
    for range in [
        0..1,
        0..layout.head().len() as u64 + 10,
        len / 3..len / 2,
        len - 100..len,
        len / 2..len / 2 + 1,
    ] {
        assert_eq!(
            read(&layout, &segments, &timings, range.clone()),
            bytes[range.start as usize..range.end as usize],
            "{name}: range {range:?}"
        );
    }
}

#[test]
fn h264_and_aac_export_plays() {
    export("h264_aac_720p.ts");
}

#[test]
fn h265_and_aac_export_plays() {
    export("h265_aac.ts");
}

#[test]
fn h264_ac3_export_plays_without_the_mpeg_audio_track() {
    export("h264_ac3_mp2.ts");
}

#[test]
fn an_export_from_mid_segment_starts_at_the_keyframe_before() {
    let segments = segments("h264_aac_720p.ts");
    let timings = timings(&segments);
    let tables = tables(&segments);
    let at: Vec<SegmentTables<'_>> = tables
        .iter()
        .zip(&timings)
        .map(|(table, timing)| SegmentTables {
            table,
            tape_start: timing.tape_start(),
        })
        .collect();
    // Half a second into the second segment, for 2 s.
    let from = timings[1].tape_start() + Ticks(45_000);
    let layout = Layout::new(&at, None, from..from + Ticks(180_000)).unwrap();
    assert!(layout.start() <= from && layout.start() >= timings[1].tape_start());
    let bytes = read(&layout, &segments, &timings, 0..layout.len());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.mp4");
    std::fs::write(&path, &bytes).unwrap();
    let (out, warnings) = tool(
        "ffprobe",
        &[
            "-v",
            "warning",
            "-of",
            "json",
            "-show_entries",
            "format=duration",
        ],
        &path,
    );
    assert!(warnings.is_empty(), "ffprobe warns: {warnings}");
    let probed: Value = serde_json::from_str(&out).unwrap();
    let duration: f64 = probed["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let expected = (from + Ticks(180_000) - layout.start()).0 as f64 / 90_000.0;
    assert!(
        (duration - expected).abs() <= 0.045,
        "ffprobe says {duration} s, expected {expected} s"
    );
    let (_, complaints) = tool("ffmpeg", &["-nostdin", "-v", "warning", "-i"], &path);
    assert!(complaints.is_empty(), "ffmpeg complains: {complaints}");
}

/// A >4 GiB export laid out from synthetic tables (a long tape's worth of
/// big samples, with the clip's real sample entries) and written as a
/// sparse file: ffprobe must read its duration and frame counts from the
/// 64-bit `moov`, and find a packet past 4 GiB where `co64` says.
#[test]
fn an_export_past_four_gibibytes_is_read_by_ffprobe() {
    let segments = segments("h264_aac_720p.ts");
    let real = tables(&segments);
    // 3 segments, each the clip's first segment's tracks with every video
    // sample 30 MB: about 4.5 GB of media.
    let mut table = real[0].clone();
    for track in &mut table.tracks {
        if track.kind == dvr_media::codec::TrackKind::Video {
            for sample in &mut track.samples {
                sample.size = 30_000_000;
            }
        }
    }
    let seconds: i64 = table.tracks[0]
        .samples
        .iter()
        .map(|s| i64::from(s.duration))
        .sum();
    let tables = [table.clone(), table.clone(), table];
    let at: Vec<SegmentTables<'_>> = tables
        .iter()
        .enumerate()
        .map(|(i, table)| SegmentTables {
            table,
            tape_start: Ticks(1_000_000 + i as i64 * seconds),
        })
        .collect();
    let end = Ticks(1_000_000 + 3 * seconds);
    let layout = Layout::new(&at, None, Ticks(1_000_000)..end).unwrap();
    assert!(layout.len() > 1 << 32);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.mp4");
    let file = std::fs::File::create(&path).unwrap();
    std::io::Write::write_all(&mut &file, layout.head()).unwrap();
    file.set_len(layout.len()).unwrap(); // sparse: zeros, no disk
    let (out, _) = tool(
        "ffprobe",
        &[
            "-v",
            "error",
            "-of",
            "json",
            "-show_entries",
            "format=duration,size:stream=codec_name,nb_frames",
        ],
        &path,
    );
    let probed: Value = serde_json::from_str(&out).unwrap();
    let size: u64 = probed["format"]["size"].as_str().unwrap().parse().unwrap();
    assert_eq!(size, layout.len());
    let duration: f64 = probed["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let expected = (3 * seconds) as f64 / 90_000.0;
    assert!(
        (duration - expected).abs() <= 0.045,
        "ffprobe says {duration} s, the tables {expected} s"
    );
    let frames: usize = probed["streams"][0]["nb_frames"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(frames, 3 * tables[0].tracks[0].samples.len());
    // The last video packet sits past 4 GiB, where the layout put it.
    let (out, _) = tool(
        "ffprobe",
        &[
            "-v",
            "error",
            "-of",
            "json",
            "-select_streams",
            "v",
            "-read_intervals",
            &format!("{:.3}%", expected - 0.5),
            "-show_entries",
            "packet=pos,size",
        ],
        &path,
    );
    let probed: Value = serde_json::from_str(&out).unwrap();
    let last = probed["packets"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    let pos: u64 = last["pos"].as_str().unwrap().parse().unwrap();
    assert!(pos > 1 << 32, "{last}");
    let video_len = 30_000_000u64;
    assert_eq!(
        layout.spans(pos..pos + video_len),
        vec![Span::Media {
            segment: 2,
            track: 1,
            data: video_len * (tables[2].tracks[0].samples.len() as u64 - 1)
                ..video_len * tables[2].tracks[0].samples.len() as u64
        }]
    );
}
