//! Play authorization settings: the seeds' `auth` forms and
//! `auth_backend` blocks, written as YAML.
//!
//! ```yaml
//! auth_backends:
//!   main:
//!     allow: { ip: [ "127.0.0.1", "172.16/24" ], token: [ "flusstest1" ] }
//!     deny:  { ip: [ "8.8.8.8" ], ua: [ "BadBot/1.0" ] }
//!     backends: [ "http://stalker-1.iptv.example/auth.php" ]
//! auth: auth://main            # the global default (optional)
//! streams:
//!   ort:  { inputs: [ … ], auth: "auth://main" }
//!   news: { inputs: [ … ], auth: "securetoken://SECRETKEY" }
//!   cam:  { inputs: [ … ], auth: "http://127.0.0.1:8081/auth soft_limitation=true" }
//! ```
//!
//! Secrets (securetoken keys, allowed tokens) are held as [`Secret`], whose
//! `Debug` and `Display` never show them, so a logged config leaks nothing.
//! A `${VAR}` in one is read from the environment where the secret is used
//! ([`Secret::expanded`]), so keys can stay out of the file and out of the
//! streams bucket.

use std::fmt;
use std::net::IpAddr;

/// A value that must never be printed: `Debug` and `Display` show `***`.
/// Serialized as the plain string, for the config documents that carry it.
#[derive(Clone, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The secret with every `${VAR}` replaced as [`expand_env`] does.
    pub fn expanded(&self, env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        expand_env(&self.0, env).map(Self)
    }
}

/// Replaces every `${VAR}` in `value` with the variable's value, as `env`
/// gives it (`|name| std::env::var(name).ok()` in a service). An unset or
/// empty variable is an error naming it, so a typo never leaves a secret
/// empty by accident.
pub fn expand_env(value: &str, env: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unclosed ${ (write ${NAME})".to_owned())?;
        let name = &after[..end];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("${{{name}}} is not an environment variable name"));
        }
        match env(name) {
            Some(v) if !v.is_empty() => out.push_str(&v),
            Some(_) => return Err(format!("environment variable {name} is empty")),
            None => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How a stream's plays are authorized (a stream's or the global `auth:`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthSpec {
    /// `none`: no authorization, even if a global default is set (the
    /// seeds' `auth false`).
    Off,
    /// `auth://NAME`: the rules and backends of `auth_backends.NAME`.
    Named(String),
    /// `securetoken://SECRET` (SHA-1, the seeds' formula) or
    /// `securetoken-hmac://SECRET` (HMAC-SHA256 over the same fields).
    SecureToken {
        /// The shared key.
        secret: Secret,
        /// HMAC-SHA256 instead of SHA-1.
        hmac: bool,
    },
    /// `http(s)://…`: one HTTP backend; `soft_limitation=true` after the
    /// URL lets excess sessions live for two checks.
    Backend(BackendUrl),
}

/// An HTTP auth backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendUrl {
    /// The URL the query parameters are appended to.
    pub url: String,
    /// `X-Max-Sessions` closes excess sessions only after two checks.
    pub soft_limitation: bool,
}

/// Allow or deny lists of an `auth_backends` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthRules {
    /// Client addresses and networks (`10.10/16`, `192.0.2.7`, `2001:db8::/32`).
    pub ip: Vec<IpNet>,
    /// Tokens, compared whole.
    pub token: Vec<Secret>,
    /// User agents: a rule matches a `User-Agent` that contains it.
    pub ua: Vec<String>,
}

/// One `auth_backends` entry: the seeds' `auth_backend NAME { … }`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthBackendConfig {
    /// White lists.
    pub allow: AuthRules,
    /// Black lists.
    pub deny: AuthRules,
    /// HTTP backends asked in parallel when no list decided.
    pub backends: Vec<BackendUrl>,
    /// `default: allow` (the seeds' `allow default;`): allow what nothing
    /// decided; otherwise deny.
    pub allow_default: bool,
}

/// An IP network (or one address, as a /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpNet {
    /// The network's address, host bits zero.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl IpNet {
    /// Parses `192.0.2.7`, `172.16.0.0/24`, the seeds' short `172.16/24`,
    /// and IPv6 `2001:db8::/32`.
    pub fn parse(text: &str) -> Result<IpNet, String> {
        let bad = |why: &str| Err(format!("invalid address or network {text:?}: {why}"));
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => match p.parse::<u8>() {
                Ok(p) => (a, Some(p)),
                Err(_) => return bad("the prefix length is not a number"),
            },
            None => (text, None),
        };
        let addr: IpAddr = match addr.parse() {
            Ok(a) => a,
            Err(_) if !addr.contains(':') && prefix.is_some() => {
                // `172.16/24`: missing octets are zero.
                let mut octets: Vec<&str> = addr.split('.').collect();
                if octets.len() > 4 {
                    return bad("more than four octets");
                }
                octets.resize(4, "0");
                match octets.join(".").parse() {
                    Ok(a) => a,
                    Err(_) => return bad("not an IPv4 address"),
                }
            }
            Err(_) => return bad("not an IP address"),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return bad("the prefix length is too long");
        }
        Ok(IpNet {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    /// Whether `ip` is in this network (IPv4-mapped IPv6 addresses count
    /// as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((bits & m).into())
        }
    }
}

/// Parses an `auth:` value; `auth://NAME` is not checked against the
/// backends here.
pub fn parse_auth_spec(text: &str) -> Result<AuthSpec, String> {
    let text = text.trim();
    if text == "none" {
        return Ok(AuthSpec::Off);
    }
    if let Some(name) = text.strip_prefix("auth://") {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            return Err(format!(
                "invalid auth backend name {name:?}: use letters, digits, - and _"
            ));
        }
        return Ok(AuthSpec::Named(name.to_owned()));
    }
    for (scheme, hmac) in [("securetoken://", false), ("securetoken-hmac://", true)] {
        if let Some(secret) = text.strip_prefix(scheme) {
            if secret.is_empty() || secret.contains(char::is_whitespace) {
                return Err(format!("{scheme}: the secret must be one non-empty word"));
            }
            return Ok(AuthSpec::SecureToken {
                secret: Secret::new(secret),
                hmac,
            });
        }
    }
    if text.starts_with("http://") || text.starts_with("https://") {
        return parse_backend(text).map(AuthSpec::Backend);
    }
    Err("unknown auth form (use auth://NAME, securetoken://SECRET, securetoken-hmac://SECRET, http(s)://URL or none)".into())
}

impl AuthSpec {
    /// The form [`parse_auth_spec`] reads, secret included: what the
    /// streams bucket stores, so a policy set through the API survives.
    /// Never log it (`Debug` masks the secret; this does not).
    pub fn written(&self) -> String {
        match self {
            AuthSpec::Off => "none".to_owned(),
            AuthSpec::Named(name) => format!("auth://{name}"),
            AuthSpec::SecureToken { secret, hmac } => {
                let scheme = if *hmac {
                    "securetoken-hmac"
                } else {
                    "securetoken"
                };
                format!("{scheme}://{}", secret.expose())
            }
            AuthSpec::Backend(b) if b.soft_limitation => format!("{} soft_limitation=true", b.url),
            AuthSpec::Backend(b) => b.url.clone(),
        }
    }
}

/// Parses `http(s)://host/path [soft_limitation=true]`.
pub fn parse_backend(text: &str) -> Result<BackendUrl, String> {
    let mut words = text.split_whitespace();
    let url = words.next().unwrap_or_default();
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return Err(format!(
            "auth backend {:?} is not an http:// or https:// URL",
            super::mask_credentials(url)
        ));
    };
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    if host.is_empty() || host.ends_with('@') {
        return Err(format!(
            "auth backend {:?} has no host",
            super::mask_credentials(url)
        ));
    }
    let mut soft_limitation = false;
    for word in words {
        match word {
            "soft_limitation=true" => soft_limitation = true,
            "soft_limitation=false" => soft_limitation = false,
            other => return Err(format!("unknown auth backend option {other:?}")),
        }
    }
    Ok(BackendUrl {
        url: url.to_owned(),
        soft_limitation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_in_the_seeds_short_form() {
        let net = IpNet::parse("172.16/24").unwrap();
        assert_eq!(net.to_string(), "172.16.0.0/24");
        assert!(net.contains("172.16.0.200".parse().unwrap()));
        assert!(!net.contains("172.16.1.1".parse().unwrap()));
        assert!(net.contains("::ffff:172.16.0.9".parse().unwrap()));
        let one = IpNet::parse("8.8.8.8").unwrap();
        assert!(one.contains("8.8.8.8".parse().unwrap()));
        assert!(!one.contains("8.8.8.9".parse().unwrap()));
        let v6 = IpNet::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert!(IpNet::parse("0.0.0.0/0")
            .unwrap()
            .contains("203.0.113.1".parse().unwrap()));
        for bad in ["10.0.0.1/33", "a.b", "10/x", "1.2.3.4.5/8", "300.1.1.1"] {
            assert!(IpNet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn auth_forms() {
        assert_eq!(
            parse_auth_spec("auth://main").unwrap(),
            AuthSpec::Named("main".into())
        );
        assert!(matches!(
            parse_auth_spec("securetoken-hmac://k3y").unwrap(),
            AuthSpec::SecureToken { hmac: true, .. }
        ));
        assert_eq!(
            parse_auth_spec("http://127.0.0.1:8081/auth soft_limitation=true").unwrap(),
            AuthSpec::Backend(BackendUrl {
                url: "http://127.0.0.1:8081/auth".into(),
                soft_limitation: true
            })
        );
        assert_eq!(parse_auth_spec("none").unwrap(), AuthSpec::Off);
        for bad in [
            "ftp://x",
            "auth://",
            "securetoken://",
            "http:///path",
            "http://h x=1",
        ] {
            assert!(parse_auth_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let spec = parse_auth_spec("securetoken://TOPSECRET").unwrap();
        assert!(!format!("{spec:?}").contains("TOPSECRET"));
        assert_eq!(Secret::new("x").to_string(), "***");
    }

    #[test]
    fn secrets_read_variables() {
        let env = |k: &str| match k {
            "KEY" => Some("k3y".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let expanded = Secret::new("pre-${KEY}-${KEY}").expanded(env).unwrap();
        assert_eq!(expanded.expose(), "pre-k3y-k3y");
        assert_eq!(
            Secret::new("plain").expanded(env).unwrap().expose(),
            "plain"
        );
        for (bad, why) in [
            ("${NOPE}", "environment variable NOPE is not set"),
            ("${EMPTY}", "environment variable EMPTY is empty"),
            ("${KEY", "unclosed ${ (write ${NAME})"),
            ("${A-B}", "${A-B} is not an environment variable name"),
            ("${}", "${} is not an environment variable name"),
        ] {
            assert_eq!(Secret::new(bad).expanded(env).unwrap_err(), why, "{bad}");
        }
    }
}
