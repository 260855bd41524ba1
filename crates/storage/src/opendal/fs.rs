//! The file backend: an OpenDAL `Fs` operator rooted at the archive
//! directory.
//!
//! Writes go to a temporary file inside the root and are renamed into
//! place, so a crash or an aborted upload never leaves a half-written chunk
//! under its final key; the start-up check creates the root, so a fresh
//! machine needs no manual `mkdir`.

use std::path::Path;

use dvr_common::error::ErrorKind;
use opendal::Operator;

use crate::error::{StorageError, StorageResult};
use crate::uri::StorageUri;

/// Where the file backend writes an object before renaming it into place.
/// Inside the root (rename needs one filesystem), hidden from listings.
pub(super) const TMP_DIR: &str = ".dvr-tmp";

/// The operator for a `file://` root, writing through [`TMP_DIR`].
pub(super) fn operator(uri: &StorageUri) -> opendal::Result<Operator> {
    let tmp = format!("{}/{TMP_DIR}", uri.path().trim_end_matches('/'));
    let builder = opendal::services::Fs::default()
        .root(uri.path())
        .atomic_write_dir(&tmp);
    Operator::new(builder)
}

/// Creates the archive directory `root` (and its parents) if missing.
pub(super) async fn create_root(root: &Path, uri: &str) -> StorageResult<()> {
    tokio::fs::create_dir_all(root)
        .await
        .map_err(|e| StorageError::Unusable {
            uri: uri.to_owned(),
            detail: format!("cannot create the archive directory: {e}"),
            kind: ErrorKind::Internal,
        })
}
