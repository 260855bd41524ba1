//! Time to first byte of one archived segment through the packager, from a
//! cold cache (a ranged GET to S3), a warm memory cache and a warm disk
//! cache, beside nginx serving the same bytes from a file: the floor for
//! "an HTTP server hands out a file".
//!
//! Run by `bench/segment_ttfb.sh`, which starts s3s-fs and nginx on
//! loopback and passes them in the environment (`AWS_ENDPOINT_URL` and
//! friends, `DVR_BENCH_NGINX`, `DVR_BENCH_NGINX_ROOT`). What is measured
//! and why: bench/README.md.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dvr_archive::store::ArchiveStore;
use dvr_archive::tape::{StoreTape, StreamTape};
use dvr_archive::{ChunkIndex, ChunkKey, DiskCache, DiskCacheConfig, MemoryCache};
use dvr_bus::{SegmentLog, SegmentLogOptions};
use dvr_common::{SimulatedClock, StreamName, Ticks, UtcMs};
use dvr_media::{CodecSummary, SegmentFlags};
use dvr_packager::{Packager, PackagerConfig};
use dvr_storage::{StorageConfig, StorageUri};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// 2026-11-21T14:00:00Z, in seconds.
const T0: i64 = 1_795_269_600;
/// Segments measured, each from a cold cache once.
const SEGMENTS: u64 = 30;
/// 1 MiB: a 2 s segment of a 4 Mbit/s HD channel.
const SEGMENT_BYTES: usize = 1 << 20;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run bench/segment_ttfb.sh"))
}

fn payload(seq: u64) -> Vec<u8> {
    let mut p = vec![0xffu8; SEGMENT_BYTES];
    for (i, packet) in p.chunks_mut(188).enumerate() {
        packet[0] = 0x47;
        if packet.len() > 9 {
            packet[1..9].copy_from_slice(&(seq ^ i as u64).to_be_bytes());
        }
    }
    p
}

/// One request on a fresh connection, as a player's first request is:
/// (time to the first response byte, time to the last, status, bytes).
async fn fetch(addr: SocketAddr, path: &str) -> (Duration, Duration, u16, usize) {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.expect("send");
    let mut buf = vec![0u8; 256 << 10];
    let n = s.read(&mut buf).await.expect("read");
    let ttfb = start.elapsed();
    let head = String::from_utf8_lossy(&buf[..n.min(64)]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut total = n;
    loop {
        match s.read(&mut buf).await.expect("read") {
            0 => break,
            k => total += k,
        }
    }
    (ttfb, start.elapsed(), status, total)
}

struct Row {
    name: &'static str,
    ttfb: Vec<Duration>,
    total: Vec<Duration>,
}

impl Row {
    fn new(name: &'static str) -> Row {
        Row {
            name,
            ttfb: Vec::new(),
            total: Vec::new(),
        }
    }

    async fn measure(&mut self, addr: SocketAddr, path: &str) {
        let (ttfb, total, status, bytes) = fetch(addr, path).await;
        assert_eq!(status, 200, "{} {path}", self.name);
        assert!(bytes > SEGMENT_BYTES, "{} {path}: {bytes} bytes", self.name);
        self.ttfb.push(ttfb);
        self.total.push(total);
    }
}

fn quantile(v: &[Duration], q: f64) -> f64 {
    let mut ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let i = ((ms.len() - 1) as f64 * q).round() as usize;
    ms[i]
}

/// A packager serving the archive on a loopback port.
async fn packager(
    store: Arc<ArchiveStore>,
    stream: &StreamName,
    live: &std::path::Path,
) -> SocketAddr {
    store.load(stream).await.expect("load the archive");
    let log = Arc::new(SegmentLog::open(live, SegmentLogOptions::default()).expect("live log"));
    let clock = SimulatedClock::new(UtcMs::from_secs(T0 + 86_400));
    let packager = Arc::new(Packager::new(PackagerConfig::default(), Arc::new(clock)));
    let tape = StoreTape::new(stream.clone(), store);
    packager.add_stream(StreamTape::new(stream.as_str(), log, Some(Arc::new(tape))));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, packager.router()).await });
    addr
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo test --all-targets` builds and runs benches as tests, without
    // the servers; only `cargo bench` (which passes --bench) measures.
    if !std::env::args().any(|a| a == "--bench") {
        println!("segment_ttfb is a benchmark: run bench/segment_ttfb.sh (make bench)");
        return;
    }
    let nginx: SocketAddr = env("DVR_BENCH_NGINX")
        .parse()
        .expect("DVR_BENCH_NGINX is host:port");
    let www = std::path::PathBuf::from(env("DVR_BENCH_NGINX_ROOT"));
    let mut storage_config = StorageConfig::default();
    storage_config.apply_env(|k| std::env::var(k).ok());
    let uri = StorageUri::parse("s3://bench/dvr").expect("uri");
    let storage = dvr_storage::resolve(&uri, &storage_config).expect("s3 storage");
    storage.check().await.expect("s3s-fs is reachable");
    let stream: StreamName = "bench".parse().expect("name");

    // One chunk of SEGMENTS 1 MiB segments, through the store as the recorder
    // writes it; the same bytes as files for nginx.
    // One segment more than measured: the warm-up request's.
    let key = ChunkKey::new(stream.clone(), UtcMs::from_secs(T0), 0);
    let body: Vec<u8> = (0..=SEGMENTS).flat_map(payload).collect();
    storage
        .put(&key.ts_key(), Bytes::from(body))
        .await
        .expect("put chunk");
    let flags = SegmentFlags {
        discontinuity: false,
        independent: true,
    };
    let index = ChunkIndex::from_segments(
        CodecSummary::default(),
        (0..=SEGMENTS).map(|i| {
            let t = UtcMs::from_secs(T0 + 2 * i as i64);
            (
                i,
                t,
                Ticks::from_ms(2000),
                Ticks(0),
                SEGMENT_BYTES as u32,
                flags,
            )
        }),
    );
    ArchiveStore::new(Arc::clone(&storage))
        .commit_chunk(key, index)
        .await
        .expect("commit");
    for i in 0..SEGMENTS {
        std::fs::write(www.join(format!("{i}.ts")), payload(i)).expect("write nginx file");
    }

    let scratch = tempfile::tempdir().expect("tempdir");
    let in_memory = Arc::new(ArchiveStore::new(Arc::clone(&storage)));
    let memory = packager(in_memory, &stream, &scratch.path().join("live-a")).await;
    // Indexes in memory as always, segments only on disk.
    let on_disk = Arc::new(ArchiveStore::with_memory_cache(
        Arc::clone(&storage),
        MemoryCache::with_budgets(1 << 20, 0),
    ));
    let disk = DiskCache::open(
        DiskCacheConfig {
            path: scratch.path().join("ssd"),
            max_bytes: 1 << 30,
            depth_ms: None,
            misses: 1,
        },
        Arc::new(SimulatedClock::new(UtcMs::from_secs(T0))),
    )
    .expect("disk cache");
    on_disk.set_disk_cache(stream.clone(), Arc::new(disk));
    let disk = packager(on_disk, &stream, &scratch.path().join("live-b")).await;

    let path = |i: u64| format!("/bench/2026/11/21/14/00/{:02}-02000.ts", 2 * i);
    let mut rows = [
        Row::new("packager, cold cache (ranged GET to s3s-fs)"),
        Row::new("packager, warm memory cache"),
        Row::new("packager, cold, segments to the disk cache"),
        Row::new("packager, warm disk cache (segments not in memory)"),
        Row::new("nginx, the segment as a file (peer)"),
    ];
    // One request each before measuring, so no row pays for lazy start-up
    // (the S3 client's connection pool, the packagers' index reads, nginx's
    // first open); the segment used is then not measured cold.
    fetch(nginx, "/0.ts").await;
    fetch(memory, &path(SEGMENTS)).await;
    fetch(disk, &path(SEGMENTS)).await;
    for i in 0..SEGMENTS {
        rows[0].measure(memory, &path(i)).await;
        rows[1].measure(memory, &path(i)).await;
        rows[2].measure(disk, &path(i)).await;
        rows[3].measure(disk, &path(i)).await;
        rows[4].measure(nginx, &format!("/{i}.ts")).await;
    }

    println!();
    println!(
        "time to first byte of a {} KiB segment, {SEGMENTS} segments, new connection per request (ms)",
        SEGMENT_BYTES >> 10
    );
    println!(
        "{:<52} {:>9} {:>9} {:>12}",
        "", "TTFB p50", "TTFB p90", "whole p50"
    );
    for row in &rows {
        println!(
            "{:<52} {:>9.3} {:>9.3} {:>12.3}",
            row.name,
            quantile(&row.ttfb, 0.5),
            quantile(&row.ttfb, 0.9),
            quantile(&row.total, 0.5)
        );
    }
    let nginx_p50 = quantile(&rows[4].ttfb, 0.5);
    println!(
        "warm memory cache / nginx TTFB: {:.2}x; cold / warm: {:.1}x",
        quantile(&rows[1].ttfb, 0.5) / nginx_p50,
        quantile(&rows[0].ttfb, 0.5) / quantile(&rows[1].ttfb, 0.5)
    );
}
