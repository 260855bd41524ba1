//! The recorder: copies each stream's live log to the archive.
//!
//! At every copy-interval boundary (and at shutdown) the segments of the
//! closed window are written as one chunk object, one PUT streamed segment
//! by segment from the live log ([`upload`]), then its index; only then is the window considered archived and
//! the live log allowed to forget it (after a margin). Object keys are
//! deterministic, so replaying a window after a crash rewrites the same
//! keys: nothing is lost and nothing is duplicated.
//!
//! [`RecorderWorker`] is one stream's recorder as a process runs it, with
//! the announcement of its chunks to the other processes, and with
//! [`Backfill`], the replication of a restreamed stream's older tape.

pub mod backfill;
pub mod config;
pub mod disk;
pub mod metrics;
pub mod recorder;
pub mod upload;
pub mod worker;

pub use backfill::Backfill;
pub use config::RecorderConfig;
pub use disk::DiskMeter;
pub use recorder::{RecorderError, RetentionError, StreamRecorder};
pub use worker::{catalog_summary, RecorderContext, RecorderWorker};
