//! A KV bucket on JetStream, mapped one to one onto the [`Kv`] trait (whose
//! semantics were taken from it).

use async_nats::jetstream::kv;
use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::nats_err;
use crate::error::BusError;
use crate::kv::{validate_key, validate_prefix, Kv, KvEntry, KvOp, KvWatch};
use crate::metrics::{time_publish, Backend};

/// A JetStream KV bucket.
#[derive(Debug)]
pub struct NatsKv {
    bucket: String,
    store: kv::Store,
}

impl NatsKv {
    pub(super) fn new(bucket: &str, store: kv::Store) -> Self {
        Self {
            bucket: bucket.to_owned(),
            store,
        }
    }

    fn target(&self, key: &str) -> String {
        format!("{}/{key}", self.bucket)
    }

    fn conflict(&self, key: &str, reason: String) -> BusError {
        BusError::KvConflict {
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            reason,
        }
    }
}

fn entry(e: kv::Entry) -> KvEntry {
    KvEntry {
        key: e.key,
        op: match e.operation {
            kv::Operation::Put => KvOp::Put,
            kv::Operation::Delete | kv::Operation::Purge => KvOp::Delete,
        },
        value: e.value,
        revision: e.revision,
    }
}

#[async_trait]
impl Kv for NatsKv {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn get(&self, key: &str) -> Result<Option<KvEntry>, BusError> {
        validate_key(key)?;
        let e = self
            .store
            .entry(key)
            .await
            .map_err(|e| nats_err("kv get", &self.target(key), e))?;
        Ok(e.map(entry).filter(|e| e.op == KvOp::Put))
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<u64, BusError> {
        validate_key(key)?;
        time_publish("kv_put", Backend::Nats, self.store.put(key, value))
            .await
            .map_err(|e| nats_err("kv put", &self.target(key), e))
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<u64, BusError> {
        validate_key(key)?;
        time_publish("kv_create", Backend::Nats, self.store.create(key, value))
            .await
            .map_err(|e| {
                if e.kind() == kv::CreateErrorKind::AlreadyExists {
                    self.conflict(key, "key exists".into())
                } else {
                    nats_err("kv create", &self.target(key), e)
                }
            })
    }

    async fn update(&self, key: &str, value: Bytes, revision: u64) -> Result<u64, BusError> {
        validate_key(key)?;
        time_publish(
            "kv_update",
            Backend::Nats,
            self.store.update(key, value, revision),
        )
        .await
        .map_err(|e| {
            if e.kind() == kv::UpdateErrorKind::WrongLastRevision {
                self.conflict(key, format!("expected revision {revision}: {e}"))
            } else {
                nats_err("kv update", &self.target(key), e)
            }
        })
    }

    async fn delete(&self, key: &str) -> Result<(), BusError> {
        validate_key(key)?;
        time_publish("kv_delete", Backend::Nats, self.store.delete(key))
            .await
            .map_err(|e| nats_err("kv delete", &self.target(key), e))
    }

    async fn keys(&self) -> Result<Vec<String>, BusError> {
        let target = format!("{}/>", self.bucket);
        let mut keys: Vec<String> = self
            .store
            .keys()
            .await
            .map_err(|e| nats_err("kv keys", &target, e))?
            .try_collect()
            .await
            .map_err(|e| nats_err("kv keys", &target, e))?;
        keys.sort();
        Ok(keys)
    }

    async fn watch(&self, prefix: &str) -> Result<KvWatch, BusError> {
        validate_prefix(prefix)?;
        let pattern = format!("{prefix}>");
        let target = format!("{}/{pattern}", self.bucket);
        let watch = self
            .store
            .watch_with_history(&pattern)
            .await
            .map_err(|e| nats_err("kv watch", &target, e))?;
        Ok(watch
            .map(move |e| e.map(entry).map_err(|e| nats_err("kv watch", &target, e)))
            .boxed())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KvEntry>, BusError> {
        let target = format!("{}/{prefix}*", self.bucket);
        let mut listing = self
            .store
            .keys()
            .await
            .map_err(|e| nats_err("kv list", &target, e))?;
        let mut keys = Vec::new();
        while let Some(key) = listing.next().await {
            let key = key.map_err(|e| nats_err("kv list", &target, e))?;
            if key.starts_with(prefix) {
                keys.push(key);
            }
        }
        keys.sort();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            // A key deleted between the listing and the get is left out.
            if let Some(e) = self.get(&key).await? {
                out.push(e);
            }
        }
        Ok(out)
    }
}
