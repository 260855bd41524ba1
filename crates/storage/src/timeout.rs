//! Time limits on storage operations.
//!
//! A store that accepts a connection and then never answers would hang the
//! recorder's upload or a viewer's segment request forever. Reads and
//! metadata calls get a short limit; uploads a long one, since an hour chunk
//! is gigabytes. A timeout is transient, so the retry decorator placed
//! outside this one tries again.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::config::TimeoutConfig;
use crate::error::{Op, StorageError, StorageResult};
use crate::storage::{ObjectMeta, ObjectWriter, Storage};
use crate::upload::UploadSource;

/// A [`Storage`] whose operations fail with [`StorageError::Timeout`] when
/// they take too long.
#[derive(Debug)]
pub struct TimeoutStorage {
    inner: Arc<dyn Storage>,
    operation: Duration,
    upload: Duration,
}

impl TimeoutStorage {
    /// Wraps `inner` with the limits in `cfg`.
    pub fn new(inner: Arc<dyn Storage>, cfg: &TimeoutConfig) -> Self {
        Self {
            inner,
            operation: cfg.operation(),
            upload: cfg.upload(),
        }
    }

    async fn limit<T>(
        &self,
        op: Op,
        key: &str,
        after: Duration,
        fut: impl Future<Output = StorageResult<T>> + Send,
    ) -> StorageResult<T> {
        match tokio::time::timeout(after, fut).await {
            Ok(r) => r,
            Err(_) => Err(StorageError::Timeout {
                op,
                key: key.to_owned(),
                uri: self.inner.uri().to_owned(),
                after,
            }),
        }
    }
}

#[async_trait]
impl Storage for TimeoutStorage {
    async fn put(&self, key: &str, data: Bytes) -> StorageResult<()> {
        self.limit(Op::Put, key, self.upload, self.inner.put(key, data))
            .await
    }

    async fn put_writer(&self, key: &str) -> StorageResult<Box<dyn ObjectWriter>> {
        self.limit(
            Op::PutStream,
            key,
            self.operation,
            self.inner.put_writer(key),
        )
        .await
    }

    async fn put_source(&self, key: &str, source: Arc<dyn UploadSource>) -> StorageResult<u64> {
        self.limit(
            Op::PutFile,
            key,
            self.upload,
            self.inner.put_source(key, source),
        )
        .await
    }

    async fn get(&self, key: &str) -> StorageResult<Bytes> {
        self.limit(Op::Get, key, self.operation, self.inner.get(key))
            .await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StorageResult<Bytes> {
        self.limit(
            Op::GetRange,
            key,
            self.operation,
            self.inner.get_range(key, range),
        )
        .await
    }

    async fn stat(&self, key: &str) -> StorageResult<Option<ObjectMeta>> {
        self.limit(Op::Stat, key, self.operation, self.inner.stat(key))
            .await
    }

    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>> {
        self.limit(Op::List, prefix, self.operation, self.inner.list(prefix))
            .await
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        self.limit(Op::Delete, key, self.operation, self.inner.delete(key))
            .await
    }

    async fn delete_many(&self, keys: &[String]) -> StorageResult<()> {
        let what = keys.first().map(String::as_str).unwrap_or("");
        self.limit(
            Op::DeleteMany,
            what,
            self.upload,
            self.inner.delete_many(keys),
        )
        .await
    }

    async fn check(&self) -> StorageResult<()> {
        self.limit(Op::Check, "", self.operation, self.inner.check())
            .await
    }

    fn uri(&self) -> &str {
        self.inner.uri()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store that never answers.
    #[derive(Debug)]
    struct Hung;

    async fn hang<T>() -> StorageResult<T> {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        unreachable!("the timeout fires first")
    }

    #[async_trait]
    impl Storage for Hung {
        async fn put(&self, _: &str, _: Bytes) -> StorageResult<()> {
            hang().await
        }
        async fn put_writer(&self, _: &str) -> StorageResult<Box<dyn ObjectWriter>> {
            hang().await
        }
        async fn put_source(&self, _: &str, _: Arc<dyn UploadSource>) -> StorageResult<u64> {
            hang().await
        }
        async fn get(&self, _: &str) -> StorageResult<Bytes> {
            hang().await
        }
        async fn get_range(&self, _: &str, _: Range<u64>) -> StorageResult<Bytes> {
            hang().await
        }
        async fn stat(&self, _: &str) -> StorageResult<Option<ObjectMeta>> {
            hang().await
        }
        async fn list(&self, _: &str) -> StorageResult<Vec<ObjectMeta>> {
            hang().await
        }
        async fn delete(&self, _: &str) -> StorageResult<()> {
            hang().await
        }
        async fn delete_many(&self, _: &[String]) -> StorageResult<()> {
            hang().await
        }
        async fn check(&self) -> StorageResult<()> {
            hang().await
        }
        fn uri(&self) -> &str {
            "s3://hung/prefix"
        }
    }

    #[tokio::test]
    async fn a_hung_store_times_out_with_a_transient_error_naming_the_key() {
        let cfg = TimeoutConfig {
            operation_ms: 20,
            upload_ms: 40,
        };
        let s = TimeoutStorage::new(Arc::new(Hung), &cfg);
        let err = s.get_range("ch1/a.ts", 0..10).await.unwrap_err();
        assert!(
            matches!(err, StorageError::Timeout { after, .. } if after == Duration::from_millis(20))
        );
        assert!(err.is_transient());
        let line = err.to_string();
        assert!(
            line.contains("ch1/a.ts") && line.contains("s3://hung/prefix"),
            "{line}"
        );
        let err = s.put("ch1/b.ts", Bytes::new()).await.unwrap_err();
        assert!(
            matches!(err, StorageError::Timeout { after, .. } if after == Duration::from_millis(40))
        );
    }
}
