//! Integer time, never floats.
//!
//! The DVR has two clocks (ARCHITECTURE section 3): wall clock as [`UtcMs`],
//! milliseconds since the Unix epoch, and media time as [`Ticks`], the 90 kHz
//! clock of MPEG-TS timestamps, unwrapped from 33 bits to `i64`. Converting
//! between them is the anchor's job (`utc = anchor_utc + (pts - anchor_pts) / 90`),
//! and both round toward negative infinity so a conversion never lands a
//! frame in the next millisecond.
//!
//! [`CivilTime`] is the calendar view used for archive keys and segment URLs
//! (`2026/11/21/14/05/32`); it is computed with Howard Hinnant's
//! days-from-civil algorithm so no time-zone database is needed: everything is
//! UTC.

use std::fmt;
use std::ops::{Add, Sub};

use serde::{Deserialize, Serialize};

/// 90 kHz ticks per second.
pub const TICKS_PER_SEC: i64 = 90_000;
/// 90 kHz ticks per millisecond.
pub const TICKS_PER_MS: i64 = 90;

/// Media time in 90 kHz ticks.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Ticks(pub i64);

impl Ticks {
    /// Zero ticks.
    pub const ZERO: Ticks = Ticks(0);

    /// Whole seconds as ticks.
    pub const fn from_secs(secs: i64) -> Ticks {
        Ticks(secs * TICKS_PER_SEC)
    }

    /// Milliseconds as ticks.
    pub const fn from_ms(ms: i64) -> Ticks {
        Ticks(ms * TICKS_PER_MS)
    }

    /// The duration in milliseconds, rounded down.
    pub const fn as_ms(self) -> i64 {
        self.0.div_euclid(TICKS_PER_MS)
    }

    /// Seconds with millisecond precision, for display only (playlists want
    /// decimal seconds; the core never computes with them).
    pub fn display_secs(self) -> DecimalSecs {
        DecimalSecs(self.as_ms())
    }
}

impl Add for Ticks {
    type Output = Ticks;
    fn add(self, rhs: Ticks) -> Ticks {
        Ticks(self.0 + rhs.0)
    }
}

impl Sub for Ticks {
    type Output = Ticks;
    fn sub(self, rhs: Ticks) -> Ticks {
        Ticks(self.0 - rhs.0)
    }
}

/// Milliseconds printed as decimal seconds (`2.000`, `-0.040`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecimalSecs(pub i64);

impl fmt::Display for DecimalSecs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:03}", abs / 1000, abs % 1000)
    }
}

/// Wall-clock time: milliseconds since 1970-01-01T00:00:00Z.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct UtcMs(pub i64);

impl UtcMs {
    /// The last second a URL or a message may name, 9999-12-31T23:59:59Z:
    /// numbers from outside are checked against it, so no arithmetic on
    /// them can overflow.
    pub const LAST_SECOND: i64 = 253_402_300_799;

    /// Whole seconds since the epoch.
    pub const fn from_secs(secs: i64) -> UtcMs {
        UtcMs(secs * 1000)
    }

    /// Whole seconds since the epoch, rounded down.
    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// This instant plus a media duration, rounded down to the millisecond.
    pub fn plus_ticks(self, ticks: Ticks) -> UtcMs {
        UtcMs(self.0 + ticks.as_ms())
    }

    /// Adds milliseconds, saturating at the ends of the range.
    pub fn saturating_add_ms(self, ms: i64) -> UtcMs {
        UtcMs(self.0.saturating_add(ms))
    }

    /// The calendar fields of this instant in UTC.
    pub fn civil(self) -> CivilTime {
        CivilTime::from_utc(self)
    }

    /// The start of the UTC hour holding this instant.
    pub fn floor_hour(self) -> UtcMs {
        UtcMs(self.0 - self.0.rem_euclid(3_600_000))
    }
}

impl fmt::Display for UtcMs {
    /// RFC 3339 with milliseconds, e.g. `2026-11-21T14:05:32.040Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.civil();
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis
        )
    }
}

/// Calendar fields of a UTC instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CivilTime {
    /// Proleptic Gregorian year.
    pub year: i64,
    /// 1 to 12.
    pub month: u32,
    /// 1 to 31.
    pub day: u32,
    /// 0 to 23.
    pub hour: u32,
    /// 0 to 59.
    pub minute: u32,
    /// 0 to 59 (leap seconds do not exist in Unix time).
    pub second: u32,
    /// 0 to 999.
    pub millis: u32,
}

impl CivilTime {
    /// Splits a UTC instant into calendar fields.
    pub fn from_utc(t: UtcMs) -> CivilTime {
        let days = t.0.div_euclid(86_400_000);
        let ms_of_day = t.0.rem_euclid(86_400_000);
        let (year, month, day) = civil_from_days(days);
        // ms_of_day < 86_400_000, so every field below fits in u32.
        let ms = u32::try_from(ms_of_day).unwrap_or(0);
        CivilTime {
            year,
            month,
            day,
            hour: ms / 3_600_000,
            minute: ms / 60_000 % 60,
            second: ms / 1000 % 60,
            millis: ms % 1000,
        }
    }

    /// The instant these fields name, or `None` if a field is out of range.
    pub fn to_utc(self) -> Option<UtcMs> {
        let valid = (1..=12).contains(&self.month)
            && self.day >= 1
            && self.day <= days_in_month(self.year, self.month)
            && self.hour < 24
            && self.minute < 60
            && self.second < 60
            && self.millis < 1000;
        if !valid {
            return None;
        }
        let days = days_from_civil(self.year, self.month, self.day);
        let ms = i64::from(self.hour) * 3_600_000
            + i64::from(self.minute) * 60_000
            + i64::from(self.second) * 1000
            + i64::from(self.millis);
        days.checked_mul(86_400_000)?.checked_add(ms).map(UtcMs)
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a count of days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // day is 1..=31 and month 1..=12 by construction.
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

/// Why a duration such as `2s` or `7d` did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (use a number with a unit: 500ms, 2s, 1m, 1h, 7d)")]
pub struct DurationParseError {
    input: String,
    reason: &'static str,
}

impl DurationParseError {
    /// The rejected input, as given.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// What is wrong with it, in a few words (`unknown unit`, `no number`).
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

/// Parses a duration written as the seeds do (`500ms`, `2s`, `10m`, `1h`,
/// `7d`, `2w`; a bare number is seconds) into milliseconds.
pub fn parse_duration_ms(input: &str) -> Result<i64, DurationParseError> {
    let err = |reason| DurationParseError {
        input: input.to_owned(),
        reason,
    };
    let s = input.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(err("no number"));
    }
    let value: i64 = digits.parse().map_err(|_| err("number too large"))?;
    let unit_ms = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return Err(err("unknown unit")),
    };
    value
        .checked_mul(unit_ms)
        .ok_or_else(|| err("number too large"))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn formats_rfc3339_with_millis() {
        assert_eq!(UtcMs(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            UtcMs(1_795_356_332_040).to_string(),
            "2026-11-22T14:05:32.040Z"
        );
        assert_eq!(UtcMs(-1).to_string(), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn civil_round_trips_on_leap_day() {
        let c = CivilTime {
            year: 2024,
            month: 2,
            day: 29,
            hour: 23,
            minute: 59,
            second: 59,
            millis: 999,
        };
        let t = c.to_utc().unwrap();
        assert_eq!(t.civil(), c);
        assert_eq!(CivilTime { day: 30, ..c }.to_utc(), None);
        assert_eq!(CivilTime { year: 2023, ..c }.to_utc(), None);
    }

    #[test]
    fn floor_hour_and_tick_conversions() {
        let t = UtcMs(1_795_356_332_040);
        assert_eq!(t.floor_hour().civil().minute, 0);
        assert_eq!(t.floor_hour().civil().hour, t.civil().hour);
        assert_eq!(Ticks(-1).as_ms(), -1, "rounds toward negative infinity");
        assert_eq!(Ticks::from_secs(2).display_secs().to_string(), "2.000");
        assert_eq!(Ticks(3_600).display_secs().to_string(), "0.040");
        assert_eq!(UtcMs(1000).plus_ticks(Ticks(90 * 40)), UtcMs(1040));
    }

    #[test]
    fn parses_durations_like_the_seeds() {
        assert_eq!(parse_duration_ms("2s"), Ok(2000));
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_duration_ms("7d"), Ok(604_800_000));
        assert_eq!(parse_duration_ms("30"), Ok(30_000));
        assert!(parse_duration_ms("s").is_err());
        assert!(parse_duration_ms("2 parsecs").is_err());
        assert!(parse_duration_ms("99999999999999999999s").is_err());
    }

    proptest! {
        #[test]
        fn civil_round_trips(ms in -62_135_596_800_000i64..253_402_300_799_999i64) {
            let t = UtcMs(ms);
            prop_assert_eq!(t.civil().to_utc(), Some(t));
        }
    }
}
