//! What a playback request can fail with, and the status each maps to.

use dvr_common::error::{ErrorKind, HasErrorKind};

/// A playback failure, worded for the client (one line, nothing internal).
#[derive(Debug, thiserror::Error)]
pub enum PackagerError {
    /// The URL is malformed or asks for an impossible range.
    #[error("{0}")]
    BadRequest(String),
    /// No such stream.
    #[error("unknown stream {0}")]
    UnknownStream(String),
    /// The stream exists but the tape has nothing there.
    #[error("{0}")]
    NothingRecorded(String),
    /// The tape holds it, but it cannot be given in the asked form (a
    /// stream without the parameter sets fMP4 needs).
    #[error("{0}")]
    Unprocessable(String),
    /// The URL form is recognized but not served by this version.
    #[error("{0} is not supported yet")]
    NotSupported(&'static str),
    /// Reading the tape failed.
    #[error("cannot read the tape of {stream}: {reason}")]
    Storage {
        /// The stream.
        stream: String,
        /// What went wrong (no credentials or paths).
        reason: String,
        /// Whether retrying may help.
        transient: bool,
    },
}

impl HasErrorKind for PackagerError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            PackagerError::BadRequest(_) => ErrorKind::BadRequest,
            PackagerError::UnknownStream(_) | PackagerError::NothingRecorded(_) => {
                ErrorKind::NotFound
            }
            PackagerError::NotSupported(_) => ErrorKind::NotFound,
            PackagerError::Unprocessable(_) => ErrorKind::InvalidData,
            PackagerError::Storage {
                transient: true, ..
            } => ErrorKind::Unavailable,
            PackagerError::Storage {
                transient: false, ..
            } => ErrorKind::Internal,
        }
    }
}
