//! A stream recording on a schedule: segments made outside it are live
//! only. The live playlist lists them and their URLs answer while they are
//! in the live log, but `recording_status.json`, archive, rewind and
//! timeshift playlists and downloads leave them out (the recorder never
//! archives them), so the tape shows a gap where the schedule ends.

mod support;

use std::sync::Arc;

use axum::http::StatusCode;
use dvr_archive::tape::StreamTape;
use dvr_bus::{SegmentLog, SegmentLogOptions};
use dvr_common::config::Schedule;
use dvr_common::{SimulatedClock, UtcMs};
use dvr_packager::{Packager, PackagerConfig};
use serde_json::Value;
use support::{get, segment, Fixture, T0};

/// Two minutes of 2 s segments from 14:00:00; the schedule ends at 14:01,
/// so the second minute is live only. Now is 14:02:01.
fn scheduled() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let log =
        Arc::new(SegmentLog::open(dir.path().join("ort"), SegmentLogOptions::default()).unwrap());
    for seq in 0..60 {
        log.append(&segment(seq, T0 * 1000 + seq as i64 * 2000, seq == 0))
            .unwrap();
    }
    let clock = Arc::new(SimulatedClock::new(UtcMs(T0 * 1000 + 121_000)));
    let packager = Arc::new(Packager::new(
        PackagerConfig::default(),
        Arc::clone(&clock) as Arc<dyn dvr_common::Clock>,
    ));
    let schedule = Schedule::parse("13:00-14:01").unwrap();
    packager.add_stream(StreamTape::new("ort", log, None).with_schedule(Some(schedule)));
    Fixture {
        router: Arc::clone(&packager).router(),
        packager,
        clock,
        _dir: dir,
    }
}

async fn text(f: &Fixture, uri: &str) -> (StatusCode, String) {
    let (status, _, body) = get(f, uri).await;
    (status, String::from_utf8(body).unwrap())
}

#[tokio::test]
async fn segments_outside_the_schedule_are_live_only() {
    let f = scheduled();
    // Live: the newest segments, made after the schedule ended, play.
    let (status, live) = text(&f, "/ort/index.m3u8").await;
    assert_eq!(status, StatusCode::OK);
    assert!(live.contains("2026/11/21/14/01/58-02000.ts"), "{live}");
    let (status, _) = text(&f, "/ort/2026/11/21/14/01/58-02000.ts").await;
    assert_eq!(status, StatusCode::OK, "a live-only segment's URL answers");

    // Recorded: only the first minute.
    let (status, body) = text(
        &f,
        &format!("/ort/recording_status.json?from={T0}&request=ranges"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v[0]["ranges"],
        serde_json::json!([{ "from": T0, "duration": 60 }]),
        "{v}"
    );
    let (status, archive) = text(&f, &format!("/ort/archive-{T0}-120.m3u8")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(archive.matches("#EXTINF").count(), 30, "{archive}");
    assert!(!archive.contains("14/01/00"), "{archive}");
    // Rewind and timeshift do not reach what the schedule left out.
    let (_, rewind) = text(&f, "/ort/rewind-30.m3u8").await;
    assert!(!rewind.contains("14/01/"), "{rewind}");
    let (status, body) = text(&f, &format!("/ort/timeshift_abs-{}.m3u8", T0 + 90)).await;
    assert!(!body.contains("14/01/"), "{status}: {body}");
    // Nor do downloads.
    let (status, body) = text(&f, &format!("/ort/archive-{}-20.ts", T0 + 70)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}
