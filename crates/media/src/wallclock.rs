//! Media time to wall-clock time (ARCHITECTURE section 3).
//!
//! Within one continuous run of a source, `utc = anchor_utc + (pts - anchor_pts) / 90`:
//! the stream's own clock decides durations, so segments tile the tape
//! exactly. A new anchor is taken at each discontinuity, from the arrival
//! time of the packet, but never earlier than the end of what was already
//! stamped: the tape only moves forward, even if the system clock steps back.

use dvr_common::{Ticks, UtcMs};

/// The anchor of the current continuous run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// Media time at the anchor.
    pub pts: Ticks,
    /// Wall-clock time at the anchor.
    pub utc: UtcMs,
}

/// Stamps media time with wall-clock time.
#[derive(Clone, Copy, Debug, Default)]
pub struct WallClock {
    anchor: Option<Anchor>,
    stamped_until: Option<UtcMs>,
}

impl WallClock {
    /// A clock whose tape must not go before `not_before` (the end of what a
    /// previous run of the recorder stored).
    pub fn resuming_after(not_before: Option<UtcMs>) -> Self {
        Self {
            anchor: None,
            stamped_until: not_before,
        }
    }

    /// Starts a new continuous run: `pts` arrived at `now`.
    pub fn anchor(&mut self, pts: Ticks, now: UtcMs) -> Anchor {
        let utc = self.stamped_until.map_or(now, |end| now.max(end));
        let anchor = Anchor { pts, utc };
        self.anchor = Some(anchor);
        anchor
    }

    /// The current anchor, if a run has started.
    pub fn current(&self) -> Option<Anchor> {
        self.anchor
    }

    /// The wall-clock time of `pts` in the current run.
    pub fn utc_of(&self, pts: Ticks) -> Option<UtcMs> {
        let a = self.anchor?;
        Some(a.utc.plus_ticks(pts - a.pts))
    }

    /// Records that the tape now reaches `end`.
    pub fn stamped_until(&mut self, end: UtcMs) {
        self.stamped_until = Some(self.stamped_until.map_or(end, |e| e.max(end)));
    }

    /// How far the tape reaches.
    pub fn end(&self) -> Option<UtcMs> {
        self.stamped_until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_relative_to_the_anchor_and_never_goes_back() {
        let mut wall = WallClock::default();
        assert_eq!(wall.utc_of(Ticks(0)), None);
        wall.anchor(Ticks(900_000), UtcMs(1_000_000));
        assert_eq!(
            wall.utc_of(Ticks(900_000 + 180_000)),
            Some(UtcMs(1_002_000))
        );
        wall.stamped_until(UtcMs(1_002_000));
        // The system clock stepped back 5 s: the new run starts where the tape ends.
        let a = wall.anchor(Ticks(42), UtcMs(997_000));
        assert_eq!(a.utc, UtcMs(1_002_000));
        // A restart resumes after what was recorded before.
        let mut resumed = WallClock::resuming_after(Some(UtcMs(5_000)));
        assert_eq!(resumed.anchor(Ticks(0), UtcMs(4_000)).utc, UtcMs(5_000));
        assert_eq!(resumed.anchor(Ticks(0), UtcMs(6_000)).utc, UtcMs(6_000));
    }
}
