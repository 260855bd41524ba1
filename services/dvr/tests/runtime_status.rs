//! What the ingest reports reaches the API over NATS, and goes with the
//! ingest: `dvr run --services ingest` and `dvr run --services api` on a
//! real nats-server, the API's stream status carrying the ingest node's
//! report (the input playing, its counters); a stopped ingest deletes its
//! report, and one killed outright leaves a report that expires with the
//! runtime bucket's max age. The API process runs no other service: the
//! tape facts (newest segment, source alive, schedule) it reads from the
//! stream's tape over NATS itself.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dvr_testkit::nats::NatsServer;
use serde_json::Value;
use support::{dvr_bin, free_tcp_port, send_with, testdata, wait_for, Procs};

const TOKEN: &str = "runtime-admin-token";

fn start(dir: &Path, config: &Path, nats: &str, services: &str, node: &str) -> (Child, u16) {
    let port = free_tcp_port();
    let child = Command::new(dvr_bin())
        .args(["run", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(dir.join(node))
        .args(["--nats", nats, "--services", services, "--node-id", node])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("DVR_ADMIN_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (child, port)
}

/// The API's status of `stream`; `Null` when the API is not up.
fn stream_status(api: u16, stream: &str) -> Value {
    let (status, _, body) = send_with(
        api,
        "GET",
        &format!("/api/v1/streams/{stream}/status"),
        &format!("Authorization: Bearer {TOKEN}\r\n"),
        "",
    );
    if status != 200 {
        return Value::Null;
    }
    serde_json::from_slice::<Value>(&body).unwrap()
}

/// The API's `ingest` of `ch1`; `Null` when absent or the API is not up.
fn ingest_report(api: u16) -> Value {
    stream_status(api, "ch1")["ingest"].clone()
}

/// A schedule of one hour that starts two hours from now (UTC), so the
/// whole test runs outside it.
fn schedule_elsewhere() -> String {
    let hour = support::wall_clock_ms()
        .div_euclid(3_600_000)
        .rem_euclid(24);
    format!("{}:00-{}:00", (hour + 2) % 24, (hour + 3) % 24)
}

#[test]
fn the_api_shows_what_the_ingest_reports_until_it_is_gone() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let nats = rt.block_on(NatsServer::start());
    let dir = tempfile::tempdir().unwrap();
    let clip = testdata("h264_aac_720p.ts");
    let config = dir.path().join("dvr.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nhttp: {{ listen: \"127.0.0.1:0\" }}\narchive: file://{}/archive\n\
             api: {{ tokens: [ \"${{DVR_ADMIN_TOKEN}}\" ] }}\n\
             streams:\n  ch1:\n    inputs: [ \"file://{clip}?loop=true\" ]\n    \
             dvr: {{ depth: 1d, segment_duration: 2s, copy_interval: 1h }}\n  \
             off-air:\n    inputs: [ \"file://{clip}?loop=true\" ]\n    \
             dvr: {{ depth: 1d, segment_duration: 2s, copy_interval: 1h, schedule: \"{}\" }}\n",
            dir.path().display(),
            schedule_elsewhere(),
            clip = clip.display()
        ),
    )
    .unwrap();
    let (api, api_port) = start(dir.path(), &config, &nats.url(), "api", "api-1");
    let (ingest, _) = start(dir.path(), &config, &nats.url(), "ingest", "ingest-1");
    let mut procs = Procs(vec![api, ingest]);

    let input = format!("file://{}?loop=true", clip.display());
    let mut seen = Value::Null;
    wait_for("the ingest's report", Duration::from_secs(40), || {
        seen = ingest_report(api_port);
        seen["input"] == input.as_str() && seen["bytes"].as_u64() > Some(0)
    });
    assert_eq!(seen["node"], "ingest-1", "{seen}");
    assert_eq!(seen["input_index"], 0, "{seen}");
    // The report is rewritten while the ingest runs.
    let first = seen["reported_at_ms"].as_i64().unwrap();
    wait_for("a newer report", Duration::from_secs(15), || {
        ingest_report(api_port)["reported_at_ms"].as_i64() > Some(first)
    });
    // The tape's facts come from the live log over NATS.
    let mut status = Value::Null;
    wait_for("ch1 recording", Duration::from_secs(20), || {
        status = stream_status(api_port, "ch1");
        status["recording"] == true
    });
    assert_eq!(
        (status["running"].clone(), status["source_alive"].clone()),
        (Value::Bool(true), Value::Bool(true)),
        "{status}"
    );
    assert!(status["last_segment"]["seq"].is_u64(), "{status}");
    assert_eq!(status["outside_schedule"], false, "{status}");
    // A stream outside its recording schedule runs, is not recorded, and
    // says why.
    wait_for("off-air's source alive", Duration::from_secs(20), || {
        status = stream_status(api_port, "off-air");
        status["source_alive"] == true
    });
    assert_eq!(
        (
            status["running"].clone(),
            status["recording"].clone(),
            status["outside_schedule"].clone()
        ),
        (Value::Bool(true), Value::Bool(false), Value::Bool(true)),
        "{status}"
    );

    // Stopped, the ingest deletes its report.
    let pid = procs.0[1].id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    procs.0[1].wait().unwrap();
    wait_for("the report deleted", Duration::from_secs(10), || {
        ingest_report(api_port).is_null()
    });

    // Killed outright, it cannot: its last report expires with the
    // bucket's max age (30 s).
    let (ingest, _) = start(dir.path(), &config, &nats.url(), "ingest", "ingest-2");
    procs.0[1] = ingest;
    wait_for("the new ingest's report", Duration::from_secs(40), || {
        ingest_report(api_port)["node"] == "ingest-2"
    });
    procs.0[1].kill().unwrap();
    procs.0[1].wait().unwrap();
    support::let_run(Duration::from_secs(10));
    assert_eq!(
        ingest_report(api_port)["node"],
        "ingest-2",
        "a killed ingest's report stays until it expires"
    );
    wait_for(
        "the report expired",
        Duration::from_secs(dvr_proto::RUNTIME_MAX_AGE_SECS + 15),
        || ingest_report(api_port).is_null(),
    );
    drop(nats);
}
