//! Pictures of the tape over clips recorded by the real segmenter, judged
//! by independent decoders: `-preview.mp4` is one frame to ffprobe;
//! `-preview.jpg` and the live `preview.jpg` are JPEGs that Debian's PIL
//! decodes at the clip's size (or `?width=`), from a progressive 720p
//! H.264 clip, an H.265 clip whose keyframes are CRAs, and an interlaced
//! 1080i clip made at test time with ffmpeg; `SS.jpg`
//! redirects to a keyframe's second with the query carried;
//! `recording_status.json?request=brief_thumbnails` lists as many
//! keyframes as ffprobe finds in the clip, spaced as ffprobe spaces them;
//! a tiny pool answers `503` with `Retry-After` past its queue and
//! decodes one picture after another; the decoder runs under SCHED_IDLE,
//! a stuck one is stopped (`504`), one that dies on a picture is a `422`
//! and the next picture is made by a new one, a missing one (or one whose
//! libraries are missing) is a `415`; outside the tape is a one-line
//! `404`.

mod support;

use std::process::Command;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use dvr_packager::config::PreviewConfig;
use dvr_packager::PackagerConfig;
use dvr_testkit::pil::picture_size;
use support::{
    body, clip_path, dated, get, header, recorded, recorded_with, send, serve, Fixture, T0,
};

const CLIP: &str = "h264_aac_720p.ts";

/// Keyframe times of a clip's video in seconds, by ffprobe on the file.
fn clip_keyframes(clip: &str) -> Vec<f64> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-skip_frame",
            "nokey",
        ])
        .args(["-show_entries", "frame=pts_time", "-of", "csv=p=0"])
        .arg(clip_path(clip))
        .output()
        .expect("ffprobe (make test-deps)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect()
}

/// An interlaced (top field first) 1080i H.264 clip of 6 s, made by ffmpeg.
fn interlaced_clip(dir: &std::path::Path) -> String {
    let path = dir.join("i1080.ts");
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-f", "lavfi"])
        .args(["-i", "testsrc2=size=1920x1080:rate=25", "-t", "6"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-profile:v",
            "high",
        ])
        .args(["-flags", "+ildct+ilme", "-top", "1", "-g", "25"])
        .args(["-pix_fmt", "yuv420p", "-b:v", "1M", "-f", "mpegts", "-y"])
        .arg(&path)
        .output()
        .expect("ffmpeg (make test-deps)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args(["stream=field_order", "-of", "csv=p=0"])
        .arg(&path)
        .output()
        .unwrap();
    // Listed under the program and the stream: every line says it.
    let orders = String::from_utf8_lossy(&probe.stdout).to_string();
    assert!(
        orders.lines().filter(|l| !l.is_empty()).all(|l| l == "tt"),
        "{orders:?}"
    );
    path.to_str().unwrap().to_owned()
}

/// Frames ffprobe decodes in `url` and its stream types.
fn probe_frames(url: &str) -> (Vec<String>, u64) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "warning",
            "-count_frames",
            "-of",
            "json",
            "-show_entries",
        ])
        .args(["stream=codec_type,nb_read_frames", url])
        .output()
        .expect("ffprobe (make test-deps)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "{url}: {stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let streams = v["streams"].as_array().unwrap();
    let kinds = streams
        .iter()
        .map(|s| s["codec_type"].as_str().unwrap().to_owned())
        .collect();
    let frames = streams[0]["nb_read_frames"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    (kinds, frames)
}

async fn jpeg(f: &Fixture, uri: &str) -> Vec<u8> {
    let (status, ctype, bytes) = get(f, uri).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{uri}: {}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(ctype, "image/jpeg", "{uri}");
    bytes
}

/// The keyframe seconds `brief_thumbnails` lists for `[from, to)`.
async fn brief(f: &Fixture, from: i64, to: i64) -> Vec<i64> {
    let uri = format!("/ch/recording_status.json?from={from}&to={to}&request=brief_thumbnails");
    let (status, _, bytes) = get(f, &uri).await;
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(status, StatusCode::OK, "{text}");
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    v[0]["brief_thumbnails"]
        .as_array()
        .unwrap_or_else(|| panic!("{text}"))
        .iter()
        .map(|t| t.as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn previews_of_a_progressive_clip_decode_at_its_size() {
    let f = recorded(CLIP);
    let at = dated(T0 + 3);

    // One frame, video only, no decoding needed.
    let base = serve(&f).await;
    let url = format!("{base}/{at}-preview.mp4");
    let (kinds, frames) = tokio::task::spawn_blocking(move || probe_frames(&url))
        .await
        .unwrap();
    assert_eq!((kinds, frames), (vec!["video".to_owned()], 1));

    let picture = jpeg(&f, &format!("/ch/{at}-preview.jpg")).await;
    assert_eq!(picture_size(&picture), (1280, 720, "JPEG".to_owned()));
    let small = jpeg(&f, &format!("/ch/{at}-preview.jpg?width=320")).await;
    assert_eq!(picture_size(&small), (320, 180, "JPEG".to_owned()));
    let live = jpeg(&f, "/ch/preview.jpg").await;
    assert_eq!(picture_size(&live), (1280, 720, "JPEG".to_owned()));

    // Bad parameters and times outside the tape: one line each.
    for (uri, status, why) in [
        (
            format!("/ch/{at}-preview.jpg?width=4000"),
            StatusCode::BAD_REQUEST,
            "width=\"4000\"",
        ),
        (
            format!("/ch/{at}-preview.jpg?width=abc"),
            StatusCode::BAD_REQUEST,
            "width=\"abc\"",
        ),
        (
            format!("/ch/{}-preview.jpg", dated(T0 - 600)),
            StatusCode::NOT_FOUND,
            "outside the tape",
        ),
        (
            format!("/ch/{}-preview.mp4", dated(T0 - 600)),
            StatusCode::NOT_FOUND,
            "outside the tape",
        ),
        (
            format!("/ch/{}.jpg", dated(T0 - 600)),
            StatusCode::NOT_FOUND,
            "outside the tape",
        ),
        (
            format!("/ch/{}-preview.jpg", dated(T0 + 3600)),
            StatusCode::BAD_REQUEST,
            "in the future",
        ),
        (
            format!("/ch/tracks-2/{at}-preview.jpg"),
            StatusCode::NOT_FOUND,
            "no video track among tracks [2]",
        ),
    ] {
        let (got, _, text) = get(&f, &uri).await;
        let text = String::from_utf8(text).unwrap();
        assert_eq!(got, status, "{uri}: {text}");
        assert!(text.contains(why), "{uri}: {text}");
        assert_eq!(text.lines().count(), 1, "{uri}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interlaced_1080i_keyframe_decodes_to_a_full_frame() {
    let dir = tempfile::tempdir().unwrap();
    let clip = interlaced_clip(dir.path());
    let f = recorded_with(&[&clip], 0, PackagerConfig::default());
    let picture = jpeg(&f, &format!("/ch/{}-preview.jpg", dated(T0 + 2))).await;
    assert_eq!(picture_size(&picture), (1920, 1080, "JPEG".to_owned()));
    let small = jpeg(&f, &format!("/ch/{}-preview.jpg?width=640", dated(T0 + 2))).await;
    assert_eq!(picture_size(&small), (640, 360, "JPEG".to_owned()));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_h265_keyframe_decodes_and_its_mp4_is_one_frame() {
    // x265 open GOP: the keyframe at 3 s is a CRA, not an IDR.
    let f = recorded("h265_aac.ts");
    let at = dated(T0 + 3);
    let picture = jpeg(&f, &format!("/ch/{at}-preview.jpg")).await;
    assert_eq!(picture_size(&picture), (640, 360, "JPEG".to_owned()));
    let base = serve(&f).await;
    let url = format!("{base}/{at}-preview.mp4");
    let (kinds, frames) = tokio::task::spawn_blocking(move || probe_frames(&url))
        .await
        .unwrap();
    assert_eq!((kinds, frames), (vec!["video".to_owned()], 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn thumbnails_redirect_to_listed_keyframes_spaced_as_ffprobe_sees_them() {
    let f = recorded(CLIP);
    let listed = brief(&f, T0, T0 + 60).await;
    let keyframes = clip_keyframes(CLIP);
    assert_eq!(listed.len(), keyframes.len(), "{listed:?} / {keyframes:?}");
    // The same spacing, to the second the list rounds to.
    for (i, pair) in listed.windows(2).enumerate() {
        let ours = (pair[1] - pair[0]) as f64;
        let theirs = keyframes[i + 1] - keyframes[i];
        assert!((ours - theirs).abs() <= 1.0, "{listed:?} / {keyframes:?}");
    }
    // A range inside the tape lists the keyframes inside it.
    let inner = brief(&f, listed[1], listed[listed.len() - 1]).await;
    assert_eq!(inner.first(), Some(&listed[1]));
    assert!(inner.len() < listed.len());

    for asked in [T0, T0 + 3, listed[2] + 1] {
        let uri = format!("/ch/{}.jpg?token=abc", dated(asked));
        let r = send(&f, Method::GET, &uri, &[]).await;
        assert_eq!(r.status(), StatusCode::FOUND, "{uri}");
        let location = header(&r, "location").to_owned();
        let second = listed
            .iter()
            .min_by_key(|k| (**k - asked).abs())
            .copied()
            .unwrap();
        assert!(
            listed.contains(&second)
                && location == format!("/ch/{}-preview.jpg?token=abc", dated(second)),
            "{uri} -> {location}; keyframes at {listed:?}"
        );
        let (status, ctype, _) = get(&f, &location).await;
        assert_eq!((status, ctype.as_str()), (StatusCode::OK, "image/jpeg"));
    }
}

/// A stand-in for `dvr-preview-decoder`: `script` run by `interpreter`.
fn stand_in(dir: &std::path::Path, interpreter: &str, script: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("stand-in-decoder");
    std::fs::write(&path, format!("#!{interpreter}\n{script}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The real `dvr-preview-decoder`, built beside this test's directory by
/// `cargo test --workspace` (its crate's own tests need it).
fn real_decoder() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(std::path::Path::parent)
        .unwrap()
        .join("dvr-preview-decoder");
    assert!(
        path.is_file(),
        "{} is not built: cargo build -p dvr-preview-decoder",
        path.display()
    );
    path
}

/// The real decoder behind a proxy that holds each picture `secs` before
/// passing it on (the protocol: services/preview-decoder/src/main.rs).
fn slow_decoder(dir: &std::path::Path, secs: f64) -> std::path::PathBuf {
    let script = format!(
        r#"import subprocess, sys, time
real = subprocess.Popen(["{}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
asked, answered = sys.stdin.buffer, sys.stdout.buffer
while True:
    head = asked.read(8)
    if len(head) < 8:
        break
    body = asked.read(int.from_bytes(head[4:], "big"))
    time.sleep({secs})
    real.stdin.write(head + body)
    real.stdin.flush()
    status = real.stdout.read(5)
    answered.write(status + real.stdout.read(int.from_bytes(status[1:], "big")))
    answered.flush()"#,
        real_decoder().display()
    );
    stand_in(dir, "/usr/bin/python3", &script)
}

/// Whether process `pid` is gone (or a zombie waiting to be reaped).
fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

fn with_previews(previews: PreviewConfig) -> Fixture {
    recorded_with(
        &[CLIP],
        0,
        PackagerConfig {
            previews,
            ..PackagerConfig::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_queue_previews_answer_503_and_playback_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let f = with_previews(PreviewConfig {
        decoder: slow_decoder(dir.path(), 1.5),
        workers: 1,
        queue: 1,
        timeout: Duration::from_secs(20),
    });
    // Four pictures at once (distinct, so none is cached): one decodes,
    // one waits, two are refused at once.
    let asks = (0..4).map(|i| {
        let router = f.router.clone();
        let uri = format!("/ch/{}-preview.jpg?width={}", dated(T0 + 3), 320 + 16 * i);
        async move {
            use tower::ServiceExt;
            let request = axum::http::Request::get(&uri)
                .body(axum::body::Body::empty())
                .unwrap();
            let r = router.oneshot(request).await.unwrap();
            let retry = header(&r, "retry-after").to_owned();
            (r.status(), retry, body(r).await)
        }
    });
    let started = std::time::Instant::now();
    let answers = futures_util::future::join_all(asks).await;
    let ok = answers.iter().filter(|a| a.0 == StatusCode::OK).count();
    let busy: Vec<_> = answers
        .iter()
        .filter(|a| a.0 == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert_eq!(
        (ok, busy.len()),
        (2, 2),
        "{:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    for (_, retry, text) in busy {
        assert_eq!(retry, "1");
        assert!(String::from_utf8_lossy(text).contains("preview workers are busy"));
    }
    // The two decodes ran one after the other.
    assert!(started.elapsed() >= Duration::from_secs(3));
    // Playback does not wait for pictures.
    let (status, _, _) = get(&f, &format!("/ch/archive-{T0}-10.m3u8")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stuck_decoder_is_stopped_and_a_missing_one_is_a_415() {
    let dir = tempfile::tempdir().unwrap();
    // A decoder that hangs (its pid and scheduling policy noted, then it
    // becomes a sleep).
    let pid_file = dir.path().join("pid");
    let policy_file = dir.path().join("policy");
    let f = with_previews(PreviewConfig {
        decoder: stand_in(
            dir.path(),
            "/bin/sh",
            &format!(
                "echo $$ > {}\ncut -d' ' -f41 /proc/$$/stat > {}\nexec sleep 30",
                pid_file.display(),
                policy_file.display()
            ),
        ),
        workers: 1,
        queue: 0,
        timeout: Duration::from_millis(500),
    });
    let uri = format!("/ch/{}-preview.jpg", dated(T0 + 3));
    let started = std::time::Instant::now();
    let (status, _, text) = get(&f, &uri).await;
    let text = String::from_utf8(text).unwrap();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{text}");
    assert!(text.contains("was stopped"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // It ran under SCHED_IDLE (policy 5): playback's threads come first.
    let policy = std::fs::read_to_string(&policy_file).unwrap();
    assert_eq!(policy.trim(), "5");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !gone(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "the stuck decoder {pid} still runs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The worker is free again: the next ask is not refused as busy.
    let (status, _, _) = get(&f, &uri).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);

    let f = with_previews(PreviewConfig {
        decoder: dir.path().join("no-such-decoder"),
        ..PreviewConfig::default()
    });
    let (status, _, text) = get(&f, &uri).await;
    let text = String::from_utf8(text).unwrap();
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{text}");
    assert!(
        text.contains("no JPEG decoder") && text.contains("packager.preview_decoder"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1);
    // The MP4 preview needs no decoder.
    let (status, ctype, _) = get(&f, &format!("/ch/{}-preview.mp4", dated(T0 + 3))).await;
    assert_eq!((status, ctype.as_str()), (StatusCode::OK, "video/mp4"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_decoder_that_dies_costs_one_picture_and_one_without_its_libraries_is_a_415() {
    // Dies on its first picture (as a crash in libavcodec would), then
    // the real decoder takes over.
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("died-once");
    let f = with_previews(PreviewConfig {
        decoder: stand_in(
            dir.path(),
            "/bin/sh",
            &format!(
                "if [ -e {mark} ]; then exec {real}; fi\ntouch {mark}\nhead -c 8 >/dev/null\necho 'Segmentation fault' >&2\nexit 139",
                mark = mark.display(),
                real = real_decoder().display()
            ),
        ),
        workers: 1,
        queue: 0,
        timeout: Duration::from_secs(20),
    });
    let second = dated(T0 + 3);
    let (status, _, text) = get(&f, &format!("/ch/{second}-preview.jpg?width=320")).await;
    let text = String::from_utf8(text).unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
    assert_eq!(
        text.trim(),
        "the preview decoder stopped on this keyframe: Segmentation fault"
    );
    // The same picture again: a new decoder makes it.
    let (status, ctype, jpeg) = get(&f, &format!("/ch/{second}-preview.jpg?width=320")).await;
    assert_eq!((status, ctype.as_str()), (StatusCode::OK, "image/jpeg"));
    assert_eq!(picture_size(&jpeg), (320, 180, "JPEG".to_owned()));

    // The loader cannot find libavcodec: the program cannot run here.
    let dir = tempfile::tempdir().unwrap();
    let f = with_previews(PreviewConfig {
        decoder: stand_in(
            dir.path(),
            "/bin/sh",
            "echo 'dvr-preview-decoder: error while loading shared libraries: libavcodec.so.59: cannot open shared object file: No such file or directory' >&2\nexit 127",
        ),
        ..PreviewConfig::default()
    });
    let (status, _, text) = get(&f, &format!("/ch/{second}-preview.jpg")).await;
    let text = String::from_utf8(text).unwrap();
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{text}");
    assert!(
        text.contains("no JPEG decoder") && text.contains("libavcodec.so.59"),
        "{text}"
    );
}
