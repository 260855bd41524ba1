//! The engine against a real HTTP backend on loopback (an axum server in
//! the test, answering by token as a middleware would), with a simulated
//! clock for auth durations and expiry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use dvr_auth::securetoken::sign;
use dvr_auth::{list_sessions, Engine};
use dvr_bus::{Kv, MemoryKv};
use dvr_common::{Config, SimulatedClock, StreamName, UtcMs};
use dvr_proto::{AuthDecision, AuthReply, AuthRequest, PROTO_VERSION};

const T0: i64 = 1_700_000_000;
/// A hang guard, never a measurement.
const PATIENCE: Duration = Duration::from_secs(20);

/// The backend's memory: what it was asked, and whether it hangs.
#[derive(Clone, Default)]
struct Backend {
    asked: Arc<Mutex<Vec<HashMap<String, String>>>>,
    hang: Arc<AtomicBool>,
    fail: Arc<AtomicBool>,
}

impl Backend {
    fn asked_for(&self, token: &str) -> Vec<HashMap<String, String>> {
        let asked = self.asked.lock().unwrap();
        asked
            .iter()
            .filter(|q| q["token"] == token)
            .cloned()
            .collect()
    }
}

/// Answers by token: `good*` 200 (60 s), `bad*` 403, `moved` 302,
/// `broken` 500, `user-*` 200 for user `u1` limited to 2 sessions,
/// `hls-only*` 200 (60 s) for `type=hls` and 403 for any other protocol.
async fn auth(
    State(b): State<Backend>,
    Query(q): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    b.asked.lock().unwrap().push(q.clone());
    if b.hang.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    let token = q.get("token").cloned().unwrap_or_default();
    if b.fail.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, HeaderMap::new(), "");
    }
    let mut headers = HeaderMap::new();
    let status = if token.starts_with("good") {
        headers.insert("X-AuthDuration", HeaderValue::from_static("60"));
        StatusCode::OK
    } else if token.starts_with("hls-only") {
        headers.insert("X-AuthDuration", HeaderValue::from_static("60"));
        if q.get("type").map(String::as_str) == Some("hls") {
            StatusCode::OK
        } else {
            StatusCode::FORBIDDEN
        }
    } else if token.starts_with("bad") {
        headers.insert("X-AuthDuration", HeaderValue::from_static("120"));
        StatusCode::FORBIDDEN
    } else if token == "moved" {
        headers.insert(
            "Location",
            HeaderValue::from_static("http://other.example/ch"),
        );
        StatusCode::FOUND
    } else if token.starts_with("user-") {
        headers.insert("X-UserId", HeaderValue::from_static("u1"));
        headers.insert("X-Max-Sessions", HeaderValue::from_static("2"));
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    (status, headers, "")
}

async fn start_backend() -> (String, Backend) {
    let backend = Backend::default();
    let app = axum::Router::new()
        .route("/auth", axum::routing::get(auth))
        .with_state(backend.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/auth", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, backend)
}

struct Setup {
    engine: Engine,
    clock: Arc<SimulatedClock>,
    backend: Backend,
    kv: Arc<MemoryKv>,
}

/// An engine for streams `lists` (auth://main), `hooked` (the backend
/// directly), `soft` (the backend, soft limitation), `news` (securetoken)
/// and `mac` (securetoken-hmac); backends get `timeout`.
async fn setup(timeout: Duration) -> Setup {
    let (url, backend) = start_backend().await;
    let yaml = format!(
        r#"version: 1
auth_backends:
  main:
    allow: {{ ip: [ "127.0.0.1", "172.16/24" ], token: [ "flusstest1" ], ua: [ "MAG" ] }}
    deny:  {{ ip: [ "8.8.8.8", "10.10/16" ], token: [ "stolen" ], ua: [ "BadBot/1.0" ] }}
  open:
    deny: {{ ip: [ "1.1.1.1" ] }}
    default: allow
streams:
  lists:  {{ inputs: [ "udp://239.0.0.1:1" ], auth: "auth://main" }}
  opened: {{ inputs: [ "udp://239.0.0.1:2" ], auth: "auth://open" }}
  hooked: {{ inputs: [ "udp://239.0.0.1:3" ], auth: "{url}" }}
  soft:   {{ inputs: [ "udp://239.0.0.1:4" ], auth: "{url} soft_limitation=true" }}
  news:   {{ inputs: [ "udp://239.0.0.1:5" ], auth: "securetoken://SECRETKEY" }}
  mac:    {{ inputs: [ "udp://239.0.0.1:6" ], auth: "securetoken-hmac://HMACKEY" }}
  free:   {{ inputs: [ "udp://239.0.0.1:7" ] }}
"#
    );
    let config = Config::from_yaml_str(&yaml, "test.yaml").unwrap();
    let clock = Arc::new(SimulatedClock::new(UtcMs::from_secs(T0)));
    let kv = Arc::new(MemoryKv::new(dvr_proto::SESSIONS_KV_BUCKET));
    let engine = Engine::with_backend_timeout(
        &config,
        clock.clone(),
        Some(kv.clone() as Arc<dyn Kv>),
        timeout,
    );
    Setup {
        engine,
        clock,
        backend,
        kv,
    }
}

fn ask(stream: &str, ip: &str, token: &str, ua: Option<&str>) -> AuthRequest {
    AuthRequest {
        v: PROTO_VERSION,
        stream: StreamName::new(stream).unwrap(),
        ip: ip.into(),
        token: token.into(),
        user_agent: ua.map(str::to_owned),
        referer: Some("https://portal.example/".into()),
        protocol: "hls".into(),
    }
}

impl Setup {
    async fn check(&self, stream: &str, ip: &str, token: &str) -> AuthReply {
        self.check_ua(stream, ip, token, None).await
    }

    async fn check_ua(&self, stream: &str, ip: &str, token: &str, ua: Option<&str>) -> AuthReply {
        self.ask(&ask(stream, ip, token, ua)).await
    }

    async fn ask(&self, request: &AuthRequest) -> AuthReply {
        tokio::time::timeout(PATIENCE, self.engine.check(request))
            .await
            .expect("the engine answers")
    }
}

fn decision(r: &AuthReply) -> (AuthDecision, &str) {
    (r.decision, r.reason.as_str())
}

#[tokio::test]
async fn lists_decide_in_the_seeds_order() {
    let s = setup(Duration::from_secs(3)).await;
    use AuthDecision::{Allow, Deny};
    let cases = [
        ("172.16.0.77", "anything", None, Allow, "allow ip"),
        ("127.0.0.1", "", None, Allow, "allow ip"),
        ("8.8.8.8", "flusstest1", None, Allow, "allow token"),
        // A denied token beats an allowed address.
        ("127.0.0.1", "stolen", None, Deny, "deny token"),
        ("10.10.200.1", "x", Some("MAG 254"), Deny, "deny ip"),
        ("192.0.2.1", "x", Some("MAG 254"), Allow, "allow ua"),
        ("192.0.2.1", "x", Some("BadBot/1.0"), Deny, "deny ua"),
        ("192.0.2.1", "x", None, Deny, "no rule allows it"),
        ("172.16.1.1", "x", None, Deny, "no rule allows it"),
    ];
    // A session is (stream, ip, token): each case its own token.
    for (i, (ip, token, ua, want, why)) in cases.into_iter().enumerate() {
        let token = if token == "x" {
            format!("x{i}")
        } else {
            token.to_owned()
        };
        let r = s.check_ua("lists", ip, &token, ua).await;
        assert_eq!(decision(&r), (want, why), "{ip} {token:?} {ua:?}");
    }
    assert_eq!(
        decision(&s.check("opened", "192.0.2.1", "").await),
        (Allow, "allow default")
    );
    assert_eq!(
        decision(&s.check("opened", "1.1.1.1", "t").await),
        (Deny, "deny ip")
    );
    let free = s.check("free", "192.0.2.1", "").await;
    assert_eq!(decision(&free), (Allow, "no policy"));
    assert!(!s.engine.protects("free") && s.engine.protects("lists"));
}

#[tokio::test]
async fn securetoken_binds_stream_address_and_time() {
    let s = setup(Duration::from_secs(3)).await;
    for (stream, secret, hmac) in [("news", "SECRETKEY", false), ("mac", "HMACKEY", true)] {
        let ip = "192.0.2.7";
        let token = sign(secret, hmac, stream, ip, "s4lt", T0 - 10, T0 + 100);
        let ok = s.check(stream, ip, &token).await;
        assert_eq!(
            decision(&ok),
            (AuthDecision::Allow, "securetoken valid"),
            "{stream}"
        );
        assert_eq!(ok.duration_s, 101, "the allow ends with the token");
        let denied = |r: AuthReply| (r.decision, r.duration_s, r.reason);
        let sig = "securetoken signature does not match stream, address and secret";
        assert_eq!(
            denied(s.check(stream, "192.0.2.8", &token).await),
            (AuthDecision::Deny, 0, sig.into()),
            "wrong address"
        );
        let other = if stream == "news" { "mac" } else { "news" };
        assert_eq!(
            s.check(other, ip, &token).await.decision,
            AuthDecision::Deny,
            "wrong stream"
        );
        let tampered = token.replace("s4lt", "s5lt");
        assert_eq!(
            denied(s.check(stream, ip, &tampered).await).2,
            sig,
            "tampered salt"
        );
        let expired = sign(secret, hmac, stream, ip, "s4lt", T0 - 100, T0 - 1);
        assert_eq!(
            denied(s.check(stream, ip, &expired).await).2,
            "securetoken expired"
        );
        assert_eq!(denied(s.check(stream, ip, "").await).2, "no token");
    }
    // Replay after expiry: the session that was open is refused once the
    // token's endtime has passed.
    let ip = "192.0.2.7";
    let token = sign("SECRETKEY", false, "news", ip, "s4lt", T0 - 10, T0 + 100);
    s.clock.advance_ms(50_000);
    assert_eq!(
        s.check("news", ip, &token).await.decision,
        AuthDecision::Allow
    );
    s.clock.advance_ms(52_000);
    let replay = s.check("news", ip, &token).await;
    assert_eq!(
        decision(&replay),
        (AuthDecision::Deny, "securetoken expired")
    );
}

#[tokio::test]
async fn backends_allow_deny_redirect_and_keep_state_on_errors() {
    let s = setup(Duration::from_secs(3)).await;
    let ip = "192.0.2.9";
    let ok = s.check("hooked", ip, "good1").await;
    assert_eq!((ok.decision, ok.duration_s), (AuthDecision::Allow, 60));
    let q = &s.backend.asked_for("good1")[0];
    assert_eq!(
        (
            q["name"].as_str(),
            q["ip"].as_str(),
            q["request_type"].as_str(),
            q["type"].as_str()
        ),
        ("hooked", ip, "new_session", "hls")
    );
    assert_eq!(q["referer"], "https://portal.example/");
    assert_eq!(
        (q["total_clients"].as_str(), q["stream_clients"].as_str()),
        ("0", "0")
    );
    // A cached allow asks nobody.
    s.check("hooked", ip, "good1").await;
    assert_eq!(s.backend.asked_for("good1").len(), 1);
    // Its re-check when due: update_session, with the open sessions counted.
    s.clock.advance_ms(61_000);
    let r = s.check("hooked", ip, "good1").await;
    assert_eq!(
        decision(&r),
        (AuthDecision::Allow, "open session, re-check under way")
    );
    let recheck = wait_asked(&s.backend, "good1", 2).await;
    assert_eq!(recheck["request_type"], "update_session");
    assert_eq!(recheck["stream_clients"], "1");

    // A denial is cached for its X-AuthDuration: the backend is not asked again.
    let bad = s.check("hooked", ip, "bad1").await;
    assert_eq!((bad.decision, bad.duration_s), (AuthDecision::Deny, 120));
    s.clock.advance_ms(60_000);
    let again = s.check("hooked", ip, "bad1").await;
    assert_eq!(decision(&again), (AuthDecision::Deny, "denied earlier"));
    assert_eq!(s.backend.asked_for("bad1").len(), 1);

    let moved = s.check("hooked", ip, "moved").await;
    assert_eq!(moved.decision, AuthDecision::Redirect);
    assert_eq!(moved.location.as_deref(), Some("http://other.example/ch"));

    // 500 for a new session: not opened, not banned either.
    for n in 1..=2 {
        let r = s.check("hooked", ip, "broken").await;
        assert_eq!((r.decision, r.duration_s), (AuthDecision::Deny, 0));
        assert!(r.reason.contains("status 500"), "{}", r.reason);
        assert_eq!(s.backend.asked_for("broken").len(), n, "asked every time");
    }
    // No token: denied without asking.
    assert_eq!(s.check("hooked", ip, "").await.reason, "no token");
    assert!(s.backend.asked_for("").is_empty());

    // The open session's re-check: update_session, and the count of open
    // sessions in the query.
    s.clock.advance_ms(61_000);
    assert_eq!(
        s.check("hooked", ip, "good1").await.decision,
        AuthDecision::Allow
    );
    let recheck = wait_asked(&s.backend, "good1", 2).await;
    assert_eq!(recheck["request_type"], "update_session");
    assert_eq!(recheck["stream_clients"], "1");
}

async fn wait_asked(b: &Backend, token: &str, n: usize) -> HashMap<String, String> {
    tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(q) = b.asked_for(token).get(n - 1) {
                return q.clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the backend is asked")
}

/// The backend hangs after a session opened: the open session keeps
/// playing without waiting for it (the engine is given 60 s of backend
/// timeout, so an engine that waited would trip the test's guard), and a
/// new session waits only for the timeout and stays unopened.
#[tokio::test]
async fn a_hanging_backend_does_not_hold_open_sessions() {
    let s = setup(Duration::from_secs(60)).await;
    let ip = "192.0.2.10";
    assert_eq!(
        s.check("hooked", ip, "good-open").await.decision,
        AuthDecision::Allow
    );
    s.backend.hang.store(true, Ordering::SeqCst);
    s.clock.advance_ms(61_000);
    for _ in 0..3 {
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            s.engine.check(&ask("hooked", ip, "good-open", None)),
        )
        .await
        .expect("an open session is answered while the backend hangs");
        assert_eq!(r.decision, AuthDecision::Allow, "{}", r.reason);
    }
    wait_asked(&s.backend, "good-open", 2).await;
    assert_eq!(
        s.backend.asked_for("good-open").len(),
        2,
        "one re-check at a time"
    );

    let short = setup(Duration::from_millis(300)).await;
    short.backend.hang.store(true, Ordering::SeqCst);
    let r = short.check("hooked", ip, "good-new").await;
    assert_eq!(
        (r.decision, r.duration_s),
        (AuthDecision::Deny, 0),
        "{}",
        r.reason
    );
    short.backend.hang.store(false, Ordering::SeqCst);
    let r = short.check("hooked", ip, "good-new").await;
    assert_eq!(r.decision, AuthDecision::Allow, "not banned by the silence");
}

#[tokio::test]
async fn max_sessions_closes_the_oldest() {
    let s = setup(Duration::from_secs(3)).await;
    for token in ["user-a", "user-b", "user-c"] {
        assert_eq!(
            s.check("hooked", "192.0.2.1", token).await.decision,
            AuthDecision::Allow
        );
        s.clock.advance_ms(1_000);
    }
    let a = s.check("hooked", "192.0.2.1", "user-a").await;
    assert_eq!(
        decision(&a),
        (AuthDecision::Deny, "denied earlier"),
        "the oldest is closed"
    );
    for token in ["user-b", "user-c"] {
        assert_eq!(
            s.check("hooked", "192.0.2.1", token).await.decision,
            AuthDecision::Allow,
            "{token}"
        );
    }

    // Soft limitation: the excess must be seen at two checks.
    for token in ["user-a", "user-b", "user-c"] {
        assert_eq!(
            s.check("soft", "192.0.2.2", token).await.decision,
            AuthDecision::Allow
        );
        s.clock.advance_ms(1_000);
    }
    assert_eq!(
        s.check("soft", "192.0.2.2", "user-a").await.decision,
        AuthDecision::Allow,
        "one check over the limit is tolerated"
    );
    assert_eq!(
        s.check("soft", "192.0.2.2", "user-d").await.decision,
        AuthDecision::Allow
    );
    for (token, want) in [
        ("user-a", AuthDecision::Deny),
        ("user-b", AuthDecision::Deny),
        ("user-c", AuthDecision::Allow),
        ("user-d", AuthDecision::Allow),
    ] {
        assert_eq!(
            s.check("soft", "192.0.2.2", token).await.decision,
            want,
            "{token}"
        );
    }
}

#[tokio::test]
async fn sessions_are_listed_from_the_bucket() {
    let s = setup(Duration::from_secs(3)).await;
    s.check("hooked", "192.0.2.3", "user-a").await;
    s.clock.advance_ms(1_000);
    s.check("lists", "127.0.0.1", "").await;
    let listed = tokio::time::timeout(PATIENCE, async {
        loop {
            let l = list_sessions(s.kv.as_ref()).await.unwrap();
            if l.len() == 2 {
                return l;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("both sessions recorded");
    assert_eq!(listed[0].stream.as_str(), "hooked");
    assert_eq!(listed[0].user_id.as_deref(), Some("u1"));
    // The backend is sent protocol and referer: they are part of the id.
    let reads = s.engine.reads("hooked").unwrap();
    assert_eq!(
        listed[0].id,
        dvr_auth::session_id_for(&ask("hooked", "192.0.2.3", "user-a", None), reads)
    );
    assert_eq!(
        (listed[1].stream.as_str(), listed[1].ip.as_str()),
        ("lists", "127.0.0.1")
    );
    assert_eq!(s.engine.sessions().len(), 2);
    let text = format!("{listed:?}");
    assert!(!text.contains("user-a"), "tokens are not recorded: {text}");
}

/// A 500 at a re-check keeps the session open; the next re-check comes
/// soon and a 403 then closes it.
#[tokio::test]
async fn an_error_at_a_recheck_keeps_the_session() {
    let s = setup(Duration::from_secs(3)).await;
    let ip = "192.0.2.11";
    assert_eq!(
        s.check("hooked", ip, "good2").await.decision,
        AuthDecision::Allow
    );
    s.backend.fail.store(true, Ordering::SeqCst);
    s.clock.advance_ms(61_000);
    assert_eq!(
        s.check("hooked", ip, "good2").await.decision,
        AuthDecision::Allow
    );
    wait_asked(&s.backend, "good2", 2).await;
    // Wait for the engine to take the answer in: the session is no longer
    // being re-checked, its next re-check comes within seconds.
    let kept = tokio::time::timeout(PATIENCE, async {
        loop {
            let r = s.check("hooked", ip, "good2").await;
            if r.reason == "open session" {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the re-check ends");
    assert_eq!(kept.decision, AuthDecision::Allow);
    assert!(
        kept.duration_s <= 10,
        "asked again soon: {}",
        kept.duration_s
    );
}

/// Finding: a session was (stream, ip, token) only, so a User-Agent that
/// `deny ua` refuses played once an allowed one had opened the session.
#[tokio::test]
async fn a_denied_user_agent_stays_denied_after_an_allowed_one() {
    let s = setup(Duration::from_secs(3)).await;
    let (ip, token) = ("192.0.2.20", "shared-token");
    let allowed = s.check_ua("lists", ip, token, Some("MAG 254")).await;
    assert_eq!(decision(&allowed), (AuthDecision::Allow, "allow ua"));
    let denied = s.check_ua("lists", ip, token, Some("BadBot/1.0")).await;
    assert_eq!(decision(&denied), (AuthDecision::Deny, "deny ua"));
    assert_ne!(denied.session, allowed.session, "another session");
    // The allowed player keeps its session, the denied one stays denied.
    let again = s.check_ua("lists", ip, token, Some("MAG 254")).await;
    assert_eq!(decision(&again), (AuthDecision::Allow, "open session"));
    assert_eq!(again.session, allowed.session);
    let denied = s.check_ua("lists", ip, token, Some("BadBot/1.0")).await;
    assert_eq!(decision(&denied), (AuthDecision::Deny, "deny ua"));
    // No User-Agent is a field value too: no rule allows it.
    let none = s.check_ua("lists", ip, token, None).await;
    assert_eq!(decision(&none), (AuthDecision::Deny, "no rule allows it"));
}

/// Finding: a backend deciding by protocol was asked once for all
/// protocols. It is sent `type` (and `referer`), so another protocol (or
/// page) is another session and asks it again.
#[tokio::test]
async fn a_backend_is_asked_again_for_another_protocol_or_referer() {
    let s = setup(Duration::from_secs(3)).await;
    let ip = "192.0.2.21";
    let hls = ask("hooked", ip, "hls-only-1", Some("MAG"));
    let allowed = s.ask(&hls).await;
    assert_eq!(
        (allowed.decision, allowed.duration_s),
        (AuthDecision::Allow, 60)
    );
    assert_eq!(
        decision(&s.ask(&hls).await),
        (AuthDecision::Allow, "open session")
    );
    assert_eq!(
        s.backend.asked_for("hls-only-1").len(),
        1,
        "a cached allow asks nobody"
    );

    let mpegts = AuthRequest {
        protocol: "mpegts".into(),
        ..hls.clone()
    };
    let denied = s.ask(&mpegts).await;
    assert_eq!(
        decision(&denied),
        (AuthDecision::Deny, "backend denied (403)")
    );
    let asked = s.backend.asked_for("hls-only-1");
    assert_eq!(asked.len(), 2, "asked again for mpegts");
    assert_eq!(
        (asked[1]["type"].as_str(), asked[1]["request_type"].as_str()),
        ("mpegts", "new_session")
    );
    // The denial is that session's: HLS keeps playing.
    assert_eq!(
        decision(&s.ask(&hls).await),
        (AuthDecision::Allow, "open session")
    );
    assert_eq!(
        decision(&s.ask(&mpegts).await),
        (AuthDecision::Deny, "denied earlier")
    );

    // Another page is asked about too; the User-Agent, which the backend
    // is not sent, is not.
    let other_page = AuthRequest {
        referer: Some("https://elsewhere.example/".into()),
        ..hls.clone()
    };
    assert_eq!(s.ask(&other_page).await.decision, AuthDecision::Allow);
    let asked = s.backend.asked_for("hls-only-1");
    assert_eq!(asked.len(), 3, "asked again for another referer");
    assert_eq!(asked[2]["referer"], "https://elsewhere.example/");
    let other_player = AuthRequest {
        user_agent: Some("VLC".into()),
        ..hls.clone()
    };
    let r = s.ask(&other_player).await;
    assert_eq!(decision(&r), (AuthDecision::Allow, "open session"));
    assert_eq!(r.session, allowed.session);
    assert_eq!(s.backend.asked_for("hls-only-1").len(), 3);
    assert_eq!(
        s.engine.reads("hooked"),
        Some(dvr_common::config::PolicyReads {
            protocol: true,
            user_agent: false,
            referer: true
        })
    );
}

/// A securetoken reads none of User-Agent, protocol and referer: a change
/// of them is the same session, answered from its state.
#[tokio::test]
async fn a_securetoken_session_is_not_decided_again_for_fields_it_does_not_read() {
    let s = setup(Duration::from_secs(3)).await;
    let ip = "192.0.2.22";
    let token = sign("SECRETKEY", false, "news", ip, "s4lt", T0 - 10, T0 + 600);
    let first = ask("news", ip, &token, Some("MAG"));
    let opened = s.ask(&first).await;
    assert_eq!(
        decision(&opened),
        (AuthDecision::Allow, "securetoken valid")
    );
    let changed = AuthRequest {
        user_agent: Some("BadBot/1.0".into()),
        referer: None,
        protocol: "mpegts".into(),
        ..first
    };
    let r = s.ask(&changed).await;
    assert_eq!(decision(&r), (AuthDecision::Allow, "open session"));
    assert_eq!(r.session, opened.session);
    assert_eq!(s.engine.sessions().len(), 1);
    assert_eq!(
        s.engine.reads("news"),
        Some(dvr_common::config::PolicyReads::NONE)
    );
}
