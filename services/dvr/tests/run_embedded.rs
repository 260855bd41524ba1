//! `dvr run` as a real process: ffmpeg sends a live stream over UDP on
//! loopback, the DVR records it, ffprobe judges what it serves, and a
//! SIGTERM restart keeps every recorded segment.
//!
//! ffmpeg and ffprobe are required: `make test-deps` installs them.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dvr_testkit::ffmpeg;

use support::{
    dvr_bin, ffprobe_duration, free_tcp_port, free_udp_port, get, recorded_span, segments,
    start_dvr, start_source, text, wait_for, Procs,
};

fn files_under(dir: &Path, ext: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                files_under(&p, ext)
            } else {
                usize::from(p.extension().is_some_and(|x| x == ext))
            }
        })
        .sum()
}

/// A config recording stream `ch1` from the given UDP ports (in priority
/// order).
fn write_config(dir: &Path, http: u16, udp: &[u16]) -> PathBuf {
    let inputs: Vec<String> = udp.iter().map(|p| format!("udp://127.0.0.1:{p}")).collect();
    support::write_config(dir, http, &inputs)
}

/// Records, stops `dvr run` with `signal`, restarts it, and checks that every
/// segment served before is still served, byte for byte, after a
/// discontinuity. `check_stopped` looks at the data while it is down.
fn restart_keeps_every_segment(signal: &str, check_stopped: impl Fn(&Path)) {
    let dir = tempfile::tempdir().unwrap();
    let (http, udp) = (free_tcp_port(), free_udp_port());
    let config = write_config(dir.path(), http, &[udp]);
    let data = dir.path().join("data");
    let mut procs = Procs(vec![
        start_dvr(&config, &data),
        start_source(udp, "testsrc2", 90),
    ]);
    wait_for("8 s of recording", Duration::from_secs(40), || {
        recorded_span(http, "ch1").is_some_and(|(from, to)| to - from >= 8)
    });
    let (start, end) = recorded_span(http, "ch1").unwrap();
    let (before, _) = segments(&text(
        http,
        &format!("/ch1/archive-{start}-{}.m3u8", end - start),
    ));
    let bytes: Vec<Vec<u8>> = before
        .iter()
        .map(|(_, _, uri)| get(http, &format!("/ch1/{uri}")).1)
        .collect();
    let pid = procs.0[0].id().to_string();
    assert!(Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap()
        .success());
    let status = procs.0[0].wait().unwrap();
    if signal == "-TERM" {
        assert!(status.success(), "dvr run exits 0 on SIGTERM, got {status}");
    }
    check_stopped(dir.path());
    procs.0[0] = start_dvr(&config, &data);
    wait_for(
        "recording after the restart",
        Duration::from_secs(30),
        || recorded_span(http, "ch1").is_some_and(|(_, to)| to >= end + 6),
    );
    let (_, end_after) = recorded_span(http, "ch1").unwrap();
    let after = text(
        http,
        &format!("/ch1/archive-{start}-{}.m3u8", end_after - start),
    );
    let (after_segments, discontinuities) = segments(&after);
    for ((_, _, uri), old) in before.iter().zip(&bytes) {
        assert!(
            after_segments.iter().any(|(_, _, u)| u == uri),
            "{uri} lost after {signal}:\n{after}"
        );
        assert_eq!(
            &get(http, &format!("/ch1/{uri}")).1,
            old,
            "{uri} changed after {signal}"
        );
    }
    assert!(
        discontinuities >= 1,
        "the restart is a discontinuity:\n{after}"
    );
    assert!(after_segments.len() > before.len());
}

#[test]
fn sigterm_writes_the_open_window_and_the_restart_keeps_every_segment() {
    restart_keeps_every_segment("-TERM", |dir| {
        assert!(
            files_under(&dir.join("archive/ch1"), "ts") >= 1,
            "a chunk was written"
        );
        assert!(
            files_under(&dir.join("archive/ch1"), "idx") >= 1,
            "its index was written"
        );
    });
}

#[test]
fn sigkill_loses_nothing_that_was_in_the_live_log() {
    restart_keeps_every_segment("-KILL", |dir| {
        assert_eq!(
            files_under(&dir.join("archive/ch1"), "ts"),
            0,
            "nothing archived yet"
        );
    });
}

#[test]
fn the_backup_input_fills_in_with_at_most_one_segment_of_gap() {
    let dir = tempfile::tempdir().unwrap();
    let (http, primary, backup) = (free_tcp_port(), free_udp_port(), free_udp_port());
    let config = write_config(dir.path(), http, &[primary, backup]);
    let data = dir.path().join("data");
    let mut procs = Procs(vec![
        start_dvr(&config, &data),
        start_source(primary, "testsrc2", 90),
        start_source(backup, "smptebars", 90),
    ]);
    wait_for("6 s on the primary", Duration::from_secs(40), || {
        recorded_span(http, "ch1").is_some_and(|(from, to)| to - from >= 6)
    });
    let _ = procs.0[1].kill();
    let _ = procs.0[1].wait();
    let (start, at_loss) = recorded_span(http, "ch1").unwrap();
    wait_for("8 s on the backup", Duration::from_secs(40), || {
        recorded_span(http, "ch1").is_some_and(|(_, to)| to >= at_loss + 8)
    });
    procs.0[1] = start_source(primary, "testsrc2", 90);
    let (_, at_return) = recorded_span(http, "ch1").unwrap();
    wait_for(
        "6 s after the primary returns",
        Duration::from_secs(40),
        || recorded_span(http, "ch1").is_some_and(|(_, to)| to >= at_return + 6),
    );
    let (_, end) = recorded_span(http, "ch1").unwrap();
    let url = format!("/ch1/archive-{start}-{}.m3u8", end - start);
    let (all, _) = segments(&text(http, &url));
    let worst_gap = all
        .windows(2)
        .map(|w| w[1].0 - (w[0].0 + w[0].1))
        .max()
        .unwrap();
    assert!(worst_gap <= 2_500, "a gap of {worst_gap} ms at a switch");
    let covered: i64 = all.iter().map(|(_, d, _)| d).sum();
    assert!(
        covered >= (end - start - 5) * 1000,
        "{covered} ms of {} s",
        end - start
    );
    let duration = ffprobe_duration(format!("http://127.0.0.1:{http}{url}"));
    assert!(
        duration >= (end - start - 5) as f64,
        "ffprobe reads {duration} s"
    );
}

#[test]
fn records_live_udp_and_serves_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let (http, udp) = (free_tcp_port(), free_udp_port());
    let config = write_config(dir.path(), http, &[udp]);
    let data = dir.path().join("data");
    let _procs = Procs(vec![
        start_dvr(&config, &data),
        start_source(udp, "testsrc2", 90),
    ]);

    wait_for("18 s of recording", Duration::from_secs(40), || {
        recorded_span(http, "ch1").is_some_and(|(from, to)| to - from >= 18)
    });
    let (start, end) = recorded_span(http, "ch1").unwrap();

    // Live: a window of at most six segments.
    let live = text(http, "/ch1/index.m3u8");
    assert!(segments(&live).0.len() <= 6, "{live}");

    // A 10 s range inside the recording, judged by ffprobe.
    let from = start + 4;
    let url = format!("http://127.0.0.1:{http}/ch1/archive-{from}-10.m3u8");
    let duration = ffprobe_duration(&url);
    assert!(
        (duration - 10.0).abs() <= 2.0,
        "ffprobe says {duration} s for a 10 s range"
    );
    // Its first PROGRAM-DATE-TIME is the start of the segment holding FROM.
    let range = text(http, &format!("/ch1/archive-{from}-10.m3u8"));
    let first_pdt = segments(&range).0[0].0;
    let (whole, _) = segments(&text(
        http,
        &format!("/ch1/archive-{start}-{}.m3u8", end - start),
    ));
    let holder = whole
        .iter()
        .find(|(s, d, _)| *s <= from * 1000 && from * 1000 < s + d)
        .expect("a segment holds FROM");
    assert!(
        (first_pdt - holder.0).abs() <= 100,
        "first PDT {first_pdt} vs segment start {}",
        holder.0
    );
    // The same range as one MPEG-TS download decodes cleanly.
    let ts_url = format!("http://127.0.0.1:{http}/ch1/archive-{from}-10.ts");
    ffmpeg::run_clean(ffmpeg::ffmpeg().args(["-i", &ts_url, "-f", "null", "-"]));
}

#[test]
fn a_wrong_config_key_is_one_clear_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yaml");
    std::fs::write(
        &config,
        "version: 1\nstreams:\n  ch1:\n    inputs: [ \"udp://127.0.0.1:1234\" ]\n    dvr: { depht: 1d }\n",
    )
    .unwrap();
    let out = Command::new(dvr_bin())
        .args(["run", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("line 5") && lines[0].contains("depht"),
        "{stderr}"
    );
}

/// `on_demand: 3s`: the UDP feed is not captured until a viewer asks for
/// the live playlist; the first one waits for a segment and gets it, and
/// capture stops a few seconds after the last request. Archive requests
/// (`recording_status.json`) do not start it.
#[test]
fn an_on_demand_stream_is_captured_only_while_viewers_ask() {
    let dir = tempfile::tempdir().unwrap();
    let (http, udp) = (free_tcp_port(), free_udp_port());
    let config = dir.path().join("dvr.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nhttp: {{ listen: \"127.0.0.1:{http}\" }}\narchive: file://{}/archive\n\
             streams:\n  ch1:\n    inputs: [ \"udp://127.0.0.1:{udp}\" ]\n    on_demand: 3s\n    \
             dvr: {{ depth: 1d, segment_duration: 2s, copy_interval: 1h }}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let _procs = Procs(vec![
        start_dvr(&config, &dir.path().join("data")),
        start_source(udp, "testsrc2", 120),
    ]);
    wait_for("the server", Duration::from_secs(30), || {
        get(http, "/ch1/recording_status.json").0 == 200
    });
    support::let_run(Duration::from_secs(5));
    assert_eq!(
        recorded_span(http, "ch1"),
        None,
        "captured before anyone asked"
    );

    let asked = std::time::Instant::now();
    let asked_s = support::wall_clock_ms() / 1000;
    let (status, body) = get(http, "/ch1/index.m3u8");
    let live = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 200, "{live}");
    assert!(
        !segments(&live).0.is_empty(),
        "the first viewer gets a segment: {live}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "{:?}",
        asked.elapsed()
    );
    // Viewers keep asking for 8 s: it keeps running.
    for _ in 0..4 {
        support::let_run(Duration::from_secs(2));
        assert_eq!(get(http, "/ch1/index.m3u8").0, 200);
    }
    let (_, running_to) = recorded_span(http, "ch1").expect("recorded while asked for");
    assert!(running_to - asked_s >= 5, "still growing after 8 s");

    // Nobody asks: capture stops, so the tape stops growing.
    support::let_run(Duration::from_secs(8));
    let (_, stopped_at) = recorded_span(http, "ch1").unwrap();
    support::let_run(Duration::from_secs(6));
    assert_eq!(
        recorded_span(http, "ch1").unwrap().1,
        stopped_at,
        "the tape grew with no viewer"
    );
}
