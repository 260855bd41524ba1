//! The `api:` section of the config file: who may call the API.
//!
//! ```yaml
//! api:
//!   tokens: [ "${DVR_ADMIN_TOKEN}" ]     # bearer tokens; ${VAR} is read from the environment
//!   users: { admin: "${DVR_ADMIN_PASSWORD}" }   # basic auth, name: password
//!   open_on_loopback: false              # true: direct local requests need no credentials
//! ```
//!
//! Without credentials the API is closed: every request is refused.
//! `open_on_loopback` is the one way to use it without them, and only for
//! requests that come straight from this machine ([`crate::auth`] says
//! exactly which); it is off unless written, so no config left without an
//! `api:` section opens anything.
//!
//! Secrets are best kept out of the file: `${VAR}` anywhere in a value is
//! replaced by the variable, and an unset or empty variable is an error
//! naming the field, so a typo never leaves the API open or locked by
//! accident. Values are held as [`Secret`]s, whose `Debug` prints `***`.

use std::collections::BTreeMap;

use dvr_common::config::{expand_env, from_yaml_str_as, ConfigError, Secret};
use serde::Deserialize;

/// Admin credentials, environment expanded.
#[derive(Clone, Debug, Default)]
pub struct ApiConfig {
    /// Bearer tokens (`Authorization: Bearer TOKEN`).
    pub tokens: Vec<Secret>,
    /// Basic-auth users and their passwords.
    pub users: BTreeMap<String, Secret>,
    /// Let a direct local request in without credentials (`api:
    /// open_on_loopback: true`; default false). "Direct local" is judged by
    /// [`crate::auth`]: a loopback peer naming a loopback host, with no
    /// proxy's forwarding headers and no foreign `Origin`. Refused by the
    /// distributed API service.
    pub open_on_loopback: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    #[serde(default)]
    tokens: Vec<String>,
    #[serde(default)]
    users: BTreeMap<String, String>,
    #[serde(default)]
    open_on_loopback: bool,
}

/// The part of the file this crate owns; the rest is other crates'.
#[derive(Debug, Deserialize)]
struct Sections {
    #[serde(default)]
    api: Option<RawApi>,
}

impl ApiConfig {
    /// Whether any credential is configured.
    pub fn has_credentials(&self) -> bool {
        !self.tokens.is_empty() || !self.users.is_empty()
    }

    /// Checks the `api:` section of `text` as [`ApiConfig::from_yaml_str`]
    /// does (unknown keys, types) without reading the environment: a
    /// process that does not run the API must not need the API's secrets.
    pub fn check_yaml_str(text: &str, source_name: &str) -> Result<(), ConfigError> {
        from_yaml_str_as::<Sections>(text, source_name).map(drop)
    }

    /// Reads `api:` from the config text (named `source_name` in errors),
    /// expanding `${VAR}` with `env`.
    pub fn from_yaml_str(
        text: &str,
        source_name: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let raw = from_yaml_str_as::<Sections>(text, source_name)?
            .api
            .unwrap_or_default();
        let err = |path: String, message: String| ConfigError {
            source_name: source_name.to_owned(),
            line: None,
            path,
            message,
        };
        let mut out = ApiConfig {
            open_on_loopback: raw.open_on_loopback,
            ..ApiConfig::default()
        };
        for (i, token) in raw.tokens.iter().enumerate() {
            let path = format!("api.tokens[{i}]");
            let value = expand_env(token, &env).map_err(|m| err(path.clone(), m))?;
            if value.is_empty() {
                return Err(err(path, "empty token".into()));
            }
            out.tokens.push(Secret::new(value));
        }
        for (user, password) in &raw.users {
            let path = format!("api.users.{user}");
            if user.is_empty() || user.contains(':') {
                return Err(err(path, "a user name is non-empty and has no ':'".into()));
            }
            let value = expand_env(password, &env).map_err(|m| err(path.clone(), m))?;
            if value.is_empty() {
                return Err(err(path, "empty password".into()));
            }
            out.users.insert(user.clone(), Secret::new(value));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "DVR_ADMIN_TOKEN" => Some("s3cr3t-token".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn tokens_and_users_with_env_expansion() {
        let text = "version: 1\napi:\n  tokens: [ \"${DVR_ADMIN_TOKEN}\", \"plain\" ]\n  users: { admin: \"pw-${DVR_ADMIN_TOKEN}\" }\nstreams: {}\n";
        let c = ApiConfig::from_yaml_str(text, "dvr.yaml", env).unwrap();
        assert_eq!(c.tokens[0].expose(), "s3cr3t-token");
        assert_eq!(c.tokens[1].expose(), "plain");
        assert_eq!(c.users["admin"].expose(), "pw-s3cr3t-token");
        assert!(c.has_credentials());
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
    }

    #[test]
    fn unset_or_empty_variables_fail_naming_the_field() {
        let text = "version: 1\napi: { tokens: [ \"ok\", \"${NOPE}\" ] }\n";
        let e = ApiConfig::from_yaml_str(text, "dvr.yaml", env)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "dvr.yaml: api.tokens[1]: environment variable NOPE is not set"
        );
        let text = "version: 1\napi: { users: { a: \"${EMPTY}\" } }\n";
        let e = ApiConfig::from_yaml_str(text, "dvr.yaml", env)
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("api.users.a: environment variable EMPTY is empty"),
            "{e}"
        );
        let text = "version: 1\napi: { token: [ x ] }\n";
        let e = ApiConfig::from_yaml_str(text, "dvr.yaml", env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `token`"), "{e}");
        assert!(!ApiConfig::from_yaml_str("version: 1\n", "f", env)
            .unwrap()
            .has_credentials());
    }

    #[test]
    fn open_on_loopback_is_off_unless_written() {
        let read = |text: &str| ApiConfig::from_yaml_str(text, "dvr.yaml", env);
        assert!(!read("version: 1\n").unwrap().open_on_loopback);
        assert!(
            !read("version: 1\napi: { tokens: [ t ] }\n")
                .unwrap()
                .open_on_loopback
        );
        assert!(
            !read("version: 1\napi: { open_on_loopback: false }\n")
                .unwrap()
                .open_on_loopback
        );
        let open = read("version: 1\napi: { open_on_loopback: true }\n").unwrap();
        assert!(open.open_on_loopback && !open.has_credentials());
        let e = read("version: 1\napi: { open_on_loopbak: true }\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `open_on_loopbak`"), "{e}");
        let e = read("version: 1\napi:\n  open_on_loopback: maybe\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("api.open_on_loopback"), "{e}");
    }
}
