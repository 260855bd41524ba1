//! The packager's HTTP face: one fallback handler that parses any path with
//! [`crate::url::parse`] and answers from the stream's [`StreamTape`].
//!
//! Every answer is computed from the tape alone, so any replica gives the
//! same bytes for the same URL. Errors are one line of text with the status
//! their [`ErrorKind`](dvr_common::ErrorKind) maps to.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use dvr_common::error::{ErrorKind, HasErrorKind};
use dvr_common::{Clock, UtcMs};
use futures_util::stream;
use serde_json::json;

use crate::error::PackagerError;
use crate::playlist::{media_playlist, PlaylistKind, GAP_TOLERANCE_MS};
use crate::tape::{StreamTape, TapeSegment};
use crate::url::{self, Form, RangeEnd, UrlError};

const M3U8: &str = "application/vnd.apple.mpegurl";
const MPEGTS: &str = "video/mp2t";

/// Limits of what a request may ask for.
#[derive(Clone, Debug)]
pub struct PackagerConfig {
    /// Segments in a live playlist's sliding window.
    pub live_window: usize,
    /// The longest range one request may ask for, in seconds.
    pub max_range_secs: u32,
}

impl Default for PackagerConfig {
    fn default() -> Self {
        Self {
            live_window: 6,
            max_range_secs: 24 * 3600,
        }
    }
}

/// Serves every configured stream's tape.
#[derive(Debug)]
pub struct Packager {
    streams: RwLock<HashMap<String, StreamTape>>,
    clock: Arc<dyn Clock>,
    config: PackagerConfig,
}

/// The query parameters the packager reads.
#[derive(Debug, Default)]
struct Query {
    token: Option<String>,
    event: bool,
    from: Option<String>,
    to: Option<String>,
    request: Vec<String>,
}

impl Query {
    fn parse(raw: Option<&str>) -> Query {
        let mut q = Query::default();
        for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            match &*key {
                "token" => q.token = Some(value.into_owned()),
                "event" => q.event = value == "true",
                "from" => q.from = Some(value.into_owned()),
                "to" => q.to = Some(value.into_owned()),
                "request" => q.request.extend(value.split(',').map(str::to_owned)),
                _ => {}
            }
        }
        q
    }

    /// The part of the query that must follow the player to segment URLs.
    fn carried(&self) -> Option<String> {
        self.token.as_ref().map(|t| {
            form_urlencoded::Serializer::new(String::new())
                .append_pair("token", t)
                .finish()
        })
    }
}

impl Packager {
    /// A packager with no streams yet.
    pub fn new(config: PackagerConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            streams: RwLock::default(),
            clock,
            config,
        }
    }

    /// Starts serving a stream's tape (replacing one of the same name).
    pub fn add_stream(&self, tape: StreamTape) {
        self.streams_mut().insert(tape.name().to_owned(), tape);
    }

    /// Stops serving a stream.
    pub fn remove_stream(&self, name: &str) {
        self.streams_mut().remove(name);
    }

    /// The HTTP routes: every path is a playback URL.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new().fallback(handle).with_state(self)
    }

    fn streams_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, StreamTape>> {
        self.streams
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn tape(&self, name: &str) -> Option<StreamTape> {
        self.streams
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    async fn answer(&self, path: &str, raw_query: Option<&str>) -> Result<Response, PackagerError> {
        let playback = url::parse(path).map_err(|e| match e {
            UrlError::Unknown => PackagerError::NothingRecorded(format!("no such resource {path}")),
            UrlError::Invalid(reason) => PackagerError::BadRequest(reason),
        })?;
        let tape = self
            .tape(playback.stream)
            .ok_or_else(|| PackagerError::UnknownStream(playback.stream.to_owned()))?;
        let query = Query::parse(raw_query);
        let now = self.clock.now();
        match playback.form {
            Form::LivePlaylist(_) => {
                let segments: Vec<_> = tape
                    .newest(self.config.live_window)
                    .into_iter()
                    .map(|s| s.meta)
                    .collect();
                if segments.is_empty() {
                    return Err(PackagerError::NothingRecorded(format!(
                        "stream {} has no segments yet",
                        tape.name()
                    )));
                }
                Ok(playlist_response(
                    media_playlist(PlaylistKind::Live, &segments, query.carried().as_deref()),
                    "no-cache",
                ))
            }
            Form::RangePlaylist { from, end, .. } => {
                let (from, to) = self.range(from, end, now)?;
                let segments = self.recorded(&tape, from, to).await?;
                let metas: Vec<_> = segments.iter().map(|s| s.meta).collect();
                let complete = to <= now;
                let kind = match end {
                    RangeEnd::Now => PlaylistKind::Event,
                    RangeEnd::Duration(_) if !complete && query.event => PlaylistKind::Event,
                    RangeEnd::Duration(_) => PlaylistKind::Vod,
                };
                let cache = if kind == PlaylistKind::Vod && complete {
                    "max-age=60"
                } else {
                    "no-cache"
                };
                Ok(playlist_response(
                    media_playlist(kind, &metas, query.carried().as_deref()),
                    cache,
                ))
            }
            Form::RangeMpegts { from, duration } => {
                let (from, to) = self.range(from, RangeEnd::Duration(duration), now)?;
                let segments = self.recorded(&tape, from, to).await?;
                Ok(mpegts_download(tape, segments))
            }
            Form::Segment {
                start_second,
                duration_ms,
            } => {
                let start = UtcMs::from_secs(start_second);
                let candidates = tape
                    .segments_between(start, start.saturating_add_ms(1000))
                    .await?;
                let segment = candidates
                    .into_iter()
                    .find(|s| {
                        s.meta.utc_start.as_secs() == start_second
                            && s.meta.duration.as_ms() == i64::from(duration_ms)
                    })
                    .ok_or_else(|| PackagerError::NothingRecorded(format!("no segment {path}")))?;
                let bytes = tape.read(&segment).await?;
                let mut response = Response::new(Body::from(bytes));
                set(&mut response, header::CONTENT_TYPE, MPEGTS);
                set(
                    &mut response,
                    header::CACHE_CONTROL,
                    "public, max-age=31536000, immutable",
                );
                Ok(response)
            }
            Form::RecordingStatus => self.recording_status(&tape, &query, now).await,
            other => Err(PackagerError::NotSupported(form_name(other))),
        }
    }

    /// Checks and resolves a requested range to UTC milliseconds.
    fn range(&self, from: i64, end: RangeEnd, now: UtcMs) -> Result<(UtcMs, UtcMs), PackagerError> {
        let from_ms = UtcMs::from_secs(from);
        if from_ms > now {
            return Err(PackagerError::BadRequest(format!(
                "range starts at {from}, which is in the future (now is {})",
                now.as_secs()
            )));
        }
        let to = match end {
            RangeEnd::Duration(d) if d > self.config.max_range_secs => {
                return Err(PackagerError::BadRequest(format!(
                    "range of {d} s is longer than the limit of {} s",
                    self.config.max_range_secs
                )))
            }
            RangeEnd::Duration(d) => from_ms.saturating_add_ms(i64::from(d) * 1000),
            RangeEnd::Now => now.max(from_ms),
        };
        Ok((from_ms, to))
    }

    async fn recorded(
        &self,
        tape: &StreamTape,
        from: UtcMs,
        to: UtcMs,
    ) -> Result<Vec<TapeSegment>, PackagerError> {
        let segments = tape.segments_between(from, to).await?;
        if segments.is_empty() {
            return Err(PackagerError::NothingRecorded(format!(
                "nothing recorded on {} between {} and {}",
                tape.name(),
                from.as_secs(),
                to.as_secs()
            )));
        }
        Ok(segments)
    }

    async fn recording_status(
        &self,
        tape: &StreamTape,
        query: &Query,
        now: UtcMs,
    ) -> Result<Response, PackagerError> {
        let name = tape.name().to_owned();
        if query.request.is_empty() && query.from.is_none() {
            let body = match tape.extent().await? {
                Some((from, to)) => json!({ name: { "from": from.as_secs(), "to": to.as_secs() } }),
                None => json!({ name: {} }),
            };
            return Ok(json_response(&body));
        }
        let bound = |v: &Option<String>, default: UtcMs| -> Result<UtcMs, PackagerError> {
            match v.as_deref() {
                None | Some("now") => Ok(default),
                Some(s) => s
                    .parse::<i64>()
                    .ok()
                    .filter(|t| *t >= 0)
                    .map(UtcMs::from_secs)
                    .ok_or_else(|| {
                        PackagerError::BadRequest(format!(
                            "bad time {s:?} in recording_status request"
                        ))
                    }),
            }
        };
        let from = bound(&query.from, UtcMs(0))?;
        let to = bound(&query.to, now)?;
        if to < from {
            return Err(PackagerError::BadRequest(
                "recording_status: to is before from".into(),
            ));
        }
        let ranges: Vec<_> = tape
            .ranges(from, to, GAP_TOLERANCE_MS)
            .await?
            .iter()
            .map(|(a, b)| json!({ "from": a.as_secs(), "duration": (b.0 - a.0 + 999) / 1000 }))
            .collect();
        let mut entry = serde_json::Map::new();
        entry.insert("stream".into(), json!(name));
        if query.request.is_empty() || query.request.iter().any(|r| r == "ranges") {
            entry.insert("ranges".into(), json!(ranges));
        }
        if query.request.iter().any(|r| r == "locks") {
            let locks: Vec<_> = tape
                .locks(now)
                .await?
                .into_iter()
                .filter(|l| l.overlaps(from, to.max(now)))
                .collect();
            entry.insert("locks".into(), json!(locks));
        }
        Ok(json_response(&json!([entry])))
    }
}

async fn handle(State(packager): State<Arc<Packager>>, method: Method, uri: Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n").into_response();
    }
    match packager.answer(uri.path(), uri.query()).await {
        Ok(response) => response,
        Err(err) => {
            let status = StatusCode::from_u16(err.error_kind().http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if status.is_server_error() {
                tracing::warn!(path = uri.path(), error = %err, "playback request failed");
            }
            (status, format!("{err}\n")).into_response()
        }
    }
}

/// Streams the segments' bytes one after the other. A segment lost from
/// the archive (not found) is skipped with a log line, so one damaged chunk
/// costs its own time, not the download; any other failure ends the body.
/// No `Content-Length`: a skipped segment would make it a lie.
fn mpegts_download(tape: StreamTape, segments: Vec<TapeSegment>) -> Response {
    let body = stream::unfold(
        (tape, segments.into_iter()),
        |(tape, mut rest)| async move {
            loop {
                let segment = rest.next()?;
                match tape.read(&segment).await {
                    Ok(bytes) => return Some((Ok(bytes), (tape, rest))),
                    Err(e) if e.error_kind() == ErrorKind::NotFound => {
                        tracing::warn!(stream = tape.name(), seq = segment.meta.seq, error = %e, "download: skipping a lost segment");
                    }
                    Err(e) => return Some((Err(std::io::Error::other(e)), (tape, rest))),
                }
            }
        },
    );
    let mut response = Response::new(Body::from_stream(body));
    set(&mut response, header::CONTENT_TYPE, MPEGTS);
    response
}

fn playlist_response(text: String, cache: &'static str) -> Response {
    let mut response = Response::new(Body::from(text));
    set(&mut response, header::CONTENT_TYPE, M3U8);
    set(&mut response, header::CACHE_CONTROL, cache);
    response
}

fn json_response(value: &serde_json::Value) -> Response {
    let mut response = Response::new(Body::from(value.to_string()));
    set(&mut response, header::CONTENT_TYPE, "application/json");
    set(&mut response, header::CACHE_CONTROL, "no-cache");
    response
}

fn set(response: &mut Response, name: header::HeaderName, value: &'static str) {
    response
        .headers_mut()
        .insert(name, HeaderValue::from_static(value));
}

fn form_name(form: Form) -> &'static str {
    match form {
        Form::LivePlaylist(_) => "live HLS",
        Form::LiveMpegts => "live MPEG-TS",
        Form::LiveDash | Form::RangeDash { .. } => "DASH",
        Form::Rewind { .. } => "rewind playlists",
        Form::RangePlaylist { .. } => "range playlists",
        Form::RangeMpegts { .. } => "range MPEG-TS",
        Form::RangeMp4 { .. } => "MP4 export",
        Form::TimeshiftAbsPlaylist { .. } | Form::TimeshiftAbsMpegts { .. } => "timeshift_abs",
        Form::TimeshiftRelPlaylist { .. } | Form::TimeshiftRelMpegts { .. } => "timeshift_rel",
        Form::RecordingStatus => "recording_status",
        Form::Segment { .. } => "segments",
        Form::Embed => "the embedded player",
    }
}
