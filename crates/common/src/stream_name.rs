//! The one type a stream name enters the system as.
//!
//! Stream names become object-key prefixes (`{stream}/2026/11/21/…`) and URL
//! path components, so a name that is valid here can never escape an archive
//! root: only ASCII letters, digits, `_`, `-`, `.`, and `/` strictly between
//! non-empty components that are not `.` or `..`. Validation happens in
//! [`StreamName::new`], [`FromStr`] and on deserialize, so holding a
//! `StreamName` is proof it was checked.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest stream name accepted, in bytes.
pub const MAX_STREAM_NAME_LEN: usize = 128;

/// First path components the HTTP server keeps for itself: the operator
/// page (`/admin/`) and the pages' scripts (`/_dvr/…`, see `dvr-web`). A
/// stream named so would be shadowed by them.
pub const RESERVED_STREAM_NAMES: &[&str] = &["admin", "_dvr"];

/// A validated stream name, e.g. `ort`, `news/hd`, `channel-1.backup`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamName(String);

/// Why a string is not a valid stream name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid stream name {input:?}: {reason}")]
pub struct StreamNameError {
    input: String,
    reason: &'static str,
}

impl StreamNameError {
    /// The rejected input.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// What is wrong with it, in a few words.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl StreamName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<StreamName, StreamNameError> {
        let err = |reason| StreamNameError {
            input: name.to_owned(),
            reason,
        };
        if name.is_empty() {
            return Err(err("empty"));
        }
        if name.len() > MAX_STREAM_NAME_LEN {
            return Err(err("longer than 128 bytes"));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/');
        if !name.chars().all(allowed) {
            return Err(err(
                "only ASCII letters, digits, '_', '-', '.' and '/' are allowed",
            ));
        }
        if name.starts_with('/') || name.ends_with('/') {
            return Err(err("must not start or end with '/'"));
        }
        for component in name.split('/') {
            match component {
                "" => return Err(err("empty path component ('//')")),
                "." | ".." => return Err(err("'.' and '..' are not allowed as components")),
                _ => {}
            }
        }
        let first = name.split('/').next().unwrap_or_default();
        if RESERVED_STREAM_NAMES.contains(&first) {
            return Err(err(
                "'admin' and '_dvr' are reserved for the server's own pages",
            ));
        }
        Ok(StreamName(name.to_owned()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for StreamName {
    type Err = StreamNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StreamName::new(s)
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for StreamName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for StreamName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Serialize for StreamName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for StreamName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        StreamName::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in [
            "ort",
            "news/hd",
            "channel-1.backup",
            "A_b",
            "a/b/c",
            "x..y",
            ".hidden",
        ] {
            assert_eq!(
                StreamName::new(ok).map(|n| n.to_string()),
                Ok(ok.to_owned()),
                "{ok}"
            );
        }
        assert!(StreamName::new(&"a".repeat(128)).is_ok());
    }

    #[test]
    fn rejects_names_that_could_escape_a_root() {
        for bad in [
            "", "/ort", "ort/", "a//b", "..", "a/../b", "./a", "a/.", "a b", "ort?x", "ü", "a\\b",
        ] {
            assert!(StreamName::new(bad).is_err(), "{bad:?}");
        }
        assert!(StreamName::new(&"a".repeat(129)).is_err());
        for reserved in ["admin", "_dvr", "admin/hd", "_dvr/x"] {
            let e = StreamName::new(reserved).unwrap_err();
            assert!(e.reason().contains("reserved"), "{reserved}: {e}");
        }
        assert!(StreamName::new("news/admin").is_ok());
        assert!(StreamName::new("administration").is_ok());
        let e = StreamName::new("../etc").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"invalid stream name "../etc": '.' and '..' are not allowed as components"#
        );
    }

    #[test]
    fn serde_validates() {
        let ok: StreamName = serde_json::from_str(r#""news/hd""#).unwrap();
        assert_eq!(serde_json::to_string(&ok).unwrap(), r#""news/hd""#);
        assert!(serde_json::from_str::<StreamName>(r#""../x""#).is_err());
    }

    proptest! {
        #[test]
        fn valid_names_never_escape(s in "[a-z./_-]{1,20}") {
            if let Ok(name) = StreamName::new(&s) {
                prop_assert!(!name.as_str().starts_with('/'));
                prop_assert!(name.as_str().split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
            }
        }
    }
}
