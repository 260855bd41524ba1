//! `dvr run` recording to object storage, as real processes against real
//! servers `dvr_testkit` starts: s3s-fs for S3 and a one-node Swift.
//!
//! - A bucket or container that does not exist, a wrong key, an endpoint
//!   nobody listens on: `dvr run` exits non-zero at start with one line
//!   naming the stream and the URI, and the secret appears nowhere.
//! - A recording plays back from the store alone: `dvr run` is stopped
//!   (SIGTERM flushes the open copy window), its live log deleted, started
//!   again, and ffprobe reads the range.
//! - The S3 server stopped for 60 s across a copy-window boundary: the live
//!   playlist keeps going, the backlog is uploaded when the server returns,
//!   and the bucket holds every seq exactly once.
//!
//! Credentials are passed the production way: endpoints in the config file's
//! `storage:` section, secrets in the standard environment variables.
//! ffmpeg, ffprobe, s3s-fs and Swift are required: `make test-deps`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dvr_archive::store::ArchiveStore;
use dvr_common::StreamName;
use dvr_storage::{Storage, StorageUri};
use dvr_testkit::process::free_port;
use dvr_testkit::s3::{S3sFs, S3_ACCESS_KEY, S3_SECRET_KEY};
use dvr_testkit::swift::{SwiftNode, SWIFT_KEY, SWIFT_USER};
use support::{
    dvr_bin, ffprobe_duration, free_tcp_port, free_udp_port, recorded_span, start_source, text,
    wait_for, Procs,
};

const STREAM: &str = "ch1";

/// Variables `dvr run` reads for storage; the test sets the ones it means
/// and removes the rest, so the developer's own environment cannot leak in.
const STORAGE_ENV: &[&str] = &[
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "ST_AUTH",
    "ST_USER",
    "ST_KEY",
    "OS_AUTH_URL",
    "OS_USERNAME",
    "OS_PASSWORD",
    "OS_AUTH_TOKEN",
];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[allow(
    clippy::disallowed_methods,
    reason = "the test lines its outage up with the recorder's wall-clock copy windows"
)]
fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

#[allow(
    clippy::disallowed_methods,
    reason = "a plain test thread waiting for real processes; no executor to block"
)]
fn sleep(d: Duration) {
    std::thread::sleep(d);
}

/// A `dvr run` configuration for one stream recorded to `root`; `storage`
/// is the body of the `storage:` section, indented by two.
fn write_config(dir: &Path, http: u16, udp: u16, root: &str, storage: &str) -> PathBuf {
    let config = dir.join("dvr.yaml");
    let yaml = format!(
        "version: 1\nhttp: {{ listen: \"127.0.0.1:{http}\" }}\nstorage:\n{storage}\
         streams:\n  {STREAM}:\n    inputs: [ \"udp://127.0.0.1:{udp}\" ]\n    \
         dvr: {{ root: \"{root}\", depth: 1d, segment_duration: 2s, copy_interval: 1m }}\n"
    );
    std::fs::write(&config, yaml).unwrap();
    config
}

/// The `storage:` body for s3s-fs at `endpoint`: everything but the secret,
/// which goes in `AWS_SECRET_ACCESS_KEY`.
fn s3_section(endpoint: &str) -> String {
    format!(
        "  s3: {{ endpoint: \"{endpoint}\", region: us-east-1, access_key_id: {S3_ACCESS_KEY}, \
         load_default_credentials: false }}\n  \
         retry: {{ max_attempts: 2, initial_backoff_ms: 200, max_backoff_ms: 1000 }}\n"
    )
}

/// The `storage:` body for Swift's tempauth at `auth_url`; the key goes in
/// `ST_KEY`.
fn swift_section(auth_url: &str) -> String {
    format!(
        "  swift: {{ auth_url: \"{auth_url}\", user: \"{SWIFT_USER}\" }}\n  \
         retry: {{ max_attempts: 2, initial_backoff_ms: 200, max_backoff_ms: 1000 }}\n"
    )
}

/// Starts `dvr run` with these storage variables, its log in `log`.
fn start_dvr(config: &Path, data: &Path, env: &[(&str, &str)], log: &Path) -> Child {
    let mut cmd = Command::new(dvr_bin());
    cmd.args(["run", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data);
    for var in STORAGE_ENV {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()));
    cmd.spawn().expect("start dvr run")
}

/// Waits for a process that should exit by itself.
fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            start.elapsed() < limit,
            "dvr run still running after {limit:?}"
        );
        sleep(Duration::from_millis(100));
    }
}

fn sigterm(child: &mut Child) -> ExitStatus {
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    wait_exit(child, Duration::from_secs(60))
}

/// Runs `dvr run` on a config whose archive cannot be used and checks that
/// it stops at once with one line naming the stream, the URI and `expect`,
/// and that no secret appears anywhere in what it printed.
fn fails_at_start(
    config: &Path,
    env: &[(&str, &str)],
    uri: &str,
    expect: &str,
    secrets: &[&str],
) -> String {
    let dir = config.parent().unwrap();
    let log = dir.join(format!("fail-{}.log", free_port()));
    let mut child = start_dvr(config, &dir.join("data"), env, &log);
    let status = wait_exit(&mut child, Duration::from_secs(60));
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "dvr run must fail on {uri}:\n{stderr}");
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    assert!(
        last.starts_with(&format!(
            "dvr: stream {STREAM}: storage {uri} is not usable: "
        )),
        "the last line names the stream and the URI: {last:?}\n{stderr}"
    );
    assert!(last.contains(expect), "{last:?} should say {expect:?}");
    // The error itself is the last line, alone: SDK detail, if any, is
    // inside it in parentheses, never a chain of causes after it.
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("dvr:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    for secret in secrets {
        assert!(
            !stderr.contains(secret),
            "secret {secret:?} printed:\n{stderr}"
        );
    }
    last.to_owned()
}

/// Records ~15 s to `root`, stops with SIGTERM, deletes the live log,
/// starts again with the source gone, and checks with ffprobe that the range
/// in the store plays for as long as its chunk indexes say.
fn plays_back_from_the_store(
    dir: &Path,
    root: &str,
    section: &str,
    env: &[(&str, &str)],
    storage: &Arc<dyn Storage>,
) {
    let rt = runtime();
    let (http, udp) = (free_tcp_port(), free_udp_port());
    let config = write_config(dir, http, udp, root, section);
    let data = dir.join("data");
    let mut procs = Procs(vec![
        start_dvr(&config, &data, env, &dir.join("record.log")),
        start_source(udp, "testsrc2", 60),
    ]);
    wait_for("14 s of recording", Duration::from_secs(60), || {
        recorded_span(http, STREAM).is_some_and(|(from, to)| to - from >= 14)
    });
    let status = sigterm(&mut procs.0[0]);
    let log = std::fs::read_to_string(dir.join("record.log")).unwrap();
    assert!(status.success(), "exit 0 on SIGTERM, got {status}:\n{log}");
    let _ = procs.0[1].kill();
    std::fs::remove_dir_all(data.join("livelog")).unwrap();

    let stream: StreamName = STREAM.parse().unwrap();
    let store = ArchiveStore::new(Arc::clone(storage));
    let report = rt.block_on(store.load(&stream)).unwrap();
    assert!(report.chunks >= 1, "no chunk in {root}:\n{log}");
    assert!(
        report.orphans.is_empty() && report.bad.is_empty(),
        "{report:?}"
    );
    let mut records = Vec::new();
    for chunk in store.chunks(&stream) {
        records.extend(
            rt.block_on(store.index(&chunk.key))
                .unwrap()
                .records
                .clone(),
        );
    }
    let first_ms = records[0].utc_start.0;
    let end_ms = records.last().unwrap().utc_end().0;
    let indexed_ms: i64 = records.iter().map(|r| r.utc_end().0 - r.utc_start.0).sum();

    procs.0[0] = start_dvr(&config, &data, env, &dir.join("replay.log"));
    wait_for("the archive served again", Duration::from_secs(30), || {
        recorded_span(http, STREAM).is_some()
    });
    let from = first_ms / 1000;
    let duration = (end_ms + 999) / 1000 - from;
    let path = format!("/{STREAM}/archive-{from}-{duration}.m3u8");
    let playlist = text(http, &path);
    let listed = playlist
        .lines()
        .filter(|l| l.starts_with("#EXTINF"))
        .count();
    assert_eq!(
        listed,
        records.len(),
        "every indexed segment is listed:\n{playlist}"
    );
    let probed = ffprobe_duration(format!("http://127.0.0.1:{http}{path}"));
    let indexed = indexed_ms as f64 / 1000.0;
    assert!(
        (probed - indexed).abs() <= 2.0,
        "ffprobe reads {probed} s from {root}, the indexes hold {indexed} s"
    );
}

fn s3_storage(server: &S3sFs, uri: &str) -> Arc<dyn Storage> {
    let uri: StorageUri = uri.parse().unwrap();
    dvr_storage::resolve(&uri, &server.storage_config()).unwrap()
}

#[test]
fn s3_missing_bucket_wrong_secret_and_dead_endpoint_stop_dvr_run_at_start() {
    let rt = runtime();
    let server = rt.block_on(S3sFs::start(&["archive"]));
    let dir = tempfile::tempdir().unwrap();
    let secret = [("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)];
    let (http, udp) = (free_tcp_port(), free_udp_port());

    let uri = "s3://no-such-bucket/tv";
    let config = write_config(dir.path(), http, udp, uri, &s3_section(&server.endpoint()));
    fails_at_start(
        &config,
        &secret,
        uri,
        "the bucket does not exist",
        &[S3_SECRET_KEY],
    );

    let uri = "s3://archive/tv";
    let config = write_config(dir.path(), http, udp, uri, &s3_section(&server.endpoint()));
    let wrong = "wrong-secret-4c1d8e";
    fails_at_start(
        &config,
        &[("AWS_SECRET_ACCESS_KEY", wrong)],
        uri,
        "access denied",
        &[wrong, S3_SECRET_KEY],
    );

    let dead = format!("http://127.0.0.1:{}", free_port());
    let config = write_config(dir.path(), http, udp, uri, &s3_section(&dead));
    let line = fails_at_start(
        &config,
        &secret,
        uri,
        &format!("cannot reach the endpoint {dead}: "),
        &[S3_SECRET_KEY],
    );
    assert!(!line.contains("context:"), "no SDK internals: {line}");
}

#[test]
fn s3_recording_plays_back_from_the_bucket_alone() {
    let rt = runtime();
    let server = rt.block_on(S3sFs::start(&["archive"]));
    let dir = tempfile::tempdir().unwrap();
    plays_back_from_the_store(
        dir.path(),
        "s3://archive/tv",
        &s3_section(&server.endpoint()),
        &[("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)],
        &s3_storage(&server, "s3://archive/tv"),
    );
}

/// One Swift node for both checks: it takes seconds to start.
#[test]
fn swift_bad_container_and_key_stop_dvr_run_and_a_recording_plays_back() {
    let rt = runtime();
    let node = rt.block_on(SwiftNode::start());
    rt.block_on(node.create_container("archive"));
    let dir = tempfile::tempdir().unwrap();
    let section = swift_section(&node.auth_url());
    let key = [("ST_KEY", SWIFT_KEY)];
    let (http, udp) = (free_tcp_port(), free_udp_port());

    let uri = "swift://no-such-container/tv";
    let config = write_config(dir.path(), http, udp, uri, &section);
    fails_at_start(
        &config,
        &key,
        uri,
        "the container does not exist",
        &[SWIFT_KEY],
    );

    let uri = "swift://archive/tv";
    let config = write_config(dir.path(), http, udp, uri, &section);
    let wrong = "wrong-key-93ab01";
    fails_at_start(
        &config,
        &[("ST_KEY", wrong)],
        uri,
        "access denied",
        &[wrong],
    );

    let dead = format!("http://127.0.0.1:{}/auth/v1.0", free_port());
    let config = write_config(dir.path(), http, udp, uri, &swift_section(&dead));
    fails_at_start(&config, &key, uri, "cannot reach", &[SWIFT_KEY]);

    let storage = dvr_storage::resolve(&uri.parse().unwrap(), &node.storage_config()).unwrap();
    let play = dir.path().join("play");
    std::fs::create_dir_all(&play).unwrap();
    plays_back_from_the_store(&play, uri, &section, &key, &storage);
    drop(rt);
}

/// `#EXT-X-MEDIA-SEQUENCE` of the live playlist.
fn live_sequence(http: u16) -> u64 {
    let live = text(http, &format!("/{STREAM}/index.m3u8"));
    live.lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no media sequence in\n{live}"))
}

/// The S3 server is stopped for 60 s while a copy window closes. Its chunk
/// fails to upload; the live playlist keeps advancing from the live log;
/// when the server is back (same port, same data) the recorder uploads the
/// backlog in order, and after the final flush at SIGTERM every seq from the
/// first to the last is in the bucket exactly once.
#[test]
fn s3_down_for_60_s_mid_recording_loses_and_duplicates_no_segment() {
    let rt = runtime();
    let mut server = rt.block_on(S3sFs::start(&["archive"]));
    let dir = tempfile::tempdir().unwrap();
    let (http, udp) = (free_tcp_port(), free_udp_port());
    let root = "s3://archive/outage";
    let config = write_config(dir.path(), http, udp, root, &s3_section(&server.endpoint()));
    let log = dir.path().join("dvr.log");
    let mut procs = Procs(vec![
        start_dvr(
            &config,
            &dir.path().join("data"),
            &[("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)],
            &log,
        ),
        start_source(udp, "testsrc2", 300),
    ]);
    wait_for("4 s of recording", Duration::from_secs(60), || {
        recorded_span(http, STREAM).is_some_and(|(from, to)| to - from >= 4)
    });
    let (first_s, _) = recorded_span(http, STREAM).unwrap();

    // The first copy window ends at the next whole minute and is uploaded
    // 12 s later (the recorder's close grace). Stop the server up to 30 s
    // before that upload, so the 60 s outage surely contains it.
    let upload_ms = ((first_s / 60 + 1) * 60 + 12) * 1000;
    let stop_at = (upload_ms - 30_000).max(now_ms());
    sleep(Duration::from_millis(
        u64::try_from(stop_at - now_ms()).unwrap_or(0),
    ));
    server.stop();
    let seq_at_stop = live_sequence(http);
    let outage_end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < outage_end {
        sleep(Duration::from_secs(2));
        if let Some(status) = procs.0[0].try_wait().unwrap() {
            panic!("dvr run exited during the outage: {status}");
        }
    }
    let seq_at_return = live_sequence(http);
    assert!(
        seq_at_return >= seq_at_stop + 15,
        "the live playlist kept advancing: media sequence {seq_at_stop} -> {seq_at_return}"
    );
    let during = std::fs::read_to_string(&log).unwrap();
    assert!(
        during.contains("cannot copy to the archive"),
        "the upload inside the outage failed:\n{during}"
    );
    rt.block_on(server.restart());

    wait_for("the backlog uploaded", Duration::from_secs(90), || {
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("archive reachable again")
    });
    let status = sigterm(&mut procs.0[0]);
    let output = std::fs::read_to_string(&log).unwrap();
    assert!(
        status.success(),
        "exit 0 on SIGTERM, got {status}:\n{output}"
    );

    // One warning for the whole outage, not one per attempt.
    assert_eq!(
        output.matches("cannot copy to the archive").count(),
        1,
        "{output}"
    );
    // Chunks went up oldest first.
    let written: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("chunk written"))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("key=")))
        .collect();
    let mut sorted = written.clone();
    sorted.sort_unstable();
    assert_eq!(written, sorted, "uploads in order");
    assert!(written.len() >= 2, "{output}");

    // The bucket: every seq from the first to the last exactly once, in
    // order, and nothing but complete chunks.
    let stream: StreamName = STREAM.parse().unwrap();
    let storage = s3_storage(&server, root);
    let store = ArchiveStore::new(Arc::clone(&storage));
    let report = rt.block_on(store.load(&stream)).unwrap();
    assert!(
        report.orphans.is_empty() && report.bad.is_empty(),
        "{report:?}"
    );
    let chunks = store.chunks(&stream);
    assert_eq!(
        chunks.len(),
        written.len(),
        "one chunk per upload: {written:?}"
    );
    let objects = rt.block_on(storage.list(&format!("{STREAM}/"))).unwrap();
    let mut listed: Vec<String> = objects.iter().map(|o| o.key.clone()).collect();
    listed.sort();
    let mut expected: Vec<String> = chunks
        .iter()
        .flat_map(|c| [c.key.ts_key(), c.key.idx_key(), c.key.smp_key()])
        .collect();
    expected.sort();
    assert_eq!(
        listed, expected,
        "only each chunk's .ts, .idx and sample table .smp"
    );
    let mut seqs = Vec::new();
    for chunk in &chunks {
        let index = rt.block_on(store.index(&chunk.key)).unwrap();
        seqs.extend(index.records.iter().map(|r| r.seq));
    }
    let (first, last) = (seqs[0], *seqs.last().unwrap());
    assert_eq!(
        seqs,
        (first..=last).collect::<Vec<_>>(),
        "every seq once, in order, no gap"
    );
    assert!(
        seqs.len() >= 25,
        "{} segments for over 64 s of recording",
        seqs.len()
    );
}
