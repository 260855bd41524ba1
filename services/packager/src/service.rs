//! The packager's HTTP face: one fallback handler that parses any path with
//! [`crate::url::parse`] and hands it to its form family:
//!
//! - [`crate::playlists`]: the HLS playlist forms (live, rewind, ranges,
//!   start-over, timeshift) and their caches;
//! - [`crate::transport`]: the MPEG-TS forms (downloads, segments, paced
//!   streams);
//! - [`crate::status`]: the `recording_status.json` answers;
//! - [`crate::dash`]: the DASH manifests;
//! - [`crate::cmaf`]: fMP4 init and media segments, made from the stored
//!   TS on request (and what CMAF HLS playlists and MPDs need to name them);
//! - [`crate::export`]: a range as one progressive MP4;
//! - [`crate::preview`]: keyframes as one-frame MP4s and JPEGs.
//!
//! Every answer is computed from the tape alone, so any replica gives the
//! same bytes for the same URL. Errors are one line of text with the status
//! their [`ErrorKind`](dvr_common::ErrorKind) maps to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use dvr_common::{Clock, UtcMs};
use dvr_edge::{ClientAddr, Quota};
use dvr_media::codec::TrackKind;
use dvr_media::psi::Program;
use dvr_media::{tracks, SegmentMeta};

use crate::config::{PackagerConfig, RequestContext};
use crate::error::PackagerError;
use crate::http::playback_http;
use crate::master::video_track_set;
use crate::playlists::{Probed, Rendered};
use crate::query::Query;
use crate::url::{self, Form, Playback, TrackSet, UrlError};
use dvr_archive::tape::StreamTape;

/// `Content-Type` of MPEG-TS answers.
pub(crate) const MPEGTS: &str = "video/mp2t";
/// The longest segment the segmenter makes (its forced cut), for how far
/// back a window must look.
pub(crate) const MAX_SEGMENT_MS: i64 = 10_000;

/// One playback request, parsed: what every form's handler reads.
pub(crate) struct Asked<'a> {
    /// The request path.
    pub(crate) path: &'a str,
    /// The raw query string.
    pub(crate) raw_query: Option<&'a str>,
    /// The parsed path.
    pub(crate) playback: Playback<'a>,
    /// The parsed query.
    pub(crate) query: Query,
    /// Range header and client.
    pub(crate) context: &'a RequestContext,
    /// The clock when it arrived.
    pub(crate) now: UtcMs,
}

/// A `302` to the same URL of the stream at `origin`
/// (`http://host:port/STREAM`), for a restreamed stream's times this origin
/// lacks: `path` names the stream here `stream`, the rest is kept, query
/// included. The line says why, for a client that does not follow.
fn to_origin(
    origin: &str,
    stream: &str,
    path: &str,
    raw_query: Option<&str>,
    why: &str,
) -> Response {
    let rest = path
        .strip_prefix('/')
        .and_then(|p| p.strip_prefix(stream))
        .unwrap_or("");
    let mut location = format!("{origin}{rest}");
    if let Some(q) = raw_query.filter(|q| !q.is_empty()) {
        location.push('?');
        location.push_str(q);
    }
    let Ok(value) = HeaderValue::from_str(&location) else {
        return (StatusCode::NOT_FOUND, format!("{why}\n")).into_response();
    };
    let mut response = (
        StatusCode::FOUND,
        format!("{why}: answered by the origin this stream is restreamed from\n"),
    )
        .into_response();
    let h = response.headers_mut();
    h.insert(header::LOCATION, value);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The answer to a range with nothing in it.
pub(crate) fn nothing_between(tape: &StreamTape, from: UtcMs, to: UtcMs) -> PackagerError {
    PackagerError::NothingRecorded(format!(
        "nothing recorded on {} between {} and {}",
        tape.name(),
        from.as_secs(),
        to.as_secs()
    ))
}

/// A track cut that failed, as an answer naming the segment.
pub(crate) fn track_error(
    tape: &StreamTape,
    meta: &SegmentMeta,
    e: &tracks::SelectError,
) -> PackagerError {
    PackagerError::NothingRecorded(format!(
        "segment of {} at {}: {e}",
        tape.name(),
        meta.utc_start.as_secs()
    ))
}

/// The tracks of `videoN` in `program`, or the answer that the stream has
/// no N-th video track (as of the segment `at`).
pub(crate) fn no_video_track(
    tape: &StreamTape,
    program: &Program,
    n: u8,
    at: &SegmentMeta,
) -> Result<TrackSet, PackagerError> {
    video_track_set(program, n).ok_or_else(|| {
        let videos = program
            .streams
            .iter()
            .filter(|s| s.codec.kind() == TrackKind::Video)
            .count();
        PackagerError::NothingRecorded(format!(
            "stream {} has no video track {n}: it has {videos} at {}",
            tape.name(),
            at.utc_start.as_secs()
        ))
    })
}

/// Serves every configured stream's tape.
#[derive(Debug)]
pub struct Packager {
    streams: RwLock<HashMap<String, StreamTape>>,
    /// What segments hold, for playlists ([`crate::playlists`]).
    pub(crate) probes: Mutex<HashMap<(String, u64), Arc<Probed>>>,
    /// Rendered complete VOD playlists by path and query.
    pub(crate) rendered: Mutex<HashMap<String, Rendered>>,
    /// What a segment holds as fMP4, per track selection
    /// ([`crate::cmaf`]): one read per continuous run of a manifest.
    pub(crate) views: Mutex<crate::cmaf::Views>,
    /// Made fMP4 pieces ([`crate::cmaf`]).
    pub(crate) built: Mutex<crate::cmaf::BuiltCache>,
    /// Decoded `.smp` sample tables of chunks ([`crate::export`]).
    pub(crate) tables: Mutex<crate::export::TableCache>,
    /// The JPEG previews' decoder pool and pictures ([`crate::preview`]).
    pub(crate) previews: crate::preview::Previews,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: PackagerConfig,
    /// Play authorization in front of every answer, when any stream has
    /// a policy.
    auth: Option<Arc<crate::auth::Gate>>,
    /// The open paced streams, capped in total and per client.
    pub(crate) paced: Arc<Quota>,
    /// Checks the cluster key on segment feed requests; `None`: the feed
    /// is off ([`crate::feed`]).
    pub(crate) cluster: Option<Arc<dvr_cluster::Verifier>>,
    /// The open segment feeds, capped.
    pub(crate) feeds: Arc<Quota>,
    /// Restreamed streams by name: the origins that have what this one
    /// lacks, in the order of its inputs.
    origins: RwLock<HashMap<String, Vec<String>>>,
    /// The runtime bucket: which input each stream's ingest follows, and
    /// where demand for on-demand streams is noted.
    runtime: Option<Arc<dyn dvr_bus::Kv>>,
    /// The on-demand streams ([`crate::demand`]).
    demand: Arc<crate::demand::Demand>,
}

impl Packager {
    /// A packager with no streams yet.
    pub fn new(config: PackagerConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            streams: RwLock::default(),
            probes: Mutex::default(),
            rendered: Mutex::default(),
            views: Mutex::default(),
            built: Mutex::default(),
            tables: Mutex::default(),
            previews: crate::preview::Previews::new(&config.previews),
            clock,
            paced: Quota::new(
                config.max_paced_streams,
                config.max_paced_streams_per_client,
            ),
            feeds: Quota::new(config.max_feeds, config.max_feeds),
            config,
            auth: None,
            cluster: None,
            origins: RwLock::default(),
            runtime: None,
            demand: Arc::default(),
        }
    }

    /// Serves the segment feed to the origins holding the cluster key
    /// `verifier` checks.
    pub fn with_cluster(mut self, verifier: dvr_cluster::Verifier) -> Self {
        self.cluster = Some(Arc::new(verifier));
        self
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

    /// The tape of a served stream (for status reports).
    pub fn stream_tape(&self, name: &str) -> Option<StreamTape> {
        self.tape(name)
    }

    /// Stops serving a stream.
    pub fn remove_stream(&self, name: &str) {
        self.streams_mut().remove(name);
        self.origins_mut().remove(name);
        self.demand.set(name, None);
    }

    /// Serves `name` on demand (its `on_demand` time) or not: requests
    /// note the demand its ingest runs on ([`crate::demand`]).
    pub fn set_on_demand(&self, name: &str, on_demand_ms: Option<i64>) {
        self.demand.set(name, on_demand_ms);
    }

    /// Notes that `name` is asked for, when it is on demand; returns
    /// whether it is.
    pub(crate) fn note_demand(&self, name: &str) -> bool {
        self.demand.note(name, self.runtime.as_ref())
    }

    /// Sends the requests for `name` that find nothing on its tape to the
    /// same URL of the stream on one of `origins` (`http://host:port/STREAM`
    /// each, the stream's `m4f://` inputs in order): the one its ingest
    /// follows now, as its runtime report says, else the first. Empty:
    /// they are answered `404` here.
    pub fn set_origins(&self, name: &str, origins: Vec<String>) {
        if origins.is_empty() {
            self.origins_mut().remove(name);
        } else {
            self.origins_mut().insert(name.to_owned(), origins);
        }
    }

    /// Reads which input a stream's ingest follows from the runtime bucket
    /// ([`dvr_proto::RUNTIME_KV_BUCKET`]), for [`Packager::set_origins`].
    pub fn with_runtime(mut self, runtime: Arc<dyn dvr_bus::Kv>) -> Self {
        self.runtime = Some(runtime);
        self
    }

    fn origins_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Vec<String>>> {
        self.origins
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The origin that answers for `name` what this one lacks.
    async fn origin_of(&self, name: &str) -> Option<String> {
        let origins = self
            .origins
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()?;
        let following = match (&self.runtime, dvr_common::StreamName::new(name)) {
            (Some(kv), Ok(stream)) => kv
                .get(&dvr_proto::runtime_key("ingest", &stream))
                .await
                .ok()
                .flatten()
                .and_then(|e| {
                    <dvr_proto::IngestReport as dvr_proto::Versioned>::decode(&e.value).ok()
                })
                .and_then(|r| r.input_index),
            _ => None,
        };
        following
            .and_then(|i| origins.get(i))
            .or(origins.first())
            .cloned()
    }

    /// The HTTP routes: every path is a playback URL.
    pub fn router(self: Arc<Self>) -> Router {
        let auth = self.auth.clone();
        // The segment feed: signed by the cluster key, not a play, so
        // outside the play gate and the playback headers.
        let feed = Router::new()
            .route(
                dvr_cluster::FEED_PATH,
                axum::routing::any(crate::feed::serve_feed),
            )
            .with_state(Arc::clone(&self));
        let mut router = Router::new().fallback(handle).with_state(self);
        if let Some(gate) = auth {
            // Inside the HTTP layer, so refusals carry CORS headers too.
            router = router.layer(axum::middleware::from_fn_with_state(
                gate,
                crate::auth::authorize,
            ));
        }
        router
            .layer(axum::middleware::from_fn(playback_http))
            .layer(axum::middleware::from_fn(crate::metrics::observe))
            .merge(feed)
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
        context: &RequestContext,
    ) -> Result<Response, PackagerError> {
        let playback = url::parse(path).map_err(|e| match e {
            UrlError::Unknown => PackagerError::NothingRecorded(format!("no such resource {path}")),
            UrlError::Invalid(reason) => PackagerError::BadRequest(reason),
        })?;
        let tape = self
            .tape(playback.stream)
            .ok_or_else(|| PackagerError::UnknownStream(playback.stream.to_owned()))?;
        let on_demand = playback.form.is_live() && self.note_demand(playback.stream);
        if on_demand {
            crate::demand::wait_for_fresh(&tape, self.clock.as_ref()).await;
        }
        let asked = Asked {
            path,
            raw_query,
            playback,
            query: Query::parse(raw_query).map_err(PackagerError::BadRequest)?,
            context,
            now: self.clock.now(),
        };
        let answer = match playback.form {
            Form::LiveDash | Form::RewindDash { .. } | Form::RangeDash { .. } => {
                self.mpd(&tape, &asked).await
            }
            Form::Fmp4Init { at, id } => self.fmp4_init(&tape, &asked, at, id).await,
            Form::Fmp4Fragment { at, duration_ms } => {
                self.fmp4_fragment(&tape, &asked, at, duration_ms).await
            }
            Form::LivePlaylist(_)
            | Form::Rewind { .. }
            | Form::RangePlaylist { .. }
            | Form::TimeshiftAbsPlaylist { .. }
            | Form::TimeshiftRelPlaylist { .. } => self.playlist(&tape, &asked).await,
            Form::LiveMpegts if on_demand => self.paced_form(tape, &asked).await.map(|r| {
                crate::demand::keeping_demand(
                    r,
                    Arc::clone(&self.demand),
                    self.runtime.clone(),
                    playback.stream,
                )
            }),
            Form::LiveMpegts
            | Form::TimeshiftAbsMpegts { .. }
            | Form::TimeshiftRelMpegts { .. } => self.paced_form(tape, &asked).await,
            Form::RangeMpegts { from, duration } => {
                self.download(tape, &asked, from, duration).await
            }
            Form::RangeMp4 { from, duration } => {
                self.mp4_export(tape, &asked, from, duration).await
            }
            Form::Segment {
                start_second,
                duration_ms,
            } => self.segment(tape, &asked, start_second, duration_ms).await,
            Form::RecordingStatus => self.recording_status(&tape, &asked.query, asked.now).await,
            Form::Embed => Ok(dvr_web::embed_page(tape.name())),
            Form::Preview { second, picture } => self.preview(tape, &asked, second, picture).await,
            Form::Thumbnail { second } => self.thumbnail(tape, &asked, second).await,
            Form::LivePreview => self.live_preview(tape, &asked).await,
        };
        // A restreamed stream's times this origin does not hold are the
        // source's to answer.
        match answer {
            Err(PackagerError::NothingRecorded(why)) => match self.origin_of(playback.stream).await
            {
                Some(origin) => Ok(to_origin(&origin, playback.stream, path, raw_query, &why)),
                None => Err(PackagerError::NothingRecorded(why)),
            },
            other => other,
        }
    }

    /// An epoch second from a URL that must not lie in the future.
    pub(crate) fn past_instant(&self, at: i64, now: UtcMs) -> Result<UtcMs, PackagerError> {
        let at_ms = UtcMs::from_secs(at);
        if at < 0 || at_ms > now {
            return Err(PackagerError::BadRequest(format!(
                "timeshift start {at} is in the future (now is {})",
                now.as_secs()
            )));
        }
        Ok(at_ms)
    }
}

async fn handle(State(packager): State<Arc<Packager>>, request: Request) -> Response {
    let method = request.method();
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n").into_response();
    }
    let uri = request.uri();
    let context = RequestContext {
        range: request
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        client: ClientAddr::of(request.extensions()),
        origin: origin(request.headers()),
        mp4_tags: Vec::new(),
    };
    packager
        .answer_ungated(uri.path(), uri.query(), &context)
        .await
}

impl Packager {
    /// The answer to a playback request, errors as their status and line,
    /// without the playback gate: for [`handle`] (the gate is a layer in
    /// front of it) and for jobs an admin asked for (saved exports).
    pub(crate) async fn answer_ungated(
        &self,
        path: &str,
        raw_query: Option<&str>,
        context: &RequestContext,
    ) -> Response {
        match self.answer(path, raw_query, context).await {
            Ok(response) => response,
            Err(err) => {
                let status = StatusCode::from_u16(err.http_status())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                if status.is_server_error() {
                    tracing::warn!(path, error = %err, "playback request failed");
                }
                let mut response = (status, format!("{err}\n")).into_response();
                if let Some(secs) = err.retry_after() {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
                response
            }
        }
    }
}

/// `scheme://host` of the request as the client addressed it (the `Host`
/// header; `X-Forwarded-Proto` behind a TLS proxy), for the few answers
/// that must name an absolute URL.
fn origin(headers: &axum::http::HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b));
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    valid.then(|| format!("{scheme}://{host}"))
}

pub(crate) fn json_response(value: &serde_json::Value) -> Response {
    let mut response = Response::new(Body::from(value.to_string()));
    set(&mut response, header::CONTENT_TYPE, "application/json");
    set(&mut response, header::CACHE_CONTROL, "no-cache");
    response
}

pub(crate) fn set(response: &mut Response, name: header::HeaderName, value: &'static str) {
    response
        .headers_mut()
        .insert(name, HeaderValue::from_static(value));
}

pub(crate) fn form_name(form: Form) -> &'static str {
    match form {
        Form::LivePlaylist(_) => "live HLS",
        Form::LiveMpegts => "live MPEG-TS",
        Form::LiveDash | Form::RewindDash { .. } | Form::RangeDash { .. } => "DASH",
        Form::Fmp4Init { .. } | Form::Fmp4Fragment { .. } => "fMP4 segments",
        Form::Rewind { .. } => "rewind playlists",
        Form::RangePlaylist { .. } => "range playlists",
        Form::RangeMpegts { .. } => "range MPEG-TS",
        Form::RangeMp4 { .. } => "MP4 export",
        Form::TimeshiftAbsPlaylist { .. } | Form::TimeshiftAbsMpegts { .. } => "timeshift_abs",
        Form::TimeshiftRelPlaylist { .. } | Form::TimeshiftRelMpegts { .. } => "timeshift_rel",
        Form::RecordingStatus => "recording_status",
        Form::Segment { .. } => "segments",
        Form::Embed => "the embedded player",
        Form::Preview { .. } | Form::Thumbnail { .. } | Form::LivePreview => "previews",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lacking_restreamer_sends_the_client_to_the_same_url_of_the_source_stream() {
        let response = to_origin(
            "http://origin-a.example:8080/ch1",
            "mine/hd",
            "/mine/hd/index-1780000000-60.m3u8",
            Some("token=abc"),
            "nothing recorded on mine/hd between 1780000000 and 1780000060",
        );
        assert_eq!(response.status(), StatusCode::FOUND);
        assert_eq!(
            response.headers()[header::LOCATION],
            "http://origin-a.example:8080/ch1/index-1780000000-60.m3u8?token=abc"
        );
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    }
}
