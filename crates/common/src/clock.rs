//! Where "now" comes from.
//!
//! Every component reads the wall clock through [`Clock`], never through
//! `SystemTime::now` (clippy bans it), so retention, signal-loss and timeshift
//! logic can be driven by a [`SimulatedClock`] that a test advances by hand.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::time::UtcMs;

/// A source of wall-clock time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current UTC time.
    fn now(&self) -> UtcMs;
}

/// The operating system's real-time clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one sanctioned read of the OS clock
    fn now(&self) -> UtcMs {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        UtcMs(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that only moves when told to. Clones share one time.
#[derive(Clone, Debug)]
pub struct SimulatedClock {
    now_ms: Arc<AtomicI64>,
}

impl SimulatedClock {
    /// A clock standing still at `start`.
    pub fn new(start: UtcMs) -> Self {
        Self {
            now_ms: Arc::new(AtomicI64::new(start.0)),
        }
    }

    /// Moves time forward by `ms` milliseconds (backwards if negative, which
    /// tests use to model an NTP step).
    pub fn advance_ms(&self, ms: i64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Jumps to an absolute time.
    pub fn set(&self, now: UtcMs) {
        self.now_ms.store(now.0, Ordering::SeqCst);
    }
}

impl Clock for SimulatedClock {
    fn now(&self) -> UtcMs {
        UtcMs(self.now_ms.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_clock_moves_only_when_told_and_clones_share_time() {
        let clock = SimulatedClock::new(UtcMs(1_000));
        let other = clock.clone();
        assert_eq!(clock.now(), UtcMs(1_000));
        other.advance_ms(250);
        assert_eq!(clock.now(), UtcMs(1_250));
        clock.set(UtcMs(5));
        assert_eq!(other.now(), UtcMs(5));
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now() > UtcMs(1_577_836_800_000));
    }
}
