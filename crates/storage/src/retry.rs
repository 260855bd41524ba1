//! Retrying transient failures with exponential backoff.
//!
//! An object store that restarts, a load balancer that drops a connection,
//! a 503 under load: these pass, and the recorder must not lose an hour of
//! TV over them. Only errors that [`StorageError::is_transient`] marks are
//! retried; a missing object or a rejected key fails at once. A streamed
//! writer cannot be replayed and is passed through untouched; `put_source`
//! reads its source again from the start and is retried whole.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tracing::debug;

use crate::config::RetryConfig;
use crate::error::{StorageError, StorageResult};
use crate::storage::{ObjectMeta, ObjectWriter, Storage};
use crate::upload::UploadSource;

/// A [`Storage`] that retries the transient failures of another.
#[derive(Debug)]
pub struct RetryStorage {
    inner: Arc<dyn Storage>,
    policy: RetryConfig,
}

impl RetryStorage {
    /// Wraps `inner` with `policy`.
    pub fn new(inner: Arc<dyn Storage>, policy: RetryConfig) -> Self {
        Self { inner, policy }
    }

    /// The wait before retry number `retry` (0-based): initial × 2^retry,
    /// capped, with up to 25 % jitter so clients do not retry in lockstep.
    pub fn backoff(&self, retry: u32) -> Duration {
        let base = self
            .policy
            .initial_backoff_ms
            .saturating_mul(1u64 << retry.min(30))
            .min(self.policy.max_backoff_ms);
        let jitter = if base >= 4 {
            fastrand_u64() % (base / 4)
        } else {
            0
        };
        Duration::from_millis(base.saturating_sub(jitter))
    }

    async fn retry<T, F, Fut>(&self, what: &str, f: F) -> StorageResult<T>
    where
        F: Fn() -> Fut + Send + Sync,
        Fut: std::future::Future<Output = StorageResult<T>> + Send,
        T: Send,
    {
        let attempts = self.policy.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            match f().await {
                Err(e) if e.is_transient() && attempt < attempts => {
                    let wait = self.backoff(attempt - 1);
                    // Debug, not warn: during an outage every read and upload
                    // retries, and the caller reports the failure that stays.
                    debug!(uri = %self.inner.uri(), op = what, attempt, wait_ms = wait.as_millis() as u64, error = %e, "storage operation failed, retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                r => return r,
            }
        }
    }
}

/// A cheap jitter source; quality does not matter here.
fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

#[async_trait]
impl Storage for RetryStorage {
    async fn put(&self, key: &str, data: Bytes) -> StorageResult<()> {
        self.retry("put", || self.inner.put(key, data.clone()))
            .await
    }

    async fn put_writer(&self, key: &str) -> StorageResult<Box<dyn ObjectWriter>> {
        self.retry("put_writer", || self.inner.put_writer(key))
            .await
    }

    async fn put_source(&self, key: &str, source: Arc<dyn UploadSource>) -> StorageResult<u64> {
        self.retry("put_source", || {
            self.inner.put_source(key, Arc::clone(&source))
        })
        .await
    }

    async fn get(&self, key: &str) -> StorageResult<Bytes> {
        self.retry("get", || self.inner.get(key)).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StorageResult<Bytes> {
        self.retry("get_range", || self.inner.get_range(key, range.clone()))
            .await
    }

    async fn stat(&self, key: &str) -> StorageResult<Option<ObjectMeta>> {
        self.retry("stat", || self.inner.stat(key)).await
    }

    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>> {
        self.retry("list", || self.inner.list(prefix)).await
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        self.retry("delete", || self.inner.delete(key)).await
    }

    async fn delete_many(&self, keys: &[String]) -> StorageResult<()> {
        self.retry("delete_many", || self.inner.delete_many(keys))
            .await
    }

    async fn check(&self) -> StorageResult<()> {
        // A start-up check reports at once: the operator wants the one line,
        // not a minute of backoff.
        self.inner.check().await
    }

    fn uri(&self) -> &str {
        self.inner.uri()
    }
}

/// Whether an error would be retried; exposed for callers that loop
/// themselves (the recorder's backlog).
pub fn is_retryable(e: &StorageError) -> bool {
    e.is_transient()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::error::Op;

    #[derive(Debug, Default)]
    struct Flaky {
        calls: AtomicU32,
        fail_first: u32,
        not_found: bool,
    }

    #[async_trait]
    impl Storage for Flaky {
        async fn put(&self, key: &str, _data: Bytes) -> StorageResult<()> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let (op, key, uri) = (Op::Put, key.to_owned(), "memory://flaky".to_owned());
            if self.not_found {
                return Err(StorageError::NotFound { op, key, uri });
            }
            if n < self.fail_first {
                return Err(StorageError::Unavailable {
                    op,
                    key,
                    uri,
                    detail: "503".into(),
                });
            }
            Ok(())
        }
        async fn put_writer(&self, _: &str) -> StorageResult<Box<dyn ObjectWriter>> {
            unreachable!()
        }
        async fn put_source(&self, _: &str, _: Arc<dyn UploadSource>) -> StorageResult<u64> {
            unreachable!()
        }
        async fn get(&self, _: &str) -> StorageResult<Bytes> {
            unreachable!()
        }
        async fn get_range(&self, _: &str, _: Range<u64>) -> StorageResult<Bytes> {
            unreachable!()
        }
        async fn stat(&self, _: &str) -> StorageResult<Option<ObjectMeta>> {
            unreachable!()
        }
        async fn list(&self, _: &str) -> StorageResult<Vec<ObjectMeta>> {
            unreachable!()
        }
        async fn delete(&self, _: &str) -> StorageResult<()> {
            unreachable!()
        }
        async fn delete_many(&self, _: &[String]) -> StorageResult<()> {
            unreachable!()
        }
        async fn check(&self) -> StorageResult<()> {
            Ok(())
        }
        fn uri(&self) -> &str {
            "memory://flaky"
        }
    }

    fn policy(max_attempts: u32) -> RetryConfig {
        RetryConfig {
            max_attempts,
            initial_backoff_ms: 1,
            max_backoff_ms: 4,
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_success() {
        let inner = Arc::new(Flaky {
            fail_first: 3,
            ..Default::default()
        });
        let s = RetryStorage::new(inner.clone(), policy(5));
        s.put("k", Bytes::new()).await.unwrap();
        assert_eq!(inner.calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_with_the_last_error() {
        let inner = Arc::new(Flaky {
            fail_first: 10,
            ..Default::default()
        });
        let s = RetryStorage::new(inner.clone(), policy(3));
        let err = s.put("k", Bytes::new()).await.unwrap_err();
        assert!(err.is_transient());
        assert_eq!(inner.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn not_found_is_not_retried() {
        let inner = Arc::new(Flaky {
            not_found: true,
            ..Default::default()
        });
        let s = RetryStorage::new(inner.clone(), policy(5));
        assert!(s.put("k", Bytes::new()).await.unwrap_err().is_not_found());
        assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let s = RetryStorage::new(
            Arc::new(Flaky::default()),
            RetryConfig {
                max_attempts: 5,
                initial_backoff_ms: 100,
                max_backoff_ms: 1_000,
            },
        );
        let d: Vec<u128> = (0..6).map(|i| s.backoff(i).as_millis()).collect();
        assert!((75..=100).contains(&d[0]), "{d:?}");
        assert!((150..=200).contains(&d[1]), "{d:?}");
        assert!((750..=1_000).contains(&d[5]), "{d:?}");
    }
}
