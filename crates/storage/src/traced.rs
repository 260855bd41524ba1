//! A span around every read of the archive, so a packager request's trace
//! shows which objects it read, from which store, how many bytes, and how
//! it ended.
//!
//! The decorator sits outside the retry loop: one span per read as the
//! caller sees it, its retries (logged by [`crate::retry`]) inside it. The
//! spans are at `info` level so that the default filter exports them when
//! OTLP is configured; a span writes no log line of its own, so a process
//! without OTLP only pays for creating it. Writes are left out: the
//! recorder's uploads have their own metrics and are not part of any
//! viewer's request.
//!
//! Fields: `backend` (the URI's scheme: `file`, `memory`, `s3`, `swift`),
//! `key` (the prefix for a list), `bytes` read (`objects` for a list),
//! `range` for a ranged read, `status` (`ok`, `not_found` or `error`) and
//! `error`.

use std::future::Future;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tracing::Instrument;

use crate::error::StorageResult;
use crate::storage::{ObjectMeta, ObjectWriter, Storage};
use crate::upload::UploadSource;

/// A [`Storage`] whose reads run in `storage.*` spans.
#[derive(Debug)]
pub struct TracedStorage {
    inner: Arc<dyn Storage>,
    backend: String,
}

impl TracedStorage {
    /// Wraps `inner`; the backend is named after its URI's scheme.
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        let backend = inner
            .uri()
            .split_once("://")
            .map_or("unknown", |(scheme, _)| scheme)
            .to_owned();
        Self { inner, backend }
    }

    /// Runs `read` in `span`, recording its outcome and its size in the
    /// field `measure` (`bytes`, or `objects` for a list).
    async fn traced<T>(
        span: tracing::Span,
        read: impl Future<Output = StorageResult<T>> + Send,
        measure: &'static str,
        size: impl FnOnce(&T) -> u64,
    ) -> StorageResult<T> {
        let result = read.instrument(span.clone()).await;
        match &result {
            Ok(v) => {
                span.record(measure, size(v));
                span.record("status", "ok");
            }
            Err(e) if e.is_not_found() => {
                span.record("status", "not_found");
            }
            Err(e) => {
                span.record("status", "error");
                span.record("error", tracing::field::display(e));
            }
        }
        result
    }
}

/// A read's span with its fields declared (`bytes`, `status` and `error`
/// filled in when it ends).
macro_rules! read_span {
    ($name:literal, $self:ident, $key:expr) => {
        tracing::info_span!(
            $name,
            backend = %$self.backend,
            key = %$key,
            bytes = tracing::field::Empty,
            range = tracing::field::Empty,
            objects = tracing::field::Empty,
            status = tracing::field::Empty,
            error = tracing::field::Empty,
        )
    };
}

#[async_trait]
impl Storage for TracedStorage {
    async fn put(&self, key: &str, data: Bytes) -> StorageResult<()> {
        self.inner.put(key, data).await
    }

    async fn put_writer(&self, key: &str) -> StorageResult<Box<dyn ObjectWriter>> {
        self.inner.put_writer(key).await
    }

    async fn put_source(&self, key: &str, source: Arc<dyn UploadSource>) -> StorageResult<u64> {
        self.inner.put_source(key, source).await
    }

    async fn put_file(&self, key: &str, path: &Path) -> StorageResult<u64> {
        self.inner.put_file(key, path).await
    }

    async fn get(&self, key: &str) -> StorageResult<Bytes> {
        let span = read_span!("storage.get", self, key);
        Self::traced(span, self.inner.get(key), "bytes", |b| b.len() as u64).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StorageResult<Bytes> {
        let span = read_span!("storage.get_range", self, key);
        span.record("range", tracing::field::debug(&range));
        Self::traced(span, self.inner.get_range(key, range), "bytes", |b| {
            b.len() as u64
        })
        .await
    }

    async fn stat(&self, key: &str) -> StorageResult<Option<ObjectMeta>> {
        let span = read_span!("storage.head", self, key);
        let result = Self::traced(span.clone(), self.inner.stat(key), "bytes", |m| {
            m.as_ref().map_or(0, |m| m.len)
        })
        .await;
        if matches!(result, Ok(None)) {
            span.record("status", "not_found");
        }
        result
    }

    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>> {
        let span = read_span!("storage.list", self, prefix);
        Self::traced(span, self.inner.list(prefix), "objects", |v| v.len() as u64).await
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        self.inner.delete(key).await
    }

    async fn delete_many(&self, keys: &[String]) -> StorageResult<()> {
        self.inner.delete_many(keys).await
    }

    async fn check(&self) -> StorageResult<()> {
        self.inner.check().await
    }

    fn uri(&self) -> &str {
        self.inner.uri()
    }
}
