//! Auth decisions per second for new sessions: in process (what embedded
//! mode pays) beside the same decisions asked over a real nats-server
//! (what a distributed packager pays for the first request of a session).
//! Every request is a new session with its own valid securetoken, so each
//! one is decided, none is answered from a session's cached state.
//!
//! Run by `bench/auth.sh` (`cargo bench -p dvr-auth --bench decisions`);
//! under `cargo test --all-targets` it exits at once. Environment:
//! `DVR_BENCH_DECISIONS` (default 20000) decisions per figure,
//! `DVR_BENCH_CONCURRENCY` (default 64) in flight at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dvr_auth::securetoken::sign;
use dvr_auth::{serve, Engine};
use dvr_bus::{Authorizer, BusAuthorizer};
use dvr_bus::{NatsBus, NatsConfig};
use dvr_common::{Clock, Config, StreamName, SystemClock};
use dvr_proto::{AuthDecision, AuthRequest, PROTO_VERSION};
use dvr_testkit::nats::NatsServer;
use futures::StreamExt;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `n` new-session requests for `news`, each from its own address with a
/// valid token.
fn requests(n: usize) -> Vec<AuthRequest> {
    let now = SystemClock.now().as_secs();
    (0..n)
        .map(|i| {
            let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
            AuthRequest {
                v: PROTO_VERSION,
                stream: StreamName::new("news").unwrap(),
                token: sign(
                    "K",
                    false,
                    "news",
                    &ip,
                    &format!("s{i}"),
                    now - 60,
                    now + 3600,
                ),
                ip,
                user_agent: Some("bench".into()),
                referer: None,
                protocol: "hls".into(),
            }
        })
        .collect()
}

/// Decisions per second of `auth` over `asks`, `concurrency` at a time.
async fn measure(auth: Arc<dyn Authorizer>, asks: Vec<AuthRequest>, concurrency: usize) -> f64 {
    let n = asks.len();
    let start = Instant::now();
    let allowed = futures::stream::iter(asks)
        .map(|ask| {
            let auth = Arc::clone(&auth);
            async move { auth.check(&ask).await }
        })
        .buffer_unordered(concurrency)
        .filter(|r| futures::future::ready(matches!(r, Ok(r) if r.decision == AuthDecision::Allow)))
        .count()
        .await;
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(allowed, n, "every decision must be an allow");
    n as f64 / secs
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n = env("DVR_BENCH_DECISIONS", 20_000);
    let concurrency = env("DVR_BENCH_CONCURRENCY", 64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = Config::from_yaml_str(
            "version: 1\nstreams:\n  news: { inputs: [ \"udp://239.0.0.1:1\" ], auth: \"securetoken://K\" }\n",
            "bench.yaml",
        )
        .unwrap();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let local = Engine::new(&config, Arc::clone(&clock), None);
        let in_process = measure(Arc::new(local), requests(n), concurrency).await;

        let server = NatsServer::start().await;
        let connect = || async {
            NatsBus::connect(NatsConfig::new(&server.url()))
                .await
                .unwrap()
                .requests()
        };
        let (packager, service) = (connect().await, connect().await);
        let engine = Engine::new(&config, clock, None);
        tokio::spawn(async move { serve(engine, &service).await });
        let bus = Arc::new(BusAuthorizer::new(
            &config,
            Arc::new(packager),
            Duration::from_secs(10),
        ));
        // Wait for the service's subscription before timing.
        let warm = requests(1).pop().unwrap();
        let started = Instant::now();
        while bus.check(&warm).await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "auth service never answered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let over_nats = measure(bus, requests(n), concurrency).await;
        println!("auth decisions/s, new sessions ({n} securetoken checks, {concurrency} in flight):");
        println!("  {:<28} {:>10.0}", "in process (embedded)", in_process);
        println!("  {:<28} {:>10.0}", "over nats-server (distributed)", over_nats);
    });
}
