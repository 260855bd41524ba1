//! RTMP publish end to end with the real `dvr run` and ffmpeg as the
//! encoder: what ffmpeg publishes is recorded (ffprobe reads H.264 + AAC of
//! the right length from the archive); a second publisher is refused while
//! the first is live and takes over once the first has been silent past
//! the idle timeout (the first stopped with SIGSTOP, as a half-open
//! connection looks); a publish to a stream with a securetoken policy is
//! refused without a valid token and recorded with one, and an encoder
//! reconnecting with its token takes its stream back at once while one
//! with another valid token is still refused.
//!
//! ffmpeg and ffprobe are required: `make test-deps` installs them.

mod support;

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use dvr_testkit::ffmpeg;

use support::{
    dvr_bin, free_tcp_port, get, let_run, segments, start_dvr_with_env, wait_for, Procs, INSTALL,
};

/// The idle timeout after which a silent publisher may be replaced
/// (`dvr_ingest::input::publish::PUBLISH_IDLE_TIMEOUT`).
const IDLE_TIMEOUT: Duration = dvr_ingest::input::publish::PUBLISH_IDLE_TIMEOUT;
const SECRET: &str = "rtmp-e2e-secret";
const KEY_VAR: &str = "DVR_RTMP_E2E_KEY";

struct Dvr {
    http: u16,
    rtmp: u16,
    dir: tempfile::TempDir,
    _procs: Procs,
}

/// `dvr run` with an RTMP listener and stream `studio` taking publishes
/// (with `auth` when given), recording in 2 s segments.
fn start(auth: Option<&str>) -> Dvr {
    let dir = tempfile::tempdir().unwrap();
    let http = free_tcp_port();
    let rtmp = free_tcp_port();
    let config = dir.path().join("dvr.yaml");
    let auth = auth.map_or(String::new(), |a| format!("    auth: \"{a}\"\n"));
    let yaml = format!(
        "version: 1\nhttp: {{ listen: \"127.0.0.1:{http}\" }}\n\
         rtmp: {{ listen: \"127.0.0.1:{rtmp}\" }}\narchive: file://{}/archive\n\
         streams:\n  studio:\n    inputs: [ \"publish://\" ]\n    \
         dvr: {{ depth: 1d, segment_duration: 2s, copy_interval: 1h }}\n{auth}",
        dir.path().display(),
    );
    std::fs::write(&config, yaml).unwrap();
    let data = dir.path().join("data");
    let procs = Procs(vec![start_dvr_with_env(
        &config,
        &data,
        &[(KEY_VAR, SECRET)],
    )]);
    wait_for("the RTMP listener", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", rtmp)).is_ok()
    });
    Dvr {
        http,
        rtmp,
        dir,
        _procs: procs,
    }
}

/// ffmpeg publishing `secs` seconds of test pattern and tone in real time
/// (H.264 with a keyframe a second, AAC) to `url`; its messages go to
/// `log`.
fn publish(url: &str, secs: u32, log: &Path) -> Child {
    ffmpeg::ffmpeg()
        .arg("-re")
        .args(ffmpeg::lavfi_inputs("testsrc2", 1000))
        .args(["-t", &secs.to_string()])
        .args(ffmpeg::H264_AAC)
        .args(["-f", "flv", url])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("ffmpeg: {e}: {INSTALL}"))
}

/// Waits for `child` to exit, at most `limit`.
// Polling a real process from a plain test thread: no executor to block.
#[allow(clippy::disallowed_methods)]
fn exit_of(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < limit, "ffmpeg still runs after {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends `sig` (`-STOP`: an encoder that hangs with its connection open;
/// `-CONT`) to process `pid`.
fn signal(pid: &str, sig: &str) {
    assert!(Command::new("kill")
        .args([sig, pid])
        .status()
        .unwrap()
        .success());
}

fn log_text(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// A securetoken for `studio` from 127.0.0.1 signed with `secret`, valid
/// from a minute ago for an hour; `salt` makes each one different.
fn token(secret: &str, salt: &str) -> String {
    let now = dvr_common::Clock::now(&dvr_common::SystemClock).as_secs();
    dvr_auth::securetoken::sign(
        secret,
        false,
        "studio",
        "127.0.0.1",
        salt,
        now - 60,
        now + 3600,
    )
}

/// The recorded span of `studio` (UTC seconds), when there is one.
fn span(http: u16, query: &str) -> Option<(i64, i64)> {
    let (status, body) = get(http, &format!("/studio/recording_status.json{query}"));
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    Some((v["studio"]["from"].as_i64()?, v["studio"]["to"].as_i64()?))
}

/// ffprobe's codec names and duration of `url`.
fn probe(url: &str) -> (Vec<String>, f64) {
    let v = ffmpeg::probe_json(url, &["-show_entries", "stream=codec_name:format=duration"]);
    let codecs = v["streams"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|s| s["codec_name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let duration = v["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    (codecs, duration)
}

#[test]
fn an_rtmp_publish_is_recorded_as_h264_and_aac() {
    let dvr = start(None);
    let log = dvr.dir.path().join("ffmpeg.log");
    // The one-component form: the application names the stream.
    let mut ffmpeg = publish(&format!("rtmp://127.0.0.1:{}/studio", dvr.rtmp), 6, &log);
    let status = exit_of(&mut ffmpeg, Duration::from_secs(30));
    assert!(status.success(), "ffmpeg published: {}", log_text(&log));
    wait_for("the last segment archived", Duration::from_secs(20), || {
        span(dvr.http, "").is_some_and(|(from, to)| to - from >= 5)
    });
    let (from, to) = span(dvr.http, "").unwrap();
    assert!(to - from <= 7, "6 s published, {from}..{to} recorded");
    let url = format!(
        "http://127.0.0.1:{}/studio/archive-{from}-{}.ts",
        dvr.http,
        to - from
    );
    let (codecs, duration) = probe(&url);
    assert_eq!(codecs, ["h264", "aac"], "{url}");
    assert!(
        (5.0..=6.5).contains(&duration),
        "ffprobe reads {duration} s of the 6 s published"
    );
}

#[test]
fn a_second_publisher_waits_for_the_first_to_go_silent() {
    let dvr = start(None);
    let url = format!("rtmp://127.0.0.1:{}/live/studio", dvr.rtmp);
    let first_log = dvr.dir.path().join("first.log");
    let mut first = Procs(vec![publish(&url, 60, &first_log)]);
    wait_for(
        "the first publish recorded",
        Duration::from_secs(20),
        || span(dvr.http, "").is_some(),
    );
    let second_log = dvr.dir.path().join("second.log");
    let mut second = publish(&url, 4, &second_log);
    let status = exit_of(&mut second, Duration::from_secs(10));
    assert!(!status.success(), "refused while the first is live");
    assert!(
        log_text(&second_log).contains("is already being published"),
        "{}",
        log_text(&second_log)
    );
    // The first encoder hangs: its connection stays open, no media comes.
    let pid = first.0[0].id().to_string();
    signal(&pid, "-STOP");
    let_run(IDLE_TIMEOUT + Duration::from_millis(500));
    let (_, before) = span(dvr.http, "").unwrap();
    let third_log = dvr.dir.path().join("third.log");
    let mut third = publish(&url, 4, &third_log);
    let status = exit_of(&mut third, Duration::from_secs(30));
    assert!(status.success(), "taken over: {}", log_text(&third_log));
    wait_for("the takeover recorded", Duration::from_secs(20), || {
        span(dvr.http, "").is_some_and(|(_, to)| to >= before + 3)
    });
    signal(&pid, "-CONT");
    first.0[0].kill().unwrap();
    // The tape goes on (seq continues) and marks the new publish.
    let (from, to) = span(dvr.http, "").unwrap();
    let playlist = String::from_utf8(
        get(
            dvr.http,
            &format!("/studio/archive-{from}-{}.m3u8", to - from),
        )
        .1,
    )
    .unwrap();
    let (segments, discontinuities) = segments(&playlist);
    assert!(segments.len() >= 3, "{playlist}");
    assert!(
        discontinuities >= 1,
        "the takeover is a discontinuity: {playlist}"
    );
}

#[test]
fn a_publish_without_a_valid_token_is_refused() {
    let dvr = start(Some(&format!("securetoken://${{{KEY_VAR}}}")));
    let sign = |secret: &str| token(secret, "salt");
    let base = format!("rtmp://127.0.0.1:{}/studio", dvr.rtmp);
    for (what, url) in [
        ("no token", base.clone()),
        (
            "a wrong token",
            format!("{base}?token={}", sign("not-the-key")),
        ),
    ] {
        let log = dvr.dir.path().join("refused.log");
        let mut ffmpeg = publish(&url, 2, &log);
        let status = exit_of(&mut ffmpeg, Duration::from_secs(10));
        assert!(!status.success(), "{what}: refused");
        assert!(
            log_text(&log).contains("not authorised"),
            "{what}: {}",
            log_text(&log)
        );
    }
    let good = sign(SECRET);
    assert!(
        span(dvr.http, &format!("?token={good}")).is_none(),
        "nothing recorded"
    );
    let log = dvr.dir.path().join("allowed.log");
    let mut ffmpeg = publish(&format!("{base}?token={good}"), 4, &log);
    let status = exit_of(&mut ffmpeg, Duration::from_secs(30));
    assert!(status.success(), "a valid token: {}", log_text(&log));
    wait_for(
        "the allowed publish recorded",
        Duration::from_secs(20),
        || span(dvr.http, &format!("?token={good}")).is_some_and(|(from, to)| to - from >= 3),
    );
}

#[test]
fn an_encoder_reconnecting_with_its_token_takes_its_stream_back_at_once() {
    let dvr = start(Some(&format!("securetoken://${{{KEY_VAR}}}")));
    let (mine, other) = (token(SECRET, "encoder-a"), token(SECRET, "encoder-b"));
    let url = |token: &str| format!("rtmp://127.0.0.1:{}/studio?token={token}", dvr.rtmp);
    let play = format!("?token={mine}");
    let first_log = dvr.dir.path().join("first.log");
    let mut first = Procs(vec![publish(&url(&mine), 60, &first_log)]);
    wait_for(
        "the first publish recorded",
        Duration::from_secs(20),
        || span(dvr.http, &play).is_some(),
    );
    // The connection drops half-open: the old socket stays, no media comes.
    let pid = first.0[0].id().to_string();
    signal(&pid, "-STOP");
    let stopped = Instant::now();
    // Another encoder with its own valid key is refused: the first is
    // still within the idle timeout.
    let other_log = dvr.dir.path().join("other.log");
    let mut intruder = publish(&url(&other), 4, &other_log);
    let status = exit_of(&mut intruder, Duration::from_secs(10));
    assert!(!status.success(), "another key is refused while live");
    assert!(
        log_text(&other_log).contains("is already being published"),
        "{}",
        log_text(&other_log)
    );
    // The same encoder, reconnecting with its token, gets the stream back
    // without waiting for the idle timeout.
    let (_, before) = span(dvr.http, &play).unwrap();
    let again_log = dvr.dir.path().join("again.log");
    let mut again = publish(&url(&mine), 4, &again_log);
    // What this test shows needs the first still inside the idle timeout
    // when the reconnect is admitted (ffmpeg connects well within 2 s).
    assert!(
        stopped.elapsed() + Duration::from_secs(2) < IDLE_TIMEOUT,
        "the refused publish took {:?}: too slow to show a takeover before the idle timeout",
        stopped.elapsed()
    );
    wait_for("the reconnect recorded", Duration::from_secs(20), || {
        span(dvr.http, &play).is_some_and(|(_, to)| to >= before + 3)
    });
    let status = exit_of(&mut again, Duration::from_secs(30));
    assert!(status.success(), "taken back: {}", log_text(&again_log));
    assert!(
        !log_text(&again_log).contains("already being published"),
        "{}",
        log_text(&again_log)
    );
    signal(&pid, "-CONT");
    first.0[0].kill().unwrap();
}

/// A publish:// input without the listener is refused at start, naming it.
#[test]
fn a_publish_input_without_rtmp_listen_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dvr.yaml");
    std::fs::write(
        &config,
        "version: 1\nstreams:\n  studio:\n    inputs: [ \"publish://\" ]\n",
    )
    .unwrap();
    let out = Command::new(dvr_bin())
        .args(["run", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("line 3: streams.studio.inputs[0]: publish:// needs the RTMP listener"),
        "{stderr}"
    );
}
