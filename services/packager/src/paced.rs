//! HTTP MPEG-TS from any moment of the tape, paced in real time and running
//! on into live until the client hangs up: `/S/mpegts`,
//! `/S/timeshift_abs/T`, `/S/timeshift_abs-T.ts`, `/S/timeshift_rel/N`.
//!
//! Set-top boxes read these as an endless transport stream, so the body
//! never ends on its own: segments are sent in seq order, each once the wall
//! clock since the start has reached its place on the tape less a small
//! lead (so the player's buffer fills at once and stays full), and when the
//! next segment is not recorded yet the stream waits for it. A gap in the
//! recording is skipped (the next segment follows; it starts with its own
//! PAT/PMT and a discontinuity the player handles), and an unreadable
//! segment is logged and skipped too: a long stream must not die of one
//! bad object.
//!
//! A `tracks-…/` or `videoN-` URL cuts every segment to those tracks by PID
//! ([`dvr_media::tracks::select`]) on its way out, as HLS track playlists
//! do: no re-encoding.
//!
//! The work of one stream is bounded whatever its URL says: it starts at
//! the tape's first segment at the earliest, a gap is crossed in one jump
//! to where the catalog says the tape resumes (never walked in steps), the
//! cursor yields to the runtime at every step, and each open stream holds
//! a share of the packager's paced-stream quota (in total and per client),
//! given back when the client hangs up.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use dvr_common::{Clock, UtcMs};
use dvr_edge::QuotaPermit;
use futures_util::stream;
use tokio::time::Instant;

use crate::url::TrackSet;
use dvr_archive::tape::{StreamTape, TapeSegment};

/// How far ahead of real time the stream may run.
const LEAD: Duration = Duration::from_secs(3);
/// How often to look for a segment that is not recorded yet.
const POLL: Duration = Duration::from_millis(250);
/// How much tape one lookup covers.
const LOOKAHEAD_MS: i64 = 120_000;

struct Cursor {
    tape: StreamTape,
    clock: Arc<dyn Clock>,
    /// Where to look for the next segment.
    at: UtcMs,
    /// The last seq sent.
    last_seq: Option<u64>,
    /// When the first segment went out.
    origin: Option<Instant>,
    /// Media time sent so far.
    sent: Duration,
    /// The track numbers kept, `None` for all.
    tracks: Option<Vec<usize>>,
    /// Its share of the open paced streams, given back with the cursor.
    _share: QuotaPermit,
}

/// `bytes` of the segment `segment` cut down to track `numbers` (all of
/// them when `None`). An error names the stream and the segment.
pub(crate) fn cut(
    tape: &StreamTape,
    segment: &TapeSegment,
    bytes: Bytes,
    numbers: Option<&[usize]>,
) -> Result<Bytes, String> {
    let Some(numbers) = numbers else {
        return Ok(bytes);
    };
    dvr_media::tracks::select(&bytes, numbers)
        .map(Bytes::from)
        .map_err(|e| {
            format!(
                "segment {} of {} at {}: {e}",
                segment.meta.seq,
                tape.name(),
                segment.meta.utc_start.as_secs()
            )
        })
}

impl Cursor {
    /// The next segment after the last one sent, waiting for live if needed.
    async fn next_segment(&mut self) -> TapeSegment {
        loop {
            // However the tape answers (from a cache, at once), a long
            // search must not keep this worker from every other request.
            tokio::task::yield_now().await;
            let ahead = self.at.saturating_add_ms(LOOKAHEAD_MS);
            match self.tape.segments_between(self.at, ahead).await {
                Ok(segments) => {
                    let next = segments
                        .into_iter()
                        .find(|s| self.last_seq.is_none_or(|last| s.meta.seq > last));
                    if let Some(segment) = next {
                        return segment;
                    }
                }
                Err(e) => {
                    tracing::debug!(stream = self.tape.name(), error = %e, "paced stream: cannot read the tape yet");
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            }
            // Nothing new in the next two minutes: a gap (jump to where the
            // tape resumes) or live has not got there yet (wait).
            match self.resumes_after(ahead).await {
                Some(resume) => self.at = resume,
                None => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// Where the tape resumes at or after `t`, from the recorded ranges
    /// (the catalog and the live log's metadata: no segment is read).
    async fn resumes_after(&self, t: UtcMs) -> Option<UtcMs> {
        let now = self.clock.now();
        if t >= now {
            return None;
        }
        let ranges = self.tape.ranges(t, now).await.ok()?;
        ranges
            .into_iter()
            .find(|(_, end)| *end > t)
            .map(|(start, _)| start.max(t))
    }

    /// The bytes of the next segment, sent no earlier than its turn.
    async fn next_chunk(&mut self) -> Bytes {
        loop {
            let segment = self.next_segment().await;
            let origin = *self.origin.get_or_insert_with(Instant::now);
            tokio::time::sleep_until(origin + self.sent.saturating_sub(LEAD)).await;
            self.last_seq = Some(segment.meta.seq);
            self.at = segment.meta.utc_start;
            let read = self.tape.read(&segment).await.map_err(|e| e.to_string());
            match read.and_then(|b| cut(&self.tape, &segment, b, self.tracks.as_deref())) {
                Ok(bytes) => {
                    self.sent += Duration::from_millis(
                        u64::try_from(segment.meta.duration.as_ms()).unwrap_or(0),
                    );
                    return bytes;
                }
                Err(e) => {
                    tracing::warn!(stream = self.tape.name(), seq = segment.meta.seq, error = %e, "skipping an unreadable segment in a paced stream");
                }
            }
        }
    }
}

/// An endless MPEG-TS response playing `tape` from `start`, with only
/// `tracks` when given.
/// `share` is the stream's place in the paced-stream quota, held until the
/// client hangs up.
pub fn paced_mpegts(
    tape: StreamTape,
    start: UtcMs,
    tracks: Option<TrackSet>,
    clock: Arc<dyn Clock>,
    share: QuotaPermit,
) -> Response {
    let cursor = Cursor {
        tape,
        clock,
        at: start,
        last_seq: None,
        origin: None,
        sent: Duration::ZERO,
        tracks: tracks.map(TrackSet::numbers),
        _share: share,
    };
    let body = stream::unfold(cursor, |mut cursor| async move {
        let chunk = cursor.next_chunk().await;
        Some((Ok::<_, std::io::Error>(chunk), cursor))
    });
    let mut response = Response::new(Body::from_stream(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp2t"));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
