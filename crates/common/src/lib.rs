//! Shared vocabulary of the DVR: the two clocks of the time model (wall clock
//! in milliseconds, media time in 90 kHz ticks), the [`Clock`] trait that lets
//! tests run faster than real time, and the error-kind convention that maps
//! every library error onto one HTTP status in one place.
//!
//! It also owns the two things every service reads the same way: the
//! validated [`StreamName`] and the YAML [`Config`].
//!
//! Nothing here does I/O; everything here is cheap to copy.

pub mod clock;
pub mod config;
pub mod error;
#[doc(hidden)]
pub mod fuzz_corpus;
pub mod stream_name;
pub mod time;

pub use clock::{Clock, SimulatedClock, SystemClock};
pub use config::{Config, ConfigError};
pub use error::{ErrorKind, HasErrorKind};
pub use stream_name::{StreamName, StreamNameError, RESERVED_STREAM_NAMES};
pub use time::{CivilTime, DurationParseError, Ticks, UtcMs, TICKS_PER_MS, TICKS_PER_SEC};
