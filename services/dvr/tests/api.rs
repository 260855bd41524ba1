//! The API of a real `dvr run`: `dvr ctl --url` against it, schemathesis
//! fuzzing its served OpenAPI document, the API closed (and saying so)
//! when no credentials are configured, and `dvr/disable` keeping the
//! disabled time out of the archive.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::{dvr_bin, free_tcp_port, testdata, Procs};

const TOKEN: &str = "e2e-admin-token";

/// Starts `dvr run` recording the looping clip as `ch1`, with the admin
/// token from the environment, and waits until the API answers.
fn start(dir: &Path) -> (Procs, u16) {
    let port = free_tcp_port();
    let config = dir.join("dvr.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nhttp: {{ listen: \"127.0.0.1:{port}\" }}\narchive: file://{}/archive\n\
             api: {{ tokens: [ \"${{DVR_ADMIN_TOKEN}}\" ] }}\n\
             streams:\n  ch1:\n    inputs: [ \"file://{}?loop=true\" ]\n    dvr: {{ depth: 1d }}\n",
            dir.display(),
            testdata("h264_aac_720p.ts").display()
        ),
    )
    .unwrap();
    let child = Command::new(dvr_bin())
        .args(["run", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("DVR_ADMIN_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dvr run");
    let procs = Procs(vec![child]);
    support::wait_for("the API and a live source", Duration::from_secs(30), || {
        let out = ctl(port, Some(TOKEN), &["status", "ch1", "--json"]);
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("\"source_alive\": true")
    });
    (procs, port)
}

fn ctl(port: u16, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(dvr_bin());
    cmd.args(["ctl", "--url", &format!("http://127.0.0.1:{port}")])
        .args(args)
        .env_remove("DVR_ADMIN_TOKEN");
    if let Some(t) = token {
        cmd.args(["--token", t]);
    }
    cmd.output().expect("run dvr ctl")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn dvr_ctl_over_http_against_dvr_run() {
    let dir = tempfile::tempdir().unwrap();
    let (_procs, port) = start(dir.path());

    let streams = ok(&ctl(port, Some(TOKEN), &["streams"]));
    assert!(streams.starts_with("STREAM"), "{streams}");
    assert!(
        streams.contains("ch1") && streams.contains("1d"),
        "{streams}"
    );
    let status = ok(&ctl(port, Some(TOKEN), &["status"]));
    let row = status
        .lines()
        .find(|l| l.starts_with("ch1"))
        .expect(&status);
    assert!(
        row.split_whitespace()
            .take(5)
            .eq(["ch1", "yes", "yes", "yes", "yes"]),
        "{status}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&ctl(port, Some(TOKEN), &["status", "ch1", "--json"]))).unwrap();
    assert!(
        json["streams"][0]["bitrate_bps"].as_u64().unwrap() > 0,
        "{json}"
    );

    let out = ok(&ctl(
        port,
        Some(TOKEN),
        &[
            "lock",
            "--stream",
            "ch1",
            "--from",
            "1700000000",
            "--duration",
            "1h",
        ],
    ));
    assert!(out.contains("1700000000  3600"), "{out}");
    let json: serde_json::Value = serde_json::from_str(&ok(&ctl(
        port,
        Some(TOKEN),
        &["locks", "--stream", "ch1", "--json"],
    )))
    .unwrap();
    assert_eq!(
        json["locks"],
        serde_json::json!([{"from": 1_700_000_000, "duration": 3600}])
    );
    // The lock is in the archive, where retention reads it.
    let file = std::fs::read_to_string(dir.path().join("archive/ch1/locks.json")).unwrap();
    assert!(file.contains("1700000000"), "{file}");
    let unlock = [
        "unlock",
        "--stream",
        "ch1",
        "--from",
        "1700000000",
        "--duration",
        "3600",
    ];
    ok(&ctl(port, Some(TOKEN), &unlock));
    let again = ctl(port, Some(TOKEN), &unlock);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("404"),
        "{again:?}"
    );
    let sessions = ok(&ctl(port, Some(TOKEN), &["sessions", "--json"]));
    assert!(sessions.contains("\"sessions\""), "{sessions}");

    for token in [None, Some("wrong")] {
        let out = ctl(
            port,
            token,
            &[
                "lock",
                "--stream",
                "ch1",
                "--from",
                "1700000000",
                "--duration",
                "60",
            ],
        );
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("401"),
            "{out:?}"
        );
    }
    assert!(
        !dir.path().join("archive/ch1/locks.json").exists()
            || !std::fs::read_to_string(dir.path().join("archive/ch1/locks.json"))
                .unwrap()
                .contains("1700000000"),
        "refused requests changed nothing"
    );
    // Playback stays open on the same port.
    let (status, _) = support::get(port, "/ch1/index.m3u8");
    assert_eq!(status, 200);
}

/// Without `api:` credentials and without the opt-in, `dvr run` logs once
/// that the API is closed, and refuses even a direct local request (403,
/// saying what to configure), while playback answers on the same port.
#[test]
fn without_credentials_the_api_is_closed_and_dvr_run_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_tcp_port();
    let config = dir.path().join("dvr.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nhttp: {{ listen: \"127.0.0.1:{port}\" }}\narchive: file://{}/archive\nstreams: {{}}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let log = dir.path().join("stderr.log");
    let child = Command::new(dvr_bin())
        .args(["run", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start dvr run");
    let procs = Procs(vec![child]);
    support::wait_for("the HTTP port", Duration::from_secs(30), || {
        support::get(port, "/healthz").0 == 200
    });
    // Host: localhost from 127.0.0.1, JSON: everything the opt-in would admit.
    for (method, path, body) in [
        ("GET", "/api/v1/streams", ""),
        (
            "POST",
            "/api/v1/streams/new",
            r#"{"inputs":["udp://239.0.0.9:1"]}"#,
        ),
    ] {
        let (status, _, body) = support::send(port, method, path, body);
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert!(
            body.contains("api.tokens") && body.contains("api.open_on_loopback"),
            "{body}"
        );
    }
    drop(procs);
    let log = std::fs::read_to_string(&log).unwrap();
    let closed = log
        .lines()
        .filter(|l| l.contains("api: closed until credentials are set"))
        .count();
    assert_eq!(closed, 1, "logged once at start:\n{log}");
}

/// schemathesis from PyPI (installed by `make test-deps`), every check,
/// bounded in examples and time, against the served document.
#[test]
fn schemathesis_finds_no_server_error_or_schema_violation() {
    let tools = std::env::var("DVR_TOOLS_DIR").map_or_else(
        |_| Path::new(&std::env::var("HOME").unwrap()).join(".cache/dvr/tools"),
        std::path::PathBuf::from,
    );
    let st = tools.join("schemathesis-venv/bin/st");
    assert!(
        st.exists(),
        "{} is missing: run `make test-deps`",
        st.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let (_procs, port) = start(dir.path());
    let out = Command::new(&st)
        .arg("run")
        .arg(format!("http://127.0.0.1:{port}/api/v1/openapi.json"))
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--checks", "all"])
        // A schema cannot say which strings are valid input URLs or
        // existing streams, so "schema-valid data must be accepted" does
        // not hold for this API; every other check runs.
        .args(["--exclude-checks", "positive_data_acceptance"])
        .args([
            "--max-examples",
            "25",
            "--seed",
            "7",
            "--max-time",
            "90",
            "--no-shrink",
        ])
        // One worker: with two, Hypothesis (inside schemathesis) sometimes
        // fails its own lambda introspection across threads ("AST
        // constructor recursion depth mismatch"), a tool error, not ours.
        .args(["--workers", "1"])
        .env("NO_COLOR", "1")
        // Its cache and reports go to the scratch directory, not the clone.
        .current_dir(dir.path())
        .output()
        .expect("run schemathesis");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("passed") || report.contains("No issues found"),
        "{report}"
    );
}

/// `POST /api/v1/streams/ch1/dvr/{what}` with the admin token.
fn switch_dvr(port: u16, what: &str) {
    let (status, _, body) = support::send_with(
        port,
        "POST",
        &format!("/api/v1/streams/ch1/dvr/{what}"),
        &format!("Authorization: Bearer {TOKEN}\r\n"),
        "",
    );
    assert_eq!(status, 200, "{what}: {}", String::from_utf8_lossy(&body));
}

#[test]
fn disabled_recording_is_a_gap_in_the_archive_and_enabling_resumes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut procs, port) = start(dir.path());
    support::let_run(Duration::from_secs(8));
    switch_dvr(port, "disable");
    let disabled_at = support::wall_clock_ms();
    support::let_run(Duration::from_secs(14));
    switch_dvr(port, "enable");
    let enabled_at = support::wall_clock_ms();
    support::let_run(Duration::from_secs(8));
    // SIGTERM: the recorder writes its open window, so the archive holds
    // everything it was asked to keep.
    let pid = procs.0[0].id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(procs.0[0].wait().unwrap().success());

    let uri: dvr_storage::StorageUri = format!("file://{}/archive", dir.path().display())
        .parse()
        .unwrap();
    let storage = dvr_storage::resolve(&uri, &dvr_storage::StorageConfig::default()).unwrap();
    let store = dvr_archive::store::ArchiveStore::new(storage);
    let stream: dvr_common::StreamName = "ch1".parse().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(store.load(&stream)).unwrap();
    let ranges = store.ranges(&stream, dvr_common::UtcMs(0), dvr_common::UtcMs(i64::MAX));
    assert_eq!(ranges.len(), 2, "recorded, disabled, recorded: {ranges:?}");
    let (before, after) = (ranges[0], ranges[1]);
    // The archive stops within a segment (2 s) or so of the disable and
    // starts again within a segment of the enable; nothing of the 14 s
    // between is archived.
    assert!(
        (before.to.0 - disabled_at).abs() < 4_000,
        "recording stopped at {} for a disable at {disabled_at}",
        before.to.0
    );
    assert!(
        after.from.0 >= enabled_at - 4_000 && after.from.0 - enabled_at < 6_000,
        "recording resumed at {} for an enable at {enabled_at}",
        after.from.0
    );
    assert!(after.from.0 - before.to.0 > 8_000, "{ranges:?}");
}
