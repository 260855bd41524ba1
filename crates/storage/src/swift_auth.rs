//! Logging in to Swift: tempauth (v1) and Keystone v3.
//!
//! OpenDAL's Swift service takes a storage URL and a token and nothing else,
//! so this module obtains them and knows when they expire. The backend asks
//! [`SwiftAuth::authenticate`] again shortly before expiry and after any 401.
//! Response parsing is separate from the HTTP calls so it can be tested on
//! recorded responses.

use std::fmt;
use std::time::Duration;

use dvr_common::UtcMs;
use serde::Deserialize;

use crate::config::{Secret, SwiftConfig};

/// A storage URL and a token valid for it.
#[derive(Clone, Debug)]
pub struct SwiftToken {
    /// Account URL, e.g. `http://127.0.0.1:8080/v1/AUTH_test`.
    pub storage_url: String,
    /// The token for `X-Auth-Token`.
    pub token: Secret,
    /// When the token stops working, if the server said.
    pub expires_at: Option<UtcMs>,
}

/// Which way to log in, decided from the config.
#[derive(Clone)]
pub enum SwiftAuth {
    /// A storage URL and token given as is; never refreshed.
    Static {
        /// Account URL.
        storage_url: String,
        /// Token.
        token: Secret,
    },
    /// Tempauth / swauth v1.
    TempAuth {
        /// `…/auth/v1.0`.
        auth_url: String,
        /// `account:user`.
        user: String,
        /// The user's key.
        key: Secret,
    },
    /// Keystone v3 password authentication scoped to a project.
    Keystone(KeystoneParams),
}

/// What Keystone v3 needs.
#[derive(Clone, Debug)]
pub struct KeystoneParams {
    /// Identity endpoint, with or without the trailing `/v3`.
    pub auth_url: String,
    /// User name.
    pub username: String,
    /// Password.
    pub password: Secret,
    /// Project name.
    pub project_name: String,
    /// User's domain.
    pub user_domain_name: String,
    /// Project's domain.
    pub project_domain_name: String,
    /// Catalog region to prefer.
    pub region: Option<String>,
    /// Catalog interface (`public`, `internal`, `admin`).
    pub interface: String,
}

impl fmt::Debug for SwiftAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwiftAuth::Static { storage_url, .. } => f
                .debug_struct("Static")
                .field("storage_url", storage_url)
                .finish_non_exhaustive(),
            SwiftAuth::TempAuth { auth_url, user, .. } => f
                .debug_struct("TempAuth")
                .field("auth_url", auth_url)
                .field("user", user)
                .finish_non_exhaustive(),
            SwiftAuth::Keystone(p) => f.debug_tuple("Keystone").field(p).finish(),
        }
    }
}

impl SwiftAuth {
    /// Picks the method from the config: Keystone if `os_auth_url` is set,
    /// tempauth if `auth_url` is set, else a static storage URL and token.
    pub fn from_config(cfg: &SwiftConfig) -> Result<Self, String> {
        if let Some(auth_url) = &cfg.os_auth_url {
            let need = |v: &Option<String>, name: &str| {
                v.clone()
                    .ok_or_else(|| format!("Keystone auth needs {name}"))
            };
            return Ok(SwiftAuth::Keystone(KeystoneParams {
                auth_url: auth_url.clone(),
                username: need(&cfg.os_username, "os_username (OS_USERNAME)")?,
                password: cfg
                    .os_password
                    .clone()
                    .ok_or("Keystone auth needs os_password (OS_PASSWORD)")?,
                project_name: need(&cfg.os_project_name, "os_project_name (OS_PROJECT_NAME)")?,
                user_domain_name: cfg
                    .os_user_domain_name
                    .clone()
                    .unwrap_or_else(|| "Default".into()),
                project_domain_name: cfg
                    .os_project_domain_name
                    .clone()
                    .unwrap_or_else(|| "Default".into()),
                region: cfg.os_region_name.clone(),
                interface: cfg.os_interface.clone().unwrap_or_else(|| "public".into()),
            }));
        }
        if let Some(auth_url) = &cfg.auth_url {
            return Ok(SwiftAuth::TempAuth {
                auth_url: auth_url.clone(),
                user: cfg.user.clone().ok_or("tempauth needs user (ST_USER)")?,
                key: cfg.key.clone().ok_or("tempauth needs key (ST_KEY)")?,
            });
        }
        match (&cfg.storage_url, &cfg.token) {
            (Some(storage_url), Some(token)) => Ok(SwiftAuth::Static {
                storage_url: storage_url.clone(),
                token: token.clone(),
            }),
            _ => Err(
                "Swift needs auth_url/user/key (ST_AUTH, ST_USER, ST_KEY), Keystone \
                      os_auth_url/os_username/os_password/os_project_name (OS_*), \
                      or storage_url and token"
                    .into(),
            ),
        }
    }

    /// Whether the token can be renewed (everything but a static token).
    pub fn can_refresh(&self) -> bool {
        !matches!(self, SwiftAuth::Static { .. })
    }

    /// Obtains a fresh storage URL and token. Errors are one line, without
    /// secrets; the `bool` says whether the failure looks transient.
    pub async fn authenticate(
        &self,
        http: &reqwest::Client,
        now: UtcMs,
    ) -> Result<SwiftToken, (String, bool)> {
        match self {
            SwiftAuth::Static { storage_url, token } => Ok(SwiftToken {
                storage_url: storage_url.trim_end_matches('/').to_owned(),
                token: token.clone(),
                expires_at: None,
            }),
            SwiftAuth::TempAuth {
                auth_url,
                user,
                key,
            } => {
                let resp = http
                    .get(auth_url)
                    .header("X-Auth-User", user)
                    .header("X-Auth-Key", key.expose())
                    .send()
                    .await
                    .map_err(|e| send_error(auth_url, &e))?;
                let status = resp.status();
                if !status.is_success() {
                    return Err(status_error(auth_url, status));
                }
                let header = |name: &str| {
                    resp.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                parse_tempauth(
                    header("x-storage-url"),
                    header("x-auth-token"),
                    header("x-auth-token-expires"),
                    now,
                )
                .map_err(|e| (format!("tempauth at {auth_url}: {e}"), false))
            }
            SwiftAuth::Keystone(p) => {
                let url = keystone_tokens_url(&p.auth_url);
                let resp = http
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .body(keystone_request_body(p).to_string())
                    .send()
                    .await
                    .map_err(|e| send_error(&url, &e))?;
                let status = resp.status();
                if !status.is_success() {
                    return Err(status_error(&url, status));
                }
                let token = resp
                    .headers()
                    .get("x-subject-token")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = resp.bytes().await.map_err(|e| send_error(&url, &e))?;
                parse_keystone(token, &body, p.region.as_deref(), &p.interface)
                    .map_err(|e| (format!("keystone at {url}: {e}"), false))
            }
        }
    }
}

fn send_error(url: &str, e: &reqwest::Error) -> (String, bool) {
    let what = if e.is_connect() {
        "cannot connect"
    } else if e.is_timeout() {
        "timed out"
    } else {
        "request failed"
    };
    (format!("auth endpoint {url}: {what}"), true)
}

fn status_error(url: &str, status: reqwest::StatusCode) -> (String, bool) {
    let transient = status.is_server_error() || status.as_u16() == 429;
    let hint = match status.as_u16() {
        401 | 403 => " (wrong user or key/password?)",
        404 => " (wrong auth URL?)",
        _ => "",
    };
    (
        format!("auth endpoint {url} answered {status}{hint}"),
        transient,
    )
}

/// The tokens URL for a Keystone identity endpoint given with or without
/// `/v3`.
pub fn keystone_tokens_url(auth_url: &str) -> String {
    let base = auth_url.trim_end_matches('/');
    if base.ends_with("/v3") {
        format!("{base}/auth/tokens")
    } else {
        format!("{base}/v3/auth/tokens")
    }
}

/// The JSON body of a Keystone v3 password authentication scoped to a
/// project.
pub fn keystone_request_body(p: &KeystoneParams) -> serde_json::Value {
    serde_json::json!({
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": p.username,
                        "domain": { "name": p.user_domain_name },
                        "password": p.password.expose(),
                    }
                }
            },
            "scope": {
                "project": {
                    "name": p.project_name,
                    "domain": { "name": p.project_domain_name },
                }
            }
        }
    })
}

/// Reads the tempauth response headers.
pub fn parse_tempauth(
    storage_url: Option<String>,
    token: Option<String>,
    expires_in_secs: Option<String>,
    now: UtcMs,
) -> Result<SwiftToken, String> {
    let storage_url = storage_url.ok_or("no X-Storage-Url in the response")?;
    let token = token.ok_or("no X-Auth-Token in the response")?;
    let expires_at = expires_in_secs
        .and_then(|s| s.trim().parse::<i64>().ok())
        .map(|secs| UtcMs(now.0.saturating_add(secs.saturating_mul(1000))));
    Ok(SwiftToken {
        storage_url: storage_url.trim_end_matches('/').to_owned(),
        token: Secret::new(token),
        expires_at,
    })
}

#[derive(Deserialize)]
struct KeystoneBody {
    token: KeystoneTokenBody,
}

#[derive(Deserialize)]
struct KeystoneTokenBody {
    expires_at: Option<String>,
    #[serde(default)]
    catalog: Vec<CatalogEntry>,
}

#[derive(Deserialize)]
struct CatalogEntry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    endpoints: Vec<CatalogEndpoint>,
}

#[derive(Deserialize)]
struct CatalogEndpoint {
    interface: String,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    region_id: Option<String>,
    url: String,
}

/// Reads a Keystone v3 token response: the token from `X-Subject-Token`,
/// the expiry and the `object-store` endpoint for `interface` (and `region`
/// when given) from the body.
pub fn parse_keystone(
    subject_token: Option<String>,
    body: &[u8],
    region: Option<&str>,
    interface: &str,
) -> Result<SwiftToken, String> {
    let token = subject_token.ok_or("no X-Subject-Token in the response")?;
    let body: KeystoneBody =
        serde_json::from_slice(body).map_err(|e| format!("unreadable token response: {e}"))?;
    let expires_at = match body.token.expires_at {
        Some(s) => Some(parse_iso8601_ms(&s)?),
        None => None,
    };
    let endpoint = body
        .token
        .catalog
        .iter()
        .filter(|e| e.kind == "object-store")
        .flat_map(|e| e.endpoints.iter())
        .filter(|e| e.interface == interface)
        .find(|e| {
            region
                .is_none_or(|r| e.region.as_deref() == Some(r) || e.region_id.as_deref() == Some(r))
        })
        .ok_or_else(|| {
            format!(
                "the catalog has no object-store endpoint for interface {interface:?}{}",
                region
                    .map(|r| format!(" in region {r:?}"))
                    .unwrap_or_default()
            )
        })?;
    Ok(SwiftToken {
        storage_url: endpoint.url.trim_end_matches('/').to_owned(),
        token: Secret::new(token),
        expires_at,
    })
}

fn parse_iso8601_ms(s: &str) -> Result<UtcMs, String> {
    let ts: jiff::Timestamp = s
        .parse()
        .map_err(|e| format!("unreadable expires_at {s:?}: {e}"))?;
    Ok(UtcMs(ts.as_millisecond()))
}

/// When to authenticate again: `margin` before expiry, or never for tokens
/// without an expiry.
pub fn refresh_at(token: &SwiftToken, margin: Duration) -> Option<UtcMs> {
    let margin_ms = i64::try_from(margin.as_millis()).unwrap_or(i64::MAX);
    token
        .expires_at
        .map(|t| UtcMs(t.0.saturating_sub(margin_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of the response in the Keystone v3 API reference
    /// ("Password authentication with scoped authorization"), trimmed.
    const KEYSTONE_RESPONSE: &str = r#"{
        "token": {
            "methods": ["password"],
            "roles": [{"id": "51cc68287d524c759f47c811e6463340", "name": "admin"}],
            "expires_at": "2015-11-09T01:42:57.527363Z",
            "project": {"domain": {"id": "default", "name": "Default"},
                        "id": "a6944d763bf64ee6a275f1263fae0352", "name": "admin"},
            "catalog": [
                {"endpoints": [
                    {"region_id": "RegionOne", "url": "http://example.com/identity",
                     "region": "RegionOne", "interface": "public",
                     "id": "068d1b359ee84b438266cb736d81de97"}],
                 "type": "identity", "id": "050726f278654128aba89757ae25910c", "name": "keystone"},
                {"endpoints": [
                    {"region_id": "RegionOne", "url": "http://internal:8080/v1/AUTH_a6944d763bf64ee6a275f1263fae0352",
                     "region": "RegionOne", "interface": "internal", "id": "1"},
                    {"region_id": "RegionTwo", "url": "http://two:8080/v1/AUTH_a6944d763bf64ee6a275f1263fae0352",
                     "region": "RegionTwo", "interface": "public", "id": "2"},
                    {"region_id": "RegionOne", "url": "http://example.com:8080/v1/AUTH_a6944d763bf64ee6a275f1263fae0352/",
                     "region": "RegionOne", "interface": "public", "id": "3"}],
                 "type": "object-store", "id": "4", "name": "swift"}
            ],
            "user": {"domain": {"id": "default", "name": "Default"},
                     "id": "ee4dfb6e5540447cb3741905149d9b6e", "name": "admin",
                     "password_expires_at": "2016-11-06T15:32:17.000000"},
            "audit_ids": ["3T2dc1CGQxyJsHdDu1xkcw"],
            "issued_at": "2015-11-09T00:42:57.527404Z"
        }
    }"#;

    #[test]
    fn keystone_picks_the_object_store_endpoint_for_interface_and_region() {
        let t = parse_keystone(
            Some("gAAAAABW".into()),
            KEYSTONE_RESPONSE.as_bytes(),
            None,
            "public",
        )
        .unwrap();
        assert_eq!(
            t.storage_url,
            "http://two:8080/v1/AUTH_a6944d763bf64ee6a275f1263fae0352"
        );
        let t = parse_keystone(
            Some("gAAAAABW".into()),
            KEYSTONE_RESPONSE.as_bytes(),
            Some("RegionOne"),
            "public",
        )
        .unwrap();
        assert_eq!(
            t.storage_url,
            "http://example.com:8080/v1/AUTH_a6944d763bf64ee6a275f1263fae0352"
        );
        assert_eq!(t.token.expose(), "gAAAAABW");
        // 2015-11-09T01:42:57.527363Z
        assert_eq!(t.expires_at, Some(UtcMs(1_447_033_377_527)));
        let t = parse_keystone(
            Some("x".into()),
            KEYSTONE_RESPONSE.as_bytes(),
            None,
            "internal",
        )
        .unwrap();
        assert!(t.storage_url.starts_with("http://internal:8080/"));
    }

    #[test]
    fn keystone_errors_are_clear() {
        let err = parse_keystone(None, KEYSTONE_RESPONSE.as_bytes(), None, "public").unwrap_err();
        assert!(err.contains("X-Subject-Token"), "{err}");
        let err = parse_keystone(
            Some("t".into()),
            KEYSTONE_RESPONSE.as_bytes(),
            Some("Nowhere"),
            "public",
        )
        .unwrap_err();
        assert!(err.contains("Nowhere"), "{err}");
        let err = parse_keystone(Some("t".into()), b"<html>", None, "public").unwrap_err();
        assert!(err.contains("unreadable"), "{err}");
    }

    #[test]
    fn keystone_request_has_the_documented_shape() {
        let p = KeystoneParams {
            auth_url: "http://ks:5000/v3/".into(),
            username: "admin".into(),
            password: Secret::new("devstacker"),
            project_name: "demo".into(),
            user_domain_name: "Default".into(),
            project_domain_name: "Default".into(),
            region: None,
            interface: "public".into(),
        };
        let body = keystone_request_body(&p);
        assert_eq!(body["auth"]["identity"]["methods"][0], "password");
        assert_eq!(
            body["auth"]["identity"]["password"]["user"]["name"],
            "admin"
        );
        assert_eq!(
            body["auth"]["identity"]["password"]["user"]["domain"]["name"],
            "Default"
        );
        assert_eq!(body["auth"]["scope"]["project"]["name"], "demo");
        assert_eq!(
            keystone_tokens_url(&p.auth_url),
            "http://ks:5000/v3/auth/tokens"
        );
        assert_eq!(
            keystone_tokens_url("http://ks:5000"),
            "http://ks:5000/v3/auth/tokens"
        );
        assert!(!format!("{:?}", SwiftAuth::Keystone(p)).contains("devstacker"));
    }

    #[test]
    fn tempauth_headers_give_url_token_and_expiry() {
        let t = parse_tempauth(
            Some("http://127.0.0.1:8080/v1/AUTH_test/".into()),
            Some("AUTH_tk0123".into()),
            Some("86399".into()),
            UtcMs(1_000),
        )
        .unwrap();
        assert_eq!(t.storage_url, "http://127.0.0.1:8080/v1/AUTH_test");
        assert_eq!(t.expires_at, Some(UtcMs(1_000 + 86_399_000)));
        assert_eq!(
            refresh_at(&t, Duration::from_secs(300)),
            Some(UtcMs(1_000 + 86_099_000))
        );
        assert!(parse_tempauth(None, Some("t".into()), None, UtcMs(0)).is_err());
    }
}
