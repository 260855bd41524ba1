//! Distributed mode end to end, as real processes: nats-server, s3s-fs,
//! two ingest, two recorder and two packager `dvr run --nats` processes
//! sharing one config file, and an ffmpeg source over UDP on loopback.
//!
//! What must hold (issue: distributed mode): both packagers give the same
//! bytes for the same URL, for every HLS and MPEG-TS form of the URL
//! surface (issue 6: file, stream, shift and rewind modes, their mono-,
//! video-, videoN- and tracks- spellings, a `timeshift_abs` redirect
//! followed on the other packager, downloads, paced streams and
//! `recording_status.json`); `kill -9` of the recorder owning the stream in
//! the middle of a copy interval loses nothing and duplicates nothing in
//! the archive; `kill -9` of the ingest owner is taken over within 10 s
//! with one gap on the tape no longer than the takeover; a nats-server
//! restart loses no segment; a stream added and removed through the KV
//! bucket starts and stops without a restart.
//!
//! The live log on JetStream is the judge of what ingest published: the
//! test reads it (and the archive in the bucket) itself.

#[path = "../services/dvr/tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dvr_archive::store::ArchiveStore;
use dvr_bus::{Kv, LiveLog, NatsBus, NatsConfig};
use dvr_common::StreamName;
use dvr_testkit::nats::NatsServer;
use dvr_testkit::s3::{S3sFs, S3_ACCESS_KEY, S3_SECRET_KEY};
use support::{
    body_of, dvr_bin, free_tcp_port, free_udp_port, get, metric_sample, start_source, wait_for,
    Procs,
};

/// Generous bounds for things that happen in a few seconds.
const PATIENCE: Duration = Duration::from_secs(60);

/// One `dvr run --nats` process.
struct Service {
    name: String,
    port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl Service {
    fn start(dir: &Path, name: &str, services: &str, config: &Path, nats: &str) -> Service {
        let port = free_tcp_port();
        let log = dir.join(format!("{name}.log"));
        let data = dir.join(name);
        let child = Command::new(dvr_bin())
            .args(["run", "--config"])
            .arg(config)
            .arg("--data-dir")
            .arg(&data)
            .args(["--nats", nats, "--services", services, "--node-id", name])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("start dvr run");
        let service = Service {
            name: name.to_owned(),
            port,
            child: Some(child),
            log,
        };
        wait_for(&format!("{name} ready"), PATIENCE, || {
            get(port, "/readyz").0 == 200
        });
        service
    }

    /// The streams this process owns in `role`, from its `/status`.
    fn owns(&self, role: &str) -> Vec<String> {
        let (status, body) = get(self.port, "/status");
        if status != 200 {
            return Vec::new();
        }
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        v["owns"][role]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One sample of its `/metrics` (0 when absent).
    fn metric(&self, series: &str) -> f64 {
        metric_sample(self.port, series).unwrap_or(0.0)
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn sigterm(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            Command::new("kill").args(["-TERM", &pid]).status().unwrap();
            let start = Instant::now();
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    assert!(
                        status.success(),
                        "{} exited with {status}: {}",
                        self.name,
                        self.log_text()
                    );
                    return;
                }
                assert!(
                    start.elapsed() < PATIENCE,
                    "{} did not stop on SIGTERM",
                    self.name
                );
                pause(Duration::from_millis(100));
            }
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill9();
    }
}

// Polling real processes from a plain test thread: no executor to block.
#[allow(clippy::disallowed_methods)]
fn pause(d: Duration) {
    std::thread::sleep(d);
}

fn write_config(dir: &Path, s3: &S3sFs, udp: u16) -> PathBuf {
    let config = dir.join("dvr.yaml");
    let yaml = format!(
        "version: 1\nhttp: {{ listen: \"127.0.0.1:0\" }}\nstorage:\n  \
         s3: {{ endpoint: \"{}\", region: us-east-1, access_key_id: {S3_ACCESS_KEY}, \
         load_default_credentials: false }}\n\
         streams:\n  ch1:\n    inputs: [ \"udp://127.0.0.1:{udp}\" ]\n    \
         dvr: {{ root: \"s3://archive/tv\", depth: 1d, segment_duration: 2s, copy_interval: 1m }}\n",
        s3.endpoint()
    );
    std::fs::write(&config, yaml).unwrap();
    config
}

/// Which of `services` owns `stream` in `role`, waiting until exactly one
/// does.
fn owner<'a>(services: &'a [&'a Service], role: &str, stream: &str) -> &'a Service {
    let mut found = None;
    wait_for(&format!("one {role} owner of {stream}"), PATIENCE, || {
        let owners: Vec<&Service> = services
            .iter()
            .copied()
            .filter(|s| s.owns(role).iter().any(|o| o == stream))
            .collect();
        found = (owners.len() == 1).then(|| owners[0]);
        found.is_some()
    });
    found.unwrap()
}

/// Every seq of the stream's live log on JetStream, with its times.
async fn published(nats: &str, stream: &StreamName) -> BTreeMap<u64, (i64, i64)> {
    let bus = NatsBus::connect(NatsConfig::new(nats)).await.unwrap();
    let log = bus.live_log(stream).await.unwrap();
    log.segments_after(None)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.seq, (m.utc_start.0, m.utc_end().0)))
        .collect()
}

/// Every archived seq with how many chunks hold it.
/// The seqs of `these` that `other` lacks.
fn absent_from<A, B>(these: &BTreeMap<u64, A>, other: &BTreeMap<u64, B>) -> Vec<u64> {
    these
        .keys()
        .filter(|s| !other.contains_key(s))
        .copied()
        .collect()
}

async fn archived(s3: &S3sFs, stream: &StreamName) -> BTreeMap<u64, usize> {
    let uri: dvr_storage::StorageUri = "s3://archive/tv".parse().unwrap();
    let storage = dvr_storage::resolve(&uri, &s3.storage_config()).unwrap();
    let store = ArchiveStore::new(storage);
    store.load(stream).await.unwrap();
    let mut seqs = BTreeMap::new();
    for chunk in store.chunks(stream) {
        let index = store.index(&chunk.key).await.unwrap();
        for record in &index.records {
            *seqs.entry(record.seq).or_insert(0) += 1;
        }
    }
    seqs
}

/// Whether a playlist is served and lists a segment.
fn serves(port: u16, path: &str) -> bool {
    let (status, body) = get(port, path);
    status == 200 && String::from_utf8_lossy(&body).contains(".ts")
}

/// The longest hole between consecutive segments, in ms.
fn longest_gap(segments: &BTreeMap<u64, (i64, i64)>) -> i64 {
    segments
        .values()
        .zip(segments.values().skip(1))
        .map(|(a, b)| b.0 - a.1)
        .max()
        .unwrap_or(0)
}

/// The first `n` bytes of an endless answer (a paced MPEG-TS), or the
/// whole of a shorter one, after a 200.
fn first_bytes(port: u16, path: &str, n: usize) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    let mut body_at = None;
    while body_at.is_none_or(|at| raw.len() < at + n) {
        let got = stream.read(&mut buf).unwrap_or(0);
        if got == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..got]);
        body_at = body_at.or_else(|| raw.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4));
    }
    let at = body_at.unwrap_or_else(|| panic!("{path}: no response head"));
    let head = String::from_utf8_lossy(&raw[..at]);
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{path}: {head}"
    );
    raw.truncate(at + n);
    raw.split_off(at)
}

/// `fetch` on both packagers, at the same moment, answers the same: at once
/// for what the tape alone decides, or, for forms that follow the wall
/// clock (a new segment between the two requests moves the answer), in one
/// of a few tries.
fn same_on_both(what: &str, fetch: impl Fn(u16) -> Vec<u8> + Sync, ports: [u16; 2]) -> Vec<u8> {
    let mut last = (Vec::new(), Vec::new());
    for _ in 0..5 {
        // Together: a live stream that waits for its next segment would
        // otherwise start the second request a segment later.
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| fetch(ports[0]));
            let b = fetch(ports[1]);
            (a.join().unwrap(), b)
        });
        if a == b && !a.is_empty() {
            return a;
        }
        last = (a, b);
        pause(Duration::from_millis(300));
    }
    let (a, b) = last;
    let differs = a.iter().zip(&b).position(|(x, y)| x != y);
    let shown = |body: &[u8]| match body.first() {
        Some(b'#' | b'{' | b'[') => {
            String::from_utf8_lossy(&body[..body.len().min(2000)]).into_owned()
        }
        _ => format!("{} bytes", body.len()),
    };
    panic!(
        "{what}: the packagers answered differently (first at byte {differs:?}):\n{}\n---\n{}",
        shown(&a),
        shown(&b)
    );
}

/// Every HLS and MPEG-TS form of the URL surface, asked of both packagers
/// with `from` a second recorded at least 30 s before now: the same bytes
/// from each (issue 6: "on any packager replica").
fn packagers_agree(a: u16, b: u16, from: i64) {
    let started = Instant::now();
    let ports = [a, b];
    let now = from + 30;
    let mut checked = 0;
    // Playlists: file mode, start-over, stream mode, rewind, shift mode,
    // with the mono-/video-/videoN-/tracks- spellings; a ?token= follows.
    let playlists = [
        format!("/ch1/archive-{from}-30.m3u8"),
        format!("/ch1/index-{from}-30.m3u8?token=abc"),
        format!("/ch1/mono-{from}-30.m3u8"),
        format!("/ch1/video-{from}-30.m3u8"),
        format!("/ch1/video1-{from}-30.m3u8"),
        format!("/ch1/tracks-1/index-{from}-30.m3u8"),
        format!("/ch1/archive-{from}-30.m3u8?event=true"),
        format!("/ch1/index-{from}-now.m3u8"),
        format!("/ch1/index-{from}-3600.m3u8?event=true"),
        "/ch1/index.m3u8".to_owned(),
        "/ch1/mono.m3u8".to_owned(),
        "/ch1/timeshift_rel-20.m3u8".to_owned(),
        "/ch1/mono-timeshift_rel-20.m3u8".to_owned(),
        "/ch1/video-timeshift_rel-20.m3u8".to_owned(),
        "/ch1/timeshift_rel_mono-20.m3u8".to_owned(),
        "/ch1/rewind-60.m3u8".to_owned(),
        "/ch1/mono-rewind-60.m3u8".to_owned(),
        format!("/ch1/index.m3u8?utc={from}&lutc={now}"),
        format!("/ch1/mono.m3u8?utc={from}&lutc={now}&token=abc"),
    ];
    let mut segments = Vec::new();
    for path in &playlists {
        let body = same_on_both(path, |port| body_of(port, path), ports);
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with("#EXTM3U"), "{path}: {text}");
        let dir = &path[..path.rfind('/').unwrap() + 1];
        segments.extend(
            text.lines()
                .filter(|l| l.contains(".ts"))
                .take(2)
                .map(|l| format!("{dir}{l}")),
        );
        checked += 1;
    }
    // timeshift_abs: the first request redirects to a URL carrying the
    // viewer's start; that URL plays the same timeline on the other one.
    for path in [
        format!("/ch1/timeshift_abs-{from}.m3u8"),
        format!("/ch1/mono-timeshift_abs-{from}.m3u8?token=abc"),
        format!("/ch1/timeshift_abs_video-{from}.m3u8"),
    ] {
        for (first, other) in [(a, b), (b, a)] {
            let (status, head, _) = support::get_with_head(first, &path);
            assert_eq!(status, 302, "{path}: {head}");
            let location = support::header(&head, "location")
                .unwrap_or_else(|| panic!("{path}: no Location in {head}"))
                .to_owned();
            assert!(location.contains("started="), "{location}");
            let body = same_on_both(&location, |port| body_of(port, &location), [first, other]);
            assert!(body.starts_with(b"#EXTM3U"), "{location}");
            checked += 1;
        }
    }
    // Every segment those playlists name, cut by track or not.
    for path in &segments {
        same_on_both(path, |port| body_of(port, path), ports);
        checked += 1;
    }
    // MPEG-TS: downloads whole, paced streams by their first 200 kB.
    for path in [
        format!("/ch1/archive-{from}-20.ts"),
        format!("/ch1/archive/{from}/20/mpegts"),
        format!("/ch1/tracks-2/archive-{from}-20.ts?token=abc"),
    ] {
        let body = same_on_both(&path, |port| body_of(port, &path), ports);
        assert!(
            body.len() > 100_000 && body.len() % 188 == 0,
            "{path}: {} bytes",
            body.len()
        );
        checked += 1;
    }
    for path in [
        format!("/ch1/timeshift_abs-{from}.ts"),
        format!("/ch1/timeshift_abs/{from}"),
        format!("/ch1/mono-timeshift_abs-{from}.ts"),
        format!("/ch1/video1-timeshift_abs-{from}.ts"),
        format!("/ch1/tracks-1/timeshift_abs-{from}.ts"),
        format!("/ch1/mpegts?utc={from}&lutc={now}"),
        "/ch1/timeshift_rel/20".to_owned(),
        "/ch1/mpegts".to_owned(),
    ] {
        let body = same_on_both(&path, |port| first_bytes(port, &path, 200_000), ports);
        assert_eq!(body.len(), 200_000, "{path}");
        checked += 1;
    }
    // recording_status.json, brief and detailed.
    for path in [
        "/ch1/recording_status.json".to_owned(),
        format!("/ch1/recording_status.json?from={from}&to={now}&request=ranges,hour_bitmap,locks"),
    ] {
        let body = same_on_both(&path, |port| body_of(port, &path), ports);
        assert!(body.starts_with(b"{") || body.starts_with(b"["), "{path}");
        checked += 1;
    }
    eprintln!(
        "{checked} answers identical on both packagers, in {:?}",
        started.elapsed()
    );
}

#[test]
fn replicas_take_over_and_packagers_agree() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let nats = rt.block_on(NatsServer::start());
    let s3 = rt.block_on(S3sFs::start(&["archive"]));
    let udp = free_udp_port();
    let config = write_config(dir.path(), &s3, udp);
    let url = nats.url();
    let stream = StreamName::new("ch1").unwrap();
    let mut source = Procs(vec![start_source(udp, "testsrc", 240)]);

    let mut ingest = [
        Service::start(dir.path(), "ingest-a", "ingest", &config, &url),
        Service::start(dir.path(), "ingest-b", "ingest", &config, &url),
    ];
    let mut recorder = [
        Service::start(dir.path(), "recorder-a", "recorder", &config, &url),
        Service::start(dir.path(), "recorder-b", "recorder", &config, &url),
    ];
    let packager = [
        Service::start(dir.path(), "packager-a", "packager", &config, &url),
        Service::start(dir.path(), "packager-b", "packager", &config, &url),
    ];
    wait_for(
        "segments in both packagers' live playlists",
        PATIENCE,
        || packager.iter().all(|p| serves(p.port, "/ch1/index.m3u8")),
    );

    // The recorder owner dies in the middle of its copy interval.
    pause(Duration::from_secs(10));
    let recorder_owner = owner(&[&recorder[0], &recorder[1]], "recorder", "ch1")
        .name
        .clone();
    let r = recorder
        .iter()
        .position(|s| s.name == recorder_owner)
        .unwrap();
    recorder[r].kill9();
    let other_recorder = &recorder[1 - r];
    wait_for("the other recorder takes the stream over", PATIENCE, || {
        other_recorder.owns("recorder") == ["ch1"]
    });
    // The takeover is a lease move the survivor reports, beside how late
    // its live-log follower sees descriptors.
    let acquired = "dvr_bus_lease_moves_total{role=\"recorder\",change=\"acquired\"}";
    assert!(other_recorder.metric(acquired) >= 1.0, "{acquired}");
    assert_eq!(
        other_recorder.metric("dvr_bus_leases_held{role=\"recorder\"}"),
        1.0
    );
    assert!(
        other_recorder.metric("dvr_bus_consume_delay_seconds_count{consumer=\"live_log\"}") >= 1.0
    );
    // On NATS the recorder says how long the live log keeps a segment
    // (1 h + the default 4 h outage budget).
    assert_eq!(
        other_recorder.metric("dvr_recorder_hot_tier_seconds{stream=\"ch1\"}"),
        5.0 * 3600.0
    );

    // The ingest owner dies; the other must take over within 10 s.
    let ingest_owner = owner(&[&ingest[0], &ingest[1]], "ingest", "ch1")
        .name
        .clone();
    let i = ingest.iter().position(|s| s.name == ingest_owner).unwrap();
    ingest[i].kill9();
    let killed = Instant::now();
    let other_ingest = &ingest[1 - i];
    wait_for("the other ingest takes the stream over", PATIENCE, || {
        other_ingest.owns("ingest") == ["ch1"]
    });
    let takeover = killed.elapsed();
    assert!(
        takeover <= Duration::from_secs(10),
        "ingest takeover took {takeover:?}"
    );

    // Recording goes on past the end of the first copy interval, so the
    // surviving recorder writes chunks of its own.
    let start_seqs = rt.block_on(published(&url, &stream));
    let first_start = start_seqs.values().next().unwrap().0;
    wait_for(
        "a chunk written after the takeover",
        Duration::from_secs(150),
        || {
            rt.block_on(archived(&s3, &stream)).len() > 10
                && rt
                    .block_on(published(&url, &stream))
                    .values()
                    .next_back()
                    .unwrap()
                    .1
                    > first_start + 75_000
        },
    );

    // Both packagers: the same bytes for every form of the URL surface.
    packagers_agree(packager[0].port, packager[1].port, first_start / 1000 + 4);

    // Stop: the ingest first, then the recorder flushes what it holds.
    for s in &mut ingest {
        s.sigterm();
    }
    source.0[0].kill().unwrap();
    for s in &mut recorder {
        s.sigterm();
    }
    let published = rt.block_on(published(&url, &stream));
    let archived = rt.block_on(archived(&s3, &stream));
    let twice: Vec<_> = archived.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "segments archived more than once: {twice:?}"
    );
    let missing: Vec<u64> = absent_from(&published, &archived);
    assert!(
        missing.is_empty(),
        "published but not archived: {missing:?}"
    );
    // The gap: the dead owner's unfinished segment (up to 2 s), the
    // takeover, and the wait for the source's next keyframe (1 s GOP).
    let gap = longest_gap(&published);
    eprintln!(
        "ingest takeover {takeover:?}, longest gap {gap} ms, {} segments published, {} archived",
        published.len(),
        archived.len()
    );
    assert!(
        gap <= takeover.as_millis() as i64 + 3_000,
        "the tape's longest gap is {gap} ms, the takeover took {takeover:?}"
    );
    drop(packager);
    drop(nats);
}

#[test]
fn streams_follow_the_bucket_and_survive_a_nats_restart() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut nats = rt.block_on(NatsServer::start());
    let s3 = rt.block_on(S3sFs::start(&["archive"]));
    let udp = free_udp_port();
    let config = write_config(dir.path(), &s3, udp);
    let url = nats.url();
    let stream = StreamName::new("ch1").unwrap();
    let mut source = Procs(vec![start_source(udp, "testsrc", 240)]);
    let mut all = Service::start(
        dir.path(),
        "node-1",
        "ingest,recorder,packager",
        &config,
        &url,
    );
    wait_for("segments in the live playlist", PATIENCE, || {
        serves(all.port, "/ch1/index.m3u8")
    });

    // A stream added through the bucket plays without a restart; removed,
    // it is gone.
    let udp2 = free_udp_port();
    let source2 = Procs(vec![start_source(udp2, "smptebars", 120)]);
    let kv: Arc<dyn Kv> = rt.block_on(async {
        let bus = NatsBus::connect(NatsConfig::new(&url)).await.unwrap();
        Arc::new(bus.kv(dvr_proto::STREAMS_KV_BUCKET).await.unwrap()) as Arc<dyn Kv>
    });
    let ch2 = format!("{{\"inputs\": [\"udp://127.0.0.1:{udp2}\"]}}");
    rt.block_on(kv.put("ch2", Bytes::from(ch2))).unwrap();
    wait_for("ch2 playing", PATIENCE, || {
        serves(all.port, "/ch2/index.m3u8")
    });
    rt.block_on(kv.delete("ch2")).unwrap();
    wait_for("ch2 gone", PATIENCE, || {
        get(all.port, "/ch2/index.m3u8").0 == 404
    });
    drop(source2);

    // The server restarts on the same store: nothing recorded is lost and
    // recording goes on.
    let before = rt.block_on(published(&url, &stream));
    rt.block_on(nats.restart());
    let last_before = *before.keys().next_back().unwrap();
    wait_for("segments after the restart", PATIENCE, || {
        rt.block_on(published(&url, &stream))
            .keys()
            .next_back()
            .is_some_and(|s| *s > last_before + 3)
    });
    all.sigterm();
    source.0[0].kill().unwrap();
    let after = rt.block_on(published(&url, &stream));
    let lost: Vec<u64> = absent_from(&before, &after);
    assert!(lost.is_empty(), "segments lost in the restart: {lost:?}");
    let archived = rt.block_on(archived(&s3, &stream));
    let missing: Vec<u64> = absent_from(&after, &archived);
    assert!(
        missing.is_empty(),
        "published but not archived: {missing:?}"
    );
    assert!(
        all.log_text().contains("ingest started"),
        "{}",
        all.log_text()
    );
}
