//! Golden hashes: the bytes of a few outputs of the committed clip, cut by
//! the real segmenter on a simulated clock, pinned by their BLAKE3. The
//! other tests check that players accept what the packager writes; these
//! catch a change nobody meant to make (a moved box, a reordered playlist
//! tag, a different segment cut), which a player might well accept too.
//!
//! A change that is meant to alter an output updates its hash here, in the
//! same commit, with the reason in the message: the failure prints every
//! hash as found, so the table below can be replaced wholesale.

mod support;

use axum::http::StatusCode;
use support::{dated, get, recorded, T0};

const CLIP: &str = "h264_aac_720p.ts";

/// Every pinned output: a name, its path under the stream, its hash.
fn golden() -> Vec<(&'static str, String, &'static str)> {
    vec![
        (
            "HLS range playlist",
            format!("archive-{T0}-8.m3u8"),
            "b289011b97094497459ed7912de8a1a91cf2aeb517d85cd23117f23d3d26872e",
        ),
        (
            "first TS segment",
            String::new(),
            "561de556b578dd1c8e9ec4333d59d6af3933ef3196d75f394a0e1179b8a38b6f",
        ),
        (
            "MPEG-TS range file",
            format!("archive-{T0}-8.ts"),
            "f42575bc22ccb0a4b19acd3737aef4a3864819cf66fbee62ff62a0c976736925",
        ),
        (
            "CMAF HLS playlist",
            format!("archive-{T0}-8.fmp4.m3u8"),
            "9d1721e0765efc638a9a455f362a5c047420482ad20dad45d522c89fd768f251",
        ),
        (
            "fMP4 init segment",
            String::new(),
            "2a09080039827fca0c54926fbb0e73016e46441cb8ae9aa82cc662dfe6e13d7b",
        ),
        (
            "DASH manifest",
            format!("archive-{T0}-8.mpd"),
            "36dca644e5654c2faf6946353be8159f03b9e1fcb406ca52df85aa2ac21a8a63",
        ),
        (
            "MP4 export",
            format!("archive-{T0}-8.mp4"),
            "bc2ef263cc600f6f910bdf324e65c430e56e8fd74ada89b6ae95c951157cf61c",
        ),
        (
            "one-frame preview MP4",
            format!("{}-preview.mp4", dated(T0 + 3)),
            "d77fc9c0593446f2d205f39ecc78585a3e9a96949ac2797a7019c7a1cf57649b",
        ),
        (
            "recording_status.json",
            "recording_status.json".to_owned(),
            "6ad5f3d6fc28e0035791a606939179af236f1449806302cd219f481c6d3d865e",
        ),
    ]
}

/// The first URI line of a playlist (a segment), or of `#EXT-X-MAP` (the
/// init segment) when `map` is set, relative to the stream.
fn first_uri(playlist: &str, map: bool) -> String {
    let uri = if map {
        let line = playlist
            .lines()
            .find(|l| l.starts_with("#EXT-X-MAP:"))
            .expect("an #EXT-X-MAP");
        let start = line.find("URI=\"").expect("a URI") + 5;
        line[start..].split('"').next().unwrap().to_owned()
    } else {
        playlist
            .lines()
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .expect("a segment")
            .to_owned()
    };
    uri.trim_start_matches("/ch/").to_owned()
}

#[tokio::test]
async fn outputs_of_the_committed_clip_keep_their_bytes() {
    let f = recorded(CLIP);
    let mut found = Vec::new();
    let mut previous = String::new();
    for (what, path, _) in golden() {
        let path = if path.is_empty() {
            first_uri(&previous, what.contains("init"))
        } else {
            path
        };
        let (status, _, bytes) = get(&f, &format!("/ch/{path}")).await;
        assert_eq!(status, StatusCode::OK, "{what}: /ch/{path}");
        previous = String::from_utf8_lossy(&bytes).into_owned();
        found.push(blake3::hash(&bytes).to_hex().to_string());
    }
    let table: Vec<String> = golden()
        .iter()
        .zip(&found)
        .map(|((what, _, _), hash)| format!("{what}: {hash}"))
        .collect();
    for ((what, _, pinned), hash) in golden().iter().zip(&found) {
        assert_eq!(
            pinned,
            hash,
            "{what} changed; if that is meant, pin the new hashes:\n{}",
            table.join("\n")
        );
    }
}
