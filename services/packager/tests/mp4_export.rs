//! `archive-FROM-DUR.mp4` over clips recorded by the real segmenter: ffprobe
//! and ffmpeg read exports over real HTTP with the tape's duration and no
//! warning, `moov` comes before `mdat`, a `Range` returns exactly the bytes
//! of the same span of the whole download and reads only the segments it
//! touches (with the recorder's `.smp` sample tables), HEAD and ETags
//! behave, `?precise=true` lasts the asked span with the tracks together,
//! a gap is refused or joined by `ignore_gaps`, and bad input gets the TS
//! forms' one-line 4xx.

mod support;

use std::process::Command;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use dvr_archive::tape::{StoreTape, StreamTape};
use dvr_bus::{SegmentLog, SegmentLogOptions};
use dvr_common::{Clock, SimulatedClock, StreamName, UtcMs};
use dvr_media::Segment;
use dvr_packager::{Packager, PackagerConfig};
use dvr_storage::{CountingStorage, Storage, StorageConfig, StorageUri};
use support::{
    archive, body, get, gst_pictures, header, recorded, recorded_runs, segmented, send, serve, T0,
};

const CLIP: &str = "h264_aac_720p.ts";

/// ffprobe's duration of `url` (format), failing on any warning.
fn probe_duration(url: &str) -> f64 {
    let out = Command::new("ffprobe")
        .args(["-v", "warning", "-of", "json", "-show_entries"])
        .args(["format=duration:stream=codec_name", url])
        .output()
        .expect("ffprobe (make test-deps)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "{url}: {stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["streams"].as_array().unwrap().len(), 2, "{url}: {v}");
    v["format"]["duration"].as_str().unwrap().parse().unwrap()
}

/// ffmpeg decodes every stream of `url` without a complaint.
fn assert_decodes(url: &str) {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "warning", "-i", url])
        .args(["-map", "0", "-f", "null", "-"])
        .output()
        .expect("ffmpeg (make test-deps)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "{url}: {stderr}");
}

fn position(bytes: &[u8], kind: &[u8; 4]) -> usize {
    bytes
        .windows(4)
        .position(|w| w == kind)
        .unwrap_or(usize::MAX)
}

/// The tape's duration of the recorded clip, in seconds (its segments').
fn tape_seconds(segments: &[Segment]) -> f64 {
    segments.iter().map(|s| s.duration.0).sum::<i64>() as f64 / 90_000.0
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_plays_with_the_tapes_duration_moov_first() {
    let f = recorded(CLIP);
    let clock = Arc::new(SimulatedClock::new(UtcMs(T0 * 1000)));
    let tape = tape_seconds(&segmented(&[CLIP], 0, &clock));
    let uri = format!("/ch/archive-{T0}-60.mp4");
    let (status, ctype, whole) = get(&f, &uri).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&whole)
    );
    assert_eq!(ctype, "video/mp4");
    assert!(position(&whole, b"moov") < position(&whole, b"mdat"));
    assert_eq!(&whole[4..8], b"ftyp");

    let base = serve(&f).await;
    let url = format!("{base}/archive-{T0}-60.mp4");
    let duration = tokio::task::spawn_blocking({
        let url = url.clone();
        move || probe_duration(&url)
    })
    .await
    .unwrap();
    assert!(
        (duration - tape).abs() <= 0.045,
        "ffprobe says {duration} s, the tape has {tape} s"
    );
    tokio::task::spawn_blocking(move || assert_decodes(&url))
        .await
        .unwrap();

    // One track: video only, still the whole tape.
    let url = format!("{base}/tracks-1/archive-{T0}-60.mp4");
    let (_, _, video) = get(&f, &format!("/ch/tracks-1/archive-{T0}-60.mp4")).await;
    assert!(video.len() < whole.len());
    tokio::task::spawn_blocking(move || {
        let out = Command::new("ffprobe")
            .args(["-v", "error", "-of", "csv=p=0", "-show_entries"])
            .args(["stream=codec_name", &url])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "h264");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_plays_an_export_through_qtdemux_to_its_end() {
    let f = recorded(CLIP);
    let clock = Arc::new(SimulatedClock::new(UtcMs(T0 * 1000)));
    let tape = tape_seconds(&segmented(&[CLIP], 0, &clock));
    let url = format!("{}/archive-{T0}-60.mp4", serve(&f).await);
    let pictures = gst_pictures(&url).await;
    // Every picture of the 25 fps tape, from its start to its end.
    let expected = (tape * 25.0).round() as usize;
    assert!(
        pictures.len().abs_diff(expected) <= 1,
        "{} pictures of {expected}",
        pictures.len()
    );
    let first = pictures.iter().copied().fold(f64::MAX, f64::min);
    let last = pictures.iter().copied().fold(0.0, f64::max);
    assert!(first < 0.1, "the first picture at {first}");
    assert!(
        (last + 0.04 - tape).abs() < 0.1,
        "the last picture at {last}, the tape lasts {tape}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_start_snaps_to_the_keyframe_at_or_before_it() {
    let f = recorded(CLIP);
    let base = serve(&f).await;
    // From 3 s into the tape, for 4 s: the file starts at the keyframe at
    // or before 3 s (a segment starts at one), so it lasts 4 s and up to
    // one segment more, never less.
    let url = format!("{base}/archive-{}-4.mp4", T0 + 3);
    let duration = tokio::task::spawn_blocking({
        let url = url.clone();
        move || probe_duration(&url)
    })
    .await
    .unwrap();
    assert!(
        (4.0 - 0.045..=6.045).contains(&duration),
        "ffprobe says {duration} s"
    );
    tokio::task::spawn_blocking(move || assert_decodes(&url))
        .await
        .unwrap();
}

/// Each stream's start time and the format's duration, by ffprobe.
fn probe_starts(url: &str) -> (Vec<f64>, f64) {
    let out = Command::new("ffprobe")
        .args(["-v", "warning", "-of", "json", "-show_entries"])
        .args(["format=duration:stream=start_time", url])
        .output()
        .expect("ffprobe (make test-deps)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "{url}: {stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let starts = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["start_time"].as_str().unwrap().parse().unwrap())
        .collect();
    let duration = v["format"]["duration"].as_str().unwrap().parse().unwrap();
    (starts, duration)
}

#[tokio::test(flavor = "multi_thread")]
async fn precise_exports_last_the_asked_span_with_tracks_together() {
    // Two runs 0.5 s apart (not a gap): the second run's keyframes (one a
    // second) fall half-way between whole seconds, so FROM is inside a GOP.
    let f = recorded_runs(&[CLIP, CLIP], 500);
    let clock = Arc::new(SimulatedClock::new(UtcMs(T0 * 1000)));
    let segments = segmented(&[CLIP, CLIP], 500, &clock);
    let second = segments.iter().find(|s| s.flags.discontinuity).unwrap();
    let from = second.utc_start.0 / 1000 + 2;
    assert_ne!((from * 1000 - second.utc_start.0) % 1000, 0);
    let base = serve(&f).await;
    let url = format!("{base}/archive-{from}-4.mp4?precise=true");
    let (starts, duration) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || probe_starts(&url)
    })
    .await
    .unwrap();
    // To a video frame (40 ms) and an AAC frame (21 ms).
    assert!((duration - 4.0).abs() <= 0.04, "ffprobe says {duration} s");
    assert_eq!(starts.len(), 2);
    assert!(
        (starts[0] - starts[1]).abs() <= 0.022,
        "video and audio start apart: {starts:?}"
    );
    tokio::task::spawn_blocking(move || assert_decodes(&url))
        .await
        .unwrap();
    // The keyframe export of the same range lasts longer: it starts earlier.
    let (_, keyframe) =
        tokio::task::spawn_blocking(move || probe_starts(&format!("{base}/archive-{from}-4.mp4")))
            .await
            .unwrap();
    assert!(
        (keyframe - 4.5).abs() <= 0.045,
        "{keyframe} s: from the keyframe half a second before FROM"
    );
}

#[tokio::test]
async fn ranges_are_spans_of_the_whole_and_head_and_etags_behave() {
    let f = recorded(CLIP);
    let uri = format!("/ch/archive-{T0}-60.mp4");
    let r = send(&f, Method::GET, &uri, &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "accept-ranges"), "bytes");
    let etag = header(&r, "etag").to_owned();
    let length: usize = header(&r, "content-length").parse().unwrap();
    let whole = body(r).await;
    assert_eq!(whole.len(), length);
    let n = whole.len();
    for (range, lo, hi) in [
        ("bytes=0-0", 0, 1),
        ("bytes=0-99", 0, 100),
        ("bytes=1000-", 1000, n),
        ("bytes=-1000", n - 1000, n),
        (&format!("bytes={}-{}", n / 3, n / 2), n / 3, n / 2 + 1),
    ] {
        let r = send(&f, Method::GET, &uri, &[("range", range)]).await;
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(header(&r, "content-length"), (hi - lo).to_string());
        assert_eq!(
            header(&r, "content-range"),
            format!("bytes {lo}-{}/{n}", hi - 1)
        );
        assert_eq!(body(r).await, whole[lo..hi], "{range}");
    }
    let r = send(&f, Method::GET, &uri, &[("range", &format!("bytes={n}-"))]).await;
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&r, "content-range"), format!("bytes */{n}"));

    let r = send(&f, Method::HEAD, &uri, &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-length"), n.to_string());
    assert_eq!(header(&r, "etag"), etag);
    assert!(body(r).await.is_empty());

    let r = send(&f, Method::GET, &uri, &[("if-none-match", &etag)]).await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);

    // Another packager over the same tape (another replica, or after a
    // restart, at another time): the same bytes and tag.
    let other = recorded(CLIP);
    other.clock.set(UtcMs(other.clock.now().0 + 3_600_000));
    let r = send(&other, Method::GET, &uri, &[]).await;
    assert_eq!(header(&r, "etag"), etag);
    assert_eq!(body(r).await, whole);
}

#[tokio::test]
async fn bad_ranges_get_one_line_4xx() {
    let f = recorded(CLIP);
    for (uri, status, why) in [
        (
            format!("/ch/archive-{}-60.mp4", T0 + 3600),
            StatusCode::BAD_REQUEST,
            "in the future",
        ),
        (
            format!("/ch/archive-{}-60.mp4", T0 - 600),
            StatusCode::NOT_FOUND,
            "nothing recorded",
        ),
        (
            format!("/ch/archive-{T0}-0.mp4"),
            StatusCode::BAD_REQUEST,
            "duration must be positive",
        ),
        (
            format!("/ch/archive-{T0}-10801.mp4"),
            StatusCode::BAD_REQUEST,
            "1 to 10800 s",
        ),
        (
            format!("/ch/tracks-7/archive-{T0}-60.mp4"),
            StatusCode::NOT_FOUND,
            "no track 7",
        ),
        (
            format!("/ch/archive-{T0}-now.mp4"),
            StatusCode::BAD_REQUEST,
            "needs a duration",
        ),
    ] {
        let (got, _, text) = get(&f, &uri).await;
        let text = String::from_utf8(text).unwrap();
        assert_eq!(got, status, "{uri}: {text}");
        assert!(text.contains(why), "{uri}: {text}");
        assert_eq!(text.lines().count(), 1, "{uri}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gap_is_refused_unless_ignore_gaps_joins_the_parts() {
    let f = recorded_runs(&[CLIP, CLIP], 5_000);
    let clock = Arc::new(SimulatedClock::new(UtcMs(T0 * 1000)));
    let recorded_seconds = tape_seconds(&segmented(&[CLIP, CLIP], 5_000, &clock));
    let uri = format!("/ch/archive-{T0}-60.mp4");
    let (status, _, text) = get(&f, &uri).await;
    let text = String::from_utf8(text).unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(
        text.contains("gap") && text.contains("ignore_gaps=true"),
        "{text}"
    );

    let base = serve(&f).await;
    let url = format!("{base}/archive-{T0}-60.mp4?ignore_gaps=true");
    let duration = tokio::task::spawn_blocking({
        let url = url.clone();
        move || probe_duration(&url)
    })
    .await
    .unwrap();
    assert!(
        (duration - recorded_seconds).abs() <= 0.045,
        "ffprobe says {duration} s, {recorded_seconds} s are recorded"
    );
    tokio::task::spawn_blocking(move || assert_decodes(&url))
        .await
        .unwrap();
}

/// The clip archived in two chunks, with or without the recorder's `.smp`
/// sample tables, behind a store that counts its reads.
async fn archived(with_tables: bool) -> (axum::Router, Arc<CountingStorage>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let uri = StorageUri::parse(&format!("file://{}", dir.path().join("a").display())).unwrap();
    let storage = Arc::new(CountingStorage::new(
        dvr_storage::resolve(&uri, &StorageConfig::default()).unwrap(),
    ));
    let stream: StreamName = "ch".parse().unwrap();
    let clock = Arc::new(SimulatedClock::new(UtcMs(T0 * 1000)));
    let segments = segmented(&[CLIP], 0, &clock);
    let store = archive(
        &(Arc::clone(&storage) as Arc<dyn Storage>),
        &stream,
        &segments,
        segments.len().div_ceil(2),
        with_tables,
    )
    .await;
    let log =
        Arc::new(SegmentLog::open(dir.path().join("log"), SegmentLogOptions::default()).unwrap());
    let now = UtcMs(segments.last().unwrap().utc_end().0 + 1000);
    let packager = Arc::new(Packager::new(
        PackagerConfig::default(),
        Arc::new(SimulatedClock::new(now)),
    ));
    let tape = StoreTape::new(stream, store);
    packager.add_stream(StreamTape::new("ch", log, Some(Arc::new(tape))));
    (packager.router(), storage, dir)
}

async fn fetch(router: &axum::Router, uri: &str, range: Option<&str>) -> (StatusCode, Vec<u8>) {
    use tower::ServiceExt;
    let mut request = axum::http::Request::get(uri);
    if let Some(range) = range {
        request = request.header("range", range);
    }
    let r = router
        .clone()
        .oneshot(request.body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let status = r.status();
    (
        status,
        axum::body::to_bytes(r.into_body(), 1 << 30)
            .await
            .unwrap()
            .to_vec(),
    )
}

#[tokio::test]
async fn stored_sample_tables_let_a_range_read_only_what_it_returns() {
    let uri = format!("/ch/archive-{T0}-60.mp4");
    let (with, counted, _a) = archived(true).await;
    let (without, counted_without, _b) = archived(false).await;

    // Cold: the last 1000 bytes read the two chunks' tables and the one
    // segment they lie in; without tables, every segment is read to
    // compute them.
    let before = counted.reads();
    let (status, tail) = fetch(&with, &uri, Some("bytes=-1000")).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    let reads = counted.reads() - before;
    assert_eq!(reads, 3, "two .smp and one segment");
    let before = counted_without.reads();
    let (_, tail_without) = fetch(&without, &uri, Some("bytes=-1000")).await;
    assert_eq!(tail_without, tail);
    let reads_without = counted_without.reads() - before;
    assert!(
        reads_without > reads,
        "{reads_without} reads without tables"
    );

    // The same file either way: the tables are what the bytes give.
    let (status, whole) = fetch(&with, &uri, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetch(&without, &uri, None).await.1, whole);
    assert_eq!(tail, whole[whole.len() - 1000..]);

    // Warm, the head alone (ftyp, moov, the mdat header) reads nothing:
    // the tables are cached, and no segment holds any of its bytes.
    let mdat = position(&whole, b"mdat") + 3;
    let before = counted.reads();
    let (_, head) = fetch(&with, &uri, Some(&format!("bytes=0-{mdat}"))).await;
    assert_eq!(head, whole[..=mdat]);
    assert_eq!(counted.reads() - before, 0, "nothing read for the head");
}

/// The keyframes of a committed clip's video, by ffprobe reading the file
/// itself (not our tables).
fn clip_keyframes(clip: &str) -> usize {
    let path = dvr_testkit::clips::path(clip);
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-skip_frame",
            "nokey",
        ])
        .args(["-show_entries", "frame=pts_time", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe (make test-deps)");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

/// ffprobe's (stream types, frames it decoded, duration) of `url`, failing
/// on any warning.
fn probe_frames(url: &str) -> (Vec<String>, u64, f64) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "warning",
            "-count_frames",
            "-of",
            "json",
            "-show_entries",
        ])
        .args(["stream=codec_type,nb_read_frames:format=duration", url])
        .output()
        .expect("ffprobe (make test-deps)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "{url}: {stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let streams = v["streams"].as_array().unwrap();
    let kinds = streams
        .iter()
        .map(|s| s["codec_type"].as_str().unwrap().to_owned())
        .collect();
    let frames = streams[0]["nb_read_frames"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let duration = v["format"]["duration"].as_str().unwrap().parse().unwrap();
    (kinds, frames, duration)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timelapse_shows_every_keyframe_of_the_range_fitted_or_at_recorded_pace() {
    let f = recorded(CLIP);
    let clock = Arc::new(SimulatedClock::new(UtcMs(T0 * 1000)));
    let tape = tape_seconds(&segmented(&[CLIP], 0, &clock));
    let keyframes = clip_keyframes(CLIP) as u64;
    assert!(keyframes >= 3, "{keyframes} keyframes in the clip");
    let base = serve(&f).await;
    for (query, lasts) in [("timelapse=5", 5.0), ("timelapse", tape)] {
        let url = format!("{base}/archive-{T0}-60.mp4?{query}");
        let (kinds, frames, duration) = tokio::task::spawn_blocking({
            let url = url.clone();
            move || probe_frames(&url)
        })
        .await
        .unwrap();
        assert_eq!(kinds, ["video"], "{query}: video only");
        assert_eq!(frames, keyframes, "{query}: every keyframe, nothing else");
        assert!(
            (duration - lasts).abs() <= 0.045,
            "{query}: ffprobe says {duration} s, expected {lasts} s"
        );
        tokio::task::spawn_blocking(move || assert_decodes(&url))
            .await
            .unwrap();
    }

    // Ranges are spans of the whole, and the file is smaller than the export.
    let uri = format!("/ch/archive-{T0}-60.mp4?timelapse=5");
    let (status, _, whole) = get(&f, &uri).await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, export) = get(&f, &format!("/ch/archive-{T0}-60.mp4")).await;
    assert!(
        whole.len() * 2 < export.len(),
        "{} of {}",
        whole.len(),
        export.len()
    );
    let n = whole.len();
    let range = format!("bytes={}-{}", n / 3, n - 10);
    let r = send(&f, Method::GET, &uri, &[("range", &range)]).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(body(r).await, whole[n / 3..n - 9]);

    // Bad values and a combination that cannot hold are 400s naming them.
    for (query, why) in [
        ("timelapse=0", "timelapse=\"0\""),
        ("timelapse=abc", "timelapse=\"abc\""),
        ("timelapse=99999", "timelapse=\"99999\""),
        ("timelapse=5&precise=true", "timelapse and precise=true"),
        ("meta=true", "meta=true: a download carries no metadata"),
        ("meta=perhaps", "meta=\"perhaps\""),
    ] {
        let (status, _, text) = get(&f, &format!("/ch/archive-{T0}-60.mp4?{query}")).await;
        let text = String::from_utf8(text).unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {text}");
        assert!(text.contains(why), "{query}: {text}");
    }
}
