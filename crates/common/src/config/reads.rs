//! Which parts of a request a stream's policy decides on, beyond the
//! stream, the client address and the token that every policy reads.
//!
//! The one idea: an answer may be reused only for requests that agree on
//! everything it was decided on. A `deny ua` rule decides on the
//! User-Agent, so an allow for one User-Agent says nothing about another;
//! an HTTP backend is sent the protocol and the `Referer`, so its allow
//! for HLS says nothing about MPEG-TS. [`policy_reads`] says, per stream,
//! which of those fields its policy reads; the engine keys its sessions on
//! them and the packager its cached answers, so neither carries a decision
//! across a field it did not look at.

use std::collections::HashMap;

use super::{AuthBackendConfig, AuthSpec, Config};

/// The request fields a stream's policy decides on, besides stream,
/// client address and token (which every policy reads).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PolicyReads {
    /// The protocol (`hls`, `mpegts`, `dash`, `mp4`): HTTP backends are
    /// sent it as `type`.
    pub protocol: bool,
    /// The `User-Agent`: read when an `allow` or `deny` list has a `ua`
    /// rule.
    pub user_agent: bool,
    /// The `Referer`: HTTP backends are sent it as `referer`.
    pub referer: bool,
}

impl PolicyReads {
    /// Reads nothing besides stream, address and token (securetoken,
    /// token and address lists).
    pub const NONE: PolicyReads = PolicyReads {
        protocol: false,
        user_agent: false,
        referer: false,
    };

    /// Reads every field: what an authorizer that cannot tell is taken to
    /// read.
    pub const ALL: PolicyReads = PolicyReads {
        protocol: true,
        user_agent: true,
        referer: true,
    };

    /// What the lists and backends of an `auth_backends` entry read.
    fn of_lists(config: &AuthBackendConfig) -> PolicyReads {
        let backends = !config.backends.is_empty();
        PolicyReads {
            protocol: backends,
            user_agent: !config.allow.ua.is_empty() || !config.deny.ua.is_empty(),
            referer: backends,
        }
    }
}

/// What each stream of `config` with a policy reads, by stream name; a
/// stream without a policy is absent. The engine and the bus authorizer
/// both answer `Authorizer::reads` (in dvr-bus) from this one function.
pub fn policy_reads(config: &Config) -> HashMap<String, PolicyReads> {
    config
        .streams
        .keys()
        .filter_map(|name| {
            let reads = match config.auth_of(name)? {
                AuthSpec::Off => return None,
                AuthSpec::SecureToken { .. } => PolicyReads::NONE,
                AuthSpec::Named(n) => config
                    .auth_backends
                    .get(n)
                    .map_or(PolicyReads::NONE, PolicyReads::of_lists),
                AuthSpec::Backend(_) => PolicyReads {
                    protocol: true,
                    user_agent: false,
                    referer: true,
                },
            };
            Some((name.as_str().to_owned(), reads))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_policy_reads_what_it_decides_on() {
        let yaml = r#"version: 1
auth_backends:
  ua:       { deny: { ua: [ "BadBot" ] }, default: allow }
  allow_ua: { allow: { ua: [ "MAG" ] } }
  plain:    { allow: { ip: [ "127.0.0.1" ], token: [ "t" ] } }
  hooked:   { backends: [ "http://127.0.0.1:1/auth" ] }
  all:      { deny: { ua: [ "BadBot" ] }, backends: [ "http://127.0.0.1:1/auth" ] }
streams:
  token:    { inputs: [ "udp://239.0.0.1:1" ], auth: "securetoken://K" }
  mac:      { inputs: [ "udp://239.0.0.1:2" ], auth: "securetoken-hmac://K" }
  ua:       { inputs: [ "udp://239.0.0.1:3" ], auth: "auth://ua" }
  allow_ua: { inputs: [ "udp://239.0.0.1:4" ], auth: "auth://allow_ua" }
  plain:    { inputs: [ "udp://239.0.0.1:5" ], auth: "auth://plain" }
  hooked:   { inputs: [ "udp://239.0.0.1:6" ], auth: "auth://hooked" }
  direct:   { inputs: [ "udp://239.0.0.1:7" ], auth: "http://127.0.0.1:1/auth" }
  all:      { inputs: [ "udp://239.0.0.1:8" ], auth: "auth://all" }
  off:      { inputs: [ "udp://239.0.0.1:9" ], auth: none }
  free:     { inputs: [ "udp://239.0.0.1:10" ] }
"#;
        let config = Config::from_yaml_str(yaml, "t.yaml").unwrap();
        let reads = policy_reads(&config);
        let backend = PolicyReads {
            protocol: true,
            user_agent: false,
            referer: true,
        };
        let ua = PolicyReads {
            user_agent: true,
            ..PolicyReads::NONE
        };
        for (stream, want) in [
            ("token", Some(PolicyReads::NONE)),
            ("mac", Some(PolicyReads::NONE)),
            ("ua", Some(ua)),
            ("allow_ua", Some(ua)),
            ("plain", Some(PolicyReads::NONE)),
            ("hooked", Some(backend)),
            ("direct", Some(backend)),
            ("all", Some(PolicyReads::ALL)),
            ("off", None),
            ("free", None),
        ] {
            assert_eq!(reads.get(stream).copied(), want, "{stream}");
        }
    }
}
