//! fMP4 (CMAF) pieces made from the stored TS on request, and what CMAF
//! HLS playlists and DASH manifests need to name them.
//!
//! The archive keeps one copy of a recording, as TS; every fMP4 answer is
//! written from it by [`dvr_media::fmp4`], so the URLs carry everything
//! needed to find the bytes and any replica answers them without state:
//!
//! - `[tracks-…/]frag-T.m4s`: the stored segment that starts at tape time
//!   `T` (its UTC start in 90 kHz ticks since the epoch, the DASH `$Time$`)
//!   as one media segment; `frag-T-MS.m4s`: the run of consecutive segments
//!   from there lasting `MS` ms (a coalesced HLS entry), their media
//!   segments one after the other.
//! - `[tracks-…/]init-T-ID.mp4`: the init segment of the segment at `T`,
//!   named by its [`InitId`] (a hash of its bytes). The time says where to
//!   read it; the id says which bytes were meant, so a URL whose segment
//!   now gives another init is a 404, never other bytes.
//!
//! A `tracks-N/` directory naming one track gives that track alone (a DASH
//! Representation); otherwise the pieces hold every picked (or every
//! writable) track together in one `moov`/`moof` (muxed CMAF HLS).
//!
//! **Time.** Each segment is put on the tape's clock by its own index
//! record: `tfdt` of its first picture is its UTC start × 90
//! ([`timing`]), exactly the `T` of its URL and the `@t` of its DASH
//! `SegmentTimeline` entry. The run's anchor is not needed, so a segment
//! resolves alone; the price is that a segment's end and the next one's
//! start can differ by less than a millisecond (90 ticks) where the index
//! rounded the UTC start, which players absorb.
//!
//! Made pieces are kept in a bounded cache ([`BuiltCache`]): a live
//! stream's viewers all ask for its newest few segments.
//!
//! Manifests read one segment per continuous run of tape (the first) for
//! the init ids, codecs and tracks ([`SegmentView`]), from a small cache,
//! and at most [`MAX_RUNS`] per request.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{header, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use dvr_common::{HasErrorKind, UtcMs, TICKS_PER_MS};
use dvr_media::codec::{FrameRate, TrackKind};
use dvr_media::fmp4::{Fmp4Error, Fragments, InitId, SegmentTiming, TapeClock};
use dvr_media::SegmentMeta;

use crate::bounded::Bounded;
use crate::error::PackagerError;
use crate::playlist::{starts_new_run, tape_start, RunInit};
use crate::service::{set, Asked, Packager};
use crate::transport::{bytes_response, run_etag, run_from, IMMUTABLE, MAX_RUN_MS};
use crate::url::TrackSet;
use dvr_archive::tape::{StreamTape, TapeSegment};

/// `Content-Type` of init segments.
const MP4: &str = "video/mp4";
/// `Content-Type` of media segments.
const ISO_SEGMENT: &str = "video/iso.segment";
/// Views remembered (a few hundred bytes each); emptied when full.
const VIEW_CACHE_ENTRIES: usize = 4096;
/// The most continuous runs of tape one fMP4 playlist or MPD lists: each
/// costs a segment read the first time.
pub(crate) const MAX_RUNS: usize = 128;

/// How many segments of a run a manifest tries for its view.
const RUN_TRIES: usize = 3;

/// A continuous run of a manifest and what it holds.
#[derive(Clone, Debug)]
pub(crate) struct RunView {
    /// Where the run starts in the listed segments.
    pub(crate) start: usize,
    /// The segment the view was read from (init URLs name it).
    pub(crate) read: SegmentMeta,
    pub(crate) view: Arc<SegmentView>,
}

impl RunView {
    /// The run's init segment for the whole selection.
    pub(crate) fn init(&self) -> RunInit {
        RunInit {
            at: tape_start(&self.read),
            id: self.view.init,
        }
    }
}

/// Bytes of made fMP4 pieces kept: every viewer of a live stream asks for
/// the same few newest segments, and a range's viewers for the same ones.
const BUILT_BYTES: usize = 64 << 20;

/// The fMP4 pieces of one stored segment for one track selection.
#[derive(Debug)]
pub(crate) struct Built {
    init_id: InitId,
    init: Bytes,
    media: Bytes,
}

/// Made pieces by stream, segment and track selection, at most
/// [`BUILT_BYTES`] ([`Bounded`]).
pub(crate) type BuiltCache = Bounded<(String, u64, Option<TrackSet>), Arc<Built>, BUILT_BYTES>;

impl Built {
    /// Bytes it holds.
    fn weight(&self) -> usize {
        self.init.len() + self.media.len()
    }
}

/// The cache of [`SegmentView`]s by stream, segment and track selection.
pub(crate) type Views = HashMap<(String, u64, Option<TrackSet>), Arc<SegmentView>>;

/// One track of a segment as a manifest describes it.
#[derive(Clone, Debug)]
pub(crate) struct TrackView {
    /// Track number: 1-based, PMT order (the `tracks-N/` of its URLs).
    pub(crate) number: usize,
    pub(crate) kind: TrackKind,
    pub(crate) language: Option<String>,
    /// RFC 6381, from the stream's own parameter sets.
    pub(crate) codec_string: String,
    /// Its own init segment (the track alone).
    pub(crate) init: InitId,
    pub(crate) size: Option<(u32, u32)>,
    pub(crate) frame_rate: Option<FrameRate>,
    /// Sample rate and channels.
    pub(crate) audio: Option<(u32, u8)>,
    /// The DASH SAP type the segment starts with (0: not a sync sample).
    pub(crate) sap_type: u8,
    /// Bits per second of its samples in this segment.
    pub(crate) bandwidth: u64,
}

/// What one stored segment holds as fMP4, for a track selection.
#[derive(Clone, Debug)]
pub(crate) struct SegmentView {
    /// The writable tracks, in PMT order.
    pub(crate) tracks: Vec<TrackView>,
    /// The init segment of the selection as one piece (what `init-…mp4`
    /// names without a one-track `tracks-N/`, or with it).
    pub(crate) init: InitId,
}

/// The fMP4 timing of a stored segment: anchored on its own index record,
/// so its first picture's `tfdt` is its UTC start × 90.
pub(crate) fn timing(meta: &SegmentMeta) -> SegmentTiming {
    SegmentTiming {
        clock: TapeClock::new(meta.utc_start, meta.pts_start),
        seq: meta.seq,
        pts_start: meta.pts_start,
        duration: meta.duration,
    }
}

/// The one track a selection names, if it names exactly one.
fn single(selection: Option<TrackSet>) -> Option<usize> {
    selection
        .map(TrackSet::numbers)
        .filter(|numbers| numbers.len() == 1)
        .map(|numbers| numbers[0])
}

/// `meta`'s segment of `tape` read as fMP4 for `selection`.
fn fragments(
    tape: &StreamTape,
    meta: &SegmentMeta,
    stored: &[u8],
    selection: Option<TrackSet>,
) -> Result<Fragments, PackagerError> {
    let numbers = selection.map(TrackSet::numbers);
    Fragments::from_ts(stored, &timing(meta), numbers.as_deref())
        .map_err(|e| fmp4_error(tape, meta, &e))
}

/// A segment that cannot be written as asked, as an answer naming it.
fn fmp4_error(tape: &StreamTape, meta: &SegmentMeta, e: &Fmp4Error) -> PackagerError {
    let line = format!(
        "segment of {} at {}: {e}",
        tape.name(),
        meta.utc_start.as_secs()
    );
    match e.error_kind() {
        dvr_common::ErrorKind::NotFound => PackagerError::NothingRecorded(line),
        _ => PackagerError::Unprocessable(line),
    }
}

/// The init segment and media segment of the selection: the one track it
/// names, or every written track together.
fn pieces(
    tape: &StreamTape,
    meta: &SegmentMeta,
    fragments: &Fragments,
    selection: Option<TrackSet>,
) -> Result<(InitId, Bytes, Bytes), PackagerError> {
    if let Some(n) = single(selection) {
        return match fragments.track(n) {
            Some(track) => Ok((track.init_id, track.init(), track.media())),
            None => Err(left_out(tape, meta, fragments)),
        };
    }
    match fragments.combined() {
        Some((init, media)) => Ok((init.id, init.bytes, media)),
        None => Err(left_out(tape, meta, fragments)),
    }
}

/// Why nothing asked of a segment can be written.
fn left_out(tape: &StreamTape, meta: &SegmentMeta, fragments: &Fragments) -> PackagerError {
    match fragments.left_out().first() {
        Some(first) => fmp4_error(tape, meta, &first.reason),
        None => PackagerError::NothingRecorded(format!(
            "segment of {} at {}: no track to write as fMP4",
            tape.name(),
            meta.utc_start.as_secs()
        )),
    }
}

/// Bits per second of `samples` bytes over `duration` units of `timescale`.
fn bandwidth(bytes: usize, duration: u64, timescale: u32) -> u64 {
    let bits = (bytes as u128) * 8 * u128::from(timescale);
    u64::try_from(bits / u128::from(duration.max(1)))
        .unwrap_or(u64::MAX)
        .max(1)
}

/// The index of each run's first segment in `segments`: a run ends at a
/// gap or a discontinuity, as the playlist writer breaks them.
pub(crate) fn run_starts(segments: &[SegmentMeta]) -> Vec<usize> {
    (0..segments.len())
        .filter(|&i| i == 0 || starts_new_run(&segments[i - 1], &segments[i]))
        .collect()
}

impl Packager {
    /// What the segment `meta` holds as fMP4 for `selection`, from the
    /// cache or read once.
    pub(crate) async fn segment_view(
        &self,
        tape: &StreamTape,
        meta: &SegmentMeta,
        selection: Option<TrackSet>,
    ) -> Result<Arc<SegmentView>, PackagerError> {
        let key = (tape.name().to_owned(), meta.seq, selection);
        if let Some(hit) = self.lock_views().get(&key) {
            return Ok(Arc::clone(hit));
        }
        let stored = self.stored_bytes(tape, meta).await?;
        let fragments = fragments(tape, meta, &stored, selection)?;
        let (init, _, _) = pieces(tape, meta, &fragments, selection)?;
        let tracks = fragments
            .tracks()
            .iter()
            .map(|t| TrackView {
                number: t.number,
                kind: t.kind,
                language: t.language.clone(),
                codec_string: t.codec_string.clone(),
                init: t.init_id,
                size: t.video.as_ref().map(|v| (v.width, v.height)),
                frame_rate: t.video.as_ref().and_then(|v| v.frame_rate),
                audio: t.audio.as_ref().map(|a| (a.sample_rate, a.channels)),
                sap_type: t.sap_type,
                bandwidth: bandwidth(t.payload_bytes(), t.duration, t.timescale),
            })
            .collect();
        let view = Arc::new(SegmentView { tracks, init });
        let mut views = self.lock_views();
        if views.len() >= VIEW_CACHE_ENTRIES {
            views.clear();
        }
        views.insert(key, Arc::clone(&view));
        Ok(view)
    }

    /// The view of each continuous run of `segments`, read from its first
    /// segment or, when that one cannot be read (lost from the archive),
    /// from one of the next [`RUN_TRIES`]; at most [`MAX_RUNS`] runs.
    pub(crate) async fn run_views(
        &self,
        tape: &StreamTape,
        segments: &[SegmentMeta],
        selection: Option<TrackSet>,
    ) -> Result<Vec<RunView>, PackagerError> {
        let starts = run_starts(segments);
        if starts.len() > MAX_RUNS {
            return Err(PackagerError::BadRequest(format!(
                "the range crosses {} breaks in the tape of {}; fMP4 playlists and MPDs list at most {MAX_RUNS} continuous runs: ask for a shorter range",
                starts.len() - 1,
                tape.name()
            )));
        }
        let mut out = Vec::with_capacity(starts.len());
        for (i, &start) in starts.iter().enumerate() {
            let end = starts.get(i + 1).copied().unwrap_or(segments.len());
            let mut first_error = None;
            for (k, read) in segments[start..end].iter().take(RUN_TRIES).enumerate() {
                match self.segment_view(tape, read, selection).await {
                    Ok(view) => {
                        out.push(RunView {
                            start,
                            read: *read,
                            view,
                        });
                        first_error = None;
                        break;
                    }
                    // A lost segment: the next of the run says the same.
                    Err(e) if e.error_kind() == dvr_common::ErrorKind::NotFound => {
                        if k == 0 {
                            tracing::warn!(stream = tape.name(), seq = read.seq, error = %e, "fMP4 manifest: reading the next segment of the run");
                            first_error = Some(e);
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            if let Some(e) = first_error {
                return Err(e);
            }
        }
        Ok(out)
    }

    fn lock_views(&self) -> std::sync::MutexGuard<'_, Views> {
        self.views
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The fMP4 pieces of `segment` for `selection`, from the cache or
    /// made (and kept) now.
    async fn built(
        &self,
        tape: &StreamTape,
        segment: &TapeSegment,
        selection: Option<TrackSet>,
    ) -> Result<Arc<Built>, PackagerError> {
        let key = (tape.name().to_owned(), segment.meta.seq, selection);
        if let Some(hit) = self.lock_built().get(&key) {
            return Ok(hit);
        }
        let stored = tape.read(segment).await?;
        let fragments = fragments(tape, &segment.meta, &stored, selection)?;
        let (init_id, init, media) = pieces(tape, &segment.meta, &fragments, selection)?;
        let built = Arc::new(Built {
            init_id,
            init,
            media,
        });
        let weight = built.weight();
        self.lock_built().insert(key, Arc::clone(&built), weight);
        Ok(built)
    }

    fn lock_built(&self) -> std::sync::MutexGuard<'_, BuiltCache> {
        self.built
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The stored segments an fMP4 URL names: the one starting at tape time
    /// `at`, or the run from there lasting `duration_ms`.
    async fn segments_at(
        &self,
        tape: &StreamTape,
        at: i64,
        duration_ms: Option<u32>,
    ) -> Result<Vec<TapeSegment>, PackagerError> {
        let missing = || {
            PackagerError::NothingRecorded(format!(
                "no segment of {} starts at tape time {at}",
                tape.name()
            ))
        };
        let ms = i64::from(duration_ms.unwrap_or(0));
        if ms > MAX_RUN_MS {
            return Err(PackagerError::BadRequest(format!(
                "frag URL of {ms} ms: one URL spans at most {MAX_RUN_MS} ms"
            )));
        }
        // Tape times of segments are whole milliseconds.
        if at % TICKS_PER_MS != 0 {
            return Err(missing());
        }
        let start = UtcMs(at / TICKS_PER_MS);
        let candidates = tape
            .every_segment_between(start, start.saturating_add_ms(ms.max(1000) + 1000))
            .await?;
        let first = candidates
            .iter()
            .position(|s| s.meta.utc_start == start)
            .ok_or_else(missing)?;
        let run = match duration_ms {
            None => &candidates[first..=first],
            Some(ms) => run_from(&candidates, first, ms).ok_or_else(missing)?,
        };
        Ok(run.to_vec())
    }

    /// `[tracks-…/]frag-T[-MS].m4s`: media segments made from the stored
    /// segments the URL names.
    pub(crate) async fn fmp4_fragment(
        &self,
        tape: &StreamTape,
        asked: &Asked<'_>,
        at: i64,
        duration_ms: Option<u32>,
    ) -> Result<Response, PackagerError> {
        let run = self.segments_at(tape, at, duration_ms).await?;
        let selection = asked.playback.tracks;
        let mut media: Vec<Bytes> = Vec::with_capacity(run.len());
        for segment in &run {
            media.push(self.built(tape, segment, selection).await?.media.clone());
        }
        let body = match <[Bytes; 1]>::try_from(media) {
            Ok([one]) => one,
            Err(many) => Bytes::from(many.concat()),
        };
        let mut response = bytes_response(body, asked.context.range.as_deref());
        set(&mut response, header::CONTENT_TYPE, ISO_SEGMENT);
        set(&mut response, header::CACHE_CONTROL, IMMUTABLE);
        if let Ok(v) = HeaderValue::from_str(&run_etag(asked.path, &run)) {
            response.headers_mut().insert(header::ETAG, v);
        }
        Ok(response)
    }

    /// `[tracks-…/]init-T-ID.mp4`: the init segment of the segment at `T`,
    /// if it is the one named `ID`.
    pub(crate) async fn fmp4_init(
        &self,
        tape: &StreamTape,
        asked: &Asked<'_>,
        at: i64,
        id: [u8; 8],
    ) -> Result<Response, PackagerError> {
        let run = self.segments_at(tape, at, None).await?;
        let segment = &run[0];
        let selection = asked.playback.tracks;
        let built = self.built(tape, segment, selection).await?;
        let (found, init) = (built.init_id, built.init.clone());
        if found != InitId(id) {
            return Err(PackagerError::NothingRecorded(format!(
                "no init segment {} at tape time {at} of {}: the segment there has init {found}",
                InitId(id),
                tape.name()
            )));
        }
        let mut response = bytes_response(init, asked.context.range.as_deref());
        set(&mut response, header::CONTENT_TYPE, MP4);
        set(&mut response, header::CACHE_CONTROL, IMMUTABLE);
        if let Ok(v) = HeaderValue::from_str(&format!("\"{found}\"")) {
            response.headers_mut().insert(header::ETAG, v);
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use dvr_common::Ticks;
    use dvr_media::SegmentFlags;

    use super::*;

    fn meta(seq: u64, start_ms: i64, discontinuity: bool) -> SegmentMeta {
        SegmentMeta {
            seq,
            utc_start: UtcMs(start_ms),
            duration: Ticks::from_ms(2000),
            pts_start: Ticks(0),
            bytes: 188,
            flags: SegmentFlags {
                discontinuity,
                independent: true,
            },
        }
    }

    #[test]
    fn runs_break_where_playlists_do() {
        let segments = [
            meta(1, 0, false),
            meta(2, 2000, false),
            meta(3, 10_000, false),
            meta(4, 12_000, true),
            meta(5, 14_000, false),
        ];
        assert_eq!(run_starts(&segments), [0, 2, 3]);
        assert!(run_starts(&[]).is_empty());
    }

    #[test]
    fn bandwidth_is_bits_per_second() {
        // 250,000 bytes over 2 s at 90 kHz: 1 Mbit/s.
        assert_eq!(bandwidth(250_000, 180_000, 90_000), 1_000_000);
        // 48 kHz audio: 24,000 bytes over 96,000 samples.
        assert_eq!(bandwidth(24_000, 96_000, 48_000), 96_000);
        assert_eq!(bandwidth(0, 0, 90_000), 1);
    }

    #[test]
    fn a_segment_is_timed_by_its_own_record() {
        let mut m = meta(9, 1_795_269_600_123, false);
        m.pts_start = Ticks(8_589_934_592 + 12_345);
        let timing = timing(&m);
        assert_eq!(timing.tape_start().0, 1_795_269_600_123 * 90);
        assert_eq!(timing.tape_end().0, 1_795_269_600_123 * 90 + 180_000);
    }
}
