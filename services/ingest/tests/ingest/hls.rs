//! HLS pull against a real live playlist: ffmpeg cuts the committed clip
//! `testdata/h264_aac_720p.ts` into 1 s segments (`-f hls`), and an axum
//! server in the test serves them as a live playlist that grows by one
//! segment a second, each with an `EXT-X-PROGRAM-DATE-TIME` chosen by the
//! test. The DVR's segments must carry those times (to 100 ms), survive a
//! restarted media sequence and a 404 segment, and refuse what it cannot
//! record with the input named.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dvr_ingest::input::playlist::{self, Playlist};

use super::*;

/// The clip cut into HLS segments, once per test process.
struct Cut {
    /// Each segment's bytes and `EXTINF` duration.
    files: Vec<(Bytes, Ticks)>,
    /// The first video PTS of the first segment.
    first_pts: Ticks,
}

fn cut() -> &'static Cut {
    static CUT: OnceLock<Cut> = OnceLock::new();
    CUT.get_or_init(|| {
        require_ffmpeg();
        let clip = clips::path(clips::H264_AAC_720P);
        let dir = std::env::temp_dir().join(format!("dvr-ingest-hls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let status = ffmpeg(&["-i"])
            .arg(&clip)
            .args([
                "-c",
                "copy",
                "-f",
                "hls",
                "-hls_time",
                "1",
                "-hls_list_size",
                "0",
            ])
            .args(["-hls_flags", "program_date_time", "-hls_segment_filename"])
            .arg(dir.join("seg%d.ts"))
            .arg(dir.join("index.m3u8"))
            .status()
            .expect("ffmpeg runs");
        assert!(status.success(), "ffmpeg could not cut the clip into HLS");
        let text = std::fs::read(dir.join("index.m3u8")).unwrap();
        let Ok(Playlist::Media(media)) = playlist::parse(&text) else {
            panic!("ffmpeg wrote a media playlist");
        };
        assert!(
            media.segments.iter().all(|s| s.program_date_time.is_some()),
            "ffmpeg wrote program date-times"
        );
        let files: Vec<(Bytes, Ticks)> = media
            .segments
            .iter()
            .map(|s| {
                (
                    Bytes::from(std::fs::read(dir.join(&s.uri)).unwrap()),
                    s.duration,
                )
            })
            .collect();
        assert!(
            files.len() >= 9,
            "10 s cut into 1 s segments: {}",
            files.len()
        );
        let probe = run(ffprobe()
            .args(["-select_streams", "v:0", "-read_intervals", "%+#1"])
            .args(["-show_entries", "packet=pts", "-of", "csv=p=0"])
            .arg(dir.join(&media.segments[0].uri)));
        let first_pts = String::from_utf8_lossy(&probe.stdout)
            .lines()
            .find_map(|l| l.trim().trim_end_matches(',').parse().ok())
            .map(Ticks)
            .expect("the first segment has a video packet");
        Cut { files, first_pts }
    })
}

/// How the test server's live playlist behaves.
#[derive(Clone, Copy, Debug, Default)]
struct Scenario {
    /// The first segment's program date-time, relative to the server's start.
    pdt_offset_ms: i64,
    /// From this segment on, the media sequence restarts at 0 under new names.
    reset_at: Option<usize>,
    /// This segment is listed but answers 404.
    missing: Option<usize>,
}

struct Live {
    scenario: Scenario,
    started: Instant,
    base: UtcMs,
    /// Requests per file name.
    requests: Mutex<HashMap<String, usize>>,
}

impl Live {
    /// The name segment `i` is listed under, and its media sequence number.
    fn entry(&self, i: usize) -> (String, u64) {
        let s = self.scenario;
        if s.missing == Some(i) {
            return (format!("missing{i}.ts"), i as u64);
        }
        match s.reset_at {
            Some(at) if i >= at => (format!("b{i}.ts"), (i - at) as u64),
            _ => (format!("a{i}.ts"), i as u64),
        }
    }

    /// The playlist now: three segments at first, one more each second, the
    /// last four listed (only those after a reset, once it happened).
    fn playlist(&self) -> String {
        let files = &cut().files;
        let elapsed = usize::try_from(self.started.elapsed().as_millis() / 1000).unwrap();
        let visible = (3 + elapsed).min(files.len());
        let mut first = visible.saturating_sub(4);
        if let Some(at) = self.scenario.reset_at.filter(|&at| visible > at) {
            first = first.max(at);
        }
        let mut text = format!(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:{}\n",
            self.entry(first).1
        );
        let mut pdt = self.base;
        for (i, (_, duration)) in files.iter().enumerate().take(visible) {
            if i >= first {
                let (name, _) = self.entry(i);
                text.push_str(&format!(
                    "#EXT-X-PROGRAM-DATE-TIME:{pdt}\n#EXTINF:{}.{:06},\n{name}\n",
                    duration.0 / 90_000,
                    duration.0 % 90_000 * 100 / 9
                ));
            }
            pdt = pdt.plus_ticks(*duration);
        }
        text
    }

    fn served(&self, name: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .get(name)
            .copied()
            .unwrap_or(0)
    }
}

async fn live_playlist(State(live): State<Arc<Live>>) -> String {
    live.playlist()
}

async fn segment(State(live): State<Arc<Live>>, UrlPath(name): UrlPath<String>) -> Response {
    *live
        .requests
        .lock()
        .unwrap()
        .entry(name.clone())
        .or_default() += 1;
    let index = name
        .trim_start_matches(|c: char| c.is_ascii_alphabetic())
        .trim_end_matches(".ts")
        .parse::<usize>()
        .ok();
    match index.and_then(|i| cut().files.get(i)) {
        Some((bytes, _)) if !name.starts_with("missing") => bytes.clone().into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Fixed playlists for the refusals.
async fn fixed(UrlPath(name): UrlPath<String>) -> Response {
    let text = match name.as_str() {
        "master.m3u8" => {
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=400000\n../live/index.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=4000000\nhigh/index.m3u8\n"
        }
        "audio-master.m3u8" => {
            "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"en.m3u8\"\n\
             #EXT-X-STREAM-INF:BANDWIDTH=400000,AUDIO=\"a\"\n../live/index.m3u8\n"
        }
        "fmp4.m3u8" => "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2,\na.m4s\n",
        "sample-aes.m3u8" => "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"k\"\n#EXTINF:2,\na.ts\n",
        "broken.m3u8" => "#EXTM3U\n#EXTINF:2,\na.ts\n",
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    text.into_response()
}

/// The clip cut by ffmpeg into a master playlist whose variant has video
/// only and names an audio group with its own playlist (`-var_stream_map`).
fn separate_audio_cut() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        require_ffmpeg();
        let clip = clips::path(clips::H264_AAC_720P);
        let dir = std::env::temp_dir().join(format!("dvr-ingest-hls-audio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let status = ffmpeg(&["-i"])
            .arg(&clip)
            .args(["-map", "0:v", "-map", "0:a", "-c", "copy", "-f", "hls"])
            .args(["-hls_time", "1", "-hls_list_size", "0"])
            .args([
                "-hls_flags",
                "program_date_time",
                "-master_pl_name",
                "master.m3u8",
            ])
            .args(["-var_stream_map", "v:0,agroup:aud a:0,agroup:aud"])
            .arg("-hls_segment_filename")
            .arg(dir.join("s%v_%d.ts"))
            .arg(dir.join("p%v.m3u8"))
            .status()
            .expect("ffmpeg runs");
        assert!(
            status.success(),
            "ffmpeg could not cut the clip into HLS renditions"
        );
        dir
    })
}

/// The separate-audio cut as a live stream that stopped growing: the
/// playlists without `EXT-X-ENDLIST`.
async fn separate_audio(UrlPath(name): UrlPath<String>) -> Response {
    let path = separate_audio_cut().join(&name);
    match std::fs::read(&path) {
        Ok(data) if name.ends_with(".m3u8") => String::from_utf8_lossy(&data)
            .replace("#EXT-X-ENDLIST", "")
            .into_response(),
        Ok(data) => data.into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The key of the AES-128 cut.
const AES_KEY: [u8; 16] = *b"dvr-test-aes-key";

/// The clip cut by ffmpeg into AES-128 segments (`-hls_key_info_file`
/// without an IV: each segment's IV is its media sequence number).
fn aes_cut() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        require_ffmpeg();
        let clip = clips::path(clips::H264_AAC_720P);
        let dir = std::env::temp_dir().join(format!("dvr-ingest-hls-aes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("k.key"), AES_KEY).unwrap();
        std::fs::write(dir.join("bad.key"), [0x55; 16]).unwrap();
        std::fs::write(dir.join("short.key"), b"12345").unwrap();
        let info = dir.join("key.info");
        std::fs::write(&info, format!("k.key\n{}\n", dir.join("k.key").display())).unwrap();
        let status = ffmpeg(&["-i"])
            .arg(&clip)
            .args([
                "-c",
                "copy",
                "-f",
                "hls",
                "-hls_time",
                "1",
                "-hls_list_size",
                "0",
            ])
            .arg("-hls_key_info_file")
            .arg(&info)
            .arg("-hls_segment_filename")
            .arg(dir.join("e%d.ts"))
            .arg(dir.join("index.m3u8"))
            .status()
            .expect("ffmpeg runs");
        assert!(
            status.success(),
            "ffmpeg could not cut the clip into AES-128 HLS"
        );
        // The clear cut encrypted by openssl, each segment under its media
        // sequence number as IV (ffmpeg always writes an explicit IV), and
        // a playlist that names no IV.
        let mut text = format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:{IMPLICIT_FIRST_MSN}\n\
             #EXT-X-KEY:METHOD=AES-128,URI=\"k.key\"\n"
        );
        for (i, (bytes, _)) in cut().files.iter().enumerate() {
            let msn = IMPLICIT_FIRST_MSN + i as u64;
            let clear = dir.join(format!("clear{i}.ts"));
            std::fs::write(&clear, bytes).unwrap();
            let out = Command::new("openssl")
                .args([
                    "enc",
                    "-aes-128-cbc",
                    "-K",
                    &hex(&AES_KEY),
                    "-iv",
                    &format!("{msn:032x}"),
                    "-in",
                ])
                .arg(&clear)
                .arg("-out")
                .arg(dir.join(format!("p{i}.ts")))
                .output()
                .expect("openssl runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            text.push_str(&format!("#EXTINF:1.0,\np{i}.ts\n"));
        }
        std::fs::write(dir.join("implicit.m3u8"), text).unwrap();
        dir
    })
}

/// The media sequence number of the first openssl-encrypted segment: not
/// 0, so IVs differ from ffmpeg's.
const IMPLICIT_FIRST_MSN: u64 = 40;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The AES-128 cut as a live stream that stopped growing; `bad.m3u8` and
/// `short.m3u8` name a wrong key and a 5-byte one.
async fn aes(UrlPath(name): UrlPath<String>) -> Response {
    let dir = aes_cut();
    let playlist = |key: &str| {
        let text = std::fs::read_to_string(dir.join("index.m3u8")).unwrap();
        text.replace("#EXT-X-ENDLIST", "")
            .replace("URI=\"k.key\"", &format!("URI=\"{key}\""))
    };
    match name.as_str() {
        "index.m3u8" => playlist("k.key").into_response(),
        "bad.m3u8" => playlist("bad.key").into_response(),
        "short.m3u8" => playlist("short.key").into_response(),
        "implicit.m3u8" => std::fs::read_to_string(dir.join(&name))
            .unwrap()
            .into_response(),
        _ => match std::fs::read(dir.join(&name)) {
            Ok(data) => data.into_response(),
            Err(_) => StatusCode::NOT_FOUND.into_response(),
        },
    }
}

/// Starts the server; returns its address and state.
async fn serve_hls(scenario: Scenario) -> (std::net::SocketAddr, Arc<Live>) {
    cut();
    let started = Instant::now();
    let live = Arc::new(Live {
        scenario,
        started,
        base: SystemClock.now().saturating_add_ms(scenario.pdt_offset_ms),
        requests: Mutex::default(),
    });
    let app = axum::Router::new()
        .route("/live/index.m3u8", get(live_playlist))
        .route("/live/{name}", get(segment))
        .route("/fixed/{name}", get(fixed))
        .route("/sep/{name}", get(separate_audio))
        .route("/aes/{name}", get(aes))
        .route(
            "/moved/index.m3u8",
            get(|| async { axum::response::Redirect::temporary("/live/index.m3u8") }),
        )
        .with_state(Arc::clone(&live));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, live)
}

/// Records `input` until the server has served `last` (or 25 s), then half
/// a second more.
async fn record(input: &str, live: &Live, last: &str) -> (Vec<Segment>, IngestStats) {
    init_logs();
    let (tx, mut rx) = mpsc::channel(256);
    let task = IngestTask::spawn(config(&[input]), Arc::new(SystemClock), tx);
    for _ in 0..250 {
        if live.served(last) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(live.served(last) > 0, "{last} was never fetched");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = task.stop().await.expect("ingest ran");
    (drain(&mut rx).await, stats)
}

/// How far each segment's UTC is from the program date-time of its first
/// picture, in milliseconds.
fn pdt_errors_ms(segments: &[Segment], live: &Live) -> Vec<i64> {
    let first_pts = cut().first_pts;
    segments
        .iter()
        .map(|s| s.utc_start.0 - live.base.plus_ticks(s.pts_start - first_pts).0)
        .collect()
}

fn last_name(live: &Live) -> String {
    live.entry(cut().files.len() - 1).0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_playlist_is_recorded_on_its_program_date_time() {
    // Some seconds behind the wall clock, as origins are: `auto` keeps it.
    let (addr, live) = serve_hls(Scenario {
        pdt_offset_ms: -7_000,
        ..Scenario::default()
    })
    .await;
    let input = format!("hls://127.0.0.1:{}/live/index.m3u8", addr.port());
    let (segments, stats) = record(&input, &live, &last_name(&live)).await;
    let listing = describe(&segments);
    assert!(segments.len() >= 3, "{listing}");
    assert_well_formed(&segments);
    for pair in segments.windows(2) {
        assert_eq!(
            pair[1].utc_start,
            pair[0].utc_end(),
            "contiguous:\n{listing}"
        );
    }
    let errors = pdt_errors_ms(&segments, &live);
    eprintln!("pdt=auto, 7 s behind: UTC - PDT per segment (ms): {errors:?}");
    assert!(
        errors.iter().all(|e| e.abs() <= 100),
        "{errors:?}\n{listing}"
    );
    // Each segment was fetched once, the live edge first.
    for i in 0..cut().files.len() {
        assert!(
            live.served(&live.entry(i).0) <= 1,
            "segment {i} fetched twice"
        );
    }
    assert_eq!(stats.switches, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hour_old_program_date_time_is_kept_only_when_asked() {
    let (addr, live) = serve_hls(Scenario {
        pdt_offset_ms: -3_600_000,
        ..Scenario::default()
    })
    .await;
    let port = addr.port();
    // `keep`, and the http:// spelling: a .m3u8 is HLS, not TS.
    let input = format!("http://127.0.0.1:{port}/live/index.m3u8?pdt=keep");
    assert!(matches!(url(&input), InputUrl::Hls { .. }));
    let last = last_name(&live);
    let (segments, _) = record(&input, &live, &last).await;
    assert!(segments.len() >= 3, "{}", describe(&segments));
    let errors = pdt_errors_ms(&segments, &live);
    eprintln!("pdt=keep, 1 h behind: UTC - PDT per segment (ms): {errors:?}");
    assert!(errors.iter().all(|e| e.abs() <= 100), "{errors:?}");

    // `auto` (the default) does not trust it: the wall clock anchors.
    let (addr, live) = serve_hls(Scenario {
        pdt_offset_ms: -3_600_000,
        ..Scenario::default()
    })
    .await;
    let input = format!("hls://127.0.0.1:{}/live/index.m3u8", addr.port());
    let before = SystemClock.now();
    let (segments, _) = record(&input, &live, &last).await;
    let first = segments.first().expect("recorded");
    assert!(
        (first.utc_start.0 - before.0).abs() < 5_000,
        "anchored on the wall clock: {} vs {before}",
        first.utc_start
    );
    for pair in segments.windows(2) {
        assert_eq!(pair[1].utc_start, pair[0].utc_end());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_sequence_and_a_missing_segment_are_survived() {
    let (addr, live) = serve_hls(Scenario {
        pdt_offset_ms: -5_000,
        reset_at: Some(6),
        missing: Some(4),
    })
    .await;
    let input = format!("hls://127.0.0.1:{}/live/index.m3u8", addr.port());
    let last = last_name(&live);
    assert!(last.starts_with('b'), "the last segment is after the reset");
    let (segments, stats) = record(&input, &live, &last).await;
    let listing = describe(&segments);
    assert_well_formed(&segments);
    assert_eq!(live.served("missing4.ts"), 1, "the 404 was asked once");
    for i in 6..cut().files.len() {
        assert_eq!(
            live.served(&live.entry(i).0),
            1,
            "b{i} after the reset\n{listing}"
        );
    }
    // Recorded to the end of the clip, on the program date-time, with the
    // tape never going back.
    let end = segments.last().map(|s| s.pts_start + s.duration).unwrap();
    let clip_end = cut().first_pts + Ticks(cut().files.iter().map(|f| f.1 .0).sum());
    assert!(
        (clip_end - end).as_ms().abs() < 1_100,
        "recorded to {}, the clip ends at {}\n{listing}",
        end.display_secs(),
        clip_end.display_secs()
    );
    let errors = pdt_errors_ms(&segments, &live);
    assert!(
        errors.iter().all(|e| e.abs() <= 100),
        "{errors:?}\n{listing}"
    );
    for pair in segments.windows(2) {
        assert!(pair[1].utc_start >= pair[0].utc_end(), "{listing}");
    }
    assert_eq!((stats.switches, stats.signal_losses), (0, 0), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masters_pick_a_variant_and_unusable_playlists_fail_the_input() {
    use dvr_common::error::{ErrorKind, HasErrorKind};

    let (addr, _live) = serve_hls(Scenario::default()).await;
    let base = format!("hls://bob:s3cret@127.0.0.1:{}/fixed", addr.port());
    let open = |input: String| async move {
        dvr_ingest::open_source(
            &url(&input),
            &dvr_ingest::input::HttpOptions::default(),
            Arc::new(SystemClock),
            "test",
            None,
        )
        .await
        .expect("hls sources connect lazily")
    };
    // The lowest variant is the live playlist: TS comes out.
    let mut source = open(format!("{base}/master.m3u8?bandwidth=min")).await;
    let chunk = source
        .next_chunk()
        .await
        .expect("the low variant plays")
        .unwrap();
    assert_eq!(chunk.data[0], 0x47, "transport stream");
    // Redirected: segments are relative to where the playlist was served.
    let moved = format!("hls://127.0.0.1:{}/moved/index.m3u8", addr.port());
    let chunk = open(moved).await.next_chunk().await;
    assert!(chunk.is_ok_and(|c| c.is_some_and(|c| c.data[0] == 0x47)));
    let mut source = open(format!("{base}/master.m3u8?bandwidth=1000000")).await;
    assert!(
        source.next_chunk().await.is_ok(),
        "400 kb/s is below 1 Mb/s"
    );
    // The highest does not exist: the input fails, naming the variant.
    let mut source = open(format!("{base}/master.m3u8")).await;
    let e = source.next_chunk().await.expect_err("404").to_string();
    assert!(e.contains("high/index.m3u8") && e.contains("404"), "{e}");
    // The credentials go on to the variant (masked in the message).
    assert_eq!(e.matches("bob:***@").count(), 2, "{e}");
    for (name, why, kind) in [
        // The audio rendition's playlist is missing.
        (
            "audio-master.m3u8",
            "/fixed/en.m3u8) answered 404",
            ErrorKind::Unavailable,
        ),
        (
            "fmp4.m3u8",
            "fMP4 segments (EXT-X-MAP)",
            ErrorKind::InvalidData,
        ),
        (
            "sample-aes.m3u8",
            "cannot decrypt (EXT-X-KEY METHOD=SAMPLE-AES)",
            ErrorKind::InvalidData,
        ),
        (
            "broken.m3u8",
            "without #EXT-X-TARGETDURATION",
            ErrorKind::InvalidData,
        ),
        ("gone.m3u8", "answered 404", ErrorKind::Unavailable),
    ] {
        let mut source = open(format!("{base}/{name}")).await;
        let e = source.next_chunk().await.expect_err(name);
        let text = e.to_string();
        assert!(text.contains(why), "{name}: {text}");
        assert!(
            text.contains("bob:***@") && !text.contains("s3cret"),
            "{text}"
        );
        assert_eq!(e.error_kind(), kind, "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_audio_rendition_is_muxed_beside_the_video() {
    init_logs();
    let (addr, _live) = serve_hls(Scenario::default()).await;
    let dir = separate_audio_cut();
    let master = std::fs::read_to_string(dir.join("master.m3u8")).unwrap();
    assert!(
        master.contains("TYPE=AUDIO") && master.contains("URI="),
        "{master}"
    );
    let video_only = run(ffprobe()
        .args(["-show_entries", "stream=codec_type", "-of", "csv=p=0"])
        .arg(dir.join("s0_0.ts")));
    let kinds = String::from_utf8_lossy(&video_only.stdout);
    assert!(
        kinds.contains("video") && !kinds.contains("audio"),
        "{kinds}"
    );
    let input = format!("hls://127.0.0.1:{}/sep/master.m3u8", addr.port());
    let (tx, mut rx) = mpsc::channel(256);
    let task = IngestTask::spawn(config(&[&input]), Arc::new(SystemClock), tx);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let stats = task.stop().await.expect("ingest ran");
    let segments = drain(&mut rx).await;
    let listing = describe(&segments);
    assert!(!segments.is_empty(), "{stats:?}");
    assert_well_formed(&segments);
    let recorded = dir.join("recorded.ts");
    let bytes: Vec<u8> = segments.iter().flat_map(|s| s.payload.to_vec()).collect();
    std::fs::write(&recorded, bytes).unwrap();
    let (video, audio) = (packet_pts(&recorded, "v:0"), packet_pts(&recorded, "a:0"));
    let span = |t: &[i64]| (t.iter().min().copied(), t.iter().max().copied());
    eprintln!(
        "separate audio: {} video and {} audio packets, spans {:?} and {:?}\n{listing}",
        video.len(),
        audio.len(),
        span(&video),
        span(&audio)
    );
    // The live edge is the last three seconds: 75 pictures, about 140 AAC frames.
    assert!(video.len() >= 50, "{listing}");
    assert!(
        audio.len() * 2 >= video.len() * 3,
        "sound recorded: {} audio packets",
        audio.len()
    );
    let (Some(v0), Some(v1)) = span(&video) else {
        panic!("video")
    };
    let (Some(a0), Some(a1)) = span(&audio) else {
        panic!("audio")
    };
    assert!(
        (a0 - v0).abs() < 9_000 && (a1 - v1).abs() < 9_000,
        "aligned to 0.1 s"
    );
    assert_eq!(stats.cc_errors, 0, "{stats:?}");
}

/// An independent decryption of an AES-128 segment: openssl's.
fn openssl_decrypt(file: &Path, iv: u128) -> Vec<u8> {
    let out = Command::new("openssl")
        .args([
            "enc",
            "-d",
            "-aes-128-cbc",
            "-K",
            &hex(&AES_KEY),
            "-iv",
            &format!("{iv:032x}"),
            "-in",
        ])
        .arg(file)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aes_128_segments_are_decrypted_and_a_wrong_key_fails_the_input() {
    init_logs();
    let (addr, _live) = serve_hls(Scenario::default()).await;
    let dir = aes_cut();
    let Ok(Playlist::Media(media)) =
        playlist::parse(&std::fs::read(dir.join("index.m3u8")).unwrap())
    else {
        panic!("ffmpeg wrote a media playlist");
    };
    // ffmpeg names the IV (zero) once for every segment.
    assert!(media
        .segments
        .iter()
        .all(|s| s.key.as_ref().is_some_and(|k| k.iv == Some([0; 16]))));
    let open = |name: &str| {
        let input = format!("hls://127.0.0.1:{}/aes/{name}", addr.port());
        async move {
            dvr_ingest::open_source(
                &url(&input),
                &dvr_ingest::input::HttpOptions::default(),
                Arc::new(SystemClock),
                "test",
                None,
            )
            .await
            .unwrap()
        }
    };
    // A first load starts three segments from the end; each segment comes
    // out whole, exactly as openssl decrypts it.
    let mut source = open("index.m3u8").await;
    for segment in &media.segments[media.segments.len() - 3..] {
        let chunk = source.next_chunk().await.unwrap().expect("a segment");
        let expected = openssl_decrypt(&dir.join(&segment.uri), 0);
        assert_eq!(chunk.data.len(), expected.len(), "{}", segment.uri);
        assert!(
            chunk.data == expected,
            "{} decrypts differently",
            segment.uri
        );
    }
    // Without an IV in the playlist, each segment's media sequence number
    // is its IV: the clear bytes come back exactly.
    let mut source = open("implicit.m3u8").await;
    let files = &cut().files;
    for (bytes, _) in &files[files.len() - 3..] {
        let chunk = source.next_chunk().await.unwrap().expect("a segment");
        assert!(chunk.data == *bytes, "a segment decrypts differently");
    }
    // A wrong key: three segments that do not decrypt make the input fail,
    // naming the key; a key of the wrong size is refused as such.
    for (name, why) in [
        ("bad.m3u8", "does not decrypt with its key"),
        ("short.m3u8", "key short.key is 5 bytes, not 16"),
    ] {
        let mut source = open(name).await;
        let e = source.next_chunk().await.expect_err(name).to_string();
        assert!(e.contains(why), "{name}: {e}");
    }
}
