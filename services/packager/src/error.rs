//! What a playback request can fail with, and the status each maps to.

use dvr_archive::tape::TapeError;
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
    /// A JPEG was asked for and no decoder runs here (no
    /// `dvr-preview-decoder` at the configured path, or it cannot load its
    /// libraries): `415`.
    #[error("{0}")]
    NoDecoder(String),
    /// Every preview worker is busy and the queue is full: `503` with
    /// `Retry-After`.
    #[error("{0}")]
    Busy(String),
    /// The decoder ran past its time and was stopped: `504`.
    #[error("{0}")]
    DecoderTimeout(String),
    /// The decoder could not be run or read.
    #[error("preview decoder: {0}")]
    Decoder(String),
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

impl From<TapeError> for PackagerError {
    fn from(e: TapeError) -> Self {
        match e {
            TapeError::NothingRecorded(what) => PackagerError::NothingRecorded(what),
            TapeError::Storage {
                stream,
                reason,
                transient,
            } => PackagerError::Storage {
                stream,
                reason,
                transient,
            },
        }
    }
}

impl HasErrorKind for PackagerError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            PackagerError::BadRequest(_) => ErrorKind::BadRequest,
            PackagerError::UnknownStream(_) | PackagerError::NothingRecorded(_) => {
                ErrorKind::NotFound
            }
            PackagerError::NotSupported(_) => ErrorKind::NotFound,
            PackagerError::Unprocessable(_) | PackagerError::NoDecoder(_) => ErrorKind::InvalidData,
            PackagerError::Busy(_) => ErrorKind::Unavailable,
            PackagerError::DecoderTimeout(_) => ErrorKind::Timeout,
            PackagerError::Decoder(_) => ErrorKind::Internal,
            PackagerError::Storage {
                transient: true, ..
            } => ErrorKind::Unavailable,
            PackagerError::Storage {
                transient: false, ..
            } => ErrorKind::Internal,
        }
    }
}

impl PackagerError {
    /// The HTTP status of the answer: its kind's, except `415` for
    /// [`PackagerError::NoDecoder`], which no [`ErrorKind`] names.
    pub fn http_status(&self) -> u16 {
        match self {
            PackagerError::NoDecoder(_) => 415,
            other => other.error_kind().http_status(),
        }
    }

    /// Seconds a client should wait before asking again, for answers
    /// that say so (`Retry-After`).
    pub fn retry_after(&self) -> Option<u32> {
        matches!(self, PackagerError::Busy(_)).then_some(1)
    }
}
