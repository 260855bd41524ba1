//! The packager over a `file://` archive damaged behind its back: a chunk's
//! `.ts` deleted, another's cut short, a third's index corrupted. The rest
//! of the range is served, the hole is a gap, and a lost segment's URL
//! answers 404 with its time.

mod support;

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use dvr_archive::store::ArchiveStore;
use dvr_archive::tape::{StoreTape, StreamTape};
use dvr_archive::Lock;
use dvr_bus::{SegmentLog, SegmentLogOptions};
use dvr_common::{SimulatedClock, StreamName, UtcMs};
use dvr_packager::{Packager, PackagerConfig};
use dvr_storage::{StorageConfig, StorageUri};
use support::{payload, write_chunks, SEG, T0};
use tower::ServiceExt;

struct Fixture {
    router: axum::Router,
    store: Arc<ArchiveStore>,
    stream: StreamName,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

/// Four chunks of ten 2 s segments from T0, back to back (seq 0..40): the
/// fourth's index is corrupted before the packager loads the archive (as
/// a restart would find it); after loading, the second loses its `.ts` and
/// the third is cut after 4.5 segments.
async fn fixture() -> Fixture {
    let archive = tempfile::tempdir().unwrap();
    let uri = StorageUri::parse(&format!("file://{}", archive.path().display())).unwrap();
    let storage = dvr_storage::resolve(&uri, &StorageConfig::default()).unwrap();
    let stream: StreamName = "ort".parse().unwrap();
    let writer = ArchiveStore::new(Arc::clone(&storage));
    let keys = write_chunks(&storage, &writer, &stream, 4).await;
    storage
        .put(&keys[3].idx_key(), Bytes::from_static(b"not an index"))
        .await
        .unwrap();
    let store = Arc::new(ArchiveStore::new(Arc::clone(&storage)));
    let report = store.load(&stream).await.unwrap();
    assert_eq!(
        (report.chunks, report.bad.clone()),
        (3, vec![keys[3].idx_key()])
    );
    storage.delete(&keys[1].ts_key()).await.unwrap();
    let third = storage.get(&keys[2].ts_key()).await.unwrap();
    storage
        .put(&keys[2].ts_key(), third.slice(..4 * SEG + SEG / 2))
        .await
        .unwrap();

    let live = tempfile::tempdir().unwrap();
    let log =
        Arc::new(SegmentLog::open(live.path().join("ort"), SegmentLogOptions::default()).unwrap());
    let clock = SimulatedClock::new(UtcMs((T0 + 600) * 1000));
    let packager = Arc::new(Packager::new(PackagerConfig::default(), Arc::new(clock)));
    let tape = StoreTape::new(stream.clone(), Arc::clone(&store));
    packager.add_stream(StreamTape::new("ort", log, Some(Arc::new(tape))));
    Fixture {
        router: packager.router(),
        store,
        stream,
        _dirs: (archive, live),
    }
}

async fn get(f: &Fixture, uri: &str) -> (StatusCode, Vec<u8>) {
    let response = f
        .router
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = to_bytes(response.into_body(), 1 << 30).await.unwrap();
    (status, body.to_vec())
}

async fn text(f: &Fixture, uri: &str) -> String {
    let (status, body) = get(f, uri).await;
    let body = String::from_utf8(body).unwrap();
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    body
}

#[tokio::test]
async fn a_lost_segment_is_a_404_naming_its_time_then_a_gap() {
    let f = fixture().await;
    // The first chunk's segments still play.
    let (status, body) = get(&f, "/ort/2026/11/21/14/00/02-02000.ts").await;
    assert_eq!((status, body), (StatusCode::OK, payload(1)));
    // Seq 10 was in the deleted object.
    let (status, body) = get(&f, "/ort/2026/11/21/14/00/20-02000.ts").await;
    let reason = String::from_utf8(body).unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND, "{reason}");
    assert!(reason.contains("2026-11-21T14:00:20"), "{reason}");
    assert!(reason.contains("lost from the archive"), "{reason}");
    assert_eq!(reason.lines().count(), 1, "{reason}");
    // Now the catalog knows: the playlist jumps the hole.
    let playlist = text(&f, &format!("/ort/archive-{T0}-40.m3u8")).await;
    assert_eq!(playlist.matches(".ts\n").count(), 10, "{playlist}");
    assert!(!playlist.contains("14/00/20-02000.ts"), "{playlist}");
}

#[tokio::test]
async fn the_download_skips_what_is_lost_and_the_playlist_then_shows_gaps() {
    let f = fixture().await;
    let (status, body) = get(&f, &format!("/ort/archive-{T0}-80.ts")).await;
    assert_eq!(status, StatusCode::OK);
    // Chunk 1 whole, chunk 3's first four segments; chunk 2 gone, chunk 4's
    // index unreadable.
    let expected: Vec<u8> = (0..10).chain(20..24).flat_map(payload).collect();
    assert_eq!(body.len(), expected.len());
    assert!(body == expected, "the surviving segments, in order");
    let damaged: Vec<u64> = f
        .store
        .damaged(&f.stream)
        .iter()
        .map(|(k, _)| k.first_seq)
        .collect();
    assert_eq!(damaged, [10, 20]);

    let playlist = text(&f, &format!("/ort/archive-{T0}-80.m3u8")).await;
    assert_eq!(playlist.matches(".ts\n").count(), 14, "{playlist}");
    assert_eq!(
        playlist.matches("#EXT-X-DISCONTINUITY\n").count(),
        1,
        "{playlist}"
    );
    assert!(playlist.contains("#EXT-X-PROGRAM-DATE-TIME:2026-11-21T14:00:40.000Z\n"));
    // The lost segments' URLs are no longer offered, and answer 404.
    let (status, _) = get(&f, "/ort/2026/11/21/14/00/50-02000.ts").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let status = text(
        &f,
        &format!("/ort/recording_status.json?from={T0}&to=now&request=ranges,locks"),
    )
    .await;
    assert_eq!(
        status,
        format!(
            r#"[{{"locks":[],"ranges":[{{"duration":20,"from":{T0}}},{{"duration":8,"from":{}}}],"stream":"ort"}}]"#,
            T0 + 40
        )
    );
}

#[tokio::test]
async fn recording_status_lists_the_real_locks_in_the_seeds_shape() {
    let f = fixture().await;
    let lock = Lock::new(UtcMs::from_secs(T0 + 5), 1_004_000).unwrap();
    f.store.lock(&f.stream, lock).await.unwrap();
    let body = text(
        &f,
        &format!("/ort/recording_status.json?from={T0}&to=now&request=locks"),
    )
    .await;
    assert_eq!(
        body,
        format!(
            r#"[{{"locks":[{{"duration":1004,"from":{}}}],"stream":"ort"}}]"#,
            T0 + 5
        )
    );
}
