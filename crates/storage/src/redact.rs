//! Scrubbing secrets out of text that came from a client library.
//!
//! Our own messages never format a secret, but an SDK error may echo a URL,
//! a header or a response body. Every such text passes through a
//! [`Redactor`] that knows the configured secrets before it is stored in an
//! error.

use std::fmt;
use std::sync::{Arc, RwLock};

/// The secrets to remove, shared by a backend and its auth module (which
/// adds each new Swift token).
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Arc<RwLock<Vec<String>>>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Redactor(***)")
    }
}

impl Redactor {
    /// A redactor for `secrets`.
    pub fn new(secrets: Vec<String>) -> Self {
        Self {
            secrets: Arc::new(RwLock::new(secrets)),
        }
    }

    /// Adds a secret learned at run time (a fresh token).
    pub fn add(&self, secret: &str) {
        if secret.len() < 3 {
            return;
        }
        if let Ok(mut s) = self.secrets.write() {
            if !s.iter().any(|x| x == secret) {
                s.push(secret.to_owned());
            }
        }
    }

    /// `text` with every known secret replaced by `***`, on one line.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(['\n', '\r'], " ");
        if let Ok(secrets) = self.secrets.read() {
            for s in secrets.iter() {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_known_secrets() {
        let r = Redactor::new(vec!["hunter2".into()]);
        r.add("AUTH_tk123");
        assert_eq!(
            r.scrub("key hunter2\ntoken AUTH_tk123"),
            "key *** token ***"
        );
    }
}
