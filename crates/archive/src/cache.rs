//! The memory cache between the packager and the object store: chunk
//! indexes and segment bytes, bounded by bytes.
//!
//! The one idea: every key is an identity whose bytes never change, so an
//! entry can never be stale, only unreachable. A segment is bytes
//! `start..end` of a chunk object (segments are never re-cut, and a chunk
//! replayed after a crash rewrites the same bytes at the same offsets). An
//! index is keyed by its chunk's size as the catalog knows it, because a
//! replay may rewrite the index of a chunk that grew: the bigger chunk has a
//! different key. When retention deletes a chunk the catalog forgets it
//! first, so no plan reaches its entries again; [`MemoryCache::forget_chunk`]
//! then frees their memory eagerly.
//!
//! Indexes and segments have separate budgets (an eighth for indexes by
//! default), so a flood of segments cannot push out the indexes that every
//! request reads first. moka does the bookkeeping: weights are bytes (key
//! and value), the total
//! is held under the capacity by its own eviction (TinyLFU admission, LRU
//! eviction), and concurrent misses on one key are coalesced into one load,
//! so a hundred viewers starting the same programme cost one ranged GET.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use moka::future::Cache;

use crate::index::ChunkIndex;

/// Default memory budget: 256 MiB, a few hours of one 1080p stream's
/// segments or every index of a month of a hundred streams.
pub const DEFAULT_MEMORY_CACHE_BYTES: u64 = 256 << 20;

/// Share of the budget kept for indexes: a flood of segments (one viewer
/// downloading a day as `.ts`) must not push out the indexes every request
/// needs first.
const INDEX_SHARE_DIVISOR: u64 = 8;

/// An index: its `.idx` key and the size of the chunk it describes.
type IndexKey = (String, u64);
/// A segment: its chunk's `.ts` key and byte range.
type SegmentKey = (String, u64, u64);

fn index_weight(key: &IndexKey, index: &Arc<ChunkIndex>) -> u32 {
    u32::try_from(index.records.len() * 48 + key.0.len() + 192).unwrap_or(u32::MAX)
}

fn segment_weight(key: &SegmentKey, bytes: &Bytes) -> u32 {
    u32::try_from(bytes.len() + key.0.len() + 64).unwrap_or(u32::MAX)
}

/// A byte-bounded memory cache of indexes and segments; clones share it.
#[derive(Clone)]
pub struct MemoryCache {
    indexes: Cache<IndexKey, Arc<ChunkIndex>>,
    segments: Cache<SegmentKey, Bytes>,
    max_bytes: u64,
}

impl fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryCache")
            .field("max_bytes", &self.max_bytes)
            .field("indexes", &self.indexes.entry_count())
            .field("segments", &self.segments.entry_count())
            .field("weighted_bytes", &self.weighted_bytes())
            .finish()
    }
}

impl Default for MemoryCache {
    fn default() -> Self {
        MemoryCache::new(DEFAULT_MEMORY_CACHE_BYTES)
    }
}

impl MemoryCache {
    /// A cache holding at most `max_bytes`, an eighth of it for indexes
    /// (0 disables it: nothing is kept).
    pub fn new(max_bytes: u64) -> MemoryCache {
        let index_bytes = max_bytes / INDEX_SHARE_DIVISOR;
        MemoryCache::with_budgets(index_bytes, max_bytes - index_bytes)
    }

    /// A cache with separate bounds for indexes and for segments.
    pub fn with_budgets(index_bytes: u64, segment_bytes: u64) -> MemoryCache {
        let indexes = Cache::builder()
            .max_capacity(index_bytes)
            .weigher(index_weight)
            .support_invalidation_closures()
            .build();
        let segments = Cache::builder()
            .max_capacity(segment_bytes)
            .weigher(segment_weight)
            .support_invalidation_closures()
            .build();
        MemoryCache {
            indexes,
            segments,
            max_bytes: index_bytes + segment_bytes,
        }
    }

    /// The configured bound in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Bytes held now. moka settles its accounting lazily; call
    /// [`Self::settle`] first for an exact figure.
    pub fn weighted_bytes(&self) -> u64 {
        self.indexes.weighted_size() + self.segments.weighted_size()
    }

    /// Applies pending inserts and evictions to the accounting.
    pub async fn settle(&self) {
        self.indexes.run_pending_tasks().await;
        self.segments.run_pending_tasks().await;
    }

    /// An index, from the cache or from `load`; concurrent misses on one
    /// key share one load. Errors are not cached.
    pub async fn index<E, F>(
        &self,
        idx_key: &str,
        chunk_bytes: u64,
        load: F,
    ) -> Result<Arc<ChunkIndex>, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: Future<Output = Result<Arc<ChunkIndex>, E>>,
    {
        let loaded = std::sync::atomic::AtomicBool::new(false);
        let load = async {
            loaded.store(true, std::sync::atomic::Ordering::Relaxed);
            load.await
        };
        let result = self
            .indexes
            .try_get_with((idx_key.to_owned(), chunk_bytes), load)
            .await;
        crate::metrics::lookup("index", !loaded.into_inner());
        result
    }

    /// A cached index, without loading it.
    pub async fn peek_index(&self, idx_key: &str, chunk_bytes: u64) -> Option<Arc<ChunkIndex>> {
        self.indexes.get(&(idx_key.to_owned(), chunk_bytes)).await
    }

    /// Puts an index that was just written (the recorder's commit).
    pub async fn put_index(&self, idx_key: &str, chunk_bytes: u64, index: Arc<ChunkIndex>) {
        self.indexes
            .insert((idx_key.to_owned(), chunk_bytes), index)
            .await;
    }

    /// Bytes `range` of chunk object `ts_key`, from the cache or from
    /// `load`; concurrent misses share one load. Errors are not cached.
    pub async fn segment<E, F>(
        &self,
        ts_key: &str,
        range: &Range<u64>,
        load: F,
    ) -> Result<Bytes, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: Future<Output = Result<Bytes, E>>,
    {
        let loaded = std::sync::atomic::AtomicBool::new(false);
        let load = async {
            loaded.store(true, std::sync::atomic::Ordering::Relaxed);
            load.await
        };
        let result = self
            .segments
            .try_get_with((ts_key.to_owned(), range.start, range.end), load)
            .await;
        crate::metrics::lookup("segment", !loaded.into_inner());
        result
    }

    /// Whether bytes `range` of `ts_key` are cached (for tests and metrics).
    pub fn contains_segment(&self, ts_key: &str, range: &Range<u64>) -> bool {
        self.segments
            .contains_key(&(ts_key.to_owned(), range.start, range.end))
    }

    /// Drops every entry of a chunk (its index and its segments): retention
    /// deleted it.
    pub fn forget_chunk(&self, ts_key: &str, idx_key: &str) {
        let (ts, idx) = (ts_key.to_owned(), idx_key.to_owned());
        // These only fail if closures were not enabled at build time; they are.
        let _ = self.segments.invalidate_entries_if(move |k, _| k.0 == ts);
        let _ = self.indexes.invalidate_entries_if(move |k, _| k.0 == idx);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use dvr_media::CodecSummary;

    use super::*;

    #[tokio::test]
    async fn stays_under_its_byte_bound_under_concurrent_inserts() {
        let cache = MemoryCache::new(1 << 20);
        let tasks: Vec<_> = (0..64u64)
            .map(|t| {
                let cache = cache.clone();
                tokio::spawn(async move {
                    for i in 0..32u64 {
                        let range = (i * 50_000)..((i + 1) * 50_000);
                        let key = format!("ort/2026/11/21/14/{t:020}.ts");
                        let got = cache
                            .segment::<(), _>(&key, &range, async {
                                Ok(Bytes::from(vec![0x47; 50_000]))
                            })
                            .await
                            .unwrap();
                        assert_eq!(got.len(), 50_000);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        cache.settle().await;
        assert!(cache.weighted_bytes() <= 1 << 20, "{cache:?}");
        assert!(cache.weighted_bytes() > 0, "{cache:?}");
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_load_and_errors_are_not_kept() {
        let cache = MemoryCache::new(1 << 20);
        let loads = Arc::new(AtomicUsize::new(0));
        let range = 0..188;
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (cache, loads, range) = (cache.clone(), Arc::clone(&loads), range.clone());
                tokio::spawn(async move {
                    cache
                        .segment::<(), _>("ort/k.ts", &range, async {
                            loads.fetch_add(1, Ordering::SeqCst);
                            tokio::task::yield_now().await;
                            Ok(Bytes::from_static(&[0x47; 188]))
                        })
                        .await
                        .unwrap()
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().len(), 188);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        let failed = cache
            .segment("ort/x.ts", &range, async { Err::<Bytes, _>("gone") })
            .await;
        assert_eq!(*failed.unwrap_err(), "gone");
        assert!(!cache.contains_segment("ort/x.ts", &range));
    }

    #[tokio::test]
    async fn index_keys_carry_the_chunk_size_and_chunks_can_be_forgotten() {
        let cache = MemoryCache::new(1 << 20);
        let small = Arc::new(ChunkIndex {
            codecs: CodecSummary::default(),
            records: Vec::new(),
        });
        cache.put_index("ort/a.idx", 100, Arc::clone(&small)).await;
        let hit = cache
            .index::<(), _>("ort/a.idx", 100, async { panic!("must hit") })
            .await
            .unwrap();
        assert!(Arc::ptr_eq(&hit, &small));
        // The chunk grew (a replay): a new identity, so a fresh load.
        let loaded = cache
            .index::<(), _>("ort/a.idx", 200, async { Ok(Arc::clone(&small)) })
            .await;
        assert!(loaded.is_ok());
        cache
            .segment::<(), _>("ort/a.ts", &(0..10), async {
                Ok(Bytes::from_static(b"0123456789"))
            })
            .await
            .unwrap();
        cache
            .segment::<(), _>("ort/b.ts", &(0..10), async {
                Ok(Bytes::from_static(b"0123456789"))
            })
            .await
            .unwrap();
        cache.forget_chunk("ort/a.ts", "ort/a.idx");
        cache.settle().await;
        assert!(!cache.contains_segment("ort/a.ts", &(0..10)));
        assert!(cache.contains_segment("ort/b.ts", &(0..10)));
    }
}
