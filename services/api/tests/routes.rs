//! Every route in process, through the real router, auth layer, MemoryKv
//! buckets and an archive on the real memory storage wrapped in a counter
//! (so "no storage call" is measured, not assumed).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use dvr_api::{ApiConfig, ApiService, ApiState, NothingRuns};
use dvr_archive::store::ArchiveStore;
use dvr_archive::ArchiveRegistry;
use dvr_bus::{Kv, MemoryKv};
use dvr_common::{StreamName, UtcMs};
use dvr_proto::{SessionRecord, Versioned, LOCKS_KV_BUCKET, SESSIONS_KV_BUCKET, STREAMS_KV_BUCKET};
use dvr_storage::{CountingStorage, Secret, Storage, StorageConfig, StorageUri};
use serde_json::{json, Value};
use tower::ServiceExt;

const ROOT: &str = "memory://api-routes";
const TOKEN: &str = "admin-token-1";

struct Fixture {
    streams: Arc<MemoryKv>,
    sessions: Arc<MemoryKv>,
    locks: Arc<MemoryKv>,
    storage: Arc<CountingStorage>,
    /// Storage calls made before the test's own.
    calls_before: usize,
    service: ApiService,
}

fn credentials() -> ApiConfig {
    let mut c = ApiConfig::default();
    c.tokens.push(Secret::new(TOKEN));
    c.users.insert("admin".into(), Secret::new("pw"));
    c
}

async fn fixture() -> Fixture {
    let streams = Arc::new(MemoryKv::new(STREAMS_KV_BUCKET));
    let sessions = Arc::new(MemoryKv::new(SESSIONS_KV_BUCKET));
    let uri: StorageUri = ROOT.parse().unwrap();
    let real = dvr_storage::resolve(&uri, &StorageConfig::default()).unwrap();
    let counting = Arc::new(CountingStorage::new(real));
    let locks = Arc::new(MemoryKv::new(LOCKS_KV_BUCKET));
    let service = api_replica(&streams, Some(&sessions), &locks, &counting, "api-1");
    let mut f = Fixture {
        streams,
        sessions,
        locks,
        storage: counting,
        calls_before: 0,
        service,
    };
    // Two streams: one recording, one live only.
    let app = f.router();
    let (s, b) = call(
        &app,
        "POST",
        "/api/v1/streams/ort",
        Some(r#"{"inputs":["udp://239.0.0.1:1234"],"dvr":{"depth":"7d"}}"#),
        Auth::Token,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = call(
        &app,
        "POST",
        "/api/v1/streams/live",
        Some("inputs: [ \"udp://239.0.0.2:1234\" ]\n"),
        Auth::Token,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "YAML body: {b}");
    f.calls_before = f.storage.calls();
    f
}

/// An API over these buckets and this store, with an archive store of its
/// own (as another process would have).
fn api_replica(
    streams: &Arc<MemoryKv>,
    sessions: Option<&Arc<MemoryKv>>,
    locks: &Arc<MemoryKv>,
    storage: &Arc<CountingStorage>,
    node: &str,
) -> ApiService {
    let archives = Arc::new(ArchiveRegistry::new(StorageConfig::default(), 0));
    archives.insert(
        ROOT,
        Arc::new(ArchiveStore::new(Arc::clone(storage) as Arc<dyn Storage>)),
    );
    ApiService::new(
        ApiState::new(
            Arc::clone(streams) as Arc<dyn Kv>,
            sessions.map(|s| Arc::clone(s) as Arc<dyn Kv>),
            Arc::clone(locks) as Arc<dyn Kv>,
            node,
            Arc::new(NothingRuns),
            archives,
            Some(ROOT.to_owned()),
        )
        .with_exports(
            Arc::new(MemoryKv::new(dvr_proto::EXPORTS_KV_BUCKET)),
            Arc::new(dvr_common::SystemClock),
        ),
    )
}

impl Fixture {
    fn router(&self) -> Router {
        self.service.embedded_router(credentials())
    }

    /// A second API process over the same buckets and archive.
    fn second_replica(&self) -> Router {
        api_replica(&self.streams, None, &self.locks, &self.storage, "api-2")
            .embedded_router(credentials())
    }

    /// Revisions of every key, for "nothing changed".
    async fn snapshot(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for k in self.streams.keys().await.unwrap() {
            let rev = self.streams.get(&k).await.unwrap().unwrap().revision;
            out.push((k, rev));
        }
        out
    }

    fn storage_calls(&self) -> usize {
        self.storage.calls() - self.calls_before
    }
}

#[derive(Clone, Copy)]
enum Auth {
    None,
    Token,
    Basic,
    WrongToken,
    WrongBasic,
}

async fn call_from(
    app: &Router,
    method: &str,
    uri: &str,
    body: Option<&str>,
    auth: Auth,
    client: Option<SocketAddr>,
) -> (StatusCode, Value, axum::http::HeaderMap) {
    // What every HTTP/1.1 client sends; the gate reads it.
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "localhost");
    let header = match auth {
        Auth::None => None,
        Auth::Token => Some(format!("Bearer {TOKEN}")),
        Auth::WrongToken => Some(format!("Bearer {TOKEN}x")),
        // admin:pw and admin:px
        Auth::Basic => Some("Basic YWRtaW46cHc=".to_owned()),
        Auth::WrongBasic => Some("Basic YWRtaW46cHg=".to_owned()),
    };
    if let Some(h) = header {
        req = req.header("authorization", h);
    }
    let mut req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
        .unwrap();
    if let Some(addr) = client {
        req.extensions_mut().insert(ConnectInfo(addr));
    }
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (status, value, headers)
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    body: Option<&str>,
    auth: Auth,
) -> (StatusCode, Value) {
    let (s, v, _) = call_from(app, method, uri, body, auth, None).await;
    (s, v)
}

/// Every route with a request that would change or read something.
fn every_route() -> Vec<(&'static str, &'static str, Option<&'static str>)> {
    vec![
        ("GET", "/api/v1/openapi.json", None),
        ("GET", "/api/v1/streams", None),
        ("GET", "/api/v1/streams/ort", None),
        (
            "POST",
            "/api/v1/streams/new",
            Some(r#"{"inputs":["udp://239.0.0.9:1"]}"#),
        ),
        (
            "PUT",
            "/api/v1/streams/ort",
            Some(r#"{"inputs":["udp://239.0.0.9:1"]}"#),
        ),
        ("DELETE", "/api/v1/streams/live", None),
        ("GET", "/api/v1/status", None),
        ("GET", "/api/v1/streams/ort/status", None),
        ("POST", "/api/v1/streams/ort/dvr/enable", None),
        ("POST", "/api/v1/streams/ort/dvr/disable", None),
        ("GET", "/api/v1/streams/ort/dvr/locks", None),
        (
            "POST",
            "/api/v1/streams/ort/dvr/locks",
            Some(r#"{"from":1700000000,"duration":60}"#),
        ),
        (
            "DELETE",
            "/api/v1/streams/ort/dvr/locks?from=1700000000&duration=60",
            None,
        ),
        ("POST", "/api/v1/streams/ort/dvr/reindex", None),
        (
            "POST",
            "/api/v1/streams/ort/dvr/export",
            Some(r#"{"from":1700000000,"duration":60}"#),
        ),
        ("GET", "/api/v1/sessions", None),
        ("GET", "/api/v1/storage", None),
        ("GET", "/api/v1/exports", None),
        ("GET", "/api/v1/exports/0badf00d", None),
        ("POST", "/flussonic/api/dvr_enable/ort", None),
        ("POST", "/flussonic/api/dvr_disable/ort", None),
        (
            "POST",
            "/flussonic/api/dvr/lock",
            Some(r#"{"stream":"ort","from":1700000000,"duration":60}"#),
        ),
        (
            "POST",
            "/flussonic/api/dvr/unlock",
            Some(r#"{"stream":"ort","from":1700000000,"duration":60}"#),
        ),
    ]
}

#[tokio::test]
async fn every_route_refuses_missing_or_wrong_credentials_and_changes_nothing() {
    let f = fixture().await;
    let app = f.router();
    let before = f.snapshot().await;
    for (method, uri, body) in every_route() {
        for auth in [Auth::None, Auth::WrongToken, Auth::WrongBasic] {
            let loopback = Some(SocketAddr::from(([127, 0, 0, 1], 4000)));
            let (s, v, h) = call_from(&app, method, uri, body, auth, loopback).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {uri}: {v}");
            assert!(v["error"].as_str().unwrap().contains("credentials"), "{v}");
            let challenges: Vec<_> = h.get_all("www-authenticate").iter().collect();
            assert_eq!(challenges.len(), 2, "{method} {uri}: Bearer and Basic");
        }
    }
    assert_eq!(f.snapshot().await, before, "nothing changed");
    assert_eq!(f.storage_calls(), 0, "no storage call");
    // The same routes pass with a token or basic auth.
    for (method, uri, body) in every_route() {
        let auth = if method == "GET" {
            Auth::Basic
        } else {
            Auth::Token
        };
        let (s, v) = call(&app, method, uri, body, auth).await;
        assert_ne!(s, StatusCode::UNAUTHORIZED, "{method} {uri}: {v}");
        assert!(
            !s.is_server_error() || s == StatusCode::NOT_IMPLEMENTED,
            "{method} {uri}: {s} {v}"
        );
    }
}

#[tokio::test]
async fn bad_names_and_file_names_are_400_before_any_storage_call() {
    let f = fixture().await;
    let app = f.router();
    let before = f.snapshot().await;
    let long = "a".repeat(129);
    let names = [
        "..",
        "a%2F..%2Fb",
        "%2Fetc",
        "%00",
        "a%00b",
        "a%2F%2Fb",
        long.as_str(),
        "with%20space",
    ];
    for name in names {
        for (method, tail, body) in [
            ("GET", "", None),
            ("POST", "", Some(r#"{"inputs":["udp://239.0.0.9:1"]}"#)),
            ("PUT", "", Some(r#"{"inputs":["udp://239.0.0.9:1"]}"#)),
            ("DELETE", "", None),
            ("GET", "/status", None),
            ("POST", "/dvr/enable", None),
            ("POST", "/dvr/disable", None),
            ("GET", "/dvr/locks", None),
            (
                "POST",
                "/dvr/locks",
                Some(r#"{"from":1700000000,"duration":60}"#),
            ),
            ("DELETE", "/dvr/locks?from=1700000000&duration=60", None),
            ("POST", "/dvr/reindex", None),
            (
                "POST",
                "/dvr/export",
                Some(r#"{"from":1700000000,"duration":60}"#),
            ),
        ] {
            let uri = format!("/api/v1/streams/{name}{tail}");
            let (s, v) = call(&app, method, &uri, body, Auth::Token).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{method} {uri}: {v}");
            assert!(v["error"].as_str().unwrap().starts_with("name: "), "{v}");
        }
        let uri = format!("/flussonic/api/dvr_enable/{name}");
        let (s, v) = call(&app, "POST", &uri, None, Auth::Token).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}: {v}");
    }
    for stream in ["../ort", "/etc/passwd", "ort\u{0}", &long] {
        let body = json!({"stream": stream, "from": 1_700_000_000, "duration": 60}).to_string();
        for path in ["/flussonic/api/dvr/lock", "/flussonic/api/dvr/unlock"] {
            let (s, v) = call(&app, "POST", path, Some(&body), Auth::Token).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{path} {stream:?}: {v}");
            assert!(v["error"].as_str().unwrap().starts_with("stream: "), "{v}");
        }
    }
    let long_file = "f".repeat(300);
    for file in [
        "../x.mp4",
        "/storage/recording1.mp4",
        "a\u{0}b.mp4",
        "a/../../b",
        &long_file,
    ] {
        let body = json!({"from": 1_700_000_000, "duration": 60, "file": file}).to_string();
        let (s, v) = call(
            &app,
            "POST",
            "/api/v1/streams/ort/dvr/export",
            Some(&body),
            Auth::Token,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{file:?}: {v}");
        assert!(v["error"].as_str().unwrap().starts_with("file: "), "{v}");
    }
    assert_eq!(f.snapshot().await, before, "nothing changed");
    assert_eq!(f.storage_calls(), 0, "no storage call");
}

#[tokio::test]
async fn streams_crud_validates_and_detects_conflicts() {
    let f = fixture().await;
    let app = f.router();
    let (s, v) = call(&app, "GET", "/api/v1/streams", None, Auth::Token).await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<_> = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["live", "ort"]);
    let (s, v, h) = call_from(&app, "GET", "/api/v1/streams/ort", None, Auth::Token, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["config"]["dvr"]["depth"], "7d");
    assert_eq!(
        v["config"]["dvr"]["root"], ROOT,
        "the default archive filled in"
    );
    let rev = v["revision"].as_u64().unwrap();
    assert_eq!(h["etag"], format!("\"{rev}\"").as_str());

    // Create over an existing stream: 409, unchanged.
    let (s, v) = call(
        &app,
        "POST",
        "/api/v1/streams/ort",
        Some(r#"{"inputs":["udp://1.2.3.4:5"]}"#),
        Auth::Token,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    // Validation names the field.
    for (body, field) in [
        (r#"{"inputs":["gopher://x"]}"#, "stream.inputs[0]"),
        (
            r#"{"inputs":["udp://1.2.3.4:5"],"dvr":{"depth":"7x"}}"#,
            "stream.dvr.depth",
        ),
        (r#"{"inputs":[]}"#, "stream.inputs"),
        (
            r#"{"inputs":["udp://1.2.3.4:5"],"colour":"red"}"#,
            "unknown field `colour`",
        ),
        (
            r#"{"inputs":["timeshift://nope/60"]}"#,
            "stream.inputs[0]: timeshift source \"nope\"",
        ),
        (
            r#"{"inputs":["timeshift://live/60"]}"#,
            "stream.inputs[0]: timeshift source \"live\"",
        ),
        (
            r#"{"inputs":["udp://1.2.3.4:5","publish://"]}"#,
            "stream.inputs[1]: publish:// needs the RTMP listener",
        ),
        ("", "body: empty"),
        ("\u{ff}", "body"),
    ] {
        let (s, v) = call(&app, "POST", "/api/v1/streams/x", Some(body), Auth::Token).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(field), "{body}: {v}");
    }
    // A delayed channel of a recording stream is fine, and then protects it.
    let (s, v) = call(
        &app,
        "POST",
        "/api/v1/streams/ort-1h",
        Some(r#"{"inputs":["timeshift://ort/3600"]}"#),
        Auth::Token,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = call(&app, "DELETE", "/api/v1/streams/ort", None, Auth::Token).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["error"].as_str().unwrap().contains("ort-1h"), "{v}");

    // Optimistic concurrency.
    let update =
        r#"{"inputs":["udp://239.0.0.1:1234","http://backup/ort.ts"],"dvr":{"depth":"3d"}}"#;
    let stale = format!("\"{}\"", rev - 1);
    let req = |if_match: String| {
        Request::builder()
            .method("PUT")
            .uri("/api/v1/streams/ort")
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("if-match", if_match)
            .body(Body::from(update))
            .unwrap()
    };
    let res = app.clone().oneshot(req(stale)).await.unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(
        f.streams.get("ort").await.unwrap().unwrap().revision,
        rev,
        "unchanged"
    );
    let res = app
        .clone()
        .oneshot(req(format!("\"{rev}\"")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (_, v) = call(&app, "GET", "/api/v1/streams/ort", None, Auth::Token).await;
    assert_eq!(v["config"]["dvr"]["depth"], "3d");
    assert_eq!(v["config"]["inputs"][1], "http://backup/ort.ts");
    let res = app.clone().oneshot(req("yesterday".into())).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // Unknown streams.
    for (m, u) in [
        ("GET", "/api/v1/streams/nope"),
        ("PUT", "/api/v1/streams/nope"),
        ("DELETE", "/api/v1/streams/nope"),
        ("GET", "/api/v1/streams/nope/status"),
        ("POST", "/api/v1/streams/nope/dvr/enable"),
    ] {
        let (s, v) = call(
            &app,
            m,
            u,
            Some(r#"{"inputs":["udp://1.2.3.4:5"]}"#),
            Auth::Token,
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{m} {u}: {v}");
    }
    // Names with '/' and '.' go encoded and are stored.
    let (s, v) = call(
        &app,
        "POST",
        "/api/v1/streams/news%2Fhd.backup",
        Some(r#"{"inputs":["udp://1.2.3.4:5"]}"#),
        Auth::Token,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["name"], "news/hd.backup");
    let (s, _) = call(
        &app,
        "GET",
        "/api/v1/streams/news%2Fhd.backup",
        None,
        Auth::Token,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    // Delete.
    let (s, _) = call(&app, "DELETE", "/api/v1/streams/ort-1h", None, Auth::Token).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = call(&app, "GET", "/api/v1/streams/ort-1h", None, Auth::Token).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn dvr_switches_are_stored_in_the_stream_settings() {
    let f = fixture().await;
    let app = f.router();
    let stored = || async {
        let e = f.streams.get("ort").await.unwrap().unwrap();
        serde_json::from_slice::<Value>(&e.value).unwrap()["dvr"]["enabled"].clone()
    };
    let (s, v) = call(
        &app,
        "POST",
        "/api/v1/streams/ort/dvr/disable",
        None,
        Auth::Token,
    )
    .await;
    assert_eq!(
        (s, &v["dvr_enabled"]),
        (StatusCode::OK, &json!(false)),
        "{v}"
    );
    assert_eq!(stored().await, json!(false));
    let (_, v) = call(&app, "GET", "/api/v1/streams/ort/status", None, Auth::Token).await;
    assert_eq!(
        (
            v["dvr_configured"].clone(),
            v["dvr_enabled"].clone(),
            v["running"].clone(),
            v["recording"].clone()
        ),
        (json!(true), json!(false), json!(false), json!(false))
    );
    let (s, v) = call(
        &app,
        "POST",
        "/flussonic/api/dvr_enable/ort",
        Some(""),
        Auth::Basic,
    )
    .await;
    assert_eq!((s, v), (StatusCode::OK, json!(true)));
    assert_eq!(stored().await, json!(true));
    let (s, v) = call(
        &app,
        "POST",
        "/flussonic/api/dvr_disable/ort",
        None,
        Auth::Token,
    )
    .await;
    assert_eq!((s, v), (StatusCode::OK, json!(true)));
    assert_eq!(stored().await, json!(false));
    // A stream without dvr cannot be switched.
    let (s, v) = call(
        &app,
        "POST",
        "/api/v1/streams/live/dvr/enable",
        None,
        Auth::Token,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (_, v) = call(&app, "GET", "/api/v1/status", None, Auth::Token).await;
    assert_eq!(v["streams"].as_array().unwrap().len(), 2);
}

/// Two API replicas adding locks to one stream at once, over a store with
/// a round trip: every lock lands in the archive (`locks.json` is
/// read-modify-write, so without one editor at a time some would be lost).
#[tokio::test]
async fn lock_edits_on_two_replicas_at_once_lose_nothing() {
    let f = fixture().await;
    let (one, two) = (f.router(), f.second_replica());
    // A stream of its own: the memory store is shared by the tests here.
    let (s, v) = call(
        &one,
        "POST",
        "/api/v1/streams/race",
        Some(r#"{"inputs":["udp://239.0.0.3:1234"],"dvr":{"depth":"1d"}}"#),
        Auth::Token,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    f.storage.set_delay(Duration::from_millis(2));
    let add = |app: Router, first: i64| async move {
        for i in first..first + 6 {
            let body = format!(r#"{{"from":{},"duration":60}}"#, 1_700_000_000 + i * 100);
            let (s, v) = call(
                &app,
                "POST",
                "/api/v1/streams/race/dvr/locks",
                Some(&body),
                Auth::Token,
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{v}");
        }
    };
    tokio::join!(add(one.clone(), 0), add(two, 6));
    let (_, v) = call(
        &one,
        "GET",
        "/api/v1/streams/race/dvr/locks",
        None,
        Auth::Token,
    )
    .await;
    assert_eq!(v["locks"].as_array().unwrap().len(), 12, "{v}");
    assert_eq!(
        f.locks.keys().await.unwrap(),
        Vec::<String>::new(),
        "no edit left holding the stream"
    );
}

#[tokio::test]
async fn locks_through_both_apis_reach_the_archive() {
    let f = fixture().await;
    let app = f.router();
    let (s, v) = call(
        &app,
        "POST",
        "/api/v1/streams/ort/dvr/locks",
        Some(r#"{"from":1700000000,"duration":3600}"#),
        Auth::Token,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"stream":"ort","locks":[{"from":1_700_000_000,"duration":3600}]})
    );
    let (s, v) = call(
        &app,
        "POST",
        "/flussonic/api/dvr/lock",
        Some(r#"{"stream":"ort","from":1483971680,"duration":1000}"#),
        Auth::Basic,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["locks"].as_array().unwrap().len(), 2);
    // What the archive holds is what retention reads.
    assert!(f.storage_calls() > 0);
    let (_, v) = call(
        &app,
        "GET",
        "/api/v1/streams/ort/dvr/locks",
        None,
        Auth::Token,
    )
    .await;
    assert_eq!(v["locks"][0], json!({"from":1_483_971_680,"duration":1000}));
    let (s, v) = call(
        &app,
        "DELETE",
        "/api/v1/streams/ort/dvr/locks?from=1700000000&duration=3600",
        None,
        Auth::Token,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["locks"].as_array().unwrap().len(), 1);
    let (s, v) = call(
        &app,
        "DELETE",
        "/api/v1/streams/ort/dvr/locks?from=1700000000&duration=3600",
        None,
        Auth::Token,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, _) = call(
        &app,
        "POST",
        "/flussonic/api/dvr/unlock",
        Some(r#"{"stream":"ort","from":1483971680,"duration":1000}"#),
        Auth::Token,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    // Bad ranges and bodies.
    for body in [
        r#"{"from":1700000000,"duration":0}"#,
        r#"{"from":-1,"duration":5}"#,
        r#"{"from":1700000000000,"duration":5}"#,
        r#"{"from":1}"#,
        "not json",
        r#"{"from":1,"duration":5,"extra":1}"#,
    ] {
        let (s, v) = call(
            &app,
            "POST",
            "/api/v1/streams/ort/dvr/locks",
            Some(body),
            Auth::Token,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
    }
    let (s, v) = call(
        &app,
        "DELETE",
        "/api/v1/streams/ort/dvr/locks",
        None,
        Auth::Token,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    // No archive, no locks; unknown stream.
    let (s, _) = call(
        &app,
        "POST",
        "/api/v1/streams/live/dvr/locks",
        Some(r#"{"from":1,"duration":5}"#),
        Auth::Token,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = call(
        &app,
        "POST",
        "/flussonic/api/dvr/lock",
        Some(r#"{"stream":"nope","from":1,"duration":5}"#),
        Auth::Token,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn storage_health_checks_each_root_once_per_answer() {
    let f = fixture().await;
    let app = f.router();
    // A stream recording into a directory that cannot be: its parent is
    // a file.
    let file = std::env::temp_dir().join(format!("dvr-api-not-a-dir-{}", std::process::id()));
    std::fs::write(&file, b"x").unwrap();
    let missing = file.join("archive");
    let body = format!(
        r#"{{"inputs":["udp://239.0.0.3:1234"],"dvr":{{"depth":"1d","root":"file://{}"}}}}"#,
        missing.display()
    );
    let (s, v) = call(
        &app,
        "POST",
        "/api/v1/streams/far",
        Some(&body),
        Auth::Token,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let calls = f.storage_calls();
    let (s, v) = call(&app, "GET", "/api/v1/storage", None, Auth::Token).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let archives = v["archives"].as_array().unwrap();
    assert_eq!(archives.len(), 2, "{v}");
    assert_eq!(
        archives[0]["root"],
        format!("file://{}", missing.display()),
        "{v}"
    );
    assert_eq!(archives[0]["streams"], json!(["far"]), "{v}");
    assert_eq!(archives[0]["ok"], false, "{v}");
    assert!(
        archives[0]["error"].as_str().unwrap().contains("archive"),
        "{v}"
    );
    assert_eq!(archives[1]["root"], ROOT, "{v}");
    assert_eq!(archives[1]["streams"], json!(["ort"]), "{v}");
    assert_eq!(archives[1]["ok"], true, "{v}");
    assert!(archives[1].get("error").is_none(), "{v}");
    assert_eq!(f.storage_calls() - calls, 1, "one check of the memory root");
    // Within the answer's life nobody checks again.
    let (_, again) = call(&app, "GET", "/api/v1/storage", None, Auth::Token).await;
    assert_eq!(again["archives"], v["archives"]);
    assert_eq!(v["age_ms"], 0, "{v}");
    assert_eq!(f.storage_calls() - calls, 1, "the answer was reused");
    std::fs::remove_file(file).unwrap();
}

#[tokio::test]
async fn reindex_export_sessions_and_the_document() {
    let f = fixture().await;
    let app = f.router();
    let (s, v) = call(
        &app,
        "POST",
        "/api/v1/streams/ort/dvr/reindex",
        None,
        Auth::Token,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["chunks"], 0);
    let (s, _) = call(
        &app,
        "POST",
        "/api/v1/streams/live/dvr/reindex",
        None,
        Auth::Token,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, v) = call(
        &app,
        "POST",
        "/api/v1/streams/ort/dvr/export",
        Some(r#"{"from":1700000000,"duration":60,"file":"ort/a.mp4"}"#),
        Auth::Token,
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["state"], "queued", "{v}");
    assert_eq!(v["file"], "ort/a.mp4", "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let (s, listed) = call(&app, "GET", "/api/v1/exports", None, Auth::Token).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(listed["exports"][0], v, "{listed}");
    let (s, one) = call(
        &app,
        "GET",
        &format!("/api/v1/exports/{id}"),
        None,
        Auth::Token,
    )
    .await;
    assert_eq!((s, &one), (StatusCode::OK, &v));
    let (s, _) = call(&app, "GET", "/api/v1/exports/0badf00d", None, Auth::Token).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = call(&app, "GET", "/api/v1/exports/not-hex", None, Auth::Token).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // A stream without an archive has nothing to export.
    let (s, v) = call(
        &app,
        "POST",
        "/api/v1/streams/live/dvr/export",
        Some(r#"{"from":1700000000,"duration":60,"file":"a.mp4"}"#),
        Auth::Token,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");

    let record = |id: &str, stream: &str, opened: i64| SessionRecord {
        v: 1,
        id: id.into(),
        stream: StreamName::new(stream).unwrap(),
        ip: "10.0.0.1".into(),
        user_id: Some("u1".into()),
        protocol: "hls".into(),
        opened_at: UtcMs(opened),
        updated_at: UtcMs(opened),
        closed_at: None,
        bytes: 10,
    };
    f.sessions
        .put("bb", Bytes::from(record("bb", "ort", 2).encode()))
        .await
        .unwrap();
    f.sessions
        .put("aa", Bytes::from(record("aa", "live", 1).encode()))
        .await
        .unwrap();
    let (s, v) = call(&app, "GET", "/api/v1/sessions", None, Auth::Token).await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<_> = v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["aa", "bb"]);
    let (_, v) = call(
        &app,
        "GET",
        "/api/v1/sessions?stream=ort",
        None,
        Auth::Token,
    )
    .await;
    assert_eq!(v["sessions"].as_array().unwrap().len(), 1);
    let (s, _) = call(&app, "GET", "/api/v1/sessions?stream=..", None, Auth::Token).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let (s, doc) = call(&app, "GET", "/api/v1/openapi.json", None, Auth::Token).await;
    assert_eq!(s, StatusCode::OK);
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/streams",
        "/api/v1/streams/{name}",
        "/api/v1/streams/{name}/status",
        "/api/v1/status",
        "/api/v1/streams/{name}/dvr/enable",
        "/api/v1/streams/{name}/dvr/disable",
        "/api/v1/streams/{name}/dvr/locks",
        "/api/v1/streams/{name}/dvr/reindex",
        "/api/v1/streams/{name}/dvr/export",
        "/api/v1/sessions",
        "/flussonic/api/dvr_enable/{name}",
        "/flussonic/api/dvr_disable/{name}",
        "/flussonic/api/dvr/lock",
        "/flussonic/api/dvr/unlock",
    ] {
        assert!(paths.contains_key(p), "{p} documented");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[tokio::test]
async fn without_credentials_embedded_is_closed_unless_opted_in_and_distributed_refuses() {
    let f = fixture().await;
    let local = Some(SocketAddr::from(([127, 0, 0, 1], 5000)));
    let local6 = Some(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 5000)));
    let closed = f.service.embedded_router(ApiConfig::default());
    for client in [local, local6] {
        let (s, v, _) =
            call_from(&closed, "GET", "/api/v1/streams", None, Auth::None, client).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "not opted in: {v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("api.open_on_loopback"),
            "{v}"
        );
    }
    let open = f.service.embedded_router(ApiConfig {
        open_on_loopback: true,
        ..ApiConfig::default()
    });
    let (s, _, _) = call_from(&open, "GET", "/api/v1/streams", None, Auth::None, local).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = call_from(&open, "GET", "/api/v1/streams", None, Auth::None, local6).await;
    assert_eq!(s, StatusCode::OK);
    // An IPv4 peer on a dual-stack listener.
    let mapped = Some(SocketAddr::from((
        std::net::Ipv4Addr::LOCALHOST.to_ipv6_mapped(),
        5000,
    )));
    let (s, _, _) = call_from(&open, "GET", "/api/v1/streams", None, Auth::None, mapped).await;
    assert_eq!(s, StatusCode::OK);
    let before = f.snapshot().await;
    let remote = Some(SocketAddr::from(([192, 168, 1, 9], 5000)));
    for (method, uri, body) in every_route() {
        for client in [remote, None] {
            for app in [&open, &closed] {
                let (s, v, _) = call_from(app, method, uri, body, Auth::Token, client).await;
                assert_eq!(s, StatusCode::FORBIDDEN, "{method} {uri}");
                assert!(v["error"].as_str().unwrap().contains("api.tokens"), "{v}");
            }
        }
    }
    assert_eq!(f.snapshot().await, before);
    let e = f
        .service
        .distributed_router(ApiConfig::default())
        .unwrap_err();
    assert!(e.to_string().contains("api.tokens"), "{e}");
    assert!(f.service.distributed_router(credentials()).is_ok());
}
