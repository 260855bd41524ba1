//! From an archive root URI and the storage config to a ready
//! `Arc<dyn Storage>`, with the decorators in their fixed order: the backend,
//! inside a timeout per attempt, inside the retry loop, inside one trace
//! span per read.

use std::sync::Arc;

use dvr_common::{Clock, SystemClock};

use crate::config::StorageConfig;
use crate::error::StorageResult;
use crate::opendal::OpendalStorage;
use crate::retry::RetryStorage;
use crate::storage::Storage;
use crate::timeout::TimeoutStorage;
use crate::traced::TracedStorage;
use crate::uri::StorageUri;

/// Builds the storage for `uri`: backend, timeout, retry, tracing. Nothing is
/// contacted; call [`Storage::check`] at start.
pub fn resolve(uri: &StorageUri, config: &StorageConfig) -> StorageResult<Arc<dyn Storage>> {
    resolve_with_clock(uri, config, Arc::new(SystemClock))
}

/// [`resolve`] with the clock that decides when a Swift token is renewed.
pub fn resolve_with_clock(
    uri: &StorageUri,
    config: &StorageConfig,
    clock: Arc<dyn Clock>,
) -> StorageResult<Arc<dyn Storage>> {
    let backend: Arc<dyn Storage> = Arc::new(OpendalStorage::new(uri, config, clock)?);
    Ok(decorate(backend, config))
}

/// Wraps any backend in the standard decorators.
pub fn decorate(backend: Arc<dyn Storage>, config: &StorageConfig) -> Arc<dyn Storage> {
    let timed: Arc<dyn Storage> = Arc::new(TimeoutStorage::new(backend, &config.timeout));
    let retried: Arc<dyn Storage> = Arc::new(RetryStorage::new(timed, config.retry.clone()));
    Arc::new(TracedStorage::new(retried))
}
