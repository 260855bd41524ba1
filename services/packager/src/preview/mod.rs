//! Pictures of the tape: `…/YYYY/MM/DD/HH/MM/SS-preview.mp4`,
//! `…-preview.jpg`, the live `preview.jpg`, and `…/SS.jpg`, which
//! redirects to the `-preview.jpg` of the nearest keyframe.
//!
//! **Which picture.** A preview of second `SS` is the last keyframe of the
//! first video track (of a `tracks-…/` selection) presented before the end
//! of that second, looked for in the segments overlapping it and up to one
//! segment before (a segment starts with a keyframe, so that one is
//! enough); a second where nothing is recorded is a 404 saying so. So the
//! seconds `recording_status.json?request=brief_thumbnails` lists (each
//! keyframe's second, rounded down) name their keyframes, and `SS.jpg`
//! redirects to the second of the keyframe nearest `SS` (within one
//! segment; further is a 404). The live `preview.jpg` is the newest
//! keyframe of the live log.
//!
//! **MP4** needs no decoding: the keyframe's converted bytes alone, laid
//! out by [`Layout::stills`] from the sample tables (the export's
//! machinery: exact `Content-Length`, `Range`, ETag).
//!
//! **JPEG** needs a decoder that handles what broadcast sends (H.264 High
//! and H.265, interlaced included), which pure-Rust decoders do not, so a
//! `dvr-preview-decoder` process (libavcodec) decodes the one-frame MP4
//! and answers one JPEG ([`decoder`]). Decoding costs CPU that playback
//! needs: at most `workers` decoders run at once ([`PreviewConfig`]),
//! each long-lived, with one thread, kept by a thread of the pool that
//! runs under `SCHED_IDLE`, so the decodes run on CPU time nothing else
//! wants and playback's threads preempt them at once; at most `queue`
//! requests wait for one, and past that the answer is a `503` with
//! `Retry-After`, given before any other work while the pool is full; a
//! picture not made within `timeout` kills its decoder (`504`). Where no
//! decoder runs at the configured path the answer is a `415` saying so. Pictures are kept by (stream, keyframe
//! time, width) in a bounded memory cache, so a picture asked again (a
//! timeline's thumbnails, a live page's refreshes) costs no decode.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use dvr_common::{Ticks, UtcMs, TICKS_PER_MS};
use dvr_media::mp4::{first_video, keyframes, Keyframe, Layout, Pace, SampleTable, SegmentTables};

use self::decoder::internal;
use crate::bounded::Bounded;
use crate::config::PreviewConfig;
use crate::error::PackagerError;
use crate::export::mp4_response;
use crate::playlist::tape_start;
use crate::service::{set, Asked, Packager, MAX_SEGMENT_MS};
use crate::url::Picture;
use dvr_archive::tape::{StreamTape, TapeSegment};

mod decoder;

/// The most bytes of one-frame MP4 handed to the decoder (one keyframe).
const MAX_FRAME_BYTES: usize = 32 << 20;
/// Bytes of JPEG kept in memory; past it the cache is emptied.
const JPEG_CACHE_BYTES: usize = 32 << 20;

/// The JPEG decoder pool and the pictures made.
#[derive(Debug)]
pub(crate) struct Previews {
    decoder: decoder::Decoder,
    cache: std::sync::Mutex<JpegCache>,
}

/// Made JPEGs by (stream, keyframe tape time, width), at most
/// [`JPEG_CACHE_BYTES`].
type JpegCache = Bounded<(String, i64, Option<u32>), Bytes, JPEG_CACHE_BYTES>;

/// A keyframe found on the tape, with what it takes to lay it out.
struct Found {
    segments: Vec<TapeSegment>,
    tables: Vec<SampleTable>,
    video: usize,
    frame: Keyframe,
}

/// Each segment's table placed at its own tape start (as fMP4 pieces are).
pub(crate) fn placed<'a>(
    tables: &'a [SampleTable],
    segments: &[TapeSegment],
) -> Vec<SegmentTables<'a>> {
    tables
        .iter()
        .zip(segments)
        .map(|(table, s)| SegmentTables {
            table,
            tape_start: Ticks(tape_start(&s.meta)),
        })
        .collect()
}

impl Found {
    /// The one-frame MP4 of the keyframe.
    fn layout(&self) -> Result<Layout, PackagerError> {
        Layout::stills(
            &placed(&self.tables, &self.segments),
            self.video,
            &[self.frame],
            Pace::Fit(self.frame.duration.max(Ticks(1))),
        )
        .map_err(|e| PackagerError::NothingRecorded(e.to_string()))
    }

    /// UTC of the keyframe, in ms.
    fn utc(&self) -> UtcMs {
        UtcMs(self.frame.presentation.0.div_euclid(TICKS_PER_MS))
    }
}

impl Previews {
    pub(crate) fn new(config: &PreviewConfig) -> Self {
        Self {
            decoder: decoder::Decoder::new(config),
            cache: std::sync::Mutex::default(),
        }
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, JpegCache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A `503` at once, before any work, while every worker and queue
    /// place is taken: a burst of refusals then costs what parsing the
    /// URL costs (a picture already cached is refused too).
    fn refuse_when_full(&self) -> Result<(), PackagerError> {
        self.decoder.refuse_when_full()
    }
}

impl Packager {
    /// `…/SS-preview.mp4` and `…/SS-preview.jpg`.
    pub(crate) async fn preview(
        &self,
        tape: StreamTape,
        asked: &Asked<'_>,
        second: i64,
        picture: Picture,
    ) -> Result<Response, PackagerError> {
        if picture == Picture::Jpeg {
            self.previews.refuse_when_full()?;
        }
        let end = UtcMs::from_secs(second).saturating_add_ms(1000);
        let found = self
            .keyframe_near(&tape, asked, end, Near::Before)
            .await?
            .ok_or_else(|| {
                PackagerError::NothingRecorded(format!(
                    "no picture recorded on {} at {second}: that second is outside the tape",
                    tape.name()
                ))
            })?;
        self.picture(tape, asked, found, picture).await
    }

    /// `preview.jpg`: the newest keyframe.
    pub(crate) async fn live_preview(
        &self,
        tape: StreamTape,
        asked: &Asked<'_>,
    ) -> Result<Response, PackagerError> {
        self.previews.refuse_when_full()?;
        let segments = tape.newest(2).await?;
        let numbers = asked.playback.tracks.map(crate::url::TrackSet::numbers);
        let found = self
            .find(&tape, segments, numbers.as_deref(), |frames| {
                frames.last().copied()
            })
            .await?
            .ok_or_else(|| {
                PackagerError::NothingRecorded(format!(
                    "{} has no live picture: nothing recorded in its live log",
                    tape.name()
                ))
            })?;
        let mut response = self.picture(tape, asked, found, Picture::Jpeg).await?;
        set(&mut response, header::CACHE_CONTROL, "no-cache");
        Ok(response)
    }

    /// `…/SS.jpg`: a redirect to the `-preview.jpg` of the keyframe
    /// nearest `second`, the query carried.
    pub(crate) async fn thumbnail(
        &self,
        tape: StreamTape,
        asked: &Asked<'_>,
        second: i64,
    ) -> Result<Response, PackagerError> {
        let at = UtcMs::from_secs(second);
        let found = self
            .keyframe_near(&tape, asked, at, Near::Nearest)
            .await?
            .ok_or_else(|| {
                PackagerError::NothingRecorded(format!(
                    "no picture recorded on {} near {second}: that time is outside the tape",
                    tape.name()
                ))
            })?;
        let civil = dvr_common::CivilTime::from_utc(found.utc());
        let prefix = asked
            .path
            .rsplitn(7, '/')
            .nth(6)
            .unwrap_or_default()
            .to_owned();
        let mut location = format!(
            "{prefix}/{:04}/{:02}/{:02}/{:02}/{:02}/{:02}-preview.jpg",
            civil.year, civil.month, civil.day, civil.hour, civil.minute, civil.second
        );
        if let Some(q) = asked.raw_query.filter(|q| !q.is_empty()) {
            location.push('?');
            location.push_str(q);
        }
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::FOUND;
        if let Ok(v) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, v);
        }
        Ok(response)
    }

    /// The keyframe before `at` (or nearest it), in the segments within
    /// one segment of it; `None` when there is none.
    async fn keyframe_near(
        &self,
        tape: &StreamTape,
        asked: &Asked<'_>,
        at: UtcMs,
        near: Near,
    ) -> Result<Option<Found>, PackagerError> {
        if at > asked.now.saturating_add_ms(1000) {
            return Err(PackagerError::BadRequest(format!(
                "{} is in the future (now is {})",
                at.as_secs() - i64::from(near == Near::Before),
                asked.now.as_secs()
            )));
        }
        let from = at.saturating_add_ms(-MAX_SEGMENT_MS - 1000);
        let to = match near {
            Near::Before => at,
            Near::Nearest => at.saturating_add_ms(MAX_SEGMENT_MS),
        };
        let segments = tape.segments_between(from, to).await?;
        // The asked second itself must be recorded for a preview: a
        // keyframe from before a gap is not a picture of it.
        if near == Near::Before
            && !segments
                .iter()
                .any(|s| s.meta.utc_end() > at.saturating_add_ms(-1000) && s.meta.utc_start < at)
        {
            return Ok(None);
        }
        let numbers = asked.playback.tracks.map(crate::url::TrackSet::numbers);
        let target = at.0 * TICKS_PER_MS;
        let reach = MAX_SEGMENT_MS * TICKS_PER_MS;
        self.find(tape, segments, numbers.as_deref(), |frames| match near {
            Near::Before => frames
                .iter()
                .rev()
                .find(|k| k.presentation.0 < target)
                .copied(),
            Near::Nearest => frames
                .iter()
                .min_by_key(|k| (k.presentation.0 - target).abs())
                .filter(|k| (k.presentation.0 - target).abs() <= reach)
                .copied(),
        })
        .await
    }

    /// The keyframe `pick` chooses among those of the first video track
    /// (of `numbers`) in `segments`, with the segment it lies in; a 404
    /// naming the selection when the segments have no video track in it.
    async fn find(
        &self,
        tape: &StreamTape,
        segments: Vec<TapeSegment>,
        numbers: Option<&[usize]>,
        pick: impl FnOnce(&[Keyframe]) -> Option<Keyframe>,
    ) -> Result<Option<Found>, PackagerError> {
        if segments.is_empty() {
            return Ok(None);
        }
        let tables = self.load_tables(tape, &segments).await;
        let at = placed(&tables, &segments);
        let Some(video) = first_video(&at, numbers) else {
            let which = numbers.map_or(String::new(), |n| format!(" among tracks {n:?}"));
            return Err(PackagerError::NothingRecorded(format!(
                "{} has no video track{which} to take a picture of at {}",
                tape.name(),
                segments[0].meta.utc_start.as_secs()
            )));
        };
        let Some(frame) = pick(&keyframes(&at, video, Ticks(i64::MIN)..Ticks(i64::MAX))) else {
            return Ok(None);
        };
        drop(at);
        // Keep only its segment: the file reads nothing else.
        let (Some(table), Some(segment)) = (
            tables.into_iter().nth(frame.segment),
            segments.into_iter().nth(frame.segment),
        ) else {
            return Ok(None);
        };
        Ok(Some(Found {
            segments: vec![segment],
            tables: vec![table],
            video,
            frame: Keyframe {
                segment: 0,
                ..frame
            },
        }))
    }

    /// The keyframe as a one-frame MP4, or decoded to JPEG (cached).
    async fn picture(
        &self,
        tape: StreamTape,
        asked: &Asked<'_>,
        found: Found,
        picture: Picture,
    ) -> Result<Response, PackagerError> {
        let layout = found.layout()?;
        let numbers = asked.playback.tracks.map(crate::url::TrackSet::numbers);
        if picture == Picture::Mp4 {
            return Ok(mp4_response(tape, found.segments, layout, numbers, asked));
        }
        let width = asked.query.width;
        let key = (tape.name().to_owned(), found.frame.presentation.0, width);
        let cached = self.previews.lock_cache().get(&key);
        let jpeg = match cached {
            Some(jpeg) => jpeg,
            None => {
                let len = layout.len();
                if len > MAX_FRAME_BYTES as u64 {
                    return Err(PackagerError::Unprocessable(format!(
                        "the keyframe is {len} bytes, more than a preview decodes"
                    )));
                }
                let file =
                    crate::export::body(tape, found.segments, Arc::new(layout), numbers, 0..len);
                let mp4 = axum::body::to_bytes(file.into_body(), MAX_FRAME_BYTES)
                    .await
                    .map_err(|e| internal(format!("the keyframe could not be read: {e}")))?;
                let jpeg = self.previews.decoder.jpeg(mp4, width).await?;
                let weight = jpeg.len();
                self.previews.lock_cache().insert(key, jpeg.clone(), weight);
                jpeg
            }
        };
        let mut response = Response::new(Body::from(jpeg));
        set(&mut response, header::CONTENT_TYPE, "image/jpeg");
        Ok(response)
    }
}

/// Which keyframe [`Packager::keyframe_near`] looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Near {
    /// The last presented before the instant.
    Before,
    /// The nearest, either side, within one segment.
    Nearest,
}
