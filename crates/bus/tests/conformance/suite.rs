//! The conformance suite every bus implementation must pass.
//!
//! A [`Harness`] hands out live logs and KV buckets by name (asking twice
//! for one name gives two handles on the same log, where the
//! implementation has such a thing); each function below checks one part
//! of the [`LiveLog`] or [`Kv`] contract under its own names and panics,
//! naming the implementation, when it does not hold. `main.rs`
//! runs it on the embedded bus and on a real nats-server.

// Test code: building the failure context eagerly costs nothing that matters.
#![allow(clippy::expect_fun_call)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use dvr_common::{Clock, StreamName, SystemClock, UtcMs};
use dvr_proto::{Event, EventKind, LeaseRecord, Versioned, PROTO_VERSION};

use dvr_bus::exclusive::Exclusive;
use dvr_bus::ownership::{rendezvous, Ownership, OwnershipConfig};
use dvr_media::Segment;
use dvr_testkit::fixtures;
use futures::StreamExt;

use dvr_bus::error::BusError;
use dvr_bus::events::Events;
use dvr_bus::kv::{Kv, KvEntry, KvOp, KvWatch};
use dvr_bus::live_log::LiveLog;

/// Where the suite gets its logs and buckets.
#[async_trait]
pub trait Harness: Send + Sync {
    /// The implementation's name, for messages.
    fn name(&self) -> &str;
    /// A handle on the live log of `stream`.
    async fn live_log(&self, stream: &str) -> Arc<dyn LiveLog>;
    /// A handle on the KV bucket `bucket`.
    async fn kv(&self, bucket: &str) -> Arc<dyn Kv>;
    /// A handle on the events (each call a new one on the same bus).
    async fn events(&self) -> Arc<dyn Events>;
}

/// A hang guard for waits on other tasks: generous, never a measurement.
const PATIENCE: Duration = Duration::from_secs(30);

/// Runs every test of the suite in turn.
pub async fn run_all(h: &dyn Harness) {
    large_segment_round_trip(h).await;
    an_hours_segments_read_back_in_a_burst(h).await;
    appends_keep_order(h).await;
    get_by_seq_and_time(h).await;
    subscribe_sees_appends(h).await;
    trim_drops_only_what_was_copied(h).await;
    kv_revisions_and_conditions(h).await;
    kv_watch_sees_latest_then_changes(h).await;
    events_reach_subscribers(h).await;
    ownership_spreads_takes_over_and_hands_over(h).await;
    kv_list_is_a_snapshot(h).await;
    exclusive_work_is_one_at_a_time(h).await;
}

/// A segment of `len` bytes, 2 s long, starting `seq * 2` s after a fixed
/// epoch; its bytes depend on `seq` so mix-ups show.
pub fn segment(seq: u64, len: usize) -> Segment {
    fixtures::segment(seq)
        .on_tape_from(1_700_000_000_000)
        .discontinuity(seq == 0)
        .program_number(1)
        .patterned(len)
        .build()
}

async fn append_all(h: &dyn Harness, log: &dyn LiveLog, seqs: impl IntoIterator<Item = u64>) {
    for seq in seqs {
        log.append(&segment(seq, 188 * 10))
            .await
            .expect(&format!("[{}] append {seq}", h.name()));
    }
}

async fn seqs_after(log: &dyn LiveLog, after: Option<u64>) -> Vec<u64> {
    let metas = log.segments_after(after).await.expect("segments_after");
    metas.iter().map(|m| m.seq).collect()
}

/// A 16 MB segment (sixteen times NATS' default max payload) comes back
/// byte for byte, with its metadata and codecs.
pub async fn large_segment_round_trip(h: &dyn Harness) {
    let log = h.live_log("suite-large").await;
    let big = segment(1, 16 * 1024 * 1024);
    log.append(&big)
        .await
        .expect(&format!("[{}] append 16 MB", h.name()));
    let got = log
        .get(1)
        .await
        .expect(&format!("[{}] get 16 MB", h.name()))
        .expect(&format!("[{}] 16 MB segment missing", h.name()));
    assert_eq!(got.meta(), big.meta(), "[{}] metadata", h.name());
    assert_eq!(got.codecs, big.codecs, "[{}] codecs", h.name());
    assert!(
        got.payload == big.payload,
        "[{}] 16 MB payload differs",
        h.name()
    );
}

/// An hour of 2 s segments read back one after the other, as a recorder
/// copying a chunk reads them: every one comes back. (On NATS each read
/// used to leave an ordered consumer behind for seconds, and past the
/// server's 1,000 consumers per stream the client panicked.)
pub async fn an_hours_segments_read_back_in_a_burst(h: &dyn Harness) {
    let log = h.live_log("suite-hour").await;
    let hour = 1800;
    append_all(h, log.as_ref(), 0..hour).await;
    for seq in 0..hour {
        let got = log
            .get(seq)
            .await
            .expect(&format!("[{}] get {seq}", h.name()))
            .expect(&format!("[{}] segment {seq} missing", h.name()));
        assert!(
            got.payload == segment(seq, 188 * 10).payload,
            "[{}] segment {seq} differs",
            h.name()
        );
    }
}

/// Segments list in seq order, gaps in seq allowed; an append whose seq
/// does not grow is refused and changes nothing; another handle sees them.
pub async fn appends_keep_order(h: &dyn Harness) {
    let log = h.live_log("suite-order").await;
    append_all(h, log.as_ref(), [1, 2, 3, 5, 8]).await;
    for stale in [8, 4, 0] {
        let err = log.append(&segment(stale, 188)).await;
        assert!(
            matches!(err, Err(BusError::OutOfOrder { last: 8, .. })),
            "[{}] append of {stale} after 8: {err:?}",
            h.name()
        );
    }
    assert_eq!(
        seqs_after(log.as_ref(), None).await,
        [1, 2, 3, 5, 8],
        "[{}]",
        h.name()
    );
    assert_eq!(
        seqs_after(log.as_ref(), Some(3)).await,
        [5, 8],
        "[{}]",
        h.name()
    );
    assert_eq!(
        seqs_after(log.as_ref(), Some(8)).await,
        [0u64; 0],
        "[{}]",
        h.name()
    );
    let again = h.live_log("suite-order").await;
    assert_eq!(
        seqs_after(again.as_ref(), None).await,
        [1, 2, 3, 5, 8],
        "[{}] second handle",
        h.name()
    );
    assert_eq!(
        again.newest().await.unwrap().map(|m| m.seq),
        Some(8),
        "[{}]",
        h.name()
    );
}

/// `get` by seq, the time-range query and newest/oldest.
pub async fn get_by_seq_and_time(h: &dyn Harness) {
    let log = h.live_log("suite-get").await;
    assert_eq!(
        log.newest().await.unwrap(),
        None,
        "[{}] empty newest",
        h.name()
    );
    assert_eq!(
        log.oldest().await.unwrap(),
        None,
        "[{}] empty oldest",
        h.name()
    );
    append_all(h, log.as_ref(), 10..20).await;
    for seq in [10, 15, 19] {
        let got = log
            .get(seq)
            .await
            .unwrap()
            .expect(&format!("[{}] get {seq}", h.name()));
        let want = segment(seq, 188 * 10);
        assert_eq!(got.meta(), want.meta(), "[{}] get {seq}", h.name());
        assert_eq!(got.payload, want.payload, "[{}] get {seq} bytes", h.name());
    }
    for missing in [0, 9, 20] {
        assert!(
            log.get(missing).await.unwrap().is_none(),
            "[{}] get {missing}",
            h.name()
        );
    }
    assert_eq!(
        log.oldest().await.unwrap().map(|m| m.seq),
        Some(10),
        "[{}]",
        h.name()
    );
    assert_eq!(
        log.newest().await.unwrap().map(|m| m.seq),
        Some(19),
        "[{}]",
        h.name()
    );
    let last: Vec<u64> = log.last(3).await.unwrap().iter().map(|m| m.seq).collect();
    assert_eq!(last, [17, 18, 19], "[{}] last 3, oldest first", h.name());
    assert_eq!(
        log.last(50).await.unwrap().len(),
        10,
        "[{}] last 50",
        h.name()
    );
    let codecs = log.codecs(15).await.unwrap();
    assert_eq!(
        codecs.as_deref(),
        Some(&*segment(15, 0).codecs),
        "[{}] codecs of 15",
        h.name()
    );
    assert!(
        log.codecs(20).await.unwrap().is_none(),
        "[{}] codecs of 20",
        h.name()
    );
    // Segment n covers [t0 + 2n s, t0 + 2n s + 2 s).
    let at = |seq: i64, ms: i64| UtcMs(1_700_000_000_000 + seq * 2000 + ms);
    let between = |from, to| {
        let log = Arc::clone(&log);
        async move {
            let metas = log.segments_between(from, to).await.unwrap();
            metas.iter().map(|m| m.seq).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        between(at(12, 0), at(14, 0)).await,
        [12, 13],
        "[{}]",
        h.name()
    );
    assert_eq!(
        between(at(12, 1999), at(13, 1)).await,
        [12, 13],
        "[{}]",
        h.name()
    );
    assert_eq!(between(at(0, 0), at(11, 0)).await, [10], "[{}]", h.name());
    assert_eq!(
        between(at(19, 500), at(40, 0)).await,
        [19],
        "[{}]",
        h.name()
    );
    assert_eq!(
        between(at(20, 0), at(40, 0)).await,
        [0u64; 0],
        "[{}]",
        h.name()
    );
}

/// A subscriber, on this handle or another, sees each append as the newest.
pub async fn subscribe_sees_appends(h: &dyn Harness) {
    let writer = h.live_log("suite-subscribe").await;
    let reader = h.live_log("suite-subscribe").await;
    let mut own = writer.subscribe();
    let mut other = reader.subscribe();
    for seq in 1..=3 {
        writer.append(&segment(seq, 188)).await.unwrap();
        for (who, rx) in [("own", &mut own), ("other", &mut other)] {
            let seen =
                tokio::time::timeout(PATIENCE, rx.wait_for(|m| m.is_some_and(|m| m.seq >= seq)))
                    .await
                    .expect(&format!("[{}] {who} subscriber never saw {seq}", h.name()))
                    .expect("sender alive")
                    .map(|m| m.seq);
            assert_eq!(seen, Some(seq), "[{}] {who} subscriber", h.name());
        }
    }
    assert_eq!(
        reader.newest().await.unwrap().map(|m| m.seq),
        Some(3),
        "[{}]",
        h.name()
    );
}

/// Trim drops the old segments the recorder has copied, and no other.
pub async fn trim_drops_only_what_was_copied(h: &dyn Harness) {
    let log = h.live_log("suite-trim").await;
    append_all(h, log.as_ref(), 0..10).await;
    let other = h.live_log("suite-trim").await;
    let end_of = |seq: u64| segment(seq, 0).utc_end();
    // Nothing is old enough, or nothing is copied: nothing goes.
    assert_eq!(log.trim(UtcMs(0), 10).await.unwrap(), 0, "[{}]", h.name());
    assert_eq!(log.trim(end_of(9), 0).await.unwrap(), 0, "[{}]", h.name());
    // Old up to 5, copied below 4: 0..4 go.
    let dropped = log.trim(end_of(5), 4).await.unwrap();
    assert_eq!(dropped, 4, "[{}] trimmed", h.name());
    assert_eq!(
        seqs_after(log.as_ref(), None).await,
        [4, 5, 6, 7, 8, 9],
        "[{}]",
        h.name()
    );
    assert_eq!(
        log.oldest().await.unwrap().map(|m| m.seq),
        Some(4),
        "[{}]",
        h.name()
    );
    assert!(
        log.get(3).await.unwrap().is_none(),
        "[{}] get trimmed",
        h.name()
    );
    assert!(
        log.get(4).await.unwrap().is_some(),
        "[{}] get kept",
        h.name()
    );
    // Another handle learns of the trim at the latest when a read misses.
    assert!(
        other.get(3).await.unwrap().is_none(),
        "[{}] other handle",
        h.name()
    );
    assert_eq!(
        other.oldest().await.unwrap().map(|m| m.seq),
        Some(4),
        "[{}] other handle",
        h.name()
    );
    // Appends go on after a trim.
    append_all(h, log.as_ref(), [10]).await;
    assert_eq!(
        log.newest().await.unwrap().map(|m| m.seq),
        Some(10),
        "[{}]",
        h.name()
    );
}

fn conflict(r: &Result<u64, BusError>) -> bool {
    matches!(r, Err(BusError::KvConflict { .. }))
}

/// Revisions grow with every write; create and update are conditional;
/// delete hides a key until it is created again; bad keys are refused.
pub async fn kv_revisions_and_conditions(h: &dyn Harness) {
    let kv = h.kv("suite_rev").await;
    let n = h.name();
    assert_eq!(kv.get("a").await.unwrap(), None, "[{n}] empty");
    let r1 = kv.put("a", Bytes::from_static(b"1")).await.unwrap();
    let got = kv.get("a").await.unwrap().expect("a");
    assert_eq!((got.value.as_ref(), got.revision), (&b"1"[..], r1), "[{n}]");
    let r2 = kv.put("a", Bytes::from_static(b"2")).await.unwrap();
    assert!(r2 > r1, "[{n}] revisions grow: {r1} then {r2}");
    assert!(
        conflict(&kv.create("a", Bytes::new()).await),
        "[{n}] create over a value"
    );
    assert!(
        conflict(&kv.update("a", Bytes::new(), r1).await),
        "[{n}] update at stale revision"
    );
    let r3 = kv.update("a", Bytes::from_static(b"3"), r2).await.unwrap();
    assert!(r3 > r2, "[{n}]");
    let rb = kv.create("b.c", Bytes::from_static(b"x")).await.unwrap();
    assert!(rb > r3, "[{n}] one counter per bucket");
    assert_eq!(kv.keys().await.unwrap(), ["a", "b.c"], "[{n}] keys");
    kv.delete("a").await.unwrap();
    assert_eq!(kv.get("a").await.unwrap(), None, "[{n}] deleted");
    assert_eq!(kv.keys().await.unwrap(), ["b.c"], "[{n}] no deleted keys");
    let r4 = kv.create("a", Bytes::from_static(b"4")).await.unwrap();
    assert!(r4 > rb, "[{n}] create after delete");
    for bad in ["", "a b", ".a", "a.", "a*"] {
        assert!(
            matches!(
                kv.put(bad, Bytes::new()).await,
                Err(BusError::InvalidKey { .. })
            ),
            "[{n}] key {bad:?}"
        );
    }
    let other = h.kv("suite_rev").await;
    assert_eq!(
        other.get("a").await.unwrap().map(|e| e.revision),
        Some(r4),
        "[{n}] second handle"
    );
}

/// A watch first gives the latest entry of each matching key, then every
/// change under its prefix, in revision order, deletes included.
pub async fn kv_watch_sees_latest_then_changes(h: &dyn Harness) {
    let kv = h.kv("suite_watch").await;
    let n = h.name();
    kv.put("ingest.a", Bytes::from_static(b"old"))
        .await
        .unwrap();
    let ra = kv.put("ingest.a", Bytes::from_static(b"1")).await.unwrap();
    kv.put("recorder.a", Bytes::from_static(b"r"))
        .await
        .unwrap();
    let mut watch = kv.watch("ingest.").await.unwrap();
    let first = next_entry(&mut watch, n).await;
    assert_eq!(
        first,
        KvEntry {
            key: "ingest.a".into(),
            value: Bytes::from_static(b"1"),
            revision: ra,
            op: KvOp::Put
        },
        "[{n}] latest first"
    );
    let rb = kv.put("ingest.b", Bytes::from_static(b"2")).await.unwrap();
    kv.put("recorder.b", Bytes::from_static(b"x"))
        .await
        .unwrap();
    kv.delete("ingest.a").await.unwrap();
    let b = next_entry(&mut watch, n).await;
    assert_eq!(
        (b.key.as_str(), b.revision, b.op),
        ("ingest.b", rb, KvOp::Put),
        "[{n}]"
    );
    let del = next_entry(&mut watch, n).await;
    assert_eq!(
        (del.key.as_str(), del.op),
        ("ingest.a", KvOp::Delete),
        "[{n}]"
    );
    assert!(del.revision > rb, "[{n}] delete has a later revision");
}

async fn next_entry(watch: &mut KvWatch, n: &str) -> KvEntry {
    tokio::time::timeout(PATIENCE, watch.next())
        .await
        .expect(&format!("[{n}] watch stalled"))
        .expect(&format!("[{n}] watch ended"))
        .expect(&format!("[{n}] watch error"))
}

/// Events published on one handle reach a subscriber on another, filtered
/// by stream.
pub async fn events_reach_subscribers(h: &dyn Harness) {
    let (publisher, listener) = (h.events().await, h.events().await);
    let ort = StreamName::new("suite-ort").unwrap();
    let news = StreamName::new("suite.news").unwrap();
    let mut all = listener.subscribe(None).await.unwrap();
    let mut only_news = listener.subscribe(Some(&news)).await.unwrap();
    // Core NATS subscriptions are live once the server has them: give it a
    // moment (events are notifications; nothing waits for listeners).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let event = |stream: &StreamName, kind| Event {
        v: PROTO_VERSION,
        kind,
        stream: stream.clone(),
        at: UtcMs(1_700_000_000_000),
        node: "suite".into(),
        details: serde_json::Map::new(),
    };
    publisher
        .publish(&event(&ort, EventKind::ChunkWritten))
        .await
        .unwrap();
    publisher
        .publish(&event(&news, EventKind::GapOpened))
        .await
        .unwrap();
    let first = tokio::time::timeout(PATIENCE, all.next())
        .await
        .unwrap()
        .unwrap();
    let second = tokio::time::timeout(PATIENCE, all.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (first.kind, second.kind),
        (EventKind::ChunkWritten, EventKind::GapOpened),
        "[{}] all events, in order",
        h.name()
    );
    let news_event = tokio::time::timeout(PATIENCE, only_news.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (news_event.stream, news_event.kind),
        (news, EventKind::GapOpened),
        "[{}]",
        h.name()
    );
}

/// Runs an [`Ownership`] whose "worker" stops at once: every stream that
/// leaves its owned set is released.
fn member(
    kv: &Arc<dyn Kv>,
    node: &str,
    ttl: Duration,
    wanted: &tokio::sync::watch::Receiver<std::collections::BTreeSet<StreamName>>,
) -> Arc<Ownership> {
    let config = OwnershipConfig {
        ttl,
        ..OwnershipConfig::new("ingest", node)
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ownership = Arc::new(Ownership::spawn(
        Arc::clone(kv),
        config,
        wanted.clone(),
        None,
        clock,
    ));
    let weak = Arc::downgrade(&ownership);
    let mut owned = ownership.owned();
    tokio::spawn(async move {
        let mut before = owned.borrow().clone();
        while owned.changed().await.is_ok() {
            let now = owned.borrow().clone();
            let Some(ownership) = weak.upgrade() else {
                return;
            };
            for gone in before.difference(&now) {
                ownership.released(gone);
            }
            before = now;
        }
    });
    ownership
}

async fn wait_for_owners(
    h: &dyn Harness,
    what: &str,
    members: &[(&str, &Arc<Ownership>)],
    streams: &std::collections::BTreeSet<StreamName>,
) {
    let names: Vec<&str> = members.iter().map(|(n, _)| *n).collect();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let fits = members.iter().all(|(node, o)| {
            let want: std::collections::BTreeSet<StreamName> = streams
                .iter()
                .filter(|s| rendezvous(s, names.iter().copied()) == Some(*node))
                .cloned()
                .collect();
            *o.owned().borrow() == want
        });
        if fits {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "[{}] {what}: owners never settled: {:?}",
            h.name(),
            members
                .iter()
                .map(|(n, o)| (*n, o.owned().borrow().clone()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Streams spread over the live members by rendezvous hashing, each owned
/// by exactly one; a member that dies without releasing loses its streams
/// to the others after the TTL; one that joins gets its share handed over;
/// a shutdown deletes the leases at once.
pub async fn ownership_spreads_takes_over_and_hands_over(h: &dyn Harness) {
    let kv = h.kv("suite_leases").await;
    let ttl = Duration::from_millis(900);
    let streams: std::collections::BTreeSet<StreamName> = (0..12)
        .map(|i| StreamName::new(&format!("ch{i}.hd")).unwrap())
        .collect();
    let (_wanted_tx, wanted) = tokio::sync::watch::channel(streams.clone());
    let a = member(&kv, "a", ttl, &wanted);
    let b = member(&kv, "b", ttl, &wanted);
    wait_for_owners(h, "two members", &[("a", &a), ("b", &b)], &streams).await;
    assert!(
        !a.owned().borrow().is_empty() && !b.owned().borrow().is_empty(),
        "[{}] both own some",
        h.name()
    );

    // `a` dies: no release, its leases just stop being renewed.
    drop(a);
    let died = tokio::time::Instant::now();
    wait_for_owners(h, "after a died", &[("b", &b)], &streams).await;
    let takeover = died.elapsed();
    assert!(
        takeover >= ttl / 2,
        "[{}] taken over after {takeover:?}, before the lease could expire",
        h.name()
    );

    // `c` joins: `b` hands its share over.
    let c = member(&kv, "c", ttl, &wanted);
    wait_for_owners(h, "after c joined", &[("b", &b), ("c", &c)], &streams).await;

    // A graceful shutdown deletes the leases: nobody waits for the TTL.
    let c_streams = c.owned().borrow().clone();
    Arc::try_unwrap(c)
        .expect("only the test holds c")
        .shutdown()
        .await;
    for stream in &c_streams {
        let key = dvr_proto::lease_key("ingest", stream);
        assert!(
            kv.get(&key).await.unwrap().is_none(),
            "[{}] {key} deleted at shutdown",
            h.name()
        );
    }
    wait_for_owners(h, "after c shut down", &[("b", &b)], &streams).await;
}

/// `list` gives the current values under a prefix in key order, without
/// deleted keys.
pub async fn kv_list_is_a_snapshot(h: &dyn Harness) {
    let kv = h.kv("suite_list").await;
    let n = h.name();
    assert!(kv.list("").await.unwrap().is_empty(), "[{n}] empty bucket");
    for (key, value) in [("s.b", "2"), ("s.a", "1"), ("t.c", "3"), ("s.d", "4")] {
        kv.put(key, Bytes::from(value)).await.unwrap();
    }
    kv.put("s.a", Bytes::from_static(b"1b")).await.unwrap();
    kv.delete("s.d").await.unwrap();
    let listed: Vec<(String, Bytes)> = kv
        .list("s.")
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect();
    assert_eq!(
        listed,
        [
            ("s.a".to_owned(), Bytes::from_static(b"1b")),
            ("s.b".to_owned(), Bytes::from_static(b"2"))
        ],
        "[{n}]"
    );
    assert_eq!(kv.list("").await.unwrap().len(), 3, "[{n}] all keys");
}

/// Work under [`Exclusive`] runs one holder at a time: two replicas doing
/// read-modify-write of a shared value with a pause in between lose no
/// write; the key is freed after; a holder that stopped renewing is taken
/// over after the ttl, and one that renews is not, however long it works.
pub async fn exclusive_work_is_one_at_a_time(h: &dyn Harness) {
    let n = h.name();
    let ttl = Duration::from_millis(300);
    let a = Exclusive::new(h.kv("suite_excl").await, "a").with_timing(ttl, PATIENCE);
    let b = Exclusive::new(h.kv("suite_excl").await, "b").with_timing(ttl, PATIENCE);
    let kv = h.kv("suite_excl").await;

    // Read-modify-write with a pause in the middle, 8 times from each.
    let shared = Arc::new(std::sync::Mutex::new(0_u32));
    let edit = |who: Exclusive, shared: Arc<std::sync::Mutex<u32>>| async move {
        for _ in 0..8 {
            who.run("ch1", async {
                let read = *shared.lock().unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
                *shared.lock().unwrap() = read + 1;
            })
            .await
            .unwrap();
        }
    };
    tokio::join!(
        edit(a.clone(), Arc::clone(&shared)),
        edit(b.clone(), Arc::clone(&shared))
    );
    assert_eq!(*shared.lock().unwrap(), 16, "[{n}] no edit lost");
    assert_eq!(kv.get("ch1").await.unwrap(), None, "[{n}] the key is freed");

    // A holder that died: its key is taken over once not renewed for ttl.
    kv.create("ch2", Bytes::from_static(b"{}")).await.unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(a.run("ch2", async { 7 }).await.unwrap(), 7, "[{n}]");
    assert!(
        started.elapsed() >= ttl,
        "[{n}] taken over only after the ttl"
    );

    // A holder that works for many ttls keeps the key: b waits until a is
    // done.
    let a_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let long = a.run("ch3", async {
        tokio::time::sleep(ttl * 4).await;
        a_done.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let late = async {
        tokio::time::sleep(ttl / 3).await;
        b.run("ch3", async {
            a_done.load(std::sync::atomic::Ordering::SeqCst)
        })
        .await
    };
    let (first, second) = tokio::join!(long, late);
    first.unwrap();
    assert!(second.unwrap(), "[{n}] b ran only after a was done");

    // A waiter that runs out of patience says who holds the key.
    kv.put(
        "ch4",
        Bytes::from(
            LeaseRecord {
                v: PROTO_VERSION,
                holder: "api-9".into(),
                renewed: UtcMs(0),
            }
            .encode(),
        ),
    )
    .await
    .unwrap();
    let impatient = Exclusive::new(h.kv("suite_excl").await, "c").with_timing(PATIENCE, ttl);
    match impatient.run("ch4", async {}).await {
        Err(BusError::KvConflict { reason, .. }) => {
            assert!(reason.contains("api-9"), "[{n}] {reason}");
        }
        other => panic!("[{n}] expected a conflict, got {other:?}"),
    }
}
