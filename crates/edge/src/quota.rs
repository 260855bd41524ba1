//! A count of things held at once (requests being answered, open paced
//! streams), capped in total and per client.
//!
//! Taking a share returns a [`QuotaPermit`] that gives it back when
//! dropped, so a share cannot leak on an early return or a client that
//! hangs up. Per-client counts sit in a few shards of small maps, so
//! clients on different cores rarely meet on one lock.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::ClientAddr;

const SHARDS: usize = 16;

/// Which cap a share was refused by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exceeded {
    /// The node's total, with its value.
    Total(usize),
    /// The client's own, with its value.
    PerClient(usize),
}

impl Exceeded {
    /// `total` or `per_client`, for metric labels.
    pub fn scope(self) -> &'static str {
        match self {
            Exceeded::Total(_) => "total",
            Exceeded::PerClient(_) => "per_client",
        }
    }
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exceeded::Total(n) => write!(f, "this server's limit of {n}"),
            Exceeded::PerClient(n) => write!(f, "the limit of {n} per client address"),
        }
    }
}

/// Shares of something, capped in total and per client.
#[derive(Debug)]
pub struct Quota {
    total_cap: usize,
    per_client_cap: usize,
    total: AtomicUsize,
    shards: [Mutex<HashMap<IpAddr, usize>>; SHARDS],
    hasher: RandomState,
}

impl Quota {
    /// At most `total_cap` shares at once, `per_client_cap` of them for one
    /// client (by [`ClientAddr::limit_key`]).
    pub fn new(total_cap: usize, per_client_cap: usize) -> Arc<Quota> {
        Arc::new(Quota {
            total_cap,
            per_client_cap,
            total: AtomicUsize::new(0),
            shards: std::array::from_fn(|_| Mutex::default()),
            hasher: RandomState::new(),
        })
    }

    /// Takes a share for `client`, or says which cap refuses it.
    pub fn try_acquire(self: &Arc<Self>, client: ClientAddr) -> Result<QuotaPermit, Exceeded> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.total_cap {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Exceeded::Total(self.total_cap));
        }
        let key = client.limit_key();
        {
            let mut shard = self.shard(key);
            let held = shard.entry(key).or_insert(0);
            if *held >= self.per_client_cap {
                drop(shard);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(Exceeded::PerClient(self.per_client_cap));
            }
            *held += 1;
        }
        Ok(QuotaPermit {
            quota: Arc::clone(self),
            key,
        })
    }

    /// Shares held now.
    pub fn in_use(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    fn shard(&self, key: IpAddr) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Truncation intended: any bits of the hash pick a shard.
        #[allow(clippy::cast_possible_truncation)]
        let i = self.hasher.hash_one(key) as usize % SHARDS;
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn release(&self, key: IpAddr) {
        {
            let mut shard = self.shard(key);
            if let Some(held) = shard.get_mut(&key) {
                *held -= 1;
                if *held == 0 {
                    shard.remove(&key);
                }
            }
        }
        self.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One share of a [`Quota`], given back when dropped.
#[derive(Debug)]
pub struct QuotaPermit {
    quota: Arc<Quota>,
    key: IpAddr,
}

impl Drop for QuotaPermit {
    fn drop(&mut self) {
        self.quota.release(self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(s: &str) -> ClientAddr {
        ClientAddr(s.parse().unwrap())
    }

    #[test]
    fn caps_hold_and_shares_come_back() {
        let q = Quota::new(3, 2);
        let a1 = q.try_acquire(client("192.0.2.1")).unwrap();
        let _a2 = q.try_acquire(client("192.0.2.1")).unwrap();
        assert_eq!(
            q.try_acquire(client("192.0.2.1")).unwrap_err(),
            Exceeded::PerClient(2)
        );
        let _b1 = q.try_acquire(client("192.0.2.2")).unwrap();
        assert_eq!(
            q.try_acquire(client("192.0.2.3")).unwrap_err(),
            Exceeded::Total(3)
        );
        assert_eq!(q.in_use(), 3);
        drop(a1);
        assert_eq!(q.in_use(), 2);
        let _a3 = q.try_acquire(client("192.0.2.1")).unwrap();
        // One IPv6 subscriber's /64 is one client.
        let q = Quota::new(10, 1);
        let _v6 = q.try_acquire(client("2001:db8::1")).unwrap();
        assert!(q.try_acquire(client("2001:db8::2")).is_err());
        assert!(q.try_acquire(client("2001:db8:0:1::2")).is_ok());
    }
}
