//! The packager over a live log only (nothing archived yet): live, range and
//! start-over playlists, segments by URL, downloads, status and errors.

mod support;

use axum::http::StatusCode;
use dvr_packager::PackagerConfig;
use support::{fixture, fixture_with, get, T0};

#[tokio::test]
async fn live_playlist_is_a_window_of_the_newest_segments() {
    let f = fixture();
    let (status, ctype, body) = get(&f, "/ort/index.m3u8").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ctype, "application/vnd.apple.mpegurl");
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:9\n"), "{text}");
    assert_eq!(text.matches("#EXTINF:2.000,").count(), 6);
    assert!(!text.contains("ENDLIST"));
}

#[tokio::test]
async fn range_playlist_crosses_the_gap_with_a_discontinuity() {
    let f = fixture();
    let (status, _, body) = get(
        &f,
        &format!("/ort/archive-{}-40.m3u8?token=s3cr%20t", T0 + 3),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    // The segment containing T0+3 starts at T0+2.
    assert!(
        text.contains("#EXT-X-PROGRAM-DATE-TIME:2026-11-21T14:00:02.000Z\n"),
        "{text}"
    );
    assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD\n") && text.ends_with("#EXT-X-ENDLIST\n"));
    assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1);
    assert!(text.contains("#EXT-X-PROGRAM-DATE-TIME:2026-11-21T14:00:30.000Z\n"));
    assert!(
        text.contains("2026/11/21/14/00/02-02000.ts?token=s3cr%20t\n"),
        "token kept as written: {text}"
    );
    assert_eq!(text.matches("#EXTINF").count(), 14);
}

#[tokio::test]
async fn start_over_is_an_event_playlist() {
    let f = fixture();
    let (_, _, body) = get(&f, &format!("/ort/index-{}-now.m3u8", T0 + 20)).await;
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("#EXT-X-PLAYLIST-TYPE:EVENT\n") && !text.contains("ENDLIST"));
    assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:10\n"), "{text}");
}

#[tokio::test]
async fn segments_and_downloads_serve_the_stored_bytes() {
    let f = fixture();
    let (status, ctype, body) = get(&f, "/ort/2026/11/21/14/00/04-02000.ts").await;
    assert_eq!((status, ctype.as_str()), (StatusCode::OK, "video/mp2t"));
    assert_eq!(body.len(), 188 * 3, "segment 2");
    let (status, _, body) = get(&f, &format!("/ort/archive-{T0}-6.ts")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.len(), 188 * (1 + 2 + 3));
    let (status, _, same) = get(&f, &format!("/ort/archive/{T0}/6/mpegts")).await;
    assert_eq!((status, same), (StatusCode::OK, body));
}

#[tokio::test]
async fn recording_status_brief_and_ranges() {
    let f = fixture();
    let (_, _, body) = get(&f, "/ort/recording_status.json").await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["ort"]["from"], T0);
    assert_eq!(v["ort"]["to"], T0 + 40);
    let (_, _, body) = get(
        &f,
        &format!("/ort/recording_status.json?from={T0}&to=now&request=ranges"),
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v[0]["stream"], "ort");
    assert_eq!(
        v[0]["ranges"],
        serde_json::json!([{"from": T0, "duration": 20}, {"from": T0 + 30, "duration": 10}])
    );
}

#[tokio::test]
async fn recording_status_hour_bitmap_and_the_too_big_range_brief() {
    let f = fixture();
    let status = |query: String| {
        let f = &f;
        async move {
            let (status, ctype, body) =
                get(f, &format!("/ort/recording_status.json?{query}")).await;
            assert_eq!(
                (status, ctype.as_str()),
                (StatusCode::OK, "application/json")
            );
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()
        }
    };
    // Several values in one `request=`; the bitmap starts at the hour
    // holding `from` and has one character per hour up to now.
    let v = status(format!(
        "from={}&to=now&request=ranges,hour_bitmap",
        T0 - 7200
    ))
    .await;
    assert_eq!(v[0]["hour_bitmap"], "001", "{v}");
    assert_eq!(v[0]["hour_bitmap_from"], T0 - 7200);
    assert_eq!(v[0]["ranges"].as_array().unwrap().len(), 2, "{v}");
    assert!(v[0].get("warning").is_none(), "{v}");
    // Only the bitmap when only the bitmap is asked for; from the tape's
    // start when there is no `from`.
    let v = status("request=hour_bitmap".into()).await;
    assert_eq!(v[0]["hour_bitmap"], "1", "{v}");
    assert!(v[0].get("ranges").is_none(), "{v}");
    // Over four days: whole recorded hours and the seeds' warning ...
    let long = T0 - 5 * 86_400;
    let v = status(format!("from={long}&request=ranges")).await;
    assert_eq!(v[0]["warning"], "too_big_range", "{v}");
    assert_eq!(
        v[0]["ranges"],
        serde_json::json!([{"from": T0, "duration": 3600}])
    );
    // ... unless the client insists.
    let v = status(format!("from={long}&request=ranges,force_detailed")).await;
    assert!(v[0].get("warning").is_none(), "{v}");
    assert_eq!(
        v[0]["ranges"],
        serde_json::json!([{"from": T0, "duration": 20}, {"from": T0 + 30, "duration": 10}])
    );
}

#[tokio::test]
async fn event_true_is_an_event_until_the_range_is_complete_then_vod() {
    let f = fixture();
    // Now is T0+41; T0+30..T0+50 reaches into the future.
    let uri = format!("/ort/index-{}-20.m3u8?event=true", T0 + 30);
    let response = |f: &support::Fixture, uri: String| {
        let router = f.router.clone();
        async move {
            use tower::ServiceExt;
            let r = router
                .oneshot(
                    axum::http::Request::get(uri)
                        .body(axum::body::Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            let cache = r.headers()["cache-control"].to_str().unwrap().to_owned();
            let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
            (cache, String::from_utf8(body.to_vec()).unwrap())
        }
    };
    let (cache, text) = response(&f, uri.clone()).await;
    assert!(text.contains("#EXT-X-PLAYLIST-TYPE:EVENT\n"), "{text}");
    assert!(!text.contains("#EXT-X-ENDLIST"), "{text}");
    assert_eq!(cache, "no-cache");
    assert_eq!(text.matches("#EXTINF:").count(), 5, "{text}");
    // Once the range is over it is VOD, closed and cacheable.
    f.clock.advance_ms(10_000);
    let (cache, text) = response(&f, uri).await;
    assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"), "{text}");
    assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
    assert_eq!(cache, "max-age=60");
}

#[tokio::test]
async fn errors_have_fitting_statuses_and_one_line_reasons() {
    let f = fixture();
    let cases = [
        (
            "/nope/index.m3u8",
            StatusCode::NOT_FOUND,
            "unknown stream nope\n".to_owned(),
        ),
        (
            "/ort/archive-1700000000-0.m3u8",
            StatusCode::BAD_REQUEST,
            "duration must be positive\n".into(),
        ),
        (
            &*format!("/ort/archive-{}-60.m3u8", T0 + 3600),
            StatusCode::BAD_REQUEST,
            format!(
                "range starts at {}, which is in the future (now is {})\n",
                T0 + 3600,
                T0 + 41
            ),
        ),
        (
            "/ort/archive-1000-60.m3u8",
            StatusCode::NOT_FOUND,
            "nothing recorded on ort between 1000 and 1060\n".into(),
        ),
        (
            "/ort/archive-1000-999999.m3u8",
            StatusCode::BAD_REQUEST,
            "range of 999999 s is longer than the limit of 86400 s\n".into(),
        ),
        (
            "/ort/2026/11/21/14/00/05-02000.ts",
            StatusCode::NOT_FOUND,
            "no segment /ort/2026/11/21/14/00/05-02000.ts\n".into(),
        ),
    ];
    for (uri, status, reason) in cases {
        let (got, _, body) = get(&f, uri).await;
        assert_eq!(
            (got, String::from_utf8(body).unwrap()),
            (status, reason),
            "{uri}"
        );
    }
}

#[tokio::test]
async fn a_long_range_lists_merged_entries_that_resolve_to_their_runs() {
    let f = fixture_with(PackagerConfig {
        max_entries: 4,
        ..PackagerConfig::default()
    });
    let (status, _, body) = get(&f, &format!("/ort/archive-{T0}-40.m3u8?token=t")).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    let uris: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(uris.len() <= 4, "{text}");
    assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{text}");
    // Every merged entry serves the bytes of the segments it covers.
    let mut total = 0;
    for uri in uris {
        let (status, ctype, bytes) = get(&f, &format!("/ort/{uri}")).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(ctype, "video/mp2t");
        total += bytes.len();
    }
    // Segment k of the fixture is 188 * (k + 1) bytes.
    assert_eq!(total, (1..=15).map(|k| 188 * k).sum::<usize>());
    // A duration that matches no run of segments is not found.
    let (status, _, _) = get(&f, "/ort/2026/11/21/14/00/00-03000.ts").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
