//! The HLS playlist forms (TS, and CMAF with `.fmp4.m3u8`): live windows, rewind, past ranges (VOD and
//! EVENT), start-over, and the stateless timeshift playlists, with the two
//! caches that keep them cheap: rendered complete ranges (a popular
//! programme is rendered once a minute, not once a viewer) and what the
//! first segment of a window holds (every viewer of a live playlist asks
//! about the same one).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use dvr_common::UtcMs;
use dvr_media::codec::TrackKind;
use dvr_media::psi::Program;
use dvr_media::{tracks, SegmentMeta};

use crate::cmaf::RunView;
use crate::error::PackagerError;
use crate::http::{content_etag, SharedGzip};
use crate::master::{master_playlist, video_variants};
use crate::playlist::{coalesce, media_playlist, Media, PlaylistKind, Rendering, RunInit};
use crate::query::Query;
use crate::service::{
    form_name, no_video_track, nothing_between, set, Asked, Packager, MAX_SEGMENT_MS,
};
use crate::timeshift::{abs_head, window, WindowLimit};
use crate::url::{Flavor, Form, Packaging, Playback, RangeEnd, TrackSet};
use dvr_archive::tape::StreamTape;

const M3U8: &str = "application/vnd.apple.mpegurl";
/// How far past the wall-clock head `timeshift_abs?ignore_gaps=true` reads
/// the tape to skip gaps.
const ABS_GAP_REACH_MS: i64 = 6 * 3_600_000;
/// How far past a `timeshift_abs` viewer's position its window reaches:
/// three 2 s segments, where players join a live playlist.
const ABS_LEAD_MS: i64 = 6_000;

/// A media playlist before it is rendered: what a playlist form resolved to.
pub(crate) struct MediaPlan {
    pub(crate) kind: PlaylistKind,
    pub(crate) segments: Vec<SegmentMeta>,
    pub(crate) cache: &'static str,
}

/// What [`Packager::plan`] resolved a form to.
pub(crate) enum Planned {
    /// Segments to list.
    Plan(MediaPlan),
    /// An answer of its own.
    Answer(Response),
}

/// What a segment holds, as far as playlists care.
#[derive(Debug)]
pub(crate) struct Probed {
    /// Its program (`None` when it has no tables).
    pub(crate) program: Option<Arc<Program>>,
    /// Its tracks, when there are several videos or audios.
    pub(crate) multi: Option<Arc<tracks::SegmentTracks>>,
}

/// `Cache-Control` of a complete past range.
pub(crate) const VOD_CACHE_CONTROL: &str = "max-age=60";
/// How long a rendered VOD playlist is reused: its max-age, so a chunk lost
/// or deleted since shows within the same minute a browser cache would.
const RENDERED_TTL_MS: i64 = 60_000;
/// Bytes of rendered playlists kept (a day's is ~330 kB, an hour's ~80 kB).
const RENDERED_BYTES: usize = 32 << 20;

/// Probed segments remembered (a few hundred bytes each); the cache is
/// emptied when full, which costs one read per stream to refill.
const PROBE_CACHE_ENTRIES: usize = 4096;

/// A rendered VOD playlist kept for [`RENDERED_TTL_MS`].
#[derive(Clone, Debug)]
pub(crate) struct Rendered {
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

impl Packager {
    /// A playlist form: what it lists, rendered (a complete past range
    /// from the cache when another viewer asked for it within the minute).
    pub(crate) async fn playlist(
        &self,
        tape: &StreamTape,
        asked: &Asked<'_>,
    ) -> Result<Response, PackagerError> {
        let (query, now) = (&asked.query, asked.now);
        let cache_key = format!("{}?{}", asked.path, asked.raw_query.unwrap_or_default());
        if let Some(hit) = self.cached_playlist(&cache_key, now) {
            return Ok(hit);
        }
        let plan = match self.plan(tape, asked, asked.playback.form, true).await? {
            Planned::Plan(plan) => plan,
            Planned::Answer(response) => return Ok(response),
        };
        // A complete past range is the same for a minute (its max-age):
        // every viewer of a popular programme asks for the same URL.
        let cacheable = plan.kind == PlaylistKind::Vod && plan.cache == VOD_CACHE_CONTROL;
        let response = self
            .render(
                tape,
                &asked.playback,
                asked.path,
                asked.raw_query,
                query,
                plan,
            )
            .await?;
        if !cacheable {
            return Ok(response);
        }
        Ok(self.cache_playlist(cache_key, response, now).await)
    }

    /// What a playlist form lists (the HLS forms, and the DASH forms as
    /// the HLS form they match): the segments of its window or range, or
    /// an answer of its own (the redirect that starts a `timeshift_abs`).
    /// A long range is coalesced into at most `max_entries` entries when
    /// `coalesce` (HLS); DASH lists every segment.
    pub(crate) async fn plan(
        &self,
        tape: &StreamTape,
        asked: &Asked<'_>,
        form: Form,
        coalesce_range: bool,
    ) -> Result<Planned, PackagerError> {
        let (query, now) = (&asked.query, asked.now);
        let plan = match form {
            Form::LivePlaylist(_) if query.utc.is_some() => {
                // Kodi's "shift": from `utc`, the clock started at `lutc`
                // (or now), so the URL itself carries the timeline.
                let at = self.past_instant(query.utc.unwrap_or_default(), now)?;
                let started = query.lutc.map_or(now, UtcMs::from_secs);
                self.abs_playlist(tape, at, started, query, now).await?
            }
            Form::TimeshiftAbsPlaylist { at, .. } => {
                let at = self.past_instant(at, now)?;
                match query.started {
                    Some(started) => {
                        self.abs_playlist(tape, at, UtcMs(started), query, now)
                            .await?
                    }
                    None => {
                        return Ok(Planned::Answer(redirect_with_start(
                            asked.path,
                            asked.raw_query,
                            now,
                        )))
                    }
                }
            }
            Form::LivePlaylist(_) if tape.delay_ms() > 0 => {
                let head = UtcMs(now.0 - tape.delay_ms());
                let limit = WindowLimit::Count(self.config.live_window);
                self.shifted_playlist(tape, head, 0, limit, None, true)
                    .await?
            }
            Form::TimeshiftRelPlaylist { behind, .. } => {
                let head = UtcMs(now.0 - i64::from(behind) * 1000);
                let limit = WindowLimit::Count(self.config.live_window);
                self.shifted_playlist(tape, head, 0, limit, None, query.ignore_gaps)
                    .await?
            }
            Form::Rewind { window, .. } => {
                // The window is at most the longest range a request may
                // list (and the tape holds no more than its depth anyway).
                let window = window.min(self.config.max_range_secs);
                let limit = WindowLimit::Span(i64::from(window) * 1000);
                self.shifted_playlist(tape, now, 0, limit, None, true)
                    .await?
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
                    return Err(nothing_between(tape, from, to));
                }
                let metas = if coalesce_range {
                    coalesce(metas.iter(), self.config.max_entries)
                } else {
                    metas.to_vec()
                };
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
            other => return Err(PackagerError::NotSupported(form_name(other))),
        };
        Ok(Planned::Plan(plan))
    }

    /// A rendered VOD playlist from the cache, if fresh.
    pub(crate) fn cached_playlist(&self, key: &str, now: UtcMs) -> Option<Response> {
        let rendered = self.lock_rendered();
        let hit = rendered.get(key).filter(|r| r.expires > now)?;
        Some(hit.response())
    }

    /// Keeps a rendered VOD playlist for [`RENDERED_TTL_MS`] and answers it
    /// with its ETag set, so it is hashed once, not per request.
    pub(crate) async fn cache_playlist(
        &self,
        key: String,
        response: Response,
        now: UtcMs,
    ) -> Response {
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

    pub(crate) fn lock_rendered(&self) -> std::sync::MutexGuard<'_, HashMap<String, Rendered>> {
        self.rendered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The answer to a playlist form: its media playlist, or for a stream
    /// with several tracks the master or variant playlist the flavor asks
    /// for (see [`crate::master`]).
    pub(crate) async fn render(
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
        let fmp4 = playback.packaging == Packaging::Fmp4;
        // The media playlist of the tracks `selection` (all: `None`), its
        // segment URLs under `prefix`; for fMP4 with each run's init.
        let media = |prefix: String, selection: Option<TrackSet>| {
            let plan = &plan;
            let carried = carried.as_deref();
            async move {
                let inits: Vec<RunInit> = if fmp4 {
                    self.run_views(tape, &plan.segments, selection)
                        .await?
                        .iter()
                        .map(RunView::init)
                        .collect()
                } else {
                    Vec::new()
                };
                let how = Rendering {
                    prefix: &prefix,
                    query: carried,
                    discontinuity_sequence,
                    media: if fmp4 { Media::Fmp4(&inits) } else { Media::Ts },
                };
                Ok::<_, PackagerError>(playlist_response(
                    media_playlist(plan.kind, &plan.segments, how),
                    plan.cache,
                ))
            }
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
            return media(String::new(), playback.tracks).await;
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
            return media(String::new(), None).await;
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
            return media(String::new(), None).await;
        };
        let whole_query = raw_query.filter(|q| !q.is_empty());
        // CMAF masters offer only the tracks fMP4 carries (no MPEG audio).
        let carried_tracks;
        let found = if fmp4 {
            carried_tracks = fmp4_tracks(found);
            &carried_tracks
        } else {
            found
        };
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
                media(format!("{}/", set.dir()), Some(set)).await
            }
            Flavor::Mono => media(String::new(), None).await,
        }
    }

    /// [`Packager::probe_first`], or `None` (logged) when the segment cannot
    /// be read: a playlist is still answered, as the media playlist of
    /// every track, rather than failing for one unreadable segment.
    pub(crate) async fn probe_or_warn(
        &self,
        tape: &StreamTape,
        meta: &SegmentMeta,
    ) -> Option<Arc<Probed>> {
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
    pub(crate) async fn probe_first(
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

    pub(crate) fn lock_probes(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, u64), Arc<Probed>>> {
        self.probes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The stored bytes of the segment `meta` names.
    pub(crate) async fn stored_bytes(
        &self,
        tape: &StreamTape,
        meta: &SegmentMeta,
    ) -> Result<bytes::Bytes, PackagerError> {
        let found = tape
            .every_segment_between(meta.utc_start, meta.utc_start.saturating_add_ms(1))
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
        Ok(tape.read(segment).await?)
    }

    /// `timeshift_abs` from `at` for a viewer who started at `started`.
    pub(crate) async fn abs_playlist(
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
    pub(crate) async fn shifted_playlist(
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
    pub(crate) fn range(
        &self,
        from: i64,
        end: RangeEnd,
        now: UtcMs,
    ) -> Result<(UtcMs, UtcMs), PackagerError> {
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

/// `tracks` with those fMP4 does not carry marked as data, so master
/// playlists leave them out (track numbers stay PMT positions).
fn fmp4_tracks(tracks: &tracks::SegmentTracks) -> tracks::SegmentTracks {
    let mut out = tracks.clone();
    for track in &mut out.tracks {
        if !dvr_media::fmp4::carries(track.codec) {
            track.kind = TrackKind::Data;
        }
    }
    out
}

fn playlist_response(text: String, cache: &'static str) -> Response {
    let mut response = Response::new(Body::from(text));
    set(&mut response, header::CONTENT_TYPE, M3U8);
    set(&mut response, header::CACHE_CONTROL, cache);
    response
}
