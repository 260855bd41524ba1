//! The storage crate's one error type.
//!
//! Every variant that comes from a store names the operation, the key and
//! the archive URI (which never holds credentials), so a log line is enough
//! to find the object. The text from the underlying client is scrubbed of
//! every configured secret before it is stored here.

use std::ops::Range;
use std::time::Duration;

use dvr_common::error::{ErrorKind, HasErrorKind};

/// Result of every storage operation.
pub type StorageResult<T> = Result<T, StorageError>;

/// The storage operation that failed, for error messages and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// [`Storage::put`](crate::Storage::put).
    Put,
    /// [`Storage::put_writer`](crate::Storage::put_writer) and its writer.
    PutStream,
    /// [`Storage::put_source`](crate::Storage::put_source) and
    /// [`Storage::put_file`](crate::Storage::put_file).
    PutFile,
    /// [`Storage::get`](crate::Storage::get).
    Get,
    /// [`Storage::get_range`](crate::Storage::get_range).
    GetRange,
    /// [`Storage::stat`](crate::Storage::stat).
    Stat,
    /// [`Storage::list`](crate::Storage::list).
    List,
    /// [`Storage::delete`](crate::Storage::delete).
    Delete,
    /// [`Storage::delete_many`](crate::Storage::delete_many).
    DeleteMany,
    /// [`Storage::check`](crate::Storage::check).
    Check,
    /// Authentication against Swift (tempauth or Keystone).
    Auth,
}

impl Op {
    /// The operation's name as it appears in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::PutStream => "streamed put",
            Op::PutFile => "upload",
            Op::Get => "get",
            Op::GetRange => "ranged get",
            Op::Stat => "stat",
            Op::List => "list",
            Op::Delete => "delete",
            Op::DeleteMany => "delete many",
            Op::Check => "check",
            Op::Auth => "authenticate",
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong talking to the archive.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The key (or list prefix) is not acceptable; no request was made.
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey {
        /// The offending key, shortened if long.
        key: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// The archive root URI or the storage config is unusable.
    #[error("invalid storage configuration for {uri}: {detail}")]
    Config {
        /// The archive root, credentials masked.
        uri: String,
        /// What is wrong.
        detail: String,
    },

    /// No object under that key (or the bucket/container is missing).
    #[error("{op} {key:?} on {uri}: not found")]
    NotFound {
        /// The operation.
        op: Op,
        /// The key.
        key: String,
        /// The archive root, credentials masked.
        uri: String,
    },

    /// The requested byte range does not lie inside the object.
    #[error("{op} {key:?} bytes {}..{} on {uri}: range not satisfiable ({detail})", range.start, range.end)]
    InvalidRange {
        /// The operation.
        op: Op,
        /// The key.
        key: String,
        /// The archive root, credentials masked.
        uri: String,
        /// The range asked for.
        range: Range<u64>,
        /// What the store said or what was found.
        detail: String,
    },

    /// The store refused the credentials or the access.
    #[error("{op} {key:?} on {uri}: access denied ({detail})")]
    Denied {
        /// The operation.
        op: Op,
        /// The key.
        key: String,
        /// The archive root, credentials masked.
        uri: String,
        /// What the store said, secrets removed.
        detail: String,
    },

    /// A failure that may go away: connection refused or reset, 5xx, 429.
    #[error("{op} {key:?} on {uri}: temporarily unavailable ({detail})")]
    Unavailable {
        /// The operation.
        op: Op,
        /// The key.
        key: String,
        /// The archive root, credentials masked.
        uri: String,
        /// What the store or the network said, secrets removed.
        detail: String,
    },

    /// The operation did not finish in time.
    #[error("{op} {key:?} on {uri}: timed out after {after:?}")]
    Timeout {
        /// The operation.
        op: Op,
        /// The key.
        key: String,
        /// The archive root, credentials masked.
        uri: String,
        /// The limit that was hit.
        after: Duration,
    },

    /// Reading the source of a [`put_source`](crate::Storage::put_source)
    /// (a local file, the live log).
    #[error("{op} {key:?} on {uri}: reading {path}: {source}")]
    LocalFile {
        /// The operation.
        op: Op,
        /// The key.
        key: String,
        /// The archive root, credentials masked.
        uri: String,
        /// Where the bytes come from ([`UploadSource::origin`](crate::UploadSource::origin)).
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The start-up check found the store unusable: missing bucket or
    /// container, rejected credentials, unreachable endpoint.
    #[error("storage {uri} is not usable: {detail}")]
    Unusable {
        /// The archive root, credentials masked.
        uri: String,
        /// One line saying what is wrong and what to check.
        detail: String,
        /// The class of the failure.
        kind: ErrorKind,
    },

    /// Anything else the store reported.
    #[error("{op} {key:?} on {uri}: {detail}")]
    Other {
        /// The operation.
        op: Op,
        /// The key.
        key: String,
        /// The archive root, credentials masked.
        uri: String,
        /// What the store said, secrets removed.
        detail: String,
    },
}

impl StorageError {
    /// Whether retrying the same request later may succeed.
    pub fn is_transient(&self) -> bool {
        self.error_kind().is_transient()
    }

    /// Whether this is a missing object (or bucket).
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }
}

impl HasErrorKind for StorageError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            StorageError::InvalidKey { .. } | StorageError::InvalidRange { .. } => {
                ErrorKind::BadRequest
            }
            StorageError::Config { .. } | StorageError::Other { .. } => ErrorKind::Internal,
            StorageError::LocalFile { .. } => ErrorKind::Internal,
            StorageError::NotFound { .. } => ErrorKind::NotFound,
            StorageError::Denied { .. } => ErrorKind::Forbidden,
            StorageError::Unavailable { .. } => ErrorKind::Unavailable,
            StorageError::Timeout { .. } => ErrorKind::Timeout,
            StorageError::Unusable { kind, .. } => *kind,
        }
    }
}
