//! Players as judges, in real time: `dvr run` records two looping clips
//! (`ch1` with one video and one audio track, `ch2` with two audio
//! languages), then ffprobe reads every HLS and MPEG-TS form the packager
//! serves, and hls.js in Debian's headless Chromium plays a VOD range, a
//! start-over EVENT playlist, a `timeshift_abs` stream and a multi-track
//! master playlist, and the VOD range and master again as CMAF HLS
//! (`.fmp4.m3u8`), while the test watches `currentTime` advance; dash.js
//! plays live `index.mpd`, a static range, start-over from its start and
//! a range with two languages the same way.
//!
//! The page is served by the test on an origin of its own, so Chromium
//! (with web security on) also judges the packager's CORS headers.
//!
//! ffmpeg, ffprobe, chromium and hls.js are required (never skipped):
//! `make test-deps` (scripts/install-test-deps.sh) installs them.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Command;
use std::time::Duration;

use support::{
    dashjs, free_tcp_port, get, get_with_head, header, hlsjs, open_in_chromium, recorded_span,
    segments, serve_page, shaka, start_dvr, testdata, wait_for, which, write_config_streams, Procs,
    INSTALL,
};

/// Carried through every URL: middleware puts its auth there.
const TOKEN: &str = "token=t0k3n-42";
/// The recorder's segment duration (the config's `segment_duration`).
const SEGMENT_S: f64 = 2.0;

/// A recording of `ch1` from a looping H.264 + AAC clip and `ch2` from a
/// looping H.264 + two AAC languages clip, with `dvr run` killed when it is
/// dropped.
struct Recording {
    http: u16,
    /// The recorded span when the checks start, in UTC seconds.
    start: i64,
    _dir: tempfile::TempDir,
    _procs: Procs,
}

fn record(secs: i64) -> Recording {
    let dir = tempfile::tempdir().unwrap();
    let http = free_tcp_port();
    let input = |clip: &str| {
        let clip = testdata(clip);
        vec![format!(
            "file://{}?loop=true",
            clip.canonicalize().unwrap().display()
        )]
    };
    let config = write_config_streams(
        dir.path(),
        http,
        &[
            ("ch1", input("h264_aac_720p.ts")),
            ("ch2", input("two_audio_langs.ts")),
        ],
    );
    let procs = Procs(vec![start_dvr(&config, &dir.path().join("data"))]);
    wait_for(
        &format!("{secs} s of recording"),
        Duration::from_secs(secs as u64 + 30),
        || {
            ["ch1", "ch2"]
                .iter()
                .all(|ch| recorded_span(http, ch).is_some_and(|(from, to)| to - from >= secs))
        },
    );
    let (start, _) = recorded_span(http, "ch1").unwrap();
    Recording {
        http,
        start,
        _dir: dir,
        _procs: procs,
    }
}

impl Recording {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    /// The newest recorded second.
    fn end(&self) -> i64 {
        recorded_span(self.http, "ch1").unwrap().1
    }

    fn playlist(&self, path: &str) -> Result<String, String> {
        let (status, body) = get(self.http, path);
        let body = String::from_utf8_lossy(&body).into_owned();
        if status != 200 {
            return Err(format!("GET {path}: {status} {body}"));
        }
        if !body.starts_with("#EXTM3U") {
            return Err(format!("GET {path}: not a playlist:\n{body}"));
        }
        let (segs, _) = segments(&body);
        if segs.is_empty() {
            return Err(format!("GET {path}: no segments:\n{body}"));
        }
        if let Some((_, _, uri)) = segs.iter().find(|(_, _, uri)| !uri.contains(TOKEN)) {
            return Err(format!("GET {path}: {uri} lost `{TOKEN}`:\n{body}"));
        }
        Ok(body)
    }
}

/// What ffprobe makes of a URL.
#[derive(Debug, Default)]
struct Probe {
    codecs: Vec<String>,
    /// The container's duration, for finite forms.
    duration: Option<f64>,
    /// The span of video packet timestamps read, in seconds.
    video_span: f64,
    audio_packets: usize,
}

/// Runs ffprobe on `url`; with `read_secs`, reads that many seconds of
/// packets (live and endless forms), else only probes.
fn ffprobe(url: &str, read_secs: Option<u32>) -> Result<Probe, String> {
    let mut cmd = Command::new("timeout");
    cmd.args(["30", "ffprobe", "-v", "error", "-of", "json"]);
    if url.contains(".m3u8") {
        // Live playlists: read from their first segment, not the live edge.
        cmd.args(["-live_start_index", "0"]);
    }
    match read_secs {
        Some(secs) => cmd.args([
            "-read_intervals",
            &format!("%+{secs}"),
            "-show_entries",
            "stream=codec_name:packet=codec_type,pts_time",
        ]),
        None => cmd.args(["-show_entries", "stream=codec_name:format=duration"]),
    };
    let out = cmd
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("ffprobe: {e}: {INSTALL}"));
    if !out.status.success() {
        return Err(format!(
            "ffprobe {url}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("ffprobe {url}: {e}"))?;
    let mut probe = Probe {
        duration: v["format"]["duration"]
            .as_str()
            .and_then(|d| d.parse().ok()),
        ..Probe::default()
    };
    for s in v["streams"].as_array().into_iter().flatten() {
        if let Some(c) = s["codec_name"].as_str() {
            probe.codecs.push(c.to_owned());
        }
    }
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for p in v["packets"].as_array().into_iter().flatten() {
        let pts = p["pts_time"].as_str().and_then(|t| t.parse::<f64>().ok());
        match (p["codec_type"].as_str(), pts) {
            (Some("video"), Some(t)) => (lo, hi) = (lo.min(t), hi.max(t)),
            (Some("audio"), _) => probe.audio_packets += 1,
            _ => {}
        }
    }
    probe.video_span = (hi - lo).max(0.0);
    if !(probe.codecs.iter().any(|c| c == "h264") && probe.codecs.iter().any(|c| c == "aac")) {
        return Err(format!(
            "ffprobe {url}: codecs {:?}, not H.264 + AAC",
            probe.codecs
        ));
    }
    Ok(probe)
}

/// A VOD playlist of `asked` seconds: ffprobe's duration is within one
/// segment of it.
fn check_finite(rec: &Recording, path: &str, asked: f64) -> Result<String, String> {
    let probe = ffprobe(&rec.url(path), None)?;
    let duration = probe
        .duration
        .ok_or_else(|| format!("{path}: ffprobe finds no duration"))?;
    if (duration - asked).abs() > SEGMENT_S + 0.1 {
        return Err(format!("{path}: ffprobe reads {duration} s for {asked} s"));
    }
    Ok(format!("{path}: {duration:.2} s"))
}

/// A download of `asked` seconds: ffprobe's duration (which it can only
/// estimate for a TS over HTTP by seeking to its end with a Range request)
/// and the span of its video read to the end are within one segment of it.
fn check_download(rec: &Recording, path: &str, asked: f64) -> Result<String, String> {
    let probed = check_finite(rec, path, asked)?;
    let probe = ffprobe(&rec.url(path), Some(120))?;
    if (probe.video_span - asked).abs() > SEGMENT_S + 0.1 || probe.audio_packets == 0 {
        return Err(format!(
            "{path}: {:.2} s of video and {} audio packets for {asked} s",
            probe.video_span, probe.audio_packets
        ));
    }
    Ok(format!("{probed}, {:.2} s of video read", probe.video_span))
}

/// A live or endless form: ffprobe reads `secs` of H.264 and AAC from it.
fn check_reads(rec: &Recording, path: &str, secs: u32) -> Result<String, String> {
    let probe = ffprobe(&rec.url(path), Some(secs))?;
    if probe.video_span < f64::from(secs) - 1.5 || probe.audio_packets == 0 {
        return Err(format!(
            "{path}: ffprobe read {:.2} s of video and {} audio packets in {secs} s",
            probe.video_span, probe.audio_packets
        ));
    }
    Ok(format!("{path}: read {:.2} s", probe.video_span))
}

/// `(first segment start, last segment end, sum of durations)` in seconds.
fn window(playlist: &str) -> (f64, f64, f64) {
    let (segs, _) = segments(playlist);
    let first = segs.first().map_or(0, |s| s.0);
    let last = segs.last().map_or(0, |s| s.0 + s.1);
    let total: i64 = segs.iter().map(|s| s.1).sum();
    (first as f64 / 1e3, last as f64 / 1e3, total as f64 / 1e3)
}

fn near(what: &str, got: f64, want: f64, slack: f64, playlist: &str) -> Result<(), String> {
    if (got - want).abs() > slack {
        return Err(format!(
            "{what}: {got:.3}, expected {want} ± {slack}:\n{playlist}"
        ));
    }
    Ok(())
}

fn check_vod(rec: &Recording, path: &str, from: i64, dur: i64) -> Result<String, String> {
    let text = rec.playlist(path)?;
    if !text.contains("#EXT-X-ENDLIST") {
        return Err(format!(
            "{path}: a past range is VOD, without ENDLIST:\n{text}"
        ));
    }
    let (first, _, total) = window(&text);
    near(
        &format!("{path} first PDT"),
        first,
        from as f64,
        SEGMENT_S,
        &text,
    )?;
    near(
        &format!("{path} EXTINF sum"),
        total,
        dur as f64,
        SEGMENT_S + 0.1,
        &text,
    )?;
    check_finite(rec, path, dur as f64)
}

fn check_event(rec: &Recording, from: i64) -> Result<String, String> {
    let path = format!("/ch1/index-{from}-now.m3u8?{TOKEN}");
    let end = rec.end();
    let text = rec.playlist(&path)?;
    if !text.contains("#EXT-X-PLAYLIST-TYPE:EVENT") || text.contains("#EXT-X-ENDLIST") {
        return Err(format!(
            "{path}: start-over is an open EVENT playlist:\n{text}"
        ));
    }
    let (first, last, _) = window(&text);
    near(
        &format!("{path} first PDT"),
        first,
        from as f64,
        SEGMENT_S,
        &text,
    )?;
    near(
        &format!("{path} end"),
        last,
        end as f64,
        2.0 * SEGMENT_S,
        &text,
    )?;
    check_reads(rec, &path, 4)
}

fn check_timeshift_abs(rec: &Recording, at: i64) -> Result<String, String> {
    let path = format!("/ch1/timeshift_abs-{at}.m3u8?{TOKEN}");
    let (status, head, _) = get_with_head(rec.http, &path);
    let location = header(&head, "location").unwrap_or_default().to_owned();
    if status != 302 || !location.contains(TOKEN) || !location.contains("started=") {
        return Err(format!(
            "{path}: a redirect that keeps `{TOKEN}` and adds `started=`, got:\n{head}"
        ));
    }
    let text = rec.playlist(&location)?;
    let (first, _, _) = window(&text);
    near(
        &format!("{location} first PDT"),
        first,
        at as f64,
        SEGMENT_S,
        &text,
    )?;
    // ffprobe follows the redirect itself.
    check_reads(rec, &path, 4)
}

fn check_timeshift_rel(rec: &Recording, prefix: &str, behind: i64) -> Result<String, String> {
    let path = format!("/ch1/{prefix}timeshift_rel-{behind}.m3u8?{TOKEN}");
    let end = rec.end();
    let text = rec.playlist(&path)?;
    let (_, last, _) = window(&text);
    near(
        &format!("{path} end"),
        last,
        (end - behind) as f64,
        2.0 * SEGMENT_S,
        &text,
    )?;
    check_reads(rec, &path, 4)
}

fn check_rewind(rec: &Recording, span: i64) -> Result<String, String> {
    let path = format!("/ch1/rewind-{span}.m3u8?{TOKEN}");
    let end = rec.end();
    let text = rec.playlist(&path)?;
    let (_, last, total) = window(&text);
    near(
        &format!("{path} end"),
        last,
        end as f64,
        2.0 * SEGMENT_S,
        &text,
    )?;
    near(
        &format!("{path} EXTINF sum"),
        total,
        span as f64,
        SEGMENT_S + 0.1,
        &text,
    )?;
    check_reads(rec, &path, 4)
}

fn check_kodi_shift(rec: &Recording, at: i64) -> Result<String, String> {
    let path = format!("/ch1/index.m3u8?utc={at}&lutc={}&{TOKEN}", rec.end());
    let text = rec.playlist(&path)?;
    let (first, _, _) = window(&text);
    near(
        &format!("{path} first PDT"),
        first,
        at as f64,
        SEGMENT_S,
        &text,
    )?;
    check_reads(rec, &path, 4)
}

fn check_live(rec: &Recording) -> Result<String, String> {
    let path = format!("/ch1/index.m3u8?{TOKEN}");
    let end = rec.end();
    let text = rec.playlist(&path)?;
    let (_, last, _) = window(&text);
    if segments(&text).0.len() > 6 {
        return Err(format!("{path}: more than 6 segments live:\n{text}"));
    }
    near(
        &format!("{path} end"),
        last,
        end as f64,
        2.0 * SEGMENT_S,
        &text,
    )?;
    check_reads(rec, &path, 3)
}

/// `ch2`'s master playlist for `from`+10 s: two audio renditions and a
/// video variant whose playlists all keep the token and list the range;
/// ffprobe reads the master (every track), `video1-` (video and both
/// languages in one stream) and `mono-` as 10 s of H.264 and AAC.
fn check_master(rec: &Recording, from: i64) -> Result<String, String> {
    let path = format!("/ch2/index-{from}-10.m3u8?{TOKEN}");
    let (status, body) = get(rec.http, &path);
    let master = String::from_utf8_lossy(&body).into_owned();
    if status != 200
        || master.matches("#EXT-X-MEDIA:TYPE=AUDIO").count() != 2
        || master.matches("#EXT-X-STREAM-INF:").count() != 1
    {
        return Err(format!(
            "{path}: {status}, not a master with two languages:\n{master}"
        ));
    }
    let uris: Vec<&str> = master
        .lines()
        .filter(|l| !l.starts_with('#'))
        .chain(
            master
                .lines()
                .filter_map(|l| l.split("URI=\"").nth(1)?.split('"').next()),
        )
        .collect();
    for uri in &uris {
        if !uri.starts_with("tracks-") || !uri.contains(TOKEN) {
            return Err(format!(
                "{path}: rendition {uri} is not a token-keeping track playlist"
            ));
        }
        let text = rec.playlist(&format!("/ch2/{uri}"))?;
        let (first, _, total) = window(&text);
        near(
            &format!("{uri} first PDT"),
            first,
            from as f64,
            SEGMENT_S,
            &text,
        )?;
        near(
            &format!("{uri} EXTINF sum"),
            total,
            10.0,
            SEGMENT_S + 0.1,
            &text,
        )?;
    }
    let probe = ffprobe(&rec.url(&path), None)?;
    if probe.codecs.iter().filter(|c| *c == "aac").count() != 2 {
        return Err(format!(
            "ffprobe {path}: codecs {:?}, not H.264 + two AAC",
            probe.codecs
        ));
    }
    let video1 = check_finite(rec, &format!("/ch2/video1-{from}-10.m3u8?{TOKEN}"), 10.0)?;
    let mono = check_finite(rec, &format!("/ch2/mono-{from}-10.m3u8?{TOKEN}"), 10.0)?;
    let master = check_finite(rec, &path, 10.0)?;
    Ok(format!(
        "{} renditions; {master}; {video1}; {mono}",
        uris.len()
    ))
}

/// A range from 4 s before the end of the recording to 26 s after it, with
/// `?event=true`: an open EVENT playlist that players read as it grows.
fn check_event_true(rec: &Recording) -> Result<String, String> {
    let path = format!("/ch1/index-{}-30.m3u8?event=true&{TOKEN}", rec.end() - 4);
    let text = rec.playlist(&path)?;
    if !text.contains("#EXT-X-PLAYLIST-TYPE:EVENT") || text.contains("#EXT-X-ENDLIST") {
        return Err(format!(
            "{path}: a range into the future with event=true is an open EVENT:\n{text}"
        ));
    }
    check_reads(rec, &path, 4)
}

/// What one check asks of a URL form.
enum Check {
    /// A past range, `FROM`-`DUR` with DUR = 10.
    Vod(String),
    Event,
    TimeshiftAbs,
    TimeshiftRel,
    /// Kodi's `flussonic-hls` catch-up from a `mono.m3u8` live URL.
    MonoTimeshiftRel,
    /// The multi-track `ch2`: master, track playlists, `videoN`, `mono`.
    Master,
    /// `?event=true` on a range reaching into the future.
    EventTrue,
    Rewind,
    KodiShift,
    Live,
    /// A finite 10 s MPEG-TS download.
    Download(String),
    /// An endless paced MPEG-TS form.
    Endless(String),
}

impl Check {
    fn run(&self, rec: &Recording, from: i64, at: i64) -> Result<String, String> {
        match self {
            Self::Vod(path) => check_vod(rec, path, from, 10),
            Self::Event => check_event(rec, from),
            Self::TimeshiftAbs => check_timeshift_abs(rec, at),
            Self::TimeshiftRel => check_timeshift_rel(rec, "", 10),
            Self::MonoTimeshiftRel => check_timeshift_rel(rec, "mono-", 10),
            Self::Master => check_master(rec, from),
            Self::EventTrue => check_event_true(rec),
            Self::Rewind => check_rewind(rec, 12),
            Self::KodiShift => check_kodi_shift(rec, at),
            Self::Live => check_live(rec),
            Self::Download(path) => check_download(rec, path, 10.0),
            Self::Endless(path) => check_reads(rec, path, 3),
        }
    }
}

#[test]
fn ffprobe_reads_every_playlist_and_mpegts_form() {
    let rec = record(20);
    let (from, at) = (rec.start + 2, rec.start + 4);
    let lutc = rec.end();
    let checks = [
        (
            "archive VOD",
            Check::Vod(format!("/ch1/archive-{from}-10.m3u8?{TOKEN}")),
        ),
        (
            "index VOD",
            Check::Vod(format!("/ch1/index-{from}-10.m3u8?{TOKEN}")),
        ),
        ("start-over EVENT", Check::Event),
        ("event=true into the future", Check::EventTrue),
        ("timeshift_abs", Check::TimeshiftAbs),
        ("timeshift_rel", Check::TimeshiftRel),
        ("mono timeshift_rel (Kodi)", Check::MonoTimeshiftRel),
        (
            "mono VOD",
            Check::Vod(format!("/ch1/mono-{from}-10.m3u8?{TOKEN}")),
        ),
        (
            "video VOD",
            Check::Vod(format!("/ch1/video-{from}-10.m3u8?{TOKEN}")),
        ),
        ("multi-track master", Check::Master),
        ("rewind", Check::Rewind),
        ("Kodi shift", Check::KodiShift),
        ("live", Check::Live),
        (
            "archive .ts",
            Check::Download(format!("/ch1/archive-{from}-10.ts?{TOKEN}")),
        ),
        (
            "archive mpegts",
            Check::Download(format!("/ch1/archive/{from}/10/mpegts?{TOKEN}")),
        ),
        (
            "live mpegts",
            Check::Endless(format!("/ch1/mpegts?{TOKEN}")),
        ),
        (
            "timeshift_abs/T",
            Check::Endless(format!("/ch1/timeshift_abs/{at}?{TOKEN}")),
        ),
        (
            "timeshift_abs-T.ts",
            Check::Endless(format!("/ch1/timeshift_abs-{at}.ts?{TOKEN}")),
        ),
        (
            "timeshift_rel/N",
            Check::Endless(format!("/ch1/timeshift_rel/10?{TOKEN}")),
        ),
        (
            "Kodi shift mpegts",
            Check::Endless(format!("/ch1/mpegts?utc={at}&lutc={lutc}&{TOKEN}")),
        ),
    ];
    let results: Vec<(String, Result<String, String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = checks
            .iter()
            .map(|(name, check)| (name, scope.spawn(|| check.run(&rec, from, at))))
            .collect();
        handles
            .into_iter()
            .map(|(name, h)| {
                let result = h.join().unwrap_or_else(|_| Err("panicked".into()));
                ((*name).to_owned(), result)
            })
            .collect()
    });
    let failures: Vec<String> = results
        .iter()
        .filter_map(|(name, r)| r.as_ref().err().map(|e| format!("{name}: {e}")))
        .collect();
    for (name, r) in &results {
        if let Ok(ok) = r {
            println!("{name}: {ok}");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A page playing each `(name, url, config)` in its own muted `<video>`
/// with the player `script` (served by [`serve_page`]), started by `start`
/// (JavaScript seeing `name`, `url`, `config`, `video` and `log`), logging
/// `currentTime` every 500 ms, each `waiting`, and what `start` logs,
/// through `console.log` as `DVRLOG name ...` lines.
fn mse_page(script: &str, start: &str, streams: &[(&str, String, &str)]) -> String {
    let list: Vec<String> = streams
        .iter()
        .map(|(name, url, config)| {
            let config = if config.is_empty() { "{}" } else { config };
            format!("[\"{name}\", \"{url}\", {config}]")
        })
        .collect();
    format!(
        r#"<!doctype html><html><body><script src="/{script}"></script><script>
const log = (...a) => console.log("DVRLOG " + a.join(" "));
if (!window.MediaSource) log("page fatal no MediaSource");
for (const [name, url, config] of [{}]) {{
  const video = document.createElement("video");
  video.muted = true;
  document.body.appendChild(video);
  video.addEventListener("waiting", () => log(name, "waiting", video.currentTime.toFixed(3)));
  {start}
  setInterval(() => log(name, "t", performance.now().toFixed(0), video.currentTime.toFixed(3)), 500);
}}
</script></body></html>"#,
        list.join(", ")
    )
}

/// hls.js with each stream's config; every hls.js error logged (fatal ones
/// as such) and each media playlist load.
fn player_page(streams: &[(&str, String, &str)]) -> String {
    mse_page(
        "hls.min.js",
        r#"if (!Hls.isSupported()) log("page fatal hls.js finds no MediaSource for H.264 + AAC");
  const hls = new Hls(config);
  hls.on(Hls.Events.ERROR, (_, d) => log(name, d.fatal ? "fatal" : "error", d.type, d.details,
    d.response ? d.response.code : "", d.url || (d.frag && d.frag.url) || ""));
  hls.on(Hls.Events.MANIFEST_PARSED, () =>
    video.play().catch(e => log(name, "fatal play()", e)));
  hls.on(Hls.Events.LEVEL_LOADED, (_, d) => log(name, "loaded", d.details.url));
  hls.loadSource(url);
  hls.attachMedia(video);"#,
        streams,
    )
}

/// dash.js: every error event fatal to the test, each manifest load logged.
fn dash_page(streams: &[(&str, String, &str)]) -> String {
    mse_page(
        "dash.all.min.js",
        r#"const player = dashjs.MediaPlayer().create();
  player.updateSettings({debug: {logLevel: dashjs.Debug.LOG_LEVEL_WARNING}});
  const events = dashjs.MediaPlayer.events;
  player.on(events.ERROR, e => log(name, "fatal", JSON.stringify(e.error || e).slice(0, 300)));
  player.on(events.PLAYBACK_ERROR, e => log(name, "fatal playback", JSON.stringify(e.error || e).slice(0, 300)));
  player.on(events.MANIFEST_LOADED, e => log(name, "loaded", (e.data && e.data.url) || url));
  player.initialize(video, url, true);"#,
        streams,
    )
}

/// Shaka Player: critical errors fatal to the test, recoverable ones
/// noted; started at `config.start` seconds when given; each manifest
/// request logged.
fn shaka_page(streams: &[(&str, String, &str)]) -> String {
    mse_page(
        "shaka-player.compiled.js",
        r#"shaka.polyfill.installAll();
  const player = new shaka.Player();
  player.addEventListener("error", e => log(name, e.detail.severity === 2 ? "fatal" : "error",
    e.detail.code, JSON.stringify(e.detail.data).slice(0, 300)));
  player.getNetworkingEngine().registerRequestFilter((type, request) => {
    if (type === shaka.net.NetworkingEngine.RequestType.MANIFEST) log(name, "loaded", request.uris[0]);
  });
  player.attach(video)
    .then(() => player.load(url, config.start))
    .then(() => video.play())
    .catch(e => log(name, "fatal load", e.code, e.message || ""));"#,
        streams,
    )
}

/// One player's log: `(page ms, currentTime)` samples, errors and stalls.
#[derive(Clone, Debug, Default)]
struct PlayerLog {
    samples: Vec<(f64, f64)>,
    fatal: Vec<String>,
    errors: Vec<String>,
    /// The media playlist URLs hls.js loaded (reloads of live ones too).
    loads: Vec<String>,
}

impl PlayerLog {
    /// The samples from the first advance of `currentTime` on: an advance
    /// no faster than twice the page's clock plus a second, so a player's
    /// seek to the start of a dynamic MPD (0 to the tape's epoch seconds),
    /// caught between two samples under load, is not taken for playing.
    fn playing(&self) -> &[(f64, f64)] {
        let start = self
            .samples
            .windows(2)
            .position(|w| {
                let advance = w[1].1 - w[0].1;
                advance > 0.0 && advance <= (w[1].0 - w[0].0) / 1000.0 * 2.0 + 1.0
            })
            .unwrap_or(self.samples.len());
        &self.samples[start..]
    }

    fn played_ms(&self) -> f64 {
        let playing = self.playing();
        playing.last().map_or(0.0, |l| l.0 - playing[0].0)
    }

    /// The longest wall-clock stretch without `currentTime` advancing, and
    /// how far `currentTime` advanced, over the first `span_ms` of playing.
    fn judge(&self, span_ms: f64) -> (f64, f64) {
        let playing = self.playing();
        let Some(&(t0, c0)) = playing.first() else {
            return (f64::MAX, 0.0);
        };
        let mut longest_stall = 0.0_f64;
        let (mut moved_at, mut last_ct, mut advanced) = (t0, c0, 0.0);
        for &(t, ct) in playing.iter().take_while(|(t, _)| t - t0 <= span_ms) {
            if ct > last_ct {
                moved_at = t;
                advanced = ct - c0;
            }
            last_ct = ct;
            longest_stall = longest_stall.max(t - moved_at);
        }
        (longest_stall, advanced)
    }
}

/// Parses `DVRLOG name kind ...` from Chromium's console lines on stderr.
fn note(logs: &mut std::collections::BTreeMap<String, PlayerLog>, line: &str) {
    let Some(at) = line.find("\"DVRLOG ") else {
        return;
    };
    let msg = line[at + 8..]
        .split("\", source:")
        .next()
        .unwrap_or_default();
    let mut words = msg.split(' ');
    let (Some(name), Some(kind)) = (words.next(), words.next()) else {
        return;
    };
    let log = logs.entry(name.to_owned()).or_default();
    match kind {
        "t" => {
            let mut n = words.filter_map(|w| w.parse::<f64>().ok());
            if let (Some(t), Some(ct)) = (n.next(), n.next()) {
                log.samples.push((t, ct));
            }
        }
        "fatal" => log.fatal.push(msg.to_owned()),
        "loaded" => log.loads.extend(words.next().map(str::to_owned)),
        _ => log.errors.push(msg.to_owned()),
    }
}

/// How long each player must play, in page time.
const PLAY_MS: f64 = 7_000.0;

/// Opens `page` in Chromium and collects the `DVRLOG` lines of `streams`
/// until every player has played [`PLAY_MS`] (or failed), or 25 s of page
/// time have passed.
fn watch_players(
    page: String,
    streams: &[(&str, String, &str)],
) -> std::collections::BTreeMap<String, PlayerLog> {
    let chromium = open_in_chromium(serve_page(page));
    let mut logs = std::collections::BTreeMap::new();
    for line in BufReader::new(chromium.stderr).lines() {
        let Ok(line) = line else { break };
        note(&mut logs, &line);
        let page_ms = logs
            .values()
            .filter_map(|l: &PlayerLog| l.samples.last().map(|s| s.0))
            .fold(0.0, f64::max);
        let done = streams.iter().all(|(name, _, _)| {
            logs.get(*name)
                .is_some_and(|l| l.played_ms() >= PLAY_MS || !l.fatal.is_empty())
        });
        if done || page_ms > 25_000.0 || logs.contains_key("page") {
            break;
        }
    }
    if let Some(page) = logs.get("page") {
        panic!("page: {:?}", page.fatal);
    }
    logs
}

/// What is wrong with how player `name` played `url`: a fatal error, too
/// little playing, a stall, or `currentTime` not keeping up.
fn played_through(name: &str, url: &str, log: &PlayerLog) -> Option<String> {
    let (stall, advanced) = log.judge(PLAY_MS);
    println!(
        "{name}: played {:.1} s of page time, currentTime +{advanced:.2} s, longest stall {stall:.0} ms, errors {:?}",
        log.played_ms() / 1e3,
        log.errors
    );
    if !log.fatal.is_empty() {
        Some(format!(
            "{name} ({url}): fatal player errors {:?}",
            log.fatal
        ))
    } else if log.played_ms() < PLAY_MS {
        Some(format!(
            "{name} ({url}): played {:.1} s, not {} s; samples {:?}; errors {:?}",
            log.played_ms() / 1e3,
            PLAY_MS / 1e3,
            log.samples,
            log.errors
        ))
    } else if stall > 1_500.0 || advanced < PLAY_MS / 1e3 - 2.0 {
        Some(format!(
            "{name} ({url}): currentTime stalled {stall:.0} ms, advanced {advanced:.2} s in {} s; samples {:?}",
            PLAY_MS / 1e3,
            log.samples
        ))
    } else {
        None
    }
}

#[test]
fn hlsjs_in_chromium_plays_vod_start_over_timeshift_abs_and_a_master() {
    // Missing tools fail before the recording, not after.
    hlsjs();
    which("chromium");
    let rec = record(20);
    let (from, at) = (rec.start + 2, rec.start + 4);
    let streams = [
        (
            "vod",
            rec.url(&format!("/ch1/index-{from}-10.m3u8?{TOKEN}")),
            "{}",
        ),
        // Start-over plays from the start of the programme.
        (
            "event",
            rec.url(&format!("/ch1/index-{from}-now.m3u8?{TOKEN}")),
            "{startPosition: 0}",
        ),
        (
            "timeshift_abs",
            rec.url(&format!("/ch1/timeshift_abs-{at}.m3u8?{TOKEN}")),
            "{}",
        ),
        // Two languages: video from tracks-1/, audio renditions from
        // tracks-2/ and tracks-3/, each segment cut by PID.
        (
            "master",
            rec.url(&format!("/ch2/index-{from}-10.m3u8?{TOKEN}")),
            "{}",
        ),
        // The same as CMAF HLS: fMP4 made from the stored TS, muxed, and
        // per track under a master.
        (
            "vod_fmp4",
            rec.url(&format!("/ch1/index-{from}-10.fmp4.m3u8?{TOKEN}")),
            "{}",
        ),
        (
            "master_fmp4",
            rec.url(&format!("/ch2/index-{from}-10.fmp4.m3u8?{TOKEN}")),
            "{}",
        ),
    ];
    let logs = watch_players(player_page(&streams), &streams);
    let mut failures = Vec::new();
    for (name, url, _) in &streams {
        let log: PlayerLog = logs.get(*name).cloned().unwrap_or_default();
        println!("{name}: hls.js loaded {:?}", log.loads);
        let started: std::collections::BTreeSet<&str> = log
            .loads
            .iter()
            .filter_map(|u| u.split("started=").nth(1))
            .collect();
        if !log.loads.iter().all(|u| u.contains(TOKEN)) {
            failures.push(format!(
                "{name}: a playlist load lost `{TOKEN}`: {:?}",
                log.loads
            ));
        }
        if name.starts_with("master") && !log.loads.iter().any(|u| u.contains("/ch2/tracks-1/")) {
            failures.push(format!(
                "{name}: the video variant tracks-1/ was not loaded: {:?}",
                log.loads
            ));
        }
        if !name.starts_with("vod") && !name.starts_with("master") && log.loads.len() < 2 {
            failures.push(format!(
                "{name}: a live playlist not reloaded: {:?}",
                log.loads
            ));
        }
        if *name == "timeshift_abs"
            && (started.len() != 1 || log.loads.iter().any(|u| !u.contains("started=")))
        {
            // Each reload without the redirect's `started=` would restart
            // the viewer's timeline at T.
            failures.push(format!(
                "{name}: reloads do not keep one `started=`: {:?}",
                log.loads
            ));
        }
        failures.extend(played_through(name, url, &log));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn dashjs_in_chromium_plays_live_a_range_and_start_over_from_its_start() {
    dashjs();
    which("chromium");
    let rec = record(20);
    let from = rec.start + 2;
    let streams = [
        ("live", rec.url(&format!("/ch1/index.mpd?{TOKEN}")), ""),
        // A complete range: a static MPD.
        (
            "range",
            rec.url(&format!("/ch1/archive-{from}-10.mpd?{TOKEN}")),
            "",
        ),
        // Start-over: dynamic, joined at FROM through the MPD anchor.
        (
            "start_over",
            rec.url(&format!(
                "/ch1/archive-{from}-now.mpd?{TOKEN}#t=posix:{from}"
            )),
            "",
        ),
        // Two languages: three AdaptationSets.
        (
            "languages",
            rec.url(&format!("/ch2/archive-{from}-10.mpd?{TOKEN}")),
            "",
        ),
    ];
    let logs = watch_players(dash_page(&streams), &streams);
    let failures = dash_failures(&streams, &logs, from, "dash.js");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn shaka_in_chromium_plays_live_a_range_and_start_over_from_its_start() {
    shaka();
    which("chromium");
    let rec = record(20);
    let from = rec.start + 2;
    let start = format!("{{start: {from}}}");
    let streams = [
        ("live", rec.url(&format!("/ch1/index.mpd?{TOKEN}")), ""),
        (
            "range",
            rec.url(&format!("/ch1/archive-{from}-10.mpd?{TOKEN}")),
            "",
        ),
        // Start-over, loaded at FROM: a dynamic MPD's presentation time is
        // the tape's, in epoch seconds.
        (
            "start_over",
            rec.url(&format!("/ch1/archive-{from}-now.mpd?{TOKEN}")),
            start.as_str(),
        ),
        (
            "languages",
            rec.url(&format!("/ch2/archive-{from}-10.mpd?{TOKEN}")),
            "",
        ),
    ];
    let logs = watch_players(shaka_page(&streams), &streams);
    let failures = dash_failures(&streams, &logs, from, "Shaka");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// What is wrong with how a DASH player played `streams` (named as in the
/// dash.js and Shaka tests): the live MPD not reloaded, start-over not
/// starting at `from`, or any stream not playing through.
fn dash_failures(
    streams: &[(&str, String, &str)],
    logs: &std::collections::BTreeMap<String, PlayerLog>,
    from: i64,
    player: &str,
) -> Vec<String> {
    let mut failures = Vec::new();
    for (name, url, _) in streams {
        let log: PlayerLog = logs.get(*name).cloned().unwrap_or_default();
        println!("{name}: {player} loaded {:?}", log.loads);
        if !log.loads.iter().all(|u| u.contains(TOKEN)) {
            failures.push(format!(
                "{name}: a manifest load lost `{TOKEN}`: {:?}",
                log.loads
            ));
        }
        if *name == "live" && log.loads.len() < 2 {
            failures.push(format!(
                "{name}: a dynamic MPD not reloaded: {:?}",
                log.loads
            ));
        }
        // A dynamic MPD's presentation time is the tape's (epoch seconds):
        // start-over must begin at FROM, not near live.
        if *name == "start_over" {
            match log.playing().first() {
                Some(&(_, at)) if (at - from as f64).abs() <= 3.0 => {}
                other => failures.push(format!(
                    "{name}: playback began at {other:?}, not at {from}"
                )),
            }
        }
        failures.extend(played_through(name, url, &log));
    }
    failures
}
