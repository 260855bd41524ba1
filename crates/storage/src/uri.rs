//! The archive root as a URI: `file:///abs/path`, `s3://bucket/prefix`,
//! `swift://container/prefix`, `memory://name`.
//!
//! The URI says *where* the archive is, never *how to log in*: credentials
//! and endpoints come from [`StorageConfig`](crate::StorageConfig) or the
//! environment. A URI that carries credentials is rejected, so the
//! [`Display`](std::fmt::Display) form is always safe to log.

use std::fmt;
use std::str::FromStr;

use crate::error::StorageError;

/// Which kind of store a URI names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// A local directory.
    File,
    /// An S3-compatible bucket.
    S3,
    /// An OpenStack Swift container.
    Swift,
    /// A process-local in-memory store, for tests and the embedded demo.
    Memory,
}

impl Protocol {
    /// The URI scheme.
    pub fn scheme(self) -> &'static str {
        match self {
            Protocol::File => "file",
            Protocol::S3 => "s3",
            Protocol::Swift => "swift",
            Protocol::Memory => "memory",
        }
    }
}

/// A parsed archive root.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StorageUri {
    protocol: Protocol,
    /// Bucket, container or memory store name; empty for `file`.
    bucket: String,
    /// Path under the bucket (no leading or trailing `/`), or the absolute
    /// directory for `file` (with its leading `/`).
    path: String,
}

impl StorageUri {
    /// Parses a URI; see the module docs for the accepted forms.
    pub fn parse(uri: &str) -> Result<Self, StorageError> {
        let bad = |detail: &str| StorageError::Config {
            uri: redact_uri_text(uri),
            detail: detail.to_owned(),
        };
        let (scheme, rest) = uri.split_once("://").ok_or_else(|| {
            bad("expected a URI like file:///var/lib/dvr, s3://bucket/prefix, swift://container/prefix or memory://name")
        })?;
        let protocol = match scheme.to_ascii_lowercase().as_str() {
            "file" => Protocol::File,
            "s3" => Protocol::S3,
            "swift" => Protocol::Swift,
            "memory" => Protocol::Memory,
            _ => return Err(bad("unknown scheme: expected file, s3, swift or memory")),
        };
        if rest.contains('\0') || rest.chars().any(char::is_control) {
            return Err(bad("URI contains control characters"));
        }
        if rest.contains('?') || rest.contains('#') {
            return Err(bad(
                "query strings and fragments are not supported; use the storage config",
            ));
        }
        if protocol == Protocol::File {
            if !rest.starts_with('/') {
                return Err(bad(
                    "a file URI needs an absolute path: file:///var/lib/dvr",
                ));
            }
            let path = rest.trim_end_matches('/');
            let path = if path.is_empty() { "/" } else { path };
            if path.split('/').any(|c| c == "..") {
                return Err(bad("a file URI may not contain '..'"));
            }
            return Ok(Self {
                protocol,
                bucket: String::new(),
                path: path.to_owned(),
            });
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.contains('@') {
            return Err(bad(
                "credentials in the URI are not allowed; put them in the storage config or the environment",
            ));
        }
        if authority.is_empty() {
            return Err(bad("missing bucket, container or store name after '://'"));
        }
        if authority.contains(':') {
            return Err(bad(
                "the URI names a bucket, not a host: set the endpoint in the storage config",
            ));
        }
        let path = path.trim_matches('/');
        if path.split('/').any(|c| c == ".." || c == ".") || path.contains("//") {
            return Err(bad(
                "the prefix may not contain '.', '..' or empty components",
            ));
        }
        Ok(Self {
            protocol,
            bucket: authority.to_owned(),
            path: path.to_owned(),
        })
    }

    /// Which kind of store.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The bucket (S3), container (Swift) or store name (memory); empty for
    /// `file`.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The prefix under the bucket (no leading or trailing `/`), or the
    /// absolute directory of a `file` URI.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The prefix as OpenDAL wants its root: `/` or `/prefix/`.
    pub(crate) fn root(&self) -> String {
        if self.protocol == Protocol::File {
            return self.path.clone();
        }
        if self.path.is_empty() {
            "/".to_owned()
        } else {
            format!("/{}/", self.path)
        }
    }
}

impl FromStr for StorageUri {
    type Err = StorageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for StorageUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.protocol {
            Protocol::File => write!(f, "file://{}", self.path),
            _ if self.path.is_empty() => write!(f, "{}://{}", self.protocol.scheme(), self.bucket),
            _ => write!(
                f,
                "{}://{}/{}",
                self.protocol.scheme(),
                self.bucket,
                self.path
            ),
        }
    }
}

/// Masks a `user:password@` part of a URI that failed to parse, so even the
/// error for a bad URI cannot leak what was typed into it.
fn redact_uri_text(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.chars().take(200).collect();
    };
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_owned(),
    };
    let sep = if path.is_empty() && !rest.contains('/') {
        ""
    } else {
        "/"
    };
    let path: String = path.split(['?', '#']).next().unwrap_or("").to_owned();
    format!("{scheme}://{authority}{sep}{path}")
        .chars()
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_protocol() {
        let u = StorageUri::parse("file:///var/lib/dvr/").unwrap();
        assert_eq!((u.protocol(), u.path()), (Protocol::File, "/var/lib/dvr"));
        assert_eq!(u.to_string(), "file:///var/lib/dvr");

        let u = StorageUri::parse("s3://bucket/tv/archive/").unwrap();
        assert_eq!(
            (u.protocol(), u.bucket(), u.path()),
            (Protocol::S3, "bucket", "tv/archive")
        );
        assert_eq!(u.root(), "/tv/archive/");
        assert_eq!(u.to_string(), "s3://bucket/tv/archive");

        let u = StorageUri::parse("swift://container").unwrap();
        assert_eq!(
            (u.protocol(), u.bucket(), u.root()),
            (Protocol::Swift, "container", "/".into())
        );

        let u = StorageUri::parse("memory://test").unwrap();
        assert_eq!((u.protocol(), u.bucket()), (Protocol::Memory, "test"));
    }

    #[test]
    fn rejects_bad_uris_without_echoing_credentials() {
        for uri in [
            "/var/lib/dvr",
            "ftp://x",
            "file://relative",
            "s3://",
            "s3://b/../x",
            "s3://host:9000/b",
            "s3://b/p?secret=1",
        ] {
            assert!(StorageUri::parse(uri).is_err(), "{uri}");
        }
        let err = StorageUri::parse("s3://AKIA:hunter2@bucket/p")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("***@bucket"), "{err}");
    }
}
