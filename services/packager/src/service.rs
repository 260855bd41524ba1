//! The packager's HTTP face: one fallback handler that parses any path with
//! [`crate::url::parse`] and answers from the stream's [`StreamTape`].
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
use dvr_archive::status::{hour_ranges, StreamStatus, DETAILED_LIMIT_SECS};
use dvr_archive::{hour_bitmap, TimeRange};
use dvr_common::error::{ErrorKind, HasErrorKind};
use dvr_common::{Clock, Ticks, UtcMs};
use dvr_edge::{ClientAddr, Quota};
use dvr_media::codec::TrackKind;
use dvr_media::psi::Program;
use dvr_media::{tracks, SegmentMeta};
use futures_util::stream;
use serde_json::json;

use crate::error::PackagerError;
use crate::http::{self, content_etag, fnv1a, playback_http, RangeAsk, SharedGzip};
use crate::master::{master_playlist, video_track_set, video_variants};
use crate::paced::{cut, paced_mpegts};
use crate::playlist::{
    coalesce, media_playlist, starts_new_run, PlaylistKind, Rendering, MAX_RUN_SEGMENTS,
};
use crate::query::Query;
use crate::tape::{StreamTape, TapeSegment};
use crate::timeshift::{abs_head, window, WindowLimit};
use crate::url::{self, Flavor, Form, Playback, RangeEnd, TrackSet, UrlError};

const M3U8: &str = "application/vnd.apple.mpegurl";
const MPEGTS: &str = "video/mp2t";
/// The longest segment the segmenter makes (its forced cut), for how far
/// back a window must look.
const MAX_SEGMENT_MS: i64 = 10_000;
/// The longest stretch one segment URL may name: a coalesced entry of
/// [`MAX_RUN_SEGMENTS`] segments of the longest kind.
const MAX_RUN_MS: i64 = MAX_RUN_SEGMENTS as i64 * MAX_SEGMENT_MS;
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
    /// Endless paced MPEG-TS answers open at once.
    pub max_paced_streams: usize,
    /// The same per client address.
    pub max_paced_streams_per_client: usize,
}

impl Default for PackagerConfig {
    fn default() -> Self {
        let settings = dvr_common::config::PackagerSettings::default();
        Self {
            live_window: 6,
            max_range_secs: 24 * 3600,
            max_entries: 7200,
            max_paced_streams: settings.max_paced_streams,
            max_paced_streams_per_client: settings.max_paced_streams_per_client,
        }
    }
}

/// What an answer needs from the request besides its URL.
#[derive(Clone, Debug, Default)]
pub struct RequestContext {
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// Who asks (paced streams are counted per client).
    pub client: Option<ClientAddr>,
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
    /// The open paced streams, capped in total and per client.
    paced: Arc<Quota>,
}

impl Packager {
    /// A packager with no streams yet.
    pub fn new(config: PackagerConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            streams: RwLock::default(),
            probes: Mutex::default(),
            rendered: Mutex::default(),
            clock,
            paced: Quota::new(
                config.max_paced_streams,
                config.max_paced_streams_per_client,
            ),
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
        context: &RequestContext,
    ) -> Result<Response, PackagerError> {
        let playback = url::parse(path).map_err(|e| match e {
            UrlError::Unknown => PackagerError::NothingRecorded(format!("no such resource {path}")),
            UrlError::Invalid(reason) => PackagerError::BadRequest(reason),
        })?;
        let tape = self
            .tape(playback.stream)
            .ok_or_else(|| PackagerError::UnknownStream(playback.stream.to_owned()))?;
        let query = Query::parse(raw_query).map_err(PackagerError::BadRequest)?;
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
                    return self.paced(tape, at, &playback, context).await;
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
                return self.paced(tape, at, &playback, context).await;
            }
            Form::TimeshiftRelPlaylist { behind, .. } => {
                let head = UtcMs(now.0 - i64::from(behind) * 1000);
                let limit = WindowLimit::Count(self.config.live_window);
                self.shifted_playlist(&tape, head, 0, limit, None, query.ignore_gaps)
                    .await?
            }
            Form::Rewind { window, .. } => {
                // The window is at most the longest range a request may
                // list (and the tape holds no more than its depth anyway).
                let window = window.min(self.config.max_range_secs);
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
                return self.paced(tape, start, &playback, context).await;
            }
            Form::TimeshiftAbsMpegts { at, .. } => {
                let at = self.past_instant(at, now)?;
                return self.paced(tape, at, &playback, context).await;
            }
            Form::TimeshiftRelMpegts { behind } => {
                let at = UtcMs(now.0 - i64::from(behind) * 1000);
                return self.paced(tape, at, &playback, context).await;
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
                let mut response =
                    segments_response(tape, segments, context.range.as_deref(), tracks, Lost::Skip);
                set(&mut response, header::CONTENT_TYPE, MPEGTS);
                return Ok(response);
            }
            Form::Segment {
                start_second,
                duration_ms,
            } => {
                if i64::from(duration_ms) > MAX_RUN_MS {
                    return Err(PackagerError::BadRequest(format!(
                        "segment URL of {duration_ms} ms: one URL spans at most {MAX_RUN_MS} ms"
                    )));
                }
                let start = UtcMs::from_secs(start_second);
                let reach = i64::from(duration_ms).max(1000) + 1000;
                let candidates = tape
                    .segments_between(start, start.saturating_add_ms(reach))
                    .await?;
                let run = segment_run(&candidates, start_second, duration_ms)
                    .ok_or_else(|| PackagerError::NothingRecorded(format!("no segment {path}")))?;
                // The URL names these bytes forever: tag them by name.
                let planned: u64 = run.iter().map(|s| s.meta.bytes).sum();
                let etag = format!(
                    "\"{:016x}\"",
                    fnv1a(path.as_bytes()) ^ run[0].meta.seq ^ planned
                );
                let mut response = match (run, playback.tracks) {
                    // The common case: the cached bytes as they are, no copy.
                    ([one], None) => {
                        let bytes = tape.read(one).await?;
                        bytes_response(bytes, context.range.as_deref())
                    }
                    // One segment cut to tracks: a track it lacks is a 404
                    // before any byte is sent.
                    ([one], Some(tracks)) => {
                        let stored = tape.read(one).await?;
                        let cut = tracks::select(&stored, &tracks.numbers())
                            .map_err(|e| track_error(&tape, &one.meta, &e))?;
                        bytes_response(bytes::Bytes::from(cut), context.range.as_deref())
                    }
                    // A coalesced run, or tracks cut out: streamed segment
                    // by segment, never collected.
                    _ => segments_response(
                        tape.clone(),
                        run.to_vec(),
                        context.range.as_deref(),
                        playback.tracks,
                        Lost::Fail,
                    ),
                };
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

    /// An endless paced MPEG-TS from `at` (the tape's first segment at the
    /// earliest), cut to the tracks the URL picks, if the paced-stream
    /// quota has room for the client.
    async fn paced(
        &self,
        tape: StreamTape,
        at: UtcMs,
        playback: &Playback<'_>,
        context: &RequestContext,
    ) -> Result<Response, PackagerError> {
        let client = context
            .client
            .unwrap_or(ClientAddr(std::net::Ipv4Addr::UNSPECIFIED.into()));
        let share = match self.paced.try_acquire(client) {
            Ok(share) => share,
            Err(exceeded) => {
                return Ok(dvr_edge::busy(
                    "paced_streams",
                    "paced MPEG-TS streams",
                    exceeded,
                ))
            }
        };
        let (first, _) = tape.extent().await?.ok_or_else(|| {
            PackagerError::NothingRecorded(format!(
                "stream {} has nothing recorded yet",
                tape.name()
            ))
        })?;
        // Before the tape there is nothing to wait for: start where it does.
        let at = at.max(first);
        let first = if playback.tracks.is_some() || ts_video(playback).is_some() {
            tape.metas_between(at, at.saturating_add_ms(FIRST_SEGMENT_REACH_MS))
                .await?
                .iter()
                .next()
        } else {
            None
        };
        let tracks = self.ts_tracks(&tape, playback, first.as_ref()).await?;
        Ok(paced_mpegts(
            tape,
            at,
            tracks,
            Arc::clone(&self.clock),
            share,
        ))
    }

    /// Paced MPEG-TS streams open now.
    pub fn open_paced_streams(&self) -> usize {
        self.paced.in_use()
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
        // How long the viewer has watched bounds how much tape finding its
        // position reads; a client-supplied start cannot stretch it.
        let elapsed = (now.0 - started.0).max(0);
        let max_ms = i64::from(self.config.max_range_secs) * 1000;
        if elapsed > max_ms {
            return Err(PackagerError::BadRequest(format!(
                "timeshift_abs: this viewer started at {}, more than {} s ago; open the URL without started (or lutc) to start again",
                started.as_secs(),
                self.config.max_range_secs
            )));
        }
        let head = if query.ignore_gaps {
            // Recorded time from `at` decides; a few hours past the wall
            // clock's head covers any gaps worth skipping.
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
    };
    match packager.answer(uri.path(), uri.query(), &context).await {
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
/// coalesced, the run of consecutive segments from there (at most
/// [`MAX_RUN_SEGMENTS`]) whose durations add up to it.
fn segment_run(
    candidates: &[TapeSegment],
    start_second: i64,
    duration_ms: u32,
) -> Option<&[TapeSegment]> {
    let first = candidates
        .iter()
        .position(|s| s.meta.utc_start.as_secs() == start_second)?;
    let mut total = Ticks(0);
    for (i, segment) in candidates[first..]
        .iter()
        .enumerate()
        .take(MAX_RUN_SEGMENTS)
    {
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

/// What a body of stored segments does with a segment lost from the
/// archive (not found).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lost {
    /// Leave it out with a log line: one damaged chunk costs a download
    /// its own time, not the whole file. The length is then not known
    /// before the end, so such a body has no `Content-Length`.
    Skip,
    /// End the body with an error: its length was promised.
    Fail,
}

/// A whole stored segment, or the part a `Range` header asks for.
fn bytes_response(bytes: bytes::Bytes, range: Option<&str>) -> Response {
    let len = bytes.len() as u64;
    let mut response = match http::range_ask(range, len) {
        RangeAsk::Whole => Response::new(Body::from(bytes)),
        RangeAsk::Part(start, end) => {
            // Bounded by `len`, a `usize` to start with.
            #[allow(clippy::cast_possible_truncation)]
            let part = bytes.slice(start as usize..end as usize);
            http::partial(Response::new(Body::from(part)), start, end, len)
        }
        RangeAsk::Unsatisfiable => return http::unsatisfiable(len),
    };
    set(&mut response, header::ACCEPT_RANGES, "bytes");
    response
}

/// Streams stored segments one after the other, reading each only when
/// the client has taken the one before: memory holds one segment, never
/// the body.
///
/// A `Range` is mapped onto the segments it touches before anything is
/// read: `bytes=-1` of a day-long download reads one segment, not the day.
/// A ranged answer's length is exact, so a lost segment ends it with an
/// error (the retry, planned from a catalog that now knows the loss, is
/// exact again); a whole answer follows `lost`.
///
/// With `tracks`, every segment is cut to them by PID; the length is then
/// not known before the end, so there is no `Content-Length` and a `Range`
/// is answered with the whole body (which HTTP allows).
fn segments_response(
    tape: StreamTape,
    segments: Vec<TapeSegment>,
    range: Option<&str>,
    tracks: Option<TrackSet>,
    lost: Lost,
) -> Response {
    let Some(tracks) = tracks else {
        let total: u64 = segments.iter().map(|s| s.meta.bytes).sum();
        return match http::range_ask(range, total) {
            RangeAsk::Whole => {
                let length = (lost == Lost::Fail).then_some(total);
                let mut response = segments_body(tape, segments, 0, u64::MAX, None, lost, length);
                set(&mut response, header::ACCEPT_RANGES, "bytes");
                response
            }
            RangeAsk::Part(start, end) => {
                let (touched, skip) = touched_segments(segments, start, end);
                let body = segments_body(
                    tape,
                    touched,
                    skip,
                    end - start,
                    None,
                    Lost::Fail,
                    Some(end - start),
                );
                let mut response = http::partial(body, start, end, total);
                set(&mut response, header::ACCEPT_RANGES, "bytes");
                response
            }
            RangeAsk::Unsatisfiable => http::unsatisfiable(total),
        };
    };
    segments_body(
        tape,
        segments,
        0,
        u64::MAX,
        Some(tracks.numbers()),
        lost,
        None,
    )
}

/// The segments holding bytes `[start, end)` of their concatenation, and
/// how many bytes of the first to skip.
fn touched_segments(segments: Vec<TapeSegment>, start: u64, end: u64) -> (Vec<TapeSegment>, u64) {
    let mut at = 0u64;
    let mut skip = 0;
    let mut touched = Vec::new();
    for segment in segments {
        let (from, to) = (at, at + segment.meta.bytes);
        at = to;
        if to <= start {
            continue;
        }
        if from >= end {
            break;
        }
        if touched.is_empty() {
            skip = start - from;
        }
        touched.push(segment);
    }
    (touched, skip)
}

/// The body of `segments`: `skip` bytes of the first left out, at most
/// `take` bytes sent, each cut to `tracks` when given.
fn segments_body(
    tape: StreamTape,
    segments: Vec<TapeSegment>,
    skip: u64,
    take: u64,
    tracks: Option<Vec<usize>>,
    lost: Lost,
    length: Option<u64>,
) -> Response {
    struct State {
        tape: StreamTape,
        rest: std::vec::IntoIter<TapeSegment>,
        tracks: Option<Vec<usize>>,
        skip: u64,
        left: u64,
    }
    let state = State {
        tape,
        rest: segments.into_iter(),
        tracks,
        skip,
        left: take,
    };
    let body = stream::unfold(state, move |mut st| async move {
        loop {
            if st.left == 0 {
                return None;
            }
            let segment = st.rest.next()?;
            let bytes = match st.tape.read(&segment).await {
                Ok(bytes) => bytes,
                Err(e) if e.error_kind() == ErrorKind::NotFound && lost == Lost::Skip => {
                    tracing::warn!(stream = st.tape.name(), seq = segment.meta.seq, error = %e, "download: skipping a lost segment");
                    continue;
                }
                Err(e) => return Some((Err(std::io::Error::other(e)), st)),
            };
            let mut bytes = match cut(&st.tape, &segment, bytes, st.tracks.as_deref()) {
                Ok(bytes) => bytes,
                Err(e) if lost == Lost::Skip => {
                    tracing::warn!(stream = st.tape.name(), seq = segment.meta.seq, error = %e, "download: skipping a segment without the asked tracks");
                    continue;
                }
                Err(e) => return Some((Err(std::io::Error::other(e)), st)),
            };
            // Both bounded by the segment's length, a `usize`.
            #[allow(clippy::cast_possible_truncation)]
            {
                let from = (st.skip as usize).min(bytes.len());
                let to = from + (st.left.min((bytes.len() - from) as u64) as usize);
                bytes = bytes.slice(from..to);
            }
            st.skip = 0;
            st.left -= bytes.len() as u64;
            return Some((Ok(bytes), st));
        }
    });
    let mut response = Response::new(Body::from_stream(body));
    if let Some(length) = length {
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
