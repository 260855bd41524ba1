//! The auth service over the bus: `serve` answers `dvr.v1.auth.check` and
//! `dvr.v1.auth.usage`, `BusAuthorizer` asks, on the embedded hub and on a
//! real nats-server, with two auth replicas sharing the sessions bucket.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dvr_auth::securetoken::sign;
use dvr_auth::{list_sessions, serve, Engine};
use dvr_bus::{Authorizer, BusAuthorizer};
use dvr_bus::{BusError, Kv, MemoryKv, MemoryRequests, NatsBus, NatsConfig, Requester, Responder};
use dvr_common::config::PolicyReads;
use dvr_common::{Config, ErrorKind, StreamName, SystemClock};
use dvr_proto::{
    AuthDecision, AuthRequest, SessionBytes, SessionUsage, AUTH_CHECK_SUBJECT, AUTH_USAGE_SUBJECT,
    PROTO_VERSION, SESSIONS_KV_BUCKET,
};
use dvr_testkit::nats::NatsServer;

const CONFIG: &str = "version: 1\nstreams:\n  news: { inputs: [ \"udp://239.0.0.1:1\" ], auth: \"securetoken://K\" }\n  free: { inputs: [ \"udp://239.0.0.1:2\" ] }\n";

/// Two auth replicas (`responders`) answer `requester`; both mirror their
/// sessions into `sessions`.
async fn exercise(
    name: &str,
    requester: Arc<dyn Requester>,
    responders: [Arc<dyn Responder>; 2],
    sessions: Arc<dyn Kv>,
) {
    let config = Config::from_yaml_str(CONFIG, "t.yaml").unwrap();
    for responder in responders {
        let engine = Engine::new(&config, Arc::new(SystemClock), Some(Arc::clone(&sessions)));
        tokio::spawn(async move { serve(engine, responder.as_ref()).await });
    }
    let auth = BusAuthorizer::new(&config, Arc::clone(&requester), Duration::from_secs(5));
    assert!(auth.protects("news") && !auth.protects("free"), "[{name}]");
    assert_eq!(auth.reads("news"), Some(PolicyReads::NONE), "[{name}]");
    assert_eq!(auth.reads("free"), None, "[{name}]");
    let now = SystemClock.now_secs();
    let token = sign("K", false, "news", "192.0.2.1", "salt", now - 5, now + 60);
    let ask = |token: &str| AuthRequest {
        v: PROTO_VERSION,
        stream: StreamName::new("news").unwrap(),
        ip: "192.0.2.1".into(),
        token: token.into(),
        user_agent: None,
        referer: None,
        protocol: "hls".into(),
    };
    // The service may still be subscribing: retry while nobody answers.
    let first = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match auth.check(&ask(&token)).await {
                Err(BusError::NoResponders { .. }) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    })
    .await
    .expect("the service comes up")
    .unwrap();
    assert_eq!(
        first.decision,
        AuthDecision::Allow,
        "[{name}] {}",
        first.reason
    );
    let bad = auth.check(&ask("forged")).await.unwrap();
    assert_eq!(bad.decision, AuthDecision::Deny, "[{name}]");

    // Usage: the queue group spreads the reports over both replicas, one
    // of which never saw the session; every byte lands in its record.
    let session = first.session.clone();
    let recorded = |want: u64| {
        let sessions = Arc::clone(&sessions);
        let session = session.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    let listed = list_sessions(sessions.as_ref()).await.unwrap();
                    match listed.iter().find(|r| r.id == session) {
                        Some(r) if r.bytes == want => return,
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            })
            .await
        }
    };
    recorded(0)
        .await
        .unwrap_or_else(|_| panic!("[{name}] the opened session is recorded"));
    for _ in 0..20 {
        let usage = SessionUsage {
            v: PROTO_VERSION,
            sessions: vec![SessionBytes {
                session: session.clone(),
                bytes: 1000,
            }],
        };
        auth.report_usage(&usage).await.unwrap();
    }
    recorded(20_000)
        .await
        .unwrap_or_else(|_| panic!("[{name}] 20 reports of 1000 bytes make 20000 in the record"));

    // Malformed requests get a clear error, not silence.
    for (subject, body) in [
        (AUTH_CHECK_SUBJECT, &b"{}"[..]),
        (AUTH_USAGE_SUBJECT, &b"{\"v\":1}"[..]),
    ] {
        let err = requester
            .request(subject, Bytes::from_static(body), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                BusError::Remote {
                    kind: ErrorKind::BadRequest,
                    ..
                }
            ),
            "[{name}] {subject}: {err:?}"
        );
    }
}

trait NowSecs {
    fn now_secs(&self) -> i64;
}

impl NowSecs for SystemClock {
    fn now_secs(&self) -> i64 {
        dvr_common::Clock::now(self).as_secs()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_bus_carries_auth() {
    let hub = Arc::new(MemoryRequests::new());
    let sessions = Arc::new(MemoryKv::new(SESSIONS_KV_BUCKET));
    exercise("embedded", hub.clone(), [hub.clone(), hub], sessions).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_carries_auth() {
    let server = NatsServer::start().await;
    let connect = || async {
        NatsBus::connect(NatsConfig::new(&server.url()))
            .await
            .unwrap()
    };
    let packager = connect().await.requests();
    let (one, two) = (connect().await, connect().await);
    let sessions = Arc::new(one.kv(SESSIONS_KV_BUCKET).await.unwrap());
    exercise(
        "nats",
        Arc::new(packager),
        [Arc::new(one.requests()), Arc::new(two.requests())],
        sessions,
    )
    .await;
}
