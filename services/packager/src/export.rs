//! `archive-FROM-DUR.mp4` (and `tracks-…/archive-FROM-DUR.mp4`): a range of
//! the tape as one progressive MP4, `moov` first.
//!
//! The file is laid out ([`dvr_media::mp4::Layout`]) from the segments'
//! sample tables before a byte of media is read: so the answer has an exact
//! `Content-Length`, `Accept-Ranges: bytes`, and a `Range` is mapped onto
//! the segments it touches (a `bytes=-1000` of an hour reads one segment).
//! The tables come from the `.smp` object the recorder stores beside each
//! chunk (one read per chunk, then kept decoded in a 32 MiB cache); a segment without one (a chunk written
//! before `.smp` existed, a segment still in the live log) has its table
//! computed from its bytes, which reads it once more.
//!
//! **Time.** FROM snaps back to the keyframe at or before it (or forward to
//! the tape's first keyframe when FROM is a little before the tape); the
//! end cuts at FROM + DUR. With `?precise=true` the samples are the same but
//! one edit per track (the same instant and length on all of them) starts
//! the presentation at FROM and ends it at FROM + DUR, to the frame, with no
//! re-encoding ([`Layout::precise`]). A range that crosses a gap in the recording is
//! refused with a 400 naming it, unless `ignore_gaps=true`: then the parts
//! are joined, each run placed right after the one before, so the file has
//! no hole (its duration is the recorded time). Durations come from the
//! media timestamps, never the clock.
//!
//! **Bounds.** A range is at most [`MAX_MP4_SECS`] (and the packager's
//! `max_range_secs`): the `moov` is O(samples), about 30 bytes a sample
//! while it is built (tables, sample lists, the box), some 20 MB for three
//! hours of 25 fps video with 48 kHz audio. The body is streamed segment by
//! segment: memory holds the layout, one converted segment, and at most
//! [`KEPT_BUFFERS`] data buffers of segments already sent, kept to convert
//! the next ones into ([`Recycler`]).
//!
//! **The same bytes everywhere.** The ETag is a hash of the `ftyp` and
//! `moov` (which list every sample's size and time) and the file's length:
//! the tape decides it, not the clock or the replica.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use dvr_common::Ticks;
use dvr_media::fmp4::{Fragments, TapeClock};
use dvr_media::mp4::{
    decode_chunk_tables, first_video, keyframes, Layout, Mp4Error, Pace, SampleTable,
    SegmentTables, Span, MAX_STILLS,
};
use dvr_media::{leaves_gap, SegmentMeta};
use futures_util::stream;

use crate::bounded::Bounded;
use crate::cmaf::{run_starts, timing};
use crate::error::PackagerError;
use crate::http::{self, content_etag, RangeAsk};
use crate::query::Timelapse;
use crate::service::{set, Asked, Packager};
use crate::url::RangeEnd;
use dvr_archive::tape::{Location, StreamTape, TapeSegment};

/// The longest range one MP4 export may cover, in seconds (3 hours).
pub(crate) const MAX_MP4_SECS: u32 = 3 * 3600;

/// `Content-Type` of an export.
const MP4: &str = "video/mp4";

impl Packager {
    /// `archive-FROM-DUR.mp4`: see the module doc.
    pub(crate) async fn mp4_export(
        &self,
        tape: StreamTape,
        asked: &Asked<'_>,
        from: i64,
        duration: u32,
    ) -> Result<Response, PackagerError> {
        if asked.query.meta {
            return Err(PackagerError::BadRequest(
                "meta=true: a download carries no metadata; POST save-mp4-FROM-DUR?file=NAME&meta=true (admin) stores the body in a saved export".into(),
            ));
        }
        if duration == 0 || duration > MAX_MP4_SECS {
            return Err(PackagerError::BadRequest(format!(
                "an MP4 export lasts 1 to {MAX_MP4_SECS} s, not {duration} s"
            )));
        }
        let (from, to) = self.range(from, RangeEnd::Duration(duration), asked.now)?;
        let segments = self.recorded(&tape, from, to).await?;
        let metas: Vec<SegmentMeta> = segments.iter().map(|s| s.meta).collect();
        let (starts, joined) = placements(&tape, &metas, asked.query.ignore_gaps)?;
        let tables = self.load_tables(&tape, &segments).await;
        let at: Vec<SegmentTables<'_>> = tables
            .iter()
            .zip(&starts)
            .map(|(table, &tape_start)| SegmentTables { table, tape_start })
            .collect();
        let numbers = asked.playback.tracks.map(crate::url::TrackSet::numbers);
        let window = Ticks(from.0 * 90)..Ticks(to.0 * 90 - joined.0);
        let layout = match (asked.query.timelapse, asked.query.precise) {
            (Some(_), true) => {
                return Err(PackagerError::BadRequest(
                    "timelapse and precise=true: a timelapse shows keyframes only, so it cannot start to the frame; use one".into(),
                ))
            }
            (Some(pace), false) => timelapse(&tape, &at, numbers.as_deref(), window, pace)?,
            (None, precise) => Layout::tagged(
                &at,
                numbers.as_deref(),
                window,
                precise,
                &asked.context.mp4_tags,
            ),
        };
        let layout = layout.map_err(|e| match e {
            Mp4Error::Empty => crate::service::nothing_between(&tape, from, to),
            Mp4Error::NoSuchTrack(n) => PackagerError::NothingRecorded(format!(
                "stream {} has no track {n} that MP4 can carry between {} and {}",
                tape.name(),
                from.as_secs(),
                to.as_secs()
            )),
        })?;
        drop(at);
        drop(tables);
        Ok(mp4_response(tape, segments, layout, numbers, asked))
    }
}

/// The MP4 of `layout` over `segments`: the whole file or the asked
/// `Range`, with its exact length and an ETag of its `moov`.
pub(crate) fn mp4_response(
    tape: StreamTape,
    segments: Vec<TapeSegment>,
    layout: Layout,
    numbers: Option<Vec<usize>>,
    asked: &Asked<'_>,
) -> Response {
    let len = layout.len();
    let etag = {
        let mut tagged = layout.head().to_vec();
        tagged.extend_from_slice(&len.to_be_bytes());
        content_etag(&tagged)
    };
    let layout = Arc::new(layout);
    let mut response = match http::range_ask(asked.context.range.as_deref(), len) {
        RangeAsk::Whole => {
            let mut r = body(tape, segments, Arc::clone(&layout), numbers, 0..len);
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            r
        }
        RangeAsk::Part(start, end) => {
            let mut r = body(tape, segments, Arc::clone(&layout), numbers, start..end);
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
            http::partial(r, start, end, len)
        }
        RangeAsk::Unsatisfiable => return http::unsatisfiable(len),
    };
    set(&mut response, header::CONTENT_TYPE, MP4);
    set(&mut response, header::ACCEPT_RANGES, "bytes");
    if let Ok(v) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// `?timelapse[=N]`: the keyframes of the first video track (of the
/// selection) presented in `window`, one in every `k` when there are more
/// than [`MAX_STILLS`], shown at recorded pace or fitted into N seconds.
fn timelapse(
    tape: &StreamTape,
    at: &[SegmentTables<'_>],
    numbers: Option<&[usize]>,
    window: std::ops::Range<Ticks>,
    pace: Timelapse,
) -> Result<Result<Layout, Mp4Error>, PackagerError> {
    let Some(video) = first_video(at, numbers) else {
        return Err(PackagerError::NothingRecorded(format!(
            "a timelapse shows keyframes of a video track: {} has none in this range",
            tape.name()
        )));
    };
    let end = window.end;
    let mut frames = keyframes(at, video, window);
    let step = frames.len().div_ceil(MAX_STILLS).max(1);
    if step > 1 {
        frames = frames.into_iter().step_by(step).collect();
    }
    let pace = match pace {
        Timelapse::Recorded => Pace::Recorded(end),
        Timelapse::Fit(n) => Pace::Fit(Ticks(i64::from(n) * dvr_common::time::TICKS_PER_SEC)),
    };
    Ok(Layout::stills(at, video, &frames, pace))
}

/// Where each segment starts on the export's timeline (tape ticks) and how
/// much recording-gap time was closed up: each run of tape on its own
/// clock (anchored at its first segment, as the segmenter anchors it); a
/// gap is refused, or with `ignore_gaps` closed by moving what follows it
/// back.
fn placements(
    tape: &StreamTape,
    metas: &[SegmentMeta],
    ignore_gaps: bool,
) -> Result<(Vec<Ticks>, Ticks), PackagerError> {
    let runs = run_starts(metas);
    let mut out = Vec::with_capacity(metas.len());
    let mut clock = TapeClock::of_run(&metas[0]);
    let mut closed = 0i64;
    let mut previous_end: Option<i64> = None;
    for (i, meta) in metas.iter().enumerate() {
        if i > 0 && runs.contains(&i) {
            let before = &metas[i - 1];
            if leaves_gap(before.utc_end(), meta.utc_start) {
                if !ignore_gaps {
                    return Err(PackagerError::BadRequest(format!(
                        "the recording of {} has a gap from {} to {} inside the range: export the parts apart, or add ignore_gaps=true to join them",
                        tape.name(),
                        before.utc_end().as_secs(),
                        meta.utc_start.as_secs()
                    )));
                }
                let new_clock = TapeClock::of_run(meta);
                let start = new_clock.tape_time(meta.pts_start).0 - closed;
                if let Some(end) = previous_end {
                    closed += (start - end).max(0);
                }
                clock = new_clock;
            } else {
                clock = TapeClock::of_run(meta);
            }
        }
        let start = clock.tape_time(meta.pts_start).0 - closed;
        previous_end = Some(start + meta.duration.0);
        out.push(Ticks(start));
    }
    Ok((out, Ticks(closed)))
}

/// At most this many bytes of `.smp` objects are kept decoded
/// ([`TableCache`]).
const TABLE_CACHE_BYTES: usize = 32 << 20;

/// Chunks' decoded sample tables by chunk key, weighed by their `.smp`
/// bytes, so a warm export (the same programme asked again, a player's
/// next `Range`) reads no `.smp`. A chunk's objects are never rewritten
/// with other bytes (keys are deterministic and a replay writes the same
/// bytes), so entries need no invalidation; a chunk retention deleted is
/// never planned again.
pub(crate) type TableCache = Bounded<String, Arc<HashMap<u64, SampleTable>>, TABLE_CACHE_BYTES>;

impl Packager {
    /// The decoded `.smp` of chunk `key`: cached, read, or empty (none
    /// stored, or unreadable: logged, and the tables are computed).
    async fn chunk_tables(&self, tape: &StreamTape, key: &str) -> Arc<HashMap<u64, SampleTable>> {
        if let Some(hit) = self.lock_tables().get(key) {
            return hit;
        }
        let bytes = match tape.sample_tables(key).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Arc::default(),
            Err(e) => {
                tracing::warn!(stream = tape.name(), key = %key, error = %e, "export: sample tables not read, computing them");
                return Arc::default();
            }
        };
        let tables = match decode_chunk_tables(&bytes) {
            Ok(tables) => Arc::new(tables.into_iter().collect::<HashMap<_, _>>()),
            Err(e) => {
                tracing::warn!(stream = tape.name(), key = %key, error = %e, "export: unreadable sample tables, computing them");
                return Arc::default();
            }
        };
        self.lock_tables()
            .insert(key.to_owned(), Arc::clone(&tables), bytes.len());
        tables
    }

    fn lock_tables(&self) -> std::sync::MutexGuard<'_, TableCache> {
        self.tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Each segment's sample table: from its chunk's `.smp` (read once per
    /// chunk, then cached), else computed from its bytes. A segment whose
    /// table cannot be had (lost, no program) gets an empty one and is
    /// left out of the file, with a log line: the tracks' timing closes
    /// over it.
    pub(crate) async fn load_tables(
        &self,
        tape: &StreamTape,
        segments: &[TapeSegment],
    ) -> Vec<SampleTable> {
        let mut out = Vec::with_capacity(segments.len());
        let mut chunk: Option<(&str, Arc<HashMap<u64, SampleTable>>)> = None;
        for segment in segments {
            let meta = &segment.meta;
            if let Location::Archive { key, .. } = &segment.location {
                if chunk.as_ref().map(|c| c.0) != Some(key.as_str()) {
                    chunk = Some((key.as_str(), self.chunk_tables(tape, key).await));
                }
                if let Some(table) = chunk.as_ref().and_then(|c| c.1.get(&meta.seq)) {
                    out.push(table.clone());
                    continue;
                }
            }
            let computed = match tape.read(segment).await {
                Ok(bytes) => SampleTable::from_ts(&bytes, meta.pts_start, meta.duration)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            out.push(computed.unwrap_or_else(|e| {
                tracing::warn!(stream = tape.name(), seq = meta.seq, error = %e, "export: a segment left out");
                SampleTable::default()
            }));
        }
        out
    }
}

/// The body of bytes `range` of the export: the head's part, then each
/// touched segment read and converted in turn (one in memory at a time).
/// A segment whose converted bytes no longer match its table ends the body
/// with an error: its length was promised.
pub(crate) fn body(
    tape: StreamTape,
    segments: Vec<TapeSegment>,
    layout: Arc<Layout>,
    tracks: Option<Vec<usize>>,
    range: std::ops::Range<u64>,
) -> Response {
    struct State {
        tape: StreamTape,
        segments: Vec<TapeSegment>,
        layout: Arc<Layout>,
        tracks: Option<Vec<usize>>,
        spans: std::vec::IntoIter<Span>,
        converted: Option<(usize, Converted)>,
        recycler: Recycler,
    }
    let spans = layout.spans(range).into_iter();
    let state = State {
        tape,
        segments,
        layout,
        tracks,
        spans,
        converted: None,
        recycler: Recycler::default(),
    };
    let stream = stream::unfold(state, |mut st| async move {
        let span = st.spans.next()?;
        let bytes = match span {
            Span::Head(r) => Ok(Bytes::copy_from_slice(&st.layout.head()[r])),
            Span::Media {
                segment,
                track,
                data,
            } => {
                media(
                    &mut st.converted,
                    &mut st.recycler,
                    &st.tape,
                    &st.segments,
                    st.tracks.as_deref(),
                    segment,
                    track,
                    data,
                )
                .await
            }
        };
        Some((bytes.map_err(std::io::Error::other), st))
    });
    Response::new(Body::from_stream(stream))
}

/// A segment's converted samples: each track's number and data.
type Converted = Vec<(usize, Bytes)>;

/// At most this many data buffers of sent segments are kept for reuse,
/// waiting for their last slice to be written or ready to be written into
/// (each, for 5 Mbps video in 2 s segments, about 1.3 MB).
const KEPT_BUFFERS: usize = 4;

/// The data buffers of converted segments, written again for the next
/// ones: a buffer no slice of which is left (the connection has sent
/// them) is emptied and handed to [`Fragments::from_ts_reusing`], so an
/// export maps its buffers' memory once rather than faulting a fresh
/// buffer in for every segment, which cost as much CPU as converting.
#[derive(Default)]
struct Recycler {
    /// Buffers of segments handed back, some perhaps still being sent.
    sent: Vec<Bytes>,
    /// Emptied buffers, largest last.
    spare: Vec<Vec<u8>>,
}

impl Recycler {
    /// Takes back a segment's buffers once the body has moved past it.
    fn hand_back(&mut self, converted: Converted) {
        self.sent
            .extend(converted.into_iter().map(|(_, data)| data));
        let excess = self.sent.len().saturating_sub(KEPT_BUFFERS);
        self.sent.drain(..excess);
    }

    /// The buffers nothing refers to any more, emptied, largest last (the
    /// video track, first in the program, takes the first).
    fn spare(&mut self) -> &mut Vec<Vec<u8>> {
        let mut waiting = Vec::new();
        for data in self.sent.drain(..) {
            match data.try_into_mut() {
                Ok(mut unique) => {
                    unique.clear();
                    self.spare.push(unique.into());
                }
                Err(shared) => waiting.push(shared),
            }
        }
        self.sent = waiting;
        self.spare.sort_by_key(Vec::capacity);
        let excess = self.spare.len().saturating_sub(KEPT_BUFFERS);
        self.spare.drain(..excess);
        &mut self.spare
    }
}

/// Bytes `data` of `track`'s converted samples in `segments[segment]`,
/// converting the segment unless it is the one in `converted`; a slice of
/// the converted bytes, not a copy.
async fn media(
    converted: &mut Option<(usize, Converted)>,
    recycler: &mut Recycler,
    tape: &StreamTape,
    segments: &[TapeSegment],
    tracks: Option<&[usize]>,
    segment: usize,
    track: usize,
    data: std::ops::Range<u64>,
) -> Result<Bytes, String> {
    if converted.as_ref().map(|c| c.0) != Some(segment) {
        if let Some((_, previous)) = converted.take() {
            recycler.hand_back(previous); // one segment in memory at a time
        }
        let stored = &segments[segment];
        let ts = tape.read(stored).await.map_err(|e| e.to_string())?;
        let fragments =
            Fragments::from_ts_reusing(&ts, &timing(&stored.meta), tracks, recycler.spare())
                .map_err(|e| format!("segment {}: {e}", stored.meta.seq))?;
        *converted = Some((segment, fragments.into_data()));
    }
    let tracks = &converted.as_ref().map(|c| &c.1).ok_or("no segment")?;
    let bytes = tracks
        .iter()
        .find(|(number, _)| *number == track)
        .map(|(_, bytes)| bytes.clone())
        .unwrap_or_default();
    let (start, end) = (data.start as usize, data.end as usize);
    if start > end || end > bytes.len() {
        return Err(format!(
            "segment {} track {track}: {} bytes converted, the sample table says at least {end}",
            segments[segment].meta.seq,
            bytes.len()
        ));
    }
    Ok(bytes.slice(start..end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_is_reused_once_no_slice_of_it_is_left() {
        let mut recycler = Recycler::default();
        let mut data = vec![7u8; 500];
        data.reserve_exact(500);
        let video = Bytes::from(data);
        let being_sent = video.slice(100..200);
        recycler.hand_back(vec![(1, video)]);
        assert!(recycler.spare().is_empty(), "a slice is still being sent");
        drop(being_sent);
        let spare = recycler.spare();
        assert_eq!(spare.len(), 1);
        assert!(spare[0].is_empty() && spare[0].capacity() >= 1000);
    }

    #[test]
    fn at_most_a_few_buffers_are_kept() {
        let mut recycler = Recycler::default();
        for _ in 0..3 {
            let converted = (0..KEPT_BUFFERS)
                .map(|n| (n, Bytes::from(vec![0u8; 64 * (n + 1)])))
                .collect();
            recycler.hand_back(converted);
        }
        let spare = recycler.spare();
        assert_eq!(spare.len(), KEPT_BUFFERS);
        assert!(spare.windows(2).all(|w| w[0].capacity() <= w[1].capacity()));
    }
}
