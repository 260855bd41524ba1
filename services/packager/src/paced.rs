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

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use dvr_common::{Clock, UtcMs};
use futures_util::stream;
use tokio::time::Instant;

use crate::tape::{StreamTape, TapeSegment};
use crate::url::TrackSet;

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
            let found = self
                .tape
                .segments_between(self.at, self.at.saturating_add_ms(LOOKAHEAD_MS))
                .await
                .ok()
                .and_then(|segments| {
                    segments
                        .into_iter()
                        .find(|s| self.last_seq.is_none_or(|last| s.meta.seq > last))
                });
            if let Some(segment) = found {
                return segment;
            }
            // Nothing in the next two minutes: either a long gap (jump to
            // what follows it) or live has not got there yet (wait).
            let ahead = self.at.saturating_add_ms(LOOKAHEAD_MS);
            if ahead < self.clock.now() {
                self.at = ahead;
            } else {
                tokio::time::sleep(POLL).await;
            }
        }
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
pub fn paced_mpegts(
    tape: StreamTape,
    start: UtcMs,
    tracks: Option<TrackSet>,
    clock: Arc<dyn Clock>,
) -> Response {
    let cursor = Cursor {
        tape,
        clock,
        at: start,
        last_seq: None,
        origin: None,
        sent: Duration::ZERO,
        tracks: tracks.map(TrackSet::numbers),
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
