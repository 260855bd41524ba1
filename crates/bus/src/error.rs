//! Errors of the live log, with the path or segment they concern.

use std::path::PathBuf;

use dvr_common::error::{ErrorKind, HasErrorKind};

/// What went wrong in the live log.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// A file of the log could not be read, written or created.
    #[error("live log {path}: {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A record on disk is not what was written (torn write, disk corruption).
    #[error("live log {path} at byte {offset}: {reason}")]
    Corrupt {
        /// The log file.
        path: PathBuf,
        /// Where the bad record starts.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A segment was appended out of order.
    #[error("live log {path}: segment {seq} appended after {last}; seq must grow")]
    OutOfOrder {
        /// The log directory.
        path: PathBuf,
        /// The rejected segment.
        seq: u64,
        /// The last segment in the log.
        last: u64,
    },
}

impl HasErrorKind for BusError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            BusError::Io { .. } => ErrorKind::Unavailable,
            BusError::Corrupt { .. } => ErrorKind::InvalidData,
            BusError::OutOfOrder { .. } => ErrorKind::Conflict,
        }
    }
}
