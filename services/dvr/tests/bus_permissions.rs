//! The closed bus, on a real nats-server running the `authorization` (and
//! `tls`) blocks `dvr deploy render` writes into `nats.conf`: each service
//! is its own user; a wrong or missing password is refused at connect with
//! a line naming the user (never the secret); the internet-facing packager
//! reads the live log and the settings but cannot append, write a setting
//! or answer a play check; ingest appends and auth answers; with TLS a
//! client that trusts the CA connects and one that does not is refused.

use std::time::Duration;

use bytes::Bytes;
use dvr_bus::{
    BusError, Kv, LiveLog, NatsAuth, NatsBus, NatsConfig, NatsCredentials, NatsTls, Requester,
    Responder,
};
use dvr_common::StreamName;
use dvr_deploy::render::{nats_authorization, nats_tls, NATS_USERS};
use dvr_proto::{AUTH_CHECK_SUBJECT, AUTH_QUEUE_GROUP, STREAMS_KV_BUCKET};
use dvr_testkit::fixtures::segment;
use dvr_testkit::nats::{tls_files, NatsServer};
use futures::StreamExt;

fn password(user: &str) -> String {
    format!("pw-of-{user}")
}

/// A nats-server with the rendered users, their passwords in its
/// environment as the chart's Secret puts them there.
async fn closed_server() -> NatsServer {
    closed_server_with("").await
}

/// [`closed_server`] with `more` in its config.
async fn closed_server_with(more: &str) -> NatsServer {
    let env: Vec<(String, String)> = NATS_USERS
        .iter()
        .map(|u| {
            (
                format!("DVR_NATS_{}_PASSWORD", u.to_ascii_uppercase()),
                password(u),
            )
        })
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    NatsServer::start_with(&format!("{more}{}", nats_authorization()), &env).await
}

async fn connect(server: &NatsServer, auth: NatsAuth) -> Result<NatsBus, BusError> {
    connect_tls(server, auth, NatsTls::default()).await
}

async fn connect_tls(
    server: &NatsServer,
    auth: NatsAuth,
    tls: NatsTls,
) -> Result<NatsBus, BusError> {
    let mut config = NatsConfig::new(&server.url());
    config.credentials = NatsCredentials { auth, tls };
    // A refused write is never acknowledged: fail after 3 s, not 30.
    config.op_timeout = Duration::from_secs(3);
    NatsBus::connect(config).await
}

async fn connect_as(server: &NatsServer, user: &str) -> NatsBus {
    connect(
        server,
        NatsAuth::UserPassword {
            user: user.to_owned(),
            password: password(user),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{user}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_password_is_refused_naming_the_user_not_the_secret() {
    let server = closed_server().await;
    let wrong = connect(
        &server,
        NatsAuth::UserPassword {
            user: "packager".into(),
            password: "guessed".into(),
        },
    )
    .await
    .unwrap_err();
    let line = wrong.to_string();
    assert!(matches!(wrong, BusError::Refused { .. }), "{line}");
    assert!(
        line.contains("user packager") && !line.contains("guessed"),
        "{line}"
    );
    let none = connect(&server, NatsAuth::None).await.unwrap_err();
    assert!(matches!(none, BusError::Refused { .. }), "{none}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_packager_reads_but_cannot_append_write_settings_or_answer_play_checks() {
    let server = closed_server().await;
    let stream = StreamName::new("ch1").unwrap();
    let ingest = connect_as(&server, "ingest").await;
    let packager = connect_as(&server, "packager").await;
    let auth = connect_as(&server, "auth").await;

    // Ingest seeds a setting and appends; the packager reads both.
    let settings = ingest.kv(STREAMS_KV_BUCKET).await.unwrap();
    settings
        .put("ch1", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    let log = ingest.live_log(&stream).await.unwrap();
    log.append(&segment(0).patterned(188 * 10).build())
        .await
        .unwrap();
    let read_settings = packager.kv(STREAMS_KV_BUCKET).await.unwrap();
    assert!(read_settings.get("ch1").await.unwrap().is_some());
    let read_log = packager.live_log(&stream).await.unwrap();
    let got = read_log.get(0).await.unwrap().expect("segment 0");
    assert_eq!(got.payload, segment(0).patterned(188 * 10).build().payload);

    // Writes from the packager are refused by the server.
    assert!(read_settings
        .put("ch1", Bytes::from_static(b"{\"x\":1}"))
        .await
        .is_err());
    assert!(read_log
        .append(&segment(1).patterned(188 * 10).build())
        .await
        .is_err());
    assert_eq!(
        read_settings.get("ch1").await.unwrap().unwrap().value,
        Bytes::from_static(b"{}")
    );

    // A packager cannot answer play checks: with only it serving the
    // subject, a check has no responder; with auth serving, it is answered.
    let mut impostor = packager
        .requests()
        .serve(AUTH_CHECK_SUBJECT, AUTH_QUEUE_GROUP)
        .await
        .unwrap();
    let asked = ingest
        .requests()
        .request(
            AUTH_CHECK_SUBJECT,
            Bytes::from_static(b"{}"),
            Duration::from_secs(2),
        )
        .await;
    assert!(asked.is_err(), "the packager answered a play check");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), impostor.next())
            .await
            .is_err(),
        "a play check reached the packager"
    );
    let mut served = auth
        .requests()
        .serve(AUTH_CHECK_SUBJECT, AUTH_QUEUE_GROUP)
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Some(request) = served.next().await {
            let _ = request.reply(Bytes::from_static(b"allowed")).await;
        }
    });
    let answer = ingest
        .requests()
        .request(
            AUTH_CHECK_SUBJECT,
            Bytes::from_static(b"{}"),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
    assert_eq!(answer, Bytes::from_static(b"allowed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_a_client_trusting_the_ca_connects_and_others_are_refused() {
    let certs = tempfile::tempdir().unwrap();
    tls_files(certs.path());
    let dir = certs.path().display().to_string();
    let server = closed_server_with(&nats_tls(&dir, "")).await;
    let ingest = || NatsAuth::UserPassword {
        user: "ingest".into(),
        password: password("ingest"),
    };
    let trusting = NatsTls {
        required: true,
        ca_file: Some(certs.path().join("ca.crt")),
        client_cert: None,
    };
    let bus = connect_tls(&server, ingest(), trusting).await.unwrap();
    let kv = bus.kv(STREAMS_KV_BUCKET).await.unwrap();
    kv.put("ch1", Bytes::from_static(b"{}")).await.unwrap();
    // The system's roots do not know this CA: refused, not retried for
    // the whole timeout.
    let untrusting = NatsTls {
        required: true,
        ..NatsTls::default()
    };
    let refused = connect_tls(&server, ingest(), untrusting)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, BusError::Refused { .. } | BusError::Nats { .. }),
        "{refused}"
    );
    // Plain NATS to a server that requires TLS fails too.
    assert!(connect(&server, ingest()).await.is_err());
}
