//! The archive's storage layer: one [`Storage`] trait over a local
//! directory, memory, S3 and OpenStack Swift.
//!
//! The archive root is a [`StorageUri`] (`file:///var/lib/dvr`,
//! `s3://bucket/prefix`, `swift://container/prefix`, `memory://name`); the
//! [`resolve`] function turns it and a [`StorageConfig`] into an
//! `Arc<dyn Storage>` wrapped in the [`TimeoutStorage`], [`RetryStorage`]
//! and [`TracedStorage`] decorators. Every backend is an OpenDAL operator
//! ([`OpendalStorage`]); Swift logins (tempauth, Keystone v3) live in [`swift_auth`].
//!
//! The one idea to read it: keys are relative to the root and validated
//! before anything is sent, errors name the operation, key and masked URI,
//! and the same conformance suite ([`testsuite`], feature `testsuite`) runs
//! on every backend: memory here, the real servers (started by
//! `dvr-testkit`) in `tests/`.

#![warn(missing_docs)]

pub mod config;
pub mod counting;
pub mod error;
pub mod key;
pub mod opendal;
pub mod redact;
pub mod resolver;
pub mod retry;
pub mod storage;
pub mod swift_auth;
pub mod timeout;
pub mod traced;
pub mod upload;
pub mod uri;

#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;

pub use self::opendal::OpendalStorage;
pub use config::{RetryConfig, S3Config, Secret, StorageConfig, SwiftConfig, TimeoutConfig};
pub use counting::CountingStorage;
pub use error::{Op, StorageError, StorageResult};
pub use key::{ObjectKey, MAX_KEY_LEN};
pub use resolver::{decorate, resolve, resolve_with_clock};
pub use retry::RetryStorage;
pub use storage::{ObjectMeta, ObjectWriter, Storage};
pub use timeout::TimeoutStorage;
pub use traced::TracedStorage;
pub use upload::{FileUpload, UploadSource, MAX_SINGLE_PUT};
pub use uri::{Protocol, StorageUri};

/// Registers OpenDAL's services and HTTP transport, and makes rustls with
/// ring the process's TLS provider (the workspace builds reqwest without
/// one); idempotent. Called by every backend constructor, so callers need
/// not remember it.
pub fn install_opendal() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    ::opendal::install_default();
}

#[cfg(test)]
mod conformance {
    use std::sync::Arc;

    use super::*;
    use crate::testsuite::{run_all, SuiteOptions};

    fn config() -> StorageConfig {
        StorageConfig {
            part_size: config::MIN_PART_SIZE,
            ..StorageConfig::default()
        }
    }

    #[tokio::test]
    async fn memory_backend_passes_the_suite() {
        let uri = StorageUri::parse("memory://conformance").unwrap();
        let s = resolve(&uri, &config()).unwrap();
        s.check().await.unwrap();
        let opts = SuiteOptions {
            many_keys: 1100,
            ..SuiteOptions::quick("suite/")
        };
        run_all(s.as_ref(), &opts).await;
    }

    #[tokio::test]
    async fn file_backend_passes_the_suite() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("archive");
        let uri = StorageUri::parse(&format!("file://{}", root.display())).unwrap();
        let s = resolve(&uri, &config()).unwrap();
        s.check().await.unwrap();
        assert!(root.is_dir(), "check creates the archive directory");
        run_all(s.as_ref(), &SuiteOptions::quick("suite/")).await;
        // Keys land where the layout says, under the root.
        s.put("ch1/locks.json", bytes::Bytes::from_static(b"[]"))
            .await
            .unwrap();
        assert!(root.join("ch1/locks.json").is_file());
    }

    #[tokio::test]
    async fn memory_stores_are_shared_by_uri() {
        let uri = StorageUri::parse("memory://shared-by-uri").unwrap();
        let a = resolve(&uri, &config()).unwrap();
        let b = resolve(&uri, &config()).unwrap();
        a.put("k", bytes::Bytes::from_static(b"v")).await.unwrap();
        assert_eq!(b.get("k").await.unwrap(), bytes::Bytes::from_static(b"v"));
        let other = resolve(&StorageUri::parse("memory://other").unwrap(), &config()).unwrap();
        assert!(other.stat("k").await.unwrap().is_none());
    }

    /// Secrets must not leak through errors, `Debug` or the URI, even when
    /// the underlying client fails.
    #[tokio::test]
    async fn secrets_never_appear_in_errors_or_debug() {
        const S3_SECRET: &str = "s3-secret-7f3a9c";
        const SWIFT_KEY: &str = "swift-key-51be02";
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cfg = config();
        cfg.retry.max_attempts = 1;
        cfg.s3.endpoint = Some(format!("http://127.0.0.1:{closed}"));
        cfg.s3.access_key_id = Some("AKIATEST".into());
        cfg.s3.secret_access_key = Some(Secret::new(S3_SECRET));
        cfg.s3.load_default_credentials = false;
        cfg.swift.auth_url = Some(format!("http://127.0.0.1:{closed}/auth/v1.0"));
        cfg.swift.user = Some("test:tester".into());
        cfg.swift.key = Some(Secret::new(SWIFT_KEY));

        let mut shown = format!("{cfg:?}");
        for uri in ["s3://bucket/archive", "swift://container/archive"] {
            let s: Arc<dyn Storage> = resolve(&StorageUri::parse(uri).unwrap(), &cfg).unwrap();
            shown.push_str(&format!("{s:?}"));
            let err = s
                .put("ch1/a.ts", bytes::Bytes::from_static(b"x"))
                .await
                .unwrap_err();
            assert!(err.is_transient(), "{err}");
            assert!(err.to_string().contains("ch1/a.ts"), "{err}");
            assert!(err.to_string().contains(uri), "{err}");
            shown.push_str(&format!("{err} {err:?}"));
            let err = s.check().await.unwrap_err();
            assert!(err.to_string().contains("cannot reach"), "{err}");
            shown.push_str(&format!("{err} {err:?}"));
        }
        for secret in [S3_SECRET, SWIFT_KEY] {
            assert!(!shown.contains(secret), "secret leaked: {shown}");
        }
    }
}
