//! The archive on a [`Storage`] backend: the I/O around the pure tape model.
//!
//! [`ArchiveStore`] keeps the catalog of one or more streams in memory,
//! rebuilt from a listing at start, and updates it as the recorder commits
//! chunks. Chunk indexes are cached, so serving a range costs one ranged GET
//! per segment and no listing.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use dvr_common::error::HasErrorKind;
use dvr_common::{StreamName, UtcMs};
use dvr_storage::{Storage, StorageError};
use tracing::warn;

use crate::catalog::{plan_rebuild, Catalog, ChunkEntry, TimeRange};
use crate::error::ArchiveError;
use crate::index::ChunkIndex;
use crate::key::{locks_key, ChunkKey};
use crate::lock::LocksFile;
use crate::plan::{plan_range, ChunkRecords, PlanItem};
use crate::retention::{plan_retention, DiskUsage, RetentionPlan, RetentionPolicy};

/// Indexes kept in memory (a 1 h chunk of 2 s segments is 1,800 records, 86 KB).
const CACHED_INDEXES: usize = 512;

/// What loading a stream's archive found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Chunks now in the catalog.
    pub chunks: usize,
    /// Half-written chunks (one object without the other), left for the
    /// recorder to rewrite.
    pub orphans: Vec<String>,
    /// Chunks whose index was unreadable or disagreed with the object.
    pub bad: Vec<String>,
}

/// Failures of archive I/O: the storage's, or the tape model's.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// An object's content is wrong.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
}

impl HasErrorKind for StoreError {
    fn error_kind(&self) -> dvr_common::ErrorKind {
        match self {
            StoreError::Storage(e) => e.error_kind(),
            StoreError::Archive(e) => e.error_kind(),
        }
    }
}

#[derive(Debug, Default)]
struct IndexCache {
    map: HashMap<String, Arc<ChunkIndex>>,
    order: VecDeque<String>,
}

impl IndexCache {
    fn get(&self, key: &str) -> Option<Arc<ChunkIndex>> {
        self.map.get(key).cloned()
    }

    fn put(&mut self, key: String, index: Arc<ChunkIndex>) {
        if self.map.insert(key.clone(), index).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > CACHED_INDEXES {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }

    fn forget(&mut self, key: &str) {
        self.map.remove(key);
        self.order.retain(|k| k != key);
    }
}

/// The archive of every stream on one storage root.
#[derive(Debug)]
pub struct ArchiveStore {
    storage: Arc<dyn Storage>,
    catalog: RwLock<Catalog>,
    indexes: Mutex<IndexCache>,
}

impl ArchiveStore {
    /// An archive on `storage`, with an empty catalog until [`Self::load`].
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Self {
            storage,
            catalog: RwLock::default(),
            indexes: Mutex::default(),
        }
    }

    /// The storage underneath.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Rebuilds a stream's part of the catalog from a listing of its prefix.
    pub async fn load(&self, stream: &StreamName) -> Result<LoadReport, StoreError> {
        let listing = self.storage.list(&format!("{stream}/")).await?;
        let plan = plan_rebuild(listing.iter().map(|o| (o.key.as_str(), o.len)));
        let mut report = LoadReport {
            orphans: plan.orphans,
            ..LoadReport::default()
        };
        let mut entries = Vec::new();
        for (key, size) in plan.complete {
            match self.index(&key).await {
                Ok(index) => match ChunkEntry::from_index(key.clone(), &index, Some(size)) {
                    Ok(entry) => entries.push(entry),
                    Err(e) => {
                        warn!(stream = %stream, key = %key.ts_key(), error = %e, "archive: chunk left out of the catalog");
                        report.bad.push(key.ts_key());
                    }
                },
                Err(e) => {
                    warn!(stream = %stream, key = %key.idx_key(), error = %e, "archive: unreadable chunk index");
                    report.bad.push(key.idx_key());
                }
            }
        }
        report.chunks = entries.len();
        let mut catalog = self.catalog_mut();
        let old: Vec<ChunkKey> = catalog.chunks(stream).map(|e| e.key.clone()).collect();
        for key in old {
            catalog.remove(&key);
        }
        for entry in entries {
            catalog.insert(entry);
        }
        Ok(report)
    }

    /// Records a chunk whose `.ts` object is fully written: writes its index
    /// (the index's presence is what makes a chunk exist) and catalogs it.
    pub async fn commit_chunk(
        &self,
        key: ChunkKey,
        index: ChunkIndex,
    ) -> Result<ChunkEntry, StoreError> {
        let entry = ChunkEntry::from_index(key.clone(), &index, None)?;
        self.storage
            .put(&key.idx_key(), Bytes::from(index.encode()))
            .await?;
        self.indexes_mut().put(key.idx_key(), Arc::new(index));
        self.catalog_mut().insert(entry.clone());
        Ok(entry)
    }

    /// A chunk's index, from the cache or the store.
    pub async fn index(&self, key: &ChunkKey) -> Result<Arc<ChunkIndex>, StoreError> {
        let idx_key = key.idx_key();
        if let Some(index) = self.indexes_mut().get(&idx_key) {
            return Ok(index);
        }
        let bytes = self.storage.get(&idx_key).await?;
        let index = Arc::new(ChunkIndex::decode(&bytes)?);
        self.indexes_mut().put(idx_key, Arc::clone(&index));
        Ok(index)
    }

    /// The plan serving `[from, to)` of a stream: segments and gaps. A chunk
    /// whose index cannot be read becomes a gap (logged with its key), so a
    /// damaged object costs its own time only.
    pub async fn plan(
        &self,
        stream: &StreamName,
        from: UtcMs,
        to: UtcMs,
    ) -> Result<Vec<PlanItem>, StoreError> {
        let chunks: Vec<ChunkEntry> = self
            .catalog_read()
            .chunks_overlapping(stream, from, to)
            .into_iter()
            .cloned()
            .collect();
        let mut loaded = Vec::with_capacity(chunks.len());
        for chunk in &chunks {
            match self.index(&chunk.key).await {
                Ok(index) => loaded.push((chunk.key.clone(), index)),
                Err(StoreError::Storage(e)) if e.error_kind().is_transient() => {
                    return Err(e.into())
                }
                Err(e) => {
                    warn!(key = %chunk.key.idx_key(), error = %e, "archive: chunk index unreadable, serving a gap");
                }
            }
        }
        let records: Vec<ChunkRecords<'_>> = loaded
            .iter()
            .map(|(key, index)| ChunkRecords {
                key,
                records: &index.records,
            })
            .collect();
        Ok(plan_range(&records, from, to))
    }

    /// Bytes `range` of a chunk object.
    pub async fn read(
        &self,
        ts_key: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, StoreError> {
        Ok(self.storage.get_range(ts_key, range).await?)
    }

    /// The catalogued chunks of a stream, oldest first.
    pub fn chunks(&self, stream: &StreamName) -> Vec<ChunkEntry> {
        self.catalog_read().chunks(stream).cloned().collect()
    }

    /// The seq of the last archived segment of a stream.
    pub fn last_seq(&self, stream: &StreamName) -> Option<u64> {
        self.catalog_read().chunks(stream).map(|c| c.last_seq).max()
    }

    /// Start and end of a stream's archive.
    pub fn extent(&self, stream: &StreamName) -> Option<TimeRange> {
        self.catalog_read().recorded_span(stream)
    }

    /// Recorded ranges of a stream within `[from, to)`.
    pub fn ranges(&self, stream: &StreamName, from: UtcMs, to: UtcMs) -> Vec<TimeRange> {
        self.catalog_read().ranges(stream, from, to)
    }

    /// The stream's locks, from `locks.json` (none if it does not exist).
    pub async fn locks(&self, stream: &StreamName) -> Result<LocksFile, StoreError> {
        match self.storage.get(&locks_key(stream)).await {
            Ok(bytes) => Ok(LocksFile::from_json(stream, &bytes)?),
            Err(e) if e.is_not_found() => Ok(LocksFile::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes what the retention policy expires; never a locked chunk.
    pub async fn enforce_retention(
        &self,
        stream: &StreamName,
        policy: &RetentionPolicy,
        now: UtcMs,
        disk: Option<DiskUsage>,
    ) -> Result<RetentionPlan, StoreError> {
        let locks = self.locks(stream).await?;
        let plan = {
            let catalog = self.catalog_read();
            plan_retention(catalog.chunks(stream), &locks.locks, policy, now, disk)
        };
        if plan.delete.is_empty() {
            return Ok(plan);
        }
        // Catalog first, so nothing is served from an object being deleted.
        {
            let mut catalog = self.catalog_mut();
            for (key, _) in &plan.delete {
                catalog.remove(key);
            }
        }
        for (key, _) in &plan.delete {
            self.indexes_mut().forget(&key.idx_key());
        }
        self.storage.delete_many(&plan.object_keys()).await?;
        Ok(plan)
    }

    fn catalog_read(&self) -> std::sync::RwLockReadGuard<'_, Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn catalog_mut(&self) -> std::sync::RwLockWriteGuard<'_, Catalog> {
        self.catalog
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn indexes_mut(&self) -> std::sync::MutexGuard<'_, IndexCache> {
        self.indexes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
