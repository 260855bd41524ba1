//! The archive store on a real `file://` archive and a simulated clock:
//! retention never deletes a locked chunk, damage behind our back becomes a
//! gap, the caches never serve a chunk the catalog has forgotten, and a
//! store following another process's recorder ends with its catalog.

use std::sync::Arc;

use bytes::Bytes;
use dvr_archive::store::{ArchiveStore, Followed, StoreError};
use dvr_archive::{
    ChunkIndex, ChunkKey, DiskCache, DiskCacheConfig, Lock, MemoryCache, PlanItem, RetentionPolicy,
};
use dvr_common::{Clock, SimulatedClock, StreamName, Ticks, UtcMs};
use dvr_media::{CodecSummary, SegmentFlags};
use dvr_storage::{Storage, StorageConfig, StorageUri};

/// 2026-11-21T14:00:00Z
const H0: i64 = 1_795_269_600_000;
const HOUR: i64 = 3_600_000;
/// Segments per test chunk, 2 s each, 1880 bytes each.
const SEGMENTS: u64 = 10;
const SEG_BYTES: u32 = 1880;

struct Fixture {
    storage: Arc<dyn Storage>,
    stream: StreamName,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let uri = StorageUri::parse(&format!("file://{}", dir.path().display())).unwrap();
    let storage = dvr_storage::resolve(&uri, &StorageConfig::default()).unwrap();
    Fixture {
        storage,
        stream: "ort".parse().unwrap(),
        _dir: dir,
    }
}

fn payload(seq: u64) -> Vec<u8> {
    let mut p = vec![0x47; SEG_BYTES as usize];
    p[1..9].copy_from_slice(&seq.to_be_bytes());
    p
}

/// Writes a chunk of [`SEGMENTS`] segments starting at `start` with seq
/// `first_seq`, both objects, through the store.
async fn write_chunk(f: &Fixture, store: &ArchiveStore, first_seq: u64, start: i64) -> ChunkKey {
    let key = ChunkKey::new(f.stream.clone(), UtcMs(start), first_seq);
    let seqs = first_seq..first_seq + SEGMENTS;
    let body: Vec<u8> = seqs.clone().flat_map(payload).collect();
    f.storage
        .put(&key.ts_key(), Bytes::from(body))
        .await
        .unwrap();
    let flags = SegmentFlags {
        discontinuity: false,
        independent: true,
    };
    let index = ChunkIndex::from_segments(
        CodecSummary::default(),
        seqs.map(|seq| {
            let i = (seq - first_seq) as i64;
            (
                seq,
                UtcMs(start + 2000 * i),
                Ticks::from_ms(2000),
                Ticks(0),
                SEG_BYTES,
                flags,
            )
        }),
    );
    store.commit_chunk(key.clone(), index).await.unwrap();
    key
}

fn items(plan: &[PlanItem]) -> Vec<String> {
    plan.iter()
        .map(|i| match i {
            PlanItem::Segment(s) => s.record.seq.to_string(),
            PlanItem::Gap { from, to } => {
                format!("gap{}-{}", (from.0 - H0) / 1000, (to.0 - H0) / 1000)
            }
        })
        .collect()
}

#[tokio::test]
async fn retention_never_deletes_a_locked_chunk_as_the_clock_runs() {
    let f = fixture();
    let store = ArchiveStore::new(Arc::clone(&f.storage));
    // Three hour chunks (20 s of tape each).
    let keys = [
        write_chunk(&f, &store, 0, H0).await,
        write_chunk(&f, &store, 100, H0 + HOUR).await,
        write_chunk(&f, &store, 200, H0 + 2 * HOUR).await,
    ];
    let clock = SimulatedClock::new(UtcMs(H0 + 2 * HOUR + 30_000));
    let policy = RetentionPolicy {
        depth_ms: Some(HOUR),
        ..RetentionPolicy::default()
    };
    // A lock on 5 s in the middle of the second chunk, as `dvr ctl lock` writes it.
    let lock = Lock::new(UtcMs(H0 + HOUR + 5_000), 5_000).unwrap();
    let locks = store.lock(&f.stream, lock).await.unwrap();
    assert_eq!(locks.locks, vec![lock]);
    let plan = store
        .enforce_retention(&f.stream, &policy, clock.now(), None)
        .await
        .unwrap();
    assert_eq!(plan.delete.len(), 1, "{plan:?}");
    assert_eq!(plan.kept_for_locks, vec![keys[1].clone()]);
    let left: Vec<String> = f
        .storage
        .list("ort/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert!(!left.contains(&keys[0].ts_key()));
    assert!(left.contains(&keys[1].ts_key()) && left.contains(&keys[1].idx_key()));
    // A day later, still locked: still kept, and still served.
    clock.advance_ms(24 * HOUR);
    store
        .enforce_retention(&f.stream, &policy, clock.now(), None)
        .await
        .unwrap();
    assert_eq!(store.chunks(&f.stream).len(), 1);
    let plan = store
        .plan(&f.stream, UtcMs(H0 + HOUR), UtcMs(H0 + HOUR + 4_000))
        .await
        .unwrap();
    assert_eq!(items(&plan), ["100", "101"]);
    // Unlocked: the next pass deletes it.
    let (_, removed) = store.unlock(&f.stream, lock).await.unwrap();
    assert!(removed);
    store
        .enforce_retention(&f.stream, &policy, clock.now(), None)
        .await
        .unwrap();
    assert!(store.chunks(&f.stream).is_empty());
    assert!(!f
        .storage
        .list("ort/")
        .await
        .unwrap()
        .iter()
        .any(|o| o.key.ends_with(".ts")));
}

#[tokio::test]
async fn status_locks_are_cached_for_a_few_seconds() {
    let f = fixture();
    let store = ArchiveStore::new(Arc::clone(&f.storage));
    let clock = SimulatedClock::new(UtcMs(H0));
    assert!(store
        .locks_cached(&f.stream, clock.now())
        .await
        .unwrap()
        .locks
        .is_empty());
    // Another process (dvr ctl) writes the file behind this store's back.
    let other = ArchiveStore::new(Arc::clone(&f.storage));
    let lock = Lock::new(UtcMs(H0), 60_000).unwrap();
    other.lock(&f.stream, lock).await.unwrap();
    clock.advance_ms(dvr_archive::store::LOCKS_TTL_MS - 1);
    assert!(store
        .locks_cached(&f.stream, clock.now())
        .await
        .unwrap()
        .locks
        .is_empty());
    clock.advance_ms(1);
    assert_eq!(
        store
            .locks_cached(&f.stream, clock.now())
            .await
            .unwrap()
            .locks,
        vec![lock]
    );
    // Retention never trusts the cached copy.
    assert_eq!(store.locks(&f.stream).await.unwrap().locks, vec![lock]);
}

#[tokio::test]
async fn a_deleted_chunk_object_becomes_a_gap_and_the_rest_is_served() {
    let f = fixture();
    let store = ArchiveStore::new(Arc::clone(&f.storage));
    let a = write_chunk(&f, &store, 0, H0).await;
    let b = write_chunk(&f, &store, 10, H0 + 20_000).await;
    let c = write_chunk(&f, &store, 20, H0 + 40_000).await;
    let (from, to) = (UtcMs(H0), UtcMs(H0 + 60_000));
    assert_eq!(store.ranges(&f.stream, from, to).len(), 1);
    f.storage.delete(&b.ts_key()).await.unwrap();
    // The plan does not know yet; the read finds out and names the object.
    let plan = store.plan(&f.stream, from, to).await.unwrap();
    let PlanItem::Segment(s) = &plan[12] else {
        panic!("{plan:?}")
    };
    let err = store.read(&s.ts_key, s.byte_range()).await.unwrap_err();
    assert!(matches!(err, StoreError::Damaged { .. }), "{err}");
    assert!(err.to_string().contains(&b.ts_key()), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
    // From now on the chunk is a gap: plans, ranges and the damage list say so.
    let plan = store.plan(&f.stream, from, to).await.unwrap();
    let expected: Vec<String> = (0..10)
        .map(|s| s.to_string())
        .chain(["gap20-40".to_owned()])
        .chain((20..30).map(|s| s.to_string()))
        .collect();
    assert_eq!(items(&plan), expected);
    assert_eq!(store.ranges(&f.stream, from, to).len(), 2);
    assert_eq!(store.damaged(&f.stream), vec![(b.clone(), 0)]);
    // The neighbours still read.
    for key in [&a, &c] {
        let bytes = store
            .read(&key.ts_key(), 0..u64::from(SEG_BYTES))
            .await
            .unwrap();
        assert_eq!(bytes.as_ref(), payload(key.first_seq).as_slice());
    }
    // A reload (dvr reindex) reports the orphaned index and forgets the damage.
    let report = store.load(&f.stream).await.unwrap();
    assert_eq!((report.chunks, report.orphans.len()), (2, 1));
    assert!(store.damaged(&f.stream).is_empty());
}

#[tokio::test]
async fn a_truncated_chunk_keeps_its_readable_head() {
    let f = fixture();
    let store = ArchiveStore::new(Arc::clone(&f.storage));
    let a = write_chunk(&f, &store, 0, H0).await;
    // Cut after 4.5 segments.
    let body = f.storage.get(&a.ts_key()).await.unwrap();
    let cut = 4 * SEG_BYTES as usize + 900;
    f.storage.put(&a.ts_key(), body.slice(..cut)).await.unwrap();
    let (from, to) = (UtcMs(H0), UtcMs(H0 + 20_000));
    let seg6 = 6 * u64::from(SEG_BYTES)..7 * u64::from(SEG_BYTES);
    let err = store.read(&a.ts_key(), seg6).await.unwrap_err();
    assert!(matches!(err, StoreError::Damaged { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!("holds {cut} bytes")),
        "{err}"
    );
    let plan = store.plan(&f.stream, from, to).await.unwrap();
    assert_eq!(items(&plan), ["0", "1", "2", "3", "gap8-20"]);
    let ranges = store.ranges(&f.stream, from, to);
    assert_eq!(ranges.len(), 1);
    assert_eq!(ranges[0].to, UtcMs(H0 + 8_000));
    // The half segment at the cut is damaged too, the head is whole.
    let seg4 = 4 * u64::from(SEG_BYTES)..5 * u64::from(SEG_BYTES);
    assert!(store.read(&a.ts_key(), seg4).await.is_err());
    assert!(store
        .read(&a.ts_key(), 0..u64::from(SEG_BYTES))
        .await
        .is_ok());
}

#[tokio::test]
async fn a_corrupt_index_is_a_gap_and_leaves_the_catalog() {
    let f = fixture();
    let store = ArchiveStore::with_memory_cache(Arc::clone(&f.storage), MemoryCache::new(0));
    write_chunk(&f, &store, 0, H0).await;
    let b = write_chunk(&f, &store, 10, H0 + 20_000).await;
    let mut idx = f.storage.get(&b.idx_key()).await.unwrap().to_vec();
    let mid = idx.len() / 2;
    idx[mid] ^= 0xff;
    f.storage.put(&b.idx_key(), Bytes::from(idx)).await.unwrap();
    let (from, to) = (UtcMs(H0), UtcMs(H0 + 40_000));
    let plan = store.plan(&f.stream, from, to).await.unwrap();
    assert_eq!(items(&plan).last().map(String::as_str), Some("gap20-40"));
    assert_eq!(store.chunks(&f.stream).len(), 1);
    assert_eq!(store.damaged(&f.stream), vec![(b.clone(), 0)]);
    let report = store.load(&f.stream).await.unwrap();
    assert_eq!(report.bad, vec![b.idx_key()]);
}

#[tokio::test]
async fn the_disk_cache_serves_reads_and_forgets_what_retention_deletes() {
    let f = fixture();
    let cache_dir = tempfile::tempdir().unwrap();
    let clock = SimulatedClock::new(UtcMs(H0 + HOUR));
    let disk = Arc::new(
        DiskCache::open(
            DiskCacheConfig {
                path: cache_dir.path().to_path_buf(),
                max_bytes: 1 << 20,
                depth_ms: None,
                misses: 0,
            },
            Arc::new(clock.clone()),
        )
        .unwrap(),
    );
    // No memory cache, so every read after the first comes from the disk.
    let store = ArchiveStore::with_memory_cache(Arc::clone(&f.storage), MemoryCache::new(0));
    store.set_disk_cache(f.stream.clone(), Arc::clone(&disk));
    let a = write_chunk(&f, &store, 0, H0).await;
    let seg = 0..u64::from(SEG_BYTES);
    let first = store.read(&a.ts_key(), seg.clone()).await.unwrap();
    assert_eq!(disk.len(), 1);
    // The bucket loses the object; the cached segment is the same bytes.
    let body = f.storage.get(&a.ts_key()).await.unwrap();
    f.storage.delete(&a.ts_key()).await.unwrap();
    assert_eq!(store.read(&a.ts_key(), seg.clone()).await.unwrap(), first);
    f.storage.put(&a.ts_key(), body).await.unwrap();
    let policy = RetentionPolicy {
        depth_ms: Some(1000),
        ..RetentionPolicy::default()
    };
    store
        .enforce_retention(&f.stream, &policy, clock.now(), None)
        .await
        .unwrap();
    assert!(disk.is_empty());
    assert!(store
        .plan(&f.stream, UtcMs(H0), UtcMs(H0 + 20_000))
        .await
        .unwrap()
        .iter()
        .all(|i| matches!(i, PlanItem::Gap { .. })));
}

#[tokio::test]
async fn a_follower_applies_announced_chunks_and_relists_only_on_a_gap() {
    let f = fixture();
    let recorder = ArchiveStore::new(Arc::clone(&f.storage));
    let follower = ArchiveStore::new(Arc::clone(&f.storage));
    let first = write_chunk(&f, &recorder, 0, H0).await;

    // Nothing loaded yet: the first announcement re-lists.
    let followed = follower
        .follow_chunk(&f.stream, &first.ts_key(), None)
        .await
        .unwrap();
    assert!(
        matches!(followed, Followed::Reloaded(ref r) if r.chunks == 1),
        "{followed:?}"
    );
    assert_eq!(
        follower
            .follow_chunk(&f.stream, &first.ts_key(), None)
            .await
            .unwrap(),
        Followed::Known
    );

    // The next chunk continues the catalog: its index alone is read.
    let second = write_chunk(&f, &recorder, SEGMENTS, H0 + HOUR).await;
    assert_eq!(
        follower
            .follow_chunk(&f.stream, &second.ts_key(), None)
            .await
            .unwrap(),
        Followed::Applied
    );
    assert_eq!(follower.chunks(&f.stream), recorder.chunks(&f.stream));

    // A missed announcement (the third chunk) shows as a gap in seq: the
    // fourth re-lists and finds both.
    write_chunk(&f, &recorder, 2 * SEGMENTS, H0 + 2 * HOUR).await;
    let fourth = write_chunk(&f, &recorder, 3 * SEGMENTS, H0 + 3 * HOUR).await;
    let followed = follower
        .follow_chunk(&f.stream, &fourth.ts_key(), None)
        .await
        .unwrap();
    assert!(
        matches!(followed, Followed::Reloaded(ref r) if r.chunks == 4),
        "{followed:?}"
    );
    assert_eq!(follower.chunks(&f.stream), recorder.chunks(&f.stream));

    // Retention deleted the first two chunks: the announcement's first
    // kept seq drops them without a listing.
    let fifth = write_chunk(&f, &recorder, 4 * SEGMENTS, H0 + 4 * HOUR).await;
    assert_eq!(
        follower
            .follow_chunk(&f.stream, &fifth.ts_key(), Some(2 * SEGMENTS))
            .await
            .unwrap(),
        Followed::Applied
    );
    let kept: Vec<u64> = follower
        .chunks(&f.stream)
        .iter()
        .map(|c| c.first_seq)
        .collect();
    assert_eq!(kept, vec![2 * SEGMENTS, 3 * SEGMENTS, 4 * SEGMENTS]);

    // An announcement naming another stream's object is refused.
    let err = follower
        .follow_chunk(&"other".parse().unwrap(), &fifth.ts_key(), None)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("announced for stream other"),
        "{err}"
    );
}
