//! The archive on a [`Storage`] backend: the I/O around the pure tape model.
//!
//! [`ArchiveStore`] keeps the catalog of one or more streams in memory,
//! rebuilt from a listing at start, and updates it as the recorder commits
//! chunks. Indexes and segments go through a byte-bounded memory cache
//! ([`crate::cache`]) and, per stream, an optional disk cache
//! ([`crate::disk_cache`]), so serving a range costs at most one ranged GET
//! per segment and never a listing.
//!
//! Damage found while serving (an index that does not decode, a `.ts`
//! object missing or shorter than its index says) is remembered per chunk
//! as the number of bytes still readable: the catalog entry is cut to the
//! segments that remain (or removed), so the recorded ranges, the plans and
//! the playlists show the hole as a gap instead of dead URLs. A later
//! [`ArchiveStore::load`] (`dvr reindex`, a restart) starts afresh.
//!
//! Each index or segment read runs in an `archive.index` / `archive.read`
//! span saying which tier answered (`memory`, `disk` or `store`), with the
//! storage's own span inside when the store was read, so a packager
//! request's trace shows what it cost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use dvr_common::config::CacheConfig;
use dvr_common::error::HasErrorKind;
use dvr_common::{Clock, StreamName, UtcMs};
use dvr_storage::{Storage, StorageError};
use tracing::{warn, Instrument};

use crate::cache::MemoryCache;
use crate::catalog::{plan_rebuild, Catalog, ChunkEntry, TimeRange};
use crate::disk_cache::{DiskCache, DiskCacheConfig};
use crate::error::ArchiveError;
use crate::index::ChunkIndex;
use crate::key::{locks_key, ChunkKey, ObjectKind};
use crate::lock::{Lock, LocksFile};
use crate::plan::{plan_range, record_runs, records_in_range, ChunkRecords, PlanItem, RecordRun};
use crate::retention::{plan_retention, DiskUsage, RetentionPlan, RetentionPolicy};

/// How long [`ArchiveStore::locks_cached`] trusts its copy of `locks.json`:
/// status requests stay cheap, and a lock set by `dvr ctl` from another
/// process shows within seconds. Retention always reads the file.
pub const LOCKS_TTL_MS: i64 = 5_000;

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

/// What [`ArchiveStore::follow_chunk`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Followed {
    /// The chunk was catalogued already.
    Known,
    /// The chunk was added from its index alone.
    Applied,
    /// The chunk did not continue the catalog: the stream was re-listed.
    Reloaded(LoadReport),
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
    /// A chunk object is missing or shorter than its index says: the
    /// segment cannot be served, the rest of the tape can.
    #[error("chunk object {key} is damaged: {reason}")]
    Damaged {
        /// The `.ts` (or `.idx`) key.
        key: String,
        /// What was found.
        reason: String,
    },
    /// The failure of a read that this request waited on (concurrent
    /// misses share one read), as text.
    #[error("{message}")]
    Shared {
        /// The other request's error.
        message: String,
        /// Its kind.
        kind: dvr_common::ErrorKind,
    },
}

impl StoreError {
    /// The error of a shared read, owned again.
    fn unshare(e: Arc<StoreError>) -> StoreError {
        Arc::try_unwrap(e).unwrap_or_else(|e| match &*e {
            StoreError::Archive(a) => StoreError::Archive(a.clone()),
            StoreError::Damaged { key, reason } => StoreError::Damaged {
                key: key.clone(),
                reason: reason.clone(),
            },
            other => StoreError::Shared {
                message: other.to_string(),
                kind: other.error_kind(),
            },
        })
    }
}

impl HasErrorKind for StoreError {
    fn error_kind(&self) -> dvr_common::ErrorKind {
        match self {
            StoreError::Storage(e) => e.error_kind(),
            StoreError::Archive(e) => e.error_kind(),
            StoreError::Damaged { .. } => dvr_common::ErrorKind::NotFound,
            StoreError::Shared { kind, .. } => *kind,
        }
    }
}

/// The archive of every stream on one storage root.
#[derive(Debug)]
pub struct ArchiveStore {
    storage: Arc<dyn Storage>,
    catalog: RwLock<Catalog>,
    memory: MemoryCache,
    disks: RwLock<HashMap<StreamName, Arc<DiskCache>>>,
    /// Damaged chunks: bytes of the `.ts` object still readable.
    damaged: Mutex<HashMap<ChunkKey, u64>>,
    /// Each stream's `locks.json` and when it was read.
    locks: Mutex<HashMap<StreamName, (UtcMs, LocksFile)>>,
}

impl ArchiveStore {
    /// An archive on `storage` with the default memory cache, and an empty
    /// catalog until [`Self::load`].
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Self::with_memory_cache(storage, MemoryCache::default())
    }

    /// An archive on `storage` caching in `memory`.
    pub fn with_memory_cache(storage: Arc<dyn Storage>, memory: MemoryCache) -> Self {
        Self {
            storage,
            catalog: RwLock::default(),
            memory,
            disks: RwLock::default(),
            damaged: Mutex::default(),
            locks: Mutex::default(),
        }
    }

    /// Caches `stream`'s segments on local disk as well.
    pub fn set_disk_cache(&self, stream: StreamName, cache: Arc<DiskCache>) {
        self.disks
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(stream, cache);
    }

    /// Opens the disk cache a stream's config asks for, in
    /// `{path}/{stream}/` (so streams sharing an SSD keep their own
    /// bounds), taking over what a previous run left there. Blocking: call
    /// it at start.
    pub fn enable_disk_cache(
        &self,
        stream: &StreamName,
        config: &CacheConfig,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<Arc<DiskCache>> {
        let cache = Arc::new(DiskCache::open(
            DiskCacheConfig {
                path: std::path::Path::new(&config.path).join(stream.as_str()),
                max_bytes: config.max_size_bytes,
                depth_ms: config.depth_ms,
                misses: config.misses,
            },
            clock,
        )?);
        self.set_disk_cache(stream.clone(), Arc::clone(&cache));
        Ok(cache)
    }

    /// The storage underneath.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The memory cache.
    pub fn memory_cache(&self) -> &MemoryCache {
        &self.memory
    }

    /// Rebuilds a stream's part of the catalog from a listing of its prefix.
    /// Reads only (a listing and each index); forgets earlier damage.
    pub async fn load(&self, stream: &StreamName) -> Result<LoadReport, StoreError> {
        let listing = self.storage.list(&format!("{stream}/")).await?;
        let plan = plan_rebuild(listing.iter().map(|o| (o.key.as_str(), o.len)));
        let mut report = LoadReport {
            orphans: plan.orphans,
            ..LoadReport::default()
        };
        let mut entries = Vec::new();
        for (key, size) in plan.complete {
            match self.index_sized(&key, Some(size)).await {
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
        self.damaged_map().retain(|k, _| &k.stream != stream);
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

    /// Follows a recorder in another process: catalogs the chunk it just
    /// wrote (`ts_key`) from its index (one read) when it continues the
    /// catalog, and forgets chunks ending before `first_kept` (what the
    /// recorder's retention deleted). A chunk that does not continue the
    /// catalog (a summary missed, or nothing loaded yet) re-lists the
    /// stream instead, as [`ArchiveStore::load`].
    pub async fn follow_chunk(
        &self,
        stream: &StreamName,
        ts_key: &str,
        first_kept: Option<u64>,
    ) -> Result<Followed, StoreError> {
        let (key, _) = ChunkKey::parse(ts_key)?;
        if &key.stream != stream {
            return Err(ArchiveError::ChunkKeyMismatch {
                key: ts_key.to_owned(),
                reason: format!("announced for stream {stream}"),
            }
            .into());
        }
        if self.catalog_read().entry(&key).is_some() {
            self.forget_before(stream, first_kept);
            return Ok(Followed::Known);
        }
        let continues = self
            .last_seq(stream)
            .is_some_and(|last| last.checked_add(1) == Some(key.first_seq));
        if !continues {
            return Ok(Followed::Reloaded(self.load(stream).await?));
        }
        let index = self.index_sized(&key, None).await?;
        let entry = ChunkEntry::from_index(key, &index, None)?;
        self.catalog_mut().insert(entry);
        self.forget_before(stream, first_kept);
        Ok(Followed::Applied)
    }

    /// Drops the catalog's chunks of `stream` that end before seq
    /// `first_kept`.
    fn forget_before(&self, stream: &StreamName, first_kept: Option<u64>) {
        let Some(first_kept) = first_kept else {
            return;
        };
        let mut catalog = self.catalog_mut();
        let gone: Vec<ChunkKey> = catalog
            .chunks(stream)
            .filter(|e| e.last_seq < first_kept)
            .map(|e| e.key.clone())
            .collect();
        for key in &gone {
            catalog.remove(key);
        }
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
        self.memory
            .put_index(&key.idx_key(), entry.bytes, Arc::new(index))
            .await;
        self.damaged_map().remove(&key);
        self.catalog_mut().insert(entry.clone());
        Ok(entry)
    }

    /// A chunk's index, from the cache or the store.
    pub async fn index(&self, key: &ChunkKey) -> Result<Arc<ChunkIndex>, StoreError> {
        let bytes = self.catalog_read().entry(key).map(|e| e.bytes);
        self.index_sized(key, bytes).await
    }

    /// The index of a chunk of `chunk_bytes` (cached under that identity);
    /// without a size, read uncached.
    async fn index_sized(
        &self,
        key: &ChunkKey,
        chunk_bytes: Option<u64>,
    ) -> Result<Arc<ChunkIndex>, StoreError> {
        let idx_key = key.idx_key();
        // `source`: which tier answered (`memory`, or `store` for a read
        // of the object, whose own `storage.get` span is a child).
        let span = tracing::info_span!(
            "archive.index",
            key = %idx_key,
            source = "memory"
        );
        let load = async {
            tracing::Span::current().record("source", "store");
            let bytes = self.storage.get(&idx_key).await?;
            Ok::<_, StoreError>(Arc::new(ChunkIndex::decode(&bytes)?))
        };
        match chunk_bytes {
            Some(size) => self
                .memory
                .index(&idx_key, size, load)
                .instrument(span)
                .await
                .map_err(StoreError::unshare),
            None => load.instrument(span).await,
        }
    }

    /// The plan serving `[from, to)` of a stream: segments and gaps. A chunk
    /// whose index cannot be read, or whose object is damaged, becomes a gap
    /// (logged with its key), so a damaged object costs its own time only.
    pub async fn plan(
        &self,
        stream: &StreamName,
        from: UtcMs,
        to: UtcMs,
    ) -> Result<Vec<PlanItem>, StoreError> {
        let loaded = self.load_indexes(stream, from, to).await?;
        let records: Vec<ChunkRecords<'_>> = loaded
            .iter()
            .map(|(key, index, count)| ChunkRecords {
                key,
                records: &index.records[..*count],
            })
            .collect();
        Ok(plan_range(&records, from, to))
    }

    /// The index records of a stream overlapping `[from, to)`, in tape
    /// order: the segments [`ArchiveStore::plan`] would serve, without
    /// object keys, for playlists (damaged chunks count as in `plan`). They
    /// are runs of the cached indexes' own records, nothing copied per
    /// segment: a day's playlist reads 43,200 records in place. Overlapping
    /// chunks (rare: a repair) are merged the copying way into one run.
    pub async fn record_runs(
        &self,
        stream: &StreamName,
        from: UtcMs,
        to: UtcMs,
    ) -> Result<Vec<RecordRun>, StoreError> {
        let loaded = self.load_indexes(stream, from, to).await?;
        let indexes: Vec<(Arc<ChunkIndex>, usize)> = loaded
            .iter()
            .map(|(_, index, count)| (Arc::clone(index), *count))
            .collect();
        if let Some(runs) = record_runs(&indexes, from, to) {
            return Ok(runs);
        }
        let records: Vec<ChunkRecords<'_>> = loaded
            .iter()
            .map(|(key, index, count)| ChunkRecords {
                key,
                records: &index.records[..*count],
            })
            .collect();
        let merged = records_in_range(&records, from, to);
        Ok(if merged.is_empty() {
            Vec::new()
        } else {
            vec![RecordRun::owned(merged)]
        })
    }

    /// The indexes of the chunks overlapping `[from, to)` with how many of
    /// their records are readable. A chunk whose index cannot be read, or
    /// whose object is damaged, is left out or cut (logged with its key).
    async fn load_indexes(
        &self,
        stream: &StreamName,
        from: UtcMs,
        to: UtcMs,
    ) -> Result<Vec<(ChunkKey, Arc<ChunkIndex>, usize)>, StoreError> {
        let chunks: Vec<ChunkEntry> = self
            .catalog_read()
            .chunks_overlapping(stream, from, to)
            .into_iter()
            .cloned()
            .collect();
        let mut loaded = Vec::with_capacity(chunks.len());
        for chunk in &chunks {
            match self.index_sized(&chunk.key, Some(chunk.bytes)).await {
                Ok(index) => {
                    let readable = self.damaged_map().get(&chunk.key).copied();
                    let count =
                        readable.map_or(index.records.len(), |r| readable_records(&index, r));
                    loaded.push((chunk.key.clone(), index, count));
                }
                Err(e) if e.error_kind().is_transient() => return Err(e),
                // Gone or undecodable: the chunk is damaged until a reload.
                Err(e)
                    if matches!(
                        e.error_kind(),
                        dvr_common::ErrorKind::NotFound | dvr_common::ErrorKind::InvalidData
                    ) =>
                {
                    warn!(key = %chunk.key.idx_key(), error = %e, "archive: chunk index unreadable, serving a gap");
                    self.mark_damaged(&chunk.key, 0, None).await;
                }
                // Anything else (a permission problem) may pass: a gap this time.
                Err(e) => {
                    warn!(key = %chunk.key.idx_key(), error = %e, "archive: chunk index unreadable, serving a gap");
                }
            }
        }
        Ok(loaded)
    }

    /// Bytes `range` of a chunk object, through the caches. A missing or
    /// short object is [`StoreError::Damaged`] and marks the chunk.
    pub async fn read(
        &self,
        ts_key: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, StoreError> {
        let disk = self.disk_for(ts_key);
        // `source`: which tier answered (`memory`, `disk`, or `store` for a
        // ranged read of the object, whose `storage.get_range` span is a
        // child).
        let span = tracing::info_span!(
            "archive.read",
            key = ts_key,
            bytes = range.end - range.start,
            source = "memory"
        );
        let load = async {
            if let Some(disk) = &disk {
                if let Some(bytes) = disk.get(ts_key, &range).await {
                    tracing::Span::current().record("source", "disk");
                    return Ok(bytes);
                }
            }
            tracing::Span::current().record("source", "store");
            let bytes = self.fetch(ts_key, range.clone()).await?;
            if let Some(disk) = &disk {
                disk.put(ts_key, &range, &bytes).await;
            }
            Ok(bytes)
        };
        self.memory
            .segment(ts_key, &range, load)
            .instrument(span)
            .await
            .map_err(StoreError::unshare)
    }

    /// One ranged GET, checked against what the index promised.
    async fn fetch(&self, ts_key: &str, range: std::ops::Range<u64>) -> Result<Bytes, StoreError> {
        let expected = range.end - range.start;
        let got = self.storage.get_range(ts_key, range.clone()).await;
        let reason = match got {
            Ok(bytes) if bytes.len() as u64 == expected => return Ok(bytes),
            Ok(bytes) => format!("{} bytes where {expected} were expected", bytes.len()),
            Err(e) if e.is_not_found() => "the object is missing".to_owned(),
            Err(e @ StorageError::InvalidRange { .. }) => e.to_string(),
            Err(e) => return Err(e.into()),
        };
        // Damage: learn how much of the object is left, then serve around it.
        let len = match self.storage.stat(ts_key).await {
            Ok(meta) => meta.map_or(0, |m| m.len),
            Err(e) => return Err(e.into()),
        };
        let reason = if len == 0 {
            reason
        } else {
            format!(
                "{reason}; the object holds {len} bytes, the segment needs {}",
                range.end
            )
        };
        match ChunkKey::parse(ts_key) {
            Ok((key, ObjectKind::Chunk)) => self.mark_damaged(&key, len, Some(&reason)).await,
            _ => warn!(key = ts_key, reason = %reason, "archive: damaged object"),
        }
        Err(StoreError::Damaged {
            key: ts_key.to_owned(),
            reason,
        })
    }

    /// Remembers that only `readable` bytes of a chunk's object can be
    /// served and cuts its catalog entry to them (or removes it).
    async fn mark_damaged(&self, key: &ChunkKey, readable: u64, reason: Option<&str>) {
        let readable = {
            let mut damaged = self.damaged_map();
            let r = damaged.entry(key.clone()).or_insert(readable);
            *r = (*r).min(readable);
            *r
        };
        warn!(stream = %key.stream, key = %key.ts_key(), readable, reason = reason.unwrap_or("unreadable index"), "archive: chunk damaged, serving the rest as a gap");
        let Some(entry) = self.catalog_read().entry(key).cloned() else {
            return;
        };
        // Keep the readable head of the chunk, if its index is at hand.
        let mut head = None;
        if readable > 0 {
            if let Some(index) = self.memory.peek_index(&key.idx_key(), entry.bytes).await {
                let n = readable_records(&index, readable);
                let cut = ChunkIndex {
                    codecs: index.codecs.clone(),
                    records: index.records[..n].to_vec(),
                };
                head = ChunkEntry::from_index(key.clone(), &cut, None).ok();
            }
        }
        let mut catalog = self.catalog_mut();
        catalog.remove(key);
        if let Some(mut head) = head {
            // Keep the identity the index is cached under.
            head.bytes = entry.bytes;
            catalog.insert(head);
        }
    }

    /// Chunks found damaged since the last load, with the bytes still readable.
    pub fn damaged(&self, stream: &StreamName) -> Vec<(ChunkKey, u64)> {
        let mut v: Vec<(ChunkKey, u64)> = self
            .damaged_map()
            .iter()
            .filter(|(k, _)| &k.stream == stream)
            .map(|(k, r)| (k.clone(), *r))
            .collect();
        v.sort();
        v
    }

    /// Timeline breaks on a stream's archived tape at or before `t` (each
    /// counted at the segment after it): the `EXT-X-DISCONTINUITY-SEQUENCE`
    /// of a window that starts with the segment starting at `t`. Whole
    /// chunks count from the catalog; only the chunk holding `t` has its
    /// (cached) index read.
    pub async fn breaks_before(&self, stream: &StreamName, t: UtcMs) -> Result<u64, StoreError> {
        let (mut count, holder) = self.catalog_read().breaks_through(stream, t);
        if let Some(chunk) = holder {
            let index = self.index_sized(&chunk.key, Some(chunk.bytes)).await?;
            let inside = index
                .records
                .windows(2)
                .take_while(|w| w[1].utc_start <= t)
                .filter(|w| {
                    dvr_media::breaks_timeline(
                        w[0].utc_end(),
                        w[1].utc_start,
                        w[1].flags.discontinuity,
                    )
                })
                .count();
            count += u64::try_from(inside).unwrap_or(0);
        }
        Ok(count)
    }

    /// The catalogued chunks of a stream, oldest first.
    pub fn chunks(&self, stream: &StreamName) -> Vec<ChunkEntry> {
        self.catalog_read().chunks(stream).cloned().collect()
    }

    /// The seq of the oldest archived segment of a stream (what retention
    /// kept).
    pub fn first_seq(&self, stream: &StreamName) -> Option<u64> {
        self.catalog_read()
            .chunks(stream)
            .map(|c| c.first_seq)
            .min()
    }

    /// The seq of the last archived segment of a stream.
    pub fn last_seq(&self, stream: &StreamName) -> Option<u64> {
        self.catalog_read().chunks(stream).map(|c| c.last_seq).max()
    }

    /// Start and end of a stream's archive.
    pub fn extent(&self, stream: &StreamName) -> Option<TimeRange> {
        self.catalog_read().recorded_span(stream)
    }

    /// Recorded ranges of a stream within `[from, to)`, from the catalog
    /// (no storage request).
    pub fn ranges(&self, stream: &StreamName, from: UtcMs, to: UtcMs) -> Vec<TimeRange> {
        self.catalog_read().ranges(stream, from, to)
    }

    /// The stream's locks, read from `locks.json` now (none if it does not
    /// exist). Retention uses this: it must see a lock set a moment ago.
    pub async fn locks(&self, stream: &StreamName) -> Result<LocksFile, StoreError> {
        let file = match self.storage.get(&locks_key(stream)).await {
            Ok(bytes) => LocksFile::from_json(stream, &bytes)?,
            Err(e) if e.is_not_found() => LocksFile::default(),
            Err(e) => return Err(e.into()),
        };
        Ok(file)
    }

    /// The stream's locks, re-read at most every [`LOCKS_TTL_MS`]: what
    /// `recording_status.json` answers with.
    pub async fn locks_cached(
        &self,
        stream: &StreamName,
        now: UtcMs,
    ) -> Result<LocksFile, StoreError> {
        if let Some((read_at, file)) = self.locks_mut().get(stream) {
            if (0..LOCKS_TTL_MS).contains(&(now.0 - read_at.0)) {
                return Ok(file.clone());
            }
        }
        let file = self.locks(stream).await?;
        self.locks_mut().insert(stream.clone(), (now, file.clone()));
        Ok(file)
    }

    /// Read-modify-write of `locks.json`: applies `edit` to the current
    /// file and stores the result. Not atomic against a concurrent editor
    /// (object stores have no compare-and-swap here): the API holds a key
    /// in the locks bucket around it (`dvr_bus::Exclusive`), so its
    /// replicas edit one at a time.
    pub async fn update_locks<T>(
        &self,
        stream: &StreamName,
        edit: impl FnOnce(&mut LocksFile) -> T,
    ) -> Result<(LocksFile, T), StoreError> {
        let mut file = self.locks(stream).await?;
        let out = edit(&mut file);
        self.storage
            .put(&locks_key(stream), Bytes::from(file.to_json()))
            .await?;
        self.locks_mut().remove(stream);
        Ok((file, out))
    }

    /// Adds a lock; returns the locks now in force.
    pub async fn lock(&self, stream: &StreamName, lock: Lock) -> Result<LocksFile, StoreError> {
        Ok(self.update_locks(stream, |f| f.lock(lock)).await?.0)
    }

    /// Removes a lock; returns the locks now in force and whether it was there.
    pub async fn unlock(
        &self,
        stream: &StreamName,
        lock: Lock,
    ) -> Result<(LocksFile, bool), StoreError> {
        self.update_locks(stream, |f| f.unlock(lock)).await
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
        let disk_cache = self.disks_read().get(stream).cloned();
        for (key, _) in &plan.delete {
            self.memory.forget_chunk(&key.ts_key(), &key.idx_key());
            self.damaged_map().remove(key);
            if let Some(cache) = &disk_cache {
                cache.forget_chunk(&key.ts_key()).await;
            }
        }
        self.storage.delete_many(&plan.object_keys()).await?;
        Ok(plan)
    }

    fn disk_for(&self, ts_key: &str) -> Option<Arc<DiskCache>> {
        let stream = ts_key.split('/').next()?;
        let disks = self.disks_read();
        disks
            .iter()
            .find(|(s, _)| s.as_str() == stream)
            .map(|(_, d)| Arc::clone(d))
    }

    fn disks_read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<StreamName, Arc<DiskCache>>> {
        self.disks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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

    fn damaged_map(&self) -> std::sync::MutexGuard<'_, HashMap<ChunkKey, u64>> {
        self.damaged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn locks_mut(&self) -> std::sync::MutexGuard<'_, HashMap<StreamName, (UtcMs, LocksFile)>> {
        self.locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How many of an index's records (in object order) lie wholly within the
/// first `readable` bytes.
fn readable_records(index: &ChunkIndex, readable: u64) -> usize {
    index
        .records
        .iter()
        .take_while(|r| r.byte_range().end <= readable)
        .count()
}
