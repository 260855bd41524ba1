//! `EXT-X-DISCONTINUITY-SEQUENCE` on sliding windows, over a tape that is
//! part archive, part live log, with a flagged PTS jump inside a chunk, a
//! gap between chunks and a gap inside the live log. Whatever window a
//! reload shows, every segment keeps the discontinuity sequence number it
//! had in every other reload (RFC 8216 section 6.2.2), which is what lets a
//! player line up renditions and reloads across a break.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use dvr_archive::store::ArchiveStore;
use dvr_archive::tape::{StoreTape, StreamTape};
use dvr_archive::{ChunkIndex, ChunkKey};
use dvr_bus::{SegmentLog, SegmentLogOptions};
use dvr_common::{SimulatedClock, StreamName, Ticks, UtcMs};
use dvr_media::{CodecSummary, SegmentFlags};
use dvr_packager::{Packager, PackagerConfig};
use dvr_storage::{StorageConfig, StorageUri};
use dvr_testkit::fixtures;
use tower::ServiceExt;

/// 2026-11-21T14:00:00Z
const T0: i64 = 1_795_269_600;
const SEG: usize = 188 * 4;

/// Where each seq starts (seconds after T0) and whether it is flagged.
/// Seq 3 is a PTS jump (flag, no gap), seq 10 follows a 20 s gap between
/// chunks, seq 20 a 10 s gap in the live log. Seqs 0..15 are archived in
/// three chunks (0..5, 5..10, 10..15), 15..25 only in the live log.
fn start_of(seq: u64) -> (i64, bool) {
    let s = seq as i64;
    match seq {
        0..10 => (2 * s, seq == 3),
        10..20 => (40 + 2 * (s - 10), seq == 10),
        _ => (70 + 2 * (s - 20), seq == 20),
    }
}

struct Fixture {
    router: axum::Router,
    clock: Arc<SimulatedClock>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

async fn fixture() -> Fixture {
    let archive = tempfile::tempdir().unwrap();
    let uri = StorageUri::parse(&format!("file://{}", archive.path().display())).unwrap();
    let storage = dvr_storage::resolve(&uri, &StorageConfig::default()).unwrap();
    let stream: StreamName = "ort".parse().unwrap();
    let store = Arc::new(ArchiveStore::new(Arc::clone(&storage)));
    for first in [0u64, 5, 10] {
        let (start, _) = start_of(first);
        let key = ChunkKey::new(stream.clone(), UtcMs((T0 + start) * 1000), first);
        let seqs = first..first + 5;
        let body: Vec<u8> = seqs.clone().flat_map(|_| vec![0x47; SEG]).collect();
        storage.put(&key.ts_key(), Bytes::from(body)).await.unwrap();
        let index = ChunkIndex::from_segments(
            CodecSummary::default(),
            seqs.map(|s| {
                let (at, discontinuity) = start_of(s);
                let flags = SegmentFlags {
                    discontinuity,
                    independent: true,
                };
                let t = UtcMs((T0 + at) * 1000);
                (s, t, Ticks::from_ms(2000), Ticks(0), SEG as u32, flags)
            }),
        );
        store.commit_chunk(key, index).await.unwrap();
    }
    let live = tempfile::tempdir().unwrap();
    let log =
        Arc::new(SegmentLog::open(live.path().join("ort"), SegmentLogOptions::default()).unwrap());
    // The live log also still holds the last archived chunk, as it does
    // until its retention trims it.
    for seq in 10..25 {
        let (at, discontinuity) = start_of(seq);
        let segment = fixtures::segment(seq)
            .pts_start(Ticks(0))
            .starting_at((T0 + at) * 1000)
            .discontinuity(discontinuity)
            .sync_bytes(SEG)
            .build();
        log.append(&segment).unwrap();
    }
    let clock = Arc::new(SimulatedClock::new(UtcMs((T0 + 81) * 1000)));
    let packager = Arc::new(Packager::new(
        PackagerConfig::default(),
        Arc::clone(&clock) as Arc<dyn dvr_common::Clock>,
    ));
    let tape = StoreTape::new(stream, store);
    packager.add_stream(StreamTape::new("ort", log, Some(Arc::new(tape))));
    Fixture {
        router: packager.router(),
        clock,
        _dirs: (archive, live),
    }
}

async fn playlist(f: &Fixture, uri: &str) -> String {
    let response = f
        .router
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{uri}");
    let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    String::from_utf8(body.to_vec()).unwrap()
}

/// `seq → discontinuity sequence number` of every segment in a playlist.
fn numbers(text: &str) -> BTreeMap<u64, u64> {
    let header = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map_or(0, |v| v.parse::<u64>().unwrap())
    };
    let mut seq = header("#EXT-X-MEDIA-SEQUENCE:");
    let mut dsn = header("#EXT-X-DISCONTINUITY-SEQUENCE:");
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line == "#EXT-X-DISCONTINUITY" {
            dsn += 1;
        } else if line.starts_with("#EXTINF:") {
            out.insert(seq, dsn);
            seq += 1;
        }
    }
    out
}

#[tokio::test]
async fn every_segment_keeps_its_number_as_the_window_slides() {
    let f = fixture().await;
    let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
    let mut check = |uri: &str, text: &str| {
        for (seq, dsn) in numbers(text) {
            let first = *seen.entry(seq).or_insert(dsn);
            assert_eq!(first, dsn, "{uri}: seq {seq} changed its number\n{text}");
        }
    };
    // timeshift_rel windows of six segments whose head walks over the whole
    // tape, one second at a time, gaps skipped.
    for behind in (1..=81).rev() {
        let uri = format!("/ort/timeshift_rel-{behind}.m3u8?ignore_gaps=true");
        check(&uri, &playlist(&f, &uri).await);
    }
    // Live and rewind windows, as the clock moves on.
    for _ in 0..3 {
        for uri in ["/ort/index.m3u8", "/ort/rewind-10.m3u8", "/ort/mono.m3u8"] {
            check(uri, &playlist(&f, uri).await);
        }
        f.clock.advance_ms(2000);
    }
    // Every segment was shown; the numbers count the three breaks.
    let want: BTreeMap<u64, u64> = (0..25)
        .map(|s| (s, [3, 10, 20].iter().filter(|b| s >= **b).count() as u64))
        .collect();
    assert_eq!(seen, want);
    // A window starting right after a break carries it in the header.
    f.clock.set(UtcMs((T0 + 81) * 1000));
    let text = playlist(&f, "/ort/rewind-11.m3u8").await;
    assert!(
        text.contains("#EXT-X-MEDIA-SEQUENCE:20\n#EXT-X-DISCONTINUITY-SEQUENCE:3\n"),
        "{text}"
    );
    assert!(!text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
}
