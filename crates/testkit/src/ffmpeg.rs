//! ffmpeg and ffprobe as tests use them: finding them, the argument lists
//! several tests share, and running them so that a failure shows what the
//! program said.
//!
//! The programs are looked up on `PATH` (`make test-deps` installs
//! Debian's); a missing one fails the test with that command, it never
//! skips it.

use std::ffi::OsStr;
use std::process::{Command, Output, Stdio};

/// What to run when ffmpeg or ffprobe is missing.
pub const INSTALL: &str = "run `make test-deps` (scripts/install-test-deps.sh)";

/// H.264 with a keyframe a second (at 25 fps) and AAC: the encoder
/// arguments of every live source the tests make.
pub const H264_AAC: &[&str] = &[
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-g",
    "25",
    "-c:a",
    "aac",
];

/// Fails the test, naming [`INSTALL`], unless `ffmpeg -version` runs.
pub fn require_ffmpeg() {
    let ok = Command::new("ffmpeg")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "ffmpeg is needed by this test and was not found: {INSTALL}"
    );
}

/// lavfi inputs: the video test `pattern` (`testsrc2`, `smptebars` …) at
/// 640x360 and 25 fps, and a sine tone of `tone_hz` at 48 kHz.
pub fn lavfi_inputs(pattern: &str, tone_hz: u32) -> Vec<String> {
    [
        "-f".to_owned(),
        "lavfi".to_owned(),
        "-i".to_owned(),
        format!("{pattern}=size=640x360:rate=25"),
        "-f".to_owned(),
        "lavfi".to_owned(),
        "-i".to_owned(),
        format!("sine=frequency={tone_hz}:sample_rate=48000"),
    ]
    .into()
}

/// `ffmpeg -hide_banner -nostdin -v error`, stdin closed: add the rest.
pub fn ffmpeg() -> Command {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-v", "error"])
        .stdin(Stdio::null());
    cmd
}

/// `ffprobe -v error`: add the rest.
pub fn ffprobe() -> Command {
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error"]);
    cmd
}

/// Runs `cmd` to its end; fails the test, with what the program wrote to
/// stderr, if it cannot start or exits unsuccessfully.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}; {INSTALL}"));
    assert!(
        out.status.success(),
        "{cmd:?} exited with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// [`run`], and fails the test if the program said anything on stderr (at
/// `-v error`: an error it recovered from).
pub fn run_clean(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.stderr.is_empty(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// ffprobe's JSON for `input` (a file or URL) with `args` (what to show).
pub fn probe_json(input: impl AsRef<OsStr>, args: &[&str]) -> serde_json::Value {
    let out = run(ffprobe().args(args).args(["-of", "json"]).arg(input));
    serde_json::from_slice(&out.stdout).expect("ffprobe writes JSON")
}

/// The container duration ffprobe reports for `input`, in seconds.
pub fn probe_duration(input: impl AsRef<OsStr>) -> f64 {
    let out = run(ffprobe()
        .args(["-show_entries", "format=duration", "-of", "csv=p=0"])
        .arg(input));
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("ffprobe's duration {text:?}: {e}"))
}

/// The PTS of every packet of the stream `selector` (`v:0`, `a:0` …) in
/// `input`, in file order, as ffprobe reads them (90 kHz for MPEG-TS).
pub fn packet_pts(input: impl AsRef<OsStr>, selector: &str) -> Vec<i64> {
    let out = run(ffprobe()
        .args(["-select_streams", selector])
        .args(["-show_entries", "packet=pts", "-of", "csv=p=0"])
        .arg(input));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clips;

    #[test]
    fn ffprobe_reads_a_committed_clip() {
        let clip = clips::path(clips::H264_AAC_720P);
        let duration = probe_duration(&clip);
        assert!((duration - 10.0).abs() < 0.2, "duration {duration}");
        let streams = probe_json(&clip, &["-show_streams"]);
        let codecs: Vec<&str> = streams["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["codec_name"].as_str().unwrap())
            .collect();
        assert_eq!(codecs, ["h264", "aac"]);
        let pts = packet_pts(&clip, "v:0");
        assert_eq!(pts.len(), 250, "10 s at 25 fps");
    }

    #[test]
    fn ffmpeg_encodes_the_shared_source() {
        require_ffmpeg();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("one.ts");
        run_clean(
            ffmpeg()
                .args(lavfi_inputs("testsrc2", 440))
                .args(["-t", "1"])
                .args(H264_AAC)
                .args(["-f", "mpegts"])
                .arg(&out),
        );
        let probe = probe_json(&out, &["-show_streams"]);
        assert_eq!(probe["streams"].as_array().unwrap().len(), 2);
    }
}
