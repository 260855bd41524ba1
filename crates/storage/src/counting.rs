//! A decorator that counts what is asked of the store, for tests that
//! prove a request reads only what it must (a one-byte range reads one
//! segment, a status page reads nothing), and that can add a round trip
//! to every call so concurrent edits interleave as over a network.

use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{ObjectMeta, ObjectWriter, Storage, StorageResult, UploadSource};

/// `inner`, with its calls counted.
#[derive(Debug)]
pub struct CountingStorage {
    inner: Arc<dyn Storage>,
    calls: AtomicUsize,
    reads: AtomicUsize,
    read_bytes: AtomicU64,
    delay_ms: AtomicU64,
}

impl CountingStorage {
    /// Counts the calls made to `inner`.
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        CountingStorage {
            inner,
            calls: AtomicUsize::new(0),
            reads: AtomicUsize::new(0),
            read_bytes: AtomicU64::new(0),
            delay_ms: AtomicU64::new(0),
        }
    }

    /// Calls of any kind so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Object reads (`get` and `get_range`) so far.
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    /// Bytes those reads returned.
    pub fn read_bytes(&self) -> u64 {
        self.read_bytes.load(Ordering::SeqCst)
    }

    /// Makes every call wait `delay` first (a remote store's round trip).
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    async fn hit(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
    }

    fn read(&self, result: StorageResult<Bytes>) -> StorageResult<Bytes> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        if let Ok(bytes) = &result {
            self.read_bytes
                .fetch_add(bytes.len() as u64, Ordering::SeqCst);
        }
        result
    }
}

#[async_trait]
impl Storage for CountingStorage {
    async fn put(&self, key: &str, data: Bytes) -> StorageResult<()> {
        self.hit().await;
        self.inner.put(key, data).await
    }
    async fn put_writer(&self, key: &str) -> StorageResult<Box<dyn ObjectWriter>> {
        self.hit().await;
        self.inner.put_writer(key).await
    }
    async fn put_source(&self, key: &str, source: Arc<dyn UploadSource>) -> StorageResult<u64> {
        self.hit().await;
        self.inner.put_source(key, source).await
    }
    async fn put_file(&self, key: &str, path: &Path) -> StorageResult<u64> {
        self.hit().await;
        self.inner.put_file(key, path).await
    }
    async fn get(&self, key: &str) -> StorageResult<Bytes> {
        self.hit().await;
        let result = self.inner.get(key).await;
        self.read(result)
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> StorageResult<Bytes> {
        self.hit().await;
        let result = self.inner.get_range(key, range).await;
        self.read(result)
    }
    async fn stat(&self, key: &str) -> StorageResult<Option<ObjectMeta>> {
        self.hit().await;
        self.inner.stat(key).await
    }
    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>> {
        self.hit().await;
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> StorageResult<()> {
        self.hit().await;
        self.inner.delete(key).await
    }
    async fn delete_many(&self, keys: &[String]) -> StorageResult<()> {
        self.hit().await;
        self.inner.delete_many(keys).await
    }
    async fn check(&self) -> StorageResult<()> {
        self.hit().await;
        self.inner.check().await
    }
    fn uri(&self) -> &str {
        self.inner.uri()
    }
}
