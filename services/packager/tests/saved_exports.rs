//! Saved exports (`save-mp4`, the API's export) into real object stores:
//! s3s-fs for S3 and a one-node Swift (`dvr_testkit::s3`, `dvr_testkit::swift`).
//!
//! A tape of ten minutes (the committed clip cut by the real segmenter,
//! sixty times over) is archived in the store as the recorder writes it;
//! an export job of all of it is queued in the exports bucket. Replica A's
//! runner takes it and is killed in the middle: its whole runtime is shut
//! down, as a process dies, with the multipart upload (S3) or the
//! segments (Swift) begun and never finished: it is killed as soon as the
//! store holds a part of the upload. Then:
//! - nothing is under the export key: no object claims to be complete;
//! - replica B, its own packager and store clients over the same bucket,
//!   takes the job over once A's hold has not been renewed for its TTL,
//!   writes it and marks it done with its byte count;
//! - the object read back from the store is what ffprobe reads as the
//!   tape's duration, with both tracks.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dvr_archive::store::ArchiveStore;
use dvr_archive::tape::{StoreTape, StreamTape};
use dvr_archive::ArchiveRegistry;
use dvr_bus::{Kv, MemoryKv, SegmentLog, SegmentLogOptions};
use dvr_common::{Clock, SimulatedClock, StreamName, UtcMs};
use dvr_media::Segment;
use dvr_packager::exports::{ExportRunner, HOLD_TTL};
use dvr_packager::{Packager, PackagerConfig};
use dvr_proto::{
    export_job_key, export_object_key, stream_config_key, ExportJob, ExportState, Versioned,
    PROTO_VERSION,
};
use dvr_storage::StorageConfig;
use dvr_testkit::s3::S3sFs;
use dvr_testkit::swift::SwiftNode;
use support::{archive, ffprobe, segmented, T0};

const CLIP: &str = "h264_aac_720p.ts";
/// Copies of the 10 s clip on the tape: ten minutes, some 29 MB.
const COPIES: usize = 60;
const FILE: &str = "big/all.mp4";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[allow(
    clippy::disallowed_methods,
    reason = "a plain test thread polling the buckets; the runners run on runtimes of their own"
)]
fn sleep(d: Duration) {
    std::thread::sleep(d);
}

/// One packager replica over the archive at `root`: its own store clients,
/// packager and runner, sharing only the buckets. Built inside the runtime
/// that runs it (the clients' connections belong to it).
async fn replica(
    config: &StorageConfig,
    root: &str,
    jobs: &Arc<MemoryKv>,
    streams: &Arc<MemoryKv>,
    now: UtcMs,
    node: &str,
    log_dir: &Path,
) -> Arc<ExportRunner> {
    let registry = Arc::new(ArchiveRegistry::new(config.clone(), 0));
    let stream: StreamName = "ch".parse().unwrap();
    let store = Arc::new(ArchiveStore::new(Arc::clone(
        registry.get(root).unwrap().storage(),
    )));
    store.load(&stream).await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SimulatedClock::new(now));
    let packager = Arc::new(Packager::new(PackagerConfig::default(), Arc::clone(&clock)));
    let log = Arc::new(SegmentLog::open(log_dir.join(node), SegmentLogOptions::default()).unwrap());
    packager.add_stream(StreamTape::new(
        "ch",
        log,
        Some(Arc::new(StoreTape::new(stream, store))),
    ));
    ExportRunner::new(
        packager,
        Arc::clone(jobs) as Arc<dyn Kv>,
        Arc::clone(streams) as Arc<dyn Kv>,
        registry,
        clock,
        node,
        Duration::from_secs(3600),
    )
}

async fn job(jobs: &MemoryKv, id: &str) -> ExportJob {
    let entry = jobs.get(&export_job_key(id)).await.unwrap().unwrap();
    ExportJob::decode(&entry.value).unwrap()
}

/// The scenario of the module doc against the store at `root`;
/// `parts_begun` counts the pieces of unfinished uploads the store holds
/// (S3 multipart parts, Swift segments), which A is killed only once it
/// has sent.
fn killed_mid_job_leaves_nothing_and_is_taken_over(
    config: &StorageConfig,
    root: &str,
    parts_begun: &dyn Fn() -> usize,
) {
    let main = runtime();
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SimulatedClock::new(UtcMs(T0 * 1000)));
    let segments: Vec<Segment> = segmented(&[CLIP; COPIES], 0, &clock);
    let tape: f64 = segments.iter().map(|s| s.duration.0).sum::<i64>() as f64 / 90_000.0;
    let end = segments.last().unwrap().utc_end();
    let now = UtcMs(end.0 + 1000);
    let storage = {
        let registry = ArchiveRegistry::new(config.clone(), 0);
        Arc::clone(registry.get(root).unwrap().storage())
    };
    let stream: StreamName = "ch".parse().unwrap();
    main.block_on(archive(&storage, &stream, &segments, 30, true));

    let jobs = Arc::new(MemoryKv::new(dvr_proto::EXPORTS_KV_BUCKET));
    let streams = Arc::new(MemoryKv::new(dvr_proto::STREAMS_KV_BUCKET));
    let settings = serde_json::json!({
        "inputs": ["udp://239.0.0.1:1234"],
        "dvr": { "root": root, "depth": "1d" }
    });
    main.block_on(streams.put(
        &stream_config_key(&stream),
        Bytes::from(settings.to_string()),
    ))
    .unwrap();
    let id = "00112233445566778899aabbccddeeff";
    let duration = (end.0 / 1000 + 1) - T0;
    let queued = ExportJob {
        v: PROTO_VERSION,
        id: id.into(),
        stream: stream.clone(),
        from: T0,
        duration,
        file: FILE.into(),
        precise: false,
        ignore_gaps: false,
        overwrite: false,
        meta: Vec::new(),
        state: ExportState::Queued,
        node: None,
        bytes: 0,
        total: None,
        error: None,
        created_at: now,
        updated_at: now,
    };
    main.block_on(jobs.create(&export_job_key(id), Bytes::from(queued.encode())))
        .unwrap();
    let key = export_object_key(&stream, FILE);

    // Replica A takes the job; once it has sent a part, A dies.
    let a = runtime();
    let runner = a.block_on(replica(
        config,
        root,
        &jobs,
        &streams,
        now,
        "node-a",
        dir.path(),
    ));
    assert_eq!(parts_begun(), 0);
    a.spawn(runner.run());
    let started = Instant::now();
    while parts_begun() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "A never sent a part: {:?}",
            main.block_on(job(&jobs, id))
        );
        sleep(Duration::from_millis(5));
    }
    a.shutdown_background();
    let parts = parts_begun();
    let killed = Instant::now();
    let at_kill = main.block_on(job(&jobs, id));
    assert_eq!(
        at_kill.state,
        ExportState::Running,
        "A finished before it was killed: the job is too small to test a kill: {at_kill:?}"
    );
    assert_eq!(at_kill.node.as_deref(), Some("node-a"));
    assert!(
        main.block_on(storage.stat(&key)).unwrap().is_none(),
        "{key}: an object after A died mid-job, with {parts} parts sent"
    );

    // Replica B takes it over after A's hold expires and writes it.
    let runner = main.block_on(replica(
        config,
        root,
        &jobs,
        &streams,
        now,
        "node-b",
        dir.path(),
    ));
    let b = main.spawn(runner.run());
    let mut seen = at_kill;
    while !matches!(seen.state, ExportState::Done | ExportState::Failed) {
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "B has not finished it: {seen:?}"
        );
        sleep(Duration::from_millis(100));
        seen = main.block_on(job(&jobs, id));
        if seen.node.as_deref() != Some("node-b") {
            assert!(
                main.block_on(storage.stat(&key)).unwrap().is_none(),
                "{key}: an object before B wrote it"
            );
        }
    }
    let took = killed.elapsed();
    assert_eq!(seen.state, ExportState::Done, "{seen:?}");
    assert_eq!(seen.node.as_deref(), Some("node-b"), "{seen:?}");
    assert!(
        took >= HOLD_TTL,
        "taken over {took:?} after the kill, before the hold's TTL"
    );
    let object = main.block_on(storage.get(&key)).unwrap();
    assert_eq!(Some(object.len() as u64), seen.total, "{seen:?}");
    assert_eq!(seen.bytes, object.len() as u64);
    let path = dir.path().join("read-back.mp4");
    std::fs::write(&path, &object).unwrap();
    let (tracks, probed) = ffprobe(path.to_str().unwrap());
    assert_eq!(tracks, ["audio:aac", "video:h264"], "{tracks:?}");
    let video = video_seconds(&path);
    assert!(
        (video - tape).abs() <= 0.05,
        "ffprobe reads {video} s of video from {root}, the tape has {tape} s"
    );
    // The file lasts as its longest track: audio may end up to a frame
    // per joined run later than the video (the clip is joined 60 times).
    assert!(
        probed >= video && probed - tape <= 0.5,
        "ffprobe reads {probed} s in all from {root}, the tape has {tape} s"
    );
    eprintln!(
        "{root}: A killed with {parts} parts sent; {} bytes, {probed} s; taken over and written {took:?} after the kill",
        object.len()
    );
    b.abort();
}

/// ffprobe's duration of the video stream of `path`.
fn video_seconds(path: &Path) -> f64 {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-of", "csv=p=0"])
        .args(["-show_entries", "stream=duration"])
        .arg(path)
        .output()
        .expect("ffprobe (make test-deps)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("ffprobe: {text:?}"))
}

#[test]
fn s3_export_killed_mid_job_leaves_no_object_and_another_replica_finishes_it() {
    let rt = runtime();
    let server = rt.block_on(S3sFs::start(&["archive"]));
    // s3s-fs keeps the parts of an upload not completed as
    // `.upload_id-{id}.part-{n}` files beside the buckets.
    let data = server.data_dir();
    let parts = move || {
        std::fs::read_dir(&data)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with(".upload_id-")
            })
            .count()
    };
    killed_mid_job_leaves_nothing_and_is_taken_over(
        &server.storage_config(),
        "s3://archive/tv",
        &parts,
    );
    drop(server);
    drop(rt);
}

#[test]
fn swift_export_killed_mid_job_leaves_no_object_and_another_replica_finishes_it() {
    let rt = runtime();
    let node = rt.block_on(SwiftNode::start());
    rt.block_on(node.create_container("archive"));
    // The segments of an upload whose manifest is not written yet are
    // objects under `.segments/` of the container, as the store names them.
    let (url, token) = rt.block_on(node.login());
    let parts = move || {
        let out = std::process::Command::new("curl")
            .args(["-sSf", "-H", &format!("X-Auth-Token: {token}")])
            .arg(format!("{url}/archive?prefix=.segments/tv/exports/"))
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    killed_mid_job_leaves_nothing_and_is_taken_over(
        &node.storage_config(),
        "swift://archive/tv",
        &parts,
    );
    drop(node);
    drop(rt);
}
