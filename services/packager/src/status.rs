//! `recording_status.json`: what is recorded in a range, in the seeds'
//! shapes (ranges, `hour_bitmap`, locks, the brief answer over four
//! days), from the catalog and the live log's metadata: no segment is
//! read, so it stays cheap over weeks of tape. The one exception is
//! `brief_thumbnails` over at most an hour, which reads the sample tables
//! (one `.smp` per chunk, cached) for every keyframe.

use axum::response::Response;
use dvr_archive::status::{hour_ranges, StreamStatus, DETAILED_LIMIT_SECS};
use dvr_archive::{hour_bitmap, TimeRange};
use dvr_common::{Ticks, UtcMs, TICKS_PER_MS};
use dvr_media::mp4::{first_video, keyframes};
use serde_json::json;

use crate::error::PackagerError;
use crate::preview::placed;
use crate::query::Query;
use crate::service::{json_response, Packager, MAX_SEGMENT_MS};
use dvr_archive::tape::StreamTape;

impl Packager {
    pub(crate) async fn recording_status(
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
        // The seeds answer `brief_thumbnails` beside the ranges.
        if query.request.is_empty() || asked("ranges") || asked("brief_thumbnails") {
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
        let mut body = serde_json::to_value(&status).unwrap_or_else(|_| json!({ "stream": name }));
        if asked("brief_thumbnails") {
            body["brief_thumbnails"] = json!(self.brief_thumbnails(tape, from, to).await?);
        }
        Ok(json_response(&json!([body])))
    }

    /// `request=brief_thumbnails`: the UTC seconds of the keyframes
    /// presented in `[from, to)` (each names its picture,
    /// `…/SS-preview.jpg`), at most one per `N` seconds, `N` the range over
    /// [`MAX_BRIEF_THUMBNAILS`] rounded up, so the list stays under that
    /// length. Up to [`BRIEF_EXACT_SECS`] every keyframe of the first video
    /// track comes from the sample tables; longer ranges list the starts of
    /// segments that begin with a keyframe (every segment the segmenter
    /// cuts does), from the index alone, so no segment is read.
    async fn brief_thumbnails(
        &self,
        tape: &StreamTape,
        from: UtcMs,
        to: UtcMs,
    ) -> Result<Vec<i64>, PackagerError> {
        let span = (to.0 - from.0).max(0) / 1000;
        let every = (span as u64).div_ceil(MAX_BRIEF_THUMBNAILS as u64).max(1) as i64;
        let seconds: Vec<i64> = if span <= BRIEF_EXACT_SECS {
            let segments = tape
                .segments_between(from.saturating_add_ms(-MAX_SEGMENT_MS), to)
                .await?;
            let tables = self.load_tables(tape, &segments).await;
            let at = placed(&tables, &segments);
            match first_video(&at, None) {
                Some(video) => keyframes(
                    &at,
                    video,
                    Ticks(from.0 * TICKS_PER_MS)..Ticks(to.0 * TICKS_PER_MS),
                )
                .iter()
                .map(|k| k.presentation.0.div_euclid(TICKS_PER_MS * 1000))
                .collect(),
                None => Vec::new(),
            }
        } else {
            tape.metas_between(from, to)
                .await?
                .iter()
                .filter(|m| m.flags.independent && m.utc_start >= from && m.utc_start < to)
                .map(|m| m.utc_start.as_secs())
                .collect()
        };
        let mut out: Vec<i64> = Vec::new();
        for second in seconds {
            if out.last().is_none_or(|&last| second >= last + every) {
                out.push(second);
            }
            if out.len() >= MAX_BRIEF_THUMBNAILS {
                break;
            }
        }
        Ok(out)
    }
}

/// The longest `brief_thumbnails` list.
pub const MAX_BRIEF_THUMBNAILS: usize = 1000;
/// Ranges up to this many seconds list every keyframe from the sample
/// tables; longer ones the keyframes segments start with.
pub const BRIEF_EXACT_SECS: i64 = 3600;
