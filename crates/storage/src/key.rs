//! Object keys, checked before they reach a store.
//!
//! A key is a path relative to the archive root. Rejecting `..`, absolute
//! paths, NUL and oversized keys here means no backend has to think about
//! escaping its root, and a bad key is reported without a network round trip.

use crate::error::{StorageError, StorageResult};

/// The longest key accepted, in bytes. S3 allows 1024 bytes and Swift 1024
/// for the whole object name; the root prefix needs room too.
pub const MAX_KEY_LEN: usize = 900;

/// Top-level names the backends use for their own bookkeeping.
pub const RESERVED_TOP_LEVEL: [&str; 2] = [".segments", ".dvr-tmp"];

/// A validated key: non-empty, relative, without `.` or `..` components,
/// empty components, NUL or control characters, at most [`MAX_KEY_LEN`] bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Checks `key` and wraps it.
    pub fn parse(key: &str) -> StorageResult<Self> {
        validate(key, false)?;
        Ok(Self(key.to_owned()))
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks a list prefix: like a key, but may be empty and may end with `/`.
pub fn validate_prefix(prefix: &str) -> StorageResult<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    validate(prefix, true)
}

fn validate(key: &str, is_prefix: bool) -> StorageResult<()> {
    let reject = |reason: &'static str| {
        Err(StorageError::InvalidKey {
            key: shorten(key),
            reason,
        })
    };
    if key.is_empty() {
        return reject("key is empty");
    }
    if key.len() > MAX_KEY_LEN {
        return reject("key is longer than 900 bytes");
    }
    if key.starts_with('/') {
        return reject("key must be relative to the root (leading '/')");
    }
    if key.chars().any(|c| c == '\0') {
        return reject("key contains NUL");
    }
    if key.chars().any(char::is_control) {
        return reject("key contains a control character");
    }
    if key.contains('\\') {
        return reject("key contains a backslash");
    }
    let body = if is_prefix {
        key.strip_suffix('/').unwrap_or(key)
    } else {
        key
    };
    if !is_prefix && key.ends_with('/') {
        return reject("key ends with '/' (that names a directory, not an object)");
    }
    // Backends keep their own bookkeeping under these names in the root
    // (Swift SLO segments, the file backend's atomic-write directory) and
    // hide them from listings; a key there would vanish from `list`.
    let first = body.split('/').next().unwrap_or("");
    if RESERVED_TOP_LEVEL.contains(&first) {
        return reject("key starts with a name reserved by the storage layer");
    }
    for component in body.split('/') {
        match component {
            "" => return reject("key has an empty path component ('//')"),
            "." | ".." => return reject("key has a '.' or '..' component"),
            _ => {}
        }
    }
    Ok(())
}

/// Keys in errors are cut so a hostile 1 MB key does not end up in a log line.
fn shorten(key: &str) -> String {
    const SHOWN: usize = 120;
    let printable: String = key
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if printable.len() <= SHOWN {
        return printable;
    }
    let mut end = SHOWN;
    while !printable.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &printable[..end], key.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_archive_keys() {
        for key in [
            "a",
            "ch1/2024/01/02/03/00000000000000000001.ts",
            "ch1/locks.json",
            "a b/ü.ts",
        ] {
            assert!(ObjectKey::parse(key).is_ok(), "{key}");
        }
    }

    #[test]
    fn rejects_keys_that_could_escape_or_confuse_a_store() {
        let long = "a".repeat(MAX_KEY_LEN + 1);
        for key in [
            "",
            "/abs",
            "a/../b",
            "..",
            "./a",
            "a//b",
            "a/",
            "a\0b",
            "a\nb",
            "a\\b",
            &long,
            ".segments/x",
            ".dvr-tmp/y",
        ] {
            let err = ObjectKey::parse(key).unwrap_err();
            assert!(
                matches!(err, StorageError::InvalidKey { .. }),
                "{key:?}: {err}"
            );
        }
    }

    #[test]
    fn prefixes_may_be_empty_or_end_with_slash() {
        assert!(validate_prefix("").is_ok());
        assert!(validate_prefix("ch1/").is_ok());
        assert!(validate_prefix("ch1/20").is_ok());
        assert!(validate_prefix("../").is_err());
        assert!(validate_prefix("/ch1").is_err());
    }

    #[test]
    fn long_keys_are_shortened_in_errors() {
        let err = ObjectKey::parse(&"x".repeat(5000)).unwrap_err().to_string();
        assert!(err.len() < 400, "{err}");
    }
}
