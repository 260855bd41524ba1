//! The recorder against a real S3 server (s3s-fs) that goes away for
//! several copy windows: every copy fails while it is down, the segments
//! wait in the live log, and when it is back one copy uploads the whole
//! backlog, oldest first, under the keys a first attempt would have used.
//! The clock is simulated, so windows pass in milliseconds; only the server
//! is real.

use std::sync::Arc;

use dvr_archive::store::ArchiveStore;
use dvr_bus::{SegmentLog, SegmentLogOptions};
use dvr_common::error::HasErrorKind;
use dvr_common::{ErrorKind, SimulatedClock, StreamName, UtcMs};
use dvr_media::Segment;
use dvr_recorder::{RecorderConfig, StreamRecorder};
use dvr_storage::StorageUri;
use dvr_testkit::fixtures::{self, T0_MS as T0};
use dvr_testkit::s3::S3sFs;

fn segment(seq: u64) -> Segment {
    fixtures::segment(seq)
        .on_tape_from(T0)
        .seq_bytes(188 * 4)
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_windows_goes_up_in_order_once_the_store_returns() {
    let mut server = S3sFs::start(&["archive"]).await;
    let mut config = server.storage_config();
    config.retry.max_attempts = 1;
    let uri: StorageUri = "s3://archive/rec".parse().unwrap();
    let storage = dvr_storage::resolve(&uri, &config).unwrap();
    let store = Arc::new(ArchiveStore::new(Arc::clone(&storage)));
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(SegmentLog::open(dir.path(), SegmentLogOptions::default()).unwrap());
    let clock = SimulatedClock::new(UtcMs(T0));
    let stream: StreamName = "ch1".parse().unwrap();
    let mut rec = StreamRecorder::new(
        stream.clone(),
        Arc::clone(&log) as Arc<dyn dvr_bus::LiveLog>,
        Arc::clone(&store),
        Arc::new(clock.clone()),
        RecorderConfig::with_copy_interval(60_000),
    );

    // The first window goes up while the server is there.
    for seq in 0..30 {
        log.append(&segment(seq)).unwrap();
    }
    clock.set(UtcMs(T0 + 73_000));
    assert_eq!(rec.copy(false).await.unwrap(), 1);

    // Three more windows pass with the server down: every attempt fails
    // with a transient error and nothing is archived.
    server.stop();
    for window in 1..4 {
        for seq in window * 30..(window + 1) * 30 {
            log.append(&segment(seq)).unwrap();
        }
        clock.set(UtcMs(T0 + (window as i64 + 1) * 60_000 + 13_000));
        let err = rec.copy(false).await.unwrap_err();
        assert_eq!(err.error_kind(), ErrorKind::Unavailable, "{err}");
    }
    assert_eq!(rec.archived_seq(), Some(29));
    assert!(
        log.get(30).unwrap().is_some(),
        "the backlog waits in the live log"
    );

    // Back on the same port and data: one copy uploads the three windows.
    server.restart().await;
    assert_eq!(rec.copy(false).await.unwrap(), 3);
    assert_eq!(rec.archived_seq(), Some(119));

    // What a fresh reader finds: four chunks, seqs 0..120 once each, in
    // order, and no object besides their .ts and .idx.
    let fresh = ArchiveStore::new(Arc::clone(&storage));
    let report = fresh.load(&stream).await.unwrap();
    assert_eq!(report.chunks, 4, "{report:?}");
    assert!(
        report.orphans.is_empty() && report.bad.is_empty(),
        "{report:?}"
    );
    let mut seqs = Vec::new();
    for chunk in fresh.chunks(&stream) {
        let index = fresh.index(&chunk.key).await.unwrap();
        seqs.extend(index.records.iter().map(|r| r.seq));
    }
    assert_eq!(seqs, (0..120).collect::<Vec<_>>());
    assert_eq!(storage.list("ch1/").await.unwrap().len(), 8);
}
