//! How to reach and log in to the store behind an archive URI.
//!
//! The URI names the bucket; this config says which endpoint, region and
//! credentials to use and how patient to be. Secrets are [`Secret`]s, whose
//! `Debug` and `Display` print `***`, so a config can be logged whole. The standard environment variables of the AWS and OpenStack CLIs
//! override the file ([`StorageConfig::apply_env`]), which is how Kubernetes
//! secrets reach the process.

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use dvr_common::config::Secret;

/// Storage section of the node config.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Settings for `s3://` roots.
    pub s3: S3Config,
    /// Settings for `swift://` roots.
    pub swift: SwiftConfig,
    /// Retries of transient failures.
    pub retry: RetryConfig,
    /// Time limits per operation.
    pub timeout: TimeoutConfig,
    /// Size of one part of a streamed upload, in bytes (S3 multipart part,
    /// Swift SLO segment). At least 5 MiB; default 16 MiB. Memory held by an
    /// upload is about twice this.
    #[serde(default = "default_part_size")]
    pub part_size: usize,
    /// Largest upload of known length sent as one streamed PUT (S3, Swift),
    /// in bytes; larger ones use parts. Default and maximum 5 GiB, the
    /// stores' limit; 0 always uses parts. One PUT per chunk is what keeps
    /// the request bill at two PUTs per stream-hour.
    #[serde(default = "default_single_put_max")]
    pub single_put_max: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            s3: S3Config::default(),
            swift: SwiftConfig::default(),
            retry: RetryConfig::default(),
            timeout: TimeoutConfig::default(),
            part_size: default_part_size(),
            single_put_max: default_single_put_max(),
        }
    }
}

fn default_single_put_max() -> u64 {
    crate::upload::MAX_SINGLE_PUT
}

fn default_part_size() -> usize {
    16 * 1024 * 1024
}

/// Minimum part size S3 accepts for all parts but the last.
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// S3 endpoint and credentials.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Endpoint URL, e.g. `http://127.0.0.1:9000`. Unset: `AWS_ENDPOINT_URL`,
    /// else AWS's regional endpoint.
    pub endpoint: Option<String>,
    /// Region, e.g. `us-east-1`. Unset: `AWS_REGION` / `AWS_DEFAULT_REGION`,
    /// else `us-east-1`.
    pub region: Option<String>,
    /// Address buckets as `endpoint/bucket` (true, what most non-AWS servers
    /// need) or as `bucket.endpoint` (false).
    pub path_style: bool,
    /// Access key id. Overridden by `AWS_ACCESS_KEY_ID`. With neither, the
    /// AWS default chain is used: profile files, web identity (Kubernetes
    /// service-account roles), ECS and EC2 metadata.
    pub access_key_id: Option<String>,
    /// Secret access key. Overridden by `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<Secret>,
    /// Session token for temporary credentials. Overridden by
    /// `AWS_SESSION_TOKEN`.
    pub session_token: Option<Secret>,
    /// Consult the AWS default credential chain and `~/.aws` files when no
    /// static key is set.
    pub load_default_credentials: bool,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: None,
            path_style: true,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            load_default_credentials: true,
        }
    }
}

/// Swift authentication: either a ready storage URL and token, tempauth (v1)
/// or Keystone v3.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SwiftConfig {
    /// Tempauth URL, e.g. `http://127.0.0.1:8080/auth/v1.0`. Overridden by
    /// `ST_AUTH`.
    pub auth_url: Option<String>,
    /// Tempauth user, e.g. `account:user`. Overridden by `ST_USER`.
    pub user: Option<String>,
    /// Tempauth key. Overridden by `ST_KEY`.
    pub key: Option<Secret>,
    /// Keystone v3 URL, e.g. `https://keystone:5000/v3`. Overridden by
    /// `OS_AUTH_URL`.
    pub os_auth_url: Option<String>,
    /// Keystone user name. Overridden by `OS_USERNAME`.
    pub os_username: Option<String>,
    /// Keystone password. Overridden by `OS_PASSWORD`.
    pub os_password: Option<Secret>,
    /// Keystone project to scope the token to. Overridden by
    /// `OS_PROJECT_NAME`.
    pub os_project_name: Option<String>,
    /// Domain of the user; default `Default`. Overridden by
    /// `OS_USER_DOMAIN_NAME`.
    pub os_user_domain_name: Option<String>,
    /// Domain of the project; default `Default`. Overridden by
    /// `OS_PROJECT_DOMAIN_NAME`.
    pub os_project_domain_name: Option<String>,
    /// Region to pick from the Keystone catalog when it lists several.
    /// Overridden by `OS_REGION_NAME`.
    pub os_region_name: Option<String>,
    /// Catalog interface to use: `public` (default), `internal` or `admin`.
    /// Overridden by `OS_INTERFACE`.
    pub os_interface: Option<String>,
    /// A storage URL to use as is (with `token`), skipping authentication.
    pub storage_url: Option<String>,
    /// A pre-issued token for `storage_url`. Overridden by `OS_AUTH_TOKEN`.
    pub token: Option<Secret>,
    /// Re-authenticate this long before the token expires, in seconds.
    #[serde(default = "default_refresh_margin_secs")]
    pub refresh_margin_secs: u64,
}

impl Default for SwiftConfig {
    fn default() -> Self {
        Self {
            auth_url: None,
            user: None,
            key: None,
            os_auth_url: None,
            os_username: None,
            os_password: None,
            os_project_name: None,
            os_user_domain_name: None,
            os_project_domain_name: None,
            os_region_name: None,
            os_interface: None,
            storage_url: None,
            token: None,
            refresh_margin_secs: default_refresh_margin_secs(),
        }
    }
}

fn default_refresh_margin_secs() -> u64 {
    300
}

/// Retry of transient failures (connection refused, 5xx, 429, timeouts) with
/// exponential backoff. Not-found, denied and bad requests are never retried.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts in total, the first included; 1 disables retries.
    pub max_attempts: u32,
    /// Wait before the first retry, in milliseconds; doubled each time.
    pub initial_backoff_ms: u64,
    /// Upper bound of one wait, in milliseconds.
    pub max_backoff_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            initial_backoff_ms: 200,
            max_backoff_ms: 10_000,
        }
    }
}

/// Time limits.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutConfig {
    /// Limit for metadata operations and reads, in milliseconds.
    pub operation_ms: u64,
    /// Limit for a whole upload (`put`, `put_file`), in milliseconds; an hour
    /// chunk of several GB needs minutes.
    pub upload_ms: u64,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        Self {
            operation_ms: 30_000,
            upload_ms: 3_600_000,
        }
    }
}

impl TimeoutConfig {
    /// [`TimeoutConfig::operation_ms`] as a duration.
    pub fn operation(&self) -> Duration {
        Duration::from_millis(self.operation_ms)
    }

    /// [`TimeoutConfig::upload_ms`] as a duration.
    pub fn upload(&self) -> Duration {
        Duration::from_millis(self.upload_ms)
    }
}

impl StorageConfig {
    /// Applies the standard environment variables of the AWS and OpenStack
    /// clients (see each field). `lookup` is `std::env::var` in production and
    /// a map in tests. Empty variables are ignored.
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let set = |field: &mut Option<String>, name: &str| {
            if let Some(v) = get(name) {
                *field = Some(v);
            }
        };
        let set_secret = |field: &mut Option<Secret>, name: &str| {
            if let Some(v) = get(name) {
                *field = Some(Secret::new(v));
            }
        };
        let s3 = &mut self.s3;
        if s3.endpoint.is_none() {
            set(&mut s3.endpoint, "AWS_ENDPOINT_URL");
        }
        if s3.region.is_none() {
            set(&mut s3.region, "AWS_REGION");
        }
        if s3.region.is_none() {
            set(&mut s3.region, "AWS_DEFAULT_REGION");
        }
        set(&mut s3.access_key_id, "AWS_ACCESS_KEY_ID");
        set_secret(&mut s3.secret_access_key, "AWS_SECRET_ACCESS_KEY");
        set_secret(&mut s3.session_token, "AWS_SESSION_TOKEN");

        let sw = &mut self.swift;
        set(&mut sw.auth_url, "ST_AUTH");
        set(&mut sw.user, "ST_USER");
        set_secret(&mut sw.key, "ST_KEY");
        set(&mut sw.os_auth_url, "OS_AUTH_URL");
        set(&mut sw.os_username, "OS_USERNAME");
        set_secret(&mut sw.os_password, "OS_PASSWORD");
        set(&mut sw.os_project_name, "OS_PROJECT_NAME");
        set(&mut sw.os_user_domain_name, "OS_USER_DOMAIN_NAME");
        set(&mut sw.os_project_domain_name, "OS_PROJECT_DOMAIN_NAME");
        set(&mut sw.os_region_name, "OS_REGION_NAME");
        set(&mut sw.os_interface, "OS_INTERFACE");
        set_secret(&mut sw.token, "OS_AUTH_TOKEN");
    }

    /// Every secret value in this config, so error texts from clients can be
    /// scrubbed of them.
    pub(crate) fn secrets(&self) -> Vec<String> {
        [
            &self.s3.secret_access_key,
            &self.s3.session_token,
            &self.swift.key,
            &self.swift.os_password,
            &self.swift.token,
        ]
        .into_iter()
        .flatten()
        .filter(|s| s.expose().len() >= 3)
        .map(|s| s.expose().to_owned())
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn env_overrides_secrets_and_fills_endpoints() {
        let env: HashMap<&str, &str> = [
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret"),
            ("ST_AUTH", "http://127.0.0.1:8080/auth/v1.0"),
            ("ST_USER", "test:tester"),
            ("ST_KEY", "testing"),
            ("OS_PASSWORD", ""),
        ]
        .into_iter()
        .collect();
        let mut cfg = StorageConfig::default();
        cfg.s3.secret_access_key = Some(Secret::new("file-secret"));
        cfg.swift.os_password = Some(Secret::new("kept"));
        cfg.apply_env(|k| env.get(k).map(|v| (*v).to_owned()));
        assert_eq!(cfg.s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(cfg.s3.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            cfg.s3.secret_access_key.as_ref().map(Secret::expose),
            Some("env-secret")
        );
        assert_eq!(cfg.swift.user.as_deref(), Some("test:tester"));
        assert_eq!(
            cfg.swift.os_password.as_ref().map(Secret::expose),
            Some("kept")
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<StorageConfig>(r#"{"s3": {"secret_key": "x"}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
        let ok: StorageConfig =
            serde_json::from_str(r#"{"s3": {"endpoint": "http://x", "path_style": false}}"#)
                .unwrap();
        assert!(!ok.s3.path_style);
        assert_eq!(ok.part_size, 16 * 1024 * 1024);
    }

    #[test]
    fn debug_never_shows_secrets() {
        let mut cfg = StorageConfig::default();
        cfg.s3.secret_access_key = Some(Secret::new("s3-very-secret"));
        cfg.swift.key = Some(Secret::new("swift-very-secret"));
        cfg.swift.os_password = Some(Secret::new("keystone-very-secret"));
        let shown = format!("{cfg:?} {cfg:#?}");
        for secret in [
            "s3-very-secret",
            "swift-very-secret",
            "keystone-very-secret",
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
