//! Everything that can go wrong in the tape model, with the key or the
//! byte position that lets an operator find the bad object.

use dvr_common::{ErrorKind, HasErrorKind};

/// The archive crate's error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    /// An object key that is not one of ours.
    #[error("object key {key:?} is not an archive key: {reason}")]
    InvalidKey {
        /// The key as listed.
        key: String,
        /// What does not match the layout.
        reason: String,
    },
    /// The index ends before the part being read.
    #[error("chunk index truncated: {what} needs {needed} bytes, only {available} left")]
    IndexTruncated {
        /// The part being read.
        what: &'static str,
        /// Bytes needed.
        needed: u64,
        /// Bytes left.
        available: u64,
    },
    /// The first bytes are not an index's magic.
    #[error("not a chunk index (bad magic {found:02x?})")]
    IndexBadMagic {
        /// The first four bytes found.
        found: [u8; 4],
    },
    /// A format version this build cannot read.
    #[error("chunk index version {found} is not supported (this build reads {supported})")]
    IndexUnknownVersion {
        /// The version in the header.
        found: u16,
        /// The version this build writes and reads.
        supported: u16,
    },
    /// The trailer checksum does not match the content.
    #[error("chunk index checksum mismatch: stored {stored:08x}, computed {computed:08x}")]
    IndexChecksum {
        /// CRC-32 in the trailer.
        stored: u32,
        /// CRC-32 of the bytes.
        computed: u32,
    },
    /// The structure decodes but does not make sense.
    #[error("chunk index inconsistent: {0}")]
    IndexInconsistent(String),
    /// An index for a chunk with no segment.
    #[error("chunk index has no segment")]
    IndexEmpty,
    /// The chunk object's size disagrees with its index (a torn upload).
    #[error("chunk {key:?} is {object_bytes} bytes but its index describes {index_bytes}")]
    ChunkSizeMismatch {
        /// The chunk's `.ts` key.
        key: String,
        /// Bytes the index accounts for.
        index_bytes: u64,
        /// Bytes the object holds.
        object_bytes: u64,
    },
    /// The key names a different first segment or hour than the index.
    #[error("chunk {key:?} does not match its index: {reason}")]
    ChunkKeyMismatch {
        /// The chunk's `.ts` key.
        key: String,
        /// What differs.
        reason: String,
    },
    /// `locks.json` could not be read or written.
    #[error("locks.json of stream {stream:?}: {reason}")]
    Locks {
        /// The stream.
        stream: String,
        /// The JSON error or the invalid lock.
        reason: String,
    },
}

impl HasErrorKind for ArchiveError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            ArchiveError::InvalidKey { .. } => ErrorKind::BadRequest,
            _ => ErrorKind::InvalidData,
        }
    }
}
