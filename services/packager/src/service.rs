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
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use dvr_common::error::{ErrorKind, HasErrorKind};
use dvr_common::{Clock, Ticks, UtcMs};
use futures_util::stream;
use serde_json::json;

use crate::error::PackagerError;
use crate::http::playback_http;
use crate::paced::paced_mpegts;
use crate::playlist::{coalesce, media_playlist, starts_new_run, PlaylistKind, GAP_TOLERANCE_MS};
use crate::tape::{StreamTape, TapeSegment};
use crate::timeshift::{abs_head, window, WindowLimit};
use crate::url::{self, Form, RangeEnd, UrlError};

const M3U8: &str = "application/vnd.apple.mpegurl";
const MPEGTS: &str = "video/mp2t";
/// The longest segment the segmenter makes (its forced cut), for how far
/// back a window must look.
const MAX_SEGMENT_MS: i64 = 10_000;
/// How far past the wall-clock head `timeshift_abs?ignore_gaps=true` reads
/// the tape to skip gaps.
const ABS_GAP_REACH_MS: i64 = 6 * 3_600_000;
/// How far past a `timeshift_abs` viewer's position its window reaches:
/// three 2 s segments, where players join a live playlist.
const ABS_LEAD_MS: i64 = 6_000;

/// Limits of what a request may ask for.
#[derive(Clone, Debug)]
pub struct PackagerConfig {
    /// Segments in a live playlist's sliding window.
    pub live_window: usize,
    /// The longest range one request may ask for, in seconds.
    pub max_range_secs: u32,
    /// The most entries a range playlist lists; longer ranges list runs of
    /// consecutive segments as one entry.
    pub max_entries: usize,
}

impl Default for PackagerConfig {
    fn default() -> Self {
        Self {
            live_window: 6,
            max_range_secs: 24 * 3600,
            max_entries: 7200,
        }
    }
}

/// Serves every configured stream's tape.
#[derive(Debug)]
pub struct Packager {
    streams: RwLock<HashMap<String, StreamTape>>,
    clock: Arc<dyn Clock>,
    config: PackagerConfig,
    /// Play authorization in front of every answer, when any stream has
    /// a policy.
    auth: Option<Arc<crate::auth::Gate>>,
}

/// The query parameters the packager reads.
#[derive(Debug, Default)]
struct Query {
    token: Option<String>,
    event: bool,
    from: Option<String>,
    to: Option<String>,
    request: Vec<String>,
    /// `timeshift_abs`: when the viewer started, in ms (set by our redirect).
    started: Option<i64>,
    /// Stream mode skips gaps instead of stopping at them.
    ignore_gaps: bool,
    /// Kodi's shift catch-up: play from `utc`, as of the viewer's `lutc`.
    utc: Option<i64>,
    lutc: Option<i64>,
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
                "started" => q.started = value.parse().ok(),
                "ignore_gaps" => q.ignore_gaps = value == "true",
                "utc" => q.utc = value.parse().ok(),
                "lutc" => q.lutc = value.parse().ok(),
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
            auth: None,
        }
    }

    /// Puts `gate` in front of every answer: streams with a policy serve
    /// nothing without an allow.
    pub fn with_auth(mut self, gate: Arc<crate::auth::Gate>) -> Self {
        self.auth = Some(gate);
        self
    }

    /// Starts serving a stream's tape (replacing one of the same name).
    pub fn add_stream(&self, tape: StreamTape) {
        self.streams_mut().insert(tape.name().to_owned(), tape);
    }

    /// Serves `name` as a delayed channel: `source` played `delay_ms`
    /// behind its live. Fails if `source` is not served.
    pub fn add_delayed(
        &self,
        name: &str,
        source: &str,
        delay_ms: i64,
    ) -> Result<(), PackagerError> {
        let tape = self
            .tape(source)
            .ok_or_else(|| PackagerError::UnknownStream(source.to_owned()))?;
        self.add_stream(StreamTape::delayed(name, &tape, delay_ms));
        Ok(())
    }

    /// Stops serving a stream.
    pub fn remove_stream(&self, name: &str) {
        self.streams_mut().remove(name);
    }

    /// The HTTP routes: every path is a playback URL.
    pub fn router(self: Arc<Self>) -> Router {
        let auth = self.auth.clone();
        let mut router = Router::new().fallback(handle).with_state(self);
        if let Some(gate) = auth {
            // Inside the HTTP layer, so refusals carry CORS headers too.
            router = router.layer(axum::middleware::from_fn_with_state(
                gate,
                crate::auth::authorize,
            ));
        }
        router.layer(axum::middleware::from_fn(playback_http))
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

    async fn answer(
        &self,
        path: &str,
        raw_query: Option<&str>,
        ranged: bool,
    ) -> Result<Response, PackagerError> {
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
            Form::LivePlaylist(_) | Form::LiveMpegts if query.utc.is_some() => {
                // Kodi's "shift": from `utc`, the clock started at `lutc`
                // (or now), so the URL itself carries the timeline.
                let at = self.past_instant(query.utc.unwrap_or_default(), now)?;
                let started = query.lutc.map_or(now, UtcMs::from_secs);
                if playback.form == Form::LiveMpegts {
                    return Ok(paced_mpegts(tape, at, Arc::clone(&self.clock)));
                }
                self.abs_playlist(&tape, at, started, &query, now).await
            }
            Form::TimeshiftAbsPlaylist { at, .. } => {
                let at = self.past_instant(at, now)?;
                match query.started {
                    Some(started) => {
                        self.abs_playlist(&tape, at, UtcMs(started), &query, now)
                            .await
                    }
                    None => Ok(redirect_with_start(path, raw_query, now)),
                }
            }
            Form::LivePlaylist(_) if tape.delay_ms() > 0 => {
                let head = UtcMs(now.0 - tape.delay_ms());
                let limit = WindowLimit::Count(self.config.live_window);
                self.shifted_playlist(&tape, head, 0, limit, None, true, &query)
                    .await
            }
            Form::LiveMpegts if tape.delay_ms() > 0 => {
                let at = UtcMs(now.0 - tape.delay_ms());
                Ok(paced_mpegts(tape, at, Arc::clone(&self.clock)))
            }
            Form::TimeshiftRelPlaylist { behind, .. } => {
                let head = UtcMs(now.0 - i64::from(behind) * 1000);
                let limit = WindowLimit::Count(self.config.live_window);
                self.shifted_playlist(&tape, head, 0, limit, None, query.ignore_gaps, &query)
                    .await
            }
            Form::Rewind { window, .. } => {
                let limit = WindowLimit::Span(i64::from(window) * 1000);
                self.shifted_playlist(&tape, now, 0, limit, None, true, &query)
                    .await
            }
            Form::LiveMpegts => {
                let start = tape
                    .newest(1)
                    .first()
                    .map(|s| s.meta.utc_start)
                    .ok_or_else(|| {
                        PackagerError::NothingRecorded(format!(
                            "stream {} has no segments yet",
                            tape.name()
                        ))
                    })?;
                Ok(paced_mpegts(tape, start, Arc::clone(&self.clock)))
            }
            Form::TimeshiftAbsMpegts { at } => {
                let at = self.past_instant(at, now)?;
                Ok(paced_mpegts(tape, at, Arc::clone(&self.clock)))
            }
            Form::TimeshiftRelMpegts { behind } => {
                let at = UtcMs(now.0 - i64::from(behind) * 1000);
                Ok(paced_mpegts(tape, at, Arc::clone(&self.clock)))
            }
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
                let metas = coalesce(&metas, self.config.max_entries);
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
                Ok(mpegts_download(tape, segments, ranged))
            }
            Form::Segment {
                start_second,
                duration_ms,
            } => {
                let start = UtcMs::from_secs(start_second);
                let reach = i64::from(duration_ms).max(1000) + 1000;
                let candidates = tape
                    .segments_between(start, start.saturating_add_ms(reach))
                    .await?;
                let run = segment_run(&candidates, start_second, duration_ms)
                    .ok_or_else(|| PackagerError::NothingRecorded(format!("no segment {path}")))?;
                let mut bytes = Vec::new();
                for segment in run {
                    bytes.extend_from_slice(&tape.read(segment).await?);
                }
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

    /// An epoch second from a URL that must not lie in the future.
    fn past_instant(&self, at: i64, now: UtcMs) -> Result<UtcMs, PackagerError> {
        let at_ms = UtcMs::from_secs(at);
        if at < 0 || at_ms > now {
            return Err(PackagerError::BadRequest(format!(
                "timeshift start {at} is in the future (now is {})",
                now.as_secs()
            )));
        }
        Ok(at_ms)
    }

    /// `timeshift_abs` from `at` for a viewer who started at `started`.
    async fn abs_playlist(
        &self,
        tape: &StreamTape,
        at: UtcMs,
        started: UtcMs,
        query: &Query,
        now: UtcMs,
    ) -> Result<Response, PackagerError> {
        let head = if query.ignore_gaps {
            // Recorded time from `at` decides; a few hours past the wall
            // clock's head covers any gaps worth skipping.
            let elapsed = (now.0 - started.0).max(0);
            let until = UtcMs((at.0 + elapsed + ABS_GAP_REACH_MS).min(now.0));
            let recorded: Vec<_> = tape
                .segments_between(at, until)
                .await?
                .into_iter()
                .map(|s| s.meta)
                .collect();
            abs_head(at, started, now, &recorded, true)
        } else {
            abs_head(at, started, now, &[], false)
        };
        let limit = WindowLimit::Count(self.config.live_window);
        let lead = ABS_LEAD_MS.min(now.0 - head.0);
        self.shifted_playlist(tape, head, lead, limit, Some(at), query.ignore_gaps, query)
            .await
    }

    /// A live-style playlist whose window ends `lead_ms` past `head`.
    #[allow(clippy::too_many_arguments)]
    async fn shifted_playlist(
        &self,
        tape: &StreamTape,
        head: UtcMs,
        lead_ms: i64,
        limit: WindowLimit,
        not_before: Option<UtcMs>,
        ignore_gaps: bool,
        query: &Query,
    ) -> Result<Response, PackagerError> {
        let reach = match limit {
            WindowLimit::Count(n) => i64::try_from(n).unwrap_or(6) * MAX_SEGMENT_MS,
            WindowLimit::Span(ms) => ms + MAX_SEGMENT_MS,
        };
        let segments: Vec<_> = tape
            .segments_between(
                UtcMs(head.0 - reach),
                head.saturating_add_ms(lead_ms + MAX_SEGMENT_MS),
            )
            .await?
            .into_iter()
            .map(|s| s.meta)
            .collect();
        let shown = window(&segments, head, lead_ms, limit, not_before, ignore_gaps);
        Ok(playlist_response(
            media_playlist(PlaylistKind::Live, &shown, query.carried().as_deref()),
            "no-cache",
        ))
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

async fn handle(
    State(packager): State<Arc<Packager>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n").into_response();
    }
    let ranged = headers.contains_key(header::RANGE);
    match packager.answer(uri.path(), uri.query(), ranged).await {
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

/// The stored segments a segment URL names: the one starting in
/// `start_second` with that duration, or, for an entry a long playlist
/// coalesced, the run of consecutive segments from there whose durations add
/// up to it.
fn segment_run(
    candidates: &[TapeSegment],
    start_second: i64,
    duration_ms: u32,
) -> Option<&[TapeSegment]> {
    let first = candidates
        .iter()
        .position(|s| s.meta.utc_start.as_secs() == start_second)?;
    let mut total = Ticks(0);
    for (i, segment) in candidates[first..].iter().enumerate() {
        if i > 0 && starts_new_run(&candidates[first + i - 1].meta, &segment.meta) {
            return None;
        }
        total = Ticks(total.0 + segment.meta.duration.0);
        let ms = total.as_ms();
        if ms == i64::from(duration_ms) {
            return Some(&candidates[first..=first + i]);
        }
        if ms > i64::from(duration_ms) {
            return None;
        }
    }
    None
}

/// Streams the segments' bytes one after the other. A segment lost from
/// the archive (not found) is skipped with a log line, so one damaged chunk
/// costs its own time, not the download; any other failure ends the body.
///
/// With `exact_length` (a client asking for a byte range, which needs the
/// total) the planned length is sent as `Content-Length` and a lost segment
/// ends the body instead: the length cannot change mid-flight, and the
/// retry, planned from the catalog that now knows the loss, is exact.
/// Without it there is no `Content-Length`, since a skip would make it a lie.
fn mpegts_download(tape: StreamTape, segments: Vec<TapeSegment>, exact_length: bool) -> Response {
    let length: u64 = segments.iter().map(|s| s.meta.bytes).sum();
    let body = stream::unfold(
        (tape, segments.into_iter()),
        move |(tape, mut rest)| async move {
            loop {
                let segment = rest.next()?;
                match tape.read(&segment).await {
                    Ok(bytes) => return Some((Ok(bytes), (tape, rest))),
                    Err(e) if e.error_kind() == ErrorKind::NotFound && !exact_length => {
                        tracing::warn!(stream = tape.name(), seq = segment.meta.seq, error = %e, "download: skipping a lost segment");
                    }
                    Err(e) => return Some((Err(std::io::Error::other(e)), (tape, rest))),
                }
            }
        },
    );
    let mut response = Response::new(Body::from_stream(body));
    set(&mut response, header::CONTENT_TYPE, MPEGTS);
    if exact_length {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    response
}

/// The first request of a `timeshift_abs` playlist: a redirect to the same
/// URL carrying the viewer's start time, so that every reload, on any
/// replica, plays the same timeline.
fn redirect_with_start(path: &str, raw_query: Option<&str>, now: UtcMs) -> Response {
    let mut location = path.to_owned();
    location.push('?');
    if let Some(q) = raw_query.filter(|q| !q.is_empty()) {
        location.push_str(q);
        location.push('&');
    }
    location.push_str(&format!("started={}", now.0));
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    set(&mut response, header::CACHE_CONTROL, "no-cache");
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
