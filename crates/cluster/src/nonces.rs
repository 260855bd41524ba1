//! The nonces of signed requests, taken once across every replica.
//!
//! They live in the bus's [`dvr_proto::CLUSTER_NONCES_KV_BUCKET`], whose
//! entries expire a few minutes after their write (longer than a signature
//! stays acceptable), so a replayed request meets its nonce on whichever
//! replica it reaches, and the bucket holds only the last minutes' requests.
//! Taking one is a KV `create`: of two replicas seeing the same nonce at
//! once, exactly one wins.

use std::sync::Arc;

use bytes::Bytes;
use dvr_bus::{BusError, Kv};

/// Takes nonces in the cluster's nonce bucket.
#[derive(Debug, Clone)]
pub struct NonceGuard {
    kv: Arc<dyn Kv>,
}

impl NonceGuard {
    /// A guard over `kv`, the nonce bucket.
    pub fn new(kv: Arc<dyn Kv>) -> Self {
        Self { kv }
    }

    /// Takes `nonce` (32 lowercase hex digits, checked by the caller):
    /// `true` the first time, `false` if it was taken before.
    pub async fn first_use(&self, nonce: &str) -> Result<bool, BusError> {
        match self.kv.create(&format!("n.{nonce}"), Bytes::new()).await {
            Ok(_) => Ok(true),
            Err(BusError::KvConflict { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dvr_bus::MemoryKv;

    #[tokio::test]
    async fn a_nonce_is_taken_once_by_any_guard_of_the_bucket() {
        let kv: Arc<dyn Kv> = Arc::new(MemoryKv::new("nonces"));
        let (a, b) = (NonceGuard::new(Arc::clone(&kv)), NonceGuard::new(kv));
        let nonce = "0123456789abcdef0123456789abcdef";
        assert!(a.first_use(nonce).await.unwrap());
        assert!(!b.first_use(nonce).await.unwrap());
        assert!(!a.first_use(nonce).await.unwrap());
    }
}
