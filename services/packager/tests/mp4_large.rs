//! An MP4 export past 4 GiB, read by ffprobe over HTTP: the `co64` chunk
//! offsets and the 64-bit `mdat` size must be right, or ffprobe reads the
//! wrong bytes (or none) for everything past the first 4 GiB.
//!
//! **The synthetic long tape.** Recording hours is out of the question, so
//! a 10 s clip of about 7 Mbit/s (made by ffmpeg at test time: noise keeps
//! x264 at its bitrate) is cut by the real segmenter and archived as one
//! chunk; then the same chunk is archived again and again, each copy 10 s
//! later on the tape: its `.ts` a hard link to the first (no disk used),
//! its index and `.smp` written with the copy's sequence numbers, start
//! times and PTS. The tape's timing comes from the indexes and sample
//! tables, so the export is a continuous two-hour file of some 6 GB while
//! the test writes about 10 MB.
//!
//! **Checks.** The file is longer than 4 GiB and its head has `co64`;
//! ffprobe reads the video's duration as the tape's; ffprobe reads the
//! last seconds' packets (seeking through the `moov` index, so by HTTP
//! `Range` past 4 GiB), the last one at the tape's end, and each has the
//! size and CRC32 of the packet at the same place of the first copy, which
//! ffprobe read from the file's start. The export is 6.68 GB; the test
//! writes ~10 MB and takes some 12 s in a debug build (ffmpeg making the
//! clip, ffprobe reading a `moov` of ~500,000 samples three times).

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;

use axum::http::StatusCode;
use bytes::Bytes;
use dvr_archive::store::ArchiveStore;
use dvr_archive::tape::{StoreTape, StreamTape};
use dvr_archive::{ChunkIndex, ChunkKey};
use dvr_bus::{SegmentLog, SegmentLogOptions};
use dvr_common::{Clock, SimulatedClock, StreamName, Ticks, UtcMs};
use dvr_media::mp4::{encode_chunk_tables, SampleTable};
use dvr_media::CodecSummary;
use dvr_packager::{Packager, PackagerConfig};
use dvr_storage::{Storage, StorageConfig, StorageUri};
use support::{segmented, serve, Fixture, T0};

/// The clip's length in seconds, and the tape's (the export's) length.
const CLIP_SECS: i64 = 10;
const TAPE_SECS: i64 = 2 * 3600;

/// Makes the 10 s, ~7 Mbit/s 720p H.264 + AAC clip.
fn make_clip(path: &std::path::Path) {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "testsrc2=size=1280x720:rate=25:duration={CLIP_SECS},noise=alls=40:allf=t"
        ))
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=440:sample_rate=48000:duration={CLIP_SECS}"
        ))
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "50"])
        .args(["-b:v", "7M", "-maxrate", "7M", "-bufsize", "7M"])
        .args(["-c:a", "aac", "-b:a", "128k", "-f", "mpegts"])
        .arg(path)
        .output()
        .expect("ffmpeg (make test-deps)");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Video packets ffprobe reads from `url` in `interval` (`-read_intervals`):
/// (pts seconds, size, CRC32 of the data, byte position).
fn packets(url: &str, interval: &str) -> Vec<(f64, u64, String, u64)> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_data_hash",
            "CRC32",
        ])
        .args(["-read_intervals", interval, "-show_entries"])
        .args(["packet=pts_time,size,data_hash,pos", "-of", "json", url])
        .output()
        .expect("ffprobe (make test-deps)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "{url}: {stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["packets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let num = |k: &str| p[k].as_str().unwrap().parse::<f64>().unwrap();
            (
                num("pts_time"),
                num("size") as u64,
                p["data_hash"].as_str().unwrap().to_owned(),
                num("pos") as u64,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_past_4_gib_reads_to_its_last_frame() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.ts");
    tokio::task::spawn_blocking({
        let clip = clip.clone();
        move || make_clip(&clip)
    })
    .await
    .unwrap();
    let clock = Arc::new(SimulatedClock::new(UtcMs(T0 * 1000)));
    let segments = segmented(&[clip.to_str().unwrap()], 0, &clock);
    let first = &segments[0];
    let last = segments.last().unwrap();
    let span = last.pts_start.0 + last.duration.0 - first.pts_start.0;
    assert_eq!(span, CLIP_SECS * 90_000, "the clip's segments span 10 s");
    let copies = TAPE_SECS / CLIP_SECS;
    let chunk_bytes: u64 = segments.iter().map(|s| s.payload.len() as u64).sum();
    assert!(
        chunk_bytes * copies as u64 > (4 << 30) + (512 << 20),
        "the clip is {chunk_bytes} bytes: too small for a tape past 4 GiB"
    );

    let root = dir.path().join("archive");
    let uri = StorageUri::parse(&format!("file://{}", root.display())).unwrap();
    let storage: Arc<dyn Storage> = dvr_storage::resolve(&uri, &StorageConfig::default()).unwrap();
    let stream: StreamName = "ch".parse().unwrap();
    let store = Arc::new(ArchiveStore::new(Arc::clone(&storage)));
    let payload: Vec<u8> = segments.iter().flat_map(|s| s.payload.to_vec()).collect();
    let tables: Vec<SampleTable> = segments
        .iter()
        .map(|s| SampleTable::from_ts(&s.payload, s.pts_start, s.duration).unwrap())
        .collect();
    let mut first_ts = None;
    for k in 0..copies {
        let seq = |s: u64| s + k as u64 * segments.len() as u64;
        let utc = |u: UtcMs| UtcMs(u.0 + k * CLIP_SECS * 1000);
        let pts = |p: Ticks| Ticks(p.0 + k * span);
        let key = ChunkKey::new(stream.clone(), utc(first.utc_start), seq(first.seq));
        match &first_ts {
            None => {
                storage
                    .put(&key.ts_key(), Bytes::from(payload.clone()))
                    .await
                    .unwrap();
                let path = root.join(key.ts_key());
                assert!(
                    path.is_file(),
                    "{} is not where the store put it",
                    path.display()
                );
                first_ts = Some(path);
            }
            Some(original) => {
                let link = root.join(key.ts_key());
                std::fs::create_dir_all(link.parent().unwrap()).unwrap();
                std::fs::hard_link(original, &link).unwrap();
            }
        }
        let numbered: Vec<(u64, SampleTable)> = segments
            .iter()
            .zip(&tables)
            .map(|(s, t)| (seq(s.seq), t.clone()))
            .collect();
        storage
            .put(&key.smp_key(), Bytes::from(encode_chunk_tables(&numbered)))
            .await
            .unwrap();
        let index = ChunkIndex::from_segments(
            CodecSummary::default(),
            segments.iter().map(|s| {
                (
                    seq(s.seq),
                    utc(s.utc_start),
                    s.duration,
                    pts(s.pts_start),
                    s.payload.len() as u32,
                    s.flags,
                )
            }),
        );
        store.commit_chunk(key, index).await.unwrap();
    }

    let now = UtcMs((T0 + TAPE_SECS + 1) * 1000);
    let clock = Arc::new(SimulatedClock::new(now));
    let packager = Arc::new(Packager::new(
        PackagerConfig::default(),
        Arc::clone(&clock) as Arc<dyn Clock>,
    ));
    let log =
        Arc::new(SegmentLog::open(dir.path().join("log"), SegmentLogOptions::default()).unwrap());
    packager.add_stream(StreamTape::new(
        "ch",
        log,
        Some(Arc::new(StoreTape::new(stream, store))),
    ));
    let f = Fixture {
        router: Arc::clone(&packager).router(),
        packager,
        clock,
        _dir: tempfile::tempdir().unwrap(),
    };
    let path = format!("/ch/archive-{T0}-{TAPE_SECS}.mp4");
    let head = support::send(
        &f,
        axum::http::Method::GET,
        &path,
        &[("range", "bytes=0-65535")],
    )
    .await;
    assert_eq!(head.status(), StatusCode::PARTIAL_CONTENT);
    let total: u64 = support::header(&head, "content-range")
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        total > 4 << 30,
        "the export is {total} bytes, not past 4 GiB"
    );
    let bytes = support::body(head).await;
    let size_at =
        |b: &[u8], at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize;
    let ftyp = size_at(&bytes, 0);
    assert_eq!(&bytes[ftyp + 4..ftyp + 8], b"moov");
    let head_len = ftyp + size_at(&bytes, ftyp) + 16;
    let head = support::send(
        &f,
        axum::http::Method::GET,
        &path,
        &[("range", &format!("bytes=0-{}", head_len - 1))],
    )
    .await;
    let head = support::body(head).await;
    assert!(head.windows(4).any(|w| w == b"co64"), "no co64 in the moov");
    let mdat = &head[head_len - 16..];
    assert_eq!(&mdat[..8], b"\0\0\0\x01mdat", "a 64-bit mdat header");
    let mdat_len = u64::from_be_bytes(mdat[8..16].try_into().unwrap());
    assert_eq!(
        mdat_len,
        total - (head_len as u64 - 16),
        "the mdat runs to the end"
    );

    let url = format!("{}/archive-{T0}-{TAPE_SECS}.mp4", serve(&f).await);
    let started = std::time::Instant::now();
    let (video, tail, start) = tokio::task::spawn_blocking(move || {
        let out = Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0", "-of", "csv=p=0"])
            .args(["-show_entries", "stream=duration", &url])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let video: f64 = text.parse().unwrap_or_else(|_| panic!("ffprobe: {text:?}"));
        let tail = packets(&url, &format!("{}%", TAPE_SECS - 3));
        let start = packets(&url, "0%+10");
        (video, tail, start)
    })
    .await
    .unwrap();
    assert!(
        (video - TAPE_SECS as f64).abs() <= 0.05,
        "ffprobe reads {video} s of video, the tape has {TAPE_SECS} s"
    );
    let end = tail.iter().map(|p| p.0).fold(0.0, f64::max);
    assert!(
        (end + 0.04 - TAPE_SECS as f64).abs() < 0.01,
        "the last frame at {end} s of {TAPE_SECS} s"
    );
    assert!(
        tail.iter().any(|p| p.3 > 4 << 30),
        "no packet read past 4 GiB"
    );
    // The same pictures as the first copy, frame by frame.
    let first_copy: HashMap<i64, (u64, String)> = start
        .into_iter()
        .map(|(t, size, hash, _)| ((t * 1000.0).round() as i64, (size, hash)))
        .collect();
    let offset = (TAPE_SECS - CLIP_SECS) * 1000;
    let mut compared = 0;
    for (t, size, hash, pos) in &tail {
        let at = (t * 1000.0).round() as i64 - offset;
        let (want_size, want_hash) = first_copy
            .get(&at)
            .unwrap_or_else(|| panic!("no frame at {at} ms in the first copy"));
        assert_eq!(
            (size, hash),
            (want_size, want_hash),
            "the frame at {t} s (byte {pos}) differs from the first copy's"
        );
        compared += 1;
    }
    assert!(compared >= 50, "{compared} frames compared");
    eprintln!(
        "{total} bytes; ffprobe: {video} s of video, last frame at {end} s, {compared} frames past {} s match; {:?}",
        TAPE_SECS - 3,
        started.elapsed()
    );
}
