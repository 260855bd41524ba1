//! The recorder on a simulated clock: chunks per copy window, the open window
//! flushed at shutdown, a restart that neither loses nor duplicates a
//! segment, and retention by depth.

use std::sync::Arc;

use bytes::Bytes;
use dvr_archive::store::ArchiveStore;
use dvr_archive::RetentionPolicy;
use dvr_bus::{SegmentLog, SegmentLogOptions};
use dvr_common::{Clock, SimulatedClock, StreamName, Ticks, UtcMs};
use dvr_media::{CodecSummary, Segment, SegmentFlags};
use dvr_recorder::{RecorderConfig, StreamRecorder};
use dvr_storage::{StorageConfig, StorageUri};

/// 2026-11-21T14:00:00Z
const T0: i64 = 1_795_269_600_000;

fn segment(seq: u64) -> Segment {
    Segment {
        seq,
        pts_start: Ticks(seq as i64 * 180_000),
        duration: Ticks::from_secs(2),
        utc_start: UtcMs(T0 + seq as i64 * 2000),
        flags: SegmentFlags {
            discontinuity: false,
            independent: true,
        },
        codecs: Arc::new(CodecSummary::default()),
        payload: Bytes::from(vec![seq as u8; 188 * 4]),
    }
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

fn recorder(f: &Fixture, store: &Arc<ArchiveStore>) -> StreamRecorder {
    let mut config = RecorderConfig::with_copy_interval(60_000);
    config.retention = RetentionPolicy {
        depth_ms: Some(120_000),
        ..RetentionPolicy::default()
    };
    StreamRecorder::new(
        f.stream.clone(),
        Arc::clone(&f.log) as Arc<dyn dvr_bus::LiveLog>,
        Arc::clone(store),
        Arc::new(f.clock.clone()),
        config,
    )
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
    let left: Vec<u64> = store
        .chunks(&f.stream)
        .iter()
        .map(|c| c.first_seq)
        .collect();
    assert_eq!(left, vec![90, 120]);
    let listed = f.storage.list("ch1/").await.unwrap();
    assert_eq!(
        listed.len(),
        4,
        "the .ts and .idx of two chunks: {listed:?}"
    );
}
