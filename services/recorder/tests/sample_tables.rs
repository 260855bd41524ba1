//! The recorder stores each chunk's MP4 sample tables (`.smp`) beside it:
//! on a recorded clip, one table per segment, equal to the table computed
//! from the segment's bytes; chunks of bytes that hold no program get no
//! `.smp` (and stay as before: `copy_windows.rs`).

use std::sync::Arc;

use dvr_archive::store::ArchiveStore;
use dvr_bus::{SegmentLog, SegmentLogOptions};
use dvr_common::{SimulatedClock, UtcMs};
use dvr_media::mp4::{decode_chunk_tables, SampleTable};
use dvr_media::{Segmenter, SegmenterConfig};
use dvr_recorder::{RecorderConfig, StreamRecorder};
use dvr_storage::{StorageConfig, StorageUri};
use dvr_testkit::clips;

/// 2026-11-21T14:00:00Z
const T0: i64 = 1_795_269_600_000;

#[tokio::test]
async fn each_chunk_has_the_sample_tables_of_its_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log =
        Arc::new(SegmentLog::open(dir.path().join("log"), SegmentLogOptions::default()).unwrap());
    let uri: StorageUri = "memory://smp".parse().unwrap();
    let storage = dvr_storage::resolve(&uri, &StorageConfig::default()).unwrap();
    let clock = SimulatedClock::new(UtcMs(T0));
    let clip = clips::read(clips::H264_AAC_720P);
    let mut segmenter = Segmenter::new(SegmenterConfig::default(), Arc::new(clock.clone()));
    let mut segments = segmenter.push(&clip);
    segments.extend(segmenter.finish());
    assert!(segments.len() >= 3);
    for segment in &segments {
        log.append(segment).unwrap();
    }
    let store = Arc::new(ArchiveStore::new(Arc::clone(&storage)));
    let stream = "ch1".parse().unwrap();
    let mut rec = StreamRecorder::new(
        stream,
        Arc::clone(&log) as Arc<dyn dvr_bus::LiveLog>,
        Arc::clone(&store),
        Arc::new(clock.clone()),
        RecorderConfig::with_copy_interval(60_000),
    );
    clock.set(UtcMs(T0 + 120_000));
    assert_eq!(rec.copy(true).await.unwrap(), 1);
    let chunk = &store.chunks(&"ch1".parse().unwrap())[0];
    let bytes = storage.get(&chunk.key.smp_key()).await.unwrap();
    let tables = decode_chunk_tables(&bytes).unwrap();
    assert_eq!(
        tables.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        segments.iter().map(|s| s.seq).collect::<Vec<_>>()
    );
    for ((_, table), segment) in tables.iter().zip(&segments) {
        let meta = segment.meta();
        let expected = SampleTable::from_ts(&segment.payload, meta.pts_start, meta.duration);
        assert_eq!(table, &expected.unwrap());
        assert_eq!(table.tracks.len(), 2, "video and audio");
    }
    // .ts, .idx and .smp.
    assert_eq!(storage.list("ch1/").await.unwrap().len(), 3);
}
