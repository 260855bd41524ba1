//! The packager's authorization layer with the real auth engine: nothing
//! of a protected stream without an allow, tokens carried into segment
//! URIs, one decision per session, and open sessions surviving an auth
//! service that went away. Two services together, so the test is the
//! binary's, which composes them (no service crate depends on another,
//! not even for tests).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::{to_bytes, Body};
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use dvr_archive::tape::StreamTape;
use dvr_auth::securetoken::sign;
use dvr_auth::Engine;
use dvr_bus::Authorizer;
use dvr_bus::{BusError, SegmentLog, SegmentLogOptions};
use dvr_common::config::{HttpConfig, IpNet};
use dvr_common::{Config, SimulatedClock, UtcMs};
use dvr_edge::Edge;
use dvr_packager::{Gate, Packager, PackagerConfig};
use dvr_proto::{AuthReply, AuthRequest, SessionUsage};
use dvr_testkit::fixtures::{segment, T0_MS};
use tower::ServiceExt;

/// The real engine, counted, and able to play an unreachable service.
#[derive(Debug)]
struct Counted {
    engine: Engine,
    calls: AtomicUsize,
    down: AtomicBool,
}

#[async_trait]
impl Authorizer for Counted {
    fn set_policies(&self, config: &Config) {
        self.engine.set_policies(config);
    }

    fn reads(&self, stream: &str) -> Option<dvr_common::config::PolicyReads> {
        self.engine.reads(stream)
    }

    async fn check(&self, request: &AuthRequest) -> Result<AuthReply, BusError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(BusError::NoResponders {
                subject: dvr_proto::AUTH_CHECK_SUBJECT.into(),
            });
        }
        Ok(self.engine.check(request).await)
    }

    async fn report_usage(&self, usage: &SessionUsage) -> Result<(), BusError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(BusError::NoResponders {
                subject: dvr_proto::AUTH_USAGE_SUBJECT.into(),
            });
        }
        self.engine.record_usage(usage);
        Ok(())
    }
}

struct Setup {
    router: axum::Router,
    auth: Arc<Counted>,
    gate: Arc<Gate>,
    _dir: tempfile::TempDir,
}

/// 2026-11-21T14:00:00Z, where the tape starts, in seconds.
const T0: i64 = T0_MS / 1000;
const NOW_MS: i64 = T0_MS + 41_000;

/// The packager with a securetoken stream `ort` and an open `free`,
/// behind the HTTP edge, which believes `X-Forwarded-For` from
/// `trusted_proxy` only.
fn setup(trusted_proxy: Option<&str>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SimulatedClock::new(UtcMs(NOW_MS)));
    let config = Config::from_yaml_str(
        "version: 1\nauth_backends:\n  nobots: { deny: { ua: [ \"BadBot\" ] }, default: allow }\nstreams:\n  ort: { inputs: [ \"udp://239.0.0.1:1\" ], auth: \"securetoken://K\" }\n  free: { inputs: [ \"udp://239.0.0.1:2\" ] }\n  tv: { inputs: [ \"udp://239.0.0.1:3\" ], auth: \"auth://nobots\" }\n",
        "t.yaml",
    )
    .unwrap();
    let auth = Arc::new(Counted {
        engine: Engine::new(&config, clock.clone(), None),
        calls: AtomicUsize::new(0),
        down: AtomicBool::new(false),
    });
    let gate = Arc::new(Gate::new(auth.clone()));
    let packager =
        Arc::new(Packager::new(PackagerConfig::default(), clock).with_auth(Arc::clone(&gate)));
    for name in ["ort", "free", "tv"] {
        let log = Arc::new(
            SegmentLog::open(dir.path().join(name), SegmentLogOptions::default()).unwrap(),
        );
        for seq in 0..10 {
            log.append(
                &segment(seq)
                    .on_tape_from(T0_MS)
                    .discontinuity(seq == 0)
                    .sync_bytes(188 * (seq as usize + 1))
                    .build(),
            )
            .unwrap();
        }
        packager.add_stream(StreamTape::new(name, log, None));
    }
    let http = HttpConfig {
        trusted_proxies: trusted_proxy
            .map(|p| IpNet::parse(p).unwrap())
            .into_iter()
            .collect(),
        ..HttpConfig::default()
    };
    Setup {
        router: Edge::new(&http).wrap(packager.router()),
        auth,
        gate,
        _dir: dir,
    }
}

fn token_for(ip: &str) -> String {
    let now = NOW_MS / 1000;
    sign("K", false, "ort", ip, "salt", now - 60, now + 3600)
}

async fn get_from(
    s: &Setup,
    peer: Option<&str>,
    uri: &str,
    xff: Option<&str>,
) -> (StatusCode, String) {
    let mut request = Request::get(uri);
    if let Some(xff) = xff {
        request = request.header("X-Forwarded-For", xff);
    }
    let mut request = request.body(Body::empty()).unwrap();
    if let Some(peer) = peer {
        let addr: SocketAddr = format!("{peer}:40000").parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(addr));
    }
    let response = s.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn status_with_agent(s: &Setup, uri: &str, agent: &str) -> StatusCode {
    let mut request = Request::get(uri)
        .header("User-Agent", agent)
        .body(Body::empty())
        .unwrap();
    let addr: SocketAddr = "192.0.2.1:40000".parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(addr));
    s.router.clone().oneshot(request).await.unwrap().status()
}

/// An allow is reused only for requests that agree on what it was decided
/// on: a User-Agent a `deny ua` rule names is refused after another one
/// opened the session, and a policy that reads no User-Agent is not asked
/// again for a new one.
#[tokio::test]
async fn a_denied_user_agent_after_an_allowed_one_is_denied() {
    let s = setup(None);
    let uri = "/tv/index.m3u8?token=t1";
    assert_eq!(
        status_with_agent(&s, uri, "Player/1.0").await,
        StatusCode::OK
    );
    assert_eq!(
        status_with_agent(&s, uri, "BadBot/1.0").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status_with_agent(&s, uri, "Player/1.0").await,
        StatusCode::OK
    );

    let token = token_for("192.0.2.1");
    let uri = format!("/ort/index.m3u8?token={token}");
    assert_eq!(
        status_with_agent(&s, &uri, "Player/1.0").await,
        StatusCode::OK
    );
    let asked = s.auth.calls.load(Ordering::SeqCst);
    assert_eq!(
        status_with_agent(&s, &uri, "Other/2.0").await,
        StatusCode::OK
    );
    assert_eq!(
        s.auth.calls.load(Ordering::SeqCst),
        asked,
        "securetoken reads no User-Agent: one answer serves both"
    );
}

#[tokio::test]
async fn nothing_of_a_protected_stream_without_an_allow() {
    let s = setup(None);
    let ip = "192.0.2.1";
    let token = token_for(ip);
    let forged = token.replace("salt", "sa1t");
    for uri in [
        "/ort/index.m3u8".to_owned(),
        format!("/ort/index.m3u8?token={forged}"),
        format!("/ort/mpegts?token={forged}"),
        "/ort/recording_status.json".to_owned(),
        format!("/ort/archive-{T0}-10.ts"),
        format!("/ort/archive-{T0}-10.m3u8?token=nope"),
        // The fMP4 forms sit behind the same gate.
        "/ort/index.mpd".to_owned(),
        format!("/ort/archive-{T0}-10.fmp4.m3u8?token={forged}"),
        format!("/ort/tracks-1/frag-{}.m4s", T0 * 90_000),
        format!("/ort/init-{}-0123456789abcdef.mp4", T0 * 90_000),
        // So do the MP4 export and the pictures.
        format!("/ort/archive-{T0}-10.mp4?timelapse=5"),
        "/ort/2026/11/21/14/00/03-preview.mp4".to_owned(),
        format!("/ort/2026/11/21/14/00/03-preview.jpg?token={forged}"),
        "/ort/2026/11/21/14/00/03.jpg".to_owned(),
        "/ort/preview.jpg".to_owned(),
    ] {
        let (status, body) = get_from(&s, Some(ip), &uri, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{uri}");
        assert_eq!(body, "403 Forbidden\n", "{uri}: the body says nothing more");
    }
    // Another address cannot use the token.
    let (status, _) = get_from(
        &s,
        Some("192.0.2.2"),
        &format!("/ort/index.m3u8?token={token}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, playlist) = get_from(
        &s,
        Some(ip),
        &format!("/ort/index.m3u8?token={token}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{playlist}");
    let uris: Vec<&str> = playlist
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert!(!uris.is_empty());
    for uri in &uris {
        assert!(
            uri.ends_with(&format!("?token={token}")),
            "{uri} carries the token"
        );
    }
    let segment = format!("/ort/{}", uris[0]);
    assert_eq!(
        get_from(&s, Some(ip), &segment, None).await.0,
        StatusCode::OK
    );
    let bare = segment.split('?').next().unwrap();
    assert_eq!(
        get_from(&s, Some(ip), bare, None).await.0,
        StatusCode::FORBIDDEN
    );

    // An open stream needs nothing, and no request reaches auth for it.
    let before = s.auth.calls.load(Ordering::SeqCst);
    assert_eq!(
        get_from(&s, Some(ip), "/free/index.m3u8", None).await.0,
        StatusCode::OK
    );
    assert_eq!(s.auth.calls.load(Ordering::SeqCst), before);
    // Without a peer address (no connect info) nothing is served.
    let (status, _) = get_from(&s, None, &format!("/ort/index.m3u8?token={token}"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_cached_allow_asks_nobody() {
    let s = setup(None);
    let ip = "192.0.2.1";
    let uri = format!("/ort/index.m3u8?token={}", token_for(ip));
    for _ in 0..20 {
        assert_eq!(get_from(&s, Some(ip), &uri, None).await.0, StatusCode::OK);
    }
    assert_eq!(
        s.auth.calls.load(Ordering::SeqCst),
        1,
        "one decision per session"
    );
}

/// The auth service goes away: a session that was allowed keeps playing
/// when its cached allow runs out, a new one is refused with 503.
#[tokio::test(start_paused = true)]
async fn open_sessions_outlive_an_unreachable_auth_service() {
    let s = setup(None);
    let ip = "192.0.2.1";
    let uri = format!("/ort/index.m3u8?token={}", token_for(ip));
    assert_eq!(get_from(&s, Some(ip), &uri, None).await.0, StatusCode::OK);
    s.auth.down.store(true, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(181)).await;
    assert_eq!(get_from(&s, Some(ip), &uri, None).await.0, StatusCode::OK);
    assert_eq!(
        s.auth.calls.load(Ordering::SeqCst),
        2,
        "asked once the allow ran out"
    );
    let other = "192.0.2.9";
    let new = format!("/ort/index.m3u8?token={}", token_for(other));
    assert_eq!(
        get_from(&s, Some(other), &new, None).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn forwarded_for_counts_only_when_trusted() {
    let ip = "192.0.2.1";
    let uri = format!("/ort/index.m3u8?token={}", token_for(ip));
    let untrusted = setup(None);
    let (status, _) = get_from(&untrusted, Some("127.0.0.1"), &uri, Some(ip)).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a client cannot claim an address"
    );
    let trusted = setup(Some("127.0.0.1"));
    let (status, _) = get_from(
        &trusted,
        Some("127.0.0.1"),
        &uri,
        Some(&format!("203.0.113.5, {ip}")),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the rightmost address the trusted proxy names is the client"
    );
}

/// The bytes of what a session was served, as the client got it, land in
/// its record; a report that cannot be delivered loses none of them.
#[tokio::test(start_paused = true)]
async fn sessions_count_the_bytes_they_served() {
    let s = setup(None);
    let ip = "192.0.2.1";
    let token = token_for(ip);
    let bytes_of = |s: &Setup| {
        let sessions = s.auth.engine.sessions();
        assert_eq!(sessions.len(), 1, "{sessions:?}");
        sessions[0].bytes
    };
    let mut served = 0u64;
    for uri in [
        format!("/ort/index.m3u8?token={token}"),
        format!("/ort/archive-{T0}-10.ts?token={token}"),
    ] {
        let (status, body) = get_from(&s, Some(ip), &uri, None).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert!(!body.is_empty());
        served += body.len() as u64;
    }
    // A stream without a policy has no session to count into.
    assert_eq!(
        get_from(&s, Some(ip), "/free/index.m3u8", None).await.0,
        StatusCode::OK
    );
    assert_eq!(bytes_of(&s), 0, "nothing reported yet");

    s.auth.down.store(true, Ordering::SeqCst);
    s.gate.report_usage().await;
    assert_eq!(bytes_of(&s), 0, "the report did not arrive");
    s.auth.down.store(false, Ordering::SeqCst);
    s.gate.report_usage().await;
    assert_eq!(bytes_of(&s), served, "kept and sent with the next report");

    // The gate reports on its own, every ten seconds.
    let (_, body) = get_from(
        &s,
        Some(ip),
        &format!("/ort/index.m3u8?token={token}"),
        None,
    )
    .await;
    served += body.len() as u64;
    for _ in 0..12 {
        tokio::time::advance(Duration::from_secs(1)).await;
        tokio::task::yield_now().await;
    }
    assert_eq!(bytes_of(&s), served);
}
