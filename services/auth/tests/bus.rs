//! The auth service over the bus: `serve` answers `dvr.v1.auth.check`,
//! `BusAuthorizer` asks, on the embedded hub and on a real nats-server.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dvr_auth::securetoken::sign;
use dvr_auth::{serve, Authorizer, BusAuthorizer, Engine};
use dvr_bus::testserver::NatsServer;
use dvr_bus::{BusError, MemoryRequests, NatsBus, NatsConfig, Requester, Responder};
use dvr_common::{Config, ErrorKind, StreamName, SystemClock};
use dvr_proto::{AuthDecision, AuthRequest, AUTH_CHECK_SUBJECT, PROTO_VERSION};

const CONFIG: &str = "version: 1\nstreams:\n  news: { inputs: [ \"udp://239.0.0.1:1\" ], auth: \"securetoken://K\" }\n  free: { inputs: [ \"udp://239.0.0.1:2\" ] }\n";

async fn exercise(name: &str, requester: Arc<dyn Requester>, responder: Arc<dyn Responder>) {
    let config = Config::from_yaml_str(CONFIG, "t.yaml").unwrap();
    let engine = Engine::new(&config, Arc::new(SystemClock), None);
    tokio::spawn(async move { serve(engine, responder.as_ref()).await });
    let auth = BusAuthorizer::new(&config, Arc::clone(&requester), Duration::from_secs(5));
    assert!(auth.protects("news") && !auth.protects("free"), "[{name}]");
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
    let err = requester
        .request(
            AUTH_CHECK_SUBJECT,
            Bytes::from_static(b"{}"),
            Duration::from_secs(5),
        )
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
        "[{name}] {err:?}"
    );
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
    exercise("embedded", hub.clone(), hub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_carries_auth() {
    let server = NatsServer::start().await;
    let connect = || async {
        NatsBus::connect(NatsConfig::new(&server.url()))
            .await
            .unwrap()
            .requests()
    };
    let (packager, service) = (connect().await, connect().await);
    exercise("nats", Arc::new(packager), Arc::new(service)).await;
}
