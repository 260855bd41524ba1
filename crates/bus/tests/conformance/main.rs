//! The bus conformance suite on both implementations, and what only NATS
//! can do wrong: losing an acknowledged append across a server restart.
//! The suites live beside this file (`suite.rs`, `request_suite.rs`): only these tests run
//! them, on the implementations they set up.

mod request_suite;
mod suite;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use dvr_testkit::nats::NatsServer;
use std::time::Duration;
use suite::{segment, Harness};

use dvr_bus::{
    Events, Kv, LiveLog, LiveLogConfig, LocalEvents, MemoryKv, NatsBus, NatsConfig, SegmentLog,
    SegmentLogOptions,
};
use dvr_common::StreamName;

/// The embedded bus: one `SegmentLog` per stream (one file per segment, so
/// trim is exact) and one `MemoryKv` per bucket, each shared by all handles.
struct Embedded {
    dir: tempfile::TempDir,
    logs: Mutex<HashMap<String, Arc<SegmentLog>>>,
    kvs: Mutex<HashMap<String, Arc<MemoryKv>>>,
    events: LocalEvents,
}

#[async_trait]
impl Harness for Embedded {
    fn name(&self) -> &str {
        "embedded"
    }

    async fn live_log(&self, stream: &str) -> Arc<dyn LiveLog> {
        let mut logs = self.logs.lock().unwrap();
        let log = logs.entry(stream.to_owned()).or_insert_with(|| {
            let options = SegmentLogOptions {
                max_file_bytes: 1,
                ..SegmentLogOptions::default()
            };
            Arc::new(SegmentLog::open(self.dir.path().join(stream), options).unwrap())
        });
        Arc::clone(log) as Arc<dyn LiveLog>
    }

    async fn kv(&self, bucket: &str) -> Arc<dyn Kv> {
        let mut kvs = self.kvs.lock().unwrap();
        let kv = kvs
            .entry(bucket.to_owned())
            .or_insert_with(|| Arc::new(MemoryKv::new(bucket)));
        Arc::clone(kv) as Arc<dyn Kv>
    }

    async fn events(&self) -> Arc<dyn Events> {
        Arc::new(self.events.clone())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_passes_the_conformance_suite() {
    let h = Embedded {
        dir: tempfile::tempdir().unwrap(),
        logs: Mutex::default(),
        kvs: Mutex::default(),
        events: LocalEvents::default(),
    };
    suite::run_all(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_passes_the_request_reply_suite() {
    let hub = Arc::new(dvr_bus::MemoryRequests::new());
    request_suite::run_all("embedded", hub.clone(), hub).await;
}

/// The asker and the servers on two connections, as packager and auth are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_passes_the_request_reply_suite() {
    let server = NatsServer::start().await;
    let connect = || async {
        NatsBus::connect(NatsConfig::new(&server.url()))
            .await
            .unwrap()
            .requests()
    };
    let (asker, servers) = (connect().await, connect().await);
    request_suite::run_all("nats", Arc::new(asker), Arc::new(servers)).await;
}

/// Every handle is a new `NatsLiveLog` or `NatsKv` on one connection.
struct Nats {
    bus: NatsBus,
}

#[async_trait]
impl Harness for Nats {
    fn name(&self) -> &str {
        "nats"
    }

    async fn live_log(&self, stream: &str) -> Arc<dyn LiveLog> {
        let stream = StreamName::new(stream).unwrap();
        Arc::new(self.bus.live_log(&stream).await.unwrap())
    }

    async fn kv(&self, bucket: &str) -> Arc<dyn Kv> {
        Arc::new(self.bus.kv(bucket).await.unwrap())
    }

    async fn events(&self) -> Arc<dyn Events> {
        Arc::new(self.bus.events())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_passes_the_conformance_suite() {
    let server = NatsServer::start().await;
    let bus = NatsBus::connect(NatsConfig::new(&server.url()))
        .await
        .unwrap();
    suite::run_all(&Nats { bus }).await;
}

/// Appends go on while nats-server is killed (`kill -9`) and restarted on
/// the same store: every append that returned `Ok` is there afterwards,
/// once and with its bytes, seen by a fresh connection and by the writer's
/// own handle; an append begun while the server is down completes when it
/// is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_append_survives_server_restart() {
    let mut server = NatsServer::start().await;
    let bus = NatsBus::connect(NatsConfig::new(&server.url()))
        .await
        .unwrap();
    let stream = StreamName::new("restart.test").unwrap();
    let log = Arc::new(bus.live_log(&stream).await.unwrap());
    let seg = |seq| segment(seq, 300_000);

    // A writer that keeps appending through a restart, recording what
    // returned Ok; a failed append is retried with the same seq.
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0usize);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let writer = {
        let log = Arc::clone(&log);
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut seq = 0;
            while !*stop.borrow() {
                if log.append(&seg(seq)).await.is_ok() {
                    acked.push(seq);
                    seq += 1;
                    progress_tx.send_replace(acked.len());
                }
            }
            acked
        })
    };
    progress.wait_for(|&n| n >= 5).await.unwrap();
    server.kill();
    server.restart().await;
    let before = *progress.borrow();
    progress.wait_for(|&n| n >= before + 5).await.unwrap();
    stop_tx.send_replace(true);
    let mut acked = writer.await.unwrap();

    // An append started while the server is down.
    server.kill();
    let next = acked.last().unwrap() + 1;
    let pending = {
        let log = Arc::clone(&log);
        tokio::spawn(async move { log.append(&seg(next)).await })
    };
    server.restart().await;
    pending.await.unwrap().expect("append across a restart");
    acked.push(next);

    let fresh = NatsBus::connect(NatsConfig::new(&server.url()))
        .await
        .unwrap();
    let reader = fresh.live_log(&stream).await.unwrap();
    holds_exactly(&reader, &acked, |seq| seg(seq).payload).await;
    let mut sub = log.subscribe();
    let newest = sub
        .wait_for(|m| m.is_some_and(|m| m.seq == next))
        .await
        .unwrap()
        .map(|m| m.seq);
    assert_eq!(newest, Some(next), "the writer's own handle follows");
}

/// The live log's stream and object store are file-backed, with the
/// configured replicas and a max age of copy interval plus margin; a
/// changed config is applied to existing ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_retention_follows_the_config() {
    let server = NatsServer::start().await;
    let stream = StreamName::new("retention").unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    for (copy_s, margin_s) in [(3600, 1800), (600, 300)] {
        let mut config = NatsConfig::new(&server.url());
        config.live = LiveLogConfig::for_copy_interval(
            Duration::from_secs(copy_s),
            Duration::from_secs(margin_s),
            1,
        );
        let bus = NatsBus::connect(config).await.unwrap();
        bus.live_log(&stream).await.unwrap();
        for name in [dvr_proto::LIVE_STREAM, "OBJ_dvr_v1_segments"] {
            let mut s = js.get_stream(name).await.unwrap();
            let info = s.info().await.unwrap();
            assert_eq!(
                info.config.max_age,
                Duration::from_secs(copy_s + margin_s),
                "{name}"
            );
            assert_eq!(info.config.num_replicas, 1, "{name}");
            assert_eq!(
                info.config.storage,
                async_nats::jetstream::stream::StorageType::File,
                "{name}"
            );
        }
    }
}

/// Three nats-servers, every live-log message kept on all three: killing
/// the server that leads the live log while segments are being appended
/// loses none and stores none twice. The appends in flight wait through
/// the leader election (each retried under its `Nats-Msg-Id`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_survive_losing_the_leading_server_of_three() {
    use dvr_proto::LIVE_STREAM;
    use dvr_testkit::nats::NatsCluster;

    let mut cluster = NatsCluster::start(3).await;
    let mut config = NatsConfig::new(&cluster.url());
    config.live = LiveLogConfig {
        replicas: 3,
        max_age: Duration::from_secs(3600),
    };
    config.kv_replicas = 3;
    let bus = NatsBus::connect(config).await.unwrap();
    let stream = StreamName::new("ch-cluster").unwrap();
    // The cluster elects its JetStream meta leader after the servers are
    // up: creating the replicated stream waits for it.
    let mut tries = 0;
    let log = loop {
        match bus.live_log(&stream).await {
            Ok(log) => break log,
            Err(e) => {
                tries += 1;
                assert!(tries < 60, "no replicated live log after 30 s: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let leader = bus
        .stream_leader(LIVE_STREAM)
        .await
        .unwrap()
        .expect("a replicated stream has a leader");
    let leader: usize = leader.trim_start_matches('n').parse().unwrap();

    const SEGMENTS: u64 = 120;
    let log = Arc::new(log);
    let appender = {
        let log = Arc::clone(&log);
        tokio::spawn(async move {
            for seq in 0..SEGMENTS {
                log.append(&segment(seq, 188 * 20))
                    .await
                    .map_err(|e| (seq, e))?;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Ok::<(), (u64, dvr_bus::BusError)>(())
        })
    };
    // A third of the way in, the leader dies.
    while log.newest().await.unwrap().map_or(0, |m| m.seq) < SEGMENTS / 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster.kill(leader);
    appender
        .await
        .unwrap()
        .unwrap_or_else(|(seq, e)| panic!("append of seq {seq} failed: {e}"));
    let new_leader = bus.stream_leader(LIVE_STREAM).await.unwrap();
    assert_ne!(
        new_leader,
        Some(format!("n{leader}")),
        "a new leader was elected"
    );

    let all: Vec<u64> = (0..SEGMENTS).collect();
    holds_exactly(&*log, &all, |seq| segment(seq, 188 * 20).payload).await;
}

/// `log` lists exactly `seqs`, each once and in order, and every one's
/// bytes are `payload(seq)`.
async fn holds_exactly(log: &dyn LiveLog, seqs: &[u64], payload: impl Fn(u64) -> bytes::Bytes) {
    let listed: Vec<u64> = log
        .segments_after(None)
        .await
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(listed, seqs, "every acknowledged append, once, in order");
    for &seq in seqs {
        let got = log.get(seq).await.unwrap().expect("every segment's bytes");
        assert!(got.payload == payload(seq), "seq {seq} bytes");
    }
}
