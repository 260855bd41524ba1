//! Errors of the bus, with the path, subject, bucket or key they concern.

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
    /// A request to NATS failed or timed out (after the retries the
    /// operation allows).
    #[error("nats {target}: {op}: {source}")]
    Nats {
        /// What was being done.
        op: &'static str,
        /// The stream, bucket, key or subject.
        target: String,
        /// The client's error.
        source: async_nats::Error,
    },
    /// NATS refused this process (credentials, TLS setup): retrying will
    /// not help.
    #[error("nats {target}: {detail}")]
    Refused {
        /// The server URL.
        target: String,
        /// Why, naming the user or file, never a secret.
        detail: String,
    },
    /// A KV write whose condition did not hold: the key exists (create) or
    /// its revision moved on (update).
    #[error("kv {bucket}/{key}: {reason}")]
    KvConflict {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// Which condition failed.
        reason: String,
    },
    /// A KV key or watch prefix outside what NATS accepts.
    #[error("kv key {key:?}: {reason}")]
    InvalidKey {
        /// The rejected key.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A message on the bus is not valid for this protocol version.
    #[error("{target}: {source}")]
    Proto {
        /// Where it was read.
        target: String,
        /// What is wrong.
        source: dvr_proto::ProtoError,
    },
    /// A watch fell behind and missed changes; watch again.
    #[error("watch of {target} lagged behind by {missed} changes")]
    Lagged {
        /// The bucket watched.
        target: String,
        /// How many changes were skipped.
        missed: u64,
    },
    /// A request to a subject nobody serves.
    #[error("request to {subject}: no responders")]
    NoResponders {
        /// The subject.
        subject: String,
    },
    /// A request no server answered in time.
    #[error("request to {subject}: no reply within {timeout:?}")]
    RequestTimeout {
        /// The subject.
        subject: String,
        /// How long the asker waited.
        timeout: std::time::Duration,
    },
    /// The server answered a request with an error.
    #[error("request to {subject}: {kind:?}: {message}")]
    Remote {
        /// The subject.
        subject: String,
        /// The error's kind, as the server classed it.
        kind: ErrorKind,
        /// The server's short explanation.
        message: String,
    },
}

impl HasErrorKind for BusError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            BusError::Io { .. } => ErrorKind::Unavailable,
            BusError::Corrupt { .. } => ErrorKind::InvalidData,
            BusError::OutOfOrder { .. } | BusError::KvConflict { .. } => ErrorKind::Conflict,
            BusError::Nats { .. } | BusError::Lagged { .. } => ErrorKind::Unavailable,
            BusError::Refused { .. } => ErrorKind::Forbidden,
            BusError::InvalidKey { .. } => ErrorKind::BadRequest,
            BusError::Proto { .. } => ErrorKind::InvalidData,
            BusError::NoResponders { .. } => ErrorKind::Unavailable,
            BusError::RequestTimeout { .. } => ErrorKind::Timeout,
            BusError::Remote { kind, .. } => *kind,
        }
    }
}
