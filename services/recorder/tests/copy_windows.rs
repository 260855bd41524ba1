//! The recorder on a simulated clock: chunks per copy window, the open window
//! flushed at shutdown, a restart that neither loses nor duplicates a
//! segment, a recording schedule across midnight, retention by depth and by
//! disk percentage (on a real, small tmpfs), and retention waiting for a
//! lock edit.

use std::sync::Arc;

use dvr_archive::store::ArchiveStore;
use dvr_archive::{Lock, RetentionPolicy};
use dvr_bus::{Exclusive, Kv, MemoryKv, SegmentLog, SegmentLogOptions};
use dvr_common::config::Schedule;
use dvr_common::{Clock, SimulatedClock, StreamName, UtcMs};
use dvr_media::Segment;
use dvr_proto::{lock_edit_key, LOCKS_KV_BUCKET};
use dvr_recorder::{DiskMeter, RecorderConfig, StreamRecorder};
use dvr_storage::{StorageConfig, StorageUri};
use dvr_testkit::fixtures::{self, T0_MS as T0};

fn segment(seq: u64) -> Segment {
    segment_of(seq, 4)
}

/// Segment `seq` with `packets` TS packets of payload.
fn segment_of(seq: u64, packets: usize) -> Segment {
    segment_from(T0, seq, packets)
}

/// Segment `seq` of a tape that starts at `start` (2 s segments).
fn segment_from(start: i64, seq: u64, packets: usize) -> Segment {
    fixtures::segment(seq)
        .on_tape_from(start)
        .seq_bytes(188 * packets)
        .build()
}

struct Fixture {
    stream: StreamName,
    log: Arc<SegmentLog>,
    storage: Arc<dyn dvr_storage::Storage>,
    clock: SimulatedClock,
    _dir: tempfile::TempDir,
}

fn fixture(name: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let log =
        Arc::new(SegmentLog::open(dir.path().join("log"), SegmentLogOptions::default()).unwrap());
    let uri: StorageUri = format!("memory://{name}").parse().unwrap();
    let storage = dvr_storage::resolve(&uri, &StorageConfig::default()).unwrap();
    Fixture {
        stream: "ch1".parse().unwrap(),
        log,
        storage,
        clock: SimulatedClock::new(UtcMs(T0)),
        _dir: dir,
    }
}

/// A recorder with one-minute windows and a depth of two minutes.
fn recorder(f: &Fixture, store: &Arc<ArchiveStore>) -> StreamRecorder {
    let mut config = RecorderConfig::with_copy_interval(60_000);
    config.retention = RetentionPolicy {
        depth_ms: Some(120_000),
        ..RetentionPolicy::default()
    };
    recorder_with(f, store, config)
}

fn recorder_with(f: &Fixture, store: &Arc<ArchiveStore>, config: RecorderConfig) -> StreamRecorder {
    StreamRecorder::new(
        f.stream.clone(),
        Arc::clone(&f.log) as Arc<dyn dvr_bus::LiveLog>,
        Arc::clone(store),
        Arc::new(f.clock.clone()),
        config,
    )
}

/// The first seq of each chunk in the catalog.
fn chunk_starts(store: &ArchiveStore, stream: &StreamName) -> Vec<u64> {
    store.chunks(stream).iter().map(|c| c.first_seq).collect()
}

/// Every archived seq, from the chunk indexes, in order.
async fn archived_seqs(store: &ArchiveStore, stream: &StreamName) -> Vec<u64> {
    let mut seqs = Vec::new();
    for chunk in store.chunks(stream) {
        let index = store.index(&chunk.key).await.unwrap();
        seqs.extend(index.records.iter().map(|r| r.seq));
    }
    seqs
}

#[tokio::test]
async fn one_chunk_per_closed_window_and_the_open_one_at_shutdown() {
    let f = fixture("windows");
    let store = Arc::new(ArchiveStore::new(Arc::clone(&f.storage)));
    let mut rec = recorder(&f, &store);
    // 75 segments: 2.5 one-minute windows.
    for seq in 0..75 {
        f.log.append(&segment(seq)).unwrap();
    }
    f.clock.set(UtcMs(T0 + 150_000));
    // Windows 1 and 2 are closed (a later one exists); window 3 is open.
    assert_eq!(rec.copy(false).await.unwrap(), 2);
    assert_eq!(rec.archived_seq(), Some(59));
    let chunks = store.chunks(&f.stream);
    assert_eq!(
        chunks
            .iter()
            .map(|c| (c.first_seq, c.last_seq))
            .collect::<Vec<_>>(),
        vec![(0, 29), (30, 59)]
    );
    assert_eq!(
        chunks[0].key.ts_key(),
        "ch1/2026/11/21/14/00000000000000000000.ts"
    );
    // Nothing more until the window closes (plus the grace for its last segment).
    assert_eq!(rec.copy(false).await.unwrap(), 0);
    // Shutdown flushes the open window.
    assert_eq!(rec.copy(true).await.unwrap(), 1);
    assert_eq!(
        archived_seqs(&store, &f.stream).await,
        (0..75).collect::<Vec<_>>()
    );
    // The bytes in the archive are the segments' bytes.
    let planned = store
        .plan(&f.stream, UtcMs(T0 + 62_000), UtcMs(T0 + 64_000))
        .await
        .unwrap();
    let dvr_archive::PlanItem::Segment(s) = &planned[0] else {
        panic!("{planned:?}")
    };
    let bytes = store.read(&s.ts_key, s.byte_range()).await.unwrap();
    assert_eq!(bytes, segment(31).payload);
}

#[tokio::test]
async fn a_restarted_recorder_continues_without_duplicates() {
    let f = fixture("restart");
    let store = Arc::new(ArchiveStore::new(Arc::clone(&f.storage)));
    let mut rec = recorder(&f, &store);
    for seq in 0..40 {
        f.log.append(&segment(seq)).unwrap();
    }
    f.clock.set(UtcMs(T0 + 80_000));
    rec.copy(false).await.unwrap();
    assert_eq!(rec.archived_seq(), Some(29));
    // Crash: the process dies; a new one loads the catalog from storage.
    drop(rec);
    let store = Arc::new(ArchiveStore::new(Arc::clone(&f.storage)));
    store.load(&f.stream).await.unwrap();
    let mut rec = recorder(&f, &store);
    assert_eq!(rec.archived_seq(), Some(29));
    for seq in 40..70 {
        f.log.append(&segment(seq)).unwrap();
    }
    f.clock.set(UtcMs(T0 + 200_000));
    rec.copy(true).await.unwrap();
    assert_eq!(
        archived_seqs(&store, &f.stream).await,
        (0..70).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn retention_deletes_whole_expired_chunks_and_the_live_log_is_trimmed() {
    let f = fixture("retention");
    let store = Arc::new(ArchiveStore::new(Arc::clone(&f.storage)));
    let mut rec = recorder(&f, &store);
    for seq in 0..150 {
        f.log.append(&segment(seq)).unwrap();
    }
    f.clock.set(UtcMs(T0 + 300_000 + 12_000));
    assert_eq!(rec.copy(false).await.unwrap(), 5);
    // Depth 2 min at T0+5:12: windows ending at or before T0+3:12 are expired.
    let plan = store
        .enforce_retention(
            &f.stream,
            &RetentionPolicy {
                depth_ms: Some(120_000),
                ..Default::default()
            },
            f.clock.now(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(plan.delete.len(), 3);
    let left = chunk_starts(&store, &f.stream);
    assert_eq!(left, vec![90, 120]);
    let listed = f.storage.list("ch1/").await.unwrap();
    assert_eq!(
        listed.len(),
        4,
        "the .ts and .idx of two chunks: {listed:?}"
    );
}

#[tokio::test]
async fn a_lock_written_while_retention_waits_for_the_edit_key_is_kept() {
    let f = fixture("lock-race");
    let store = Arc::new(ArchiveStore::new(Arc::clone(&f.storage)));
    let locks: Arc<dyn Kv> = Arc::new(MemoryKv::new(LOCKS_KV_BUCKET));
    let mut rec =
        recorder(&f, &store).with_lock_edits(Exclusive::new(Arc::clone(&locks), "recorder"));
    for seq in 0..150 {
        f.log.append(&segment(seq)).unwrap();
    }
    f.clock.set(UtcMs(T0 + 300_000 + 12_000));
    assert_eq!(rec.copy(false).await.unwrap(), 5);
    // An editor (an API replica) holds the stream's key; retention, started
    // meanwhile, must wait for it, then see the lock it wrote: the first
    // chunk (expired by depth) stays.
    let editor = Exclusive::new(Arc::clone(&locks), "api");
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let key = lock_edit_key(&f.stream);
    let edit = editor.run(&key, async {
        started_tx.send(()).unwrap();
        // Long enough for an unguarded pass to plan and delete.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        store
            .lock(&f.stream, Lock::new(UtcMs(T0 + 5_000), 10_000).unwrap())
            .await
            .unwrap();
    });
    let retain = async {
        started.await.unwrap();
        rec.retain().await.unwrap()
    };
    let (edited, plan) = tokio::join!(edit, retain);
    edited.unwrap();
    let deleted: Vec<u64> = plan.delete.iter().map(|(k, _)| k.first_seq).collect();
    let left = chunk_starts(&store, &f.stream);
    assert_eq!(left, vec![0, 90, 120], "retention deleted {deleted:?}");
}

/// A tmpfs of a fixed size, mounted for one test and unmounted after it.
/// Mounting needs root, as `make test` has in CI.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("mount(8) runs");
        assert!(
            out.status.success(),
            "this test mounts a {size} tmpfs, which needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn disk_percentage_retention_frees_a_real_file_system_oldest_first() {
    let disk = Tmpfs::mount("16m");
    let mut f = fixture("disk");
    let uri: StorageUri = format!("file://{}/archive", disk.dir.path().display())
        .parse()
        .unwrap();
    f.storage = dvr_storage::resolve(&uri, &StorageConfig::default()).unwrap();
    let store = Arc::new(ArchiveStore::new(Arc::clone(&f.storage)));
    let mut config = RecorderConfig::with_copy_interval(60_000);
    config.retention = RetentionPolicy {
        max_disk_usage_percent: Some(50),
        ..RetentionPolicy::default()
    };
    let meter = DiskMeter::new(disk.dir.path());
    let mut rec = recorder_with(&f, &store, config).with_disk(meter.clone());
    // Four one-minute chunks of 30 segments of 100 KiB: about 12 MB, 3/4
    // of the file system.
    for seq in 0..120 {
        f.log.append(&segment_of(seq, 545)).unwrap();
    }
    f.clock.set(UtcMs(T0 + 240_000 + 12_000));
    assert_eq!(rec.copy(false).await.unwrap(), 4);
    let full = meter.measure().unwrap();
    assert!(
        full.used_bytes * 100 > full.total_bytes * 70,
        "the chunks fill the tmpfs: {full:?}"
    );
    let plan = rec.retain().await.unwrap();
    let left = chunk_starts(&store, &f.stream);
    assert_eq!(left, vec![60, 90], "deleted {:?}", plan.delete);
    let after = meter.measure().unwrap();
    assert!(
        after.used_bytes * 100 <= after.total_bytes * 50,
        "under the limit after the pass: {after:?}"
    );
    // Under the limit, the next pass deletes nothing.
    assert!(rec.retain().await.unwrap().delete.is_empty());
}

#[tokio::test]
async fn a_schedule_across_midnight_archives_only_what_starts_inside_it() {
    let f = fixture("schedule");
    let store = Arc::new(ArchiveStore::new(Arc::clone(&f.storage)));
    let mut config = RecorderConfig::with_copy_interval(60_000);
    config.schedule = Some(Schedule::parse("23:59-0:01").unwrap());
    let mut rec = recorder_with(&f, &store, config);
    // Six minutes from 23:58:00 UTC: only 23:59:00 to 00:01:00 is wanted.
    let start = T0 + 9 * 3_600_000 + 58 * 60_000;
    for seq in 0..180 {
        f.log.append(&segment_from(start, seq, 4)).unwrap();
    }
    f.clock.set(UtcMs(start + 7 * 60_000));
    assert_eq!(
        rec.copy(false).await.unwrap(),
        2,
        "the 23:59 and 00:00 windows"
    );
    let chunks: Vec<(u64, u64)> = store
        .chunks(&f.stream)
        .iter()
        .map(|c| (c.first_seq, c.last_seq))
        .collect();
    assert_eq!(chunks, vec![(30, 59), (60, 89)]);
    // What the schedule left out is done with: the recorder goes on after
    // it, and the next pass writes nothing again.
    assert_eq!(rec.archived_seq(), Some(179));
    assert_eq!(rec.copy(true).await.unwrap(), 0);
    assert_eq!(
        archived_seqs(&store, &f.stream).await,
        (30..90).collect::<Vec<_>>()
    );
    // The metrics say why the other 120 are not in the archive.
    let metrics = dvr_telemetry::metrics::render();
    assert!(
        metrics.contains(&format!(
            "dvr_recorder_unscheduled_segments_total{{stream=\"{}\"}} 120\n",
            f.stream
        )),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("unscheduled"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
