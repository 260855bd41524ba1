//! HTTP done right around every playback answer: CORS for browser players,
//! `ETag` and `304 Not Modified`, and gzip for playlists.
//!
//! The handlers in [`crate::service`] compute what to send; this middleware
//! decides how, the same way for every form, so no handler repeats it.
//!
//! - CORS: `Access-Control-Allow-Origin: *` on every answer and a preflight
//!   answer to `OPTIONS`; hls.js and dash.js on another origin need it
//!   (dash.js also reads `Date`, for the MPD's `UTCTiming`).
//! - `ETag`: a hash of text answers (playlists, status JSON, buffered up to
//!   [`MAX_TEXT_BYTES`]), unless the handler set one; media answers are
//!   tagged by their handler (a segment by its name: hashing a megabyte
//!   per request would cost more than sending it) and never buffered here.
//!   `If-None-Match` gets `304`. A live playlist's ETag changes when it
//!   moves.
//! - `Range: bytes=…` is the handlers' to answer, since only they know
//!   which stored segments a byte range touches ([`range_ask`], [`partial`]):
//!   a one-byte range of a day-long download reads one segment. One range
//!   per request; a multi-range request is `416`, never N reads.
//! - gzip for playlists, MPDs and JSON when the client accepts it: a 24 h VOD
//!   playlist is hundreds of kilobytes of very repetitive text.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use std::io::Write;
use std::sync::{Arc, OnceLock};

/// The most bytes of a text answer (playlist, JSON) buffered for its ETag
/// and gzip: a day's playlist is about 330 kB, so this leaves a wide
/// margin and still bounds what one request holds.
pub const MAX_TEXT_BYTES: usize = 8 << 20;
/// `Content-Type` of DASH manifests: text like the playlists (ETag, gzip).
pub const DASH_XML: &str = "application/dash+xml";
/// Text bodies smaller than this are not worth compressing.
const MIN_GZIP: usize = 1024;

/// The middleware: wraps every playback answer.
pub async fn playback_http(request: Request, next: Next) -> Response {
    if request.method() == Method::OPTIONS {
        return preflight();
    }
    let headers = request.headers().clone();
    let mut response = next.run(request).await;
    cors(response.headers_mut());
    if response.status() != StatusCode::OK {
        return response;
    }
    if is_text(response.headers()) {
        return text(response, &headers).await;
    }
    // Media: the handler tagged it (or it is endless); only a match is
    // answered here, without reading the body.
    let tag = response
        .headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if tag.is_some_and(|tag| matches_tag(&headers, &tag)) {
        return not_modified(response);
    }
    response
}

fn preflight() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let h = response.headers_mut();
    cors(h);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Range, If-None-Match"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    response
}

fn cors(h: &mut HeaderMap) {
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        // `Date`: dash.js on another origin reads the server's time from
        // it (the MPD's `UTCTiming` http-head).
        HeaderValue::from_static("Content-Length, Content-Range, ETag, Date"),
    );
}

fn is_text(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.contains("mpegurl") || t.starts_with("application/json") || t == DASH_XML
        })
}

/// A text answer: buffered (up to [`MAX_TEXT_BYTES`]), tagged, `304` or
/// gzipped.
async fn text(response: Response, request: &HeaderMap) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_TEXT_BYTES).await else {
        tracing::warn!(
            limit = MAX_TEXT_BYTES,
            "a text answer is larger than the buffer limit"
        );
        return Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Body::from("the answer is too large to send\n"))
            .unwrap_or_default();
    };
    let etag = match parts
        .headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
    {
        Some(set) => set.to_owned(),
        None => {
            let etag = content_etag(&bytes);
            if let Ok(v) = HeaderValue::from_str(&etag) {
                parts.headers.insert(header::ETAG, v);
            }
            etag
        }
    };
    if matches_tag(request, &etag) {
        return not_modified(Response::from_parts(parts, Body::empty()));
    }
    if bytes.len() >= MIN_GZIP && accepts_gzip(request) {
        let zipped = match parts.extensions.get::<SharedGzip>() {
            Some(shared) => shared.0.get_or_init(|| gzip(&bytes)).clone(),
            None => gzip(&bytes),
        };
        if let Some(zipped) = zipped {
            parts
                .headers
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            parts
                .headers
                .insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
            set_length(&mut parts.headers, zipped.len() as u64);
            return Response::from_parts(parts, Body::from(zipped));
        }
    }
    set_length(&mut parts.headers, bytes.len() as u64);
    Response::from_parts(parts, Body::from(bytes))
}

/// Whether `If-None-Match` names `etag` (or `*`).
fn matches_tag(request: &HeaderMap, etag: &str) -> bool {
    request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

/// `304 Not Modified` in place of `response`, its body dropped unread.
fn not_modified(response: Response) -> Response {
    let (mut parts, _) = response.into_parts();
    parts.status = StatusCode::NOT_MODIFIED;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::ACCEPT_RANGES);
    Response::from_parts(parts, Body::empty())
}

/// What a `Range` header asks of a body of `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeAsk {
    /// No range: the whole body.
    Whole,
    /// Bytes `[start, end)`.
    Part(u64, u64),
    /// A range that cannot be served (past the end, malformed, several).
    Unsatisfiable,
}

/// What `header`, a `Range` value or none, asks of `len` bytes.
pub fn range_ask(header: Option<&str>, len: u64) -> RangeAsk {
    match header {
        None => RangeAsk::Whole,
        Some(value) => match parse_range(value, len) {
            Some((start, end)) => RangeAsk::Part(start, end),
            None => RangeAsk::Unsatisfiable,
        },
    }
}

/// `response` (holding bytes `[start, end)` of `len`) as a `206`.
pub fn partial(response: Response, start: u64, end: u64, len: u64) -> Response {
    let (mut parts, body) = response.into_parts();
    parts.status = StatusCode::PARTIAL_CONTENT;
    set_content_range(&mut parts.headers, start, end, len);
    set_length(&mut parts.headers, end - start);
    Response::from_parts(parts, body)
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` as a half-open range within `len`;
/// `None` for anything else, several ranges included.
pub fn parse_range(value: &str, len: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || len == 0 {
        return None; // one range only
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (len.saturating_sub(n), len)
        }
        (a, "") => (a.parse().ok()?, len),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<u64>().ok()?.saturating_add(1).min(len),
        ),
    };
    (start < end && start < len).then_some((start, end))
}

fn set_content_range(h: &mut HeaderMap, start: u64, end: u64, len: u64) {
    if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", end - 1)) {
        h.insert(header::CONTENT_RANGE, v);
    }
}

fn set_length(h: &mut HeaderMap, len: u64) {
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
}

/// `416 Range Not Satisfiable` for a body of `len` bytes.
pub fn unsatisfiable(len: u64) -> Response {
    let mut response = Response::new(Body::from("range not satisfiable\n"));
    *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
        response.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    cors(response.headers_mut());
    response
}

fn accepts_gzip(h: &HeaderMap) -> bool {
    h.get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| {
            let mut parts = e.split(';');
            parts.next().is_some_and(|name| name.trim() == "gzip")
                && !parts.any(|p| p.trim() == "q=0")
        })
}

/// The gzip of a body that many answers share (a cached VOD playlist), made
/// by the first answer to a client that accepts gzip and reused by the
/// rest: compressing a day's playlist costs more than rendering it. A
/// handler puts it in the response's extensions.
#[derive(Clone, Debug, Default)]
pub struct SharedGzip(Arc<OnceLock<Option<Bytes>>>);

fn gzip(bytes: &[u8]) -> Option<Bytes> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4),
        flate2::Compression::fast(),
    );
    encoder.write_all(bytes).ok()?;
    encoder.finish().ok().map(Bytes::from)
}

/// A strong ETag for a body: 64 bits of its BLAKE3 hash, the same on every
/// replica and every run. (FNV-1a, a byte at a time, took 0.4 ms of a day's
/// playlist; BLAKE3 hashes many bytes per instruction.)
pub(crate) fn content_etag(bytes: &[u8]) -> String {
    let hash = blake3::hash(bytes);
    let mut word = [0u8; 8];
    word.copy_from_slice(&hash.as_bytes()[..8]);
    format!("\"{:016x}\"", u64::from_le_bytes(word))
}

/// FNV-1a, 64 bits: a stable hash of short strings (a segment's name) for
/// ETags, the same on every replica and every run.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_as_half_open_intervals() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some((0, 100)));
        assert_eq!(parse_range("bytes=900-", 1000), Some((900, 1000)));
        assert_eq!(parse_range("bytes=-100", 1000), Some((900, 1000)));
        assert_eq!(parse_range("bytes=990-2000", 1000), Some((990, 1000)));
        for bad in [
            "bytes=1000-",
            "bytes=5-4",
            "items=0-1",
            "bytes=0-1,5-6",
            "bytes=x-",
        ] {
            assert_eq!(parse_range(bad, 1000), None, "{bad}");
        }
    }

    #[test]
    fn gzip_is_what_the_client_accepts() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br, gzip;q=0.8"),
        );
        assert!(accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip;q=0, br"),
        );
        assert!(!accepts_gzip(&h));
        h.remove(header::ACCEPT_ENCODING);
        assert!(!accepts_gzip(&h));
    }
}
