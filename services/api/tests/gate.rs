//! Who gets past the admin gate, over a real TCP listener (so the peer
//! address is the kernel's, not a test's say-so) with raw HTTP/1.1 requests
//! whose every header the test writes: the API without credentials is
//! closed unless opted in; opted in, a proxied request, a foreign `Host`
//! (DNS rebinding) or a foreign `Origin` is not local; basic auth and the
//! local mode never change state cross-site, a bearer token needs no Origin.

use std::net::SocketAddr;
use std::sync::Arc;

use dvr_api::{ApiConfig, ApiService, ApiState, NothingRuns, StartError};
use dvr_archive::ArchiveRegistry;
use dvr_bus::{Kv, MemoryKv};
use dvr_common::StreamName;
use dvr_proto::{stream_config_key, LOCKS_KV_BUCKET, STREAMS_KV_BUCKET};
use dvr_storage::{Secret, StorageConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TOKEN: &str = "gate-token-1";
/// `admin:pw`.
const BASIC: &str = "Basic YWRtaW46cHc=";
/// A live-only stream: creating it needs nothing but the streams bucket.
const STREAM: &str = r#"{"inputs":["udp://239.0.0.9:1"]}"#;
const JSON: (&str, &str) = ("content-type", "application/json");

fn credentials() -> ApiConfig {
    let mut c = ApiConfig::default();
    c.tokens.push(Secret::new(TOKEN));
    c.users.insert("admin".into(), Secret::new("pw"));
    c
}

fn opted_in(mut config: ApiConfig) -> ApiConfig {
    config.open_on_loopback = true;
    config
}

fn service(streams: &Arc<MemoryKv>) -> ApiService {
    ApiService::new(ApiState::new(
        Arc::clone(streams) as Arc<dyn Kv>,
        None,
        Arc::new(MemoryKv::new(LOCKS_KV_BUCKET)),
        "api-1",
        Arc::new(NothingRuns),
        Arc::new(ArchiveRegistry::new(StorageConfig::default(), 0)),
        None,
    ))
}

/// The embedded API served as `dvr run` serves it, on a loopback port.
struct Api {
    port: u16,
    streams: Arc<MemoryKv>,
}

/// An answer: status and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
}

impl Api {
    async fn start(config: ApiConfig) -> Api {
        let streams = Arc::new(MemoryKv::new(STREAMS_KV_BUCKET));
        let router = service(&streams).embedded_router(config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        Api { port, streams }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `method path` with exactly these headers (plus Content-Length and
    /// Connection: close), in HTTP/1.1 unless `version` says otherwise.
    async fn raw(
        &self,
        version: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Answer {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
        let mut head = format!("{method} {path} {version}\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        let body = body.unwrap_or_default();
        head.push_str(&format!(
            "content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ));
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map_or(String::new(), |(_, b)| b.to_owned());
        Answer { status, body }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Answer {
        self.raw("HTTP/1.1", method, path, headers, body).await
    }

    /// `GET /api/v1/streams` with these headers.
    async fn list(&self, headers: &[(&str, &str)]) -> Answer {
        self.send("GET", "/api/v1/streams", headers, None).await
    }

    /// `POST /api/v1/streams/NAME` (a new stream) with these headers.
    async fn create(&self, name: &str, headers: &[(&str, &str)]) -> Answer {
        let path = format!("/api/v1/streams/{name}");
        self.send("POST", &path, headers, Some(STREAM)).await
    }

    async fn stored(&self, name: &str) -> bool {
        let key = stream_config_key(&StreamName::new(name).unwrap());
        self.streams.get(&key).await.unwrap().is_some()
    }
}

#[track_caller]
fn expect(answer: &Answer, status: u16, needles: &[&str]) {
    assert_eq!(answer.status, status, "{answer:?}");
    for needle in needles {
        assert!(answer.body.contains(needle), "no {needle:?} in {answer:?}");
    }
}

#[tokio::test]
async fn without_credentials_and_without_the_opt_in_everything_is_refused() {
    assert!(!ApiConfig::default().open_on_loopback, "off by default");
    let api = Api::start(ApiConfig::default()).await;
    let host = api.host();
    for headers in [vec![("host", host.as_str())], vec![("host", "localhost")]] {
        let a = api.list(&headers).await;
        expect(&a, 403, &["api.tokens", "api.open_on_loopback: true"]);
    }
    let a = api.create("new", &[("host", &host), JSON]).await;
    expect(&a, 403, &["closed"]);
    assert!(!api.stored("new").await, "nothing changed");
    // A token cannot help: none is configured.
    let bearer = format!("Bearer {TOKEN}");
    let a = api
        .list(&[("host", &host), ("authorization", &bearer)])
        .await;
    expect(&a, 403, &["api.tokens"]);
}

#[tokio::test]
async fn opted_in_a_direct_local_request_passes_and_a_proxied_one_does_not() {
    let api = Api::start(opted_in(ApiConfig::default())).await;
    let port = api.port;
    for host in [
        api.host(),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        "127.0.0.2".to_owned(),
        "LOCALHOST".to_owned(),
    ] {
        let a = api.list(&[("host", &host)]).await;
        expect(&a, 200, &["streams"]);
    }
    let host = api.host();
    for forwarded in [
        ("x-forwarded-for", "203.0.113.7"),
        ("forwarded", "for=203.0.113.7"),
        ("x-real-ip", "203.0.113.7"),
        ("x-forwarded-host", "tv.example.com"),
        ("x-forwarded-proto", "https"),
        ("via", "1.1 proxy"),
    ] {
        let a = api.list(&[("host", &host), forwarded]).await;
        expect(
            &a,
            403,
            &["forwarded by a proxy", forwarded.0, "set api.tokens"],
        );
        let a = api
            .create("proxied", &[("host", &host), forwarded, JSON])
            .await;
        assert_eq!(a.status, 403, "{a:?}");
    }
    assert!(!api.stored("proxied").await);

    // With credentials configured too, a proxied request needs them.
    let api = Api::start(opted_in(credentials())).await;
    let host = api.host();
    let proxied = ("x-forwarded-for", "203.0.113.7");
    let a = api.list(&[("host", &host), proxied]).await;
    expect(&a, 401, &["no credentials", "forwarded by a proxy"]);
    let bearer = format!("Bearer {TOKEN}");
    let a = api
        .list(&[("host", &host), proxied, ("authorization", &bearer)])
        .await;
    expect(&a, 200, &["streams"]);
    let a = api.list(&[("host", &host)]).await;
    expect(&a, 200, &["streams"]);
}

#[tokio::test]
async fn opted_in_a_foreign_host_is_refused_as_dns_rebinding() {
    let api = Api::start(opted_in(ApiConfig::default())).await;
    let port = api.port;
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_owned(),
        format!("127.0.0.1.nip.io:{port}"),
        format!("localhost.evil.example:{port}"),
        format!("0.0.0.0:{port}"),
        format!("2130706433:{port}"),
        format!("localhost:{port}:1"),
    ] {
        let a = api.list(&[("host", &host)]).await;
        expect(&a, 403, &["is not localhost"]);
        let a = api.create("rebound", &[("host", &host), JSON]).await;
        expect(&a, 403, &["is not localhost"]);
    }
    assert!(!api.stored("rebound").await);
    // No Host at all (HTTP/1.0 allows it): not local either.
    let a = api
        .raw("HTTP/1.0", "GET", "/api/v1/streams", &[], None)
        .await;
    expect(&a, 403, &["no Host"]);
    // The same over HTTP/1.0 with a loopback Host passes.
    let host = api.host();
    let a = api
        .raw(
            "HTTP/1.0",
            "GET",
            "/api/v1/streams",
            &[("host", &host)],
            None,
        )
        .await;
    expect(&a, 200, &["streams"]);
    // Two Host headers: which one would a proxy have read?
    let a = api.list(&[("host", &host), ("host", "evil.example")]).await;
    expect(&a, 403, &["several Host headers"]);
    // An absolute-form target names its own host, which must be local too.
    let target = format!("http://evil.example:{port}/api/v1/streams");
    let a = api.send("GET", &target, &[("host", &host)], None).await;
    expect(&a, 403, &["evil.example"]);
}

#[tokio::test]
async fn opted_in_a_foreign_origin_or_a_cross_site_change_is_refused() {
    let api = Api::start(opted_in(ApiConfig::default())).await;
    let host = api.host();
    let own = api.origin();
    let localhost_origin = format!("http://localhost:{}", api.port);
    for origin in [
        "http://evil.example",
        "null",
        localhost_origin.as_str(),
        "http://127.0.0.1:1",
    ] {
        let a = api.list(&[("host", &host), ("origin", origin)]).await;
        expect(&a, 403, &["Origin", "not this API's origin"]);
        let a = api
            .create("foreign", &[("host", &host), ("origin", origin), JSON])
            .await;
        assert_eq!(a.status, 403, "{origin}: {a:?}");
    }
    assert!(!api.stored("foreign").await);
    let a = api.list(&[("host", &host), ("origin", &own)]).await;
    expect(&a, 200, &["streams"]);

    // Changes: from the API's own page with JSON, or a local tool with
    // JSON and no Origin, pass; what a cross-site form can send does not.
    let a = api
        .create("own-page", &[("host", &host), ("origin", &own), JSON])
        .await;
    expect(&a, 201, &[]);
    let a = api.create("tool", &[("host", &host), JSON]).await;
    expect(&a, 201, &[]);
    let a = api.create("no-body-type", &[("host", &host)]).await;
    expect(&a, 201, &[]);
    for headers in [
        vec![("host", host.as_str()), ("content-type", "text/plain")],
        vec![
            ("host", host.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        vec![
            ("host", host.as_str()),
            ("content-type", "multipart/form-data; boundary=x"),
        ],
        vec![
            ("host", host.as_str()),
            ("sec-fetch-site", "cross-site"),
            JSON,
        ],
        vec![
            ("host", host.as_str()),
            ("sec-fetch-site", "same-site"),
            JSON,
        ],
    ] {
        let a = api.create("form", &headers).await;
        expect(&a, 403, &["cross-site request refused"]);
    }
    assert!(!api.stored("form").await);
    let a = api
        .send(
            "DELETE",
            "/api/v1/streams/tool",
            &[("host", &host), ("sec-fetch-site", "cross-site")],
            None,
        )
        .await;
    expect(&a, 403, &["cross-site"]);
    assert!(api.stored("tool").await, "not deleted");
}

#[tokio::test]
async fn basic_auth_never_changes_state_cross_site_and_a_token_needs_no_origin() {
    let api = Api::start(credentials()).await;
    let host = api.host();
    let own = api.origin();
    let basic = ("authorization", BASIC);
    let a = api
        .create(
            "csrf",
            &[
                ("host", &host),
                basic,
                ("origin", "http://evil.example"),
                JSON,
            ],
        )
        .await;
    expect(&a, 403, &["cross-site request refused", "evil.example"]);
    assert!(!a.body.contains("YWRtaW46cHc"), "never echoes the secret");
    for headers in [
        vec![
            ("host", host.as_str()),
            basic,
            ("origin", "http://evil.example"),
            ("content-type", "text/plain"),
        ],
        vec![
            ("host", host.as_str()),
            basic,
            ("sec-fetch-site", "cross-site"),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        vec![
            ("host", host.as_str()),
            basic,
            ("sec-fetch-site", "same-site"),
            JSON,
        ],
        vec![("host", host.as_str()), basic, ("origin", "null"), JSON],
    ] {
        let a = api.create("csrf", &headers).await;
        expect(&a, 403, &["cross-site request refused"]);
    }
    assert!(!api.stored("csrf").await, "nothing created");

    // The same user from the API's own origin, or a tool with JSON.
    let a = api
        .create(
            "same-origin",
            &[("host", &host), basic, ("origin", &own), JSON],
        )
        .await;
    expect(&a, 201, &[]);
    let a = api.create("tool", &[("host", &host), basic, JSON]).await;
    expect(&a, 201, &[]);
    // Reading cross-site changes nothing (the browser keeps the answer
    // from the page).
    let a = api
        .list(&[("host", &host), basic, ("origin", "http://evil.example")])
        .await;
    expect(&a, 200, &["same-origin"]);
    let a = api
        .send(
            "DELETE",
            "/api/v1/streams/tool",
            &[("host", &host), basic, ("origin", "http://evil.example")],
            None,
        )
        .await;
    expect(&a, 403, &["cross-site"]);
    assert!(api.stored("tool").await, "not deleted");

    // The seeds' own middleware call (curl -u … --data ''): a form type
    // and no Origin is a server-side caller, not a browser (which sends
    // Origin on every cross-origin POST), so it passes.
    let seeds = [
        ("host", host.as_str()),
        basic,
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let a = api
        .send("POST", "/flussonic/api/dvr_disable/tool", &seeds, Some(""))
        .await;
    expect(&a, 409, &["has no dvr"]);
    let a = api
        .send(
            "POST",
            "/flussonic/api/dvr_disable/tool",
            &[("host", &host), basic, JSON],
            Some(""),
        )
        .await;
    expect(&a, 409, &["has no dvr"]);

    // A bearer token is no browser's ambient credential: no Origin, any
    // content type.
    let bearer = format!("Bearer {TOKEN}");
    let a = api
        .create(
            "bearer",
            &[
                ("host", &host),
                ("authorization", &bearer),
                ("content-type", "text/plain"),
            ],
        )
        .await;
    expect(&a, 201, &[]);
    assert!(api.stored("bearer").await);
    // Without the opt-in, no credentials are 401 whatever the request.
    let a = api.create("anon", &[("host", &host), JSON]).await;
    expect(&a, 401, &["no credentials"]);
    assert!(!a.body.contains("local"), "not opted in: {a:?}");
}

#[test]
fn the_distributed_api_refuses_the_loopback_opt_in() {
    let streams = Arc::new(MemoryKv::new(STREAMS_KV_BUCKET));
    let service = service(&streams);
    let e = service
        .distributed_router(opted_in(credentials()))
        .unwrap_err();
    assert!(matches!(e, StartError::OpenOnLoopback), "{e}");
    assert!(e.to_string().contains("remove it"), "{e}");
    assert!(service.distributed_router(credentials()).is_ok());
}
