//! No URL makes the packager do more than it returns or a cap allows:
//! paced streams from 1970 start at the tape in one step, a one-byte range
//! of a download reads one segment, a coalesced segment URL or a rewind is
//! bounded, client-supplied numbers are checked, and open paced streams are
//! capped in total and per client.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::{to_bytes, Body};
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use dvr_archive::store::ArchiveStore;
use dvr_archive::tape::{StoreTape, StreamTape};
use dvr_bus::{BusError, LiveLog, SegmentLog, SegmentLogOptions};
use dvr_common::{SimulatedClock, StreamName, UtcMs};
use dvr_media::{CodecSummary, Segment, SegmentMeta};
use dvr_packager::{Packager, PackagerConfig};
use dvr_storage::{CountingStorage, StorageConfig, StorageUri};
use futures_util::StreamExt;
use support::{payload, segment, write_chunks, SEG, T0};
use tokio::sync::watch;
use tower::ServiceExt;

/// A bound on anything a test waits for: a broken bound fails the test
/// instead of hanging it.
const GUARD: Duration = Duration::from_secs(10);

/// A live log that counts the lookups the packager makes in it.
#[derive(Debug)]
struct CountedLog {
    inner: Arc<SegmentLog>,
    lookups: AtomicUsize,
}

#[async_trait]
impl LiveLog for CountedLog {
    async fn append(&self, segment: &Segment) -> Result<(), BusError> {
        LiveLog::append(&*self.inner, segment).await
    }
    async fn get(&self, seq: u64) -> Result<Option<Segment>, BusError> {
        LiveLog::get(&*self.inner, seq).await
    }
    async fn segments_after(&self, after: Option<u64>) -> Result<Vec<SegmentMeta>, BusError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        LiveLog::segments_after(&*self.inner, after).await
    }
    async fn segments_between(&self, from: UtcMs, to: UtcMs) -> Result<Vec<SegmentMeta>, BusError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        LiveLog::segments_between(&*self.inner, from, to).await
    }
    async fn newest(&self) -> Result<Option<SegmentMeta>, BusError> {
        LiveLog::newest(&*self.inner).await
    }
    async fn oldest(&self) -> Result<Option<SegmentMeta>, BusError> {
        LiveLog::oldest(&*self.inner).await
    }
    async fn last(&self, n: usize) -> Result<Vec<SegmentMeta>, BusError> {
        LiveLog::last(&*self.inner, n).await
    }
    async fn codecs(&self, seq: u64) -> Result<Option<Arc<CodecSummary>>, BusError> {
        LiveLog::codecs(&*self.inner, seq).await
    }
    async fn trim(&self, before: UtcMs, keep_from_seq: u64) -> Result<usize, BusError> {
        LiveLog::trim(&*self.inner, before, keep_from_seq).await
    }
    fn subscribe(&self) -> watch::Receiver<Option<SegmentMeta>> {
        LiveLog::subscribe(&*self.inner)
    }
}

struct Live {
    router: axum::Router,
    log: Arc<CountedLog>,
    _dir: tempfile::TempDir,
}

/// The support fixture's tape (ten segments, a 10 s gap, five more) on a
/// counted log, with `config`; now is 1 s after its end.
fn live(config: PackagerConfig) -> Live {
    let mut segments: Vec<Segment> = (0..10)
        .map(|seq| segment(seq, T0 * 1000 + seq as i64 * 2000, seq == 0))
        .collect();
    segments.extend((10..15).map(|seq| {
        segment(
            seq,
            T0 * 1000 + 30_000 + (seq as i64 - 10) * 2000,
            seq == 10,
        )
    }));
    live_with(config, &segments)
}

/// `segments` in a counted live log; now is 1 s after the last one ends.
fn live_with(config: PackagerConfig, segments: &[Segment]) -> Live {
    let dir = tempfile::tempdir().unwrap();
    let inner =
        Arc::new(SegmentLog::open(dir.path().join("ort"), SegmentLogOptions::default()).unwrap());
    for s in segments {
        inner.append(s).unwrap();
    }
    let log = Arc::new(CountedLog {
        inner,
        lookups: AtomicUsize::new(0),
    });
    let end = segments.last().map_or(T0 * 1000, |s| s.utc_start.0 + 2000);
    let clock = Arc::new(SimulatedClock::new(UtcMs(end + 1000)));
    let packager = Arc::new(Packager::new(config, clock));
    packager.add_stream(StreamTape::new(
        "ort",
        Arc::clone(&log) as Arc<dyn LiveLog>,
        None,
    ));
    Live {
        router: packager.router(),
        log,
        _dir: dir,
    }
}

fn request(uri: &str, peer: &str) -> Request<Body> {
    let mut request = Request::get(uri).body(Body::empty()).unwrap();
    let addr: SocketAddr = format!("{peer}:40000").parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(addr));
    request
}

/// The first chunk of an endless answer.
async fn first_chunk(
    router: &axum::Router,
    uri: &str,
    peer: &str,
) -> (axum::http::Response<Body>, Bytes) {
    let response = router.clone().oneshot(request(uri, peer)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{uri}");
    let (parts, body) = response.into_parts();
    let mut stream = body.into_data_stream();
    let chunk = tokio::time::timeout(GUARD, stream.next())
        .await
        .unwrap_or_else(|_| panic!("{uri}: no byte within {GUARD:?}"))
        .expect("the stream never ends")
        .unwrap();
    (
        axum::http::Response::from_parts(parts, Body::from_stream(stream)),
        chunk,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_streams_from_long_before_the_tape_start_at_its_first_segment() {
    let f = live(PackagerConfig::default());
    let first = segment(0, T0 * 1000, true).payload;
    for uri in [
        "/ort/timeshift_abs/1",
        "/ort/timeshift_rel/4000000000",
        "/ort/mpegts?utc=1",
        "/ort/timeshift_abs-1.ts",
    ] {
        let before = f.log.lookups.load(Ordering::SeqCst);
        let (_, chunk) = first_chunk(&f.router, uri, "192.0.2.1").await;
        assert_eq!(chunk, first, "{uri} starts at the tape's first segment");
        let lookups = f.log.lookups.load(Ordering::SeqCst) - before;
        // Walking from 1970 in 120 s steps took 14.9 million lookups.
        assert!(
            lookups <= 4,
            "{uri}: {lookups} tape lookups before the first byte"
        );
    }
    // While several such streams are open, the live playlist answers.
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(
            first_chunk(&f.router, "/ort/timeshift_abs/1", "192.0.2.2")
                .await
                .0,
        );
    }
    let playlist = tokio::time::timeout(
        GUARD,
        f.router
            .clone()
            .oneshot(request("/ort/index.m3u8", "192.0.2.3")),
    )
    .await
    .expect("the live playlist answers while paced streams are open")
    .unwrap();
    assert_eq!(playlist.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_in_a_paced_stream_is_crossed_in_one_jump() {
    // Five segments, a gap of a day, five more.
    let day = 86_400_000;
    let segments: Vec<Segment> = (0..10)
        .map(|seq| {
            let later = if seq >= 5 { day } else { 0 };
            segment(seq, T0 * 1000 + seq as i64 * 2000 + later, seq == 5)
        })
        .collect();
    let f = live_with(PackagerConfig::default(), &segments);
    let (response, chunk) = first_chunk(
        &f.router,
        &format!("/ort/timeshift_abs/{}", T0 + 8),
        "192.0.2.1",
    )
    .await;
    assert_eq!(chunk, segments[4].payload);
    let before = f.log.lookups.load(Ordering::SeqCst);
    let mut rest = response.into_body().into_data_stream();
    let next = tokio::time::timeout(GUARD, rest.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        next, segments[5].payload,
        "the first segment after the gap follows"
    );
    // Stepping through the day two minutes at a time took 720 lookups.
    let lookups = f.log.lookups.load(Ordering::SeqCst) - before;
    assert!(lookups <= 4, "{lookups} tape lookups to cross the gap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_paced_streams_are_capped_in_total_and_per_client() {
    let f = live(PackagerConfig {
        max_paced_streams: 3,
        max_paced_streams_per_client: 2,
        ..PackagerConfig::default()
    });
    let a1 = first_chunk(&f.router, "/ort/mpegts", "192.0.2.1").await.0;
    let _a2 = first_chunk(&f.router, "/ort/mpegts", "192.0.2.1").await.0;
    let refused = f
        .router
        .clone()
        .oneshot(request("/ort/mpegts", "192.0.2.1"))
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "1");
    let why = to_bytes(refused.into_body(), 1 << 16).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&why),
        "too many paced MPEG-TS streams: the limit of 2 per client address is reached; retry shortly\n"
    );
    let _b1 = first_chunk(&f.router, "/ort/timeshift_rel/10", "192.0.2.2")
        .await
        .0;
    let refused = f
        .router
        .clone()
        .oneshot(request("/ort/mpegts", "192.0.2.3"))
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let why = to_bytes(refused.into_body(), 1 << 16).await.unwrap();
    assert!(String::from_utf8_lossy(&why).contains("this server's limit of 3"));
    // A client that hangs up gives its place back.
    drop(a1);
    let _again = first_chunk(&f.router, "/ort/mpegts", "192.0.2.1").await;
    // Playlists are not paced streams.
    let playlist = f
        .router
        .clone()
        .oneshot(request("/ort/index.m3u8", "192.0.2.1"))
        .await
        .unwrap();
    assert_eq!(playlist.status(), StatusCode::OK);
}

async fn status_and_text(router: &axum::Router, uri: &str) -> (StatusCode, String) {
    let response = router
        .clone()
        .oneshot(request(uri, "192.0.2.1"))
        .await
        .unwrap();
    let status = response.status();
    let body = to_bytes(response.into_body(), 1 << 24).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn every_number_from_a_url_is_bounded() {
    let f = live(PackagerConfig::default());
    let started = T0 * 1000 + 41_000 - 25 * 3_600_000;
    for (uri, why) in [
        (
            format!("/ort/timeshift_abs-{T0}.m3u8?ignore_gaps=true&started=0"),
            "more than 86400 s ago",
        ),
        (
            format!("/ort/timeshift_abs-{T0}.m3u8?started={started}"),
            "more than 86400 s ago",
        ),
        (
            format!("/ort/index.m3u8?utc={T0}&lutc=1"),
            "more than 86400 s ago",
        ),
        (
            format!("/ort/timeshift_abs-{T0}.m3u8?started=abc"),
            "started=\"abc\"",
        ),
        ("/ort/mpegts?utc=99999999999999999999".to_owned(), "utc="),
        (
            "/ort/timeshift_abs/9223372036854775807".to_owned(),
            "past the year 9999",
        ),
        (
            "/ort/2026/11/21/14/00/00-4000000000.ts".to_owned(),
            "one URL spans at most 640000 ms",
        ),
    ] {
        let (status, body) = status_and_text(&f.router, &uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert!(body.contains(why), "{uri}: {body}");
        assert_eq!(body.lines().count(), 1, "{uri}: {body}");
    }
    // A rewind window past the longest range is clamped, not refused.
    let (status, body) = status_and_text(&f.router, "/ort/rewind-4000000000.m3u8").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body.matches(".ts").count(), 15, "{body}");
}

/// Forty 2 s segments of 1880 bytes in four `file://` chunks, behind a
/// store that counts its reads.
struct Archived {
    router: axum::Router,
    storage: Arc<CountingStorage>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

async fn archived() -> Archived {
    let archive = tempfile::tempdir().unwrap();
    let uri = StorageUri::parse(&format!("file://{}", archive.path().display())).unwrap();
    let storage = Arc::new(CountingStorage::new(
        dvr_storage::resolve(&uri, &StorageConfig::default()).unwrap(),
    ));
    let stream: StreamName = "ort".parse().unwrap();
    let store = Arc::new(ArchiveStore::new(Arc::clone(&storage) as _));
    write_chunks(&(Arc::clone(&storage) as _), &store, &stream, 4).await;
    store.load(&stream).await.unwrap();
    let live = tempfile::tempdir().unwrap();
    let log =
        Arc::new(SegmentLog::open(live.path().join("ort"), SegmentLogOptions::default()).unwrap());
    let clock = SimulatedClock::new(UtcMs((T0 + 600) * 1000));
    let packager = Arc::new(Packager::new(PackagerConfig::default(), Arc::new(clock)));
    let tape = StoreTape::new(stream, store);
    packager.add_stream(StreamTape::new("ort", log, Some(Arc::new(tape))));
    Archived {
        router: packager.router(),
        storage,
        _dirs: (archive, live),
    }
}

async fn ranged(
    f: &Archived,
    uri: &str,
    range: &str,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut request = request(uri, "192.0.2.1");
    request
        .headers_mut()
        .insert("range", range.parse().unwrap());
    let response = f.router.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = to_bytes(body, 1 << 24).await.unwrap().to_vec();
    (parts.status, parts.headers, body)
}

#[tokio::test]
async fn a_range_of_a_download_reads_only_the_segments_it_touches() {
    let f = archived().await;
    let uri = format!("/ort/archive-{T0}-80.ts");
    let whole: Vec<u8> = (0..40).flat_map(payload).collect();

    let before = f.storage.reads();
    let (status, headers, body) = ranged(&f, &uri, "bytes=-1").await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, whole[whole.len() - 1..]);
    assert_eq!(
        headers["content-range"],
        format!(
            "bytes {}-{}/{}",
            whole.len() - 1,
            whole.len() - 1,
            whole.len()
        )
    );
    assert_eq!(headers["content-length"], "1");
    // One segment read, not the 40 before it.
    assert_eq!(f.storage.reads() - before, 1);

    // A range across a chunk boundary: exactly its bytes, from the two
    // segments it touches (segment 9 ends chunk 0, segment 10 starts chunk 1).
    let (start, end) = (9 * SEG + 100, 10 * SEG + 99);
    let before = f.storage.reads();
    let (status, _, body) = ranged(&f, &uri, &format!("bytes={start}-{end}")).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, whole[start..=end]);
    assert_eq!(f.storage.reads() - before, 2);

    // Several ranges: 416, nothing read.
    let before = f.storage.reads();
    let (status, headers, _) = ranged(&f, &uri, "bytes=0-1,5-6").await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(headers["content-range"], format!("bytes */{}", whole.len()));
    assert_eq!(f.storage.reads(), before);

    // A range of one stored segment is cut from its bytes.
    let (status, _, body) = ranged(&f, "/ort/2026/11/21/14/00/02-02000.ts", "bytes=10-19").await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, payload(1)[10..20]);
}

#[tokio::test]
async fn a_coalesced_segment_url_streams_its_run() {
    let f = archived().await;
    // Three segments as one entry, as a long playlist lists them.
    let (status, _, body) = ranged(&f, "/ort/2026/11/21/14/00/00-06000.ts", "bytes=0-").await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    let want: Vec<u8> = (0..3).flat_map(payload).collect();
    assert_eq!(body, want);
    let response = f
        .router
        .clone()
        .oneshot(request("/ort/2026/11/21/14/00/00-06000.ts", "192.0.2.1"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-length"], (3 * SEG).to_string());
    assert!(response.headers().contains_key("etag"));
    let body = to_bytes(response.into_body(), 1 << 24).await.unwrap();
    assert_eq!(body, want);
}
