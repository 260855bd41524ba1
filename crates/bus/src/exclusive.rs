//! One holder at a time for a short piece of work, across replicas: a key
//! in a KV bucket.
//!
//! Some edits are a read-modify-write of an object in a store that has no
//! compare-and-set (a stream's `locks.json` in S3 or Swift). Two API
//! replicas editing it at once could each write what they read plus their
//! change, and one change would be lost. [`Exclusive::run`] does the work
//! while holding a key instead:
//! - the key is taken by a conditional create, so of two takers one wins;
//! - the holder renews it with conditional updates while the work runs,
//!   and deletes it when the work is done;
//! - a waiter polls. It takes over a key whose revision it has not seen
//!   change for `ttl`, as ownership leases do, so a holder that died frees
//!   the key after `ttl`. Staleness is judged by the waiter's own clock,
//!   never by comparing two machines' clocks.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dvr_common::{Clock, SystemClock};
use dvr_proto::{LeaseRecord, Versioned, PROTO_VERSION};
use tokio::time::Instant;
use tracing::warn;

use crate::error::BusError;
use crate::kv::{Kv, KvOp};

/// How often a waiter looks at the key again.
const POLL: Duration = Duration::from_millis(20);

/// Work done by one holder at a time, per key of a bucket.
#[derive(Debug, Clone)]
pub struct Exclusive {
    kv: Arc<dyn Kv>,
    holder: String,
    ttl: Duration,
    wait: Duration,
}

impl Exclusive {
    /// Holds keys of `kv` as `holder` (a name for logs and the key's
    /// value). A key not renewed for 6 s is free; a waiter gives up after
    /// 15 s.
    pub fn new(kv: Arc<dyn Kv>, holder: &str) -> Self {
        Self {
            kv,
            holder: holder.to_owned(),
            ttl: Duration::from_secs(6),
            wait: Duration::from_secs(15),
        }
    }

    /// A key not renewed for `ttl` is free to take; a waiter gives up
    /// after `wait`.
    #[must_use]
    pub fn with_timing(mut self, ttl: Duration, wait: Duration) -> Self {
        self.ttl = ttl;
        self.wait = wait;
        self
    }

    /// Runs `work` while holding `key`: waits for the key (a
    /// [`BusError::KvConflict`] after the wait, naming the holder), renews
    /// it while `work` runs, and frees it after.
    pub async fn run<T>(&self, key: &str, work: impl Future<Output = T>) -> Result<T, BusError> {
        let mut revision = self.take(key).await?;
        let mut work = std::pin::pin!(work);
        let mut renew = tokio::time::interval(self.ttl / 3);
        renew.tick().await;
        let out = loop {
            tokio::select! {
                out = &mut work => break out,
                _ = renew.tick() => match self.kv.update(key, self.record(), revision).await {
                    Ok(r) => revision = r,
                    Err(e) => warn!(bucket = self.kv.bucket(), key, error = %e, "cannot renew an exclusive hold; the work goes on"),
                },
            }
        };
        // Free the key unless someone took it over meanwhile.
        match self.kv.get(key).await {
            Ok(Some(entry)) if entry.revision == revision => {
                if let Err(e) = self.kv.delete(key).await {
                    warn!(bucket = self.kv.bucket(), key, error = %e, "cannot free an exclusive hold; it expires");
                }
            }
            Ok(_) => {}
            Err(e) => {
                warn!(bucket = self.kv.bucket(), key, error = %e, "cannot free an exclusive hold; it expires");
            }
        }
        Ok(out)
    }

    /// Takes `key`; its revision.
    async fn take(&self, key: &str) -> Result<u64, BusError> {
        let deadline = Instant::now() + self.wait;
        // The holder's revision and when this waiter first saw it.
        let mut seen: Option<(u64, Instant)> = None;
        loop {
            match self.kv.create(key, self.record()).await {
                Ok(revision) => return Ok(revision),
                Err(BusError::KvConflict { .. }) => {}
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            match self.kv.get(key).await? {
                Some(entry) if entry.op == KvOp::Put => match seen {
                    Some((revision, since)) if revision == entry.revision => {
                        if now.duration_since(since) >= self.ttl {
                            // The holder stopped renewing: take over, unless
                            // another waiter just did.
                            match self.kv.update(key, self.record(), revision).await {
                                Ok(revision) => return Ok(revision),
                                Err(BusError::KvConflict { .. }) => seen = None,
                                Err(e) => return Err(e),
                            }
                        }
                    }
                    _ => seen = Some((entry.revision, now)),
                },
                // Freed meanwhile: create again at once.
                _ => continue,
            }
            if now >= deadline {
                let holder = match self.kv.get(key).await {
                    Ok(Some(entry)) => LeaseRecord::decode(&entry.value)
                        .map(|r| r.holder)
                        .unwrap_or_else(|_| "someone".to_owned()),
                    _ => "someone".to_owned(),
                };
                return Err(BusError::KvConflict {
                    bucket: self.kv.bucket().to_owned(),
                    key: key.to_owned(),
                    reason: format!(
                        "{holder} holds it, still after {} s of waiting",
                        self.wait.as_secs_f64()
                    ),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn record(&self) -> Bytes {
        Bytes::from(
            LeaseRecord {
                v: PROTO_VERSION,
                holder: self.holder.clone(),
                renewed: SystemClock.now(),
            }
            .encode(),
        )
    }
}
