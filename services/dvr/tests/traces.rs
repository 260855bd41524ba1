//! OTLP export of a real `dvr run`: with `OTEL_EXPORTER_OTLP_ENDPOINT` set,
//! a playback request carrying a W3C `traceparent` becomes a span of that
//! trace, posted as OTLP/HTTP protobuf to `/v1/traces`, and the play
//! authorization it needed (the stream has a securetoken policy) is a
//! span of the same trace.
//!
//! The receiving end is a bare HTTP listener in this test that records
//! what is posted (no OpenTelemetry collector can be installed here); the
//! check is on the bytes: the caller's trace id must be in the export.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use dvr_auth::securetoken::sign;
use support::{dvr_bin, free_tcp_port, get, testdata, wait_for, write_config, Procs};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
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

#[test]
fn a_playback_request_is_exported_as_a_span_of_the_callers_trace() {
    let collector = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", collector.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in collector.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || serve(conn, &tx));
        }
    });

    let dir = tempfile::tempdir().unwrap();
    let http = free_tcp_port();
    let clip = testdata("h264_aac_720p.ts");
    let config = write_config(
        dir.path(),
        http,
        &[format!("file://{}?loop=true", clip.display())],
    );
    // Every stream protected, by the global default.
    let mut yaml = std::fs::read_to_string(&config).unwrap();
    yaml.push_str(&format!("auth: \"securetoken://{KEY}\"\n"));
    std::fs::write(&config, yaml).unwrap();
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
    let mut conn = TcpStream::connect(("127.0.0.1", http)).unwrap();
    write!(
        conn,
        "GET /ch1/recording_status.json?token={token} HTTP/1.0\r\nHost: localhost\r\n\
         traceparent: 00-{TRACE_ID}-00f067aa0ba902b7-01\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).unwrap();
    assert!(answer.starts_with(b"HTTP/1.0 200"), "allowed");

    // The request is the only traced work, so every span posted with the
    // caller's trace id is one of its spans.
    let trace_id = hex(TRACE_ID);
    let has = |body: &[u8], what: &[u8]| body.windows(what.len()).any(|w| w == what);
    let (mut playback, mut auth) = (false, false);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !(playback && auth) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let (path, content_type, body) = rx.recv_timeout(left).unwrap_or_else(|_| {
            panic!(
                "within 20 s, spans of the caller's trace: playback {playback}, auth.check {auth}"
            )
        });
        assert_eq!(path, "/v1/traces", "OTLP/HTTP posts spans to /v1/traces");
        assert_eq!(content_type, "application/x-protobuf");
        if has(&body, &trace_id) {
            playback |= has(&body, b"playback");
            auth |= has(&body, b"auth.check");
        }
    }
}
