//! One [`ArchiveStore`] per archive root, shared by every part of a process.
//!
//! A store holds the root's catalog, its memory cache and its locks, so two
//! stores on one root would disagree: a lock the API adds would not be seen
//! by the packager, a chunk the recorder writes would not be in the API's
//! catalog. The recorder, the packager, the API and the offline tools
//! (`dvr reindex`, `dvr ctl`) therefore ask the registry, which opens a root
//! once and hands out the same `Arc` afterwards.
//!
//! Opening comes in two strengths. [`ArchiveRegistry::open`] checks the root
//! at once (creates a `file://` directory, asks the backend whether the
//! bucket and credentials work), for start-up and for the tools, where an
//! unreachable store must fail loudly. [`ArchiveRegistry::get`] makes no
//! request, for request paths where an unreachable store fails on use with a
//! fitting status; a later `open` of the same root still runs the check once.
//!
//! A stream's archive is opened through [`ArchiveRegistry::open_stream`]:
//! the root's store, the stream's catalog loaded from a listing (so a
//! recorder taking a stream over continues after the previous owner) and its
//! disk cache. The registry remembers which store serves which stream, so
//! whoever follows the catalog ([`ArchiveRegistry::stream_store`]) refreshes
//! the one copy every part of the process reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use dvr_common::config::{CacheConfig, DvrConfig};
use dvr_common::{Clock, ErrorKind, HasErrorKind, StreamName};
use dvr_storage::{Storage, StorageConfig, StorageError, StorageUri};
use tracing::debug;

use crate::cache::MemoryCache;
use crate::store::{ArchiveStore, StoreError};

/// Why a root could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The root is not a storage URI.
    #[error("archive root: {source}")]
    Root {
        /// The root as given.
        root: String,
        /// Why it does not parse.
        source: StorageError,
    },
    /// A `file://` root whose directory cannot be created.
    #[error("cannot create archive root {dir}: {source}")]
    CreateDir {
        /// The directory.
        dir: String,
        /// The file system's answer.
        source: std::io::Error,
    },
    /// The backend cannot be set up or does not answer (missing bucket,
    /// refused credentials, dead endpoint); the storage error says what to
    /// check.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why a stream's archive could not be opened; every variant names the
/// stream.
#[derive(Debug, thiserror::Error)]
pub enum StreamArchiveError {
    /// The root's store.
    #[error("stream {stream}: {source}")]
    Root {
        /// The stream.
        stream: StreamName,
        /// Why the root did not open.
        source: RegistryError,
    },
    /// The stream's catalog could not be listed.
    #[error("stream {stream}: cannot load its archive: {source}")]
    Load {
        /// The stream.
        stream: StreamName,
        /// The store's answer.
        source: StoreError,
    },
    /// The stream's disk cache could not be opened.
    #[error("stream {stream}: cannot open its cache at {path}: {source}")]
    Cache {
        /// The stream.
        stream: StreamName,
        /// The cache directory configured.
        path: String,
        /// The file system's answer.
        source: std::io::Error,
    },
}

impl HasErrorKind for RegistryError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            RegistryError::Root { source, .. } | RegistryError::Storage(source) => {
                source.error_kind()
            }
            RegistryError::CreateDir { .. } => ErrorKind::Internal,
        }
    }
}

/// A store and whether its root has been checked.
#[derive(Debug)]
struct Entry {
    store: Arc<ArchiveStore>,
    checked: bool,
}

/// Archive stores by root URI; see the module docs.
#[derive(Debug)]
pub struct ArchiveRegistry {
    storage: StorageConfig,
    memory_cache_bytes: u64,
    open: Mutex<HashMap<String, Entry>>,
    /// The store each stream opened with [`ArchiveRegistry::open_stream`]
    /// is in.
    streams: Mutex<HashMap<StreamName, Arc<ArchiveStore>>>,
}

impl ArchiveRegistry {
    /// Opens roots with `storage`'s settings, each store with a memory cache
    /// of `memory_cache_bytes` (0: none, for tools that read each object
    /// once).
    pub fn new(storage: StorageConfig, memory_cache_bytes: u64) -> Self {
        Self {
            storage,
            memory_cache_bytes,
            open: Mutex::default(),
            streams: Mutex::default(),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Uses `store` for `root` from now on, as if checked.
    pub fn insert(&self, root: &str, store: Arc<ArchiveStore>) {
        self.map().insert(
            root.to_owned(),
            Entry {
                store,
                checked: true,
            },
        );
    }

    /// The store for `root`, made if needed without any request: an
    /// unreachable store fails on use.
    pub fn get(&self, root: &str) -> Result<Arc<ArchiveStore>, RegistryError> {
        if let Some(entry) = self.map().get(root) {
            return Ok(Arc::clone(&entry.store));
        }
        let store = Arc::new(self.store(self.resolve(root)?));
        Ok(Arc::clone(
            &self
                .map()
                .entry(root.to_owned())
                .or_insert(Entry {
                    store,
                    checked: false,
                })
                .store,
        ))
    }

    /// The store for `root`, its storage checked the first time: a
    /// `file://` directory is created, and a missing bucket, refused
    /// credentials or a dead endpoint is an error naming the root.
    pub async fn open(&self, root: &str) -> Result<Arc<ArchiveStore>, RegistryError> {
        let known = self
            .map()
            .get(root)
            .map(|e| (Arc::clone(&e.store), e.checked));
        if let Some((store, true)) = &known {
            return Ok(Arc::clone(store));
        }
        if let Some(dir) = root.strip_prefix("file://") {
            std::fs::create_dir_all(dir).map_err(|source| RegistryError::CreateDir {
                dir: dir.to_owned(),
                source,
            })?;
        }
        let store = match known {
            Some((store, _)) => store,
            None => Arc::new(self.store(self.resolve(root)?)),
        };
        store.storage().check().await?;
        let mut map = self.map();
        let entry = map.entry(root.to_owned()).or_insert(Entry {
            store,
            checked: true,
        });
        entry.checked = true;
        Ok(Arc::clone(&entry.store))
    }

    /// A stream's archive: its root opened (checked), its catalog loaded
    /// from a listing and, with `cache`, its disk cache opened.
    pub async fn open_stream(
        &self,
        stream: &StreamName,
        dvr: &DvrConfig,
        cache: Option<&CacheConfig>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<ArchiveStore>, StreamArchiveError> {
        let store = self
            .open(&dvr.root)
            .await
            .map_err(|source| StreamArchiveError::Root {
                stream: stream.clone(),
                source,
            })?;
        let report = store
            .load(stream)
            .await
            .map_err(|source| StreamArchiveError::Load {
                stream: stream.clone(),
                source,
            })?;
        self.streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(stream.clone(), Arc::clone(&store));
        debug!(stream = %stream, chunks = report.chunks, orphans = report.orphans.len(), bad = report.bad.len(), "archive loaded");
        if let Some(cache) = cache {
            store
                .enable_disk_cache(stream, cache, clock)
                .map_err(|source| StreamArchiveError::Cache {
                    stream: stream.clone(),
                    path: cache.path.clone(),
                    source,
                })?;
        }
        Ok(store)
    }

    /// The store a stream was opened in by [`ArchiveRegistry::open_stream`].
    pub fn stream_store(&self, stream: &StreamName) -> Option<Arc<ArchiveStore>> {
        self.streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(stream)
            .cloned()
    }

    fn resolve(&self, root: &str) -> Result<Arc<dyn Storage>, RegistryError> {
        let uri: StorageUri = root.parse().map_err(|source| RegistryError::Root {
            root: root.to_owned(),
            source,
        })?;
        Ok(dvr_storage::resolve(&uri, &self.storage)?)
    }

    fn store(&self, storage: Arc<dyn Storage>) -> ArchiveStore {
        ArchiveStore::with_memory_cache(storage, MemoryCache::new(self.memory_cache_bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> ArchiveRegistry {
        ArchiveRegistry::new(StorageConfig::default(), 0)
    }

    fn file_root(dir: &std::path::Path) -> String {
        format!("file://{}", dir.display())
    }

    #[tokio::test]
    async fn same_root_same_store() {
        let dir = tempfile::tempdir().unwrap();
        let root = file_root(&dir.path().join("archive"));
        let registry = registry();
        let opened = registry.open(&root).await.unwrap();
        assert!(dir.path().join("archive").is_dir(), "open creates the root");
        let again = registry.open(&root).await.unwrap();
        let got = registry.get(&root).unwrap();
        assert!(Arc::ptr_eq(&opened, &again));
        assert!(Arc::ptr_eq(&opened, &got));

        let other = registry
            .open(&file_root(&dir.path().join("other")))
            .await
            .unwrap();
        assert!(!Arc::ptr_eq(&opened, &other), "another root, another store");
    }

    #[tokio::test]
    async fn get_then_open_keeps_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let root = file_root(dir.path());
        let registry = registry();
        let got = registry.get(&root).unwrap();
        let opened = registry.open(&root).await.unwrap();
        assert!(Arc::ptr_eq(&got, &opened));
    }

    #[tokio::test]
    async fn inserted_store_is_handed_out() {
        let dir = tempfile::tempdir().unwrap();
        let root = file_root(dir.path());
        let registry = registry();
        let uri: StorageUri = root.parse().unwrap();
        let storage = dvr_storage::resolve(&uri, &StorageConfig::default()).unwrap();
        let store = Arc::new(ArchiveStore::new(storage));
        registry.insert(&root, Arc::clone(&store));
        assert!(Arc::ptr_eq(&store, &registry.get(&root).unwrap()));
        assert!(Arc::ptr_eq(&store, &registry.open(&root).await.unwrap()));
    }

    #[tokio::test]
    async fn bad_root_is_a_clear_error() {
        let registry = registry();
        let e = registry.open("ftp://host/x").await.unwrap_err();
        assert!(matches!(e, RegistryError::Root { ref root, .. } if root == "ftp://host/x"));
        assert!(e.to_string().starts_with("archive root: "), "{e}");
        assert!(registry.get("ftp://host/x").is_err());

        // A file:// root under a regular file cannot be created.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        let root = file_root(&file.join("archive"));
        let e = registry.open(&root).await.unwrap_err();
        assert!(matches!(e, RegistryError::CreateDir { .. }), "{e:?}");
        assert!(
            e.to_string().starts_with(&format!(
                "cannot create archive root {}",
                file.join("archive").display()
            )),
            "{e}"
        );
        // Nothing was kept for the failed root.
        assert!(registry.map().get(&root).is_none());
    }
}
