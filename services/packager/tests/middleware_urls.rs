//! Middleware compatibility: the exact URLs Kodi's pvr.iptvsimple and
//! Ministra/Stalker build from a channel's live URL, each carrying the
//! middleware's `?token=` to every URL the player fetches next, byte for
//! byte.
//!
//! pvr.iptvsimple's catch-up types rewrite the live URL as follows (its
//! `CatchupController`, "flussonic" section):
//!
//! | type | live URL | catch-up URL |
//! |---|---|---|
//! | `flussonic`, `flussonic-hls` | `…/S/index.m3u8?token=X` | `…/S/timeshift_rel-{offset:1}.m3u8?token=X` |
//! | the same, mono | `…/S/mono.m3u8?token=X` | `…/S/mono-timeshift_rel-{offset:1}.m3u8?token=X` |
//! | `flussonic-ts`, `fs` | `…/S/mpegts?token=X` | `…/S/timeshift_abs-{utc}.ts?token=X` |
//! | `shift` | any | the live URL plus `utc={utc}&lutc={lutc}` |
//!
//! Stalker asks for `index-FROM-DUR.m3u8`, `archive/FROM/DUR/mpegts` and
//! `archive-FROM-DUR.ts` with its temporary-link token.

mod support;

use axum::http::StatusCode;
use support::{first_bytes, fixture, get, sizes, Fixture, T0};

/// A token with characters a re-encoding would change (`~`, `%2B`, `.`).
const TOKEN: &str = "token=St4lker~tmp.link%2B42";

/// Kodi's `flussonic-hls` rewrite of a live HLS URL.
fn kodi_flussonic_hls(live: &str, offset: i64) -> String {
    let (path, query) = live.split_once('?').unwrap_or((live, ""));
    let rewritten = if let Some(base) = path.strip_suffix("/mono.m3u8") {
        format!("{base}/mono-timeshift_rel-{offset}.m3u8")
    } else {
        let base = path.strip_suffix("/index.m3u8").expect("an index.m3u8 URL");
        format!("{base}/timeshift_rel-{offset}.m3u8")
    };
    format!("{rewritten}?{query}")
}

/// Kodi's `flussonic-ts` rewrite of a live MPEG-TS URL.
fn kodi_flussonic_ts(live: &str, utc: i64) -> String {
    let (path, query) = live.split_once('?').unwrap_or((live, ""));
    let base = path.strip_suffix("/mpegts").expect("an mpegts URL");
    format!("{base}/timeshift_abs-{utc}.ts?{query}")
}

/// Kodi's `shift` catch-up: the live URL with `utc` and `lutc` appended.
fn kodi_shift(live: &str, utc: i64, lutc: i64) -> String {
    let sep = if live.contains('?') { '&' } else { '?' };
    format!("{live}{sep}utc={utc}&lutc={lutc}")
}

/// A playlist answer whose every segment URI carries the token verbatim.
async fn playlist_keeping_token(f: &Fixture, uri: &str) -> String {
    let (status, ctype, body) = get(f, uri).await;
    let text = String::from_utf8(body).unwrap();
    assert_eq!(status, StatusCode::OK, "{uri}: {text}");
    assert_eq!(ctype, "application/vnd.apple.mpegurl", "{uri}");
    let uris: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert!(!uris.is_empty(), "{uri}: no segments\n{text}");
    for segment in &uris {
        assert!(
            segment.ends_with(&format!("?{TOKEN}")),
            "{uri}: {segment} lost the token"
        );
        // The segment URL, resolved against the playlist, serves bytes.
        let dir = uri.rsplit_once('/').unwrap().0;
        let (status, ctype, _) = get(f, &format!("{dir}/{segment}")).await;
        assert_eq!(
            (status, ctype.as_str()),
            (StatusCode::OK, "video/mp2t"),
            "{segment}"
        );
    }
    text
}

#[tokio::test]
async fn kodi_flussonic_hls_catchup_from_index_and_mono() {
    let f = fixture();
    // Now is T0+41; 30 s behind is T0+11: segments up to there.
    for live in [
        format!("/ort/index.m3u8?{TOKEN}"),
        format!("/ort/mono.m3u8?{TOKEN}"),
    ] {
        playlist_keeping_token(&f, &live).await;
        let uri = kodi_flussonic_hls(&live, 30);
        assert!(uri.contains("timeshift_rel-30.m3u8"), "{uri}");
        let text = playlist_keeping_token(&f, &uri).await;
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:0\n"), "{uri}\n{text}");
        assert!(!text.contains("#EXT-X-ENDLIST"), "{text}");
    }
}

#[tokio::test(start_paused = true)]
async fn kodi_flussonic_ts_plays_from_the_programme_start() {
    let f = fixture();
    let uri = kodi_flussonic_ts(&format!("/ort/mpegts?{TOKEN}"), T0 + 16);
    assert_eq!(uri, format!("/ort/timeshift_abs-{}.ts?{TOKEN}", T0 + 16));
    // Segments 8 and 9, then past the gap 10 and 11.
    let bytes = first_bytes(&f, &uri, sizes(8..12)).await;
    assert_eq!(bytes.len(), sizes(8..12));
}

#[tokio::test(start_paused = true)]
async fn kodi_shift_on_hls_and_mpegts() {
    let f = fixture();
    let hls = kodi_shift(&format!("/ort/index.m3u8?{TOKEN}"), T0 + 4, T0 + 31);
    let text = playlist_keeping_token(&f, &hls).await;
    // Built 10 s ago for T0+4: the window ends three segments past T0+14.
    assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:4\n"), "{text}");
    let ts = kodi_shift(&format!("/ort/mpegts?{TOKEN}"), T0 + 16, T0 + 41);
    let bytes = first_bytes(&f, &ts, sizes(8..10)).await;
    assert_eq!(bytes.len(), sizes(8..10));
}

#[tokio::test]
async fn stalker_archive_forms() {
    let f = fixture();
    let text = playlist_keeping_token(&f, &format!("/ort/index-{T0}-6.m3u8?{TOKEN}")).await;
    assert_eq!(text.matches("#EXTINF:").count(), 3, "{text}");
    assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
    let expected = sizes(0..3);
    for uri in [
        format!("/ort/archive/{T0}/6/mpegts?{TOKEN}"),
        format!("/ort/archive-{T0}-6.ts?{TOKEN}"),
    ] {
        let (status, ctype, body) = get(&f, &uri).await;
        assert_eq!(
            (status, ctype.as_str()),
            (StatusCode::OK, "video/mp2t"),
            "{uri}"
        );
        assert_eq!(body.len(), expected, "{uri}");
    }
}
