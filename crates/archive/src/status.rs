//! The JSON shapes of `recording_status.json`, as the seeds define them.
//!
//! The packager answers from the catalog; these types fix the wire form so
//! middleware that already speaks Flussonic reads ours unchanged: times in
//! UTC seconds, ranges as `{"from", "duration"}`, the brief form
//! `{"S": {"from", "to"}}`, and for a detailed request a one-element array
//! `[{"stream": "S", "ranges": […], "locks": […], "hour_bitmap": "…"}]`.
//! Converting to seconds rounds starts and ends down, so a range never
//! claims a second that was only partly recorded at its start.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::{HourBitmap, TimeRange};
use crate::lock::Lock;

/// A recorded range in seconds: `{"from": 1483970675, "duration": 3687}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeSecs {
    /// Start, UTC seconds.
    pub from: i64,
    /// Length in seconds.
    pub duration: i64,
}

impl From<TimeRange> for RangeSecs {
    fn from(r: TimeRange) -> RangeSecs {
        let from = r.from.as_secs();
        RangeSecs {
            from,
            duration: (r.to.as_secs() - from).max(0),
        }
    }
}

/// The brief form's value: `{"from": …, "to": …}` in UTC seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanSecs {
    /// First recorded second.
    pub from: i64,
    /// End of the recording, UTC seconds.
    pub to: i64,
}

/// The brief answer, `{"S": {"from": …, "to": …}}`; empty when nothing is
/// recorded.
pub fn brief_status(stream: &str, span: Option<TimeRange>) -> BTreeMap<String, SpanSecs> {
    span.into_iter()
        .map(|r| {
            (
                stream.to_owned(),
                SpanSecs {
                    from: r.from.as_secs(),
                    to: r.to.as_secs(),
                },
            )
        })
        .collect()
}

/// The longest range answered in detail without `force_detailed`: four
/// days, as the seeds' DVR API says.
pub const DETAILED_LIMIT_SECS: i64 = 4 * 24 * 3600;

/// The warning of a forced brief answer.
pub const TOO_BIG_RANGE: &str = "too_big_range";

/// The ranges an hour bitmap shows: each run of recorded hours as one range
/// of whole hours. Cheap and imprecise by design (one pixel of a week-long
/// timeline is about five minutes), for the forced brief answer.
pub fn hour_ranges(bitmap: &HourBitmap) -> Vec<TimeRange> {
    let mut out: Vec<TimeRange> = Vec::new();
    let mut previous = false;
    for (i, bit) in bitmap.bits.bytes().enumerate() {
        let on = bit == b'1';
        let hour = bitmap.from.saturating_add_ms(
            i64::try_from(i)
                .unwrap_or(i64::MAX)
                .saturating_mul(3_600_000),
        );
        match (previous, on, out.last_mut()) {
            (true, true, Some(last)) => last.to = hour.saturating_add_ms(3_600_000),
            (_, true, _) => out.push(TimeRange {
                from: hour,
                to: hour.saturating_add_ms(3_600_000),
            }),
            _ => {}
        }
        previous = on;
    }
    out
}

/// One stream's detailed answer; absent parts were not requested.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamStatus {
    /// The stream name.
    pub stream: String,
    /// Continuous recorded periods (`request=ranges`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranges: Option<Vec<RangeSecs>>,
    /// Locks (`request=locks`), in the seeds' `{"from", "duration"}` seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locks: Option<Vec<Lock>>,
    /// One character per hour from `hour_bitmap_from` (`request=hour_bitmap`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hour_bitmap: Option<String>,
    /// UTC seconds of the bitmap's first hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hour_bitmap_from: Option<i64>,
    /// `"too_big_range"` when a detailed answer was asked for a range
    /// longer than [`DETAILED_LIMIT_SECS`] without `force_detailed`: the
    /// ranges are then whole recorded hours, the seeds' forced brief answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

impl StreamStatus {
    /// A status with nothing requested yet.
    pub fn new(stream: &str) -> StreamStatus {
        StreamStatus {
            stream: stream.to_owned(),
            ranges: None,
            locks: None,
            hour_bitmap: None,
            hour_bitmap_from: None,
            warning: None,
        }
    }

    /// Adds the ranges.
    pub fn with_ranges(mut self, ranges: &[TimeRange]) -> StreamStatus {
        self.ranges = Some(ranges.iter().copied().map(RangeSecs::from).collect());
        self
    }

    /// Adds the locks.
    pub fn with_locks(mut self, locks: &[Lock]) -> StreamStatus {
        self.locks = Some(locks.to_vec());
        self
    }

    /// Marks the answer as the forced brief one.
    pub fn too_big_range(mut self) -> StreamStatus {
        self.warning = Some(TOO_BIG_RANGE.to_owned());
        self
    }

    /// Adds the hour bitmap.
    pub fn with_hour_bitmap(mut self, bitmap: HourBitmap) -> StreamStatus {
        self.hour_bitmap_from = Some(bitmap.from.as_secs());
        self.hour_bitmap = Some(bitmap.bits);
        self
    }
}

#[cfg(test)]
mod tests {
    use dvr_common::UtcMs;

    use super::*;

    #[test]
    fn shapes_match_the_seeds() {
        let r = |f: i64, t: i64| TimeRange {
            from: UtcMs(f * 1000),
            to: UtcMs(t * 1000),
        };
        let brief = brief_status("ort", Some(r(1_525_186_456, 1_526_910_900)));
        assert_eq!(
            serde_json::to_string(&brief).unwrap(),
            r#"{"ort":{"from":1525186456,"to":1526910900}}"#
        );
        assert_eq!(
            serde_json::to_string(&brief_status("ort", None)).unwrap(),
            "{}"
        );
        let lock = Lock::new(UtcMs::from_secs(1_483_971_680), 1_004_000).unwrap();
        let status = StreamStatus::new("ort")
            .with_ranges(&[r(1_483_970_675, 1_483_970_675 + 3687)])
            .with_locks(&[lock]);
        assert_eq!(
            serde_json::to_string(&[status]).unwrap(),
            r#"[{"stream":"ort","ranges":[{"from":1483970675,"duration":3687}],"locks":[{"from":1483971680,"duration":1004}]}]"#
        );
        let bitmap = HourBitmap {
            from: UtcMs::from_secs(1_795_269_600),
            bits: "0110001".into(),
        };
        let hours = hour_ranges(&bitmap);
        assert_eq!(
            hours,
            [
                r(1_795_273_200, 1_795_280_400),
                r(1_795_291_200, 1_795_294_800)
            ]
        );
        let forced = StreamStatus::new("ort")
            .with_ranges(&hours[..1])
            .with_hour_bitmap(bitmap)
            .too_big_range();
        assert_eq!(
            serde_json::to_string(&[forced]).unwrap(),
            r#"[{"stream":"ort","ranges":[{"from":1795273200,"duration":7200}],"hour_bitmap":"0110001","hour_bitmap_from":1795269600,"warning":"too_big_range"}]"#
        );
        let partial = TimeRange {
            from: UtcMs(1_500),
            to: UtcMs(4_200),
        };
        assert_eq!(
            RangeSecs::from(partial),
            RangeSecs {
                from: 1,
                duration: 3
            }
        );
    }
}
