//! The one mapping from "what went wrong" to "what the client is told".
//!
//! Each library crate has its own `thiserror` enum whose variants carry the
//! context (stream, time range, object key); each implements [`HasErrorKind`],
//! and only [`ErrorKind`] knows HTTP statuses. Services never pick a status
//! code by hand.

use serde::{Deserialize, Serialize};

/// The class of an error, as far as a caller can act on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request is malformed or asks for something impossible.
    BadRequest,
    /// No credentials, or credentials that do not check out.
    Unauthorized,
    /// Valid credentials that do not grant this.
    Forbidden,
    /// The stream, range or object does not exist.
    NotFound,
    /// The request conflicts with current state (an existing stream, a lock).
    Conflict,
    /// The input is well formed but its content cannot be used (corrupt media).
    InvalidData,
    /// A dependency (object store, bus) is unreachable; retrying may help.
    Unavailable,
    /// A dependency did not answer in time.
    Timeout,
    /// A bug or an unexpected state on our side.
    Internal,
}

impl ErrorKind {
    /// The HTTP status that fits this kind.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::InvalidData => 422,
            ErrorKind::Unavailable => 503,
            ErrorKind::Timeout => 504,
            ErrorKind::Internal => 500,
        }
    }

    /// Whether retrying the same operation later may succeed.
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::Unavailable | ErrorKind::Timeout)
    }
}

/// Implemented by every library error enum.
pub trait HasErrorKind {
    /// The class of this error.
    fn error_kind(&self) -> ErrorKind;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_distinct_and_transient_kinds_are_5xx() {
        let all = [
            ErrorKind::BadRequest,
            ErrorKind::Unauthorized,
            ErrorKind::Forbidden,
            ErrorKind::NotFound,
            ErrorKind::Conflict,
            ErrorKind::InvalidData,
            ErrorKind::Unavailable,
            ErrorKind::Timeout,
            ErrorKind::Internal,
        ];
        let mut statuses: Vec<u16> = all.iter().map(|k| k.http_status()).collect();
        statuses.sort_unstable();
        statuses.dedup();
        assert_eq!(statuses.len(), all.len());
        for kind in all {
            if kind.is_transient() {
                assert!(kind.http_status() >= 500, "{kind:?}");
            }
        }
    }
}
