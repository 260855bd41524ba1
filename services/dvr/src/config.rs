//! `dvr run`'s configuration: the shared config file plus the sections only
//! the binary reads.
//!
//! dvr-common validates the file (streams, archive roots, HTTP) but does not
//! know the storage crate's types, so the top-level `storage:` section is
//! read here, from the same text, into [`StorageConfig`]; errors have the
//! same form (`dvr.yaml line 9: storage.s3: unknown field ...`). The
//! standard environment variables of the AWS and OpenStack clients then
//! override it ([`StorageConfig::apply_env`]): that is how secrets reach a
//! pod without being written into the file.

use dvr_common::config::{from_yaml_str_as, Config, ConfigError};
use dvr_storage::StorageConfig;
use serde::Deserialize;

/// Everything `dvr run` reads from its configuration file.
#[derive(Clone)]
pub struct RunConfig {
    /// Streams, archive roots, HTTP.
    pub node: Config,
    /// How to reach and log in to the object stores behind `s3://` and
    /// `swift://` archive roots, environment applied.
    pub storage: StorageConfig,
    /// The file's text and name, for [`RunConfig::api`].
    source: (String, String),
}

impl std::fmt::Debug for RunConfig {
    /// Without the file's text, which may hold secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunConfig")
            .field("node", &self.node)
            .field("storage", &self.storage)
            .field("source", &self.source.1)
            .finish_non_exhaustive()
    }
}

/// The sections of the file this crate owns; the rest is dvr-common's.
#[derive(Debug, Deserialize)]
struct BinarySections {
    #[serde(default)]
    storage: StorageConfig,
}

impl RunConfig {
    /// Parses and validates `text` (named `source_name` in errors), then
    /// applies the environment as `env` reports it.
    pub fn from_yaml_str(
        text: &str,
        source_name: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let node = Config::from_yaml_str(text, source_name)?;
        let mut storage = from_yaml_str_as::<BinarySections>(text, source_name)?.storage;
        storage.apply_env(&env);
        dvr_api::ApiConfig::check_yaml_str(text, source_name)?;
        Ok(Self {
            node,
            storage,
            source: (text.to_owned(), source_name.to_owned()),
        })
    }

    /// Who may call the API (`api:`), its `${VAR}`s read from `env`: asked
    /// only by a process that runs the API, so that no other pod needs the
    /// API's secrets in its environment (the section's shape was checked
    /// at load).
    pub fn api(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<dvr_api::ApiConfig, ConfigError> {
        dvr_api::ApiConfig::from_yaml_str(&self.source.0, &self.source.1, env)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const FULL: &str = r#"version: 1
archive: s3://tv/dvr
storage:
  s3:
    endpoint: http://127.0.0.1:9000
    region: eu-west-1
    path_style: true
    access_key_id: AKIAFILE
    secret_access_key: file-secret
  swift:
    auth_url: http://127.0.0.1:8080/auth/v1.0
    user: "test:tester"
    key: testing
  retry: { max_attempts: 3, initial_backoff_ms: 100, max_backoff_ms: 1000 }
  timeout: { operation_ms: 5000, upload_ms: 600000 }
  part_size: 8388608
streams:
  ch1:
    inputs: [ "udp://127.0.0.1:1234" ]
    dvr: { depth: 1d }
"#;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn every_storage_field_is_read() {
        let c = RunConfig::from_yaml_str(FULL, "dvr.yaml", no_env).unwrap();
        let s = &c.storage;
        assert_eq!(s.s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s.s3.region.as_deref(), Some("eu-west-1"));
        assert!(s.s3.path_style);
        assert_eq!(s.s3.access_key_id.as_deref(), Some("AKIAFILE"));
        assert_eq!(
            s.s3.secret_access_key
                .as_ref()
                .map(dvr_storage::Secret::expose),
            Some("file-secret")
        );
        assert_eq!(s.swift.user.as_deref(), Some("test:tester"));
        assert_eq!(s.retry.max_attempts, 3);
        assert_eq!(s.timeout.operation_ms, 5000);
        assert_eq!(s.part_size, 8 * 1024 * 1024);
        assert_eq!(c.node.streams.len(), 1);
        assert!(!format!("{c:?}").contains("file-secret"));
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let env: HashMap<&str, &str> = [
            ("AWS_SECRET_ACCESS_KEY", "env-secret"),
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_ENDPOINT_URL", "http://ignored:1"),
            ("ST_KEY", "env-key"),
        ]
        .into_iter()
        .collect();
        let c = RunConfig::from_yaml_str(FULL, "dvr.yaml", |k| env.get(k).map(|v| (*v).to_owned()))
            .unwrap();
        assert_eq!(
            c.storage
                .s3
                .secret_access_key
                .as_ref()
                .map(dvr_storage::Secret::expose),
            Some("env-secret")
        );
        assert_eq!(c.storage.s3.access_key_id.as_deref(), Some("AKIAENV"));
        // As with the AWS CLI, an endpoint set in the file wins over
        // AWS_ENDPOINT_URL (apply_env fills it only when unset).
        assert_eq!(
            c.storage.s3.endpoint.as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(
            c.storage
                .swift
                .key
                .as_ref()
                .map(dvr_storage::Secret::expose),
            Some("env-key")
        );
    }

    #[test]
    fn no_storage_section_is_the_defaults_plus_environment() {
        let text = "version: 1\nstreams: {}\n";
        let c = RunConfig::from_yaml_str(text, "dvr.yaml", |k| {
            (k == "AWS_REGION").then(|| "ap-south-1".to_owned())
        })
        .unwrap();
        assert_eq!(c.storage.s3.region.as_deref(), Some("ap-south-1"));
        assert_eq!(c.storage.part_size, StorageConfig::default().part_size);
    }

    #[test]
    fn only_the_api_needs_the_apis_secrets() {
        let text = "version: 1\napi: { tokens: [ \"${DVR_ADMIN_TOKEN}\" ] }\nstreams: {}\n";
        let c = RunConfig::from_yaml_str(text, "dvr.yaml", no_env).unwrap();
        let e = c.api(no_env).unwrap_err().to_string();
        assert_eq!(
            e,
            "dvr.yaml: api.tokens[0]: environment variable DVR_ADMIN_TOKEN is not set"
        );
        let api = c
            .api(|k| (k == "DVR_ADMIN_TOKEN").then(|| "t0k".to_owned()))
            .unwrap();
        assert_eq!(api.tokens[0].expose(), "t0k");
        // The section's shape is still checked for every process.
        let text = "version: 1\napi: { token: [ \"x\" ] }\n";
        let e = RunConfig::from_yaml_str(text, "dvr.yaml", no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("api: unknown field `token`"), "{e}");
    }

    #[test]
    fn a_wrong_storage_key_names_line_and_path() {
        let text = "version: 1\nstorage:\n  s3:\n    secret_key: x\nstreams: {}\n";
        let e = RunConfig::from_yaml_str(text, "dvr.yaml", no_env)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("dvr.yaml line 4: storage.s3: unknown field `secret_key`"),
            "{e}"
        );
        let text = "version: 1\nstorage:\n  part_size: big\n";
        let e = RunConfig::from_yaml_str(text, "dvr.yaml", no_env)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("dvr.yaml line 3: storage.part_size:"), "{e}");
    }
}
