//! Admin authentication for every `/api` and `/flussonic/api` route.
//!
//! The one idea: a request is let in by what it *proves*, never by where it
//! seems to come from, except in one opt-in case held to strict rules, and
//! a browser's ambient credentials never change state cross-site.
//!
//! **Credentials.** A configured bearer token or basic-auth user and
//! password, compared in constant time (`subtle`) so the time of a refusal
//! does not tell how much of a guess was right. Wrong or missing ones are
//! 401 with `WWW-Authenticate` for both schemes, before any handler runs,
//! so nothing is read or changed.
//!
//! **Without credentials** (`api.open_on_loopback`, off by default; the
//! distributed service refuses it, [`crate::ApiService::distributed_router`])
//! a request passes only when *all* of these hold, since each alone is
//! forged by something common:
//! - the TCP peer is a loopback address (an IPv4-mapped one counts);
//! - every host it names (its one `Host` header, and the URI's authority of
//!   an HTTP/2 or absolute-form request) is `localhost`, an address in
//!   127.0.0.0/8 or `[::1]`, with or without a port: a DNS-rebinding page
//!   reaches the loopback peer under its own name, which fails here;
//! - no `X-Forwarded-For`, `X-Forwarded-Host`, `X-Forwarded-Proto`,
//!   `Forwarded`, `X-Real-IP` or `Via` header: a reverse proxy on the same
//!   host (or a tunnel) forwarding the internet is a loopback peer too;
//! - `Origin` is absent or this API's own origin (below): a cross-site page
//!   in a browser on the operator's machine is refused.
//!
//! Otherwise credentials are required: 401 when some are configured, else
//! 403 saying what to configure. Either way the answer says why the request
//! was not taken as local, and never echoes a credential.
//!
//! **Cross-site requests (CSRF).** Basic auth and the loopback mode are
//! *ambient*: a browser sends them by itself on a request another site
//! makes it send. A bearer token is not (a page must set the header, which
//! a cross-site form cannot and a cross-site `fetch` may only after a CORS
//! preflight this API never grants). So a request that changes state (any
//! method but `GET`, `HEAD`, `OPTIONS`) and passed on ambient credentials
//! is refused (403) when
//! 1. `Sec-Fetch-Site` is `cross-site` or `same-site` (another port or
//!    subdomain is another site's page, as far as we are concerned), or
//! 2. `Origin` is present and not this API's origin (`null` included), or
//! 3. in the loopback mode only (no credentials at all): `Origin` is absent
//!    and the body's media type is one a plain HTML form can send
//!    (`application/x-www-form-urlencoded`, `multipart/form-data`,
//!    `text/plain`), which only browsers that predate `Origin` on POST do.
//!
//! Rule 3 is not applied to basic auth: the seeds' middleware calls the
//! Flussonic aliases with `curl -u user:pass --data ''` (a form type, no
//! `Origin`), and a server-side caller cannot be told from such a browser.
//! Every browser of the last years sends `Origin` on a cross-origin POST
//! and `Sec-Fetch-Site` on every request, so rules 1 and 2 catch a
//! cross-site form there. Same-origin `fetch` with JSON (the `/admin/`
//! page) and tools (`dvr ctl`, curl) pass.
//!
//! **This API's origin** is the request's own host: `Origin`'s host and
//! port equal those of `Host` (names compared without case, a missing port
//! being the scheme's default), its scheme `http` or `https` (a
//! TLS-terminating proxy in front changes the scheme, not the host).
//!
//! Neither the credentials nor the header are ever logged: only the client
//! address, the path and why a request was refused.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderName, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use subtle::ConstantTimeEq;
use tracing::warn;

use crate::config::ApiConfig;
use crate::error::ApiError;

/// Headers a proxy adds; any of them means the peer is not the client.
const FORWARDING_HEADERS: [&str; 6] = [
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "forwarded",
    "x-real-ip",
    "via",
];

/// Media types a plain HTML form can send (its `enctype`s).
const FORM_MEDIA_TYPES: [&str; 3] = [
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "text/plain",
];

/// Header values quoted in answers are cut to this many characters.
const QUOTE_MAX: usize = 80;

/// Who may call.
#[derive(Debug)]
pub struct Gate {
    pub(crate) config: ApiConfig,
    /// Who checks requests signed with the cluster key; `None`: no
    /// `cluster_key`, and such a request is judged like any other.
    pub(crate) cluster: Option<ClusterAccess>,
}

/// The other origins' way in: a request signed with the cluster key, for
/// the one route they need, the stream list.
#[derive(Clone, Debug)]
pub(crate) struct ClusterAccess {
    pub(crate) verifier: dvr_cluster::Verifier,
    pub(crate) clock: Arc<dyn dvr_common::Clock>,
}

/// The one route a cluster signature opens: what a restreaming origin
/// lists to learn the source's streams.
const CLUSTER_ROUTE: &str = "/api/v1/streams";

/// The answer to a request that carries a cluster signature: the stream
/// list when it checks, else a refusal naming why (never the key).
async fn cluster_request(access: &ClusterAccess, request: Request, next: Next) -> Response {
    if request.method() != Method::GET || request.uri().path() != CLUSTER_ROUTE {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!("a cluster signature opens only GET {CLUSTER_ROUTE}; send admin credentials for the rest"),
        )
        .into_response();
    }
    let now = access.clock.now().0;
    match access
        .verifier
        .verify_http(request.method(), request.uri(), request.headers(), now)
        .await
    {
        Ok(_) => next.run(request).await,
        Err(e) => {
            let client = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0);
            warn!(client = ?client, error = %e, "api: refused a cluster request");
            let status =
                StatusCode::from_u16(dvr_common::HasErrorKind::error_kind(&e).http_status())
                    .unwrap_or(StatusCode::FORBIDDEN);
            ApiError::new(status, e.to_string()).into_response()
        }
    }
}

/// What the `Authorization` header proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presented {
    /// No header.
    Nothing,
    /// A header that matches no configured credential.
    Wrong,
    /// A configured bearer token: not ambient.
    Bearer,
    /// A configured basic-auth user: ambient.
    Basic,
}

/// Constant-time equality of two byte strings (the length still shows,
/// which a token's length is not worth hiding).
fn same(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

impl Gate {
    /// What the `Authorization` header value proves.
    fn judge(&self, authorization: Option<&[u8]>) -> Presented {
        let Some(value) = authorization else {
            return Presented::Nothing;
        };
        if let Some(token) = strip_scheme(value, b"bearer ") {
            let token = token.trim_ascii();
            // Every token is compared, so the time does not say which matched.
            let ok = self
                .config
                .tokens
                .iter()
                .fold(false, |ok, t| same(t.expose().as_bytes(), token) | ok);
            return if ok {
                Presented::Bearer
            } else {
                Presented::Wrong
            };
        }
        if let Some(encoded) = strip_scheme(value, b"basic ") {
            let Ok(decoded) =
                base64::engine::general_purpose::STANDARD.decode(encoded.trim_ascii())
            else {
                return Presented::Wrong;
            };
            let Some(colon) = decoded.iter().position(|&b| b == b':') else {
                return Presented::Wrong;
            };
            let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
            let ok = self.config.users.iter().fold(false, |ok, (u, p)| {
                (same(u.as_bytes(), user) & same(p.expose().as_bytes(), password)) | ok
            });
            return if ok {
                Presented::Basic
            } else {
                Presented::Wrong
            };
        }
        Presented::Wrong
    }
}

fn strip_scheme<'a>(value: &'a [u8], scheme: &[u8]) -> Option<&'a [u8]> {
    (value.len() >= scheme.len() && value[..scheme.len()].eq_ignore_ascii_case(scheme))
        .then(|| &value[scheme.len()..])
}

/// A header value for an answer or a log: lossy UTF-8, cut, quoted.
fn quote(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    let cut: String = text.chars().take(QUOTE_MAX).collect();
    if cut.len() < text.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// `host[:port]` split, the host kept as written (brackets included for
/// IPv6); `None` if it is not of that form.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', '?', '#', ' ']) {
        return None;
    }
    // Digits only: `u16::from_str` would take a leading `+`.
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    Some((host, port))
}

/// Whether `host` (from [`split_host_port`]) names this machine:
/// `localhost`, 127.0.0.0/8 in dotted-quad form, or `[::1]`.
fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    }
    host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether `origin` (an `Origin` header value) is the origin of a request
/// to `host` (its `Host`): see the module doc.
fn same_origin(origin: &[u8], host: &str) -> bool {
    let Ok(origin) = std::str::from_utf8(origin) else {
        return false;
    };
    let Some((scheme, authority)) = origin.trim().split_once("://") else {
        return false;
    };
    let default_port = if scheme.eq_ignore_ascii_case("http") {
        80
    } else if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        return false;
    };
    let (Some((o_host, o_port)), Some((h_host, h_port))) =
        (split_host_port(authority), split_host_port(host))
    else {
        return false;
    };
    o_host.eq_ignore_ascii_case(h_host)
        && o_port.unwrap_or(default_port) == h_port.unwrap_or(default_port)
}

/// The host a request names for origin checks: its one `Host` header, or
/// (HTTP/2, absolute form) the URI's authority.
fn named_host(request: &Request) -> Result<String, String> {
    let mut hosts = request.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Err("it has several Host headers".to_owned()),
        (Some(h), None) => h
            .to_str()
            .map(str::to_owned)
            .map_err(|_| format!("its Host {} is not text", quote(h.as_bytes()))),
        (None, _) => request
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .ok_or_else(|| "it names no host (no Host header)".to_owned()),
    }
}

/// Why a request is not a direct local one (`None`: it is): the rules of
/// the module doc, in order.
fn not_local(request: &Request, peer: Option<SocketAddr>) -> Option<String> {
    let Some(peer) = peer else {
        return Some("its client address is unknown".to_owned());
    };
    if !peer.ip().to_canonical().is_loopback() {
        return Some(format!("the client {} is not on this machine", peer.ip()));
    }
    let headers = request.headers();
    if let Some(name) = FORWARDING_HEADERS
        .iter()
        .find(|name| headers.contains_key(**name))
    {
        return Some(format!("it was forwarded by a proxy ({name} is set)"));
    }
    let host = match named_host(request) {
        Ok(host) => host,
        Err(why) => return Some(why),
    };
    let authority = request
        .uri()
        .authority()
        .map(axum::http::uri::Authority::as_str);
    let names = std::iter::once(host.as_str()).chain(authority);
    for name in names {
        let loopback = split_host_port(name).is_some_and(|(h, _)| is_loopback_host(h));
        if !loopback {
            return Some(format!(
                "the host it names, {}, is not localhost, 127.0.0.0/8 or [::1]",
                quote(name.as_bytes())
            ));
        }
    }
    if let Some(why) = foreign_origin(headers, &host) {
        return Some(why);
    }
    None
}

/// Why the `Origin` headers are not absent or this API's origin.
fn foreign_origin(headers: &HeaderMap, host: &str) -> Option<String> {
    let mut origins = headers.get_all(header::ORIGIN).iter();
    match (origins.next(), origins.next()) {
        (None, _) => None,
        (Some(origin), None) if same_origin(origin.as_bytes(), host) => None,
        (Some(origin), None) => Some(format!(
            "its Origin {} is not this API's origin",
            quote(origin.as_bytes())
        )),
        (Some(_), Some(_)) => Some("it has several Origin headers".to_owned()),
    }
}

/// Why a state-changing request on ambient credentials looks cross-site
/// (`None`: it does not): the rules of the module doc, rule 3 only with
/// `forms_need_origin` (the loopback mode).
fn cross_site(request: &Request, forms_need_origin: bool) -> Option<String> {
    let headers = request.headers();
    let sec_fetch_site = HeaderName::from_static("sec-fetch-site");
    for site in headers.get_all(&sec_fetch_site) {
        let site = site.as_bytes().trim_ascii();
        if site.eq_ignore_ascii_case(b"cross-site") || site.eq_ignore_ascii_case(b"same-site") {
            return Some(format!("its Sec-Fetch-Site is {}", quote(site)));
        }
    }
    if headers.contains_key(header::ORIGIN) {
        let host = match named_host(request) {
            Ok(host) => host,
            Err(why) => return Some(why),
        };
        return foreign_origin(headers, &host);
    }
    if !forms_need_origin {
        return None;
    }
    for content_type in headers.get_all(header::CONTENT_TYPE) {
        let value = content_type.as_bytes();
        let media = value
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        if FORM_MEDIA_TYPES
            .iter()
            .any(|form| media.eq_ignore_ascii_case(form.as_bytes()))
        {
            return Some(format!(
                "it has no Origin and a form's Content-Type {}",
                quote(media)
            ));
        }
    }
    None
}

/// Whether `method` may change state (everything but GET, HEAD, OPTIONS).
fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The middleware in front of every admin route.
pub(crate) async fn require_admin(
    State(gate): State<Arc<Gate>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(access) = &gate.cluster {
        if request
            .headers()
            .contains_key(dvr_cluster::signature::SIGNATURE_HEADER)
        {
            return cluster_request(access, request, next).await;
        }
    }
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let path = request.uri().path().to_owned();
    let presented = gate.judge(
        request
            .headers()
            .get(header::AUTHORIZATION)
            .map(axum::http::HeaderValue::as_bytes),
    );
    // Ok: let in on ambient credentials (basic auth, or as a local
    // request), which a browser would also send on another site's request.
    // Err: refused, with why it was not taken as local if it could have been.
    // Ok(true): let in as a local request, Ok(false): on basic auth.
    let admitted = match presented {
        Presented::Bearer => return next.run(request).await,
        Presented::Basic => Ok(false),
        Presented::Nothing | Presented::Wrong if gate.config.open_on_loopback => {
            not_local(&request, client).map_or(Ok(true), |why| Err(Some(why)))
        }
        Presented::Nothing | Presented::Wrong => Err(None),
    };
    let local_why = match admitted {
        Ok(local) => {
            if changes_state(request.method()) {
                if let Some(why) = cross_site(&request, local) {
                    warn!(client = ?client, path = %path, why = %why, "api: refused a cross-site request");
                    return ApiError::new(
                        StatusCode::FORBIDDEN,
                        format!(
                            "cross-site request refused ({why}): a browser page calls the API from its own origin with JSON; other clients send JSON (Content-Type: application/json) or Authorization: Bearer TOKEN"
                        ),
                    )
                    .into_response();
                }
            }
            return next.run(request).await;
        }
        Err(why) => why
            .map(|why| format!(" (not let in as a local request: {why})"))
            .unwrap_or_default(),
    };
    if !gate.config.has_credentials() {
        warn!(client = ?client, path = %path, local = %local_why, "api: refused a request (no credentials configured)");
        let message = if gate.config.open_on_loopback {
            format!(
                "the API without credentials answers only direct local requests{local_why}: set api.tokens (or api.users) in the config to call it from here"
            )
        } else {
            "the API is closed: no credentials are configured; set api.tokens (or api.users) in the config, or api.open_on_loopback: true to let direct local requests in without them".to_owned()
        };
        return ApiError::new(StatusCode::FORBIDDEN, message).into_response();
    }
    let why = if presented == Presented::Wrong {
        "wrong credentials"
    } else {
        "no credentials"
    };
    warn!(client = ?client, path = %path, why, local = %local_why, "api: refused a request");
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        format!(
            "{why}{local_why}: send Authorization: Bearer TOKEN (api.tokens) or basic auth (api.users)"
        ),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use dvr_storage::Secret;

    use super::*;

    fn gate() -> Gate {
        let mut config = ApiConfig::default();
        config.tokens.push(Secret::new("tok-1"));
        config.tokens.push(Secret::new("tok-2"));
        config.users.insert("admin".into(), Secret::new("pa:ss"));
        Gate {
            config,
            cluster: None,
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
        assert_eq!(g.judge(Some(b"Bearer tok-1")), Presented::Bearer);
        assert_eq!(g.judge(Some(b"bearer tok-2")), Presented::Bearer);
        assert_eq!(g.judge(Some(b"Bearer tok-")), Presented::Wrong);
        assert_eq!(g.judge(Some(b"Bearer tok-11")), Presented::Wrong);
        assert_eq!(g.judge(Some(b"Bearer ")), Presented::Wrong);
        assert_eq!(g.judge(Some(b"tok-1")), Presented::Wrong);
        assert_eq!(g.judge(None), Presented::Nothing);
        assert_eq!(
            g.judge(Some(&basic("admin:pa:ss"))),
            Presented::Basic,
            "the password may hold ':'"
        );
        assert_eq!(g.judge(Some(&basic("admin:pa"))), Presented::Wrong);
        assert_eq!(g.judge(Some(&basic("root:pa:ss"))), Presented::Wrong);
        assert_eq!(g.judge(Some(&basic("adminpa:ss"))), Presented::Wrong);
        assert_eq!(g.judge(Some(b"Basic !!!")), Presented::Wrong);
    }

    #[test]
    fn loopback_hosts_are_exactly_localhost_127_8_and_ipv6_one() {
        for ok in [
            "localhost",
            "LocalHost:8080",
            "127.0.0.1",
            "127.0.0.1:80",
            "127.1.2.3:65535",
            "[::1]",
            "[::1]:8080",
            "[0:0:0:0:0:0:0:1]:1",
        ] {
            let (host, _) = split_host_port(ok).unwrap();
            assert!(is_loopback_host(host), "{ok}");
        }
        for bad in [
            "evil.example",
            "localhost.evil.example",
            "localhost.",
            "127.0.0.1.nip.io",
            "127.1",
            "0177.0.0.1",
            "2130706433",
            "0.0.0.0",
            "10.0.0.1",
            "[::]",
            "[::ffff:10.0.0.1]",
            "::1",
        ] {
            let loopback = split_host_port(bad).is_some_and(|(h, _)| is_loopback_host(h));
            assert!(!loopback, "{bad}");
        }
        for malformed in [
            "",
            "localhost:",
            "localhost:+80",
            "localhost:99999",
            "localhost:80:80",
            "[::1",
            "[::1]x",
            "user@localhost",
            "localhost/x",
        ] {
            assert!(split_host_port(malformed).is_none(), "{malformed}");
        }
    }

    #[test]
    fn same_origin_is_the_host_and_port_over_http_or_https() {
        assert!(same_origin(b"http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(same_origin(b"http://LOCALHOST:8080", "localhost:8080"));
        assert!(same_origin(b"http://localhost", "localhost:80"));
        assert!(same_origin(b"http://localhost:80", "localhost"));
        assert!(same_origin(b"https://tv.example.com", "tv.example.com"));
        assert!(same_origin(b"https://tv.example.com:443", "tv.example.com"));
        assert!(same_origin(b"http://[::1]:8080", "[::1]:8080"));
        for (origin, host) in [
            ("http://evil.example", "localhost:8080"),
            ("http://localhost:3000", "localhost:8080"),
            ("http://127.0.0.1:8080", "localhost:8080"),
            ("https://localhost", "localhost:80"),
            ("null", "localhost"),
            ("file://", "localhost"),
            ("ftp://localhost", "localhost"),
            ("http://localhost:8080/x", "localhost:8080"),
            ("localhost:8080", "localhost:8080"),
        ] {
            assert!(!same_origin(origin.as_bytes(), host), "{origin} vs {host}");
        }
    }

    fn request(method: &str, headers: &[(&str, &str)]) -> Request {
        let mut r = Request::builder().method(method).uri("/api/v1/streams/x");
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.body(Body::empty()).unwrap()
    }

    #[test]
    fn cross_site_rules() {
        let host = ("host", "localhost:8080");
        for ok in [
            vec![host],
            vec![host, ("content-type", "application/json")],
            vec![
                host,
                ("origin", "http://localhost:8080"),
                ("content-type", "text/plain"),
            ],
            vec![host, ("sec-fetch-site", "same-origin")],
            vec![host, ("sec-fetch-site", "none")],
        ] {
            assert_eq!(cross_site(&request("POST", &ok), true), None, "{ok:?}");
        }
        for bad in [
            vec![host, ("origin", "http://evil.example")],
            vec![host, ("origin", "null")],
            vec![host, ("origin", "http://localhost:3000")],
            vec![host, ("sec-fetch-site", "cross-site")],
            vec![
                host,
                ("sec-fetch-site", "Same-Site"),
                ("origin", "http://localhost:8080"),
            ],
            vec![host, ("content-type", "text/plain;charset=UTF-8")],
            vec![host, ("content-type", "Application/X-WWW-Form-Urlencoded")],
            vec![host, ("content-type", "multipart/form-data; boundary=x")],
            vec![("origin", "http://localhost:8080")],
        ] {
            let why = cross_site(&request("POST", &bad), true);
            assert!(why.is_some(), "{bad:?}");
        }
        // With basic auth, a form type without Origin is a server-side
        // caller's (the seeds' middleware); Origin and Sec-Fetch-Site
        // still decide.
        let form = vec![host, ("content-type", "application/x-www-form-urlencoded")];
        assert_eq!(cross_site(&request("POST", &form), false), None);
        let foreign = vec![host, ("origin", "http://evil.example")];
        assert!(cross_site(&request("POST", &foreign), false).is_some());
        assert!(changes_state(&Method::POST) && changes_state(&Method::DELETE));
        assert!(changes_state(&Method::PUT) && changes_state(&Method::PATCH));
        assert!(!changes_state(&Method::GET) && !changes_state(&Method::HEAD));
        assert!(!changes_state(&Method::OPTIONS));
    }

    #[test]
    fn quoted_values_are_cut() {
        assert_eq!(quote(b"evil"), "\"evil\"");
        let long = quote("x".repeat(500).as_bytes());
        assert!(long.len() < 100 && long.ends_with('…'), "{long}");
    }
}
