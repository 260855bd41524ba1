//! How often the recorder copies and how long the archive keeps.

use std::time::Duration;

use dvr_archive::RetentionPolicy;
use dvr_common::config::Schedule;

/// The recorder's settings for one stream.
#[derive(Clone, Debug)]
pub struct RecorderConfig {
    /// Length of a copy window (1 min to 1 h, dividing the hour).
    pub copy_interval_ms: i64,
    /// How long after a window ends the recorder waits for its last
    /// segment before writing it anyway (the source may have stopped).
    pub close_grace_ms: i64,
    /// What the live log keeps beyond the copy interval, for hot reads.
    pub live_log_margin_ms: i64,
    /// What the archive keeps.
    pub retention: RetentionPolicy,
    /// How often the recorder looks for work.
    pub tick: Duration,
    /// How often retention runs.
    pub retention_every: Duration,
    /// Longest wait between two attempts while the archive is failing; the
    /// wait starts at [`Self::tick`] and doubles per failure up to this.
    pub retry_backoff_max: Duration,
    /// How long the live log keeps a segment whatever the recorder does
    /// (on NATS the streams' max age: the copy interval plus the outage
    /// budget); `None` where nothing expires it (the embedded live log).
    /// The recorder warns, and `dvr_recorder_hot_tier_seconds` lets an
    /// alert fire, when the backlog passes three quarters of it.
    pub hot_tier_ms: Option<i64>,
    /// Archive only the segments that start inside these UTC times of
    /// day; the others are never copied (the live log lets them go).
    /// `None` archives everything.
    pub schedule: Option<Schedule>,
}

impl RecorderConfig {
    /// Settings for a copy interval, with the defaults around it.
    pub fn with_copy_interval(copy_interval_ms: i64) -> Self {
        Self {
            copy_interval_ms,
            close_grace_ms: 12_000,
            live_log_margin_ms: 5 * 60_000,
            retention: RetentionPolicy::default(),
            tick: Duration::from_secs(1),
            retention_every: Duration::from_secs(60),
            retry_backoff_max: Duration::from_secs(15),
            hot_tier_ms: None,
            schedule: None,
        }
    }
}
