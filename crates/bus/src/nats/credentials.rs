//! Who this process is to NATS, and how the connection is encrypted.
//!
//! The bus is closed in production: every service connects as its own NATS
//! user, and the server's authorization (rendered by `dvr deploy render`,
//! `docs/operations.md`) says what each may publish and subscribe. The
//! secrets come from the environment (a mounted Kubernetes Secret), never
//! from arguments, and never appear in `Debug` output or logs.
//!
//! | variable | meaning |
//! |---|---|
//! | `DVR_NATS_USER`, `DVR_NATS_PASSWORD` | user and password |
//! | `DVR_NATS_TOKEN` | a token |
//! | `DVR_NATS_CREDS` | path of a `.creds` file (JWT and nkey seed) |
//! | `DVR_NATS_NKEY` | path of a file holding an nkey seed |
//! | `DVR_NATS_CA` | PEM file of the CAs to trust (TLS) |
//! | `DVR_NATS_CERT`, `DVR_NATS_KEY` | client certificate and key (mutual TLS) |
//!
//! At most one way to authenticate may be set. TLS is required when the URL
//! says `tls://` or any TLS variable is set.

use std::fmt;
use std::path::PathBuf;

/// How this process authenticates to NATS.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum NatsAuth {
    /// No credentials (a server without authorization: tests, a laptop).
    #[default]
    None,
    /// A user and password.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// A token.
    Token(String),
    /// A `.creds` file (decentralised JWT auth).
    CredsFile(PathBuf),
    /// A file holding an nkey seed.
    NkeyFile(PathBuf),
}

impl fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NatsAuth::None => f.write_str("None"),
            NatsAuth::UserPassword { user, .. } => {
                write!(f, "UserPassword {{ user: {user:?}, password: <redacted> }}")
            }
            NatsAuth::Token(_) => f.write_str("Token(<redacted>)"),
            NatsAuth::CredsFile(p) => write!(f, "CredsFile({})", p.display()),
            NatsAuth::NkeyFile(p) => write!(f, "NkeyFile({})", p.display()),
        }
    }
}

impl NatsAuth {
    /// Who this is, for an error line: the user or the file, never a
    /// secret.
    pub fn who(&self) -> String {
        match self {
            NatsAuth::None => "no credentials".to_owned(),
            NatsAuth::UserPassword { user, .. } => format!("user {user}"),
            NatsAuth::Token(_) => "a token".to_owned(),
            NatsAuth::CredsFile(p) => format!("credentials file {}", p.display()),
            NatsAuth::NkeyFile(p) => format!("nkey file {}", p.display()),
        }
    }
}

/// TLS towards NATS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatsTls {
    /// Insist on TLS even if the server does not ask for it.
    pub required: bool,
    /// CAs to trust beyond the system's (PEM).
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its key (PEM), for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// Credentials and TLS read from the environment; see the module doc.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatsCredentials {
    /// How to authenticate.
    pub auth: NatsAuth,
    /// How to encrypt.
    pub tls: NatsTls,
}

impl NatsCredentials {
    /// Reads the `DVR_NATS_*` variables through `var` (the process
    /// environment in `dvr run`), for a server at `url`. An incomplete or
    /// ambiguous set is one line naming the variables.
    pub fn from_env(url: &str, var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let get = |name: &str| var(name).filter(|v| !v.is_empty());
        let mut ways = Vec::new();
        let mut auth = NatsAuth::None;
        match (get("DVR_NATS_USER"), get("DVR_NATS_PASSWORD")) {
            (Some(user), Some(password)) => {
                ways.push("DVR_NATS_USER");
                auth = NatsAuth::UserPassword { user, password };
            }
            (Some(_), None) => return Err("DVR_NATS_USER is set without DVR_NATS_PASSWORD".into()),
            (None, Some(_)) => return Err("DVR_NATS_PASSWORD is set without DVR_NATS_USER".into()),
            (None, None) => {}
        }
        if let Some(token) = get("DVR_NATS_TOKEN") {
            ways.push("DVR_NATS_TOKEN");
            auth = NatsAuth::Token(token);
        }
        if let Some(path) = get("DVR_NATS_CREDS") {
            ways.push("DVR_NATS_CREDS");
            auth = NatsAuth::CredsFile(path.into());
        }
        if let Some(path) = get("DVR_NATS_NKEY") {
            ways.push("DVR_NATS_NKEY");
            auth = NatsAuth::NkeyFile(path.into());
        }
        if ways.len() > 1 {
            return Err(format!(
                "set one way to authenticate to NATS, not {}",
                ways.join(" and ")
            ));
        }
        let client_cert = match (get("DVR_NATS_CERT"), get("DVR_NATS_KEY")) {
            (Some(cert), Some(key)) => Some((cert.into(), key.into())),
            (None, None) => None,
            _ => return Err("DVR_NATS_CERT and DVR_NATS_KEY go together (mutual TLS)".into()),
        };
        let ca_file = get("DVR_NATS_CA").map(PathBuf::from);
        let tls_url = url
            .split(',')
            .any(|u| u.trim().to_ascii_lowercase().starts_with("tls://"));
        let tls = NatsTls {
            required: tls_url || ca_file.is_some() || client_cert.is_some(),
            ca_file,
            client_cert,
        };
        Ok(Self { auth, tls })
    }

    /// The client's connect options with these credentials and TLS.
    pub(crate) async fn apply(
        &self,
        mut options: async_nats::ConnectOptions,
    ) -> Result<async_nats::ConnectOptions, String> {
        options = match &self.auth {
            NatsAuth::None => options,
            NatsAuth::UserPassword { user, password } => {
                options.user_and_password(user.clone(), password.clone())
            }
            NatsAuth::Token(token) => options.token(token.clone()),
            NatsAuth::CredsFile(path) => options
                .credentials_file(path)
                .await
                .map_err(|e| format!("NATS credentials file {}: {e}", path.display()))?,
            NatsAuth::NkeyFile(path) => {
                let seed = std::fs::read_to_string(path)
                    .map_err(|e| format!("NATS nkey file {}: {e}", path.display()))?;
                options.nkey(seed.trim().to_owned())
            }
        };
        if self.tls.required {
            // The workspace's one TLS stack (rustls with ring), as every
            // client that builds a TLS config installs it.
            let _ = rustls::crypto::ring::default_provider().install_default();
            options = options.require_tls(true);
        }
        if let Some(ca) = &self.tls.ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &self.tls.client_cert {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn one_way_to_authenticate_and_tls_when_asked() {
        let c = NatsCredentials::from_env(
            "nats://n:4222",
            env(&[
                ("DVR_NATS_USER", "packager"),
                ("DVR_NATS_PASSWORD", "s3cret"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.auth,
            NatsAuth::UserPassword {
                user: "packager".into(),
                password: "s3cret".into()
            }
        );
        assert!(!c.tls.required);
        assert!(!format!("{c:?}").contains("s3cret"), "{c:?}");
        let c =
            NatsCredentials::from_env("tls://n:4222", env(&[("DVR_NATS_TOKEN", "t0k")])).unwrap();
        assert!(c.tls.required);
        assert!(!format!("{c:?}").contains("t0k"));
        let c = NatsCredentials::from_env("nats://n", env(&[("DVR_NATS_CA", "/ca.pem")])).unwrap();
        assert!(c.tls.required, "a CA asks for TLS");
        assert_eq!(
            NatsCredentials::from_env("nats://n", env(&[])).unwrap(),
            NatsCredentials::default()
        );
    }

    #[test]
    fn incomplete_or_ambiguous_sets_are_named() {
        let e =
            |pairs: &[(&str, &str)]| NatsCredentials::from_env("nats://n", env(pairs)).unwrap_err();
        assert_eq!(
            e(&[("DVR_NATS_USER", "u")]),
            "DVR_NATS_USER is set without DVR_NATS_PASSWORD"
        );
        assert_eq!(
            e(&[("DVR_NATS_TOKEN", "t"), ("DVR_NATS_CREDS", "/c")]),
            "set one way to authenticate to NATS, not DVR_NATS_TOKEN and DVR_NATS_CREDS"
        );
        assert_eq!(
            e(&[("DVR_NATS_CERT", "/c.pem")]),
            "DVR_NATS_CERT and DVR_NATS_KEY go together (mutual TLS)"
        );
    }
}
