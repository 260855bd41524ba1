//! Recording schedules: `8:00-16:00,22-1:30`, UTC times of day.
//!
//! Kept as minutes of the UTC day so checking an instant is integer
//! arithmetic; an interval whose end is before its start wraps midnight.

use std::fmt;

use crate::time::UtcMs;

/// When to record, as UTC time-of-day intervals; empty means always.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    /// `(start, end)` in minutes of the UTC day, `0..1440`; end exclusive;
    /// `end < start` wraps midnight.
    pub intervals: Vec<(u16, u16)>,
}

impl Schedule {
    /// Parses `8:00-16:00,22-1:30`.
    pub fn parse(input: &str) -> Result<Schedule, String> {
        let mut intervals = Vec::new();
        for part in input.split(',') {
            let (a, b) = part
                .split_once('-')
                .ok_or_else(|| format!("interval {part:?} is not START-END"))?;
            let start = parse_time_of_day(a)?;
            let end = parse_time_of_day(b)?;
            if start == end {
                return Err(format!("interval {part:?} is empty"));
            }
            intervals.push((start, end));
        }
        Ok(Schedule { intervals })
    }

    /// Whether `t` falls inside the schedule.
    pub fn contains(&self, t: UtcMs) -> bool {
        if self.intervals.is_empty() {
            return true;
        }
        // rem_euclid keeps this in 0..1440, so the cast cannot truncate.
        let minute = u16::try_from(t.0.div_euclid(60_000).rem_euclid(1440)).unwrap_or(0);
        self.intervals.iter().any(|&(s, e)| {
            if s < e {
                s <= minute && minute < e
            } else {
                minute >= s || minute < e
            }
        })
    }
}

fn parse_time_of_day(s: &str) -> Result<u16, String> {
    let s = s.trim();
    let (h, m) = s.split_once(':').unwrap_or((s, "0"));
    let h: u16 = h.parse().map_err(|_| format!("bad time of day {s:?}"))?;
    let m: u16 = m.parse().map_err(|_| format!("bad time of day {s:?}"))?;
    if h > 24 || m > 59 || (h == 24 && m != 0) {
        return Err(format!("bad time of day {s:?}"));
    }
    Ok((h * 60 + m) % 1440)
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (s, e)) in self.intervals.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{}:{:02}-{}:{:02}", s / 60, s % 60, e / 60, e % 60)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_wraps_midnight() {
        let s = Schedule::parse("8:00-16:00,22-1:30").unwrap();
        assert_eq!(s.intervals, vec![(480, 960), (1320, 90)]);
        assert_eq!(s.to_string(), "8:00-16:00,22:00-1:30");
        let at = |h: i64, m: i64| UtcMs((h * 60 + m) * 60_000 + 86_400_000 * 20_000);
        assert!(s.contains(at(8, 0)));
        assert!(!s.contains(at(16, 0)));
        assert!(s.contains(at(23, 59)));
        assert!(s.contains(at(1, 29)));
        assert!(!s.contains(at(1, 30)));
        assert!(Schedule::parse("8-8").is_err());
        assert!(Schedule::parse("25-1").is_err());
        assert!(Schedule::parse("8").is_err());
    }
}
