//! The cluster key: one secret shared by the origins of a cluster.

use std::fmt;

use hmac::{KeyInit, Mac};
use sha2::Sha256;

/// HMAC-SHA256 keyed by the cluster key.
pub(crate) type HmacSha256 = hmac::Hmac<Sha256>;

/// The shortest key accepted, in bytes: shorter keys are guessable offline
/// from one signed request.
pub const MIN_KEY_LEN: usize = 16;

/// The cluster key. Its `Debug` and `Display` print `***`, so it cannot
/// reach a log or an error message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey(Vec<u8>);

impl ClusterKey {
    /// The key from its configured text, `${VAR}` already expanded; refused
    /// when shorter than [`MIN_KEY_LEN`] bytes (the message never holds it).
    pub fn new(text: &str) -> Result<Self, String> {
        if text.len() < MIN_KEY_LEN {
            return Err(format!(
                "cluster_key is {} bytes long, at least {MIN_KEY_LEN} are needed",
                text.len()
            ));
        }
        Ok(Self(text.as_bytes().to_vec()))
    }

    /// A fresh MAC keyed by this key.
    pub(crate) fn mac(&self) -> HmacSha256 {
        <HmacSha256 as KeyInit>::new_from_slice(&self.0).expect("HMAC takes keys of any length")
    }

    /// The MAC of `parts`, each followed by a newline.
    pub(crate) fn sign_lines(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.mac();
        for part in parts {
            mac.update(part);
            mac.update(b"\n");
        }
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterKey(***)")
    }
}

impl fmt::Display for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_key_is_refused_without_showing_it() {
        let err = ClusterKey::new("short-secret").unwrap_err();
        assert!(!err.contains("short-secret"), "{err}");
        assert!(err.contains("at least 16"), "{err}");
        let key = ClusterKey::new("a-long-enough-cluster-secret").unwrap();
        assert_eq!(format!("{key} {key:?}"), "*** ClusterKey(***)");
    }
}
