//! The optional local SSD cache of segment bytes: the seeds' per-stream
//! `cache /mount/ssd1 3d 50G` (path, depth, size), for archives on object
//! storage where a rewind should not cost a round trip to the bucket.
//!
//! The one idea: a file's name is its identity and its age. A cached
//! segment lives at `{dir}/{ts_key}/{start}-{end}.{stored_ms}.{gen}`: the
//! chunk object key and byte range (immutable, see [`crate::cache`]), when
//! it was stored (by the [`Clock`], so tests simulate age) and a
//! generation number that keeps two stores of one range apart. So:
//!
//! - the cache **survives restarts**: [`DiskCache::open`] rebuilds its
//!   accounting from the names alone (no metadata file to keep in sync)
//!   and deletes temporaries and names it does not recognise;
//! - **size** is accounted under one lock: a store is written to a
//!   temporary file, renamed into place, then counted, and the oldest files
//!   are evicted until the total is at most `max_bytes`;
//! - **depth**: an entry older than `depth` is a miss and is deleted;
//! - `misses=N` (seeds): a range is stored only on its N-th miss, so
//!   one-off requests do not churn the SSD;
//! - a file that went missing or shrank behind our back is a miss, and is
//!   forgotten.
//!
//! Eviction order is by store time (oldest first), as the seeds describe.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dvr_common::{Clock, UtcMs};
use moka::future::Cache;
use tracing::{debug, warn};

/// The settings of one disk cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskCacheConfig {
    /// Directory the files go in (created if missing).
    pub path: PathBuf,
    /// Most bytes the files may take.
    pub max_bytes: u64,
    /// Drop files older than this, in milliseconds.
    pub depth_ms: Option<i64>,
    /// Store a range only on its N-th miss (0 and 1: on the first).
    pub misses: u32,
}

/// Ranges counted towards `misses` (the counter map's own bound).
const MISS_COUNTERS: u64 = 100_000;

type RangeKey = (String, u64, u64);

#[derive(Clone, Copy, Debug)]
struct Entry {
    stored: UtcMs,
    generation: u64,
    len: u64,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<RangeKey, Entry>,
    /// `(stored, generation)` → key: the eviction order.
    by_age: BTreeMap<(UtcMs, u64), RangeKey>,
    total: u64,
}

impl State {
    fn remove(&mut self, key: &RangeKey) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.by_age.remove(&(entry.stored, entry.generation));
        self.total -= entry.len;
        Some(entry)
    }

    fn insert(&mut self, key: RangeKey, entry: Entry) -> Option<Entry> {
        let old = self.remove(&key);
        self.by_age
            .insert((entry.stored, entry.generation), key.clone());
        self.total += entry.len;
        self.entries.insert(key, entry);
        old
    }

    /// Removes from the accounting what is too old or over the size bound,
    /// oldest first; returns the victims for the caller to delete.
    fn evict(&mut self, now: UtcMs, config: &DiskCacheConfig) -> Vec<(RangeKey, Entry)> {
        let mut out = Vec::new();
        while let Some((&(stored, _), key)) = self.by_age.iter().next() {
            let expired = config
                .depth_ms
                .is_some_and(|d| stored.0 < now.0.saturating_sub(d));
            if !expired && self.total <= config.max_bytes {
                break;
            }
            let key = key.clone();
            if let Some(entry) = self.remove(&key) {
                out.push((key, entry));
            }
        }
        out
    }
}

/// A directory of cached segment ranges, bounded by size and age.
pub struct DiskCache {
    config: DiskCacheConfig,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    generation: AtomicU64,
    misses: Cache<RangeKey, u32>,
}

impl fmt::Debug for DiskCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskCache")
            .field("config", &self.config)
            .field("bytes", &self.bytes())
            .finish_non_exhaustive()
    }
}

impl DiskCache {
    /// Opens (creating) the cache directory and takes over the files a
    /// previous run left, dropping what is expired or over the bound.
    /// Blocking: call it at start, before serving.
    pub fn open(config: DiskCacheConfig, clock: Arc<dyn Clock>) -> std::io::Result<DiskCache> {
        std::fs::create_dir_all(&config.path)?;
        let mut state = State::default();
        let mut max_generation = 0;
        let mut junk = Vec::new();
        scan(
            &config.path,
            &config.path,
            &mut |rel_dir, name, path, len| {
                match parse_name(name) {
                    Some((start, end, stored, generation)) if len == end - start => {
                        max_generation = max_generation.max(generation);
                        let key = (rel_dir.to_owned(), start, end);
                        let entry = Entry {
                            stored,
                            generation,
                            len,
                        };
                        if let Some(old) = state.insert(key.clone(), entry) {
                            // Two files for one range: keep the newer.
                            let keep_old = (old.stored, old.generation) > (stored, generation);
                            let (kept, dropped) =
                                if keep_old { (old, entry) } else { (entry, old) };
                            if keep_old {
                                state.insert(key.clone(), kept);
                            }
                            junk.push(config.path.join(file_name(&key, &dropped)));
                        }
                    }
                    _ => junk.push(path.to_path_buf()),
                }
            },
        )?;
        for path in junk {
            debug!(path = %path.display(), "disk cache: removing a stray file");
            let _ = std::fs::remove_file(path);
        }
        let victims = state.evict(clock.now(), &config);
        for (key, entry) in &victims {
            let _ = std::fs::remove_file(config.path.join(file_name(key, entry)));
        }
        // Eviction leaves a chunk's directory behind when it empties (removing
        // it then could race a store into it); they go here, at start.
        prune_empty_dirs(&config.path);
        Ok(DiskCache {
            misses: Cache::new(MISS_COUNTERS),
            generation: AtomicU64::new(max_generation + 1),
            state: Mutex::new(state),
            config,
            clock,
        })
    }

    /// The settings.
    pub fn config(&self) -> &DiskCacheConfig {
        &self.config
    }

    /// Bytes of the files now accounted for.
    pub fn bytes(&self) -> u64 {
        self.state().total
    }

    /// Number of cached ranges.
    pub fn len(&self) -> usize {
        self.state().entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes `range` of `ts_key`, if cached, whole and not expired.
    pub async fn get(&self, ts_key: &str, range: &Range<u64>) -> Option<Bytes> {
        let key = (ts_key.to_owned(), range.start, range.end);
        let now = self.clock.now();
        let (entry, expired) = {
            let mut state = self.state();
            let entry = *state.entries.get(&key)?;
            let expired = self.expired(entry.stored, now);
            if expired {
                state.remove(&key);
            }
            (entry, expired)
        };
        if expired {
            self.delete(&key, &entry).await;
            return None;
        }
        match tokio::fs::read(self.path_of(&key, &entry)).await {
            Ok(bytes) if bytes.len() as u64 == entry.len => Some(Bytes::from(bytes)),
            other => {
                // Deleted or cut short behind our back, or evicted between
                // the lookup and the read: a miss, and forget it.
                if let Ok(bytes) = other {
                    warn!(
                        key = ts_key,
                        expected = entry.len,
                        found = bytes.len(),
                        "disk cache: file has the wrong size"
                    );
                }
                let mut state = self.state();
                if state
                    .entries
                    .get(&key)
                    .is_some_and(|e| e.generation == entry.generation)
                {
                    state.remove(&key);
                }
                None
            }
        }
    }

    /// Offers bytes read from the store: kept if this range has missed
    /// often enough, then the oldest files go until the bound holds.
    /// Failures are logged, never returned: the cache is an optimisation.
    pub async fn put(&self, ts_key: &str, range: &Range<u64>, bytes: &Bytes) {
        let key = (ts_key.to_owned(), range.start, range.end);
        if bytes.len() as u64 != range.end - range.start
            || bytes.len() as u64 > self.config.max_bytes
        {
            return;
        }
        if self.config.misses > 1 {
            let seen = self.misses.get(&key).await.unwrap_or(0) + 1;
            if seen < self.config.misses {
                self.misses.insert(key, seen).await;
                return;
            }
            self.misses.invalidate(&key).await;
        }
        let entry = Entry {
            stored: self.clock.now(),
            generation: self.generation.fetch_add(1, Ordering::Relaxed),
            len: bytes.len() as u64,
        };
        let path = self.path_of(&key, &entry);
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let written = async {
            if let Some(dir) = path.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            tokio::fs::write(&tmp, bytes).await?;
            tokio::fs::rename(&tmp, &path).await
        }
        .await;
        if let Err(e) = written {
            warn!(path = %path.display(), error = %e, "disk cache: cannot store a segment");
            let _ = tokio::fs::remove_file(&tmp).await;
            return;
        }
        let (replaced, victims) = {
            let mut state = self.state();
            let replaced = state.insert(key.clone(), entry);
            (replaced, state.evict(entry.stored, &self.config))
        };
        if let Some(old) = replaced {
            self.delete(&key, &old).await;
        }
        for (key, entry) in &victims {
            self.delete(key, entry).await;
        }
    }

    /// Drops every cached range of a chunk object (retention deleted it).
    pub async fn forget_chunk(&self, ts_key: &str) {
        let gone: Vec<(RangeKey, Entry)> = {
            let mut state = self.state();
            let keys: Vec<RangeKey> = state
                .entries
                .keys()
                .filter(|k| k.0 == ts_key)
                .cloned()
                .collect();
            keys.into_iter()
                .filter_map(|k| state.remove(&k).map(|e| (k, e)))
                .collect()
        };
        for (key, entry) in &gone {
            self.delete(key, entry).await;
        }
        let _ = tokio::fs::remove_dir(self.config.path.join(ts_key)).await;
    }

    fn expired(&self, stored: UtcMs, now: UtcMs) -> bool {
        self.config
            .depth_ms
            .is_some_and(|d| stored.0 < now.0.saturating_sub(d))
    }

    fn path_of(&self, key: &RangeKey, entry: &Entry) -> PathBuf {
        self.config.path.join(file_name(key, entry))
    }

    async fn delete(&self, key: &RangeKey, entry: &Entry) {
        let path = self.path_of(key, entry);
        if let Err(e) = tokio::fs::remove_file(&path).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(path = %path.display(), error = %e, "disk cache: cannot delete a file");
            }
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `{ts_key}/{start}-{end}.{stored_ms}.{gen}`, relative to the cache root.
fn file_name(key: &RangeKey, entry: &Entry) -> String {
    format!(
        "{}/{}-{}.{}.{}",
        key.0, key.1, key.2, entry.stored.0, entry.generation
    )
}

/// `(start, end, stored, generation)` from a file name.
fn parse_name(name: &str) -> Option<(u64, u64, UtcMs, u64)> {
    let mut parts = name.split('.');
    let (range, stored, generation) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    let (start, end): (u64, u64) = (start.parse().ok()?, end.parse().ok()?);
    (end > start).then_some(())?;
    Some((
        start,
        end,
        UtcMs(stored.parse().ok()?),
        generation.parse().ok()?,
    ))
}

/// Removes the empty directories under `dir` (not `dir` itself); returns
/// whether `dir` is left empty.
fn prune_empty_dirs(dir: &Path) -> bool {
    let Ok(items) = std::fs::read_dir(dir) else {
        return false;
    };
    let mut empty = true;
    for item in items.flatten() {
        let path = item.path();
        if item.file_type().is_ok_and(|t| t.is_dir()) && prune_empty_dirs(&path) {
            empty &= std::fs::remove_dir(&path).is_ok();
        } else {
            empty = false;
        }
    }
    empty
}

/// Calls `f(dir relative to root, file name, path, length)` for every file
/// under `dir`.
fn scan(root: &Path, dir: &Path, f: &mut dyn FnMut(&str, &str, &Path, u64)) -> std::io::Result<()> {
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        let path = item.path();
        let meta = item.metadata()?;
        if meta.is_dir() {
            scan(root, &path, f)?;
        } else if let (Some(name), Ok(rel)) = (
            path.file_name().and_then(|n| n.to_str()),
            dir.strip_prefix(root),
        ) {
            f(&rel.to_string_lossy(), name, &path, meta.len());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use dvr_common::SimulatedClock;

    use super::*;

    const T0: i64 = 1_795_269_600_000;
    const KEY: &str = "ort/2026/11/21/14/00000000000000000000.ts";

    fn config(dir: &Path, max_bytes: u64) -> DiskCacheConfig {
        DiskCacheConfig {
            path: dir.to_path_buf(),
            max_bytes,
            depth_ms: Some(3_600_000),
            misses: 0,
        }
    }

    fn seg(i: u64) -> (Range<u64>, Bytes) {
        (i * 1000..(i + 1) * 1000, Bytes::from(vec![i as u8; 1000]))
    }

    #[tokio::test]
    async fn evicts_oldest_to_stay_under_the_size_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let clock = SimulatedClock::new(UtcMs(T0));
        let cache = DiskCache::open(config(dir.path(), 3000), Arc::new(clock.clone())).unwrap();
        for i in 0..5 {
            let (r, b) = seg(i);
            cache.put(KEY, &r, &b).await;
            clock.advance_ms(1000);
        }
        assert_eq!((cache.len(), cache.bytes()), (3, 3000));
        assert!(cache.get(KEY, &seg(0).0).await.is_none());
        assert!(cache.get(KEY, &seg(1).0).await.is_none());
        assert_eq!(cache.get(KEY, &seg(4).0).await, Some(seg(4).1));
        drop(cache);

        // A crash left a temporary and a stranger; a restart keeps the rest.
        std::fs::write(dir.path().join(KEY).join("0-10.5.5.tmp"), b"x").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        let cache = DiskCache::open(config(dir.path(), 3000), Arc::new(clock.clone())).unwrap();
        assert_eq!((cache.len(), cache.bytes()), (3, 3000));
        assert_eq!(cache.get(KEY, &seg(2).0).await, Some(seg(2).1));
        assert!(!dir.path().join("notes.txt").exists());
        // A smaller bound at start evicts the oldest.
        drop(cache);
        let cache = DiskCache::open(config(dir.path(), 1000), Arc::new(clock.clone())).unwrap();
        assert_eq!(cache.len(), 1);
        assert!(cache.get(KEY, &seg(4).0).await.is_some());
        // Past the depth, a restart empties the cache, directories included.
        drop(cache);
        clock.advance_ms(3_600_001);
        let cache = DiskCache::open(config(dir.path(), 1000), Arc::new(clock.clone())).unwrap();
        assert!(cache.is_empty());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn entries_older_than_the_depth_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let clock = SimulatedClock::new(UtcMs(T0));
        let cache = DiskCache::open(config(dir.path(), 1 << 20), Arc::new(clock.clone())).unwrap();
        let (r0, b0) = seg(0);
        cache.put(KEY, &r0, &b0).await;
        clock.advance_ms(3_600_000);
        assert!(
            cache.get(KEY, &r0).await.is_some(),
            "exactly the depth is kept"
        );
        clock.advance_ms(1);
        assert!(cache.get(KEY, &r0).await.is_none());
        assert_eq!(cache.bytes(), 0);
        // Expired files also go when anything is stored, and at restart.
        let (r1, b1) = seg(1);
        cache.put(KEY, &r1, &b1).await;
        clock.advance_ms(3_600_001);
        drop(cache);
        let cache = DiskCache::open(config(dir.path(), 1 << 20), Arc::new(clock.clone())).unwrap();
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn misses_delay_storing_and_damage_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let clock = SimulatedClock::new(UtcMs(T0));
        let mut c = config(dir.path(), 1 << 20);
        c.misses = 3;
        let cache = DiskCache::open(c, Arc::new(clock)).unwrap();
        let (r, b) = seg(7);
        cache.put(KEY, &r, &b).await;
        cache.put(KEY, &r, &b).await;
        assert!(cache.is_empty());
        cache.put(KEY, &r, &b).await;
        assert_eq!(cache.len(), 1);
        // Cut short behind our back: a miss, forgotten.
        let file = std::fs::read_dir(dir.path().join(KEY))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        std::fs::write(&file, b"short").unwrap();
        assert!(cache.get(KEY, &r).await.is_none());
        assert!(cache.is_empty());
        // A wrong-length offer is ignored; a chunk can be forgotten whole.
        cache.put(KEY, &(0..5), &b).await;
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn concurrent_stores_keep_the_accounting_exact() {
        let dir = tempfile::tempdir().unwrap();
        let clock = SimulatedClock::new(UtcMs(T0));
        let cache = Arc::new(DiskCache::open(config(dir.path(), 20_000), Arc::new(clock)).unwrap());
        let tasks: Vec<_> = (0..8u64)
            .map(|t| {
                let cache = Arc::clone(&cache);
                tokio::spawn(async move {
                    for i in 0..20u64 {
                        let (r, b) = seg(i % 12);
                        let key = format!("ort/2026/11/21/14/{t:020}.ts");
                        cache.put(&key, &r, &b).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert!(cache.bytes() <= 20_000);
        let mut on_disk = 0;
        scan(dir.path(), dir.path(), &mut |_, _, _, len| on_disk += len).unwrap();
        assert_eq!(on_disk, cache.bytes(), "files on disk match the accounting");
        cache
            .forget_chunk(&format!("ort/2026/11/21/14/{:020}.ts", 7))
            .await;
        let mut on_disk = 0;
        scan(dir.path(), dir.path(), &mut |_, _, _, len| on_disk += len).unwrap();
        assert_eq!(on_disk, cache.bytes());
    }
}
