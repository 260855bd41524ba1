//! The packager over a live log on a simulated clock, shared by the
//! packager's integration tests.

#![allow(dead_code)] // each test binary uses a part of it

use std::process::Command;
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::http::{Method, Request, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use dvr_archive::store::ArchiveStore;
use dvr_archive::tape::StreamTape;
use dvr_archive::{ChunkIndex, ChunkKey};
use dvr_bus::{SegmentLog, SegmentLogOptions};
use dvr_common::{SimulatedClock, StreamName, Ticks, UtcMs};
use dvr_media::mp4::{encode_chunk_tables, SampleTable};
use dvr_media::{CodecSummary, Segment, SegmentFlags, Segmenter, SegmenterConfig};
use dvr_packager::{Packager, PackagerConfig};
use dvr_testkit::ffmpeg::probe_json;
use dvr_testkit::{clips, fixtures};
use futures_util::StreamExt;
use tower::ServiceExt;

/// 2026-11-21T14:00:00Z
pub const T0: i64 = 1_795_269_600;

/// Segment `seq` starting at `start_ms`, `seq + 1` TS packets long.
pub fn segment(seq: u64, start_ms: i64, discontinuity: bool) -> Segment {
    fixtures::segment(seq)
        .starting_at(start_ms)
        .discontinuity(discontinuity)
        .sync_bytes(188 * (seq as usize + 1))
        .build()
}

pub struct Fixture {
    pub router: axum::Router,
    pub packager: Arc<Packager>,
    pub clock: Arc<SimulatedClock>,
    pub _dir: tempfile::TempDir,
}

/// Ten 2 s segments from T0, a 10 s gap, then five more; now is 1 s after the end.
pub fn fixture() -> Fixture {
    fixture_with(PackagerConfig::default())
}

/// [`fixture`] with a packager configured by `config`.
pub fn fixture_with(config: PackagerConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let log =
        Arc::new(SegmentLog::open(dir.path().join("ort"), SegmentLogOptions::default()).unwrap());
    for seq in 0..10 {
        log.append(&segment(seq, T0 * 1000 + seq as i64 * 2000, seq == 0))
            .unwrap();
    }
    for seq in 10..15 {
        log.append(&segment(
            seq,
            T0 * 1000 + 30_000 + (seq as i64 - 10) * 2000,
            seq == 10,
        ))
        .unwrap();
    }
    let clock = Arc::new(SimulatedClock::new(UtcMs(T0 * 1000 + 41_000)));
    let packager = Arc::new(Packager::new(
        config,
        Arc::clone(&clock) as Arc<dyn dvr_common::Clock>,
    ));
    packager.add_stream(StreamTape::new("ort", log, None));
    Fixture {
        router: Arc::clone(&packager).router(),
        packager,
        clock,
        _dir: dir,
    }
}

/// `uri` asked with `method` and `headers`.
pub async fn send(f: &Fixture, method: Method, uri: &str, headers: &[(&str, &str)]) -> Response {
    let mut request = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    f.router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

/// A header of `r`, or empty.
pub fn header<'a>(r: &'a Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .map_or("", |v| v.to_str().unwrap_or(""))
}

/// The whole body of `r`.
pub async fn body(r: Response) -> Vec<u8> {
    to_bytes(r.into_body(), 1 << 30).await.unwrap().to_vec()
}

pub async fn get(f: &Fixture, uri: &str) -> (StatusCode, String, Vec<u8>) {
    let response = f
        .router
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let ctype = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = to_bytes(response.into_body(), 1 << 30)
        .await
        .unwrap()
        .to_vec();
    (status, ctype, body)
}

/// The first `n` bytes of an endless response.
pub async fn first_bytes(f: &Fixture, uri: &str, n: usize) -> Vec<u8> {
    let response = f
        .router
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{uri}");
    assert_eq!(response.headers()["content-type"], "video/mp2t");
    let mut body = response.into_body().into_data_stream();
    let mut out = Vec::new();
    while out.len() < n {
        let chunk = body.next().await.expect("the stream never ends").unwrap();
        out.extend_from_slice(&chunk);
    }
    out
}

/// Each fixture segment k is 188 * (k + 1) bytes.
pub fn sizes(seqs: std::ops::Range<usize>) -> usize {
    seqs.map(|k| 188 * (k + 1)).sum()
}

/// Bytes of an archived test segment.
pub const SEG: usize = 188 * 10;

/// The bytes of archived test segment `seq`: TS sync bytes with the seq
/// written in, so a mix-up shows.
pub fn payload(seq: u64) -> Vec<u8> {
    let mut p = vec![0x47; SEG];
    p[1..9].copy_from_slice(&seq.to_be_bytes());
    p
}

/// Writes `chunks` chunks of ten 2 s segments of [`payload`] from T0, back
/// to back (seq 0, 1, ...), as the recorder writes them: the `.ts` object,
/// then the index and catalog entry through `writer`. Returns their keys.
pub async fn write_chunks(
    storage: &Arc<dyn dvr_storage::Storage>,
    writer: &ArchiveStore,
    stream: &StreamName,
    chunks: u64,
) -> Vec<ChunkKey> {
    let flags = SegmentFlags {
        discontinuity: false,
        independent: true,
    };
    let mut keys = Vec::new();
    for c in 0..chunks {
        let start = (T0 + 20 * c as i64) * 1000;
        let key = ChunkKey::new(stream.clone(), UtcMs(start), c * 10);
        let seqs = c * 10..c * 10 + 10;
        let body: Vec<u8> = seqs.clone().flat_map(payload).collect();
        storage.put(&key.ts_key(), Bytes::from(body)).await.unwrap();
        let index = ChunkIndex::from_segments(
            CodecSummary::default(),
            seqs.map(|s| {
                let t = UtcMs(start + 2000 * (s - c * 10) as i64);
                (s, t, Ticks::from_ms(2000), Ticks(0), SEG as u32, flags)
            }),
        );
        writer.commit_chunk(key.clone(), index).await.unwrap();
        keys.push(key);
    }
    keys
}

/// `clip` recorded as stream `ch` from T0 by the real segmenter; now is
/// 1 s after its end.
pub fn recorded(clip: &str) -> Fixture {
    recorded_runs(&[clip], 0)
}

/// `clips` cut by the real segmenter one after the other from `clock`'s
/// time, each by a segmenter of its own starting `gap_ms` after the one
/// before ended (a new run of tape, its first segment flagged as a
/// discontinuity), numbered from seq 0.
pub fn segmented(clips: &[&str], gap_ms: i64, clock: &Arc<SimulatedClock>) -> Vec<Segment> {
    let mut segments: Vec<Segment> = Vec::new();
    for (i, clip) in clips.iter().enumerate() {
        if let Some(last) = segments.last() {
            clock.set(UtcMs(last.utc_end().0 + gap_ms));
        }
        let mut segmenter = Segmenter::new(
            SegmenterConfig::with_target(Ticks::from_secs(2)),
            Arc::clone(clock) as Arc<dyn dvr_common::Clock>,
        );
        let bytes = std::fs::read(clip_path(clip)).unwrap();
        let mut run = segmenter.push(&bytes);
        run.extend(segmenter.finish());
        assert!(run.len() >= 3, "{clip}: {} segments", run.len());
        for (k, mut segment) in run.into_iter().enumerate() {
            segment.seq = segments.len() as u64;
            if k == 0 && i > 0 {
                segment.flags.discontinuity = true;
            }
            segments.push(segment);
        }
    }
    segments
}

/// A committed clip of `testdata/` by name, or a clip made at test time
/// by its absolute path.
pub fn clip_path(clip: &str) -> std::path::PathBuf {
    if clip.starts_with('/') {
        clip.into()
    } else {
        clips::path(clip)
    }
}

/// `clips` recorded one after the other as stream `ch` from T0, each by a
/// segmenter of its own starting `gap_ms` after the one before ended (a
/// new run of tape, its first segment flagged as a discontinuity); now is
/// 1 s after the end.
pub fn recorded_runs(clips: &[&str], gap_ms: i64) -> Fixture {
    recorded_with(clips, gap_ms, PackagerConfig::default())
}

/// [`recorded_runs`] with a packager configured by `config`.
pub fn recorded_with(clips: &[&str], gap_ms: i64, config: PackagerConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SimulatedClock::new(UtcMs(T0 * 1000)));
    let segments = segmented(clips, gap_ms, &clock);
    let log =
        Arc::new(SegmentLog::open(dir.path().join("ch"), SegmentLogOptions::default()).unwrap());
    for segment in &segments {
        log.append(segment).unwrap();
    }
    let end = segments.last().unwrap().utc_end();
    clock.set(UtcMs(end.0 + 1000));
    let packager = Arc::new(Packager::new(
        config,
        Arc::clone(&clock) as Arc<dyn dvr_common::Clock>,
    ));
    packager.add_stream(StreamTape::new("ch", log, None));
    Fixture {
        router: Arc::clone(&packager).router(),
        packager,
        clock,
        _dir: dir,
    }
}

/// ffprobe over HTTP: the streams it finds and the duration it reports.
pub fn ffprobe(url: &str) -> (Vec<String>, f64) {
    let v = probe_json(
        url,
        &[
            "-show_entries",
            "stream=codec_type,codec_name:format=duration",
        ],
    );
    let mut streams: Vec<String> = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}:{}",
                s["codec_type"].as_str().unwrap(),
                s["codec_name"].as_str().unwrap()
            )
        })
        .collect();
    streams.sort();
    let duration = v["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    (streams, duration)
}

/// Serves `f` on a loopback port for ffprobe; returns the stream's base URL.
pub async fn serve(f: &Fixture) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = f.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://127.0.0.1:{port}/ch")
}

/// Seconds in GStreamer's `H:MM:SS.nnnnnnnnn`.
pub fn gst_seconds(time: &str) -> f64 {
    time.split(':')
        .map(|part| part.parse::<f64>().unwrap())
        .fold(0.0, |total, part| total * 60.0 + part)
}

/// GStreamer's `playbin` plays `url` to its end as fast as it decodes
/// (fake sinks, `sync=false`); the presentation times of the pictures it
/// decoded. Fails the test unless it reached EOS.
///
/// GStreamer 1.22's playbin now and then deadlocks under load while it
/// switches decoders at a DASH Period boundary (the second Period's caps
/// are set, then nothing, never an error); a run that stalls like that,
/// ended by the timeout, is tried once more. Any other end counts at once.
pub async fn gst_pictures(url: &str) -> Vec<f64> {
    let mut out = gst_play(url).await;
    if out.status.code() == Some(124) {
        eprintln!("{url}: GStreamer stalled (killed after 60 s); playing it once more");
        out = gst_play(url).await;
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("Got EOS from element \"playbin0\""),
        "{url}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        stdout.lines().rev().take(8).collect::<Vec<_>>().join("\n")
    );
    stdout
        .lines()
        .filter(|l| l.contains("vbin/GstFakeSink") && l.contains("chain"))
        .filter_map(|l| l.split("pts: ").nth(1)?.split(',').next().map(gst_seconds))
        .collect()
}

/// One `playbin` run of `url`, killed (status 124) after 60 s.
async fn gst_play(url: &str) -> std::process::Output {
    let played = url.to_owned();
    tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args(["60", "gst-launch-1.0", "-v", "playbin"])
            .arg(format!("uri={played}"))
            // Only the video sink prints its buffers: two sinks printing
            // from their own threads interleave lines under load, and a
            // mangled line is a picture lost to the count.
            .args([
                "video-sink=fakesink sync=false silent=false",
                "audio-sink=fakesink sync=false",
            ])
            .output()
            .expect("gst-launch-1.0 (make test-deps: GStreamer)")
    })
    .await
    .unwrap()
}

/// `segments` archived as `stream` in `storage` as the recorder writes
/// them: chunks of `per_chunk` segments (`.ts`, `.smp` sample tables when
/// `with_tables`, the index committed).
pub async fn archive(
    storage: &Arc<dyn dvr_storage::Storage>,
    stream: &StreamName,
    segments: &[Segment],
    per_chunk: usize,
    with_tables: bool,
) -> Arc<ArchiveStore> {
    let store = Arc::new(ArchiveStore::new(Arc::clone(storage)));
    for chunk in segments.chunks(per_chunk.max(1)) {
        let first = &chunk[0];
        let key = ChunkKey::new(stream.clone(), first.utc_start, first.seq);
        let bytes: Vec<u8> = chunk.iter().flat_map(|s| s.payload.to_vec()).collect();
        storage
            .put(&key.ts_key(), Bytes::from(bytes))
            .await
            .unwrap();
        if with_tables {
            let tables: Vec<(u64, SampleTable)> = chunk
                .iter()
                .map(|s| {
                    let t = SampleTable::from_ts(&s.payload, s.pts_start, s.duration).unwrap();
                    (s.seq, t)
                })
                .collect();
            storage
                .put(&key.smp_key(), Bytes::from(encode_chunk_tables(&tables)))
                .await
                .unwrap();
        }
        let index = ChunkIndex::from_segments(
            CodecSummary::default(),
            chunk.iter().map(|s| {
                (
                    s.seq,
                    s.utc_start,
                    s.duration,
                    s.pts_start,
                    s.payload.len() as u32,
                    s.flags,
                )
            }),
        );
        store.commit_chunk(key, index).await.unwrap();
    }
    store
}

/// `YYYY/MM/DD/HH/MM/SS` of UTC second `t`, as the picture URLs name it.
pub fn dated(t: i64) -> String {
    let c = dvr_common::CivilTime::from_utc(UtcMs::from_secs(t));
    format!(
        "{:04}/{:02}/{:02}/{:02}/{:02}/{:02}",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}
