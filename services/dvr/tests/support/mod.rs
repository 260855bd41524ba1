//! Helpers shared by the `dvr run` process tests: ports, a bare HTTP
//! client, playlist parsing, ffmpeg sources and ffprobe as the judge.

#![allow(
    dead_code,
    unused_imports,
    reason = "each test binary uses a part of the helpers"
)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

use dvr_common::CivilTime;
use dvr_testkit::ffmpeg;

/// Metric families only a process on NATS lists (embedded mode has no
/// leases, no remote requests, no followers and no hot tier that expires):
/// e2e/distributed.rs finds the lease, consume and hot-tier ones on a
/// recorder, traces.rs the request one on a packager asking auth.
pub const DISTRIBUTED_FAMILIES: &[&str] = &[
    "dvr_recorder_hot_tier_seconds",
    "dvr_bus_lease_moves",
    "dvr_bus_leases_held",
    "dvr_bus_consume_delay_seconds",
    "dvr_bus_request_seconds",
];

pub fn dvr_bin() -> PathBuf {
    std::env::var_os("DVR_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_dvr")), PathBuf::from)
}

/// Child processes killed when the test ends, however it ends.
pub struct Procs(pub Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub use dvr_testkit::process::free_port as free_tcp_port;

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `dvr run` with `config`, keeping its data in `data`.
pub fn start_dvr(config: &Path, data: &Path) -> Child {
    start_dvr_with_env(config, data, &[])
}

/// [`start_dvr`] with `env` added to the environment.
pub fn start_dvr_with_env(config: &Path, data: &Path, env: &[(&str, &str)]) -> Child {
    Command::new(dvr_bin())
        .args(["run", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dvr run")
}

/// Writes a config recording stream `ch1` from `inputs` (URLs in priority
/// order) into a local archive under `dir`, in 2 s segments, and returns
/// its path.
pub fn write_config(dir: &Path, http: u16, inputs: &[String]) -> PathBuf {
    write_config_streams(dir, http, &[("ch1", inputs.to_vec())])
}

/// [`write_config`] for several streams, each `(name, inputs)`.
pub fn write_config_streams(dir: &Path, http: u16, streams: &[(&str, Vec<String>)]) -> PathBuf {
    let config = dir.join("dvr.yaml");
    let mut yaml = format!(
        "version: 1\nhttp: {{ listen: \"127.0.0.1:{http}\" }}\narchive: file://{}/archive\nstreams:\n",
        dir.display()
    );
    for (name, inputs) in streams {
        let inputs: Vec<String> = inputs.iter().map(|i| format!("\"{i}\"")).collect();
        yaml.push_str(&format!(
            "  {name}:\n    inputs: [ {} ]\n    \
             dvr: {{ depth: 1d, segment_duration: 2s, copy_interval: 1h }}\n",
            inputs.join(", ")
        ));
    }
    std::fs::write(&config, yaml).unwrap();
    config
}

/// A committed clip under `testdata/`.
pub use dvr_testkit::clips::path as testdata;

/// A plain HTTP/1.0 GET: (status, body).
pub fn get(port: u16, path: &str) -> (u16, Vec<u8>) {
    let (status, _, body) = get_with_head(port, path);
    (status, body)
}

/// A plain HTTP/1.0 GET: (status, response head, body).
pub fn get_with_head(port: u16, path: &str) -> (u16, String, Vec<u8>) {
    send(port, "GET", path, "")
}

/// A plain HTTP/1.0 request with a JSON body (empty for none): (status,
/// response head, body).
pub fn send(port: u16, method: &str, path: &str, body: &str) -> (u16, String, Vec<u8>) {
    send_with(port, method, path, "", body)
}

/// [`send`] with `head` (whole `Name: value\r\n` lines) added to the request.
pub fn send_with(
    port: u16,
    method: &str,
    path: &str,
    head: &str,
    body: &str,
) -> (u16, String, Vec<u8>) {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new(), Vec::new());
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let body_head = if body.is_empty() {
        String::new()
    } else {
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        )
    };
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\n{head}{body_head}\r\n{body}"
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |p| p + 4);
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head, raw[split..].to_vec())
}

/// A header's value in a response head (names compared case-insensitively).
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// One sample of `/metrics` by its series (`name{labels}`), `None` when
/// absent.
pub fn metric_sample(port: u16, series: &str) -> Option<f64> {
    let (_, body) = get(port, "/metrics");
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The text body of a GET that must answer 200.
pub fn text(port: u16, path: &str) -> String {
    String::from_utf8(body_of(port, path)).unwrap()
}

/// The body of a GET that must answer 200.
pub fn body_of(port: u16, path: &str) -> Vec<u8> {
    let (status, body) = get(port, path);
    assert_eq!(
        status,
        200,
        "GET {path} on port {port}: {}",
        String::from_utf8_lossy(&body)
    );
    body
}

/// `2026-11-21T14:05:32.040Z` to milliseconds.
pub fn parse_pdt(s: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap();
    let civil = CivilTime {
        year: i64::from(n(0..4)),
        month: n(5..7),
        day: n(8..10),
        hour: n(11..13),
        minute: n(14..16),
        second: n(17..19),
        millis: n(20..23),
    };
    civil.to_utc().unwrap().0
}

/// A media playlist's segments: (start ms from the PDTs, duration ms, uri),
/// and how many discontinuities it marks.
pub fn segments(playlist: &str) -> (Vec<(i64, i64, String)>, usize) {
    let mut out = Vec::new();
    let mut next_start = None;
    let mut duration = 0;
    let mut discontinuities = 0;
    for line in playlist.lines() {
        if let Some(pdt) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            next_start = Some(parse_pdt(pdt));
        } else if let Some(d) = line.strip_prefix("#EXTINF:") {
            let d = d.trim_end_matches(',');
            let (s, ms) = d.split_once('.').unwrap();
            duration = s.parse::<i64>().unwrap() * 1000 + ms.parse::<i64>().unwrap();
        } else if line == "#EXT-X-DISCONTINUITY" {
            discontinuities += 1;
        } else if !line.starts_with('#') && !line.is_empty() {
            let start = next_start.expect("a PDT before the first segment");
            out.push((start, duration, line.to_owned()));
            next_start = Some(start + duration);
        }
    }
    (out, discontinuities)
}

pub fn recorded_span(port: u16, stream: &str) -> Option<(i64, i64)> {
    let (status, body) = get(port, &format!("/{stream}/recording_status.json"));
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    Some((v[stream]["from"].as_i64()?, v[stream]["to"].as_i64()?))
}

// Polling real processes from a plain test thread: no executor to block.
#[allow(clippy::disallowed_methods)]
pub fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Lets a real process run for `d` (a plain test thread: no executor to
/// block).
#[allow(clippy::disallowed_methods)]
pub fn let_run(d: Duration) {
    std::thread::sleep(d);
}

/// The wall clock in UTC ms, as a real `dvr run` reads it.
#[allow(clippy::disallowed_methods)]
pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The duration ffprobe reads at a URL, in seconds.
pub use dvr_testkit::ffmpeg::probe_duration as ffprobe_duration;

/// ffprobe's `-show_format -show_streams` of a file or URL, as JSON; fails
/// on anything ffprobe complains about.
pub fn ffprobe_json(input: &Path) -> serde_json::Value {
    let out = ffmpeg::run_clean(
        ffmpeg::ffprobe()
            .args(["-show_format", "-show_streams", "-of", "json"])
            .arg(input),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// ffmpeg sending a live H.264 + AAC stream to a UDP port in real time, for
/// `secs` seconds.
pub fn start_source(udp: u16, pattern: &str, secs: u32) -> Child {
    ffmpeg::ffmpeg()
        .arg("-re")
        .args(ffmpeg::lavfi_inputs(pattern, 1000))
        .args(["-t", &secs.to_string()])
        .args(ffmpeg::H264_AAC)
        .args(["-f", "mpegts"])
        .arg(format!("udp://127.0.0.1:{udp}?pkt_size=1316"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg: run `make test-deps`")
}

/// What to run when a tool the tests need is missing.
pub const INSTALL: &str = "run `make test-deps` (scripts/install-test-deps.sh)";

/// A program on the PATH, or a failure naming the install command.
pub fn which(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed: {INSTALL}"))
}

/// hls.js, installed by `make test-deps` into the tools cache.
pub fn hlsjs() -> PathBuf {
    player_js("hls.js/dist/hls.min.js")
}

/// dash.js, installed by `make test-deps` into the tools cache.
pub fn dashjs() -> PathBuf {
    player_js("dashjs/dist/dash.all.min.js")
}

/// Shaka Player, installed by `make test-deps` into the tools cache.
pub fn shaka() -> PathBuf {
    player_js("shaka-player/dist/shaka-player.compiled.js")
}

/// playwright-core's entry point, installed by `make test-deps` into the
/// tools cache (it drives Debian's Chromium; it brings no browser).
pub fn playwright_core() -> PathBuf {
    player_js("playwright-core/index.js")
}

/// A player script under the tools cache's `node_modules`.
fn player_js(path: &str) -> PathBuf {
    let tools = std::env::var_os("DVR_TOOLS_DIR").map_or_else(
        || {
            let home = std::env::var_os("HOME").map_or_else(|| "/root".into(), PathBuf::from);
            home.join(".cache/dvr/tools")
        },
        PathBuf::from,
    );
    let js = tools.join("node_modules").join(path);
    assert!(js.is_file(), "{} is missing: {INSTALL}", js.display());
    js
}

/// Serves `page` at `/`, hls.js at `/hls.min.js`, dash.js at
/// `/dash.all.min.js` and Shaka Player at `/shaka-player.compiled.js` on a
/// port of its own (another origin than the DVR's,
/// so CORS is exercised).
pub fn serve_page(page: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let js = std::fs::read(hlsjs()).unwrap();
    let dash = std::fs::read(dashjs()).unwrap();
    let shaka = std::fs::read(shaka()).unwrap();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0; 4096];
            let n = conn.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let (ctype, body) = if request.starts_with("GET /hls.min.js") {
                ("text/javascript", js.as_slice())
            } else if request.starts_with("GET /dash.all.min.js") {
                ("text/javascript", dash.as_slice())
            } else if request.starts_with("GET /shaka-player.compiled.js") {
                ("text/javascript", shaka.as_slice())
            } else if request.starts_with("GET / ") {
                ("text/html", page.as_bytes())
            } else {
                let _ = conn.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                continue;
            };
            let _ = write!(
                conn,
                "HTTP/1.0 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(body);
        }
    });
    port
}

/// Headless Chromium showing the page on `page_port`; the page's
/// `console.log` lines come out of `stderr`. Killed when dropped.
pub struct Chromium {
    pub stderr: ChildStderr,
    _procs: Procs,
    _profile: tempfile::TempDir,
}

pub fn open_in_chromium(page_port: u16) -> Chromium {
    let chromium = which("chromium");
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(&chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--mute-audio",
            "--autoplay-policy=no-user-gesture-required",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("http://127.0.0.1:{page_port}/"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}: {INSTALL}", chromium.display()));
    let stderr = child.stderr.take().unwrap();
    Chromium {
        stderr,
        _procs: Procs(vec![child]),
        _profile: profile,
    }
}
