//! The MPEG-TS forms: a past range as one file, one stored segment (or a
//! coalesced run of them), and the endless paced streams (the cursor is in
//! [`crate::paced`]).
//!
//! Bodies are streamed from storage segment by segment, never collected,
//! and a byte range is mapped onto the segments it touches before anything
//! is read.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use dvr_common::error::{ErrorKind, HasErrorKind};
use dvr_common::{Ticks, UtcMs};
use dvr_edge::ClientAddr;
use dvr_media::{tracks, SegmentMeta};
use futures_util::stream;

use crate::config::RequestContext;
use crate::error::PackagerError;
use crate::http::{self, fnv1a, RangeAsk};
use crate::paced::{cut, paced_mpegts};
use crate::playlist::{starts_new_run, MAX_RUN_SEGMENTS};
use crate::service::{
    form_name, no_video_track, nothing_between, set, track_error, Asked, Packager, MAX_SEGMENT_MS,
    MPEGTS,
};
use crate::url::{Flavor, Form, Playback, RangeEnd, TrackSet};
use dvr_archive::tape::{StreamTape, TapeSegment};

/// `Cache-Control` of a segment URL: it names the same bytes forever.
pub(crate) const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The longest stretch one segment URL may name: a coalesced entry of
/// [`MAX_RUN_SEGMENTS`] segments of the longest kind.
pub(crate) const MAX_RUN_MS: i64 = MAX_RUN_SEGMENTS as i64 * MAX_SEGMENT_MS;
/// How far from its start a track-cut MPEG-TS looks for the first segment,
/// whose program decides what its track numbers mean.
const FIRST_SEGMENT_REACH_MS: i64 = 120_000;

impl Packager {
    /// A paced form: where on the tape it starts.
    pub(crate) async fn paced_form(
        &self,
        tape: StreamTape,
        asked: &Asked<'_>,
    ) -> Result<Response, PackagerError> {
        let now = asked.now;
        let at = match asked.playback.form {
            // Kodi's "shift" on the transport stream: from `utc`.
            Form::LiveMpegts if asked.query.utc.is_some() => {
                self.past_instant(asked.query.utc.unwrap_or_default(), now)?
            }
            Form::LiveMpegts if tape.delay_ms() > 0 => UtcMs(now.0 - tape.delay_ms()),
            Form::LiveMpegts => tape
                .newest(1)
                .await?
                .first()
                .map(|s| s.meta.utc_start)
                .ok_or_else(|| {
                    PackagerError::NothingRecorded(format!(
                        "stream {} has no segments yet",
                        tape.name()
                    ))
                })?,
            Form::TimeshiftAbsMpegts { at, .. } => self.past_instant(at, now)?,
            Form::TimeshiftRelMpegts { behind } => UtcMs(now.0 - i64::from(behind) * 1000),
            other => return Err(PackagerError::NotSupported(form_name(other))),
        };
        self.paced(tape, at, &asked.playback, asked.context).await
    }

    /// `archive-FROM-DUR.ts` and `archive/FROM/DUR/mpegts`: the range as
    /// one file, streamed from storage.
    pub(crate) async fn download(
        &self,
        tape: StreamTape,
        asked: &Asked<'_>,
        from: i64,
        duration: u32,
    ) -> Result<Response, PackagerError> {
        let (from, to) = self.range(from, RangeEnd::Duration(duration), asked.now)?;
        let segments = self.recorded(&tape, from, to).await?;
        let tracks = self
            .ts_tracks(&tape, &asked.playback, Some(&segments[0].meta))
            .await?;
        let range = asked.context.range.as_deref();
        let mut response = segments_response(tape, segments, range, tracks, Lost::Skip);
        set(&mut response, header::CONTENT_TYPE, MPEGTS);
        Ok(response)
    }

    /// `YYYY/MM/DD/HH/MM/SS-DDDDD.ts`: one stored segment, or the run a
    /// long playlist coalesced into one entry, by the bytes it names.
    pub(crate) async fn segment(
        &self,
        tape: StreamTape,
        asked: &Asked<'_>,
        start_second: i64,
        duration_ms: u32,
    ) -> Result<Response, PackagerError> {
        if i64::from(duration_ms) > MAX_RUN_MS {
            return Err(PackagerError::BadRequest(format!(
                "segment URL of {duration_ms} ms: one URL spans at most {MAX_RUN_MS} ms"
            )));
        }
        let start = UtcMs::from_secs(start_second);
        let reach = i64::from(duration_ms).max(1000) + 1000;
        let candidates = tape
            .every_segment_between(start, start.saturating_add_ms(reach))
            .await?;
        let run = segment_run(&candidates, start_second, duration_ms)
            .ok_or_else(|| PackagerError::NothingRecorded(format!("no segment {}", asked.path)))?;
        let etag = run_etag(asked.path, run);
        let mut response = match (run, asked.playback.tracks) {
            // The common case: the cached bytes as they are, no copy.
            ([one], None) => {
                let bytes = tape.read(one).await?;
                bytes_response(bytes, asked.context.range.as_deref())
            }
            // One segment cut to tracks: a track it lacks is a 404
            // before any byte is sent.
            ([one], Some(tracks)) => {
                let stored = tape.read(one).await?;
                let cut = tracks::select(&stored, &tracks.numbers())
                    .map_err(|e| track_error(&tape, &one.meta, &e))?;
                bytes_response(bytes::Bytes::from(cut), asked.context.range.as_deref())
            }
            // A coalesced run, or tracks cut out: streamed segment
            // by segment, never collected.
            _ => segments_response(
                tape.clone(),
                run.to_vec(),
                asked.context.range.as_deref(),
                asked.playback.tracks,
                Lost::Fail,
            ),
        };
        set(&mut response, header::CONTENT_TYPE, MPEGTS);
        set(&mut response, header::CACHE_CONTROL, IMMUTABLE);
        if let Ok(v) = HeaderValue::from_str(&etag) {
            response.headers_mut().insert(header::ETAG, v);
        }
        Ok(response)
    }

    /// An endless paced MPEG-TS from `at` (the tape's first segment at the
    /// earliest), cut to the tracks the URL picks, if the paced-stream
    /// quota has room for the client.
    pub(crate) async fn paced(
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
    pub(crate) async fn ts_tracks(
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

    pub(crate) async fn recorded(
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
    run_from(candidates, first, duration_ms)
}

/// The ETag of a segment URL naming `run`: the URL names these bytes
/// forever, so they are tagged by name, not hashed.
pub(crate) fn run_etag(path: &str, run: &[TapeSegment]) -> String {
    let planned: u64 = run.iter().map(|s| s.meta.bytes).sum();
    let seq = run.first().map_or(0, |s| s.meta.seq);
    format!("\"{:016x}\"", fnv1a(path.as_bytes()) ^ seq ^ planned)
}

/// The run of consecutive segments from `candidates[first]` (at most
/// [`MAX_RUN_SEGMENTS`], never across a break) lasting `duration_ms`.
pub(crate) fn run_from(
    candidates: &[TapeSegment],
    first: usize,
    duration_ms: u32,
) -> Option<&[TapeSegment]> {
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
pub(crate) fn bytes_response(bytes: bytes::Bytes, range: Option<&str>) -> Response {
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
