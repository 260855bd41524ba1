//! Admin authentication for every `/api` and `/flussonic/api` route.
//!
//! A request passes with a configured bearer token or a basic-auth user
//! and password, compared in constant time (`subtle`) so the time of a
//! refusal does not tell how much of a guess was right. Anything else is
//! 401 with `WWW-Authenticate` for both schemes, before any handler runs,
//! so nothing is read or changed. Without any credentials configured the
//! embedded API answers loopback clients only (403 for the rest, saying
//! what to configure); the distributed API refuses to start
//! ([`crate::ApiService::distributed_router`]). Neither the credentials
//! nor the header are ever logged: only the client address and the path.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use subtle::ConstantTimeEq;
use tracing::warn;

use crate::config::ApiConfig;
use crate::error::ApiError;

/// Who may call, and what to do when nobody is configured.
#[derive(Debug)]
pub struct Gate {
    pub(crate) config: ApiConfig,
    /// With no credentials: answer loopback clients (embedded) instead of
    /// nobody.
    pub(crate) loopback_without_credentials: bool,
}

/// Constant-time equality of two byte strings (the length still shows,
/// which a token's length is not worth hiding).
fn same(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

impl Gate {
    /// Whether the `Authorization` header value carries valid credentials.
    fn admits(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        if let Some(token) = strip_scheme(value, b"bearer ") {
            let token = token.trim_ascii();
            // Every token is compared, so the time does not say which matched.
            return self
                .config
                .tokens
                .iter()
                .fold(false, |ok, t| same(t.expose().as_bytes(), token) | ok);
        }
        if let Some(encoded) = strip_scheme(value, b"basic ") {
            let Ok(decoded) =
                base64::engine::general_purpose::STANDARD.decode(encoded.trim_ascii())
            else {
                return false;
            };
            let Some(colon) = decoded.iter().position(|&b| b == b':') else {
                return false;
            };
            let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
            return self.config.users.iter().fold(false, |ok, (u, p)| {
                (same(u.as_bytes(), user) & same(p.expose().as_bytes(), password)) | ok
            });
        }
        false
    }
}

fn strip_scheme<'a>(value: &'a [u8], scheme: &[u8]) -> Option<&'a [u8]> {
    (value.len() >= scheme.len() && value[..scheme.len()].eq_ignore_ascii_case(scheme))
        .then(|| &value[scheme.len()..])
}

/// The middleware in front of every admin route.
pub(crate) async fn require_admin(
    State(gate): State<Arc<Gate>>,
    request: Request,
    next: Next,
) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let path = request.uri().path().to_owned();
    if !gate.config.has_credentials() {
        let loopback = client.is_some_and(|c| c.ip().is_loopback());
        if gate.loopback_without_credentials && loopback {
            return next.run(request).await;
        }
        warn!(client = ?client, path = %path, "api: refused a non-loopback client (no credentials configured)");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "the API answers only loopback clients until credentials are configured: set api.tokens (or api.users) in the config",
        )
        .into_response();
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(axum::http::HeaderValue::as_bytes);
    if gate.admits(authorization) {
        return next.run(request).await;
    }
    let why = if authorization.is_some() {
        "wrong credentials"
    } else {
        "no credentials"
    };
    warn!(client = ?client, path = %path, why, "api: refused a request");
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        format!("{why}: send Authorization: Bearer TOKEN (api.tokens) or basic auth (api.users)"),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use dvr_storage::Secret;

    use super::*;

    fn gate() -> Gate {
        let mut config = ApiConfig::default();
        config.tokens.push(Secret::new("tok-1"));
        config.tokens.push(Secret::new("tok-2"));
        config.users.insert("admin".into(), Secret::new("pa:ss"));
        Gate {
            config,
            loopback_without_credentials: true,
        }
    }

    fn basic(s: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
        .into_bytes()
    }

    #[test]
    fn tokens_and_users_are_checked() {
        let g = gate();
        assert!(g.admits(Some(b"Bearer tok-1")));
        assert!(g.admits(Some(b"bearer tok-2")));
        assert!(!g.admits(Some(b"Bearer tok-")));
        assert!(!g.admits(Some(b"Bearer tok-11")));
        assert!(!g.admits(Some(b"Bearer ")));
        assert!(!g.admits(Some(b"tok-1")));
        assert!(!g.admits(None));
        assert!(
            g.admits(Some(&basic("admin:pa:ss"))),
            "the password may hold ':'"
        );
        assert!(!g.admits(Some(&basic("admin:pa"))));
        assert!(!g.admits(Some(&basic("root:pa:ss"))));
        assert!(!g.admits(Some(&basic("adminpa:ss"))));
        assert!(!g.admits(Some(b"Basic !!!")));
    }
}
