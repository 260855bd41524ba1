//! Distributed mode end to end, as real processes: nats-server, s3s-fs,
//! two ingest, two recorder and two packager `dvr run --nats` processes
//! sharing one config file, and an ffmpeg source over UDP on loopback.
//!
//! What must hold (issue: distributed mode): both packagers give the same
//! bytes for the same URL; `kill -9` of the recorder owning the stream in
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
use dvr_bus::testserver::NatsServer;
use dvr_bus::{Kv, LiveLog, NatsBus, NatsConfig};
use dvr_common::StreamName;
use dvr_storage::testservers::{S3sFs, S3_ACCESS_KEY, S3_SECRET_KEY};
use support::{
    dvr_bin, free_tcp_port, free_udp_port, get, metric_sample, start_source, text, wait_for, Procs,
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

    // Both packagers: the same bytes for the same archive range.
    let from = first_start / 1000 + 4;
    let range = format!("/ch1/archive-{from}-30.m3u8");
    let (a, b) = (
        text(packager[0].port, &range),
        text(packager[1].port, &range),
    );
    assert_eq!(a, b, "{range} differs between packagers");
    let segment = a
        .lines()
        .find(|l| l.ends_with(".ts") || l.contains(".ts?"))
        .unwrap_or_else(|| panic!("no segment in {range}:\n{a}"));
    let path = if segment.starts_with('/') {
        segment.to_owned()
    } else {
        format!("/ch1/{segment}")
    };
    let (sa, ba) = get(packager[0].port, &path);
    let (sb, bb) = get(packager[1].port, &path);
    assert_eq!((sa, sb), (200, 200), "{path}");
    assert!(
        ba == bb && !ba.is_empty(),
        "{path}: the packagers served different bytes"
    );

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
    let missing: Vec<u64> = published
        .keys()
        .filter(|s| !archived.contains_key(s))
        .copied()
        .collect();
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
    let lost: Vec<u64> = before
        .keys()
        .filter(|s| !after.contains_key(s))
        .copied()
        .collect();
    assert!(lost.is_empty(), "segments lost in the restart: {lost:?}");
    let archived = rt.block_on(archived(&s3, &stream));
    let missing: Vec<u64> = after
        .keys()
        .filter(|s| !archived.contains_key(s))
        .copied()
        .collect();
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
