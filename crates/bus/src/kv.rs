//! The [`Kv`] trait: small values under keys, with revisions and watches,
//! for stream config, leases, catalog and locks.
//!
//! The model is NATS JetStream KV's, so the NATS implementation
//! ([`crate::nats::NatsKv`]) is a thin wrapper and [`MemoryKv`] (embedded
//! mode) copies its semantics: one revision counter per bucket that grows
//! with every write, a delete leaves a tombstone (a [`KvOp::Delete`] entry
//! with a new revision) that watches see, `create` succeeds on an absent or
//! deleted key only, `update` only at the expected revision. Keys follow
//! NATS' rules ([`validate_key`]) in both, so nothing that works embedded
//! fails distributed.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::error::BusError;
use crate::metrics::Backend;

/// Whether an entry is a value or a tombstone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvOp {
    /// A value was written.
    Put,
    /// The key was deleted (the entry's value is empty).
    Delete,
}

/// One revision of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvEntry {
    /// The key.
    pub key: String,
    /// The value (empty for a delete).
    pub value: Bytes,
    /// The bucket's revision of this write.
    pub revision: u64,
    /// Put or delete.
    pub op: KvOp,
}

/// Changes to a bucket: first the latest entry of every matching key
/// (tombstones included), then every change as it happens.
pub type KvWatch = BoxStream<'static, Result<KvEntry, BusError>>;

/// A KV bucket.
#[async_trait]
pub trait Kv: Send + Sync + fmt::Debug {
    /// The bucket's name.
    fn bucket(&self) -> &str;

    /// The current value, `None` if absent or deleted.
    async fn get(&self, key: &str) -> Result<Option<KvEntry>, BusError>;

    /// Writes a value; returns its revision.
    async fn put(&self, key: &str, value: Bytes) -> Result<u64, BusError>;

    /// Writes a value only if the key is absent or deleted, else
    /// [`BusError::KvConflict`].
    async fn create(&self, key: &str, value: Bytes) -> Result<u64, BusError>;

    /// Writes a value only if the key's latest revision is `revision`, else
    /// [`BusError::KvConflict`].
    async fn update(&self, key: &str, value: Bytes, revision: u64) -> Result<u64, BusError>;

    /// Deletes a key (a tombstone with a new revision).
    async fn delete(&self, key: &str) -> Result<(), BusError>;

    /// The keys that hold a value now (not deleted), sorted.
    async fn keys(&self) -> Result<Vec<String>, BusError>;

    /// Watches the keys starting with `prefix`: `""` for all, else a prefix
    /// ending in `.` (NATS matches by whole tokens).
    async fn watch(&self, prefix: &str) -> Result<KvWatch, BusError>;

    /// The current values of the keys starting with `prefix` (`""` for
    /// all), deleted keys left out, in key order: a snapshot for listings
    /// (sessions, locks), not for following changes.
    async fn list(&self, prefix: &str) -> Result<Vec<KvEntry>, BusError>;
}

/// Checks a key against NATS KV's rules: `[-/_=.a-zA-Z0-9]+`, not starting
/// or ending with `.`.
pub fn validate_key(key: &str) -> Result<(), BusError> {
    let bad = |reason| {
        Err(BusError::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() {
        return bad("empty");
    }
    if key.starts_with('.') || key.ends_with('.') || key.contains("..") {
        return bad("empty token");
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b))
    {
        return bad("only ASCII letters, digits and -/_=. are allowed");
    }
    Ok(())
}

/// Checks a watch prefix: empty, or a valid key followed by `.`.
pub fn validate_prefix(prefix: &str) -> Result<(), BusError> {
    if prefix.is_empty() {
        return Ok(());
    }
    match prefix.strip_suffix('.') {
        Some(p) => validate_key(p),
        None => Err(BusError::InvalidKey {
            key: prefix.to_owned(),
            reason: "a watch prefix must end in `.`",
        }),
    }
}

/// The embedded KV: a map in memory, for one process.
#[derive(Debug)]
pub struct MemoryKv {
    bucket: String,
    inner: Mutex<MemoryInner>,
    changes: broadcast::Sender<KvEntry>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    revision: u64,
    entries: BTreeMap<String, KvEntry>,
    /// How long an entry lives after its write; `None`: until deleted.
    max_age: Option<Duration>,
    /// Writes in the order they expire: when, which key, which revision.
    expiring: VecDeque<(Instant, String, u64)>,
}

impl MemoryInner {
    /// Drops the entries older than the bucket's max age, as NATS does:
    /// the key is gone, without a tombstone. Each write is looked at once.
    fn expire(&mut self, now: Instant) {
        let Some(max_age) = self.max_age else {
            return;
        };
        while let Some((written, _, _)) = self.expiring.front() {
            if now.duration_since(*written) < max_age {
                break;
            }
            let Some((_, key, revision)) = self.expiring.pop_front() else {
                break;
            };
            if self
                .entries
                .get(&key)
                .is_some_and(|e| e.revision == revision)
            {
                self.entries.remove(&key);
            }
        }
    }
}

impl MemoryKv {
    /// An empty bucket.
    pub fn new(bucket: &str) -> Self {
        Self::with_max_age(bucket, Duration::ZERO)
    }

    /// An empty bucket whose entries expire `max_age` after their write
    /// (`Duration::ZERO`: never), as a NATS bucket with that max age.
    pub fn with_max_age(bucket: &str, max_age: Duration) -> Self {
        let inner = MemoryInner {
            max_age: (!max_age.is_zero()).then_some(max_age),
            ..MemoryInner::default()
        };
        Self {
            bucket: bucket.to_owned(),
            inner: Mutex::new(inner),
            changes: broadcast::channel(1024).0,
        }
    }

    /// The bucket's state with expired entries dropped.
    fn current(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.expire(Instant::now());
        inner
    }

    /// Writes `value` (or a tombstone) if `check` accepts the key's latest
    /// entry; the one place that bumps the revision, so every write is
    /// ordered the same for readers and watchers, and the one place that
    /// times writes (`metric` names the operation).
    fn write(
        &self,
        metric: &'static str,
        key: &str,
        op: KvOp,
        value: Bytes,
        check: impl FnOnce(Option<&KvEntry>) -> Result<(), String>,
    ) -> Result<u64, BusError> {
        let started = Instant::now();
        validate_key(key)?;
        let mut inner = self.current();
        check(inner.entries.get(key)).map_err(|reason| BusError::KvConflict {
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            reason,
        })?;
        inner.revision += 1;
        let entry = KvEntry {
            key: key.to_owned(),
            value,
            revision: inner.revision,
            op,
        };
        inner.entries.insert(key.to_owned(), entry.clone());
        if inner.max_age.is_some() {
            let revision = inner.revision;
            inner
                .expiring
                .push_back((Instant::now(), key.to_owned(), revision));
        }
        // Sent under the lock, so watchers see writes in revision order.
        let _ = self.changes.send(entry);
        crate::metrics::published(metric, Backend::Embedded, started);
        Ok(inner.revision)
    }
}

#[async_trait]
impl Kv for MemoryKv {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn get(&self, key: &str) -> Result<Option<KvEntry>, BusError> {
        validate_key(key)?;
        let inner = self.current();
        Ok(inner
            .entries
            .get(key)
            .filter(|e| e.op == KvOp::Put)
            .cloned())
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<u64, BusError> {
        self.write("kv_put", key, KvOp::Put, value, |_| Ok(()))
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<u64, BusError> {
        self.write("kv_create", key, KvOp::Put, value, |e| match e {
            Some(e) if e.op == KvOp::Put => Err("key exists".into()),
            _ => Ok(()),
        })
    }

    async fn update(&self, key: &str, value: Bytes, revision: u64) -> Result<u64, BusError> {
        self.write("kv_update", key, KvOp::Put, value, |e| {
            let latest = e.map_or(0, |e| e.revision);
            if latest == revision {
                Ok(())
            } else {
                Err(format!("expected revision {revision}, latest is {latest}"))
            }
        })
    }

    async fn delete(&self, key: &str) -> Result<(), BusError> {
        self.write("kv_delete", key, KvOp::Delete, Bytes::new(), |_| Ok(()))
            .map(drop)
    }

    async fn keys(&self) -> Result<Vec<String>, BusError> {
        let inner = self.current();
        Ok(inner
            .entries
            .values()
            .filter(|e| e.op == KvOp::Put)
            .map(|e| e.key.clone())
            .collect())
    }

    async fn watch(&self, prefix: &str) -> Result<KvWatch, BusError> {
        validate_prefix(prefix)?;
        let (snapshot, rx) = {
            let inner = self.current();
            let snapshot: Vec<_> = inner
                .entries
                .values()
                .filter(|e| e.key.starts_with(prefix))
                .cloned()
                .collect();
            // Subscribed under the lock: nothing falls between the two.
            (snapshot, self.changes.subscribe())
        };
        let prefix = prefix.to_owned();
        let target = self.bucket.clone();
        let live = stream::unfold(rx, move |mut rx| {
            let prefix = prefix.clone();
            let target = target.clone();
            async move {
                loop {
                    match rx.recv().await {
                        Ok(e) if e.key.starts_with(&prefix) => return Some((Ok(e), rx)),
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            return Some((Err(BusError::Lagged { target, missed }), rx));
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
        Ok(stream::iter(snapshot.into_iter().map(Ok))
            .chain(live)
            .boxed())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KvEntry>, BusError> {
        let inner = self.current();
        Ok(inner
            .entries
            .values()
            .filter(|e| e.op == KvOp::Put && e.key.starts_with(prefix))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_expire_with_the_max_age_and_leave_no_tombstone() {
        let kv = MemoryKv::with_max_age("b", Duration::from_millis(50));
        kv.create("n.first", Bytes::from_static(b"1"))
            .await
            .unwrap();
        // Taken while it lives.
        assert!(kv
            .create("n.first", Bytes::from_static(b"2"))
            .await
            .is_err());
        tokio::time::sleep(Duration::from_millis(80)).await;
        kv.put("n.second", Bytes::from_static(b"3")).await.unwrap();
        assert_eq!(kv.get("n.first").await.unwrap(), None);
        assert_eq!(kv.keys().await.unwrap(), vec!["n.second".to_owned()]);
        // Gone means free again; a bucket without max age keeps everything.
        kv.create("n.first", Bytes::from_static(b"4"))
            .await
            .unwrap();
        let forever = MemoryKv::new("f");
        forever.put("k", Bytes::from_static(b"v")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(forever.get("k").await.unwrap().is_some());
    }

    #[test]
    fn keys_follow_nats_rules() {
        for good in ["a", "ingest.ort", "news/hd", "a-b_c=d.e"] {
            validate_key(good).unwrap();
        }
        for bad in ["", ".a", "a.", "a..b", "a b", "a*", "a>"] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
        validate_prefix("").unwrap();
        validate_prefix("ingest.").unwrap();
        assert!(validate_prefix("ingest").is_err());
    }
}
