//! OTLP export of a real `dvr run`: with `OTEL_EXPORTER_OTLP_ENDPOINT` set,
//! a playback request carrying a W3C `traceparent` becomes a span of that
//! trace, posted as OTLP/HTTP protobuf to `/v1/traces`, and the play
//! authorization it needed (the stream has a securetoken policy) is an
//! `auth.check` span of the same trace.
//!
//! In distributed mode the trace crosses NATS: a packager request for a
//! protected stream asks the auth service over `dvr.v1.auth.check`, and
//! the auth process exports its `bus.serve` and `auth.check` spans under
//! the caller's trace id (one collector per process, so each export is known by its sender).
//!
//! The receiving end is a bare HTTP listener in this test that records
//! what is posted (no OpenTelemetry collector can be installed here); the
//! check is on the bytes: the caller's trace id and the span names must be
//! in the export.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use dvr_auth::securetoken::sign;
use dvr_testkit::nats::NatsServer;
use support::{dvr_bin, free_tcp_port, get, metric_sample, testdata, text, wait_for, Procs};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
/// The securetoken key of the protected stream `ch1`.
const KEY: &str = "trace-key";

/// One HTTP request as received: path, content type, body.
type Posted = (String, String, Vec<u8>);

/// Answers every request on `conn` with 200 and sends it to `tx`.
fn serve(conn: TcpStream, tx: &mpsc::Sender<Posted>) -> Option<()> {
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut conn = conn;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let path = line.split_whitespace().nth(1)?.to_owned();
        let (mut length, mut content_type) = (0, String::new());
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).ok()?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':')?;
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().ok()?,
                "content-type" => value.trim().clone_into(&mut content_type),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .ok()?;
        tx.send((path, content_type, body)).ok()?;
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A collector: its endpoint, and what it receives.
fn collector() -> (String, mpsc::Receiver<Posted>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || serve(conn, &tx));
        }
    });
    (endpoint, rx)
}

/// `GET path` with the caller's `traceparent`: the status.
fn traced_get(port: u16, path: &str) -> u16 {
    let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    write!(
        conn,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\n\
         traceparent: 00-{TRACE_ID}-00f067aa0ba902b7-01\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).unwrap();
    assert!(answer.starts_with(b"HTTP/1."), "an HTTP answer");
    String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Waits for an export to `rx` carrying the caller's trace id and naming
/// every one of `spans`; `who` says whose collector it is.
fn expect_trace(rx: &mpsc::Receiver<Posted>, who: &str, spans: &[&str]) {
    let trace_id = hex(TRACE_ID);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen: Vec<&str> = Vec::new();
    while seen.len() < spans.len() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let (path, content_type, body) = rx.recv_timeout(left).unwrap_or_else(|_| {
            panic!("{who}: no OTLP export of the caller's trace with spans {spans:?} within 20 s (saw {seen:?})")
        });
        assert_eq!(path, "/v1/traces", "OTLP/HTTP posts spans to /v1/traces");
        assert_eq!(content_type, "application/x-protobuf");
        if !body.windows(16).any(|w| w == trace_id.as_slice()) {
            continue;
        }
        for span in spans {
            if !seen.contains(span) && body.windows(span.len()).any(|w| w == span.as_bytes()) {
                seen.push(span);
            }
        }
    }
}

/// A playback request is a span of the caller's trace, with its play
/// authorization inside, and an archived segment's read from the store
/// shows in it: stream `fast` reads the clip
/// unpaced, so chunks are archived in a moment.
#[test]
fn a_playback_request_is_exported_as_a_span_of_the_callers_trace() {
    let (endpoint, rx) = collector();
    let dir = tempfile::tempdir().unwrap();
    let http = free_tcp_port();
    let clip = testdata("h264_aac_720p.ts");
    let config = dir.path().join("dvr.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nhttp: {{ listen: \"127.0.0.1:{http}\" }}\narchive: file://{root}/archive\n\
             streams:\n  ch1:\n    inputs: [ \"file://{clip}?loop=true\" ]\n    \
             dvr: {{ depth: 1d, segment_duration: 2s, copy_interval: 1h }}\n    \
             auth: \"securetoken://{KEY}\"\n  \
             fast:\n    inputs: [ \"file://{clip}?loop=30&pace=false\" ]\n    \
             dvr: {{ depth: 1d, segment_duration: 2s, copy_interval: 1m }}\n",
            root = dir.path().display(),
            clip = clip.display(),
        ),
    )
    .unwrap();
    let dvr = Command::new(dvr_bin())
        .args(["--log-format", "json", "run", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        // Export within a fraction of a second instead of the default 5 s.
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _procs = Procs(vec![dvr]);
    wait_for("dvr run to answer", Duration::from_secs(30), || {
        get(http, "/metrics").0 == 200
    });
    let now = dvr_common::Clock::now(&dvr_common::SystemClock).as_secs();
    let token = sign(KEY, false, "ch1", "127.0.0.1", "s", now - 60, now + 600);
    assert_eq!(
        traced_get(http, &format!("/ch1/recording_status.json?token={token}")),
        200
    );
    expect_trace(&rx, "dvr run", &["playback", "auth.check"]);

    let chunks = "dvr_recorder_chunk_uploads_total{stream=\"fast\",result=\"ok\"}";
    wait_for("chunks of stream fast", Duration::from_secs(60), || {
        metric_sample(http, chunks) >= Some(2.0)
    });
    let status: serde_json::Value =
        serde_json::from_str(&text(http, "/fast/recording_status.json")).unwrap();
    let from = status["fast"]["from"].as_i64().unwrap();
    let playlist = text(http, &format!("/fast/archive-{from}-10.m3u8"));
    let segment = playlist
        .lines()
        .find(|l| !l.starts_with('#') && l.contains(".ts"))
        .unwrap_or_else(|| panic!("no segment in\n{playlist}"));
    let path = if segment.starts_with('/') {
        segment.to_owned()
    } else {
        format!("/fast/{segment}")
    };
    assert_eq!(traced_get(http, &path), 200, "{path}");
    expect_trace(&rx, "dvr run", &["archive.read", "storage.get_range"]);
}

/// `dvr run --nats` with `services`, exporting to `endpoint`.
fn start_distributed(
    dir: &std::path::Path,
    config: &std::path::Path,
    nats: &str,
    services: &str,
    endpoint: &str,
) -> (std::process::Child, u16) {
    let port = free_tcp_port();
    let child = Command::new(dvr_bin())
        .args(["run", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(dir.join(services))
        .args([
            "--nats",
            nats,
            "--services",
            services,
            "--node-id",
            services,
        ])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (child, port)
}

#[test]
fn a_protected_request_is_one_trace_through_the_auth_service_over_nats() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let nats = rt.block_on(NatsServer::start());
    let dir = tempfile::tempdir().unwrap();
    let clip = testdata("h264_aac_720p.ts");
    let config = dir.path().join("dvr.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nhttp: {{ listen: \"127.0.0.1:0\" }}\narchive: file://{}/archive\n\
             streams:\n  ch1:\n    inputs: [ \"file://{}?loop=true\" ]\n    \
             dvr: {{ depth: 1d, segment_duration: 2s, copy_interval: 1h }}\n    \
             auth: \"securetoken://{KEY}\"\n",
            dir.path().display(),
            clip.display()
        ),
    )
    .unwrap();
    let (auth_endpoint, auth_rx) = collector();
    let (packager_endpoint, packager_rx) = collector();
    let (auth, _) = start_distributed(dir.path(), &config, &nats.url(), "auth", &auth_endpoint);
    let (packager, port) = start_distributed(
        dir.path(),
        &config,
        &nats.url(),
        "packager",
        &packager_endpoint,
    );
    let _procs = Procs(vec![auth, packager]);
    // Without a token the auth service refuses: 403 is its decision (503
    // would be the packager not reaching it yet).
    wait_for(
        "the auth service's refusal",
        Duration::from_secs(30),
        || traced_get(port, "/ch1/recording_status.json") == 403,
    );
    expect_trace(&packager_rx, "packager", &["playback", "bus.request"]);
    expect_trace(&auth_rx, "auth", &["bus.serve", "auth.check"]);
    // The packager timed its requests to auth.
    let (_, metrics) = get(port, "/metrics");
    let metrics = String::from_utf8_lossy(&metrics);
    let count = "dvr_bus_request_seconds_count{subject=\"dvr.v1.auth.check\",backend=\"nats\",result=\"ok\"} ";
    let answered = metrics
        .lines()
        .find_map(|l| l.strip_prefix(count)?.parse::<f64>().ok());
    assert!(answered >= Some(1.0), "no {count}in:\n{metrics}");
    drop(nats);
}
