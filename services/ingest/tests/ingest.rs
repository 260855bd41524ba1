//! Ingest against real sources: ffmpeg sending live UDP (unicast and
//! multicast on loopback), a real HTTP server that drops the connection, a
//! clip looped from disk, and failover between a live primary and a looped
//! backup. Nothing is mocked; ffmpeg is required (`make test-deps`).

use std::net::UdpSocket as StdUdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use dvr_common::{Clock, SystemClock, Ticks, UtcMs};
use dvr_ingest::{IngestConfig, IngestStats, IngestTask, InputUrl, TokioClock};
use dvr_media::ts::{self, PACKET_SIZE};
use dvr_media::Segment;
use dvr_testkit::clips;
use dvr_testkit::ffmpeg::{ffprobe, lavfi_inputs, packet_pts, require_ffmpeg, run, H264_AAC};
use tokio::sync::mpsc;

const TARGET: Ticks = Ticks::from_secs(2);

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "dvr_ingest=info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// The lavfi test pattern and a 440 Hz tone, as ffmpeg input arguments.
fn source() -> Vec<String> {
    lavfi_inputs("testsrc2", 440)
}

fn ffmpeg(args: &[&str]) -> Command {
    let mut cmd = Command::new("nice");
    cmd.args([
        "-n",
        "10",
        "ffmpeg",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
    ])
    .args(args)
    .stdin(Stdio::null());
    cmd
}

/// A clip of `secs` seconds in the test's temporary directory, made once.
fn clip(secs: u32) -> PathBuf {
    static CLIPS: OnceLock<std::sync::Mutex<Vec<(u32, PathBuf)>>> = OnceLock::new();
    require_ffmpeg();
    let clips = CLIPS.get_or_init(Default::default);
    let mut clips = clips.lock().unwrap();
    if let Some((_, path)) = clips.iter().find(|(s, _)| *s == secs) {
        return path.clone();
    }
    let dir = std::env::temp_dir().join(format!("dvr-ingest-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("clip-{secs}s.ts"));
    let t = secs.to_string();
    let status = ffmpeg(&[])
        .args(source())
        .args(["-t", &t])
        .args(H264_AAC)
        .args(["-f", "mpegts"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg could not make {}", path.display());
    clips.push((secs, path.clone()));
    path
}

/// An ffmpeg process, killed when dropped.
struct Ffmpeg(Child);

impl Ffmpeg {
    /// Sends `secs` seconds of live stream, in real time, to a UDP URL.
    fn send_udp(url: &str, secs: u32) -> Ffmpeg {
        require_ffmpeg();
        let t = secs.to_string();
        let child = ffmpeg(&["-re"])
            .args(source())
            .args(["-t", &t])
            .args(H264_AAC)
            .args(["-f", "mpegts"])
            .arg(url)
            .spawn()
            .expect("ffmpeg starts");
        Ffmpeg(child)
    }

    async fn wait(&mut self) {
        for _ in 0..600 {
            if self.0.try_wait().expect("ffmpeg status").is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("ffmpeg did not finish");
    }
}

impl Drop for Ffmpeg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_udp_port() -> u16 {
    StdUdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn url(s: &str) -> InputUrl {
    s.parse().expect("valid input url")
}

fn config(inputs: &[&str]) -> IngestConfig {
    IngestConfig::new("test", inputs.iter().map(|s| url(s)).collect())
}

async fn drain(rx: &mut mpsc::Receiver<Segment>) -> Vec<Segment> {
    let mut out = Vec::new();
    while let Ok(s) = rx.try_recv() {
        out.push(s);
    }
    out
}

fn describe(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(|s| {
            format!(
                "seq {} utc {} dur {} disc {} indep {}",
                s.seq,
                s.utc_start,
                s.duration.display_secs(),
                s.flags.discontinuity,
                s.flags.independent
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every segment is a whole number of packets opening with PAT, and seq
/// grows by one.
fn assert_well_formed(segments: &[Segment]) {
    for (i, s) in segments.iter().enumerate() {
        assert!(!s.payload.is_empty() && s.payload.len() % PACKET_SIZE == 0);
        assert_eq!(
            ts::pid(&s.payload),
            ts::PAT_PID,
            "segment {} opens with PAT",
            s.seq
        );
        if i > 0 {
            assert_eq!(s.seq, segments[i - 1].seq + 1);
        }
    }
}

/// Full segments (all but the last, partial one) last the target duration.
fn assert_target_durations(segments: &[Segment]) {
    let full = &segments[..segments.len().saturating_sub(1)];
    for s in full {
        assert!(s.flags.independent, "{}", describe(segments));
        if !segments
            .iter()
            .any(|n| n.seq == s.seq + 1 && n.flags.discontinuity)
        {
            assert_eq!(s.duration, TARGET, "{}", describe(segments));
        }
    }
}

async fn run_live_udp(input: &str, send_to: &str) -> (Vec<Segment>, IngestStats) {
    init_logs();
    let (tx, mut rx) = mpsc::channel(64);
    let task = IngestTask::spawn(config(&[input]), Arc::new(SystemClock), tx);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut sender = Ffmpeg::send_udp(send_to, 6);
    sender.wait().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = task.stop().await.expect("ingest ran");
    (drain(&mut rx).await, stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_unicast_live_stream_is_cut_into_two_second_segments() {
    let port = free_udp_port();
    let (segments, stats) = run_live_udp(
        &format!("udp://127.0.0.1:{port}"),
        &format!("udp://127.0.0.1:{port}?pkt_size=1316"),
    )
    .await;
    assert!(segments.len() >= 3, "{}", describe(&segments));
    assert_well_formed(&segments);
    assert_target_durations(&segments);
    assert!(segments.iter().all(|s| !s.flags.discontinuity));
    let total: i64 = segments.iter().map(|s| s.duration.0).sum();
    assert!(
        (Ticks::from_ms(5500).0..=Ticks::from_ms(6100).0).contains(&total),
        "6 s sent, {} recorded",
        Ticks(total).display_secs()
    );
    for pair in segments.windows(2) {
        assert_eq!(
            pair[1].utc_start,
            pair[0].utc_end(),
            "the tape is contiguous"
        );
    }
    assert_eq!((stats.cc_errors, stats.switches), (0, 0), "{stats:?}");
    assert!(stats.bytes > 100_000 && stats.packets > 500, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_multicast_joined_on_the_loopback_interface() {
    let port = free_udp_port();
    let group = "239.255.42.17";
    let (segments, stats) = run_live_udp(
        &format!("udp://lo@{group}:{port}"),
        &format!("udp://{group}:{port}?pkt_size=1316&localaddr=127.0.0.1&ttl=0"),
    )
    .await;
    assert!(segments.len() >= 3, "{}", describe(&segments));
    assert_well_formed(&segments);
    assert_target_durations(&segments);
    assert_eq!(stats.cc_errors, 0, "{stats:?}");
}

/// Serves a TS file slowly over HTTP, chunked: the first response breaks
/// off half-way, later ones send the whole file.
async fn serve_flaky(file: &Path) -> (String, Arc<AtomicUsize>) {
    use axum::body::Body;
    use axum::routing::get;

    let data = Bytes::from(std::fs::read(file).unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&served);
    let app = axum::Router::new().route(
        "/live.ts",
        get(move || {
            let data = data.clone();
            let attempt = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                let chunk = 7 * PACKET_SIZE * 8;
                let cut = if attempt == 0 {
                    data.len() / 2
                } else {
                    data.len()
                };
                let pieces: Vec<Bytes> = (0..cut)
                    .step_by(chunk)
                    .map(|at| data.slice(at..(at + chunk).min(cut)))
                    .collect();
                let stream = async_stream(pieces, attempt == 0);
                Body::from_stream(stream)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://user:s3cret@{addr}/live.ts"), served)
}

/// The pieces, one every 20 ms; then an error (a dropped connection) or
/// the end of the body.
fn async_stream(
    pieces: Vec<Bytes>,
    fail: bool,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures_util::stream::unfold((pieces.into_iter(), fail), |(mut it, fail)| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        match it.next() {
            Some(piece) => Some((Ok(piece), (it, fail))),
            None if fail => Some((
                Err(std::io::Error::other("dropped on purpose")),
                (it, false),
            )),
            None => None,
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_source_reconnects_after_a_dropped_connection() {
    init_logs();
    let clip = clip(6);
    let (input, served) = serve_flaky(&clip).await;
    let (tx, mut rx) = mpsc::channel(64);
    let task = IngestTask::spawn(config(&[&input]), Arc::new(SystemClock), tx);
    // Wait for the second response to be served in full, and a third to start.
    for _ in 0..300 {
        if served.load(Ordering::SeqCst) >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        served.load(Ordering::SeqCst) >= 3,
        "the source reconnected twice"
    );
    let stats = task.stop().await.expect("ingest ran");
    let segments = drain(&mut rx).await;
    assert_well_formed(&segments);
    let breaks: Vec<usize> = (0..segments.len())
        .filter(|&i| segments[i].flags.discontinuity)
        .chain([segments.len()])
        .collect();
    assert!(breaks.len() >= 2, "{}", describe(&segments));
    // Half the clip before the drop, all of it from the reconnection on.
    let before: i64 = segments[..breaks[0]].iter().map(|s| s.duration.0).sum();
    let after: i64 = segments[breaks[0]..breaks[1]]
        .iter()
        .map(|s| s.duration.0)
        .sum();
    assert!(before >= Ticks::from_ms(2000).0, "{}", describe(&segments));
    assert_eq!(Ticks(after), Ticks::from_secs(6), "{}", describe(&segments));
    assert!(stats.signal_losses >= 1, "{stats:?}");
    assert_eq!(stats.cc_errors, 0, "{stats:?}");
}

/// Runs a file input to its end, unpaced, and returns the segments.
async fn ingest_file(input: &str) -> (Vec<Segment>, IngestStats) {
    let (tx, mut rx) = mpsc::channel(1024);
    let task = IngestTask::spawn(config(&[input]), Arc::new(SystemClock), tx);
    let stats = tokio::time::timeout(Duration::from_secs(20), task.join())
        .await
        .expect("the file ends")
        .expect("ingest ran");
    (drain(&mut rx).await, stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looped_file_is_one_continuous_stream() {
    init_logs();
    let clip = clip(2);
    let path = clip.display();
    let (once, _) = ingest_file(&format!("file://{path}?pace=false")).await;
    let (looped, stats) = ingest_file(&format!("file://{path}?loop=3&pace=false")).await;
    assert_well_formed(&looped);
    assert_target_durations(&looped);
    assert!(
        looped.iter().all(|s| !s.flags.discontinuity),
        "{}",
        describe(&looped)
    );
    assert_eq!(stats.cc_errors, 0, "{stats:?}");
    assert_eq!(stats.demux.discontinuities, 0, "{stats:?}");
    let one: i64 = once.iter().map(|s| s.duration.0).sum();
    let three: i64 = looped.iter().map(|s| s.duration.0).sum();
    assert_eq!(Ticks(one), Ticks::from_secs(2), "{}", describe(&once));
    assert_eq!(
        Ticks(three),
        Ticks(3 * one),
        "3 passes of {} recorded as:\n{}",
        Ticks(one).display_secs(),
        describe(&looped)
    );
    for pair in looped.windows(2) {
        assert_eq!(pair[1].pts_start, pair[0].pts_start + pair[0].duration);
    }
    // ffprobe as the judge: across the loop points the video timestamps go
    // on one frame at a time.
    let joined = clip.with_file_name("looped-3.ts");
    let bytes: Vec<u8> = looped.iter().flat_map(|s| s.payload.to_vec()).collect();
    std::fs::write(&joined, bytes).unwrap();
    let pts = packet_pts(&joined, "v:0");
    assert_eq!(pts.len(), 3 * 50, "three passes of 50 frames");
    for pair in pts.windows(2) {
        assert_eq!(pair[1] - pair[0], 3600, "video pts step at {}", pair[0]);
    }
}

#[tokio::test(start_paused = true)]
async fn paced_file_plays_in_real_time_on_tokios_clock() {
    init_logs();
    let clip = clip(2);
    let clock = TokioClock::new(UtcMs(1_800_000_000_000));
    let start = clock.now();
    let input = format!("file://{}?loop=2", clip.display());
    let (tx, mut rx) = mpsc::channel(1024);
    let task = IngestTask::spawn(config(&[&input]), Arc::new(clock), tx);
    let stats = task.join().await.expect("ingest ran");
    let elapsed = clock.now().0 - start.0;
    let segments = drain(&mut rx).await;
    assert!(
        (3_800..=4_500).contains(&elapsed),
        "two passes of 2 s took {elapsed} ms of tokio time"
    );
    assert!(segments.iter().all(|s| !s.flags.discontinuity));
    let first = &segments[0];
    assert!(first.utc_start.0 - start.0 < 500, "{}", describe(&segments));
    assert_eq!(stats.cc_errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_takes_over_and_primary_returns_with_small_gaps() {
    init_logs();
    let clip = clip(6);
    let port = free_udp_port();
    let primary = format!("udp://127.0.0.1:{port}");
    let send_to = format!("udp://127.0.0.1:{port}?pkt_size=1316");
    let backup = format!("file://{}?loop=true", clip.display());
    let (tx, mut rx) = mpsc::channel(256);
    let task = IngestTask::spawn(config(&[&primary, &backup]), Arc::new(SystemClock), tx);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The primary plays 4 s, stops; the default timeout (4 s) passes and the
    // backup plays; the primary comes back for 4 s.
    let mut first = Ffmpeg::send_udp(&send_to, 4);
    first.wait().await;
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    assert_eq!(task.stats().active_input, Some(1), "{:?}", task.stats());
    let mut second = Ffmpeg::send_udp(&send_to, 4);
    second.wait().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = task.stop().await.expect("ingest ran");
    let segments = drain(&mut rx).await;
    let listing = describe(&segments);
    assert_well_formed(&segments);
    assert!(stats.switches >= 2, "{stats:?}\n{listing}");
    let switches: Vec<&Segment> = segments.iter().filter(|s| s.flags.discontinuity).collect();
    assert!(switches.len() >= 2, "{listing}");
    for pair in segments.windows(2) {
        let gap = pair[1].utc_start.0 - pair[0].utc_end().0;
        assert!(gap >= 0, "segments overlap:\n{listing}");
        assert!(
            gap <= TARGET.as_ms(),
            "gap of {gap} ms before seq {}:\n{listing}",
            pair[1].seq
        );
        if !pair[1].flags.discontinuity {
            assert_eq!(gap, 0, "{listing}");
        }
    }
    eprintln!("failover tape:\n{listing}");
}

#[tokio::test]
async fn http_errors_name_the_input_with_credentials_masked() {
    use dvr_common::error::{ErrorKind, HasErrorKind};

    // A port with nothing listening.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let input = url(&format!(
        "tshttp://bob:s3cret@127.0.0.1:{port}/x.ts?token=t0ps3cret"
    ));
    let mut source = dvr_ingest::open_source(
        &input,
        &dvr_ingest::input::HttpOptions::default(),
        Arc::new(SystemClock),
        "test",
        None,
    )
    .await
    .expect("http sources connect lazily");
    let err = source.next_chunk().await.expect_err("nothing listens");
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(
        !text.contains("s3cret") && !text.contains("t0ps3cret"),
        "{text}"
    );
    assert!(text.contains("bob:***@"), "{text}");
    assert_eq!(err.error_kind(), ErrorKind::Unavailable);
    assert!(err.error_kind().is_transient());
}

#[path = "ingest/hls.rs"]
mod hls;
#[path = "ingest/rtmp.rs"]
mod rtmp;
#[path = "ingest/srt.rs"]
mod srt;
