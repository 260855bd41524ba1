//! The archives the API edits locks in and reindexes: the running
//! process's own stores where it has them (so a lock or a reindex is seen
//! by its packager at once), else opened on first use from the stream's
//! `dvr` root.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use dvr_archive::store::ArchiveStore;
use dvr_archive::MemoryCache;
use dvr_common::StreamName;
use dvr_storage::{StorageConfig, StorageUri};

use crate::error::ApiError;

/// Archive stores by root URI.
#[derive(Debug, Default)]
pub struct Archives {
    storage: StorageConfig,
    open: Mutex<HashMap<String, Arc<ArchiveStore>>>,
}

impl Archives {
    /// Opens roots it has not been given with `storage`'s settings.
    pub fn new(storage: StorageConfig) -> Self {
        Self {
            storage,
            open: Mutex::default(),
        }
    }

    /// Uses `store` for `root` (the running process's store).
    pub fn insert(&self, root: &str, store: Arc<ArchiveStore>) {
        self.map().insert(root.to_owned(), store);
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ArchiveStore>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The store for `root`, opened if needed (no request is made here:
    /// an unreachable store fails on use, with 503).
    pub fn get(&self, stream: &StreamName, root: &str) -> Result<Arc<ArchiveStore>, ApiError> {
        if let Some(store) = self.map().get(root) {
            return Ok(Arc::clone(store));
        }
        let uri: StorageUri = root.parse().map_err(|e| {
            ApiError::conflict(format!("stream {stream}: its archive root {root}: {e}"))
        })?;
        let storage = dvr_storage::resolve(&uri, &self.storage).map_err(|e| {
            ApiError::from_kind(&format!("stream {stream}: opening its archive"), &e)
        })?;
        let store = Arc::new(ArchiveStore::with_memory_cache(
            storage,
            MemoryCache::new(0),
        ));
        Ok(Arc::clone(
            self.map().entry(root.to_owned()).or_insert(store),
        ))
    }
}
