//! A stream with a `securetoken` policy, end to end with the real `dvr
//! run`: refused (403) without a token or with a bad one, on every kind of
//! URL; with a valid token its playlists carry the token into every segment
//! URI, ffprobe reads it, and hls.js in headless Chromium plays it while a
//! second player without a token on the same page is refused. The bytes
//! served show in the session's record (`GET /api/v1/sessions`).
//!
//! The key is given as `${DVR_E2E_KEY}`, read from the environment; without
//! it `dvr run` refuses to start, naming the stream and the variable. The
//! API is called without credentials, as a local tool would, which the
//! config allows explicitly (`api: { open_on_loopback: true }`).
//!
//! ffmpeg, ffprobe, chromium and hls.js are required (never skipped):
//! `make test-deps` (scripts/install-test-deps.sh) installs them.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Command;
use std::time::Duration;

use dvr_auth::securetoken::sign;
use support::{
    dvr_bin, free_tcp_port, get, open_in_chromium, segments, send, serve_page, start_dvr_with_env,
    testdata, wait_for, Procs, INSTALL,
};

const SECRET: &str = "e2e-secret-key";
/// The variable the config names the key by.
const KEY_VAR: &str = "DVR_E2E_KEY";

fn now_secs() -> i64 {
    // Wall-clock seconds for the token's validity window (the dvr under
    // test reads the same clock).
    let clock = dvr_common::SystemClock;
    dvr_common::Clock::now(&clock).as_secs()
}

/// A valid token for `stream` played from 127.0.0.1.
fn token(stream: &str) -> String {
    let now = now_secs();
    sign(
        SECRET,
        false,
        stream,
        "127.0.0.1",
        "e2esalt",
        now - 60,
        now + 3600,
    )
}

struct Dvr {
    http: u16,
    _dir: tempfile::TempDir,
    _procs: Procs,
}

/// `dvr run` recording `ch1` from a looping clip, protected by
/// `securetoken://${DVR_E2E_KEY}`, with at least `secs` recorded.
fn start(secs: i64) -> Dvr {
    let dir = tempfile::tempdir().unwrap();
    let http = free_tcp_port();
    let clip = testdata("h264_aac_720p.ts").canonicalize().unwrap();
    let config = dir.path().join("dvr.yaml");
    let yaml = format!(
        "version: 1\nhttp: {{ listen: \"127.0.0.1:{http}\" }}\narchive: file://{}/archive\n\
         api: {{ open_on_loopback: true }}\n\
         streams:\n  ch1:\n    inputs: [ \"file://{}?loop=true\" ]\n    \
         dvr: {{ depth: 1d, segment_duration: 2s, copy_interval: 1h }}\n    \
         auth: \"securetoken://${{{KEY_VAR}}}\"\n",
        dir.path().display(),
        clip.display()
    );
    std::fs::write(&config, yaml).unwrap();
    let data = dir.path().join("data");
    let refused = Command::new("timeout")
        .arg("60")
        .arg(dvr_bin())
        .args(["run", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .env_remove(KEY_VAR)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "stream ch1: securetoken key: environment variable {KEY_VAR} is not set"
        )),
        "{stderr}"
    );
    let procs = Procs(vec![start_dvr_with_env(
        &config,
        &data,
        &[(KEY_VAR, SECRET)],
    )]);
    let status = format!("/ch1/recording_status.json?token={}", token("ch1"));
    wait_for(
        &format!("{secs} s of recording"),
        Duration::from_secs(secs as u64 + 30),
        || span(http, &status).is_some_and(|(from, to)| to - from >= secs),
    );
    Dvr {
        http,
        _dir: dir,
        _procs: procs,
    }
}

fn span(http: u16, path: &str) -> Option<(i64, i64)> {
    let (status, body) = get(http, path);
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    Some((v["ch1"]["from"].as_i64()?, v["ch1"]["to"].as_i64()?))
}

/// A policy set through the API applies at once, to a new stream and to a
/// changed one: the packager follows the streams bucket, not the file.
#[test]
fn policies_set_through_the_api_apply_at_once() {
    let dvr = start(2);
    let clip = testdata("h264_aac_720p.ts").canonicalize().unwrap();
    let ch2 = format!(
        "{{\"inputs\": [\"file://{}?loop=true\"], \"auth\": \"securetoken://{SECRET}\"}}",
        clip.display()
    );
    let (status, _, body) = send(dvr.http, "POST", "/api/v1/streams/ch2", &ch2);
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let good = token("ch2");
    wait_for(
        "ch2 playing with its token",
        Duration::from_secs(30),
        || get(dvr.http, &format!("/ch2/index.m3u8?token={good}")).0 == 200,
    );
    assert_eq!(
        get(dvr.http, "/ch2/index.m3u8").0,
        403,
        "ch2 without a token"
    );
    let stored = get(dvr.http, "/api/v1/streams/ch2").1;
    assert!(
        String::from_utf8_lossy(&stored).contains("securetoken://"),
        "the policy is stored with the stream"
    );

    // Opened up through the API: plays without a token.
    let open = format!(
        "{{\"inputs\": [\"file://{}?loop=true\"], \"auth\": \"none\"}}",
        clip.display()
    );
    let (status, _, body) = send(dvr.http, "PUT", "/api/v1/streams/ch2", &open);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    wait_for("ch2 open", Duration::from_secs(30), || {
        get(dvr.http, "/ch2/index.m3u8").0 == 200
    });
    assert_eq!(
        get(dvr.http, "/ch1/index.m3u8").0,
        403,
        "ch1 keeps its policy"
    );
}

#[test]
fn securetoken_protects_every_url_and_valid_tokens_play() {
    let dvr = start(12);
    let good = token("ch1");
    let (from, _) = span(
        dvr.http,
        &format!("/ch1/recording_status.json?token={good}"),
    )
    .unwrap();
    let now = now_secs();
    let expired = sign(
        SECRET,
        false,
        "ch1",
        "127.0.0.1",
        "e2esalt",
        now - 7200,
        now - 3600,
    );
    let other_ip = sign(
        SECRET,
        false,
        "ch1",
        "192.0.2.1",
        "e2esalt",
        now - 60,
        now + 3600,
    );
    let other_stream = token("ch2");
    let tampered = good.replace("e2esalt", "e2esal7");
    let forms = [
        "/ch1/index.m3u8".to_owned(),
        format!("/ch1/index-{from}-6.m3u8"),
        format!("/ch1/archive-{from}-6.ts"),
        "/ch1/mpegts".to_owned(),
        format!("/ch1/timeshift_abs-{from}.m3u8"),
        "/ch1/recording_status.json".to_owned(),
    ];
    for form in &forms {
        for (what, query) in [
            ("no token", String::new()),
            ("expired", format!("?token={expired}")),
            ("another address", format!("?token={other_ip}")),
            ("another stream", format!("?token={other_stream}")),
            ("tampered salt", format!("?token={tampered}")),
            ("garbage", "?token=x".to_owned()),
        ] {
            let (status, body) = get(dvr.http, &format!("{form}{query}"));
            assert_eq!(
                status,
                403,
                "{form} with {what}: {}",
                String::from_utf8_lossy(&body)
            );
            assert_eq!(
                body, b"403 Forbidden\n",
                "{form}: nothing that helps an attacker"
            );
        }
    }

    // With the token: the playlist carries it into every segment URI.
    let vod = format!("/ch1/index-{from}-6.m3u8?token={good}");
    let (status, body) = get(dvr.http, &vod);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let mut served = body.len();
    let playlist = String::from_utf8(body).unwrap();
    let (segs, _) = segments(&playlist);
    assert!(!segs.is_empty(), "{playlist}");
    for (_, _, uri) in &segs {
        assert!(
            uri.ends_with(&format!("token={good}")),
            "{uri} lost the token"
        );
        let (status, segment) = get(dvr.http, &format!("/ch1/{uri}"));
        assert_eq!(status, 200, "{uri}");
        served += segment.len();
        let bare = uri.split('?').next().unwrap();
        assert_eq!(
            get(dvr.http, &format!("/ch1/{bare}")).0,
            403,
            "{bare} without token"
        );
    }

    // ffprobe, a real player, reads it with the token and not without.
    let url = |q: &str| format!("http://127.0.0.1:{}/ch1/index-{from}-6.m3u8{q}", dvr.http);
    let probed = ffprobe_duration(&url(&format!("?token={good}"))).expect("ffprobe with the token");
    assert!((probed - 6.0).abs() <= 2.1, "ffprobe reads {probed} s of 6");
    assert!(
        ffprobe_duration(&url("")).is_err(),
        "ffprobe without a token reads nothing"
    );

    hlsjs_plays_only_with_the_token(&dvr, from, &good);

    // The session counted at least what this test itself was sent
    // (reported every 10 s).
    let session = dvr_auth::session_id("ch1", "127.0.0.1", &good);
    wait_for("the session's bytes", Duration::from_secs(30), || {
        let (status, body) = get(dvr.http, "/api/v1/sessions?stream=ch1");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let listed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        listed["sessions"].as_array().unwrap().iter().any(|s| {
            s["id"] == session.as_str()
                && s["bytes"].as_u64().unwrap() >= served as u64
                && s["protocol"] == "hls"
        })
    });
}

fn ffprobe_duration(url: &str) -> Result<f64, String> {
    let out = Command::new("timeout")
        .args([
            "30",
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
            url,
        ])
        .output()
        .unwrap_or_else(|e| panic!("ffprobe: {e}: {INSTALL}"));
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("{e}"))
}

/// One page, two hls.js players of the same VOD range from another origin:
/// `with` (token) must play 4 s, `without` must end in a fatal 403.
fn hlsjs_plays_only_with_the_token(dvr: &Dvr, from: i64, token: &str) {
    let base = format!("http://127.0.0.1:{}/ch1/index-{from}-10.m3u8", dvr.http);
    let page = format!(
        r#"<!doctype html><html><body><script src="/hls.min.js"></script><script>
const log = (...a) => console.log("DVRAUTH " + a.join(" "));
for (const [name, url] of [["with", "{base}?token={token}"], ["without", "{base}"]]) {{
  const video = document.createElement("video");
  video.muted = true;
  document.body.appendChild(video);
  const hls = new Hls({{ manifestLoadingMaxRetry: 0, levelLoadingMaxRetry: 0, fragLoadingMaxRetry: 0 }});
  hls.on(Hls.Events.ERROR, (_, d) => log(name, d.fatal ? "fatal" : "error", d.details, d.response ? d.response.code : ""));
  hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch(e => log(name, "fatal play", e)));
  hls.loadSource(url);
  hls.attachMedia(video);
  setInterval(() => log(name, "t", video.currentTime.toFixed(3)), 500);
}}
</script></body></html>"#
    );
    let chromium = open_in_chromium(serve_page(page));
    let stderr = chromium.stderr;

    let (mut played, mut with_fatal, mut without_fatal) = (0.0_f64, Vec::new(), Vec::new());
    let mut samples = 0;
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        let Some(at) = line.find("\"DVRAUTH ") else {
            continue;
        };
        let msg = line[at + 9..]
            .split("\", source:")
            .next()
            .unwrap_or_default()
            .to_owned();
        let words: Vec<&str> = msg.split(' ').collect();
        match (words.first().copied(), words.get(1).copied()) {
            (Some("with"), Some("t")) => {
                played = played.max(words.get(2).and_then(|t| t.parse().ok()).unwrap_or(0.0));
                samples += 1;
            }
            (Some("with"), Some("fatal")) => with_fatal.push(msg.clone()),
            (Some("without"), Some("fatal")) => without_fatal.push(msg.clone()),
            _ => {}
        }
        // 4 s of media played and the refusal seen, or 40 s of page time.
        if (played >= 4.0 && !without_fatal.is_empty()) || !with_fatal.is_empty() || samples > 80 {
            break;
        }
    }
    assert!(
        with_fatal.is_empty(),
        "hls.js with the token failed: {with_fatal:?}"
    );
    assert!(played >= 4.0, "hls.js with the token played {played} s");
    assert!(
        without_fatal
            .iter()
            .any(|m| m.contains("manifestLoadError") && m.ends_with("403")),
        "hls.js without a token must be refused with 403: {without_fatal:?}"
    );
}
