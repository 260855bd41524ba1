//! A wall clock that follows tokio's timer.
//!
//! With tokio's clock paused (`#[tokio::test(start_paused = true)]`), sleeps
//! finish as soon as nothing else can run, and [`TokioClock`] moves with them:
//! file pacing, source-loss timeouts and segment timestamps then agree on one
//! virtual time, and a minute of stream is ingested in milliseconds.

use dvr_common::{Clock, SystemClock, UtcMs};
use tokio::time::Instant;

/// UTC as `start` plus the time elapsed on tokio's clock.
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    start_utc: UtcMs,
    start: Instant,
}

impl TokioClock {
    /// A clock reading `start_utc` now.
    pub fn new(start_utc: UtcMs) -> Self {
        TokioClock {
            start_utc,
            start: Instant::now(),
        }
    }

    /// A clock starting at the system's current time.
    pub fn from_system() -> Self {
        Self::new(SystemClock.now())
    }
}

impl Clock for TokioClock {
    fn now(&self) -> UtcMs {
        let elapsed = i64::try_from(self.start.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.start_utc.saturating_add_ms(elapsed)
    }
}
