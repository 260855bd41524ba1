//! `recording_status.json` over a tape whose source dropped out three times
//! (6 s, 15 s, 5 min) inside one one-hour copy interval: every gap shows,
//! and every answer is byte for byte the same while the tape is only in the
//! live log and after the recorder copied it into one chunk and trimmed
//! the live log. Once embedded (one archive store shared by recorder and
//! packager, live log on disk) and once distributed (live log on a real
//! nats-server, the packager's own store following the catalog summary the
//! recorder puts in the catalog bucket, as `dvr run` wires it). In-process
//! on a simulated clock, so the hour takes seconds.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dvr_archive::store::ArchiveStore;
use dvr_archive::tape::{StoreTape, StreamTape};
use dvr_bus::{Kv, KvOp, LiveLog, NatsBus, NatsConfig, SegmentLog, SegmentLogOptions};
use dvr_common::{Clock, SimulatedClock, StreamName, UtcMs};
use dvr_media::Segment;
use dvr_packager::{apply_summary, Packager, PackagerConfig};
use dvr_proto::{catalog_key, CatalogSummary, Versioned, CATALOG_KV_BUCKET};
use dvr_recorder::{catalog_summary, RecorderConfig, StreamRecorder};
use dvr_storage::{StorageConfig, StorageUri};
use dvr_testkit::fixtures;
use dvr_testkit::nats::NatsServer;
use futures::StreamExt;
use tokio::sync::mpsc;

/// 2026-11-21T14:00:00Z, in seconds.
const T0: i64 = 1_795_269_600;
const HOUR_MS: i64 = 3_600_000;
/// How long the source was on, from `T0`: half the hour, so the chunk
/// holds fewer segments than nats-server's default limit of consumers per
/// stream (each live-log read of a segment's bytes opens one).
const TAPE_MS: i64 = HOUR_MS / 2;
/// After how many segments the source went away, and for how long (ms).
/// Each is longer than the signal-loss threshold (twice the 2 s target).
const OUTAGES: [(usize, i64); 3] = [(150, 6_000), (300, 15_000), (450, 300_000)];

/// The tape's segments: 2 s each, the first after an outage flagged.
fn tape() -> Vec<Segment> {
    let mut out = Vec::new();
    let mut t = T0 * 1000;
    let mut flagged = false;
    while t + 2000 <= T0 * 1000 + TAPE_MS {
        let seq = out.len() as u64;
        out.push(
            fixtures::segment(seq)
                .starting_at(t)
                .discontinuity(flagged)
                .sync_bytes(188 * 2)
                .build(),
        );
        t += 2000;
        let outage = OUTAGES.iter().find(|(after, _)| *after == out.len());
        flagged = outage.is_some();
        t += outage.map_or(0, |(_, ms)| *ms);
    }
    out
}

/// The ranges the tape has, in the seeds' seconds.
fn expected_ranges(segments: &[Segment]) -> serde_json::Value {
    let mut bounds = vec![0];
    bounds.extend(OUTAGES.iter().map(|(after, _)| *after));
    bounds.push(segments.len());
    let ranges: Vec<serde_json::Value> = bounds
        .windows(2)
        .map(|w| {
            let from = segments[w[0]].utc_start.0 / 1000;
            let to = segments[w[1] - 1].utc_end().0 / 1000;
            serde_json::json!({ "from": from, "duration": to - from })
        })
        .collect();
    serde_json::Value::from(ranges)
}

/// What a player and middleware ask about the hour.
fn urls() -> Vec<String> {
    let to = T0 + 3600;
    vec![
        "/ch1/recording_status.json".to_owned(),
        format!("/ch1/recording_status.json?from={T0}&to={to}&request=ranges,hour_bitmap,locks"),
        format!(
            "/ch1/recording_status.json?from={}&to={to}&request=ranges,hour_bitmap",
            T0 - 60
        ),
        // Over four days: the forced brief answer, whole hours.
        format!(
            "/ch1/recording_status.json?from={}&to={to}&request=ranges",
            T0 - 5 * 86_400
        ),
        format!("/ch1/archive-{T0}-3600.m3u8"),
    ]
}

/// A packager serving `tape` on a free port.
async fn serve(tape: StreamTape, clock: &SimulatedClock) -> u16 {
    let packager = Arc::new(Packager::new(
        PackagerConfig::default(),
        Arc::new(clock.clone()) as Arc<dyn Clock>,
    ));
    packager.add_stream(tape);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, packager.router()).await });
    port
}

/// The bodies of [`urls`], each answered 200.
async fn answers(port: u16) -> Vec<String> {
    let mut out = Vec::new();
    for url in urls() {
        let (status, body) = tokio::task::spawn_blocking({
            let url = url.clone();
            move || support::get(port, &url)
        })
        .await
        .unwrap();
        let body = String::from_utf8(body).unwrap();
        assert_eq!(status, 200, "{url}: {body}");
        out.push(body);
    }
    out
}

/// Each answer after the copy is the one before it.
fn same_answers(after: &[String], before: &[String]) {
    for ((url, after), before) in urls().iter().zip(after).zip(before) {
        assert!(
            after == before,
            "{url} changed after the copy:\n{before}\n{after}"
        );
    }
}

/// Every gap is in the ranges and in the playlist, the hour in the bitmap.
fn check_gaps(answers: &[String], segments: &[Segment]) {
    let detailed: serde_json::Value = serde_json::from_str(&answers[1]).unwrap();
    assert_eq!(
        detailed[0]["ranges"],
        expected_ranges(segments),
        "{}",
        answers[1]
    );
    assert_eq!(detailed[0]["hour_bitmap"], "1", "{}", answers[1]);
    assert_eq!(detailed[0]["locks"], serde_json::json!([]));
    let forced: serde_json::Value = serde_json::from_str(&answers[3]).unwrap();
    assert_eq!(forced[0]["warning"], "too_big_range", "{}", answers[3]);
    assert_eq!(
        forced[0]["ranges"],
        serde_json::json!([{ "from": T0, "duration": 3600 }])
    );
    let playlist = &answers[4];
    assert_eq!(
        playlist.matches("#EXT-X-DISCONTINUITY\n").count(),
        OUTAGES.len(),
        "{playlist}"
    );
}

fn segment_storage(dir: &std::path::Path) -> Arc<dyn dvr_storage::Storage> {
    let uri = StorageUri::parse(&format!("file://{}", dir.display())).unwrap();
    dvr_storage::resolve(&uri, &StorageConfig::default()).unwrap()
}

fn recorder(
    stream: &StreamName,
    log: Arc<dyn LiveLog>,
    store: &Arc<ArchiveStore>,
    clock: &SimulatedClock,
) -> StreamRecorder {
    StreamRecorder::new(
        stream.clone(),
        log,
        Arc::clone(store),
        Arc::new(clock.clone()),
        RecorderConfig::with_copy_interval(HOUR_MS),
    )
}

/// Copies the hour: two hours later, so the recorder also trims it from
/// the live log and the archive answers.
async fn copy_the_hour(recorder: &mut StreamRecorder, log: &dyn LiveLog, clock: &SimulatedClock) {
    clock.set(UtcMs(T0 * 1000 + 3 * HOUR_MS));
    assert_eq!(
        recorder.copy(false).await.unwrap(),
        1,
        "one chunk for the hour"
    );
    // Trimmed, but for the segment log's file being written.
    let left = log.segments_after(None).await.unwrap();
    assert!(left.len() <= 1, "the live log is trimmed: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_ranges_show_every_gap_before_and_after_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let stream: StreamName = "ch1".parse().unwrap();
    let clock = SimulatedClock::new(UtcMs(T0 * 1000 + HOUR_MS + 10_000));
    // One file per segment, so the recorder's trim empties the log.
    let options = SegmentLogOptions {
        max_file_bytes: 1,
        ..SegmentLogOptions::default()
    };
    let log = Arc::new(SegmentLog::open(dir.path().join("log"), options).unwrap());
    let segments = tape();
    for s in &segments {
        LiveLog::append(&*log, s).await.unwrap();
    }
    let store = Arc::new(ArchiveStore::new(segment_storage(
        &dir.path().join("archive"),
    )));
    let live: Arc<dyn LiveLog> = log.clone();
    let tape = StreamTape::new(
        "ch1",
        Arc::clone(&live),
        Some(Arc::new(StoreTape::new(stream.clone(), Arc::clone(&store)))),
    );
    let port = serve(tape, &clock).await;

    let before = answers(port).await;
    check_gaps(&before, &segments);
    let mut recorder = recorder(&stream, Arc::clone(&live), &store, &clock);
    copy_the_hour(&mut recorder, &*live, &clock).await;
    let chunks = store.chunks(&stream);
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].gaps.len(), OUTAGES.len());
    same_answers(&answers(port).await, &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_ranges_show_every_gap_before_and_after_the_copy() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let stream: StreamName = "ch1".parse().unwrap();
    let clock = SimulatedClock::new(UtcMs(T0 * 1000 + HOUR_MS + 10_000));
    // Recorder and packager as separate processes: a connection, a live
    // log handle and an archive store each, one bucket between them.
    let connect = || async {
        NatsBus::connect(NatsConfig::new(&nats.url()))
            .await
            .unwrap()
    };
    let (recorder_bus, packager_bus) = (connect().await, connect().await);
    let recorder_log: Arc<dyn LiveLog> = Arc::new(recorder_bus.live_log(&stream).await.unwrap());
    let segments = tape();
    for s in &segments {
        recorder_log.append(s).await.unwrap();
    }
    let storage = segment_storage(&dir.path().join("archive"));
    let recorder_store = Arc::new(ArchiveStore::new(Arc::clone(&storage)));
    let packager_store = Arc::new(ArchiveStore::new(storage));
    packager_store.load(&stream).await.unwrap();
    let packager_log: Arc<dyn LiveLog> = Arc::new(packager_bus.live_log(&stream).await.unwrap());
    let tape = StreamTape::new(
        "ch1",
        packager_log,
        Some(Arc::new(StoreTape::new(
            stream.clone(),
            Arc::clone(&packager_store),
        ))),
    );
    let port = serve(tape, &clock).await;

    // The packager follows the catalog summary as `dvr run` does
    // (`dvr_packager::follow_catalog`): a summary past what it knows
    // brings the stream's catalog up to it.
    let packager_kv = packager_bus.kv(CATALOG_KV_BUCKET).await.unwrap();
    let mut watch = packager_kv.watch("").await.unwrap();
    let (reloaded_tx, mut reloaded) = mpsc::unbounded_channel();
    let follower = {
        let (store, stream) = (Arc::clone(&packager_store), stream.clone());
        tokio::spawn(async move {
            while let Some(Ok(entry)) = watch.next().await {
                let Ok(summary) = CatalogSummary::decode(&entry.value) else {
                    continue;
                };
                if entry.op == KvOp::Put {
                    apply_summary(&store, &stream, &summary).await;
                    let _ = reloaded_tx.send(summary.last_seq);
                }
            }
        })
    };

    let before = answers(port).await;
    check_gaps(&before, &segments);
    let (chunks_tx, mut chunks) = mpsc::unbounded_channel();
    let mut recorder = recorder(&stream, Arc::clone(&recorder_log), &recorder_store, &clock)
        .with_observer(chunks_tx);
    copy_the_hour(&mut recorder, &*recorder_log, &clock).await;
    // The recorder announces its chunk as `dvr run` does
    // (`dvr_recorder::RecorderWorker`).
    let entry = chunks.recv().await.unwrap();
    assert_eq!(entry.gaps.len(), OUTAGES.len());
    let summary = catalog_summary(&recorder_store, &entry);
    recorder_bus
        .kv(CATALOG_KV_BUCKET)
        .await
        .unwrap()
        .put(&catalog_key(&stream), Bytes::from(summary.encode()))
        .await
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(30), reloaded.recv())
        .await
        .expect("the packager reloads on the summary");
    assert_eq!(seen, Some(entry.last_seq));
    assert_eq!(packager_store.chunks(&stream), vec![entry]);
    same_answers(&answers(port).await, &before);
    follower.abort();
}
