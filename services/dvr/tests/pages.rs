//! The browser pages in a real browser: playwright-core drives Debian's
//! headless Chromium through `embed.html` and `/admin/` of a real `dvr
//! run` (tests/pages/drive.cjs measures, this test judges):
//!
//! - the player page plays live (`currentTime` advances), and a range
//!   given by `?from=&to=`;
//! - `?dvr=true` draws the recorded spans `recording_status.json` lists,
//!   for a tape with a gap (the source silent for a while), each at its
//!   place on the timeline;
//! - a click in the past plays from there: the PROGRAM-DATE-TIME at the
//!   start of what plays is within one segment of the second clicked;
//! - a drag selects a range and offers `archive-FROM-DUR.mp4`, which
//!   ffprobe reads with the selected duration and Chromium's own `<video>`
//!   plays and seeks in;
//! - the calendar has a button for each day the hour bitmap has recorded
//!   hours in, and a day's button shows that day on the timeline;
//! - the seeds' query options: `play_duration` stops playback, `ago`
//!   plays from that far behind live, `autoplay=false` waits,
//!   `realtime=true` is answered with a line naming it, a malformed
//!   `from` is refused with a line naming it; the speed and the link to
//!   the moment playing work;
//! - the operator page shows the archive's storage answering and the
//!   input each ingest reports playing, lists the streams and adds a lock
//!   that
//!   `recording_status.json` then shows, its calls carrying a Bearer
//!   token and no cookie;
//! - a protected stream's page without a token is `403` and says so; with
//!   one it plays, and every request for the stream carries the token;
//! - the API refuses to create a stream named `admin` or `_dvr`;
//! - no page asks any other origin for anything.
//!
//! Screenshots at desktop and phone widths go to `target/screenshots/`.
//! chromium, node and playwright-core are required (never skipped):
//! `make test-deps` (scripts/install-test-deps.sh) installs them.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::{
    free_tcp_port, free_udp_port, get, playwright_core, send_with, start_dvr_with_env,
    start_source, testdata, wait_for, which, Procs, INSTALL,
};

const ADMIN_TOKEN: &str = "pages-admin-token";
const SEGMENT_S: f64 = 2.0;
/// How often the player page reads recording_status.json (embed.js).
const REFRESH_S: i64 = 5;
/// The `securetoken` secret of the protected stream `paid`.
const PAID_KEY: &str = "pages-secret";

/// `ranges` of `recording_status.json` over everything: `(from, to)`;
/// none while the server is not up.
fn ranges(port: u16) -> Vec<(i64, i64)> {
    let hour_ago = support::wall_clock_ms() / 1000 - 3600;
    let (status, body) = get(
        port,
        &format!("/ch1/recording_status.json?from={hour_ago}&request=ranges"),
    );
    if status != 200 {
        return Vec::new();
    }
    let v: Value = serde_json::from_slice(&body).unwrap();
    v[0]["ranges"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|r| {
                    let from = r["from"].as_i64().unwrap();
                    (from, from + r["duration"].as_i64().unwrap())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn screenshots() -> PathBuf {
    let dir = dvr_common::fuzz_corpus::repo_path("target").join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_player_and_operator_pages_in_chromium() {
    // Missing tools fail before the recording, not after.
    let chromium = which("chromium");
    let node = which("node");
    let playwright = playwright_core();

    let dir = tempfile::tempdir().unwrap();
    let http = free_tcp_port();
    let udp = free_udp_port();
    let clip = testdata("h264_aac_720p.ts").canonicalize().unwrap();
    let config = dir.path().join("dvr.yaml");
    let stream = |name: &str, input: &str, extra: &str| {
        format!(
            "  {name}:\n    inputs: [ \"{input}\" ]\n    \
             dvr: {{ depth: 1d, segment_duration: 2s, copy_interval: 1h }}\n{extra}"
        )
    };
    std::fs::write(
        &config,
        format!(
            "version: 1\nhttp: {{ listen: \"127.0.0.1:{http}\" }}\narchive: file://{}/archive\n\
             api: {{ tokens: [ \"${{DVR_ADMIN_TOKEN}}\" ] }}\nstreams:\n{}{}",
            dir.path().display(),
            stream("ch1", &format!("udp://127.0.0.1:{udp}"), ""),
            stream(
                "paid",
                &format!("file://{}?loop=true", clip.display()),
                "    auth: \"securetoken://${DVR_PAGES_KEY}\"\n"
            ),
        ),
    )
    .unwrap();
    let mut procs = Procs(vec![start_dvr_with_env(
        &config,
        &dir.path().join("data"),
        &[
            ("DVR_ADMIN_TOKEN", ADMIN_TOKEN),
            ("DVR_PAGES_KEY", PAID_KEY),
        ],
    )]);

    // A tape with a gap: the source sends 12 s, is silent for 8 s, then
    // sends until the end of the test.
    let mut first = start_source(udp, "testsrc2", 12);
    wait_for("8 s of recording", Duration::from_secs(40), || {
        ranges(http).first().is_some_and(|(f, t)| t - f >= 8)
    });
    first.wait().unwrap();
    support::let_run(Duration::from_secs(8));
    procs.0.push(start_source(udp, "smptebars", 300));
    let mut seen = Vec::new();
    wait_for(
        "recording again after the gap",
        Duration::from_secs(40),
        || {
            seen = ranges(http);
            seen.len() == 2 && seen[1].1 - seen[1].0 >= 10
        },
    );
    let tape = ranges(http);

    // The pages' paths cannot be taken by a stream.
    for reserved in ["admin", "_dvr"] {
        let (status, _, body) = send_with(
            http,
            "POST",
            &format!("/api/v1/streams/{reserved}"),
            &format!("Authorization: Bearer {ADMIN_TOKEN}\r\n"),
            r#"{"inputs": ["udp://127.0.0.1:9"]}"#,
        );
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 400, "{reserved}: {body}");
        assert!(
            body.contains("reserved for the server's own pages"),
            "{body}"
        );
    }
    let lock_from = tape[0].0 + 2;

    let now = support::wall_clock_ms() / 1000;
    let paid_token = dvr_auth::securetoken::sign(
        PAID_KEY,
        false,
        "paid",
        "127.0.0.1",
        "pagessalt",
        now - 60,
        now + 3600,
    );
    let shots = screenshots();
    let out = Command::new("timeout")
        .arg("180")
        .arg(&node)
        .arg(dvr_common::fuzz_corpus::repo_path(
            "services/dvr/tests/pages/drive.cjs",
        ))
        .env("PLAYWRIGHT", &playwright)
        .env("CHROMIUM", &chromium)
        .env("BASE", format!("http://127.0.0.1:{http}"))
        .env("STREAM", "ch1")
        .env("RANGE_FROM", (tape[1].0 + 1).to_string())
        .env("PROTECTED", "paid")
        .env("PROTECTED_TOKEN", &paid_token)
        .env("API_TOKEN", ADMIN_TOKEN)
        .env("SHOTS", &shots)
        .env("LOCK_FROM", lock_from.to_string())
        // The calendar's days are the browser's: make them UTC days.
        .env("TZ", "UTC")
        .output()
        .unwrap_or_else(|e| panic!("node: {e}: {INSTALL}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the browser run failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let steps: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let step = |name: &str| -> &Value {
        steps
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("no {name} step in\n{stdout}"))
    };
    let num = |v: &Value| v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));

    // Live plays.
    let live = step("live");
    assert_eq!(live["source"], "index.m3u8");
    let advanced = num(&live["t1"]) - num(&live["t0"]);
    assert!(
        advanced > 2.0,
        "live currentTime advanced {advanced} s in 3 s"
    );

    // `?from=&to=` plays that range as VOD.
    let range = step("range");
    assert_eq!(range["source"], format!("archive-{}-6.m3u8", tape[1].0 + 1));
    let duration = num(&range["duration"]);
    assert!(
        (4.0..=10.0).contains(&duration),
        "range of 6 s lasts {duration} s"
    );

    // Every recorded span in view is drawn, where it belongs.
    let timeline = step("timeline");
    let view = &timeline["view"];
    let (view_from, view_to, width) = (num(&view["from"]), num(&view["to"]), num(&view["width"]));
    let listed: Vec<(i64, i64)> = timeline["status"][0]["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let from = r["from"].as_i64().unwrap();
            (from, from + r["duration"].as_i64().unwrap())
        })
        .collect();
    let drawn: Vec<(i64, i64)> = timeline["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["from"].as_i64().unwrap(), s["to"].as_i64().unwrap()))
        .collect();
    assert!(listed.len() >= 2, "the tape has a gap: {listed:?}");
    // The page drew from its last refresh (every 5 s), the status was read
    // after it: the newest range may have grown since by a few segments,
    // every other edge is the same second.
    let n = listed.len();
    assert_eq!(drawn.len(), n, "drawn {drawn:?} vs listed {listed:?}");
    assert_eq!(drawn[..n - 1], listed[..n - 1], "closed ranges");
    assert_eq!(drawn[n - 1].0, listed[n - 1].0, "the newest range's start");
    let grown = listed[n - 1].1 - drawn[n - 1].1;
    assert!(
        (0..=REFRESH_S + SEGMENT_S as i64).contains(&grown),
        "drawn {drawn:?} vs listed {listed:?}"
    );
    for s in timeline["spans"].as_array().unwrap() {
        let x = |t: f64| (t.clamp(view_from, view_to) - view_from) / (view_to - view_from) * width;
        for (edge, at) in [("left", num(&s["from"])), ("right", num(&s["to"]))] {
            let off = (num(&s[edge]) - x(at)).abs();
            assert!(off <= 2.0, "{edge} edge of {s} is {off:.1} px off");
        }
    }
    // The left edge is the oldest time shown: the tape's start.
    assert!(
        view_from <= listed[0].0 as f64 && view_to >= listed[1].1 as f64 - 10.0,
        "view {view_from}..{view_to} vs {listed:?}"
    );

    // A click in the past plays from there.
    let seek = step("seek");
    let target = num(&seek["target"]);
    assert_eq!(seek["source"], format!("archive-{target}-now.m3u8"));
    let start = num(&seek["playhead"]) - num(&seek["currentTime"]);
    assert!(
        (start - target).abs() <= SEGMENT_S + 0.5,
        "clicked {target}, playback starts at PROGRAM-DATE-TIME {start:.2}"
    );

    // The speed holds across the new source; the link names the moment.
    assert_eq!(num(&seek["playbackRate"]), 2.0, "{seek}");
    let link = seek["link"].as_str().unwrap();
    let linked: f64 = link
        .split_once("embed.html?dvr=true&from=")
        .and_then(|(_, t)| t.parse().ok())
        .unwrap_or_else(|| panic!("link {link}"));
    assert!(
        (linked - num(&seek["linkPlayhead"])).abs() <= 1.5,
        "link {link} vs playhead {}",
        seek["linkPlayhead"]
    );

    // A drag offers the range as MP4.
    let download = step("select")["download"].as_str().unwrap().to_owned();
    let (download_path, download_query) = download.split_once('?').unwrap_or((&download, ""));
    let parts: Vec<&str> = download_path
        .strip_prefix("/ch1/archive-")
        .and_then(|d| d.strip_suffix(".mp4"))
        .unwrap_or_else(|| panic!("download link {download}"))
        .split('-')
        .collect();
    let (sel_from, sel_dur): (i64, i64) = (parts[0].parse().unwrap(), parts[1].parse().unwrap());
    let expect_from = view_from + 0.2 * (view_to - view_from);
    let expect_dur = 0.3 * (view_to - view_from);
    assert!(
        (sel_from as f64 - expect_from).abs() <= 2.0 && (sel_dur as f64 - expect_dur).abs() <= 2.0,
        "selection {sel_from}+{sel_dur}, dragged over {expect_from:.0}+{expect_dur:.0}"
    );

    // The MP4 behind the link: ffprobe reads it, as long as the recorded
    // time in the selection (the export starts at the keyframe before
    // FROM); a selection across the gap asks for the parts joined.
    let sel_to = sel_from + sel_dur;
    let overlapping: Vec<i64> = listed
        .iter()
        .map(|&(f, t)| t.min(sel_to) - f.max(sel_from))
        .filter(|&secs| secs > 0)
        .collect();
    assert_eq!(
        download_query == "ignore_gaps=true",
        overlapping.len() > 1,
        "{download} over {listed:?}"
    );
    let recorded: i64 = overlapping.iter().sum();
    let (status, mp4) = get(http, &download);
    assert_eq!(status, 200, "{download}");
    let file = dir.path().join("selection.mp4");
    std::fs::write(&file, &mp4).unwrap();
    let probe = support::ffprobe_json(&file);
    let seconds: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (seconds - recorded as f64).abs() <= SEGMENT_S + 0.5,
        "the {sel_dur} s selection ({recorded} s recorded) exports {seconds} s"
    );
    assert!(
        probe["streams"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["codec_name"] == "h264"),
        "{probe}"
    );

    // Chromium's <video> reads the same duration, seeks to its middle and
    // plays on from there.
    let video = step("export_video");
    assert!(video["error"].is_null(), "{video}");
    assert!(
        (num(&video["duration"]) - seconds).abs() < 0.1,
        "{video} vs ffprobe's {seconds}"
    );
    assert!(
        (num(&video["at"]) - num(&video["target"])).abs() < 0.5,
        "{video}"
    );
    assert!(num(&video["later"]) > num(&video["at"]) + 0.5, "{video}");

    // The calendar: one button per UTC day (the browser runs in UTC) with
    // a recorded hour, and a day's button shows that day.
    let calendar = step("calendar");
    let bits = calendar["bitmap"]["hour_bitmap"].as_str().unwrap();
    let bits_from = calendar["bitmap"]["hour_bitmap_from"].as_i64().unwrap();
    let mut expected: Vec<i64> = bits
        .char_indices()
        .filter(|(_, c)| *c == '1')
        .map(|(i, _)| (bits_from + i as i64 * 3600).div_euclid(86400) * 86400)
        .collect();
    expected.dedup();
    let days: Vec<i64> = calendar["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["from"].as_i64().unwrap())
        .collect();
    assert!(!expected.is_empty(), "{calendar}");
    assert_eq!(days, expected, "{calendar}");
    let (day_from, day_to) = (days[0], days[0] + 86400);
    let shown = &calendar["view"];
    let (shown_from, shown_to) = (num(&shown["from"]), num(&shown["to"]));
    // The day ends at now at the latest; it starts at its midnight unless
    // it is younger than the shortest view (30 s).
    let ends = (day_to as f64).min(num(&calendar["now"]));
    let starts_at_midnight = (shown_from - day_from as f64).abs() <= 1.0;
    assert!(
        (shown_to - ends).abs() <= 6.0 && (starts_at_midnight || shown_to - shown_from <= 31.0),
        "day {day_from}..{day_to} shows {shown}"
    );

    // The seeds' options.
    let limited = step("play_duration");
    assert!(
        limited["notice"]
            .as_str()
            .unwrap()
            .contains("play_duration=3"),
        "{limited}"
    );
    assert_eq!(limited["later"]["paused"], true, "{limited}");
    assert!(
        (num(&limited["later"]["currentTime"]) - num(&limited["stoppedAt"]["currentTime"])).abs()
            < 0.1,
        "{limited}"
    );
    let ago = step("ago");
    let ago_from: f64 = ago["source"]
        .as_str()
        .and_then(|s| s.strip_prefix("archive-"))
        .and_then(|s| s.strip_suffix("-now.m3u8"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{ago}"));
    assert!((num(&ago["now"]) - 30.0 - ago_from).abs() <= 2.0, "{ago}");
    let realtime = step("realtime");
    assert!(
        realtime["notice"]
            .as_str()
            .unwrap()
            .contains("realtime=true"),
        "{realtime}"
    );
    assert_eq!(realtime["source"], "index.m3u8");
    let waiting = step("no_autoplay");
    // hls.js may set the start position, but nothing plays.
    assert_eq!(waiting["later"]["paused"], true, "{waiting}");
    assert_eq!(
        waiting["before"]["currentTime"], waiting["later"]["currentTime"],
        "{waiting}"
    );
    let bad = step("bad_from");
    assert!(
        bad["message"].as_str().unwrap().contains(r#"from="abc""#),
        "{bad}"
    );
    assert!(bad["source"].is_null(), "{bad}");

    // The operator page lists both streams and adds the lock, with a
    // Bearer token and no cookie.
    let admin = step("admin");
    assert_eq!(admin["listed"], serde_json::json!(["ch1", "paid"]));
    assert_eq!(admin["locks"].as_array().unwrap().len(), 1, "{admin}");
    assert_eq!(admin["cookie"], "");
    let storage = admin["storage"].as_array().unwrap();
    assert_eq!(storage.len(), 1, "{admin}");
    assert_eq!(storage[0]["ok"], true, "{admin}");
    assert_eq!(
        storage[0]["root"],
        format!("file://{}/archive", dir.path().display()),
        "{admin}"
    );
    assert!(
        storage[0]["text"].as_str().unwrap().contains("ch1, paid"),
        "{admin}"
    );
    // What the ingest reports: the input playing, and the signal it lost
    // for the gap; the card shows the same.
    let (status, _, body) = send_with(
        http,
        "GET",
        "/api/v1/streams/ch1/status",
        &format!("Authorization: Bearer {ADMIN_TOKEN}\r\n"),
        "",
    );
    assert_eq!(status, 200);
    let ingest = serde_json::from_slice::<Value>(&body).unwrap()["ingest"].clone();
    let input = format!("udp://127.0.0.1:{udp}");
    assert_eq!(ingest["input"], input.as_str(), "{ingest}");
    assert_eq!(ingest["input_index"], 0, "{ingest}");
    assert!(ingest["signal_losses"].as_u64().unwrap() >= 1, "{ingest}");
    assert!(ingest["bytes"].as_u64().unwrap() > 0, "{ingest}");
    let card = admin["card"].as_str().unwrap();
    assert!(card.contains(&format!("{input} (input 1, on ")), "{card}");
    assert!(card.contains("signal losses"), "{card}");
    let posts = admin["posts"].as_array().unwrap();
    assert!(!posts.is_empty());
    for post in posts {
        assert_eq!(post["authorization"], true, "{post}");
        assert!(post["cookie"].is_null(), "{post}");
    }
    let (status, body) = get(
        http,
        &format!(
            "/ch1/recording_status.json?from={}&request=locks",
            tape[0].0
        ),
    );
    assert_eq!(status, 200);
    let status: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        status[0]["locks"],
        serde_json::json!([{ "from": lock_from, "duration": 600 }]),
        "{status}"
    );

    // The protected stream's page says why nothing plays.
    let refused = step("protected");
    assert_eq!(refused["status"], 403);
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("needs a valid token"),
        "{refused}"
    );
    assert_eq!(num(&refused["currentTime"]), 0.0);

    // With its token it plays, and no request for it lost the token.
    let paid = step("protected_with_token");
    assert_eq!(paid["status"], 200);
    let asked = paid["asked"].as_array().unwrap();
    for form in ["index.m3u8", "recording_status.json", ".ts"] {
        assert!(
            asked.iter().any(|u| u.as_str().unwrap().contains(form)),
            "no {form} request in {asked:?}"
        );
    }
    assert_eq!(
        paid["without"],
        serde_json::json!([]),
        "requests without the token"
    );

    let done = step("done");
    assert_eq!(
        done["foreign"],
        serde_json::json!([]),
        "requests to other origins"
    );
    assert_eq!(done["errors"], serde_json::json!([]), "page errors");
    for shot in [
        "embed-desktop.png",
        "embed-phone.png",
        "admin-desktop.png",
        "admin-phone.png",
    ] {
        let len = std::fs::metadata(shots.join(shot)).map_or(0, |m| m.len());
        assert!(len > 10_000, "{shot}: {len} bytes");
    }
}
