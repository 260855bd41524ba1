//! `recording_status.json`: what is recorded in a range, in the seeds'
//! shapes (ranges, `hour_bitmap`, locks, the brief answer over four
//! days), from the catalog and the live log's metadata: no segment is
//! read, so it stays cheap over weeks of tape.

use axum::response::Response;
use dvr_archive::status::{hour_ranges, StreamStatus, DETAILED_LIMIT_SECS};
use dvr_archive::{hour_bitmap, TimeRange};
use dvr_common::UtcMs;
use serde_json::json;

use crate::error::PackagerError;
use crate::query::Query;
use crate::service::{json_response, Packager};
use crate::tape::StreamTape;

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
