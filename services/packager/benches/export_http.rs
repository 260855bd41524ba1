//! What an MP4 export costs the server (issue 19), beside the tool people
//! would otherwise use, on the same range in one run:
//!
//! - `archive-FROM-DUR.mp4` of a 10-minute ~5 Mbps range, downloaded by
//!   curl over loopback HTTP: CPU seconds of this process (the packager
//!   serving it; from `/proc/self/stat`, so curl's own CPU is not in it);
//! - `ffmpeg -i http://…/archive-FROM-DUR.ts -c copy out.mp4` on the same
//!   range: ffmpeg's CPU (GNU time), and this process's CPU serving it the
//!   TS, shown apart;
//! - time to the first byte of the MP4, warm (the chunk indexes and
//!   `.smp` sample tables already read once), curl's
//!   `time_starttransfer`;
//! - the most this process's RSS grows while it serves the MP4 (sampled
//!   every 5 ms), against the `moov` it must hold.
//!
//! The tape: the segmenter bench's 10-minute 1080p 25 fps 5 Mbps H.264 +
//! AAC transport stream (`bench/input.sh`), cut by the real segmenter into
//! 2 s segments and archived in a file store as the recorder writes it
//! (one-minute chunks with their `.smp` sample tables). Each row runs
//! `DVR_BENCH_RUNS` times (default 3), medians reported. Run by
//! `bench/export.sh` (`make bench`), which passes `DVR_BENCH_INPUT`.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dvr_archive::store::ArchiveStore;
use dvr_archive::tape::{StoreTape, StreamTape};
use dvr_archive::{ChunkIndex, ChunkKey};
use dvr_bus::{SegmentLog, SegmentLogOptions};
use dvr_common::{Clock, SimulatedClock, StreamName, UtcMs};
use dvr_media::mp4::{encode_chunk_tables, SampleTable};
use dvr_media::{Segment, Segmenter, SegmenterConfig};
use dvr_packager::{Packager, PackagerConfig};
use dvr_storage::{Storage, StorageConfig, StorageUri};

/// 2026-11-21T14:00:00Z: the tape's start.
const T0: i64 = 1_795_269_600;
/// Segments per archived chunk: one minute of 2 s segments.
const PER_CHUNK: usize = 30;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run bench/export.sh"))
}

/// CPU seconds (user + system) this process has used.
fn cpu_self() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = &stat[stat.rfind(')').expect("stat") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ: 100 on every Linux this runs on.
    ticks as f64 / 100.0
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

/// `segments` archived as the recorder writes them: chunks of
/// [`PER_CHUNK`], each with its `.smp` sample tables.
async fn archive(
    storage: &Arc<dyn Storage>,
    stream: &StreamName,
    segments: &[Segment],
) -> Arc<ArchiveStore> {
    let store = Arc::new(ArchiveStore::new(Arc::clone(storage)));
    for chunk in segments.chunks(PER_CHUNK) {
        let first = &chunk[0];
        let key = ChunkKey::new(stream.clone(), first.utc_start, first.seq);
        let body: Vec<u8> = chunk
            .iter()
            .flat_map(|s| s.payload.iter().copied())
            .collect();
        storage
            .put(&key.ts_key(), Bytes::from(body))
            .await
            .expect("put chunk");
        let tables: Vec<(u64, SampleTable)> = chunk
            .iter()
            .map(|s| {
                let table =
                    SampleTable::from_ts(&s.payload, s.pts_start, s.duration).expect("table");
                (s.seq, table)
            })
            .collect();
        storage
            .put(&key.smp_key(), Bytes::from(encode_chunk_tables(&tables)))
            .await
            .expect("put tables");
        let index = ChunkIndex::from_segments(
            (*first.codecs).clone(),
            chunk.iter().map(|s| {
                let length = u32::try_from(s.payload.len()).expect("segment size");
                (s.seq, s.utc_start, s.duration, s.pts_start, length, s.flags)
            }),
        );
        store.commit_chunk(key, index).await.expect("commit chunk");
    }
    store
}

/// Runs `argv` under GNU time; (user + system CPU s, peak RSS MB, stdout).
fn timed(argv: &[&str]) -> (f64, f64, String) {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%U %S %M"])
        .args(argv)
        .output()
        .expect("/usr/bin/time");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{argv:?}: {stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    let f: Vec<f64> = last
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (
        f[0] + f[1],
        f[2] / 1024.0,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Runs `f` while a thread samples this process's RSS every 5 ms; its
/// result and the most the RSS grew, in MB.
fn sampled<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let sampling = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU64::new(0));
    let base = rss_kib();
    let sampler = std::thread::spawn({
        let (sampling, peak) = (Arc::clone(&sampling), Arc::clone(&peak));
        move || {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                #[allow(clippy::disallowed_methods, reason = "a sampling thread, no executor")]
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    });
    let out = f();
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let grown = peak.load(Ordering::Relaxed).saturating_sub(base);
    (out, grown as f64 / 1024.0)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // `cargo test --all-targets` builds and runs benches as tests, without
    // the input bench/export.sh makes; only `cargo bench` (which passes
    // --bench) measures.
    if !std::env::args().any(|a| a == "--bench") {
        println!("export_http is a benchmark: run bench/export.sh (make bench)");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let input = env("DVR_BENCH_INPUT");
    let runs: usize = std::env::var("DVR_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();

    // The tape, archived.
    let bytes = std::fs::read(&input).expect("the bench input");
    let clock = Arc::new(SimulatedClock::new(UtcMs(T0 * 1000)));
    let mut segmenter = Segmenter::new(
        SegmenterConfig::default(),
        Arc::clone(&clock) as Arc<dyn Clock>,
    );
    let mut segments = Vec::new();
    for block in bytes.chunks(1 << 20) {
        segments.extend(segmenter.push(block));
    }
    segments.extend(segmenter.finish());
    drop(bytes);
    let uri =
        StorageUri::parse(&format!("file://{}", dir.path().join("archive").display())).unwrap();
    let storage: Arc<dyn Storage> = dvr_storage::resolve(&uri, &StorageConfig::default()).unwrap();
    let stream: StreamName = "ch".parse().unwrap();
    let store = runtime.block_on(archive(&storage, &stream, &segments));
    let start = (segments[0].utc_start.0 + 999) / 1000;
    let end = segments.last().unwrap().utc_end().0 / 1000;
    let duration = (end - start).min(600);
    let tape_mb = segments.iter().map(|s| s.payload.len()).sum::<usize>() as f64 / 1e6;
    drop(segments);

    let packager = Arc::new(Packager::new(
        PackagerConfig::default(),
        Arc::new(SimulatedClock::new(UtcMs((end + 1) * 1000))),
    ));
    let log =
        Arc::new(SegmentLog::open(dir.path().join("log"), SegmentLogOptions::default()).unwrap());
    packager.add_stream(StreamTape::new(
        "ch",
        log,
        Some(Arc::new(StoreTape::new(stream, store))),
    ));
    let router = Arc::clone(&packager).router();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    runtime.spawn(async move { axum::serve(listener, router).await });
    let base = format!("http://127.0.0.1:{port}/ch/archive-{start}-{duration}");
    let mp4_url = format!("{base}.mp4");
    let ts_url = format!("{base}.ts");
    let out = dir.path().join("out.mp4");
    let out = out.to_str().unwrap();

    // Warm: every index and table read once, the files in the page cache.
    let curl = |url: &str| -> (f64, f64) {
        let o = Command::new("curl")
            .args([
                "-sS",
                "-o",
                out,
                "-w",
                "%{time_starttransfer} %{size_download}",
                url,
            ])
            .output()
            .expect("curl");
        assert!(
            o.status.success(),
            "curl {url}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let text = String::from_utf8_lossy(&o.stdout);
        let mut f = text.split_whitespace().map(|x| x.parse::<f64>().unwrap());
        (f.next().unwrap(), f.next().unwrap())
    };
    // The first download (the files in the page cache) fills the caches:
    // the RSS it adds is what an export holds (the moov, one converted
    // segment, the decoded sample tables kept for the next one).
    let (_, first_rss) = sampled(|| curl(&mp4_url));
    curl(&ts_url);

    let (mut ours, mut ttfb, mut rss, mut theirs, mut serving_ts, mut ffmpeg_rss) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let mut mp4_mb = 0.0;
    for _ in 0..runs {
        // The MP4 export, warm: this process's CPU and RSS growth while
        // curl downloads it.
        let before = cpu_self();
        let ((first_byte, size), grown) = sampled(|| curl(&mp4_url));
        ours.push(cpu_self() - before);
        ttfb.push(first_byte * 1000.0);
        rss.push(grown);
        mp4_mb = size / 1e6;

        // The peer: ffmpeg remuxing the TS of the same range into MP4.
        let before = cpu_self();
        let (cpu, peak_mb, _) = timed(&[
            "ffmpeg", "-nostdin", "-v", "error", "-y", "-i", &ts_url, "-map", "0", "-c", "copy",
            "-f", "mp4", out,
        ]);
        serving_ts.push(cpu_self() - before);
        theirs.push(cpu);
        ffmpeg_rss.push(peak_mb);
    }
    let (ours, theirs) = (median(ours), median(theirs));
    println!("MP4 export of a {duration} s range ({tape_mb:.0} MB of TS archived; {mp4_mb:.0} MB of MP4), medians of {runs}:");
    println!("{:<58} {:>10}", "row", "CPU s");
    println!(
        "{:<58} {:>10.2}",
        "dvr archive-FROM-DUR.mp4 (server, this process)", ours
    );
    println!(
        "{:<58} {:>10.2}",
        "ffmpeg -i …/archive-FROM-DUR.ts -c copy out.mp4 (ffmpeg)", theirs
    );
    println!(
        "{:<58} {:>10.2}",
        "  dvr serving that .ts to ffmpeg (server, apart)",
        median(serving_ts)
    );
    let ratio = theirs / ours.max(0.01);
    println!(
        "CPU ratio ffmpeg/dvr: {ratio:.1}x (target >= 3x: {})",
        if ratio >= 3.0 { "met" } else { "NOT met" }
    );
    let ttfb = median(ttfb);
    println!(
        "first byte of the MP4, warm: {ttfb:.1} ms (target < 50 ms: {})",
        if ttfb < 50.0 { "met" } else { "NOT met" }
    );
    println!(
        "server RSS growth serving the MP4: {first_rss:.1} MB the first time (caches filled), {:.1} MB warm (ffmpeg's own peak RSS: {:.1} MB)",
        median(rss),
        median(ffmpeg_rss)
    );
}
