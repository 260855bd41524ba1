//! The packager's HTTP speed against nginx, measured with wrk on loopback
//! in one run (issue 6):
//!
//! - a 24-hour archive playlist: p99 latency with a warm catalog, one
//!   connection (so the figure is the generation time plus loopback HTTP,
//!   not queueing), every request a new URL (its start moves by a second)
//!   so each is generated, not served from the rendered-playlist cache;
//!   beside nginx serving the same bytes;
//! - a 1-hour archive playlist: requests per second, one URL (a popular
//!   programme: generated once, then served from the cache), beside nginx
//!   serving the same bytes as a static file; and the same with every
//!   request a new URL, generated each time;
//! - 1 MiB segments from the packager's memory cache: throughput, beside
//!   nginx serving the same files with sendfile;
//! - memory per 1,000 concurrent `timeshift_abs-T.ts` viewers (RSS growth
//!   of this process while wrk holds the streams open);
//! - fMP4 (issue 18): media pieces made from cached TS segments against the
//!   same TS segments (requests/s, both warm), and a 24-hour MPD's p99
//!   latency, every request a new URL, beside nginx serving one;
//! - what the HTTP edge and the play gate cost (issue 15): the same 1-hour
//!   playlist and 1 MiB segments through `dvr_edge::serve` (connection and
//!   request caps, timeouts, client address) with a securetoken policy
//!   answered from the gate's cache, against plain `axum::serve` with no
//!   policy; the same URLs, token included, so the answers are the same
//!   bytes; alternating runs, medians compared;
//! - what JPEG previews cost playback (issue 19): a range playlist's and
//!   cached segments' p99 latency alone, then while wrk keeps 100
//!   `-preview.jpg` requests open (every one a keyframe and width not yet
//!   made, so each is a decode or a 503 from the bounded pool), once with
//!   clients asking again at once after a 503 and once with clients
//!   waiting out its `Retry-After`.
//!
//! The archive is written here through the archive store, as the recorder
//! writes it: 24 hourly chunks of 1,800 small 2 s segments (PAT, PMT and
//! filler: the playlist figures do not read segment bytes) and one chunk of
//! 1 MiB segments; for fMP4, the committed H.264 + AAC clip looped and cut
//! by the real segmenter (fMP4 needs real pictures and frames). Run by
//! `bench/packager.sh`, which installs wrk and nginx,
//! starts nginx on a loopback port and passes `DVR_BENCH_NGINX`,
//! `DVR_BENCH_NGINX_ROOT` and `DVR_BENCH_WRK`. What is measured and why:
//! bench/README.md.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use dvr_archive::store::ArchiveStore;
use dvr_archive::tape::{StoreTape, StreamTape};
use dvr_archive::{ChunkIndex, ChunkKey};
use dvr_bus::{SegmentLog, SegmentLogOptions};
use dvr_common::{Clock, SimulatedClock, StreamName, SystemClock, Ticks, UtcMs};
use dvr_media::mp4::{encode_chunk_tables, SampleTable};
use dvr_media::retime::looped;
use dvr_media::{CodecSummary, Segment, SegmentFlags, Segmenter, SegmenterConfig};
use dvr_packager::{Packager, PackagerConfig};
use dvr_storage::{StorageConfig, StorageUri};
use dvr_testkit::clips;

/// Segments per hourly chunk: 2 s each.
const PER_HOUR: u64 = 1800;
/// 1 MiB segments served from the cache (and as files by nginx).
const BIG_SEGMENTS: u64 = 32;
/// Packets in a "1 MiB" segment: 5,577 × 188 = 1,048,476 bytes.
const BIG_PACKETS: usize = 5577;
/// Concurrent `timeshift_abs-T.ts` viewers.
const VIEWERS: usize = 1000;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run bench/packager.sh"))
}

/// A segment of `packets` packets: PAT and PMT of a real H.264 + AAC
/// program, then null packets.
fn payload(psi: &[u8], packets: usize) -> Bytes {
    let mut out = BytesMut::with_capacity(packets * 188);
    out.extend_from_slice(psi);
    let mut null = [0xffu8; 188];
    null[..4].copy_from_slice(&[0x47, 0x1f, 0xff, 0x10]);
    while out.len() < packets * 188 {
        out.extend_from_slice(&null);
    }
    out.freeze()
}

/// Writes one chunk of `count` 2 s segments of `segment` from `start`.
async fn write_chunk(
    store: &ArchiveStore,
    storage: &Arc<dyn dvr_storage::Storage>,
    stream: &StreamName,
    start: UtcMs,
    first_seq: u64,
    count: u64,
    segment: &Bytes,
) {
    let key = ChunkKey::new(stream.clone(), start, first_seq);
    let mut body = BytesMut::with_capacity(segment.len() * count as usize);
    for _ in 0..count {
        body.extend_from_slice(segment);
    }
    storage
        .put(&key.ts_key(), body.freeze())
        .await
        .expect("put chunk");
    let flags = SegmentFlags {
        discontinuity: false,
        independent: true,
    };
    let length = u32::try_from(segment.len()).expect("segment size");
    let index = ChunkIndex::from_segments(
        CodecSummary::default(),
        (0..count).map(|i| {
            let t = start.saturating_add_ms(2000 * i as i64);
            (
                first_seq + i,
                t,
                Ticks::from_ms(2000),
                Ticks(0),
                length,
                flags,
            )
        }),
    );
    store.commit_chunk(key, index).await.expect("commit chunk");
}

/// The committed clip looped to about `bytes` and cut by the real
/// segmenter into 2 s segments from `start`.
fn real_segments(clip: &[u8], bytes: usize, start: UtcMs) -> Vec<Segment> {
    let passes = bytes.div_ceil(clip.len()).max(1);
    let clock = SimulatedClock::new(start);
    let mut segmenter = Segmenter::new(SegmenterConfig::default(), Arc::new(clock));
    let mut segments = segmenter.push(&looped(clip, passes));
    segments.extend(segmenter.finish());
    segments
}

/// Writes `segments` as one chunk, indexed with their own timing, with
/// its sample tables beside it as the recorder writes them.
async fn write_segments(
    store: &ArchiveStore,
    storage: &Arc<dyn dvr_storage::Storage>,
    stream: &StreamName,
    segments: &[Segment],
) {
    let first = &segments[0];
    let key = ChunkKey::new(stream.clone(), first.utc_start, first.seq);
    let body: Vec<u8> = segments
        .iter()
        .flat_map(|s| s.payload.iter().copied())
        .collect();
    storage
        .put(&key.ts_key(), Bytes::from(body))
        .await
        .expect("put chunk");
    let tables: Vec<(u64, SampleTable)> = segments
        .iter()
        .filter_map(|s| {
            Some((
                s.seq,
                SampleTable::from_ts(&s.payload, s.pts_start, s.duration).ok()?,
            ))
        })
        .collect();
    storage
        .put(&key.smp_key(), Bytes::from(encode_chunk_tables(&tables)))
        .await
        .expect("put tables");
    let index = ChunkIndex::from_segments(
        (*first.codecs).clone(),
        segments.iter().map(|s| {
            let length = u32::try_from(s.payload.len()).expect("segment size");
            (s.seq, s.utc_start, s.duration, s.pts_start, length, s.flags)
        }),
    );
    store.commit_chunk(key, index).await.expect("commit chunk");
}

/// The media lines of the playlist at `path` (following a master's first
/// variant), as absolute paths under `/stream/`, and its `EXT-X-MAP`s.
async fn pieces(addr: SocketAddr, stream: &str, path: &str) -> Vec<String> {
    let text = String::from_utf8(get(addr, path).await).expect("utf-8");
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(map) = line
            .strip_prefix("#EXT-X-MAP:URI=\"")
            .and_then(|rest| rest.split('"').next())
        {
            out.push(format!("/{stream}/{map}"));
        } else if !line.starts_with('#') && !line.is_empty() {
            if line.ends_with(".m3u8") {
                return Box::pin(pieces(addr, stream, &format!("/{stream}/{line}"))).await;
            }
            out.push(format!("/{stream}/{line}"));
        }
    }
    out
}

/// What wrk reported.
#[derive(Debug, Default)]
struct Wrk {
    requests_per_sec: f64,
    bytes_per_sec: f64,
    p99_ms: f64,
    p50_ms: f64,
}

fn wrk(args: &[&str], url: &str) -> Wrk {
    let out = Command::new(env("DVR_BENCH_WRK"))
        .args(args)
        .arg("--latency")
        .arg(url)
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wrk {url}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("Non-2xx") && !text.contains("Socket errors"),
        "wrk {url}: errors\n{text}"
    );
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("wrk {url}: no {name:?} in\n{text}"))
            .to_owned()
    };
    Wrk {
        requests_per_sec: field("Requests/sec:").parse().expect("requests/sec"),
        bytes_per_sec: bytes(&field("Transfer/sec:")),
        p99_ms: millis(&field("99%")),
        p50_ms: millis(&field("50%")),
    }
}

/// `1.23ms`, `456.00us`, `1.2s` in milliseconds.
fn millis(s: &str) -> f64 {
    let (number, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        (s.strip_suffix('s').unwrap_or(s), 1000.0)
    };
    number.parse::<f64>().expect("a wrk latency") * scale
}

/// `250.31MB`, `1.02GB`, `812.00KB`, `10B` in bytes.
fn bytes(s: &str) -> f64 {
    let units = [
        ("GB", 1e0 * (1u64 << 30) as f64),
        ("MB", (1u64 << 20) as f64),
        ("KB", 1024.0),
        ("B", 1.0),
    ];
    for (unit, scale) in units {
        if let Some(n) = s.strip_suffix(unit) {
            return n.parse::<f64>().expect("a wrk size") * scale;
        }
    }
    panic!("wrk transfer rate {s:?}")
}

/// This process's resident set size, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// CPU time (user and system) of this process's threads whose name
/// starts with `prefix`, in ms.
fn threads_cpu_ms(prefix: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let ticks: u64 = tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
        .filter(|stat| {
            stat.split_once('(')
                .is_some_and(|(_, rest)| rest.starts_with(prefix))
        })
        .filter_map(|stat| {
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .sum();
    // Clock ticks of 10 ms (USER_HZ is 100 on Linux).
    ticks as f64 * 10.0
}

/// Open file descriptors of this process (one per accepted connection).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

async fn get(addr: SocketAddr, path: &str) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    s.read_to_end(&mut response).await.expect("read");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    assert!(
        !head.to_ascii_lowercase().contains("chunked"),
        "GET {path}: chunked"
    );
    response[split + 4..].to_vec()
}

fn put_file(root: &Path, path: &str, bytes: &[u8]) {
    let file = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(file.parent().expect("a parent")).expect("mkdir");
    std::fs::write(file, bytes).expect("write nginx file");
}

/// A wrk script in `dir` asking for `paths` in turn; its path.
fn rotate(dir: &Path, name: &str, paths: &[String]) -> String {
    rotate_with(dir, name, paths, "")
}

/// [`rotate`] with more of the script (`response`, `delay`) after it.
fn rotate_with(dir: &Path, name: &str, paths: &[String], more: &str) -> String {
    let lua = dir.join(name);
    let list: Vec<String> = paths.iter().map(|p| format!("\"{p}\"")).collect();
    std::fs::write(
        &lua,
        format!(
            "local paths = {{{}}}\nlocal i = 0\nrequest = function()\n  i = i % #paths + 1\n  return wrk.format(nil, paths[i])\nend\n{more}",
            list.join(",")
        ),
    )
    .expect("lua");
    lua.to_str().expect("utf-8 path").to_owned()
}

/// wrk clients that wait a second after a `503` (the previews'
/// `Retry-After: 1`) before their next request, as players and timeline
/// pages do; per wrk thread, so roughly.
const HONOR_RETRY_AFTER: &str = "local wait = 0\nresponse = function(status, headers, body)\n  if status == 503 then wait = 1000 else wait = 0 end\nend\ndelay = function()\n  return wait\nend\n";

/// A wrk `delay`: each connection waits 1 ms before its next request.
const PACE: &str = "delay = function()\n  return 1\nend\n";

fn row(name: &str, ours: f64, peer: f64, unit: &str, verdict: &str) {
    println!("{name:<44} {ours:>12.2} {peer:>12.2}  {unit:<8} {verdict}");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo test --all-targets` builds and runs benches as tests, without
    // wrk and nginx; only `cargo bench` (which passes --bench) measures.
    if !std::env::args().any(|a| a == "--bench") {
        println!("packager_http is a benchmark: run bench/packager.sh (make bench)");
        return;
    }
    let secs = std::env::var("DVR_BENCH_SECS").unwrap_or_else(|_| "5".into());
    let duration = format!("{secs}s");
    let nginx: SocketAddr = env("DVR_BENCH_NGINX").parse().expect("DVR_BENCH_NGINX");
    let www = PathBuf::from(env("DVR_BENCH_NGINX_ROOT"));

    let clip = clips::read(clips::H264_AAC_720P);
    let program = dvr_media::tracks::program_of(&clip).expect("a program in the clip");
    let mut psi = BytesMut::new();
    program.write_psi(&mut psi, &mut 0, &mut 0);
    let small = payload(&psi, 8);
    let big = payload(&psi, BIG_PACKETS);

    // The archive: 24 whole hours ending an hour ago (and the 1 MiB
    // segments in the first of them), on a real clock so paced streams run
    // in real time; a day from any second of its first hour is complete.
    let scratch = tempfile::tempdir().expect("tempdir");
    let uri = StorageUri::parse(&format!(
        "file://{}",
        scratch.path().join("archive").display()
    ))
    .expect("uri");
    let storage = dvr_storage::resolve(&uri, &StorageConfig::default()).expect("storage");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let start = UtcMs(clock.now().floor_hour().0 - 25 * 3_600_000);
    let (day, hd): (StreamName, StreamName) =
        ("day".parse().expect("name"), "hd".parse().expect("name"));
    let writer = ArchiveStore::new(Arc::clone(&storage));
    for h in 0..24 {
        let at = start.saturating_add_ms(h as i64 * 3_600_000);
        write_chunk(&writer, &storage, &day, at, h * PER_HOUR, PER_HOUR, &small).await;
    }
    write_chunk(&writer, &storage, &hd, start, 0, BIG_SEGMENTS, &big).await;
    // fMP4: about 16 MB of real pictures and frames (~5 minutes), and a
    // day whose first hour starts with them (a manifest describes a run
    // from its first segments; the rest are the small ones).
    let (cmaf, mpd_day): (StreamName, StreamName) = (
        "cmaf".parse().expect("name"),
        "mpdday".parse().expect("name"),
    );
    let real = real_segments(&clip, 16 << 20, start);
    write_segments(&writer, &storage, &cmaf, &real).await;
    for h in 0..24u64 {
        let at = start.saturating_add_ms(h as i64 * 3_600_000);
        let mut hour: Vec<Segment> = (0..PER_HOUR)
            .map(|i| Segment {
                seq: h * PER_HOUR + i,
                utc_start: at.saturating_add_ms(2000 * i as i64),
                duration: Ticks::from_ms(2000),
                pts_start: Ticks::ZERO,
                flags: SegmentFlags {
                    discontinuity: false,
                    independent: true,
                },
                codecs: Arc::clone(&real[0].codecs),
                payload: small.clone(),
            })
            .collect();
        if h == 0 {
            for (slot, segment) in hour.iter_mut().zip(&real[..2]) {
                slot.payload = segment.payload.clone();
                slot.pts_start = segment.pts_start;
            }
        }
        write_segments(&writer, &storage, &mpd_day, &hour).await;
    }

    // A packager as a replica starts: the catalog loaded from the archive.
    let store = Arc::new(ArchiveStore::new(Arc::clone(&storage)));
    store.load(&day).await.expect("load day");
    store.load(&hd).await.expect("load hd");
    store.load(&cmaf).await.expect("load cmaf");
    store.load(&mpd_day).await.expect("load mpdday");
    let packager = Arc::new(Packager::new(PackagerConfig::default(), Arc::clone(&clock)));
    for (name, live) in [
        (&day, "live-day"),
        (&hd, "live-hd"),
        (&cmaf, "live-cmaf"),
        (&mpd_day, "live-mpdday"),
    ] {
        let log = SegmentLog::open(scratch.path().join(live), SegmentLogOptions::default())
            .expect("live log");
        let tape = StoreTape::new(name.clone(), Arc::clone(&store));
        packager.add_stream(StreamTape::new(
            name.as_str(),
            Arc::new(log),
            Some(Arc::new(tape)),
        ));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let ours = listener.local_addr().expect("addr");
    let plain = Arc::clone(&packager);
    tokio::spawn(async move { axum::serve(listener, plain.router()).await });
    // The same tapes behind the edge, both streams under a securetoken
    // policy: every request passes the caps and the gate's cached allow.
    let guarded_addr = guarded(&packager, Arc::clone(&clock), &[&day, &hd]).await;

    let from = start.as_secs();
    let span = real.iter().map(|s| s.duration.as_ms()).sum::<i64>() / 1000;
    // `DVR_BENCH_ONLY=previews`: that table alone (bench/packager.sh
    // passes the variable on).
    if std::env::var("DVR_BENCH_ONLY").as_deref() == Ok("previews") {
        let ts_pieces = warm_pieces(ours, from, span).await;
        previews_against_playback(
            ours,
            (nginx, &www),
            &scratch,
            &duration,
            (from, span),
            &ts_pieces,
        )
        .await;
        return;
    }

    // The same bytes for nginx, under the same paths.
    let day_path = format!("/day/archive-{from}-86400.m3u8");
    let hour_path = format!("/day/archive-{}-3600.m3u8", from + 12 * 3600);
    for path in [&day_path, &hour_path] {
        // The first request also warms the indexes: "a warm catalog".
        let body = get(ours, path).await;
        put_file(&www, path, &body);
    }
    let hd_playlist =
        String::from_utf8(get(ours, &format!("/hd/archive-{from}-64.m3u8")).await).expect("utf-8");
    let segment_paths: Vec<String> = hd_playlist
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("/hd/{l}"))
        .collect();
    assert_eq!(segment_paths.len(), BIG_SEGMENTS as usize, "{hd_playlist}");
    for path in &segment_paths {
        let body = get(ours, path).await; // into the memory cache
        assert_eq!(body.len(), big.len());
        put_file(&www, path, &body);
    }
    let rotate = |name: &str, paths: &[String]| rotate(scratch.path(), name, paths);
    let lua = rotate("segments.lua", &segment_paths);
    // Every request a new URL: the start moves one second each time.
    let days: Vec<String> = (0..3600)
        .map(|i| format!("/day/archive-{}-86400.m3u8", from + i))
        .collect();
    let days = rotate("days.lua", &days);
    let hours: Vec<String> = (0..3600)
        .map(|i| format!("/day/archive-{}-3600.m3u8", from + 12 * 3600 + i))
        .collect();
    let hours = rotate("hours.lua", &hours);
    let url = |addr: SocketAddr, path: &str| format!("http://{addr}{path}");
    let entries =
        String::from_utf8(std::fs::read(www.join(day_path.trim_start_matches('/'))).expect("read"))
            .expect("utf-8")
            .matches("#EXTINF")
            .count();

    // Viewers first, before the other rows have grown the heap (memory
    // they free would be reused and hide the viewers' cost): wrk holds
    // VIEWERS endless responses open; RSS is sampled while they play (the
    // first seconds send the 3 s lead at once).
    let viewers_url = url(ours, &format!("/hd/timeshift_abs-{from}.ts"));
    let fds_before = open_fds();
    let before = rss_kib();
    let conns = VIEWERS.to_string();
    let mut held = Command::new(env("DVR_BENCH_WRK"))
        .args([
            "-t2",
            "-c",
            &conns,
            "-d",
            "12s",
            "--timeout",
            "60s",
            &viewers_url,
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run wrk");
    let mut peak = before;
    let mut peak_fds = fds_before;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        peak = peak.max(rss_kib());
        peak_fds = peak_fds.max(open_fds());
    }
    let _ = held.wait();
    let connected = peak_fds.saturating_sub(fds_before);
    let viewers_row = format!(
        "{:<44} {:>12.1} {:>12}  {:<8} {connected} connections seen, RSS {} -> {} MiB",
        format!("{VIEWERS} timeshift_abs-T.ts viewers, per viewer"),
        (peak.saturating_sub(before)) as f64 / VIEWERS as f64,
        "-",
        "KiB",
        before >> 10,
        peak >> 10
    );

    println!();
    println!(
        "packager vs nginx over loopback, wrk {duration} per row (24 h = {} segments in {entries} entries)",
        24 * PER_HOUR
    );
    println!(
        "{:<44} {:>12} {:>12}  {:<8} target",
        "", "packager", "nginx", "unit"
    );
    let single = ["-t1", "-c1", "-d", &duration];
    let a = wrk(&[&single[..], &["-s", &days]].concat(), &url(ours, "/"));
    let b = wrk(&single, &url(nginx, &day_path));
    row(
        "24 h archive playlist, p99 latency",
        a.p99_ms,
        b.p99_ms,
        "ms",
        &format!("< 5 ms: {}", if a.p99_ms < 5.0 { "met" } else { "MISSED" }),
    );
    row(
        "24 h archive playlist, p50 latency",
        a.p50_ms,
        b.p50_ms,
        "ms",
        "",
    );
    let many = ["-t2", "-c16", "-d", &duration];
    let (a, b) = (
        wrk(&many, &url(ours, &hour_path)),
        wrk(&many, &url(nginx, &hour_path)),
    );
    let share = a.requests_per_sec / b.requests_per_sec;
    row(
        "1 h archive playlist, requests/s",
        a.requests_per_sec,
        b.requests_per_sec,
        "req/s",
        &format!(
            ">= 50 % of nginx: {:.0} % {}",
            share * 100.0,
            if share >= 0.5 { "met" } else { "MISSED" }
        ),
    );
    let fresh = wrk(&[&many[..], &["-s", &hours]].concat(), &url(ours, "/"));
    row(
        "1 h playlist, every URL new (generated), req/s",
        fresh.requests_per_sec,
        b.requests_per_sec,
        "req/s",
        "(no target: the cache's miss cost)",
    );
    let segs = ["-t2", "-c8", "-d", &duration, "-s", &lua];
    let (a, b) = (wrk(&segs, &url(ours, "/")), wrk(&segs, &url(nginx, "/")));
    let share = a.bytes_per_sec / b.bytes_per_sec;
    row(
        "1 MiB segments from cache, MiB/s",
        a.bytes_per_sec / f64::from(1 << 20),
        b.bytes_per_sec / f64::from(1 << 20),
        "MiB/s",
        &format!(
            ">= 80 % of nginx: {:.0} % {}",
            share * 100.0,
            if share >= 0.8 { "met" } else { "MISSED" }
        ),
    );
    println!("{viewers_row}");

    // fMP4 pieces against the TS segments they are made from, both warm;
    // and a day's MPD, generated for every request.
    let ts_pieces = warm_pieces(ours, from, span).await;
    let fmp4_pieces = pieces(
        ours,
        "cmaf",
        &format!("/cmaf/archive-{from}-{span}.fmp4.m3u8"),
    )
    .await;
    for path in &fmp4_pieces {
        let body = get(ours, path).await; // into the caches
        assert!(!body.is_empty(), "{path}");
    }
    let ts_lua = rotate("ts-pieces.lua", &ts_pieces);
    let fmp4_lua = rotate("fmp4-pieces.lua", &fmp4_pieces);
    let a = wrk(
        &["-t2", "-c8", "-d", &duration, "-s", &fmp4_lua],
        &url(ours, "/"),
    );
    let b = wrk(
        &["-t2", "-c8", "-d", &duration, "-s", &ts_lua],
        &url(ours, "/"),
    );
    let share = a.requests_per_sec / b.requests_per_sec;
    println!(
        "{:<44} {:>12} {:>12}  {:<8} target",
        "", "fMP4", "TS", "unit"
    );
    row(
        &format!(
            "cached pieces ({} fMP4, {} TS), req/s",
            fmp4_pieces.len(),
            ts_pieces.len()
        ),
        a.requests_per_sec,
        b.requests_per_sec,
        "req/s",
        &format!(
            ">= 80 % of TS: {:.0} % {}",
            share * 100.0,
            if share >= 0.8 { "met" } else { "MISSED" }
        ),
    );
    let mpd_path = format!("/mpdday/archive-{from}-86400.mpd?dynamic=false");
    let mpd = get(ours, &mpd_path).await;
    put_file(&www, "/mpdday/day.mpd", &mpd);
    // A new URL each time by its length: a manifest describes a run from
    // its first segments, which only at `from` carry pictures here.
    let mpds: Vec<String> = (0..3600)
        .map(|i| format!("/mpdday/archive-{from}-{}.mpd?dynamic=false", 86_400 - i))
        .collect();
    let mpds = rotate("mpds.lua", &mpds);
    let a = wrk(&[&single[..], &["-s", &mpds]].concat(), &url(ours, "/"));
    let b = wrk(&single, &url(nginx, "/mpdday/day.mpd"));
    println!(
        "{:<44} {:>12} {:>12}  {:<8} target",
        "", "packager", "nginx", "unit"
    );
    row(
        &format!("24 h MPD ({} bytes), p99 latency", mpd.len()),
        a.p99_ms,
        b.p99_ms,
        "ms",
        &format!(
            "< 10 ms: {}",
            if a.p99_ms < 10.0 { "met" } else { "MISSED" }
        ),
    );

    previews_against_playback(
        ours,
        (nginx, &www),
        &scratch,
        &duration,
        (from, span),
        &ts_pieces,
    )
    .await;

    // The edge's and the gate's cost: alternating runs of the same URLs
    // (token included) on both listeners, medians compared.
    let token = |stream: &str| {
        let now = clock.now().as_secs();
        dvr_auth::securetoken::sign(
            TOKEN_KEY,
            false,
            stream,
            "127.0.0.1",
            "s4lt",
            now - 60,
            now + 86_400,
        )
    };
    let hour_query = format!("{hour_path}?token={}", token("day"));
    let tokened: Vec<String> = segment_paths
        .iter()
        .map(|p| format!("{p}?token={}", token("hd")))
        .collect();
    let tokened_lua = rotate("segments-token.lua", &tokened);
    let rounds = 3;
    let (mut plain_rps, mut guarded_rps, mut plain_bps, mut guarded_bps) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let segs = ["-t2", "-c8", "-d", &duration, "-s", &tokened_lua];
    for round in 0..rounds {
        // Alternate which goes first, so neither always meets a warmer
        // machine.
        let order = if round % 2 == 0 {
            [ours, guarded_addr]
        } else {
            [guarded_addr, ours]
        };
        for addr in order {
            let playlist = wrk(&many, &url(addr, &hour_query));
            let segments = wrk(&segs, &url(addr, "/"));
            let (rps, bps) = if addr == ours {
                (&mut plain_rps, &mut plain_bps)
            } else {
                (&mut guarded_rps, &mut guarded_bps)
            };
            rps.push(playlist.requests_per_sec);
            bps.push(segments.bytes_per_sec);
        }
    }
    println!();
    println!(
        "the HTTP edge (caps, timeouts, client address) + play gate (cached allow) vs plain axum::serve, median of {rounds} alternating runs"
    );
    println!(
        "{:<44} {:>12} {:>12}  {:<8} target",
        "", "edge+gate", "plain", "unit"
    );
    let cost_row = |name: &str, with: &[f64], without: &[f64], unit: &str, scale: f64| {
        let (a, b) = (median(with), median(without));
        let cost = 1.0 - a / b;
        row(
            name,
            a / scale,
            b / scale,
            unit,
            &format!(
                "cost <= 5 %: {:.1} % {}",
                cost * 100.0,
                if cost <= 0.05 { "met" } else { "MISSED" }
            ),
        );
    };
    cost_row(
        "1 h archive playlist, requests/s",
        &guarded_rps,
        &plain_rps,
        "req/s",
        1.0,
    );
    cost_row(
        "1 MiB segments from cache, MiB/s",
        &guarded_bps,
        &plain_bps,
        "MiB/s",
        f64::from(1 << 20),
    );
}

/// The securetoken key of the guarded listener's streams.
const TOKEN_KEY: &str = "bench-key";

/// Serves `packager`'s tapes of `streams`, each under a securetoken
/// policy, through the HTTP edge with its default limits, on a new
/// loopback port.
async fn guarded(
    packager: &Packager,
    clock: Arc<dyn Clock>,
    streams: &[&StreamName],
) -> SocketAddr {
    let mut yaml = String::from("version: 1\nstreams:\n");
    for name in streams {
        yaml.push_str(&format!(
            "  {name}: {{ inputs: [ \"udp://239.0.0.1:1\" ], auth: \"securetoken://{TOKEN_KEY}\" }}\n"
        ));
    }
    let config = dvr_common::Config::from_yaml_str(&yaml, "bench").expect("bench config");
    let engine = dvr_auth::Engine::new(&config, Arc::clone(&clock), None);
    let gate = Arc::new(dvr_packager::Gate::new(Arc::new(engine)));
    let guarded = Arc::new(Packager::new(PackagerConfig::default(), clock).with_auth(gate));
    for name in streams {
        let tape = packager
            .stream_tape(name.as_str())
            .expect("a served stream");
        guarded.add_stream(tape);
    }
    let http = dvr_common::config::HttpConfig::default();
    let edge = dvr_edge::Edge::new(&http);
    let app = edge.wrap(guarded.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(dvr_edge::serve(listener, app, edge, std::future::pending()));
    addr
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// The `cmaf` range's TS segments, each asked once so that the memory
/// cache holds them.
async fn warm_pieces(ours: SocketAddr, from: i64, span: i64) -> Vec<String> {
    let paths = pieces(ours, "cmaf", &format!("/cmaf/archive-{from}-{span}.m3u8")).await;
    for path in &paths {
        let body = get(ours, path).await;
        assert!(!body.is_empty(), "{path}");
    }
    paths
}

/// Playlist and segment p99 latency of the `cmaf` stream alone and while
/// 100 connections ask for JPEG previews of its keyframes, each URL new
/// (a keyframe and width not yet decoded), so the pool decodes or refuses
/// every one; beside nginx serving the same playlist and segments on the
/// same machine under the same load, which tells what the machine does to
/// any server's p99 from what the packager does.
async fn previews_against_playback(
    ours: SocketAddr,
    peer: (SocketAddr, &Path),
    scratch: &tempfile::TempDir,
    duration: &str,
    (from, span): (i64, i64),
    segments: &[String],
) {
    let status = get(
        ours,
        &format!(
            "/cmaf/recording_status.json?from={from}&to={}&request=brief_thumbnails",
            from + span
        ),
    )
    .await;
    let status: serde_json::Value = serde_json::from_slice(&status).expect("json");
    let seconds: Vec<i64> = status[0]["brief_thumbnails"]
        .as_array()
        .expect("brief_thumbnails")
        .iter()
        .filter_map(serde_json::Value::as_i64)
        .collect();
    let mut previews = Vec::new();
    for width in (320..=1920).step_by(32) {
        for &second in &seconds {
            let c = dvr_common::CivilTime::from_utc(UtcMs::from_secs(second));
            previews.push(format!(
                "/cmaf/{:04}/{:02}/{:02}/{:02}/{:02}/{:02}-preview.jpg?width={width}",
                c.year, c.month, c.day, c.hour, c.minute, c.second
            ));
        }
    }
    // The decoder runs here (a 415 would pass for a refusal below).
    let jpeg = get(ours, &previews[0]).await;
    assert!(jpeg.starts_with(&[0xff, 0xd8]), "a JPEG");
    let playlist = [format!("/cmaf/archive-{from}-{span}.m3u8")];
    let (nginx, www) = peer;
    put_file(www, &playlist[0], &get(ours, &playlist[0]).await);
    // Playback as viewers ask for it (each connection waits 1 ms between
    // requests: some 3,500 a second, what ~14,000 players polling a
    // playlist every 4 s ask), and flat out (the node past its capacity,
    // where p99 is the queue behind the CPU and grows with any other work).
    let paced = [
        rotate_with(scratch.path(), "paced-playlist.lua", &playlist, PACE),
        rotate_with(scratch.path(), "paced-segments.lua", segments, PACE),
    ];
    let flat_out = [
        rotate(scratch.path(), "flat-playlist.lua", &playlist),
        rotate(scratch.path(), "flat-segments.lua", segments),
    ];
    let p99 = |script: &str, addr: SocketAddr| {
        let root = format!("http://{addr}/");
        wrk(&["-t1", "-c4", "-d", duration, "-s", script], &root).p99_ms
    };
    // The packager's playlist and segments, nginx's playlist (the peer's
    // segments are left out: nginx's sendfile answers of this size stall
    // on delayed ACKs here, 25-40 ms at p99, which says nothing of load).
    let measure = |scripts: &[String; 2]| {
        [
            p99(&scripts[0], ours),
            p99(&scripts[1], ours),
            p99(&scripts[0], nginx),
        ]
    };
    let secs: u64 = duration.trim_end_matches('s').parse().unwrap_or(5);
    let load_secs = 3 * secs + 4;
    println!();
    println!(
        "playback while 100 connections ask the packager for JPEG previews (2 dvr-preview-decoder under SCHED_IDLE, queue 32; every URL a new keyframe and width); nginx serves the same playlist on the same machine under the same load"
    );
    println!(
        "{:<44} {:>12} {:>12}  {:<8} target",
        "", "with", "without", "unit"
    );
    // Clients that ask again at once after a 503 (a refusal storm), and
    // clients that wait out the Retry-After, each against a run alone;
    // playback paced and flat out.
    for (name, more, playback, scripts) in [
        ("asking again at once", "", "paced", &paced),
        (
            "waiting out Retry-After",
            HONOR_RETRY_AFTER,
            "paced",
            &paced,
        ),
        ("asking again at once", "", "flat out", &flat_out),
        (
            "waiting out Retry-After",
            HONOR_RETRY_AFTER,
            "flat out",
            &flat_out,
        ),
    ] {
        let lua = rotate_with(scratch.path(), "previews.lua", &previews, more);
        let alone = measure(scripts);
        let (serving_before, decoding_before) = (
            threads_cpu_ms("tokio-rt-worker"),
            threads_cpu_ms("preview-decoder"),
        );
        let load = Command::new(env("DVR_BENCH_WRK"))
            .args(["-t2", "-c100", "-d", &format!("{load_secs}s")])
            .args(["--timeout", "30s", "-s", &lua, &format!("http://{ours}/")])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run wrk");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let loaded = measure(scripts);
        let out = load.wait_with_output().expect("wrk");
        let serving = threads_cpu_ms("tokio-rt-worker") - serving_before;
        let decoding = threads_cpu_ms("preview-decoder") - decoding_before;
        let text = String::from_utf8_lossy(&out.stdout);
        let refused: u64 = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let total = text
            .lines()
            .find_map(|l| l.split(" requests in ").next()?.trim().parse::<u64>().ok())
            .unwrap_or(0);
        println!(
            "playback {playback}, previews {name}: {} decoded, {refused} refused with 503 in {load_secs}s; CPU of the packager's runtime {serving:.0} ms, of its decoder threads {decoding:.0} ms (their processes not counted)",
            total.saturating_sub(refused),
        );
        for (i, what) in [
            "range playlist, p99, packager",
            "cached TS segments, p99, packager",
        ]
        .into_iter()
        .enumerate()
        {
            let rise = loaded[i] / alone[i] - 1.0;
            row(
                &format!("  {what}"),
                loaded[i],
                alone[i],
                "ms",
                &format!(
                    "within 20 %: {:+.0} % {}",
                    rise * 100.0,
                    if rise <= 0.2 { "met" } else { "MISSED" }
                ),
            );
        }
        row(
            "  range playlist, p99, nginx",
            loaded[2],
            alone[2],
            "ms",
            &format!("(peer: {:+.0} %)", (loaded[2] / alone[2] - 1.0) * 100.0),
        );
    }
}
