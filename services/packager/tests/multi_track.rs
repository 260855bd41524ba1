//! Channels with two audio languages (`testdata/two_audio_langs.ts`) and
//! two video renditions (`testdata/two_renditions.ts`), recorded by the real
//! segmenter: the master playlist with variants and `EXT-X-MEDIA`
//! renditions, per-track playlists whose segments are cut by PID, `mono`
//! with every track, and `video` / `videoN` for set-top boxes. ffprobe, over
//! real HTTP, judges the master and every track playlist.

mod support;

use axum::http::StatusCode;
use dvr_media::codec::TrackKind;
use dvr_media::tracks::program_of;
use support::{ffprobe, get, recorded, serve, Fixture, T0};

async fn text(f: &Fixture, uri: &str) -> String {
    let (status, ctype, body) = get(f, uri).await;
    let text = String::from_utf8(body).unwrap();
    assert_eq!(status, StatusCode::OK, "{uri}: {text}");
    assert_eq!(ctype, "application/vnd.apple.mpegurl", "{uri}");
    text
}

fn uris(playlist: &str) -> Vec<String> {
    let mut out: Vec<String> = playlist
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_owned)
        .collect();
    out.extend(playlist.lines().filter_map(|l| {
        l.split_once("URI=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(uri, _)| uri.to_owned())
    }));
    out
}

/// The PIDs of the program in a segment served at `uri`.
async fn pids_of_segment(f: &Fixture, uri: &str) -> Vec<u16> {
    let (status, ctype, body) = get(f, uri).await;
    assert_eq!(
        (status, ctype.as_str()),
        (StatusCode::OK, "video/mp2t"),
        "{uri}"
    );
    assert_eq!(body.len() % 188, 0);
    pids_of_stream(uri, &body)
}

/// The PIDs of the program in transport stream `body` (from `uri`), which
/// holds nothing else.
fn pids_of_stream(uri: &str, body: &[u8]) -> Vec<u16> {
    let program = program_of(body).unwrap_or_else(|| panic!("{uri}: no program"));
    // Every packet is PAT, PMT, a listed stream or the clock.
    for packet in body.chunks_exact(188) {
        let pid = dvr_media::ts::pid(packet);
        assert!(
            pid == 0
                || pid == program.pmt_pid
                || pid == program.pcr_pid
                || program.streams.iter().any(|s| s.pid == pid),
            "{uri}: stray PID {pid}"
        );
    }
    program.streams.iter().map(|s| s.pid).collect()
}

#[tokio::test]
async fn master_renditions_and_track_playlists() {
    let f = recorded("two_audio_langs.ts");
    let q = "token=abc&event=true";
    let master = text(&f, &format!("/ch/index-{T0}-8.m3u8?{q}")).await;
    assert!(master.contains("#EXT-X-STREAM-INF:"), "{master}");
    assert_eq!(
        master.matches("#EXT-X-MEDIA:TYPE=AUDIO").count(),
        2,
        "{master}"
    );
    assert!(master.contains("LANGUAGE=\"eng\",DEFAULT=YES"), "{master}");
    assert!(master.contains("LANGUAGE=\"deu\",DEFAULT=NO"), "{master}");
    assert!(master.contains("CODECS=\"avc1.64"), "{master}");
    assert!(master.contains(",mp4a.40.2\""), "{master}");
    assert!(master.contains("RESOLUTION=640x360"), "{master}");
    assert_eq!(
        uris(&master),
        [
            format!("tracks-1/index-{T0}-8.m3u8?{q}"),
            format!("tracks-2/index-{T0}-8.m3u8?{q}"),
            format!("tracks-3/index-{T0}-8.m3u8?{q}"),
        ]
    );
    // `archive-` is the same master.
    let archive = text(&f, &format!("/ch/archive-{T0}-8.m3u8")).await;
    assert!(archive.contains("tracks-2/archive-"), "{archive}");

    // Each track playlist lists the same segments; each segment holds its
    // track only.
    let mono = text(&f, &format!("/ch/mono-{T0}-8.m3u8")).await;
    let all_segments = uris(&mono);
    assert!(all_segments.len() >= 3, "{mono}");
    for (n, pid) in [(1, 256), (2, 257), (3, 258)] {
        let playlist = text(&f, &format!("/ch/tracks-{n}/index-{T0}-8.m3u8?token=abc")).await;
        let segments = uris(&playlist);
        assert_eq!(segments.len(), all_segments.len(), "{playlist}");
        for segment in segments {
            assert!(segment.ends_with("?token=abc"), "{segment}");
            let got = pids_of_segment(&f, &format!("/ch/tracks-{n}/{segment}")).await;
            assert_eq!(got, [pid], "track {n} {segment}");
        }
    }
    // mono: every track in one stream.
    assert_eq!(
        pids_of_segment(&f, &format!("/ch/{}", all_segments[0])).await,
        [256, 257, 258]
    );
    let (status, _, body) = get(&f, &format!("/ch/tracks-4/index-{T0}-8.m3u8")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        String::from_utf8(body)
            .unwrap()
            .contains("no track 4: it has 3 tracks"),
        "tracks-4"
    );
}

#[tokio::test]
async fn video_variants_for_set_top_boxes() {
    let f = recorded("two_audio_langs.ts");
    let variants = text(&f, &format!("/ch/video-{T0}-8.m3u8")).await;
    assert_eq!(
        uris(&variants),
        [format!("video1-{T0}-8.m3u8")],
        "{variants}"
    );
    assert!(!variants.contains("EXT-X-MEDIA:"), "{variants}");
    let video1 = text(&f, &format!("/ch/video1-{T0}-8.m3u8")).await;
    let segments = uris(&video1);
    assert!(
        segments.iter().all(|s| s.starts_with("tracks-1,2,3/")),
        "{video1}"
    );
    assert_eq!(
        pids_of_segment(&f, &format!("/ch/{}", segments[0])).await,
        [256, 257, 258]
    );
    let (status, _, _) = get(&f, &format!("/ch/video2-{T0}-8.m3u8")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Live and stream mode speak the same: a master over live tracks.
    let live = text(&f, "/ch/index.m3u8").await;
    assert!(live.contains("tracks-2/index.m3u8"), "{live}");
    let rel = text(&f, "/ch/timeshift_rel-4.m3u8").await;
    assert!(rel.contains("tracks-3/timeshift_rel-4.m3u8"), "{rel}");
}

#[tokio::test]
async fn two_renditions_are_two_variants() {
    let f = recorded("two_renditions.ts");
    let master = text(&f, &format!("/ch/index-{T0}-6.m3u8")).await;
    assert_eq!(master.matches("#EXT-X-STREAM-INF:").count(), 2, "{master}");
    assert!(
        master.contains("RESOLUTION=640x360,AUDIO=\"audio\"\ntracks-1/"),
        "{master}"
    );
    assert!(
        master.contains("RESOLUTION=320x180,AUDIO=\"audio\"\ntracks-2/"),
        "{master}"
    );
    assert!(master.contains("URI=\"tracks-3/index-"), "{master}");
    // The bigger picture asks for more bandwidth.
    let bandwidths: Vec<u64> = master
        .lines()
        .filter_map(|l| l.split("BANDWIDTH=").nth(1))
        .map(|v| v.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(bandwidths[0] > bandwidths[1], "{master}");
    // Set-top boxes: one variant per picture, each with the audio inside.
    let variants = text(&f, &format!("/ch/video-{T0}-6.m3u8")).await;
    assert_eq!(
        uris(&variants),
        [format!("video1-{T0}-6.m3u8"), format!("video2-{T0}-6.m3u8")]
    );
    let video2 = text(&f, &format!("/ch/video2-{T0}-6.m3u8")).await;
    let first = uris(&video2).remove(0);
    assert!(first.starts_with("tracks-2,3/"), "{video2}");
    assert_eq!(
        pids_of_segment(&f, &format!("/ch/{first}")).await,
        [257, 258]
    );
}

#[tokio::test]
async fn a_single_track_pair_keeps_its_media_playlist() {
    let f = recorded("h264_aac_720p.ts");
    let text = text(&f, &format!("/ch/index-{T0}-8.m3u8")).await;
    assert!(text.contains("#EXTINF:"), "{text}");
    assert!(!text.contains("STREAM-INF"), "{text}");
}

#[tokio::test]
async fn video_n_beyond_the_video_tracks_is_not_found() {
    // One video track: video1 is the media playlist, video2 is nothing.
    let f = recorded("h264_aac_720p.ts");
    let one = text(&f, &format!("/ch/video1-{T0}-8.m3u8")).await;
    assert_eq!(one, text(&f, &format!("/ch/mono-{T0}-8.m3u8")).await);
    for uri in [
        format!("/ch/video2-{T0}-8.m3u8"),
        "/ch/video2.m3u8".to_owned(),
    ] {
        let (status, _, body) = get(&f, &uri).await;
        let message = String::from_utf8(body).unwrap();
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {message}");
        assert!(
            message.starts_with("stream ch has no video track 2: it has 1 at "),
            "{uri}: {message}"
        );
    }
    // Two renditions: video3 is beyond them.
    let f = recorded("two_renditions.ts");
    let (status, _, body) = get(&f, &format!("/ch/video3-{T0}-6.m3u8")).await;
    let message = String::from_utf8(body).unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND, "{message}");
    assert!(
        message.contains("has no video track 3: it has 2"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_streams_are_cut_by_pid() {
    let f = recorded("two_audio_langs.ts");
    // Downloads: the whole range, every segment cut.
    for (uri, pids) in [
        (format!("/ch/tracks-1/archive-{T0}-8.ts"), vec![256]),
        (
            format!("/ch/tracks-2,3/archive/{T0}/8/mpegts"),
            vec![257, 258],
        ),
        (format!("/ch/archive-{T0}-8.ts"), vec![256, 257, 258]),
    ] {
        let (status, ctype, body) = get(&f, &uri).await;
        assert_eq!(
            (status, ctype.as_str()),
            (StatusCode::OK, "video/mp2t"),
            "{uri}"
        );
        assert_eq!(pids_of_stream(&uri, &body), pids, "{uri}");
    }
    // Paced streams from a moment, and live.
    for (uri, pids) in [
        (format!("/ch/tracks-3/timeshift_abs-{T0}.ts"), vec![258]),
        (
            format!("/ch/tracks-1,2/timeshift_abs/{}", T0 + 2),
            vec![256, 257],
        ),
        ("/ch/tracks-2/timeshift_rel/4".to_owned(), vec![257]),
        ("/ch/tracks-1/mpegts".to_owned(), vec![256]),
        (
            format!("/ch/mono-timeshift_abs-{T0}.ts"),
            vec![256, 257, 258],
        ),
    ] {
        let head = support::first_bytes(&f, &uri, 64 * 188).await;
        let whole = &head[..head.len() / 188 * 188];
        assert_eq!(pids_of_stream(&uri, whole), pids, "{uri}");
    }
    // A track the stream does not have is an answer, not an empty stream.
    for (uri, message) in [
        (
            format!("/ch/tracks-4/archive-{T0}-8.ts"),
            "has no track 4: it has 3 tracks",
        ),
        (
            format!("/ch/tracks-1,5/timeshift_abs-{T0}.ts"),
            "has no track 5: it has 3 tracks",
        ),
        (
            format!("/ch/video2-timeshift_abs-{T0}.ts"),
            "has no video track 2: it has 1",
        ),
    ] {
        let (status, _, body) = get(&f, &uri).await;
        let text = String::from_utf8(body).unwrap();
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {text}");
        assert!(text.contains(message), "{uri}: {text}");
    }
    let (status, _, body) = get(&f, &format!("/ch/video-timeshift_abs-{T0}.ts")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");

    // ffprobe finds only the kept tracks, lasting the whole range. (From a
    // file: a cut download's length is known only at its end, so over HTTP
    // ffprobe could not seek to its end for the duration.)
    let dir = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    for (uri, want) in [
        (
            format!("/ch/tracks-1/archive-{T0}-8.ts"),
            vec!["video:h264"],
        ),
        (
            format!("/ch/tracks-1,3/archive/{T0}/8/mpegts"),
            vec!["audio:aac", "video:h264"],
        ),
    ] {
        let (_, _, body) = get(&f, &uri).await;
        let file = dir.path().join(format!("{}.ts", cases.len()));
        std::fs::write(&file, body).unwrap();
        cases.push((file.display().to_string(), want));
    }
    check_with_ffprobe(8.0, cases).await;
    let f = recorded("two_renditions.ts");
    let base = serve(&f).await;
    let url = format!("{base}/video2-timeshift_abs-{T0}.ts");
    let (streams, _) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || ffprobe(&url)
    })
    .await
    .unwrap();
    assert_eq!(streams, ["audio:aac", "video:h264"], "{url}");
    // The second video track and the audio, by PID.
    let mono = support::first_bytes(&f, &format!("/ch/timeshift_abs-{T0}.ts"), 64 * 188).await;
    let program = program_of(&mono).unwrap();
    let pid_of = |kind| {
        program
            .streams
            .iter()
            .filter(move |s| s.codec.kind() == kind)
            .map(|s| s.pid)
    };
    let mut want: Vec<u16> = pid_of(TrackKind::Video).skip(1).take(1).collect();
    want.extend(pid_of(TrackKind::Audio));
    want.sort_unstable();
    let uri = format!("/ch/video2-timeshift_abs-{T0}.ts");
    let head = support::first_bytes(&f, &uri, 64 * 188).await;
    let mut got = pids_of_stream(&uri, &head[..head.len() / 188 * 188]);
    got.sort_unstable();
    assert_eq!(got, want);
}

/// ffprobe finds exactly the streams `want` at each URL, lasting `secs`
/// (within one second).
async fn check_with_ffprobe(secs: f64, cases: Vec<(String, Vec<&'static str>)>) {
    for (url, want) in cases {
        let (streams, duration) = tokio::task::spawn_blocking({
            let url = url.clone();
            move || ffprobe(&url)
        })
        .await
        .unwrap();
        assert_eq!(streams, want, "{url}");
        assert!((duration - secs).abs() < 1.0, "{url}: duration {duration}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffprobe_reads_the_master_and_every_track_playlist() {
    let f = recorded("two_audio_langs.ts");
    let base = serve(&f).await;
    let all = vec!["audio:aac", "audio:aac", "video:h264"];
    let cases = vec![
        (format!("{base}/index-{T0}-8.m3u8"), all.clone()),
        (
            format!("{base}/tracks-1/index-{T0}-8.m3u8"),
            vec!["video:h264"],
        ),
        (
            format!("{base}/tracks-2/index-{T0}-8.m3u8"),
            vec!["audio:aac"],
        ),
        (
            format!("{base}/tracks-3/index-{T0}-8.m3u8"),
            vec!["audio:aac"],
        ),
        (format!("{base}/video1-{T0}-8.m3u8"), all.clone()),
        (format!("{base}/mono-{T0}-8.m3u8"), all),
    ];
    check_with_ffprobe(8.0, cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffprobe_reads_both_renditions() {
    let f = recorded("two_renditions.ts");
    let base = serve(&f).await;
    let cases = vec![
        (
            format!("{base}/index-{T0}-6.m3u8"),
            vec!["audio:aac", "video:h264", "video:h264"],
        ),
        (
            format!("{base}/tracks-2/index-{T0}-6.m3u8"),
            vec!["video:h264"],
        ),
        (
            format!("{base}/video2-{T0}-6.m3u8"),
            vec!["audio:aac", "video:h264"],
        ),
    ];
    check_with_ffprobe(6.0, cases).await;
}
