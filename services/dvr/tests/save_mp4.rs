//! Saved exports through a real `dvr run`: the seeds' `POST
//! /STREAM/save-mp4-FROM-DUR?file=NAME` with basic auth (as `curl -u`)
//! queues a job, the packager writes the MP4 into the archive under
//! `exports/STREAM/NAME`, `GET /api/v1/exports/{id}` follows it to `done`,
//! and ffprobe reads the file with the asked duration. Without credentials,
//! with a name that leaves the prefix, a second time without `overwrite`,
//! or with more than 64 KiB of metadata it is refused with a line naming
//! why. `meta=true` (the body) and the API's `meta` object come back as
//! the file's tags in ffprobe.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{
    free_tcp_port, recorded_span, send_with, start_dvr_with_env, testdata, wait_for, Procs,
};

/// The admin password; [`basic`] is its header.
const PASSWORD: &str = "save-mp4-password";

/// Basic auth of `admin:{PASSWORD}`.
fn basic() -> String {
    "Authorization: Basic YWRtaW46c2F2ZS1tcDQtcGFzc3dvcmQ=\r\n".to_owned()
}

#[test]
fn save_mp4_writes_the_range_into_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let http = free_tcp_port();
    let config = dir.path().join("dvr.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nhttp: {{ listen: \"127.0.0.1:{http}\" }}\narchive: file://{}/archive\n\
             api: {{ users: {{ admin: \"${{DVR_ADMIN_PASSWORD}}\" }} }}\n\
             streams:\n  ch1:\n    inputs: [ \"file://{}?loop=true\" ]\n    \
             dvr: {{ depth: 1d, segment_duration: 2s, copy_interval: 1h }}\n",
            dir.path().display(),
            testdata("h264_aac_720p.ts").display()
        ),
    )
    .unwrap();
    let _procs = Procs(vec![start_dvr_with_env(
        &config,
        &dir.path().join("data"),
        &[("DVR_ADMIN_PASSWORD", PASSWORD)],
    )]);
    wait_for("8 s recorded", Duration::from_secs(40), || {
        recorded_span(http, "ch1").is_some_and(|(f, t)| t - f >= 8)
    });
    let (from, _) = recorded_span(http, "ch1").unwrap();
    let save_body = |query: &str, head: &str, body: &str| {
        let (status, _, body) = send_with(
            http,
            "POST",
            &format!("/ch1/save-mp4-{}-6?{query}", from + 1),
            head,
            body,
        );
        let text = String::from_utf8_lossy(&body).into_owned();
        (status, text)
    };
    let save = |query: &str, head: &str| save_body(query, head, "");
    let done = |id: &str| {
        let mut seen = Value::Null;
        wait_for("the export done", Duration::from_secs(30), || {
            let (_, _, body) =
                send_with(http, "GET", &format!("/api/v1/exports/{id}"), &basic(), "");
            seen = serde_json::from_slice(&body).unwrap_or(Value::Null);
            seen["state"] == "done" || seen["state"] == "failed"
        });
        assert_eq!(seen["state"], "done", "{seen}");
        seen
    };

    // Refused before anything is queued.
    let (status, text) = save("file=clip.mp4", "");
    assert_eq!(status, 401, "{text}");
    for (query, code, why) in [
        ("file=../clip.mp4", 400, "'.', '..' and empty components"),
        ("file=/storage/clip.mp4", 400, "must be relative"),
        ("file=clip.mp4&meta=yes", 400, "expected true or false"),
        ("", 400, "file: required"),
    ] {
        let (status, text) = save(query, &basic());
        assert_eq!(status, code, "{query}: {text}");
        assert!(text.contains(why), "{query}: {text}");
    }

    // Queued, written, done.
    let (status, text) = save("file=news/clip.mp4", &basic());
    assert_eq!(status, 202, "{text}");
    let job: Value = serde_json::from_str(&text).unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(job["state"], "queued", "{job}");
    let seen = done(&id);
    let file = dir.path().join("archive/exports/ch1/news/clip.mp4");
    let len = std::fs::metadata(&file).unwrap().len();
    assert_eq!(seen["bytes"].as_u64(), Some(len), "{seen}");
    assert_eq!(seen["total"].as_u64(), Some(len), "{seen}");
    let probe = support::ffprobe_json(&file);
    let seconds: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (5.0..=8.5).contains(&seconds),
        "6 s asked, {seconds} s written"
    );
    // The same bytes the download gives.
    let (status, _, download) = send_with(
        http,
        "GET",
        &format!("/ch1/archive-{}-6.mp4", from + 1),
        "",
        "",
    );
    assert_eq!(status, 200);
    assert!(
        std::fs::read(&file).unwrap() == download,
        "saved and downloaded differ"
    );

    // Listed; a second save of the name is refused unless overwrite.
    let (_, _, body) = send_with(http, "GET", "/api/v1/exports", &basic(), "");
    let list: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(list["exports"][0]["id"], id.as_str(), "{list}");
    let (status, text) = save("file=news/clip.mp4", &basic());
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("overwrite"), "{text}");
    let (status, text) = save("file=news/clip.mp4&overwrite=true", &basic());
    assert_eq!(status, 202, "{text}");
    let second: Value = serde_json::from_str(&text).unwrap();

    // Listed a page at a time, newest first.
    let list = |query: &str| {
        let (status, _, body) = send_with(
            http,
            "GET",
            &format!("/api/v1/exports?{query}"),
            &basic(),
            "",
        );
        let text = String::from_utf8_lossy(&body).into_owned();
        (
            status,
            serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
            text,
        )
    };
    let (status, page, text) = list("limit=1");
    assert_eq!(status, 200, "{text}");
    assert_eq!(page["exports"].as_array().map(Vec::len), Some(1), "{page}");
    assert_eq!(page["exports"][0]["id"], second["id"], "{page}");
    let next = page["next"].as_str().expect("a next cursor").to_owned();
    let (_, page, _) = list(&format!("limit=1&before={next}"));
    assert_eq!(page["exports"][0]["id"], id.as_str(), "{page}");
    assert!(page.get("next").is_none(), "{page}");
    for bad in ["limit=0", "limit=1001", "before=yesterday"] {
        let (status, _, text) = list(bad);
        assert_eq!(status, 400, "{bad}: {text}");
    }

    // Metadata: the seeds' opaque body is the comment; the API's names
    // are iTunes atoms or freeform items; ffprobe reads them all back.
    let tags_of = |name: &str| {
        let probe = support::ffprobe_json(&dir.path().join("archive/exports/ch1").join(name));
        probe["format"]["tags"].clone()
    };
    let (status, text) = save_body(
        "file=meta/opaque.mp4&meta=true",
        &basic(),
        "some opaque value, ü",
    );
    assert_eq!(status, 202, "{text}");
    let job: Value = serde_json::from_str(&text).unwrap();
    done(job["id"].as_str().unwrap());
    let tags = tags_of("meta/opaque.mp4");
    assert_eq!(tags["comment"], "some opaque value, ü", "{tags}");
    let export = |body: &Value| {
        let (status, _, answer) = send_with(
            http,
            "POST",
            "/api/v1/streams/ch1/dvr/export",
            &basic(),
            &body.to_string(),
        );
        (
            status,
            serde_json::from_slice::<Value>(&answer).unwrap_or(Value::Null),
        )
    };
    let (status, job) = export(&serde_json::json!({
        "from": from + 1, "duration": 6, "file": "meta/tagged.mp4", "precise": true,
        "meta": { "title": "Evening news", "case": "4711/B", "description": "a clip" }
    }));
    assert_eq!(status, 202, "{job}");
    done(job["id"].as_str().unwrap());
    let tags = tags_of("meta/tagged.mp4");
    assert_eq!(tags["title"], "Evening news", "{tags}");
    assert_eq!(tags["case"], "4711/B", "{tags}");
    assert_eq!(tags["description"], "a clip", "{tags}");
    assert!(tags.get("comment").is_none(), "{tags}");
    // Too much metadata: 413 either way, nothing queued.
    let big = "x".repeat(65 * 1024);
    let (status, text) = save_body("file=meta/big.mp4&meta=true", &basic(), &big);
    assert_eq!(status, 413, "{text}");
    let (status, answer) = export(&serde_json::json!({
        "from": from + 1, "duration": 6, "file": "meta/big.mp4", "meta": { "notes": big }
    }));
    assert_eq!(status, 413, "{answer}");
    let (status, answer) = export(&serde_json::json!({
        "from": from + 1, "duration": 6, "file": "meta/big.mp4", "meta": { "": "x" }
    }));
    assert_eq!(status, 400, "{answer}");
}
