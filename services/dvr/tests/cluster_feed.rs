//! The segment feed between origins: `dvr run` with a `cluster_key` hands
//! its tape to a subscriber holding the key, metadata and bytes unchanged
//! (the same bytes as its segment URLs), archived segments first and new
//! ones as they are made, resumable after any seq; a request without the
//! key, with another key or replayed (to the same replica or, on NATS, to
//! another one) is refused; the key appears in no log.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dvr_cluster::signature::{RequestLine, SignedRequest};
use dvr_cluster::{ClusterKey, FeedClient, FeedError, FeedItem, FeedSegment, FeedStart, FEED_PATH};
use dvr_common::{StreamName, UtcMs};
use dvr_testkit::nats::NatsServer;
use support::{body_of, dvr_bin, free_tcp_port, segments, testdata, wait_for, Procs};

const KEY: &str = "feed-test-cluster-key-0123456789";

fn write_config(dir: &Path, port: u16) -> std::path::PathBuf {
    let config = dir.join("dvr.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nhttp: {{ listen: \"127.0.0.1:{port}\" }}\narchive: file://{}/archive\n\
             cluster_key: \"${{DVR_CLUSTER_KEY}}\"\n\
             streams:\n  ch1:\n    inputs: [ \"file://{}?loop=true\" ]\n    \
             dvr: {{ depth: 1d, segment_duration: 2s, copy_interval: 1h }}\n",
            dir.display(),
            testdata("h264_aac_720p.ts").display()
        ),
    )
    .unwrap();
    config
}

/// `dvr run` with the cluster key in its environment, its log in `log`.
fn start(config: &Path, data: &Path, log: &Path, extra: &[&str]) -> Child {
    start_with_env(config, data, log, extra, &[])
}

/// [`start`] with `env` set too (it may replace the cluster key).
fn start_with_env(
    config: &Path,
    data: &Path,
    log: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(dvr_bin())
        .args(["run", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .env("DVR_CLUSTER_KEY", KEY)
        .env("RUST_LOG", "debug")
        .envs(env.iter().copied())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Starts `dvr run` as origin `name` under `dir` on `port`, with the
/// cluster key, a local archive and `body` (its `streams:` and any
/// `sources:`) after the common head of the config; its log in
/// `dir/name/dvr.log`.
fn start_origin(dir: &Path, name: &str, port: u16, body: &str) -> Child {
    let archive = format!("file://{}/archive", dir.join(name).display());
    start_origin_on(dir, name, port, &Store::new(&archive), body)
}

/// Where an origin keeps its archive: the root, the `storage:` section's
/// body (indented by two, empty for files) and the secrets' variables.
struct Store<'a> {
    archive: &'a str,
    storage: String,
    env: Vec<(&'a str, &'a str)>,
}

impl<'a> Store<'a> {
    fn new(archive: &'a str) -> Self {
        Self {
            archive,
            storage: String::new(),
            env: Vec::new(),
        }
    }
}

/// [`start_origin`] with its archive in `store`.
fn start_origin_on(dir: &Path, name: &str, port: u16, store: &Store<'_>, body: &str) -> Child {
    let at = dir.join(name);
    std::fs::create_dir_all(&at).unwrap();
    let config = at.join("dvr.yaml");
    let storage = if store.storage.is_empty() {
        String::new()
    } else {
        format!("storage:\n{}", store.storage)
    };
    std::fs::write(
        &config,
        format!(
            "version: 1\nhttp: {{ listen: \"127.0.0.1:{port}\" }}\narchive: {}\n{storage}\
             cluster_key: \"${{DVR_CLUSTER_KEY}}\"\n{body}",
            store.archive
        ),
    )
    .unwrap();
    start_with_env(
        &config,
        &at.join("data"),
        &at.join("dvr.log"),
        &[],
        &store.env,
    )
}

/// The `streams:` of one stream `ch1` from `inputs` (quoted, comma-separated).
fn ch1_from(inputs: &str) -> String {
    format!("streams:\n  ch1:\n    inputs: [ {inputs} ]\n    dvr: {{ depth: 1d, segment_duration: 2s }}\n")
}

fn wall_now() -> UtcMs {
    UtcMs(support::wall_clock_ms())
}

/// A raw signed (or not) feed request: the status and, for a refusal, the
/// message. The answer to an accepted one never ends, so only its head is
/// read.
fn ask(port: u16, query: &str, headers: &[(&str, String)]) -> (u16, String) {
    ask_as(port, port, &format!("{FEED_PATH}?{query}"), headers)
}

/// A GET of `target` (path and query) sent to `port` naming
/// `127.0.0.1:{host_port}` as its `Host`.
fn ask_as(port: u16, host_port: u16, target: &str, headers: &[(&str, String)]) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!("GET {target} HTTP/1.0\r\nHost: 127.0.0.1:{host_port}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the connection closed before the head");
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got).to_string();
    let status: u16 = head[9..12].parse().unwrap();
    if status == 200 {
        return (status, String::new());
    }
    let _ = stream.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got).to_string();
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .trim()
        .to_owned();
    (status, body)
}

fn signed(key: &str, port: u16, query: &str) -> Vec<(&'static str, String)> {
    signed_get(key, &format!("127.0.0.1:{port}"), FEED_PATH, query)
}

/// Signing headers for a GET of `path?query` on `host`.
fn signed_get(key: &str, host: &str, path: &str, query: &str) -> Vec<(&'static str, String)> {
    let key = ClusterKey::new(key).unwrap();
    let line = RequestLine {
        method: "GET",
        host,
        path,
        query,
        body: b"",
    };
    SignedRequest::sign(&key, &line, wall_now().0)
        .headers()
        .to_vec()
}

/// Headers as request head lines.
fn lines(headers: &[(&str, String)]) -> String {
    headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect()
}

/// Reads `n` segments from the feed, within a minute.
async fn take(sub: &mut dvr_cluster::FeedSubscription, n: usize) -> Vec<FeedSegment> {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while out.len() < n {
            match sub.next().await.unwrap() {
                Some(FeedItem::Segment(s)) => out.push(s),
                Some(FeedItem::Heartbeat { .. }) => {}
                None => panic!("the feed ended"),
            }
        }
    })
    .await
    .expect("segments within a minute");
    out
}

#[test]
fn a_subscriber_with_the_key_gets_the_tape_unchanged_and_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_tcp_port();
    let config = write_config(dir.path(), port);
    let log = dir.path().join("dvr.log");
    let child = start(&config, &dir.path().join("data"), &log, &[]);
    let procs = Procs(vec![child]);

    let mut playlist = String::new();
    wait_for(
        "three segments on the tape",
        Duration::from_secs(60),
        || {
            let (status, body) = support::get(port, "/ch1/index.m3u8");
            playlist = String::from_utf8_lossy(&body).into_owned();
            status == 200 && segments(&playlist).0.len() >= 3
        },
    );
    let first_seq: u64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .unwrap()
        .parse()
        .unwrap();
    let (listed, _) = segments(&playlist);
    let ch1 = StreamName::new("ch1").unwrap();
    let base = format!("http://127.0.0.1:{port}/");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = FeedClient::new(ClusterKey::new(KEY).unwrap()).unwrap();

    // From the playlist's first instant: its segments, bytes as served at
    // their URLs, then new ones as the tape grows.
    let mut sub = rt
        .block_on(client.subscribe(
            &base,
            &ch1,
            FeedStart::At {
                utc: UtcMs(listed[0].0),
                after: None,
            },
            wall_now(),
        ))
        .unwrap();
    let want = listed.len() + 2;
    let got = rt.block_on(take(&mut sub, want));
    for (i, s) in got.iter().enumerate() {
        assert_eq!(
            s.meta.seq,
            first_seq + i as u64,
            "seqs in order, none missing"
        );
        assert_eq!(s.meta.bytes, s.payload.len() as u64);
        assert!(s.payload.len() % 188 == 0 && s.payload[0] == 0x47);
        if i > 0 {
            assert!(s.meta.utc_start >= got[i - 1].meta.utc_start);
        }
    }
    for (i, (start_ms, _, uri)) in listed.iter().enumerate() {
        assert_eq!(
            got[i].meta.utc_start.0, *start_ms,
            "seq {}",
            got[i].meta.seq
        );
        assert!(
            body_of(port, &format!("/ch1/{uri}")) == got[i].payload,
            "bytes of {uri}"
        );
    }
    drop(sub);

    // Resumed after a seq: the next one comes first.
    let resume_after = got[1].meta.seq;
    let mut sub = rt
        .block_on(client.subscribe(&base, &ch1, FeedStart::After(resume_after), wall_now()))
        .unwrap();
    let next = rt.block_on(take(&mut sub, 1));
    assert_eq!(next[0].meta.seq, resume_after + 1);
    assert_eq!(next[0].payload, got[2].payload);
    drop(sub);

    // Another key, no signature, a replay: refused, saying why.
    let stranger = FeedClient::new(ClusterKey::new("some-other-cluster-key-xyz").unwrap()).unwrap();
    match rt.block_on(stranger.subscribe(&base, &ch1, FeedStart::Live, wall_now())) {
        Err(FeedError::Refused {
            status, message, ..
        }) => {
            assert_eq!(status, 403);
            assert!(message.contains("signature does not match"), "{message}");
        }
        other => panic!("another key was not refused: {other:?}"),
    }
    let (status, message) = ask(port, "stream=ch1", &[]);
    assert_eq!(
        (status, message.contains("not signed")),
        (401, true),
        "{message}"
    );
    let headers = signed(KEY, port, "stream=ch1");
    assert_eq!(ask(port, "stream=ch1", &headers).0, 200);
    let (status, message) = ask(port, "stream=ch1", &headers);
    assert_eq!(
        (status, message.contains("replayed")),
        (403, true),
        "{message}"
    );
    // The signature covers the query: the same headers for another stream fail.
    let (status, message) = ask(port, "stream=ch2", &signed(KEY, port, "stream=ch1"));
    assert_eq!(
        (status, message.contains("does not match")),
        (403, true),
        "{message}"
    );
    // Signed, but asking for what is not there or cannot be.
    let (status, message) = ask(port, "stream=ch9", &signed(KEY, port, "stream=ch9"));
    assert_eq!(
        (status, message.as_str()),
        (404, "no stream ch9 on this origin")
    );
    let (status, message) = ask(
        port,
        "stream=ch1&since=5",
        &signed(KEY, port, "stream=ch1&since=5"),
    );
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("since"), "{message}");

    // The API, closed without admin credentials, lists the streams to
    // another origin of the cluster, and only that (`send_with` names
    // `Host: localhost`).
    let list = lines(&signed_get(KEY, "localhost", "/api/v1/streams", ""));
    let (status, _, body) = support::send_with(port, "GET", "/api/v1/streams", &list, "");
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"ch1\""), "{body}");
    let (status, _, body) = support::send_with(port, "GET", "/api/v1/streams", &list, "");
    assert_eq!(status, 403, "a replayed list is refused");
    assert!(String::from_utf8_lossy(&body).contains("replayed"));
    let stranger = lines(&signed_get(
        "some-other-cluster-key-xyz",
        "localhost",
        "/api/v1/streams",
        "",
    ));
    assert_eq!(
        support::send_with(port, "GET", "/api/v1/streams", &stranger, "").0,
        403
    );
    let other_route = lines(&signed_get(KEY, "localhost", "/api/v1/streams/ch1", ""));
    let (status, _, body) =
        support::send_with(port, "GET", "/api/v1/streams/ch1", &other_route, "");
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("only GET /api/v1/streams"), "{body}");

    drop(procs);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("segment feed opened"),
        "the log shows the feeds"
    );
    assert!(!logged.contains(KEY), "the cluster key is in the log");
}

#[test]
fn a_request_replayed_to_another_replica_is_refused() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let nats = rt.block_on(NatsServer::start());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), free_tcp_port());
    let mut procs = Procs(Vec::new());
    let mut ports = Vec::new();
    for node in ["packager-a", "packager-b"] {
        let port = free_tcp_port();
        let listen = format!("127.0.0.1:{port}");
        procs.0.push(start(
            &config,
            &dir.path().join(node),
            &dir.path().join(format!("{node}.log")),
            &[
                "--nats",
                &nats.url(),
                "--services",
                "packager",
                "--node-id",
                node,
                "--listen",
                &listen,
            ],
        ));
        wait_for("the packager", Duration::from_secs(30), || {
            support::get(port, "/healthz").0 == 200
        });
        ports.push(port);
    }
    let (a, b) = (ports[0], ports[1]);
    // One signature for both (the Host it names is a's, as a load balancer
    // in front of both would pass it on).
    let headers = signed(KEY, a, "stream=ch1");
    let first = ask(a, "stream=ch1", &headers);
    assert_ne!(first.0, 403, "{first:?}");
    let (status, message) = ask_as(b, a, &format!("{FEED_PATH}?stream=ch1"), &headers);
    assert_eq!(
        (status, message.contains("replayed")),
        (403, true),
        "{message}"
    );
    let (status, message) = ask(a, "stream=ch1", &headers);
    assert_eq!(
        (status, message.contains("replayed")),
        (403, true),
        "{message}"
    );
    drop(procs);
    for node in ["packager-a", "packager-b"] {
        let logged = std::fs::read_to_string(dir.path().join(format!("{node}.log"))).unwrap();
        assert!(!logged.contains(KEY), "the cluster key is in {node}'s log");
    }
}

/// The segment URLs of a live playlist by seq.
fn listed_by_seq(port: u16) -> Vec<(u64, String)> {
    let (status, body) = support::get(port, "/ch1/index.m3u8");
    if status != 200 {
        return Vec::new();
    }
    let playlist = String::from_utf8_lossy(&body).into_owned();
    let Some(first) = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return Vec::new();
    };
    segments(&playlist)
        .0
        .into_iter()
        .enumerate()
        .map(|(i, (_, _, uri))| (first + i as u64, uri))
        .collect()
}

#[test]
fn an_origin_restreams_another_with_the_same_seqs_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (free_tcp_port(), free_tcp_port());
    let clip = testdata("h264_aac_720p.ts");
    let mut procs = Procs(vec![start_origin(
        dir.path(),
        "a",
        a,
        &ch1_from(&format!("\"file://{}?loop=true\"", clip.display())),
    )]);
    wait_for("the source's tape", Duration::from_secs(60), || {
        listed_by_seq(a).len() >= 2
    });
    // The restreamer: a first source that is down, then the real one.
    let dead = free_tcp_port();
    procs.0.push(start_origin(
        dir.path(),
        "b",
        b,
        &ch1_from(&format!(
            "\"m4f://127.0.0.1:{dead}/ch1\", \"m4f://127.0.0.1:{a}/ch1\""
        )),
    ));
    // Three segments made after the restreamer came up.
    let mut on_b = Vec::new();
    wait_for("the restreamer's tape", Duration::from_secs(90), || {
        on_b = listed_by_seq(b);
        on_b.len() >= 4
    });
    let on_a = listed_by_seq(a);
    let mut compared = 0;
    for (seq, uri) in &on_b {
        let Some((_, uri_a)) = on_a.iter().find(|(s, _)| s == seq) else {
            continue;
        };
        assert_eq!(uri, uri_a, "seq {seq} names the same time on both");
        let (bytes_a, bytes_b) = (
            body_of(a, &format!("/ch1/{uri}")),
            body_of(b, &format!("/ch1/{uri}")),
        );
        assert!(
            !bytes_a.is_empty() && bytes_a == bytes_b,
            "seq {seq}: the same bytes"
        );
        compared += 1;
    }
    assert!(
        compared >= 3,
        "{compared} segments in both windows: {on_a:?} {on_b:?}"
    );
    // A time before the restreamer's tape (the source's first segment:
    // the restreamer started from the source's newest, after two) is the
    // source's to answer.
    let (first_start_s, _) = support::recorded_span(a, "ch1").unwrap();
    let range = format!("/ch1/index-{first_start_s}-2.m3u8?token=t1");
    let (status, head, _) = support::get_with_head(b, &range);
    assert_eq!(status, 302, "{head}");
    let location = support::header(&head, "location").unwrap().to_owned();
    assert_eq!(location, format!("http://127.0.0.1:{a}{range}"));
    assert_eq!(support::get(a, &range).0, 200);

    // Seqs on the restreamer go up one by one.
    for pair in on_b.windows(2) {
        assert_eq!(pair[1].0, pair[0].0 + 1, "{on_b:?}");
    }
    // The restreamer's status names the input it follows.
    let metrics = String::from_utf8_lossy(&body_of(b, "/metrics")).into_owned();
    assert!(
        metrics.contains("dvr_ingest"),
        "the restream's counters are exported"
    );
    drop(procs);
    let logged = std::fs::read_to_string(dir.path().join("b").join("dvr.log")).unwrap();
    assert!(
        logged.contains("restream: following"),
        "the restreamer logs its source"
    );
    assert!(
        !logged.contains(KEY),
        "the cluster key is in the restreamer's log"
    );
}

/// `sources:` with `only: [ch*]` and `except: [ch2]` on a source of ch1,
/// ch2 and news: ch1 is restreamed all the time, ch2 not at all, and news
/// (the seeds' grey list) runs only while a viewer asks for it.
#[test]
fn sources_take_only_as_static_the_rest_on_demand_and_leave_except_out() {
    const ADMIN: &str = "sources-admin-token";
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (free_tcp_port(), free_tcp_port());
    let clip = testdata("h264_aac_720p.ts");
    let mut streams = "streams:\n".to_owned();
    for name in ["ch1", "ch2", "news"] {
        streams.push_str(&format!(
            "  {name}:\n    inputs: [ \"file://{}?loop=true\" ]\n    dvr: {{ depth: 1d, segment_duration: 2s }}\n",
            clip.display()
        ));
    }
    let mut procs = Procs(vec![start_origin(dir.path(), "a", a, &streams)]);
    wait_for("the source's tapes", Duration::from_secs(60), || {
        listed_by_seq(a).len() >= 2
    });
    procs.0.push(start_origin(
        dir.path(),
        "b",
        b,
        &format!(
            "api: {{ tokens: [ \"{ADMIN}\" ] }}\nstreams: {{}}\nsources:\n  - url: http://127.0.0.1:{a}\n    \
             only: [ \"ch*\" ]\n    except: [ \"ch2\" ]\n    dvr: {{ depth: 1d }}\n"
        ),
    ));
    let mut on_b = Vec::new();
    wait_for("ch1 restreamed", Duration::from_secs(60), || {
        on_b = listed_by_seq(b);
        on_b.len() >= 2
    });
    let on_a = listed_by_seq(a);
    let (seq, uri) = on_b.last().unwrap();
    assert!(
        on_a.iter().any(|(s, u)| s == seq && u == uri),
        "{on_a:?} {on_b:?}"
    );
    assert_eq!(
        body_of(a, &format!("/ch1/{uri}")),
        body_of(b, &format!("/ch1/{uri}"))
    );
    // except wins over only.
    let (status, body) = support::get(b, "/ch2/index.m3u8");
    assert_eq!(status, 404, "ch2: {}", String::from_utf8_lossy(&body));
    // news, outside only, is on demand: no ingest until a viewer asks…
    let ingest_of_news = || {
        let (status, body) = stream_status(b, ADMIN, "news");
        assert_eq!(status, 200, "{body}");
        body["ingest"].clone()
    };
    assert!(ingest_of_news().is_null(), "news runs before anyone asked");
    // …then the first viewer waits for its first segment and gets it, with
    // the source's bytes.
    let (status, body) = support::get(b, "/news/index.m3u8");
    let playlist = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 200, "{playlist}");
    let (listed, _) = segments(&playlist);
    let (_, _, uri) = listed.last().expect("a segment in the first answer");
    assert_eq!(
        body_of(b, &format!("/news/{uri}")),
        body_of(a, &format!("/news/{uri}")),
        "news/{uri}: the source's bytes"
    );
    // Its ingest reports within a second or two of starting.
    wait_for("news's ingest report", Duration::from_secs(10), || {
        !ingest_of_news().is_null()
    });
    // Nobody asks any more: it stops after its on_demand time (20 s).
    let asked_last = std::time::Instant::now();
    wait_for("news stopped", Duration::from_secs(45), || {
        ingest_of_news().is_null()
    });
    assert!(
        asked_last.elapsed() >= Duration::from_secs(15),
        "news stopped {:?} after the last request",
        asked_last.elapsed()
    );
    drop(procs);
    let logged = std::fs::read_to_string(dir.path().join("b").join("dvr.log")).unwrap();
    assert!(
        logged.contains("sources: stream taken"),
        "the follower logs what it takes"
    );
    assert!(logged.contains("on-demand stream asked for"));
    assert!(!logged.contains(KEY));
}

/// `GET /api/v1/streams/{stream}/status` on `port` with an API token: the
/// HTTP status and the body as JSON (`null` when it is not JSON).
fn stream_status(port: u16, token: &str, stream: &str) -> (u16, serde_json::Value) {
    let (status, _, body) = support::send_with(
        port,
        "GET",
        &format!("/api/v1/streams/{stream}/status"),
        &format!("Authorization: Bearer {token}\r\n"),
        "",
    );
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

/// A TCP relay to `target` on loopback, to cut one path between origins.
struct Relay {
    port: u16,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    fn start(rt: &tokio::runtime::Runtime, target: u16) -> Relay {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let conns = Arc::clone(&tasks);
        let accept = rt.spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let relay = tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns.lock().unwrap().push(relay);
            }
        });
        tasks.lock().unwrap().push(accept);
        Relay { port, tasks }
    }

    /// Stops listening and drops every relayed connection.
    fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

#[test]
fn a_restreamer_fails_over_between_origins_of_one_tape_losing_and_repeating_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (a, c, b) = (free_tcp_port(), free_tcp_port(), free_tcp_port());
    let origin = |name: &str, port: u16, inputs: &str| {
        start_origin(dir.path(), name, port, &ch1_from(inputs))
    };
    let clip = testdata("h264_aac_720p.ts");
    let mut procs = Procs(vec![origin(
        "a",
        a,
        &format!("\"file://{}?loop=true\"", clip.display()),
    )]);
    wait_for("A's tape", Duration::from_secs(60), || {
        listed_by_seq(a).len() >= 2
    });
    // C restreams A directly; B reaches A through a relay, and C after it.
    procs
        .0
        .push(origin("c", c, &format!("\"m4f://127.0.0.1:{a}/ch1\"")));
    let relay = Relay::start(&rt, a);
    procs.0.push(origin(
        "b",
        b,
        &format!(
            "\"m4f://127.0.0.1:{}/ch1\", \"m4f://127.0.0.1:{c}/ch1\"",
            relay.port
        ),
    ));
    wait_for(
        "B's tape through the relay",
        Duration::from_secs(60),
        || listed_by_seq(b).len() >= 2,
    );
    let before_cut = listed_by_seq(b).last().unwrap().0;
    relay.cut();
    // B goes on from C: the next seqs, none lost or repeated, A's bytes.
    let mut on_b = Vec::new();
    wait_for("B's tape from C", Duration::from_secs(60), || {
        on_b = listed_by_seq(b);
        on_b.last().is_some_and(|(seq, _)| *seq >= before_cut + 3)
    });
    for pair in on_b.windows(2) {
        assert_eq!(pair[1].0, pair[0].0 + 1, "seqs across the cut: {on_b:?}");
    }
    let on_a = listed_by_seq(a);
    for (seq, uri) in on_b.iter().filter(|(s, _)| *s > before_cut) {
        let Some((_, uri_a)) = on_a.iter().find(|(s, _)| s == seq) else {
            continue;
        };
        assert_eq!(uri, uri_a);
        assert!(
            body_of(a, &format!("/ch1/{uri}")) == body_of(b, &format!("/ch1/{uri}")),
            "seq {seq}"
        );
    }
    drop(procs);
    let logged = std::fs::read_to_string(dir.path().join("b").join("dvr.log")).unwrap();
    assert!(
        logged.contains(&format!("m4f://127.0.0.1:{c}/ch1"))
            && logged.contains("restream source lost"),
        "B logs the loss and follows C"
    );
}

/// The seq and segment URI of each segment of `stream`'s archive between
/// `from_s` and `to_s` on `port`, or why not (the status and head).
fn archived_by_seq(port: u16, from_s: i64, to_s: i64) -> Result<Vec<(u64, String)>, String> {
    let path = format!("/ch1/index-{from_s}-{}.m3u8", to_s - from_s);
    let (status, head, body) = support::get_with_head(port, &path);
    if status != 200 {
        return Err(format!("{status} {head}"));
    }
    let playlist = String::from_utf8_lossy(&body).into_owned();
    let first: u64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no media sequence in {playlist}"))?;
    Ok(segments(&playlist)
        .0
        .into_iter()
        .enumerate()
        .map(|(i, (_, _, uri))| (first + i as u64, uri))
        .collect())
}

/// Failing over to an origin with its own capture of the channel (its own
/// seqs) goes on after the restreamer's last seq with a discontinuity,
/// and the stream status counts it.
#[test]
fn failing_over_to_an_independent_capture_continues_our_seqs_with_a_discontinuity() {
    const ADMIN: &str = "independent-admin-token";
    let dir = tempfile::tempdir().unwrap();
    let (a, c, b) = (free_tcp_port(), free_tcp_port(), free_tcp_port());
    let clip = format!(
        "\"file://{}?loop=true\"",
        testdata("h264_aac_720p.ts").display()
    );
    let mut procs = Procs(vec![start_origin(dir.path(), "a", a, &ch1_from(&clip))]);
    // C captures the same channel later: its seqs start again from 0.
    wait_for("A's tape", Duration::from_secs(60), || {
        listed_by_seq(a).len() >= 4
    });
    procs
        .0
        .push(start_origin(dir.path(), "c", c, &ch1_from(&clip)));
    procs.0.push(start_origin(
        dir.path(),
        "b",
        b,
        &format!(
            "api: {{ tokens: [ \"{ADMIN}\" ] }}\n{}",
            ch1_from(&format!(
                "\"m4f://127.0.0.1:{a}/ch1\", \"m4f://127.0.0.1:{c}/ch1\""
            ))
        ),
    ));
    wait_for("B following A", Duration::from_secs(60), || {
        listed_by_seq(b).len() >= 2 && !listed_by_seq(c).is_empty()
    });
    let mut killed = procs.0.remove(0);
    killed.kill().unwrap();
    killed.wait().unwrap();
    let before = listed_by_seq(b).last().unwrap().0;
    let mut on_b = Vec::new();
    wait_for("B going on from C", Duration::from_secs(60), || {
        on_b = listed_by_seq(b);
        on_b.last().is_some_and(|(seq, _)| *seq >= before + 3)
    });
    for pair in on_b.windows(2) {
        assert_eq!(
            pair[1].0,
            pair[0].0 + 1,
            "B's seqs go on one by one: {on_b:?}"
        );
    }
    let playlist = String::from_utf8_lossy(&body_of(b, "/ch1/index.m3u8")).into_owned();
    assert!(
        playlist.contains("#EXT-X-DISCONTINUITY"),
        "the switch is a discontinuity in the live playlist: {playlist}"
    );
    // The report is rewritten every 5 s.
    let mut status = serde_json::Value::Null;
    wait_for(
        "the discontinuity in B's status",
        Duration::from_secs(15),
        || {
            status = stream_status(b, ADMIN, "ch1").1;
            status["ingest"]["discontinuities"].as_u64() >= Some(1)
        },
    );
    let ingest = &status["ingest"];
    assert_eq!(
        ingest["input"].as_str(),
        Some(format!("m4f://127.0.0.1:{c}/ch1").as_str()),
        "{status}"
    );
    assert!(ingest["switches"].as_u64() >= Some(1), "{status}");
}

/// A restreamer holding another cluster key is refused by its source, and
/// its stream status says so (not only its log).
#[test]
fn a_restreamer_with_another_key_says_why_in_its_status() {
    const ADMIN: &str = "wrong-key-admin-token";
    const OTHER_KEY: &str = "another-cluster-key-4d1f9a0c";
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (free_tcp_port(), free_tcp_port());
    let clip = testdata("h264_aac_720p.ts");
    let mut procs = Procs(vec![start_origin(
        dir.path(),
        "a",
        a,
        &ch1_from(&format!("\"file://{}?loop=true\"", clip.display())),
    )]);
    wait_for("A's tape", Duration::from_secs(60), || {
        !listed_by_seq(a).is_empty()
    });
    let at = dir.path().join("b");
    std::fs::create_dir_all(&at).unwrap();
    let config = at.join("dvr.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nhttp: {{ listen: \"127.0.0.1:{b}\" }}\narchive: file://{}/archive\n\
             cluster_key: \"${{DVR_CLUSTER_KEY}}\"\napi: {{ tokens: [ \"{ADMIN}\" ] }}\n{}",
            at.display(),
            ch1_from(&format!("\"m4f://127.0.0.1:{a}/ch1\""))
        ),
    )
    .unwrap();
    procs.0.push(start_with_env(
        &config,
        &at.join("data"),
        &at.join("dvr.log"),
        &[],
        &[("DVR_CLUSTER_KEY", OTHER_KEY)],
    ));
    let mut ingest = serde_json::Value::Null;
    wait_for("the refusal in B's status", Duration::from_secs(60), || {
        let (status, body) = stream_status(b, ADMIN, "ch1");
        ingest = body["ingest"].clone();
        // Until A listens, the error is a refused connection.
        status == 200
            && ingest["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("403"))
    });
    let error = ingest["last_error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!("m4f://127.0.0.1:{a}/ch1: ")) && error.contains("403"),
        "{ingest}"
    );
    assert!(ingest["input"].is_null(), "nothing plays: {ingest}");
    assert!(listed_by_seq(b).is_empty(), "no tape from a refused source");
    drop(procs);
    for (origin, key) in [("a", KEY), ("b", OTHER_KEY)] {
        let logged = std::fs::read_to_string(dir.path().join(origin).join("dvr.log")).unwrap();
        assert!(!logged.contains(key), "a cluster key is in {origin}'s log");
    }
    let logged = std::fs::read_to_string(dir.path().join("b").join("dvr.log")).unwrap();
    assert!(logged.contains("403"), "B's log names the refusal");
}

#[test]
fn a_replicating_restreamer_copies_what_its_source_recorded_before_it() {
    const ADMIN: &str = "replication-admin-token";
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (free_tcp_port(), free_tcp_port());
    let clip = testdata("h264_aac_720p.ts");
    let mut procs = Procs(vec![start_origin(
        dir.path(),
        "a",
        a,
        &ch1_from(&format!("\"file://{}?loop=true\"", clip.display())),
    )]);
    // Some tape on the source before the restreamer exists.
    wait_for("the source's tape", Duration::from_secs(90), || {
        listed_by_seq(a).len() >= 6
    });
    let (from_s, _) = support::recorded_span(a, "ch1").unwrap();
    procs.0.push(start_origin(
        dir.path(),
        "b",
        b,
        &format!(
            "api: {{ tokens: [ \"{ADMIN}\" ] }}\nstreams:\n  ch1:\n    inputs: [ \"m4f://127.0.0.1:{a}/ch1\" ]\n    \
             dvr: {{ depth: 1d, segment_duration: 2s, copy_interval: 1m, replicate: true, replicate_rate: 8M }}\n"
        ),
    ));
    // The restreamer follows from the source's newest segment; what came
    // before is copied into its own archive, not answered by a redirect.
    let mut first_on_b = None;
    wait_for("the restreamer's tape", Duration::from_secs(60), || {
        first_on_b = listed_by_seq(b).first().map(|(seq, _)| *seq);
        first_on_b.is_some()
    });
    let mut copied = Vec::new();
    let mut last = String::new();
    wait_for("the copied tape", Duration::from_secs(90), || {
        let (_, now_s) = support::recorded_span(b, "ch1").unwrap_or((0, 0));
        match archived_by_seq(b, from_s, now_s.max(from_s + 1)) {
            Ok(list) => {
                copied = list;
                copied.first().is_some_and(|(_, uri)| {
                    archived_by_seq(a, from_s, now_s)
                        .is_ok_and(|on_a| on_a.first().map(|f| &f.1) == Some(uri))
                })
            }
            Err(e) => {
                last = e;
                false
            }
        }
    });
    let (_, now_s) = support::recorded_span(a, "ch1").unwrap();
    let on_a = archived_by_seq(a, from_s, now_s).unwrap();
    // Over the common range, the same seqs name the same times and bytes,
    // with no seq twice or out of order.
    let mut compared = 0;
    for pair in copied.windows(2) {
        assert_eq!(
            pair[1].0,
            pair[0].0 + 1,
            "one seq after the other: {copied:?}"
        );
    }
    for (seq, uri) in &copied {
        let Some((_, uri_a)) = on_a.iter().find(|(s, _)| s == seq) else {
            continue;
        };
        assert_eq!(uri, uri_a, "seq {seq} names the same time on both");
        assert_eq!(
            body_of(a, &format!("/ch1/{uri}")),
            body_of(b, &format!("/ch1/{uri}")),
            "seq {seq}: the same bytes"
        );
        compared += 1;
    }
    let first_on_b = first_on_b.unwrap();
    assert!(
        copied.iter().filter(|(s, _)| *s < first_on_b).count() >= 4,
        "the tape before the restreamer's first segment {first_on_b} is copied: {copied:?} ({last})"
    );
    assert!(compared >= 6, "{compared} compared: {copied:?} / {on_a:?}");
    // Status and metrics say what was copied.
    let segments_copied =
        support::metric_sample(b, "dvr_recorder_backfilled_segments_total{stream=\"ch1\"}")
            .unwrap_or(0.0);
    assert!(segments_copied >= 4.0, "{segments_copied} segments copied");
    let (status, body) = stream_status(b, ADMIN, "ch1");
    assert_eq!(status, 200);
    let replication = body["replication"].clone();
    assert!(
        replication["segments"].as_u64().unwrap() >= 4,
        "{replication}"
    );
    assert!(replication["bytes"].as_u64().unwrap() > 0, "{replication}");
    assert!(replication["error"].is_null(), "{replication}");
    drop(procs);
    let logged = std::fs::read_to_string(dir.path().join("b").join("dvr.log")).unwrap();
    assert!(
        logged.contains("replication: chunk copied"),
        "the copy is logged"
    );
    assert!(
        !logged.contains(KEY),
        "the cluster key is in the restreamer's log"
    );
}

/// What `port`'s tape of ch1 holds from `from_s` on, by seq; empty when
/// it cannot answer.
fn whole_tape(port: u16, from_s: i64) -> Vec<(u64, String)> {
    let now_s = support::wall_clock_ms() / 1000 + 5;
    archived_by_seq(port, from_s, now_s).unwrap_or_default()
}

/// The three origins, each on its own store: A captures UDP; C
/// restreams and replicates A on Swift; B, started later on S3, takes
/// ch1 from its `sources:` (A, then C, with only/except wildcards),
/// copies what A recorded before B existed, and when A dies goes on from
/// C with no seq twice or out of order; B's and C's tapes then hold A's
/// seqs with the same bytes, and B serves the copied range itself.
#[test]
fn three_origins_replicate_and_fail_over_on_their_own_stores() {
    use dvr_testkit::s3::{S3sFs, S3_ACCESS_KEY, S3_SECRET_KEY};
    use dvr_testkit::swift::{SwiftNode, SWIFT_KEY, SWIFT_USER};

    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3 = rt.block_on(S3sFs::start(&["origin-a", "origin-b"]));
    let swift = rt.block_on(SwiftNode::start());
    rt.block_on(swift.create_container("origin-c"));
    let s3_section = format!(
        "  s3: {{ endpoint: \"{}\", region: us-east-1, access_key_id: {S3_ACCESS_KEY}, \
         load_default_credentials: false }}\n",
        s3.endpoint()
    );
    let on_s3 = |archive| Store {
        archive,
        storage: s3_section.clone(),
        env: vec![("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)],
    };
    let on_swift = Store {
        archive: "swift://origin-c/tv",
        storage: format!(
            "  swift: {{ auth_url: \"{}\", user: \"{SWIFT_USER}\" }}\n",
            swift.auth_url()
        ),
        env: vec![("ST_KEY", SWIFT_KEY)],
    };

    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (free_tcp_port(), free_tcp_port(), free_tcp_port());
    // ch1 is a live UDP capture on A; ch2, looped from a file, is there
    // to be left out by B's `except`.
    let udp = support::free_udp_port();
    let streams = format!(
        "streams:\n  ch1:\n    inputs: [ \"udp://127.0.0.1:{udp}\" ]\n    \
         dvr: {{ depth: 1d, segment_duration: 2s }}\n  \
         ch2:\n    inputs: [ \"file://{}?loop=true\" ]\n    \
         dvr: {{ depth: 1d, segment_duration: 2s }}\n",
        testdata("h264_aac_720p.ts").display()
    );
    let mut procs = Procs(vec![start_origin_on(
        dir.path(),
        "a",
        a,
        &on_s3("s3://origin-a/tv"),
        &streams,
    )]);
    procs.0.push(support::start_source(udp, "testsrc2", 300));
    wait_for("A's tape", Duration::from_secs(90), || {
        listed_by_seq(a).len() >= 3
    });
    let (from_s, _) = support::recorded_span(a, "ch1").unwrap();
    procs.0.push(start_origin_on(
        dir.path(),
        "c",
        c,
        &on_swift,
        &format!(
            "streams:\n  ch1:\n    inputs: [ \"m4f://127.0.0.1:{a}/ch1\" ]\n    \
             dvr: {{ depth: 1d, segment_duration: 2s, copy_interval: 1m, replicate: true }}\n"
        ),
    ));
    wait_for(
        "C's copy of A's first segment",
        Duration::from_secs(90),
        || {
            whole_tape(c, from_s).first() == whole_tape(a, from_s).first()
                && !whole_tape(c, from_s).is_empty()
        },
    );
    // A few more segments on A before B exists.
    let made_before_b = listed_by_seq(a).last().unwrap().0;
    wait_for("more of A's tape", Duration::from_secs(60), || {
        listed_by_seq(a).last().unwrap().0 >= made_before_b + 2
    });
    procs.0.push(start_origin_on(
        dir.path(),
        "b",
        b,
        &on_s3("s3://origin-b/tv"),
        &format!(
            "sources:\n  - url: http://127.0.0.1:{a}\n    only: [ \"ch*\" ]\n    except: [ \"ch2\" ]\n    \
             dvr: {{ depth: 1d, segment_duration: 2s, copy_interval: 1m, replicate: true }}\n  \
             - url: http://127.0.0.1:{c}\n    only: [ \"ch*\" ]\n    except: [ \"ch2\" ]\n    \
             dvr: {{ depth: 1d, segment_duration: 2s, copy_interval: 1m, replicate: true }}\n"
        ),
    ));
    wait_for(
        "B's copy of what A made before B",
        Duration::from_secs(120),
        || {
            let on_b = whole_tape(b, from_s);
            !on_b.is_empty() && on_b.first() == whole_tape(a, from_s).first()
        },
    );
    assert_eq!(
        support::get(b, "/ch2/index.m3u8").0,
        404,
        "except wins over only"
    );

    // A dies mid-recording: B goes on from C.
    let last_on_a = listed_by_seq(a).last().unwrap().0;
    let mut killed = procs.0.remove(0);
    killed.kill().unwrap();
    killed.wait().unwrap();
    let logged_b = dir.path().join("b").join("dvr.log");
    wait_for("B following C", Duration::from_secs(60), || {
        std::fs::read_to_string(&logged_b).is_ok_and(|l| {
            l.lines().any(|line| {
                line.contains("restream: following") && line.contains(&format!("127.0.0.1:{c}"))
            })
        })
    });
    // Both tapes settle on what A made before it died.
    let mut on_b = Vec::new();
    let mut on_c = Vec::new();
    wait_for("B and C at the same end", Duration::from_secs(60), || {
        on_b = whole_tape(b, from_s);
        on_c = whole_tape(c, from_s);
        !on_b.is_empty() && on_b.last() == on_c.last()
    });
    assert!(
        on_b.last().unwrap().0 >= last_on_a,
        "B holds A's last seq {last_on_a} seen before the kill: {on_b:?}"
    );
    for pair in on_b.windows(2) {
        assert_eq!(
            pair[1].0,
            pair[0].0 + 1,
            "one seq after the other on B: {on_b:?}"
        );
    }
    assert_eq!(on_b, on_c, "B and C list the same seqs at the same times");
    for (seq, uri) in &on_b {
        assert_eq!(
            body_of(b, &format!("/ch1/{uri}")),
            body_of(c, &format!("/ch1/{uri}")),
            "seq {seq}: the same bytes on B and C"
        );
    }
    drop(procs);
    for origin in ["a", "b", "c"] {
        let logged = std::fs::read_to_string(dir.path().join(origin).join("dvr.log")).unwrap();
        assert!(
            !logged.contains(KEY),
            "the cluster key is in {origin}'s log"
        );
        for secret in [SWIFT_KEY, S3_SECRET_KEY] {
            let leak = logged.lines().find(|line| line.contains(secret));
            assert!(
                leak.is_none(),
                "a storage secret in {origin}'s log: {leak:?}"
            );
        }
    }
}
