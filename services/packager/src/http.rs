//! HTTP done right around every playback answer: CORS for browser players,
//! `ETag` and `304 Not Modified`, byte ranges, and gzip for playlists.
//!
//! The handlers in [`crate::service`] compute what to send; this middleware
//! decides how, the same way for every form, so no handler repeats it.
//!
//! - CORS: `Access-Control-Allow-Origin: *` on every answer and a preflight
//!   answer to `OPTIONS`; hls.js and dash.js on another origin need it.
//! - `ETag`: a hash of the body of finite answers up to [`MAX_BUFFERED`]
//!   (playlists, status), unless the handler set one (segments, whose URLs
//!   name immutable bytes, tag them by name: hashing a megabyte per request
//!   would cost more than sending it); `If-None-Match` gets `304`. A live
//!   playlist's ETag changes when it moves.
//! - `Range: bytes=…` on any finite answer (segments, downloads): `206` with
//!   `Content-Range`, `416` when it cannot be satisfied. A streamed download
//!   skips the bytes before the range as they come.
//! - gzip for playlists and JSON when the client accepts it: a 24 h VOD
//!   playlist is hundreds of kilobytes of very repetitive text.

use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use std::io::Write;
use std::sync::{Arc, OnceLock};

/// Bodies up to this size are buffered for an ETag.
pub const MAX_BUFFERED: u64 = 64 * 1024 * 1024;
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
    let length =
        content_length(response.headers()).or_else(|| HttpBody::size_hint(response.body()).exact());
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match length {
        Some(len) if len <= MAX_BUFFERED => finite(response, &headers, range.as_deref(), len).await,
        Some(len) => match range {
            Some(r) => ranged_stream(response, &r, len),
            None => {
                accept_ranges(&mut response);
                response
            }
        },
        None => {
            // An endless stream, or a body whose length is not known yet
            // (a playlist): buffer only text.
            if is_text(response.headers()) {
                let (parts, body) = response.into_parts();
                match axum::body::to_bytes(body, MAX_BUFFERED as usize).await {
                    Ok(bytes) => {
                        let len = bytes.len() as u64;
                        let response = Response::from_parts(parts, Body::from(bytes));
                        finite(response, &headers, range.as_deref(), len).await
                    }
                    Err(_) => Response::builder()
                        .status(StatusCode::INTERNAL_SERVER_ERROR)
                        .body(Body::from("the answer could not be read\n"))
                        .unwrap_or_default(),
                }
            } else {
                response
            }
        }
    }
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
        HeaderValue::from_static("Content-Length, Content-Range, ETag"),
    );
}

fn accept_ranges(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn is_text(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.contains("mpegurl") || t.starts_with("application/json"))
}

/// A finite answer of `len` bytes: ETag, 304, range, gzip.
async fn finite(
    response: Response,
    request: &HeaderMap,
    range: Option<&str>,
    len: u64,
) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BUFFERED as usize).await else {
        return Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Body::from("the answer could not be read\n"))
            .unwrap_or_default();
    };
    debug_assert_eq!(bytes.len() as u64, len);
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
    let text = is_text(&parts.headers);
    if !text {
        parts
            .headers
            .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    if request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::empty());
    }
    if let (Some(range), false) = (range, text) {
        return match parse_range(range, bytes.len() as u64) {
            Some((start, end)) => {
                parts.status = StatusCode::PARTIAL_CONTENT;
                set_content_range(&mut parts.headers, start, end, bytes.len() as u64);
                let slice = bytes.slice(start as usize..end as usize);
                set_length(&mut parts.headers, slice.len() as u64);
                Response::from_parts(parts, Body::from(slice))
            }
            None => unsatisfiable(bytes.len() as u64),
        };
    }
    if text && bytes.len() >= MIN_GZIP && accepts_gzip(request) {
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

/// A range of a large streamed answer: the bytes before it are skipped as
/// they come, the stream is cut after it.
fn ranged_stream(response: Response, range: &str, len: u64) -> Response {
    let Some((start, end)) = parse_range(range, len) else {
        return unsatisfiable(len);
    };
    let (mut parts, body) = response.into_parts();
    parts.status = StatusCode::PARTIAL_CONTENT;
    set_content_range(&mut parts.headers, start, end, len);
    set_length(&mut parts.headers, end - start);
    parts
        .headers
        .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let stream = futures_util::stream::unfold(
        (body.into_data_stream(), 0u64),
        move |(mut body, mut at)| async move {
            loop {
                if at >= end {
                    return None;
                }
                match body.next().await? {
                    Err(e) => return Some((Err(e), (body, end))),
                    Ok(chunk) => {
                        let from = at;
                        let to = at + chunk.len() as u64;
                        at = to;
                        let lo = start.clamp(from, to) - from;
                        let hi = end.clamp(from, to) - from;
                        if lo < hi {
                            return Some((Ok(chunk.slice(lo as usize..hi as usize)), (body, at)));
                        }
                    }
                }
            }
        },
    );
    Response::from_parts(parts, Body::from_stream(stream))
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` as a half-open range within `len`.
fn parse_range(value: &str, len: u64) -> Option<(u64, u64)> {
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

fn unsatisfiable(len: u64) -> Response {
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
