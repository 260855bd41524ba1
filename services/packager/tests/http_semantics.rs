//! HTTP around every answer: CORS, ETag and 304, byte ranges on segments
//! and downloads, gzip for playlists, HEAD.

mod support;

use std::io::Read;

use axum::http::{Method, StatusCode};
use support::{body, fixture, get, header, send, T0};

const SEGMENT: &str = "/ort/2026/11/21/14/00/02-02000.ts";

#[tokio::test]
async fn browsers_get_cors_and_a_preflight_answer() {
    let f = fixture();
    let r = send(&f, Method::OPTIONS, "/ort/index.m3u8", &[]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "access-control-allow-origin"), "*");
    assert!(header(&r, "access-control-allow-headers").contains("Range"));
    let r = send(&f, Method::GET, "/ort/index.m3u8", &[]).await;
    assert_eq!(header(&r, "access-control-allow-origin"), "*");
    // Errors too, so a player can read them.
    let r = send(&f, Method::GET, "/nope/index.m3u8", &[]).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&r, "access-control-allow-origin"), "*");
}

#[tokio::test]
async fn segments_have_etags_and_ranges() {
    let f = fixture();
    let (_, _, whole) = get(&f, SEGMENT).await;
    assert_eq!(whole.len(), 188 * 2);
    let r = send(&f, Method::GET, SEGMENT, &[]).await;
    let etag = header(&r, "etag").to_owned();
    assert!(etag.starts_with('"'), "{etag}");
    assert_eq!(header(&r, "accept-ranges"), "bytes");
    assert!(header(&r, "cache-control").contains("immutable"));

    let r = send(&f, Method::GET, SEGMENT, &[("if-none-match", &etag)]).await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert!(body(r).await.is_empty());

    let r = send(&f, Method::GET, SEGMENT, &[("range", "bytes=10-99")]).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&r, "content-range"), "bytes 10-99/376");
    assert_eq!(body(r).await, whole[10..100]);

    let r = send(&f, Method::GET, SEGMENT, &[("range", "bytes=400-")]).await;
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&r, "content-range"), "bytes */376");

    let r = send(&f, Method::HEAD, SEGMENT, &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(body(r).await.is_empty());
}

#[tokio::test]
async fn a_download_serves_any_byte_range() {
    let f = fixture();
    let uri = format!("/ort/archive-{T0}-40.ts");
    let (status, _, whole) = get(&f, &uri).await;
    assert_eq!(status, StatusCode::OK);
    for (range, lo, hi) in [
        ("bytes=1000-", 1000, whole.len()),
        ("bytes=0-187", 0, 188),
        ("bytes=-500", whole.len() - 500, whole.len()),
        ("bytes=5000-9000", 5000, 9001),
    ] {
        let r = send(&f, Method::GET, &uri, &[("range", range)]).await;
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            header(&r, "content-length"),
            (hi - lo).to_string(),
            "{range}"
        );
        assert_eq!(body(r).await, whole[lo..hi], "{range}");
    }
}

#[tokio::test]
async fn playlists_are_gzipped_when_accepted_and_revalidated_by_etag() {
    let f = fixture();
    let token = "t".repeat(80);
    let uri = format!("/ort/archive-{T0}-40.m3u8?token={token}");
    let (_, _, plain) = get(&f, &uri).await;
    assert!(plain.len() > 1024);
    let r = send(&f, Method::GET, &uri, &[("accept-encoding", "gzip, br")]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-encoding"), "gzip");
    assert_eq!(header(&r, "vary"), "Accept-Encoding");
    let etag = header(&r, "etag").to_owned();
    let zipped = body(r).await;
    assert!(zipped.len() < plain.len() / 2);
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&zipped[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, plain);
    // The cached playlist's gzip is made once and served again.
    let r = send(&f, Method::GET, &uri, &[("accept-encoding", "gzip")]).await;
    assert_eq!(header(&r, "content-encoding"), "gzip");
    assert_eq!(header(&r, "etag"), etag);
    assert_eq!(body(r).await, zipped);
    let r = send(&f, Method::GET, &uri, &[("if-none-match", &etag)]).await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
}
