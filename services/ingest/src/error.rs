//! The one error type of the ingest crate. Every variant names the input (with
//! credentials masked) or the stream it is about, so a log line is enough to
//! find the faulty source.

use dvr_common::error::{ErrorKind, HasErrorKind};

/// What went wrong while reading inputs or delivering segments.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The input URL cannot be used.
    #[error("invalid input url {url}: {reason}")]
    InvalidUrl {
        /// The URL, credentials masked.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// A socket, file or connection operation failed.
    #[error("{what} for input {url}: {source}")]
    Io {
        /// What was being done (`bind`, `join multicast group`, `read` …).
        what: &'static str,
        /// The input, credentials masked.
        url: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// An HTTP request failed before or while streaming.
    #[error("http request to {url} failed: {message}")]
    Http {
        /// The input, credentials masked.
        url: String,
        /// reqwest's description, credentials masked.
        message: String,
        /// Whether the server did not answer in time.
        timeout: bool,
    },
    /// The HTTP server answered with an error status.
    #[error("http source {url} answered {status}")]
    HttpStatus {
        /// The input, credentials masked.
        url: String,
        /// The status code.
        status: u16,
    },
    /// An HLS input's playlist cannot be used: malformed, or a form ingest
    /// refuses (fMP4, encryption, separate audio).
    #[error("hls input {url}: {reason}")]
    Hls {
        /// The input, credentials masked.
        url: String,
        /// What is wrong, naming the playlist (masked) when it is not the input's.
        reason: String,
    },
    /// A live source ended its stream (it will be reconnected).
    #[error("input {url} ended its stream")]
    Ended {
        /// The input, credentials masked.
        url: String,
    },
    /// A publish to the stream ended or was replaced.
    #[error("stream {stream}: publish ended: {reason}")]
    Publish {
        /// The stream's name.
        stream: String,
        /// Why it ended.
        reason: String,
    },
    /// An SRT input cannot call, listen or read.
    #[error("srt input {url}: {reason}")]
    Srt {
        /// The input, passphrase masked.
        url: String,
        /// What failed (never the passphrase).
        reason: String,
    },
    /// The segment sink refused a segment.
    #[error("stream {stream}: appending segment {seq} failed: {source}")]
    Sink {
        /// The stream's name.
        stream: String,
        /// The segment that was not stored.
        seq: u64,
        /// The sink's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The stream has no inputs configured.
    #[error("stream {stream} has no inputs")]
    NoInputs {
        /// The stream's name.
        stream: String,
    },
    /// The ingest task panicked or was aborted.
    #[error("ingest task of stream {stream} died: {reason}")]
    TaskDied {
        /// The stream's name.
        stream: String,
        /// The join error.
        reason: String,
    },
}

impl HasErrorKind for IngestError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            IngestError::InvalidUrl { .. } | IngestError::NoInputs { .. } => ErrorKind::BadRequest,
            IngestError::Http { timeout: true, .. } => ErrorKind::Timeout,
            IngestError::Io { .. }
            | IngestError::Http { .. }
            | IngestError::HttpStatus { .. }
            | IngestError::Ended { .. }
            | IngestError::Publish { .. }
            | IngestError::Srt { .. }
            | IngestError::Sink { .. } => ErrorKind::Unavailable,
            IngestError::Hls { .. } => ErrorKind::InvalidData,
            IngestError::TaskDied { .. } => ErrorKind::Internal,
        }
    }
}
