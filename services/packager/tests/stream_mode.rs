//! Stream mode over a live log on a simulated clock: `timeshift_abs` (with
//! its start-fixing redirect), `timeshift_rel`, `rewind`, Kodi's `utc=`
//! shift, gaps with and without `ignore_gaps`, and the paced MPEG-TS forms.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use support::{first_bytes, fixture, get, sizes, Fixture, T0};
use tower::ServiceExt;

/// The media sequence and the number of segments of a playlist.
fn window_of(text: &str) -> (u64, usize) {
    let seq = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no media sequence in {text}"));
    (seq, text.matches("#EXTINF:").count())
}

async fn playlist(f: &Fixture, uri: &str) -> String {
    let (status, _, body) = get(f, uri).await;
    let text = String::from_utf8(body).unwrap();
    assert_eq!(status, StatusCode::OK, "{uri}: {text}");
    assert!(!text.contains("ENDLIST"), "{text}");
    assert!(!text.contains("PLAYLIST-TYPE"), "{text}");
    text
}

#[tokio::test]
async fn timeshift_abs_redirects_once_then_follows_the_wall_clock() {
    let f = fixture();
    let uri = format!("/ort/timeshift_abs-{}.m3u8?token=abc", T0 + 4);
    let response = f
        .router
        .clone()
        .oneshot(Request::get(&uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let now_ms = (T0 + 41) * 1000;
    assert_eq!(location, format!("{uri}&started={now_ms}"));

    // At the start the window reaches three segments past T0+4, where a
    // player joins, and nothing before the segment holding T0+4.
    let text = playlist(&f, &location).await;
    assert_eq!(window_of(&text), (2, 3), "{text}");
    assert!(text.contains("?token=abc\n"), "{text}");
    // Ten seconds later the window has moved ten seconds.
    f.clock.advance_ms(10_000);
    assert_eq!(window_of(&playlist(&f, &location).await), (4, 6));
    // A second viewer starting now gets its own timeline.
    let (status, _, _) = get(&f, &uri).await;
    assert_eq!(status, StatusCode::FOUND);
}

#[tokio::test]
async fn stream_mode_stops_at_a_gap_unless_told_to_skip_it() {
    let f = fixture();
    // Now is T0+41: 20 s behind is T0+21, inside the 20..30 s gap.
    let text = playlist(&f, "/ort/timeshift_rel-20.m3u8").await;
    assert_eq!(text.matches("#EXTINF:").count(), 0, "{text}");
    let text = playlist(&f, "/ort/timeshift_rel-20.m3u8?ignore_gaps=true").await;
    assert_eq!(window_of(&text), (4, 6));
    let text = playlist(&f, "/ort/timeshift_rel-30.m3u8").await;
    assert_eq!(window_of(&text), (0, 5));

    // timeshift_abs from T0+16 started 10 s ago: by the wall clock at
    // T0+26 (in the gap); along recorded time, past the gap at T0+36.
    let started = (T0 + 31) * 1000;
    let base = format!("/ort/timeshift_abs-{}.m3u8?started={started}", T0 + 16);
    let text = playlist(&f, &base).await;
    assert_eq!(text.matches("#EXTINF:").count(), 0, "{text}");
    let text = playlist(&f, &format!("{base}&ignore_gaps=true")).await;
    // Head T0+36 plus the lead reaches T0+40 (the end of the tape); the
    // window starts at the segment holding T0+16 and crosses the gap.
    assert_eq!(window_of(&text), (9, 6), "{text}");
    assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{text}");
}

#[tokio::test]
async fn rewind_is_live_with_a_window_of_seconds() {
    let f = fixture();
    assert_eq!(
        window_of(&playlist(&f, "/ort/rewind-12.m3u8").await),
        (10, 5)
    );
    let text = playlist(&f, "/ort/rewind-7200.m3u8").await;
    assert_eq!(window_of(&text), (0, 15));
    assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{text}");
}

#[tokio::test]
async fn kodi_shift_plays_from_utc_as_of_lutc() {
    let f = fixture();
    // Built 10 s ago for T0+4: the position is T0+14.
    let uri = format!("/ort/index.m3u8?utc={}&lutc={}", T0 + 4, T0 + 31);
    assert_eq!(window_of(&playlist(&f, &uri).await), (4, 6));
    let (status, _, body) = get(&f, &format!("/ort/index.m3u8?utc={}", T0 + 100)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8(body).unwrap().contains("future"));
}

#[tokio::test(start_paused = true)]
async fn mpegts_forms_play_from_their_moment_across_the_gap() {
    let f = fixture();
    // From T0+16: segments 8 and 9, then past the gap 10, 11, 12.
    let want = sizes(8..13);
    for uri in [
        format!("/ort/timeshift_abs/{}", T0 + 16),
        format!("/ort/timeshift_abs-{}.ts", T0 + 16),
        "/ort/timeshift_rel/25".to_owned(),
    ] {
        let bytes = first_bytes(&f, &uri, want).await;
        assert_eq!(bytes.len(), want, "{uri}");
    }
    // Live starts at the newest segment.
    let live = first_bytes(&f, "/ort/mpegts", sizes(14..15)).await;
    assert_eq!(live.len(), sizes(14..15));
    let (status, _, _) = get(&f, &format!("/ort/timeshift_abs/{}", T0 + 100)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(start_paused = true)]
async fn a_delayed_channel_is_its_source_behind_live() {
    let f = fixture();
    f.packager.add_delayed("ort_late", "ort", 20_000).unwrap();
    // Now is T0+41: the delayed live edge is T0+21, just after the source's
    // gap began; a delayed channel never goes blank, it shows what played.
    let text = playlist(&f, "/ort_late/index.m3u8").await;
    assert_eq!(window_of(&text), (4, 6));
    f.clock.advance_ms(15_000);
    assert_eq!(
        window_of(&playlist(&f, "/ort_late/index.m3u8").await),
        (7, 6)
    );
    // Its MPEG-TS starts at the delayed live edge, now T0+36: segment 13.
    let bytes = first_bytes(&f, "/ort_late/mpegts", sizes(13..15)).await;
    assert_eq!(bytes.len(), sizes(13..15));
    assert!(f.packager.add_delayed("x", "no_such_stream", 1000).is_err());
}
