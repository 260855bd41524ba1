//! DASH manifests and CMAF HLS over clips recorded by the real segmenter:
//! every MPD is checked against the DASH MPD schema by xmllint, ffprobe and
//! ffmpeg read the static MPD and the `.fmp4.m3u8` forms over real HTTP,
//! GStreamer's playbin (dashdemux) plays an MPD of two Periods to its end,
//! the fMP4 pieces answer with the TS forms' HTTP semantics, bad input gets
//! the TS forms' one-line 4xx, and two packagers over the same tape answer
//! the same bytes.

mod support;

use std::process::Command;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use dvr_archive::store::ArchiveStore;
use dvr_archive::tape::{StoreTape, StreamTape};
use dvr_archive::{ChunkIndex, ChunkKey};
use dvr_bus::{SegmentLog, SegmentLogOptions};
use dvr_common::fuzz_corpus::repo_path;
use dvr_common::{SimulatedClock, StreamName, UtcMs};
use dvr_media::CodecSummary;
use dvr_packager::{Packager, PackagerConfig};
use dvr_storage::{StorageConfig, StorageUri};
use support::{
    body, ffprobe, get, gst_pictures, header, recorded, recorded_runs, segmented, send, serve,
    Fixture, T0,
};

const MPD: &str = "application/dash+xml";

/// Checks `mpd` (from `uri`) against the DASH MPD schema, offline.
fn assert_valid_mpd(uri: &str, mpd: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.mpd");
    std::fs::write(&file, mpd).unwrap();
    let schemas = repo_path("testdata/schemas/dash");
    let out = Command::new("xmllint")
        .env("XML_CATALOG_FILES", schemas.join("catalog.xml"))
        .args(["--nonet", "--noout", "--schema"])
        .arg(schemas.join("DASH-MPD.xsd"))
        .arg(&file)
        .output()
        .expect("xmllint (make test-deps: libxml2-utils)");
    assert!(
        out.status.success(),
        "{uri}: not a valid MPD: {}\n{mpd}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A text answer of `uri` with its content type, which must be 200.
async fn text_of(f: &Fixture, uri: &str, ctype: &str) -> String {
    let (status, got, body) = get(f, uri).await;
    let text = String::from_utf8(body).unwrap();
    assert_eq!(status, StatusCode::OK, "{uri}: {text}");
    assert_eq!(got, ctype, "{uri}");
    text
}

/// The values of attribute `name` in `text`, in order.
fn attributes(text: &str, name: &str) -> Vec<String> {
    let needle = format!(" {name}=\"");
    text.match_indices(&needle)
        .map(|(at, _)| {
            let rest = &text[at + needle.len()..];
            rest[..rest.find('"').unwrap()].replace("&amp;", "&")
        })
        .collect()
}

/// The URIs of an HLS playlist: its lines and its `URI="…"` attributes.
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

/// The `tfdt` base media decode times of an fMP4 media segment.
fn decode_times(mut bytes: &[u8]) -> Vec<u64> {
    let mut out = Vec::new();
    // Walk top-level boxes, descending into moof and traf.
    let mut stack: Vec<&[u8]> = Vec::new();
    loop {
        if bytes.len() < 8 {
            match stack.pop() {
                Some(rest) => {
                    bytes = rest;
                    continue;
                }
                None => return out,
            }
        }
        let size = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        let kind = &bytes[4..8];
        assert!(size >= 8 && size <= bytes.len(), "bad box size {size}");
        let (this, rest) = bytes.split_at(size);
        match kind {
            b"moof" | b"traf" => {
                stack.push(rest);
                bytes = &this[8..];
            }
            b"tfdt" => {
                assert_eq!(this[8], 1, "tfdt version 1");
                out.push(u64::from_be_bytes(this[12..20].try_into().unwrap()));
                bytes = rest;
            }
            _ => bytes = rest,
        }
    }
}

#[tokio::test]
async fn every_mpd_is_valid_dash() {
    // Two runs of tape with 10 s between them: 26 s in all, and now is 1 s
    // past their end.
    let f = recorded_runs(&["two_audio_langs.ts", "two_audio_langs.ts"], 10_000);
    let forms = [
        "/ch/index.mpd".to_owned(),
        "/ch/rewind-12.mpd".to_owned(),
        format!("/ch/archive-{T0}-8.mpd"),
        format!("/ch/archive-{T0}-26.mpd"),
        format!("/ch/archive-{T0}-26.mpd?dynamic=true&token=a%26b"),
        format!("/ch/index-{T0}-now.mpd"),
        format!("/ch/tracks-1,3/archive-{T0}-26.mpd"),
    ];
    for uri in &forms {
        let mpd = text_of(&f, uri, MPD).await;
        assert_valid_mpd(uri, &mpd);
    }
    // A complete range: static, one Period per run, each with the video and
    // one set per audio language.
    let mpd = text_of(&f, &format!("/ch/archive-{T0}-26.mpd"), MPD).await;
    assert!(mpd.contains("type=\"static\""), "{mpd}");
    assert!(!mpd.contains("publishTime"), "{mpd}");
    assert_eq!(mpd.matches("<Period ").count(), 2, "{mpd}");
    assert_eq!(mpd.matches("<AdaptationSet ").count(), 6, "{mpd}");
    assert_eq!(attributes(&mpd, "lang"), ["eng", "deu", "eng", "deu"]);
    let starts = attributes(&mpd, "start");
    assert_eq!(starts[0], "PT0S");
    // The second run starts 8 s of tape and 10 s of gap later.
    assert!(starts[1].starts_with("PT18"), "{starts:?}");
    for codec in attributes(&mpd, "codecs") {
        assert!(
            codec.starts_with("avc1.64") || codec == "mp4a.40.2",
            "{codec}"
        );
    }
    // The same range while it is not over: dynamic, published at the end of
    // its last segment, reaching back to its start.
    let now = dvr_common::Clock::now(&*f.clock);
    let live = text_of(&f, &format!("/ch/archive-{T0}-60.mpd"), MPD).await;
    assert!(live.contains("type=\"dynamic\""), "{live}");
    assert!(live.contains("availabilityStartTime=\"1970-01-01T00:00:00.000Z\""));
    // (The fixture's clock is 1 s past the end of the tape.)
    assert_eq!(
        attributes(&live, "publishTime"),
        [UtcMs(now.0 - 1000).to_string()]
    );
    let forced = text_of(&f, &format!("/ch/archive-{T0}-60.mpd?dynamic=false"), MPD).await;
    assert!(forced.contains("type=\"static\""), "{forced}");
    // A track selection names its tracks only, beside the MPD's directory.
    let picked = text_of(&f, &format!("/ch/tracks-1,3/archive-{T0}-26.mpd"), MPD).await;
    assert_eq!(picked.matches("<Representation ").count(), 4, "{picked}");
    assert!(
        picked.contains("media=\"../tracks-3/frag-$Time$.m4s\""),
        "{picked}"
    );
    // Start-over names the server for time, when the client said its host.
    let r = send(
        &f,
        Method::GET,
        &format!("/ch/index-{T0}-now.mpd?token=t"),
        &[("host", "dvr.example:8080")],
    )
    .await;
    let mpd = String::from_utf8(body(r).await).unwrap();
    assert!(
        mpd.contains(&format!("<UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-head:2014\" value=\"http://dvr.example:8080/ch/index-{T0}-now.mpd?token=t\"/>")),
        "{mpd}"
    );
    assert_valid_mpd("start-over", &mpd);
}

#[tokio::test]
async fn segments_are_on_the_tape_clock_and_periods_follow_runs() {
    let f = recorded_runs(&["h264_aac_720p.ts", "h264_aac_720p.ts"], 10_000);
    let mpd = text_of(&f, &format!("/ch/archive-{T0}-40.mpd"), MPD).await;
    let periods = attributes(&mpd, "id")
        .into_iter()
        .filter_map(|id| id.strip_prefix('p').map(|t| t.parse::<i64>().unwrap()))
        .collect::<Vec<_>>();
    assert_eq!(periods.len(), 2, "{mpd}");
    assert_eq!(periods[0], T0 * 90_000, "the tape starts at T0");
    // Each Period's offset is its first @t, and its first segment's video
    // decode time is that @t.
    let offsets = attributes(&mpd, "presentationTimeOffset");
    for t in &periods {
        assert!(offsets.contains(&t.to_string()), "{mpd}");
        let (status, ctype, bytes) = get(&f, &format!("/ch/tracks-1/frag-{t}.m4s")).await;
        assert_eq!(
            (status, ctype.as_str()),
            (StatusCode::OK, "video/iso.segment")
        );
        assert_eq!(decode_times(&bytes), [*t as u64]);
    }
    // Fixed 2 s GOPs: each timeline is a repeated entry (and the run's
    // last, shorter segment), not a list.
    for timeline in mpd.split("<SegmentTimeline>").skip(1) {
        let timeline = &timeline[..timeline.find("</SegmentTimeline>").unwrap()];
        assert!(timeline.matches("<S ").count() <= 2, "{timeline}");
        assert!(
            timeline.starts_with("<S t=\"") && timeline.contains(" d=\"180000\" r=\""),
            "{timeline}"
        );
    }

    // CMAF HLS: one map for both runs (the same parameter sets), a
    // discontinuity between them, version 7.
    let playlist = text_of(
        &f,
        &format!("/ch/archive-{T0}-40.fmp4.m3u8"),
        "application/vnd.apple.mpegurl",
    )
    .await;
    assert!(
        playlist.starts_with("#EXTM3U\n#EXT-X-VERSION:7\n"),
        "{playlist}"
    );
    assert_eq!(playlist.matches("#EXT-X-MAP:").count(), 1, "{playlist}");
    assert_eq!(
        playlist.matches("#EXT-X-DISCONTINUITY\n").count(),
        1,
        "{playlist}"
    );
    // Every URI it names answers.
    for uri in uris(&playlist) {
        let (status, _, body) = get(&f, &format!("/ch/{uri}")).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{uri}: {}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffprobe_and_ffmpeg_read_the_fmp4_forms() {
    let f = recorded("h264_aac_720p.ts");
    let hevc = recorded("h265_aac.ts");
    let langs = recorded("two_audio_langs.ts");
    let cases = [
        (
            serve(&f).await,
            format!("archive-{T0}-10.mpd"),
            10.0,
            vec!["audio:aac", "video:h264"],
        ),
        (
            serve(&f).await,
            format!("archive-{T0}-10.fmp4.m3u8"),
            10.0,
            vec!["audio:aac", "video:h264"],
        ),
        (
            serve(&f).await,
            format!("tracks-1/archive-{T0}-10.fmp4.m3u8"),
            10.0,
            vec!["video:h264"],
        ),
        (
            serve(&hevc).await,
            format!("archive-{T0}-8.mpd"),
            8.0,
            vec!["audio:aac", "video:hevc"],
        ),
        (
            serve(&hevc).await,
            format!("archive-{T0}-8.fmp4.m3u8"),
            8.0,
            vec!["audio:aac", "video:hevc"],
        ),
        // The master playlist over the tracks, as CMAF.
        (
            serve(&langs).await,
            format!("archive-{T0}-8.fmp4.m3u8"),
            8.0,
            vec!["audio:aac", "audio:aac", "video:h264"],
        ),
    ];
    for (base, file, secs, want) in cases {
        let url = format!("{base}/{file}");
        let checked = url.clone();
        let (streams, duration, warnings) =
            tokio::task::spawn_blocking(move || (ffprobe(&checked), warnings_of(&checked)))
                .await
                .map(|((s, d), w)| (s, d, w))
                .unwrap();
        assert_eq!(streams, want, "{url}");
        // Right to within one 2 s segment.
        assert!((duration - secs).abs() <= 2.0, "{url}: {duration} s");
        assert!(warnings.is_empty(), "{url}: {warnings}");
    }
}

/// What ffmpeg says, at warning level, decoding all of `url` to nothing.
fn warnings_of(url: &str) -> String {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "warning", "-i", url, "-f", "null", "-"])
        .output()
        .expect("ffmpeg (make test-deps)");
    assert!(
        out.status.success(),
        "{url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn fmp4_pieces_have_the_ts_forms_http() {
    let f = recorded("h264_aac_720p.ts");
    let playlist = text_of(
        &f,
        &format!("/ch/archive-{T0}-10.fmp4.m3u8"),
        "application/vnd.apple.mpegurl",
    )
    .await;
    let listed = uris(&playlist);
    let init = listed.iter().find(|u| u.starts_with("init-")).unwrap();
    let frag = listed.iter().find(|u| u.starts_with("frag-")).unwrap();
    let mpd_uri = format!("/ch/archive-{T0}-10.mpd");
    for (uri, ctype, cache) in [
        (
            format!("/ch/{init}"),
            "video/mp4",
            "public, max-age=31536000, immutable",
        ),
        (
            format!("/ch/{frag}"),
            "video/iso.segment",
            "public, max-age=31536000, immutable",
        ),
        (mpd_uri.clone(), MPD, "max-age=60"),
    ] {
        let r = send(&f, Method::GET, &uri, &[]).await;
        assert_eq!(r.status(), StatusCode::OK, "{uri}");
        assert_eq!(header(&r, "content-type"), ctype, "{uri}");
        assert_eq!(header(&r, "cache-control"), cache, "{uri}");
        assert_eq!(header(&r, "access-control-allow-origin"), "*", "{uri}");
        // dash.js on another origin reads the server's time from `Date`.
        assert!(
            header(&r, "access-control-expose-headers").contains("Date"),
            "{uri}"
        );
        let etag = header(&r, "etag").to_owned();
        assert!(etag.starts_with('"'), "{uri}: {etag:?}");
        let whole = body(r).await;
        assert!(!whole.is_empty());
        let r = send(&f, Method::GET, &uri, &[("if-none-match", &etag)]).await;
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "{uri}");
        let r = send(&f, Method::HEAD, &uri, &[]).await;
        assert_eq!(r.status(), StatusCode::OK, "{uri}");
        assert_eq!(header(&r, "content-type"), ctype, "{uri}");
        assert!(body(r).await.is_empty(), "{uri}");
        if ctype != MPD {
            let r = send(&f, Method::GET, &uri, &[("range", "bytes=0-7")]).await;
            assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{uri}");
            assert_eq!(body(r).await, whole[..8], "{uri}");
        }
    }
    // The init is the one its name says: `ftyp` first.
    let (_, _, bytes) = get(&f, &format!("/ch/{init}")).await;
    assert_eq!(&bytes[4..8], b"ftyp");
}

#[tokio::test]
async fn bad_input_is_a_one_line_4xx() {
    let f = recorded("h264_ac3_mp2.ts");
    let t = T0 * 90_000;
    for (uri, status, says) in [
        (
            format!("/ch/archive-{}-10.mpd", T0 - 1000),
            StatusCode::NOT_FOUND,
            "nothing recorded on ch between",
        ),
        (
            format!("/ch/archive-{T0}-90000.mpd"),
            StatusCode::BAD_REQUEST,
            "longer than the limit",
        ),
        (
            format!("/ch/archive-{T0}-6.mpd?dynamic=yes"),
            StatusCode::BAD_REQUEST,
            "dynamic=\"yes\"",
        ),
        (
            format!("/ch/tracks-9/archive-{T0}-6.mpd"),
            StatusCode::NOT_FOUND,
            "there is no track 9",
        ),
        (
            format!("/ch/tracks-9/archive-{T0}-6.fmp4.m3u8"),
            StatusCode::NOT_FOUND,
            "has no track 9",
        ),
        (
            format!("/ch/init-{t}-0000000000000000.mp4"),
            StatusCode::NOT_FOUND,
            "no init segment 0000000000000000",
        ),
        (
            format!("/ch/frag-{}.m4s", t + 90),
            StatusCode::NOT_FOUND,
            "no segment of ch starts at tape time",
        ),
        (
            format!("/ch/frag-{}.m4s", t - 90_000),
            StatusCode::NOT_FOUND,
            "no segment of ch starts at tape time",
        ),
        (
            format!("/ch/frag-{t}-999999.m4s"),
            StatusCode::BAD_REQUEST,
            "one URL spans at most",
        ),
        (
            format!("/ch/init-{t}-00.mp4"),
            StatusCode::BAD_REQUEST,
            "not 16 lowercase hex digits",
        ),
        // MPEG audio (track 3) has no fMP4 form.
        (
            format!("/ch/tracks-3/frag-{t}.m4s"),
            StatusCode::NOT_FOUND,
            "MPEG audio, which fMP4 output does not carry",
        ),
        (
            "/nope/index.mpd".to_owned(),
            StatusCode::NOT_FOUND,
            "unknown stream nope",
        ),
    ] {
        let (got, _, body) = get(&f, &uri).await;
        let message = String::from_utf8(body).unwrap();
        assert_eq!(got, status, "{uri}: {message}");
        assert!(message.contains(says), "{uri}: {message}");
        assert_eq!(message.matches('\n').count(), 1, "{uri}: {message:?}");
        assert!(message.ends_with('\n'));
    }
    // The tracks fMP4 carries answer: H.264 and AC-3.
    for n in [1, 2] {
        let (status, _, body) = get(&f, &format!("/ch/tracks-{n}/frag-{t}.m4s")).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "track {n}: {}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[tokio::test]
async fn two_packagers_answer_the_same_bytes() {
    let f = recorded_runs(&["two_audio_langs.ts", "two_audio_langs.ts"], 4_000);
    let other = Arc::new(Packager::new(
        PackagerConfig::default(),
        Arc::clone(&f.clock) as Arc<dyn dvr_common::Clock>,
    ));
    other.add_stream(f.packager.stream_tape("ch").unwrap());
    let g = Fixture {
        router: Arc::clone(&other).router(),
        packager: other,
        clock: Arc::clone(&f.clock),
        _dir: tempfile::tempdir().unwrap(),
    };
    let host = [("host", "dvr.example")];
    let mut uris = vec![
        format!("/ch/archive-{T0}-30.mpd"),
        format!("/ch/archive-{T0}-now.mpd"),
        "/ch/index.mpd".to_owned(),
        format!("/ch/archive-{T0}-30.fmp4.m3u8"),
    ];
    // Every piece the MPD names: each Representation's init and the media
    // segment at each Period's start.
    let mpd = text_of(&f, &uris[0], MPD).await;
    let mut period = String::new();
    for line in mpd.lines() {
        if let Some(id) = attributes(line, "id")
            .first()
            .filter(|_| line.starts_with("<Period"))
        {
            period = id.trim_start_matches('p').to_owned();
        }
        for init in attributes(line, "initialization") {
            uris.push(format!("/ch/{init}"));
        }
        for media in attributes(line, "media") {
            uris.push(format!("/ch/{}", media.replace("$Time$", &period)));
        }
    }
    // And every segment of each track's CMAF playlist.
    for n in 1..=3 {
        let uri = format!("/ch/tracks-{n}/archive-{T0}-30.fmp4.m3u8");
        let playlist = text_of(&f, &uri, "application/vnd.apple.mpegurl").await;
        uris.extend(uris_of_track(n, &playlist));
        uris.push(uri);
    }
    assert!(uris.len() > 20, "{uris:?}");
    for uri in &uris {
        let a = send(&f, Method::GET, uri, &host).await;
        let b = send(&g, Method::GET, uri, &host).await;
        assert_eq!(
            (a.status(), b.status()),
            (StatusCode::OK, StatusCode::OK),
            "{uri}"
        );
        assert_eq!(header(&a, "etag"), header(&b, "etag"), "{uri}");
        assert_eq!(body(a).await, body(b).await, "{uri}");
    }
}

fn uris_of_track(n: usize, playlist: &str) -> Vec<String> {
    uris(playlist)
        .into_iter()
        .map(|u| format!("/ch/tracks-{n}/{u}"))
        .collect()
}

#[tokio::test]
async fn adaptation_sets_tell_the_truth_about_renditions() {
    // Aligned keyframes: both renditions in one set, switchable.
    let f = recorded("two_renditions.ts");
    let mpd = text_of(&f, &format!("/ch/archive-{T0}-6.mpd"), MPD).await;
    assert_valid_mpd("two_renditions", &mpd);
    let sets: Vec<&str> = mpd.split("<AdaptationSet ").skip(1).collect();
    assert_eq!(sets.len(), 2, "{mpd}");
    assert!(sets[0].contains("contentType=\"video\"") && sets[0].contains("startWithSAP=\"1\""));
    assert_eq!(sets[0].matches("<Representation ").count(), 2, "{mpd}");
    // The second rendition's GOP is 1.2 s: after the first segment its
    // segments start mid-GOP, so it is a set of its own with no SAP claim.
    let f = recorded("unaligned_renditions.ts");
    let mpd = text_of(&f, &format!("/ch/archive-{T0}-6.mpd"), MPD).await;
    assert_valid_mpd("unaligned_renditions", &mpd);
    let sets: Vec<&str> = mpd.split("<AdaptationSet ").skip(1).collect();
    assert_eq!(sets.len(), 2, "{mpd}");
    assert!(sets[0].contains("startWithSAP=\"1\""), "{mpd}");
    assert!(sets[1].contains("contentType=\"video\""), "{mpd}");
    assert!(!sets[1].contains("startWithSAP"), "{mpd}");
    // Audio only, and AC-3 beside H.264 with the MPEG audio left out.
    let f = recorded("aac_only.ts");
    let mpd = text_of(&f, &format!("/ch/archive-{T0}-10.mpd"), MPD).await;
    assert_valid_mpd("aac_only", &mpd);
    assert_eq!(attributes(&mpd, "contentType"), ["audio"]);
    let f = recorded("h264_ac3_mp2.ts");
    let mpd = text_of(&f, &format!("/ch/archive-{T0}-6.mpd"), MPD).await;
    assert_valid_mpd("h264_ac3_mp2", &mpd);
    assert_eq!(attributes(&mpd, "codecs")[1], "ac-3", "{mpd}");
    assert_eq!(mpd.matches("<Representation ").count(), 2, "{mpd}");
    // The CMAF master offers the AC-3 track, not the MPEG audio.
    let master = text_of(
        &f,
        &format!("/ch/archive-{T0}-6.fmp4.m3u8"),
        "application/vnd.apple.mpegurl",
    )
    .await;
    let listed = uris(&master);
    assert!(
        listed.iter().any(|u| u.starts_with("tracks-2/")),
        "{master}"
    );
    assert!(
        !listed.iter().any(|u| u.starts_with("tracks-3/")),
        "{master}"
    );
    for uri in listed {
        let playlist = text_of(&f, &format!("/ch/{uri}"), "application/vnd.apple.mpegurl").await;
        assert!(playlist.contains("#EXT-X-MAP:URI=\"init-"), "{playlist}");
    }
}

#[tokio::test]
async fn a_run_whose_first_segment_is_lost_is_described_by_the_next() {
    // A file:// archive of a real recording: the first segment alone in
    // one chunk, the rest in another; then the first chunk's object is
    // deleted behind the DVR's back.
    let clock = Arc::new(SimulatedClock::new(UtcMs(T0 * 1000)));
    let segments = segmented(&["h264_aac_720p.ts"], 0, &clock);
    let archive = tempfile::tempdir().unwrap();
    let uri = StorageUri::parse(&format!("file://{}", archive.path().display())).unwrap();
    let storage = dvr_storage::resolve(&uri, &StorageConfig::default()).unwrap();
    let stream: StreamName = "ch".parse().unwrap();
    let writer = ArchiveStore::new(Arc::clone(&storage));
    let mut keys = Vec::new();
    for part in [&segments[..1], &segments[1..]] {
        let key = ChunkKey::new(stream.clone(), part[0].utc_start, part[0].seq);
        let body: Vec<u8> = part.iter().flat_map(|s| s.payload.to_vec()).collect();
        storage.put(&key.ts_key(), Bytes::from(body)).await.unwrap();
        let index = ChunkIndex::from_segments(
            CodecSummary::default(),
            part.iter().map(|s| {
                let length = u32::try_from(s.payload.len()).unwrap();
                (s.seq, s.utc_start, s.duration, s.pts_start, length, s.flags)
            }),
        );
        writer.commit_chunk(key.clone(), index).await.unwrap();
        keys.push(key);
    }
    let store = Arc::new(ArchiveStore::new(Arc::clone(&storage)));
    store.load(&stream).await.unwrap();
    storage.delete(&keys[0].ts_key()).await.unwrap();
    let live = tempfile::tempdir().unwrap();
    let log =
        Arc::new(SegmentLog::open(live.path().join("ch"), SegmentLogOptions::default()).unwrap());
    clock.set(UtcMs(segments.last().unwrap().utc_end().0 + 1000));
    let packager = Arc::new(Packager::new(
        PackagerConfig::default(),
        Arc::clone(&clock) as Arc<dyn dvr_common::Clock>,
    ));
    let tape = StoreTape::new(stream, store);
    packager.add_stream(StreamTape::new("ch", log, Some(Arc::new(tape))));
    let f = Fixture {
        router: Arc::clone(&packager).router(),
        packager,
        clock,
        _dir: archive,
    };
    let second = segments[1].utc_start.0 * 90;
    // The MPD and the CMAF playlist name inits made from the second
    // segment, and those answer.
    let mpd = text_of(&f, &format!("/ch/archive-{T0}-10.mpd"), MPD).await;
    assert_valid_mpd("lost first segment", &mpd);
    let inits = attributes(&mpd, "initialization");
    assert_eq!(inits.len(), 2, "{mpd}");
    let playlist = text_of(
        &f,
        &format!("/ch/archive-{T0}-10.fmp4.m3u8"),
        "application/vnd.apple.mpegurl",
    )
    .await;
    let map = uris(&playlist)
        .into_iter()
        .find(|u| u.starts_with("init-"))
        .unwrap();
    for init in inits.iter().chain([&map]) {
        assert!(init.contains(&format!("init-{second}-")), "{init}");
        let (status, ctype, _) = get(&f, &format!("/ch/{init}")).await;
        assert_eq!(
            (status, ctype.as_str()),
            (StatusCode::OK, "video/mp4"),
            "{init}"
        );
    }
    // The lost segment itself is a 404 naming it.
    let (status, _, body) = get(&f, &format!("/ch/tracks-1/frag-{}.m4s", T0 * 90_000)).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "{}",
        String::from_utf8_lossy(&body)
    );
}

#[tokio::test]
async fn every_cmaf_hls_form_lists_pieces_that_answer() {
    let f = recorded_runs(&["h264_aac_720p.ts", "h264_aac_720p.ts"], 4_000);
    let abs = format!("/ch/timeshift_abs-{}.fmp4.m3u8", T0 + 2);
    let r = send(&f, Method::GET, &abs, &[]).await;
    assert_eq!(r.status(), StatusCode::FOUND, "{abs}");
    let started = header(&r, "location").to_owned();
    assert!(started.starts_with(&format!("{abs}?started=")), "{started}");
    for path in [
        "/ch/index.fmp4.m3u8".to_owned(),
        "/ch/rewind-30.fmp4.m3u8".to_owned(),
        format!("/ch/archive-{T0}-now.fmp4.m3u8"),
        "/ch/timeshift_rel-6.fmp4.m3u8".to_owned(),
        started,
        format!("/ch/mono-{T0}-24.fmp4.m3u8"),
        format!("/ch/video1-{T0}-24.fmp4.m3u8"),
        "/ch/tracks-2/index.fmp4.m3u8".to_owned(),
    ] {
        let playlist = text_of(&f, &path, "application/vnd.apple.mpegurl").await;
        assert!(
            playlist.starts_with("#EXTM3U\n#EXT-X-VERSION:7\n"),
            "{path}: {playlist}"
        );
        assert!(
            playlist.contains("#EXT-X-MAP:URI=\"init-"),
            "{path}: {playlist}"
        );
        let dir = &path[..path.rfind('/').unwrap() + 1];
        let listed = uris(&playlist);
        assert!(listed.len() >= 2, "{path}: {playlist}");
        for uri in listed {
            let ctype = if uri.starts_with("init-") {
                "video/mp4"
            } else {
                "video/iso.segment"
            };
            let (status, got, body) = get(&f, &format!("{dir}{uri}")).await;
            assert_eq!(
                (status, got.as_str()),
                (StatusCode::OK, ctype),
                "{path}: {uri}: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_plays_an_mpd_of_two_periods_to_its_end() {
    // Two runs of 10 s with 4 s between them: a static MPD of two Periods.
    let f = recorded_runs(&["h264_aac_720p.ts", "h264_aac_720p.ts"], 4_000);
    let url = format!("{}/archive-{T0}-24.mpd", serve(&f).await);
    let mpd = text_of(&f, &format!("/ch/archive-{T0}-24.mpd"), MPD).await;
    assert!(mpd.contains("type=\"static\"") && mpd.matches("<Period ").count() == 2);
    // Decoded pictures, on the tape's clock, from both Periods up to the
    // end of the tape.
    let pictures = gst_pictures(&url).await;
    let t0 = T0 as f64;
    assert!(pictures.len() >= 450, "{} pictures", pictures.len());
    assert!(pictures.iter().any(|&t| t < t0 + 10.0), "{pictures:?}");
    assert!(pictures.iter().any(|&t| t > t0 + 14.0), "{pictures:?}");
    let last = pictures.iter().copied().fold(0.0, f64::max);
    assert!(
        (last - (t0 + 24.0)).abs() < 0.5,
        "the last picture at {last}"
    );
}
