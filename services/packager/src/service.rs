//! The packager's HTTP face: one fallback handler that parses any path with
//! [`crate::url::parse`] and answers from the stream's [`StreamTape`].
//!
//! Every answer is computed from the tape alone, so any replica gives the
//! same bytes for the same URL. Errors are one line of text with the status
//! their [`ErrorKind`](dvr_common::ErrorKind) maps to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use dvr_archive::status::{hour_ranges, StreamStatus, DETAILED_LIMIT_SECS};
use dvr_archive::{hour_bitmap, TimeRange};
use dvr_common::error::{ErrorKind, HasErrorKind};
use dvr_common::{Clock, Ticks, UtcMs};
use dvr_media::codec::TrackKind;
use dvr_media::psi::Program;
use dvr_media::{tracks, SegmentMeta};
use futures_util::stream;
use serde_json::json;

use crate::error::PackagerError;
use crate::http::{content_etag, fnv1a, playback_http, SharedGzip};
use crate::master::{master_playlist, video_track_set, video_variants};
use crate::paced::{cut, paced_mpegts};
use crate::playlist::{coalesce, media_playlist, starts_new_run, PlaylistKind, Rendering};
use crate::tape::{StreamTape, TapeSegment};
use crate::timeshift::{abs_head, window, WindowLimit};
use crate::url::{self, Flavor, Form, Playback, RangeEnd, TrackSet, UrlError};

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
/// How far from its start a track-cut MPEG-TS looks for the first segment,
/// whose program decides what its track numbers mean.
const FIRST_SEGMENT_REACH_MS: i64 = 120_000;

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

/// A media playlist before it is rendered: what a playlist form resolved to.
struct MediaPlan {
    kind: PlaylistKind,
    segments: Vec<SegmentMeta>,
    cache: &'static str,
}

/// What a segment holds, as far as playlists care.
#[derive(Debug)]
struct Probed {
    /// Its program (`None` when it has no tables).
    program: Option<Arc<Program>>,
    /// Its tracks, when there are several videos or audios.
    multi: Option<Arc<tracks::SegmentTracks>>,
}

/// `Cache-Control` of a complete past range.
const VOD_CACHE_CONTROL: &str = "max-age=60";
/// How long a rendered VOD playlist is reused: its max-age, so a chunk lost
/// or deleted since shows within the same minute a browser cache would.
const RENDERED_TTL_MS: i64 = 60_000;
/// Bytes of rendered playlists kept (a day's is ~330 kB, an hour's ~80 kB).
const RENDERED_BYTES: usize = 32 << 20;

/// Probed segments remembered (a few hundred bytes each); the cache is
/// emptied when full, which costs one read per stream to refill.
const PROBE_CACHE_ENTRIES: usize = 4096;

/// The answer to a range with nothing in it.
fn nothing_between(tape: &StreamTape, from: UtcMs, to: UtcMs) -> PackagerError {
    PackagerError::NothingRecorded(format!(
        "nothing recorded on {} between {} and {}",
        tape.name(),
        from.as_secs(),
        to.as_secs()
    ))
}

/// A track cut that failed, as an answer naming the segment.
fn track_error(tape: &StreamTape, meta: &SegmentMeta, e: &tracks::SelectError) -> PackagerError {
    PackagerError::NothingRecorded(format!(
        "segment of {} at {}: {e}",
        tape.name(),
        meta.utc_start.as_secs()
    ))
}

/// The tracks of `videoN` in `program`, or the answer that the stream has
/// no N-th video track (as of the segment `at`).
fn no_video_track(
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

/// A rendered VOD playlist kept for [`RENDERED_TTL_MS`].
#[derive(Clone, Debug)]
struct Rendered {
    expires: UtcMs,
    body: bytes::Bytes,
    etag: HeaderValue,
    /// Its gzip, made once for every client that accepts it.
    gzip: SharedGzip,
}

impl Rendered {
    fn response(&self) -> Response {
        let mut response = Response::new(Body::from(self.body.clone()));
        set(&mut response, header::CONTENT_TYPE, M3U8);
        set(&mut response, header::CACHE_CONTROL, VOD_CACHE_CONTROL);
        response
            .headers_mut()
            .insert(header::ETAG, self.etag.clone());
        response.extensions_mut().insert(self.gzip.clone());
        response
    }
}

/// Serves every configured stream's tape.
#[derive(Debug)]
pub struct Packager {
    streams: RwLock<HashMap<String, StreamTape>>,
    probes: Mutex<HashMap<(String, u64), Arc<Probed>>>,
    /// Rendered complete VOD playlists by path and query.
    rendered: Mutex<HashMap<String, Rendered>>,
    clock: Arc<dyn Clock>,
    config: PackagerConfig,
    /// Play authorization in front of every answer, when any stream has
    /// a policy.
    auth: Option<Arc<crate::auth::Gate>>,
}

/// The query parameters the packager reads.
#[derive(Debug, Default)]
struct Query {
    /// The `token=…` pair exactly as the client wrote it: middleware signs
    /// or compares tokens byte for byte, so it is never re-encoded.
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
        let raw = raw.unwrap_or_default();
        q.token = raw
            .split('&')
            .find(|pair| pair.starts_with("token="))
            .map(str::to_owned);
        for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
            match &*key {
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
        self.token.clone()
    }
}

impl Packager {
    /// A packager with no streams yet.
    pub fn new(config: PackagerConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            streams: RwLock::default(),
            probes: Mutex::default(),
            rendered: Mutex::default(),
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

    /// The tape of a served stream (for status reports).
    pub fn stream_tape(&self, name: &str) -> Option<StreamTape> {
        self.tape(name)
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
        router
            .layer(axum::middleware::from_fn(playback_http))
            .layer(axum::middleware::from_fn(crate::metrics::observe))
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
        let cache_key = format!("{path}?{}", raw_query.unwrap_or_default());
        if let Some(hit) = self.cached_playlist(&cache_key, now) {
            return Ok(hit);
        }
        let plan = match playback.form {
            Form::LivePlaylist(_) | Form::LiveMpegts if query.utc.is_some() => {
                // Kodi's "shift": from `utc`, the clock started at `lutc`
                // (or now), so the URL itself carries the timeline.
                let at = self.past_instant(query.utc.unwrap_or_default(), now)?;
                let started = query.lutc.map_or(now, UtcMs::from_secs);
                if playback.form == Form::LiveMpegts {
                    return self.paced(tape, at, &playback).await;
                }
                self.abs_playlist(&tape, at, started, &query, now).await?
            }
            Form::TimeshiftAbsPlaylist { at, .. } => {
                let at = self.past_instant(at, now)?;
                match query.started {
                    Some(started) => {
                        self.abs_playlist(&tape, at, UtcMs(started), &query, now)
                            .await?
                    }
                    None => return Ok(redirect_with_start(path, raw_query, now)),
                }
            }
            Form::LivePlaylist(_) if tape.delay_ms() > 0 => {
                let head = UtcMs(now.0 - tape.delay_ms());
                let limit = WindowLimit::Count(self.config.live_window);
                self.shifted_playlist(&tape, head, 0, limit, None, true)
                    .await?
            }
            Form::LiveMpegts if tape.delay_ms() > 0 => {
                let at = UtcMs(now.0 - tape.delay_ms());
                return self.paced(tape, at, &playback).await;
            }
            Form::TimeshiftRelPlaylist { behind, .. } => {
                let head = UtcMs(now.0 - i64::from(behind) * 1000);
                let limit = WindowLimit::Count(self.config.live_window);
                self.shifted_playlist(&tape, head, 0, limit, None, query.ignore_gaps)
                    .await?
            }
            Form::Rewind { window, .. } => {
                let limit = WindowLimit::Span(i64::from(window) * 1000);
                self.shifted_playlist(&tape, now, 0, limit, None, true)
                    .await?
            }
            Form::LiveMpegts => {
                let start = tape
                    .newest(1)
                    .await?
                    .first()
                    .map(|s| s.meta.utc_start)
                    .ok_or_else(|| {
                        PackagerError::NothingRecorded(format!(
                            "stream {} has no segments yet",
                            tape.name()
                        ))
                    })?;
                return self.paced(tape, start, &playback).await;
            }
            Form::TimeshiftAbsMpegts { at, .. } => {
                let at = self.past_instant(at, now)?;
                return self.paced(tape, at, &playback).await;
            }
            Form::TimeshiftRelMpegts { behind } => {
                let at = UtcMs(now.0 - i64::from(behind) * 1000);
                return self.paced(tape, at, &playback).await;
            }
            Form::LivePlaylist(_) => {
                let segments: Vec<_> = tape
                    .newest(self.config.live_window)
                    .await?
                    .into_iter()
                    .map(|s| s.meta)
                    .collect();
                if segments.is_empty() {
                    return Err(PackagerError::NothingRecorded(format!(
                        "stream {} has no segments yet",
                        tape.name()
                    )));
                }
                MediaPlan {
                    kind: PlaylistKind::Live,
                    segments,
                    cache: "no-cache",
                }
            }
            Form::RangePlaylist { from, end, .. } => {
                let (from, to) = self.range(from, end, now)?;
                let metas = tape.metas_between(from, to).await?;
                if metas.is_empty() {
                    return Err(nothing_between(&tape, from, to));
                }
                let metas = coalesce(metas.iter(), self.config.max_entries);
                let complete = to <= now;
                let kind = match end {
                    RangeEnd::Now => PlaylistKind::Event,
                    RangeEnd::Duration(_) if !complete && query.event => PlaylistKind::Event,
                    RangeEnd::Duration(_) => PlaylistKind::Vod,
                };
                let cache = if kind == PlaylistKind::Vod && complete {
                    VOD_CACHE_CONTROL
                } else {
                    "no-cache"
                };
                MediaPlan {
                    kind,
                    segments: metas,
                    cache,
                }
            }
            Form::RangeMpegts { from, duration } => {
                let (from, to) = self.range(from, RangeEnd::Duration(duration), now)?;
                let segments = self.recorded(&tape, from, to).await?;
                let tracks = self
                    .ts_tracks(&tape, &playback, Some(&segments[0].meta))
                    .await?;
                return Ok(mpegts_download(tape, segments, ranged, tracks));
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
                let body = match (run, playback.tracks) {
                    // The common case: the cached bytes as they are, no copy.
                    ([one], None) => tape.read(one).await?,
                    _ => {
                        let mut bytes = Vec::new();
                        for segment in run {
                            let stored = tape.read(segment).await?;
                            match playback.tracks {
                                None => bytes.extend_from_slice(&stored),
                                Some(tracks) => bytes.extend(
                                    tracks::select(&stored, &tracks.numbers())
                                        .map_err(|e| track_error(&tape, &segment.meta, &e))?,
                                ),
                            }
                        }
                        bytes::Bytes::from(bytes)
                    }
                };
                // The URL names these bytes forever: tag them by name.
                let etag = format!(
                    "\"{:016x}\"",
                    fnv1a(path.as_bytes()) ^ run[0].meta.seq ^ body.len() as u64
                );
                let mut response = Response::new(Body::from(body));
                set(&mut response, header::CONTENT_TYPE, MPEGTS);
                set(
                    &mut response,
                    header::CACHE_CONTROL,
                    "public, max-age=31536000, immutable",
                );
                if let Ok(v) = HeaderValue::from_str(&etag) {
                    response.headers_mut().insert(header::ETAG, v);
                }
                return Ok(response);
            }
            Form::RecordingStatus => return self.recording_status(&tape, &query, now).await,
            other => return Err(PackagerError::NotSupported(form_name(other))),
        };
        // A complete past range is the same for a minute (its max-age):
        // every viewer of a popular programme asks for the same URL.
        let cacheable = plan.kind == PlaylistKind::Vod && plan.cache == VOD_CACHE_CONTROL;
        let response = self
            .render(&tape, &playback, path, raw_query, &query, plan)
            .await?;
        if !cacheable {
            return Ok(response);
        }
        Ok(self.cache_playlist(cache_key, response, now).await)
    }

    /// An endless paced MPEG-TS from `at`, cut to the tracks the URL picks.
    async fn paced(
        &self,
        tape: StreamTape,
        at: UtcMs,
        playback: &Playback<'_>,
    ) -> Result<Response, PackagerError> {
        let first = if playback.tracks.is_some() || ts_video(playback).is_some() {
            tape.metas_between(at, at.saturating_add_ms(FIRST_SEGMENT_REACH_MS))
                .await?
                .iter()
                .next()
        } else {
            None
        };
        let tracks = self.ts_tracks(&tape, playback, first.as_ref()).await?;
        Ok(paced_mpegts(tape, at, tracks, Arc::clone(&self.clock)))
    }

    /// The tracks a transport-stream form keeps (`None`: every track): its
    /// `tracks-…/` directory, or `videoN-` resolved against the program of
    /// `first`, the first segment it sends. A track the stream does not
    /// have there is a 404 before any byte is sent.
    async fn ts_tracks(
        &self,
        tape: &StreamTape,
        playback: &Playback<'_>,
        first: Option<&SegmentMeta>,
    ) -> Result<Option<TrackSet>, PackagerError> {
        let video = ts_video(playback);
        if playback.tracks.is_none() && video.is_none() {
            return Ok(None);
        }
        let program = match first {
            Some(meta) => self
                .probe_or_warn(tape, meta)
                .await
                .and_then(|p| p.program.clone()),
            None => None,
        };
        match (video, program, first) {
            (Some(n), Some(program), Some(first)) => {
                no_video_track(tape, &program, n, first).map(Some)
            }
            (Some(n), _, _) => Err(PackagerError::NothingRecorded(format!(
                "stream {} has no recorded program to find video track {n} in",
                tape.name()
            ))),
            (None, Some(program), Some(first)) => {
                let tracks = playback.tracks;
                let count = program.streams.len();
                if let Some(asked) = tracks
                    .map(TrackSet::numbers)
                    .unwrap_or_default()
                    .into_iter()
                    .find(|&n| n > count)
                {
                    return Err(PackagerError::NothingRecorded(format!(
                        "stream {} has no track {asked}: it has {count} tracks at {}",
                        tape.name(),
                        first.utc_start.as_secs()
                    )));
                }
                Ok(tracks)
            }
            // Not recorded yet (live ahead): each segment is cut as it comes.
            (None, _, _) => Ok(playback.tracks),
        }
    }

    /// A rendered VOD playlist from the cache, if fresh.
    fn cached_playlist(&self, key: &str, now: UtcMs) -> Option<Response> {
        let rendered = self.lock_rendered();
        let hit = rendered.get(key).filter(|r| r.expires > now)?;
        Some(hit.response())
    }

    /// Keeps a rendered VOD playlist for [`RENDERED_TTL_MS`] and answers it
    /// with its ETag set, so it is hashed once, not per request.
    async fn cache_playlist(&self, key: String, response: Response, now: UtcMs) -> Response {
        let (parts, body) = response.into_parts();
        let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
            return Response::from_parts(parts, Body::empty());
        };
        let Ok(etag) = HeaderValue::from_str(&content_etag(&body)) else {
            return Response::from_parts(parts, Body::from(body));
        };
        let entry = Rendered {
            expires: now.saturating_add_ms(RENDERED_TTL_MS),
            body,
            etag,
            gzip: SharedGzip::default(),
        };
        let response = entry.response();
        let mut rendered = self.lock_rendered();
        let held: usize = rendered.values().map(|r| r.body.len()).sum();
        if held + entry.body.len() > RENDERED_BYTES {
            rendered.retain(|_, r| r.expires > now);
            let held: usize = rendered.values().map(|r| r.body.len()).sum();
            if held + entry.body.len() > RENDERED_BYTES {
                rendered.clear();
            }
        }
        rendered.insert(key, entry);
        response
    }

    fn lock_rendered(&self) -> std::sync::MutexGuard<'_, HashMap<String, Rendered>> {
        self.rendered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The answer to a playlist form: its media playlist, or for a stream
    /// with several tracks the master or variant playlist the flavor asks
    /// for (see [`crate::master`]).
    async fn render(
        &self,
        tape: &StreamTape,
        playback: &Playback<'_>,
        path: &str,
        raw_query: Option<&str>,
        query: &Query,
        plan: MediaPlan,
    ) -> Result<Response, PackagerError> {
        let carried = query.carried();
        let Some(first) = plan.segments.first() else {
            let how = Rendering::default();
            return Ok(playlist_response(
                media_playlist(plan.kind, &[], how),
                plan.cache,
            ));
        };
        // A sliding window must say how many breaks slid out of it; ranges
        // and events start where the URL says, so theirs are all in view.
        let discontinuity_sequence = match plan.kind {
            PlaylistKind::Live => tape.breaks_before(first).await?,
            PlaylistKind::Event | PlaylistKind::Vod => 0,
        };
        let media = |prefix: &str| {
            let how = Rendering {
                prefix,
                query: carried.as_deref(),
                discontinuity_sequence,
            };
            playlist_response(media_playlist(plan.kind, &plan.segments, how), plan.cache)
        };
        let file = path.rsplit('/').next().unwrap_or_default();
        if let Some(tracks) = playback.tracks {
            // Checked against the window's first segment, so a wrong number
            // is an answer, not a playlist of failing segments.
            let probed = self.probe_or_warn(tape, first).await;
            let count = probed.as_ref().map_or(usize::MAX, |p| {
                p.program
                    .as_ref()
                    .map_or(0, |program| program.streams.len())
            });
            if let Some(asked) = tracks.numbers().into_iter().find(|&n| n > count) {
                return Err(PackagerError::NothingRecorded(format!(
                    "stream {} has no track {asked}: it has {count} tracks at {}",
                    tape.name(),
                    first.utc_start.as_secs()
                )));
            }
            return Ok(media(""));
        }
        let flavor = match playback.form {
            Form::LivePlaylist(f)
            | Form::Rewind { flavor: f, .. }
            | Form::RangePlaylist { flavor: f, .. }
            | Form::TimeshiftAbsPlaylist { flavor: f, .. }
            | Form::TimeshiftRelPlaylist { flavor: f, .. } => f,
            _ => Flavor::Mono,
        };
        if flavor == Flavor::Mono {
            return Ok(media(""));
        }
        // Only a program with several tracks changes the answer; a stream
        // with one video and one audio keeps its one media playlist.
        let probed = self.probe_or_warn(tape, first).await;
        let Some(found) = probed.as_ref().and_then(|p| p.multi.as_deref()) else {
            if let (Flavor::VideoTrack(n), Some(program)) =
                (flavor, probed.as_ref().and_then(|p| p.program.as_deref()))
            {
                // `videoN` of a stream without an N-th video track is no
                // playlist at all, not every track under another name.
                no_video_track(tape, program, n, first)?;
            }
            return Ok(media(""));
        };
        let whole_query = raw_query.filter(|q| !q.is_empty());
        match flavor {
            Flavor::Index | Flavor::Archive => Ok(playlist_response(
                master_playlist(found, file, whole_query),
                plan.cache,
            )),
            Flavor::Video => Ok(playlist_response(
                video_variants(found, file, whole_query),
                plan.cache,
            )),
            Flavor::VideoTrack(n) => {
                let set = no_video_track(tape, &found.program, n, first)?;
                Ok(media(&format!("{}/", set.dir())))
            }
            Flavor::Mono => Ok(media("")),
        }
    }

    /// [`Packager::probe_first`], or `None` (logged) when the segment cannot
    /// be read: a playlist is still answered, as the media playlist of
    /// every track, rather than failing for one unreadable segment.
    async fn probe_or_warn(&self, tape: &StreamTape, meta: &SegmentMeta) -> Option<Arc<Probed>> {
        match self.probe_first(tape, meta).await {
            Ok(probed) => Some(probed),
            Err(e) => {
                tracing::warn!(stream = tape.name(), seq = meta.seq, error = %e, "cannot read the tracks of a segment, serving every track");
                None
            }
        }
    }

    /// What the segment `meta` names holds, from a small cache: every
    /// viewer of a live `index.m3u8` asks about the same first segment.
    async fn probe_first(
        &self,
        tape: &StreamTape,
        meta: &SegmentMeta,
    ) -> Result<Arc<Probed>, PackagerError> {
        let key = (tape.name().to_owned(), meta.seq);
        if let Some(hit) = self.lock_probes().get(&key) {
            return Ok(Arc::clone(hit));
        }
        let stored = self.stored_bytes(tape, meta).await?;
        let program = tracks::program_of(&stored);
        let multi = program.as_deref().is_some_and(|p| {
            let count = |kind| p.streams.iter().filter(|s| s.codec.kind() == kind).count();
            count(TrackKind::Video) > 1 || count(TrackKind::Audio) > 1
        });
        let probed = Arc::new(Probed {
            program,
            multi: multi
                .then(|| tracks::probe(&stored, meta.duration))
                .flatten()
                .map(Arc::new),
        });
        let mut probes = self.lock_probes();
        if probes.len() >= PROBE_CACHE_ENTRIES {
            probes.clear();
        }
        probes.insert(key, Arc::clone(&probed));
        Ok(probed)
    }

    fn lock_probes(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u64), Arc<Probed>>> {
        self.probes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The stored bytes of the segment `meta` names.
    async fn stored_bytes(
        &self,
        tape: &StreamTape,
        meta: &SegmentMeta,
    ) -> Result<bytes::Bytes, PackagerError> {
        let found = tape
            .segments_between(meta.utc_start, meta.utc_start.saturating_add_ms(1))
            .await?;
        let segment = found
            .iter()
            .find(|s| s.meta.seq == meta.seq)
            .ok_or_else(|| {
                PackagerError::NothingRecorded(format!(
                    "segment {} of {} is gone",
                    meta.seq,
                    tape.name()
                ))
            })?;
        tape.read(segment).await
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
    ) -> Result<MediaPlan, PackagerError> {
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
        self.shifted_playlist(tape, head, lead, limit, Some(at), query.ignore_gaps)
            .await
    }

    /// A live-style playlist whose window ends `lead_ms` past `head`.
    async fn shifted_playlist(
        &self,
        tape: &StreamTape,
        head: UtcMs,
        lead_ms: i64,
        limit: WindowLimit,
        not_before: Option<UtcMs>,
        ignore_gaps: bool,
    ) -> Result<MediaPlan, PackagerError> {
        let reach = match limit {
            WindowLimit::Count(n) => i64::try_from(n).unwrap_or(6) * MAX_SEGMENT_MS,
            WindowLimit::Span(ms) => ms + MAX_SEGMENT_MS,
        };
        let segments = tape
            .metas_between(
                UtcMs(head.0 - reach),
                head.saturating_add_ms(lead_ms + MAX_SEGMENT_MS),
            )
            .await?
            .to_vec();
        let shown = window(&segments, head, lead_ms, limit, not_before, ignore_gaps);
        Ok(MediaPlan {
            kind: PlaylistKind::Live,
            segments: shown,
            cache: "no-cache",
        })
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
            return Err(nothing_between(tape, from, to));
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
        // Without `from`, the tape's start: a bitmap or a size check from
        // 1970 would measure nothing useful.
        let start = tape.extent().await?.map_or(now, |(from, _)| from);
        let from = bound(&query.from, start)?;
        let to = bound(&query.to, now)?;
        if to < from {
            return Err(PackagerError::BadRequest(
                "recording_status: to is before from".into(),
            ));
        }
        let asked = |what: &str| query.request.iter().any(|r| r == what);
        let ranges: Vec<TimeRange> = tape
            .ranges(from, to)
            .await?
            .into_iter()
            .map(|(from, to)| TimeRange { from, to })
            .collect();
        let mut status = StreamStatus::new(&name);
        let bitmap = hour_bitmap(ranges.iter().copied(), from, to);
        if query.request.is_empty() || asked("ranges") {
            // The seeds' forced brief answer: over four days, whole recorded
            // hours unless the client insists.
            let too_big = (to.0 - from.0) / 1000 > DETAILED_LIMIT_SECS && !asked("force_detailed");
            status = if too_big {
                status.with_ranges(&hour_ranges(&bitmap)).too_big_range()
            } else {
                status.with_ranges(&ranges)
            };
        }
        if asked("hour_bitmap") {
            status = status.with_hour_bitmap(bitmap);
        }
        if asked("locks") {
            let locks: Vec<_> = tape
                .locks(now)
                .await?
                .into_iter()
                .filter(|l| l.overlaps(from, to.max(now)))
                .collect();
            status = status.with_locks(&locks);
        }
        Ok(json_response(&json!([status])))
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
///
/// With `tracks`, every segment is cut to them by PID; the length is then
/// not known before the end, so there is no `Content-Length` and a byte
/// range is answered with the whole body (which HTTP allows).
fn mpegts_download(
    tape: StreamTape,
    segments: Vec<TapeSegment>,
    exact_length: bool,
    tracks: Option<TrackSet>,
) -> Response {
    let exact_length = exact_length && tracks.is_none();
    let numbers = tracks.map(TrackSet::numbers);
    let length: u64 = segments.iter().map(|s| s.meta.bytes).sum();
    let body = stream::unfold(
        (tape, segments.into_iter(), numbers),
        move |(tape, mut rest, numbers)| async move {
            loop {
                let segment = rest.next()?;
                match tape.read(&segment).await {
                    Ok(bytes) => match cut(&tape, &segment, bytes, numbers.as_deref()) {
                        Ok(bytes) => return Some((Ok(bytes), (tape, rest, numbers))),
                        Err(e) => {
                            tracing::warn!(stream = tape.name(), seq = segment.meta.seq, error = %e, "download: skipping a segment without the asked tracks");
                        }
                    },
                    Err(e) if e.error_kind() == ErrorKind::NotFound && !exact_length => {
                        tracing::warn!(stream = tape.name(), seq = segment.meta.seq, error = %e, "download: skipping a lost segment");
                    }
                    Err(e) => return Some((Err(std::io::Error::other(e)), (tape, rest, numbers))),
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

/// `videoN` of a `videoN-timeshift_abs-T.ts` URL.
fn ts_video(playback: &Playback<'_>) -> Option<u8> {
    match playback.form {
        Form::TimeshiftAbsMpegts {
            flavor: Flavor::VideoTrack(n),
            ..
        } => Some(n),
        _ => None,
    }
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
