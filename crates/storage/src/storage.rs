//! The one interface every archive backend implements.
//!
//! The recorder, the packager, the catalog and retention only ever see
//! `Arc<dyn Storage>`; which store sits behind it is decided once, by the
//! [`resolver`](crate::resolver) from the archive root URI. Keys are always
//! relative to that root and are validated by [`ObjectKey`](crate::ObjectKey)
//! before any request leaves the process.

use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use dvr_common::UtcMs;

use crate::error::{Op, StorageError, StorageResult};
use crate::upload::{FileUpload, UploadSource};

/// What the store knows about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The key, relative to the storage root.
    pub key: String,
    /// Size in bytes.
    pub len: u64,
    /// When the object was last written, if the store reports it.
    pub last_modified: Option<UtcMs>,
}

/// A streamed upload: chunks go out as parts of a multipart upload (S3), as
/// segments of a static large object (Swift) or straight to a file, so an
/// object of any size never has to fit in memory.
///
/// Nothing is visible under the key until [`ObjectWriter::finish`] returns
/// `Ok`. Dropping a writer without finishing leaves no object behind, but may
/// leave uploaded parts until the store expires them; call
/// [`ObjectWriter::abort`] to clean up eagerly.
#[async_trait]
pub trait ObjectWriter: Send + fmt::Debug {
    /// Appends `chunk` to the object being written.
    async fn write(&mut self, chunk: Bytes) -> StorageResult<()>;

    /// Completes the upload and makes the object visible; returns its length.
    async fn finish(self: Box<Self>) -> StorageResult<u64>;

    /// Abandons the upload and removes the parts already sent.
    async fn abort(self: Box<Self>) -> StorageResult<()>;
}

/// An object store holding the archive.
///
/// Every method is safe to call concurrently. `NotFound` is reported as
/// [`StorageError::NotFound`](crate::StorageError::NotFound), distinct from
/// transient failures, which [`StorageError::is_transient`](crate::StorageError::is_transient)
/// identifies for the retry decorator.
#[async_trait]
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Writes `data` under `key`, replacing any previous object.
    async fn put(&self, key: &str, data: Bytes) -> StorageResult<()>;

    /// Starts a streamed upload to `key`. The writer is not retried as a
    /// whole by the retry decorator: a caller that can replay its input should
    /// prefer [`Storage::put_source`].
    async fn put_writer(&self, key: &str) -> StorageResult<Box<dyn ObjectWriter>>;

    /// Uploads `source` to `key` and returns the number of bytes written: as
    /// one streamed PUT where the store allows objects of that size (S3 and
    /// Swift, up to 5 GiB), else as a multipart or segmented upload. Safe to
    /// retry: the source is read again from the start. A source that yields
    /// a different number of bytes than it announced fails the upload.
    async fn put_source(&self, key: &str, source: Arc<dyn UploadSource>) -> StorageResult<u64>;

    /// Uploads the local file at `path` to `key` ([`Storage::put_source`]
    /// with a [`FileUpload`]).
    async fn put_file(&self, key: &str, path: &Path) -> StorageResult<u64> {
        let source = FileUpload::open(path)
            .await
            .map_err(|source| StorageError::LocalFile {
                op: Op::PutFile,
                key: key.to_owned(),
                uri: self.uri().to_owned(),
                path: path.display().to_string(),
                source,
            })?;
        self.put_source(key, Arc::new(source)).await
    }

    /// Reads the whole object.
    async fn get(&self, key: &str) -> StorageResult<Bytes>;

    /// Reads the bytes `range` of the object. The range must lie inside the
    /// object: a range that ends past the end is
    /// [`StorageError::InvalidRange`](crate::StorageError::InvalidRange), never
    /// a silently short read.
    async fn get_range(&self, key: &str, range: Range<u64>) -> StorageResult<Bytes>;

    /// Size and modification time of `key`, or `None` if there is no such
    /// object.
    async fn stat(&self, key: &str) -> StorageResult<Option<ObjectMeta>>;

    /// Every object whose key starts with `prefix`, recursively, sorted by
    /// key. Pagination is handled inside.
    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>>;

    /// Removes `key`. Removing a missing key succeeds.
    async fn delete(&self, key: &str) -> StorageResult<()>;

    /// Removes every key in `keys`, in batches where the store supports it.
    /// Missing keys are not an error.
    async fn delete_many(&self, keys: &[String]) -> StorageResult<()>;

    /// Verifies at start that the store is reachable, the bucket or container
    /// exists and the credentials are accepted, so a misconfiguration is
    /// reported as one clear line instead of failing the first upload.
    async fn check(&self) -> StorageResult<()>;

    /// The archive root this storage serves, with credentials masked; used in
    /// errors and logs.
    fn uri(&self) -> &str;
}
