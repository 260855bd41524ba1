//! Which replica does what: streams owned by leases in a KV bucket.
//!
//! Exactly one ingest and one recorder must work on a stream at a time, and
//! the streams should spread evenly over the replicas that are alive. Every
//! replica of a role runs an [`Ownership`]: it announces itself with a
//! heartbeat key (`member.{role}.{node}`), watches the bucket, and for each
//! wanted stream computes the *desired* owner by rendezvous hashing over
//! the live members. The desired owner takes the lease (`{role}.{stream}`,
//! a [`LeaseRecord`]) when it is free or stale, and renews it with a
//! conditional update; anyone else leaves it alone.
//!
//! Staleness is judged by the observer's own clock (a lease not seen
//! renewed for `ttl`), never by comparing timestamps from two machines, so
//! clock skew between nodes cannot make a live lease look dead. A replica
//! that stops renewing (killed, partitioned) loses its leases after `ttl`;
//! the conditional update makes the takeover atomic: of two replicas that
//! try at once, one wins.
//!
//! Handing a stream over is *release after stop*: when a member joins and
//! becomes a stream's desired owner, the holder drops the stream from its
//! [`Ownership::owned`] set but keeps renewing the lease until its worker
//! has stopped and called [`Ownership::released`]; only then is the lease
//! deleted and the newcomer takes it. So two recorders never write the same
//! stream at once, and a handover costs the worker's stop time plus one
//! tick.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dvr_common::{Clock, StreamName};
use dvr_proto::{
    lease_key, Event, EventKind, LeaseRecord, Versioned, LEASES_KV_BUCKET, PROTO_VERSION,
};
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::error::BusError;
use crate::events::Events;
use crate::kv::{Kv, KvEntry, KvOp, KvWatch};
use crate::metrics::LeaseMetrics;

/// How a replica takes part.
#[derive(Clone, Debug)]
pub struct OwnershipConfig {
    /// `ingest` or `recorder`.
    pub role: String,
    /// This replica's id, unique among live replicas (made key-safe).
    pub node: String,
    /// A lease not renewed for this long is free to take.
    pub ttl: Duration,
}

impl OwnershipConfig {
    /// The defaults: a 6 s lease, so a dead replica's streams are taken
    /// over in well under 10 s.
    pub fn new(role: &str, node: &str) -> Self {
        Self {
            role: role.to_owned(),
            node: key_safe(node),
            ttl: Duration::from_secs(6),
        }
    }

    fn heartbeat(&self) -> Duration {
        self.ttl / 3
    }

    fn tick(&self) -> Duration {
        (self.ttl / 12).max(Duration::from_millis(50))
    }

    fn member_key(&self) -> String {
        format!("member.{}.{}", self.role, self.node)
    }
}

/// Makes a node id usable as one KV key token.
pub fn key_safe(node: &str) -> String {
    let safe: String = node
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() {
        "node".to_owned()
    } else {
        safe
    }
}

/// The rendezvous (highest random weight) choice of `stream`'s owner among
/// `members`: each member's weight is a hash of (stream, member), so a
/// member joining or leaving moves only the streams it wins or held.
pub fn rendezvous<'a>(
    stream: &StreamName,
    members: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    members
        .into_iter()
        .max_by_key(|member| (fnv1a(stream.as_str(), member), *member))
}

/// FNV-1a, 64 bits, with a final avalanche (MurmurHash3's fmix64, since
/// FNV alone leaves the high bits weakly mixed by the last bytes): stable
/// across builds and platforms, so replicas of different versions agree on
/// owners during a rolling upgrade.
fn fnv1a(stream: &str, member: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in stream.bytes().chain([0]).chain(member.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// A replica's part in the ownership of streams; see the module docs.
#[derive(Debug)]
pub struct Ownership {
    owned: watch::Receiver<BTreeSet<StreamName>>,
    members: watch::Receiver<Vec<String>>,
    released: mpsc::UnboundedSender<StreamName>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Ownership {
    /// Starts taking part: `wanted` is every stream that needs an owner of
    /// this role (the configured ones, for a recorder those with DVR).
    pub fn spawn(
        kv: Arc<dyn Kv>,
        config: OwnershipConfig,
        wanted: watch::Receiver<BTreeSet<StreamName>>,
        events: Option<Arc<dyn Events>>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let (owned_tx, owned) = watch::channel(BTreeSet::new());
        let (members_tx, members) = watch::channel(Vec::new());
        let (released, released_rx) = mpsc::unbounded_channel();
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel();
        let state = State {
            moves: LeaseMetrics::new(&config.role),
            kv,
            config,
            events,
            clock,
            members: HashMap::new(),
            leases: HashMap::new(),
            held: HashMap::new(),
            last_heartbeat: None,
            owned: owned_tx,
            member_list: members_tx,
        };
        let task = tokio::spawn(state.run(wanted, released_rx, shutdown_rx));
        Self {
            owned,
            members,
            released,
            shutdown: Some(shutdown),
            task,
        }
    }

    /// The streams this replica should work on now. A stream leaving the
    /// set must have its worker stopped and then [`Ownership::released`].
    pub fn owned(&self) -> watch::Receiver<BTreeSet<StreamName>> {
        self.owned.clone()
    }

    /// The live members of the role, as this replica sees them.
    pub fn members(&self) -> Vec<String> {
        self.members.borrow().clone()
    }

    /// Says the worker of a stream that left [`Ownership::owned`] has
    /// stopped: the lease is deleted so the next owner takes it at once.
    pub fn released(&self, stream: &StreamName) {
        let _ = self.released.send(stream.clone());
    }

    /// Gives everything up (call after stopping every worker): deletes the
    /// held leases and the heartbeat, so the other replicas take over now
    /// rather than after the lease's TTL.
    pub async fn shutdown(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Ownership {
    fn drop(&mut self) {
        if self.shutdown.is_some() {
            self.task.abort();
        }
    }
}

/// A lease as last seen in the bucket.
#[derive(Debug)]
struct Seen {
    holder: Option<String>,
    revision: u64,
    at: Instant,
}

/// A lease this replica holds.
#[derive(Debug)]
struct Held {
    key: String,
    revision: u64,
    renewed_at: Instant,
    /// Dropped from `owned`, waiting for the worker to stop.
    releasing: bool,
}

struct State {
    kv: Arc<dyn Kv>,
    config: OwnershipConfig,
    events: Option<Arc<dyn Events>>,
    clock: Arc<dyn Clock>,
    /// Other members: first and last time seen.
    members: HashMap<String, (Instant, Instant)>,
    leases: HashMap<String, Seen>,
    held: HashMap<StreamName, Held>,
    last_heartbeat: Option<Instant>,
    owned: watch::Sender<BTreeSet<StreamName>>,
    member_list: watch::Sender<Vec<String>>,
    /// `dvr_bus_lease_moves_total` and `dvr_bus_leases_held` of the role.
    moves: LeaseMetrics,
}

impl State {
    async fn run(
        mut self,
        wanted: watch::Receiver<BTreeSet<StreamName>>,
        mut released: mpsc::UnboundedReceiver<StreamName>,
        mut shutdown: tokio::sync::oneshot::Receiver<()>,
    ) {
        let mut tick = tokio::time::interval(self.config.tick());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut bucket: Option<KvWatch> = None;
        loop {
            if bucket.is_none() {
                match self.kv.watch("").await {
                    Ok(w) => bucket = Some(w),
                    Err(e) => debug!(error = %e, "ownership: cannot watch the leases yet"),
                }
            }
            tokio::select! {
                entry = next(&mut bucket), if bucket.is_some() => match entry {
                    Some(Ok(entry)) => self.saw(entry),
                    Some(Err(e)) => {
                        debug!(error = %e, "ownership: the leases watch failed; watching again");
                        bucket = None;
                    }
                    None => bucket = None,
                },
                _ = tick.tick() => {
                    let wanted = wanted.borrow().clone();
                    self.step(&wanted).await;
                }
                Some(stream) = released.recv() => self.release(&stream).await,
                _ = &mut shutdown => break,
            }
        }
        let held: Vec<StreamName> = self.held.keys().cloned().collect();
        for stream in held {
            self.release(&stream).await;
        }
        let _ = self.kv.delete(&self.config.member_key()).await;
    }

    /// Takes in one change of the bucket.
    fn saw(&mut self, entry: KvEntry) {
        let now = Instant::now();
        let member_prefix = format!("member.{}.", self.config.role);
        if let Some(node) = entry.key.strip_prefix(&member_prefix) {
            if node == self.config.node {
                return;
            }
            match entry.op {
                KvOp::Put => {
                    self.members
                        .entry(node.to_owned())
                        .and_modify(|(_, last)| *last = now)
                        .or_insert((now, now));
                }
                KvOp::Delete => {
                    self.members.remove(node);
                }
            }
            return;
        }
        if !entry.key.starts_with(&format!("{}.", self.config.role)) {
            return;
        }
        let holder = match entry.op {
            KvOp::Put => LeaseRecord::decode(&entry.value).ok().map(|r| r.holder),
            KvOp::Delete => None,
        };
        // A lease of ours that someone else now holds is lost.
        let lost: Vec<StreamName> = self
            .held
            .iter()
            .filter(|(_, h)| h.key == entry.key && entry.revision > h.revision)
            .filter(|_| holder.as_deref() != Some(self.config.node.as_str()))
            .map(|(s, _)| s.clone())
            .collect();
        for stream in lost {
            warn!(role = %self.config.role, stream = %stream, holder = ?holder, "lease lost to another replica");
            self.held.remove(&stream);
            self.moves.changed("lost", self.held.len());
            self.publish_owned();
        }
        self.leases.insert(
            entry.key,
            Seen {
                holder,
                revision: entry.revision,
                at: now,
            },
        );
    }

    /// One round: heartbeat, renewals, takeovers, hand-overs.
    async fn step(&mut self, wanted: &BTreeSet<StreamName>) {
        let now = Instant::now();
        let ttl = self.config.ttl;
        if self
            .last_heartbeat
            .is_none_or(|at| now - at >= self.config.heartbeat())
        {
            let record = self.record();
            match self.kv.put(&self.config.member_key(), record).await {
                Ok(_) => self.last_heartbeat = Some(now),
                Err(e) => debug!(error = %e, "ownership: heartbeat failed"),
            }
        }
        self.members.retain(|_, (_, last)| now - *last < ttl);
        let mut live: Vec<String> = self.members.keys().cloned().collect();
        live.push(self.config.node.clone());
        live.sort();
        self.member_list.send_if_modified(|list| {
            let changed = *list != live;
            list.clone_from(&live);
            changed
        });

        self.renew(now).await;

        for stream in wanted {
            let desired = rendezvous(stream, live.iter().map(String::as_str));
            let mine = desired == Some(self.config.node.as_str());
            if let Some(held) = self.held.get_mut(stream) {
                // Hand over to a desired owner that has been alive a while
                // (not one that flaps), once our worker stopped.
                let settled = desired
                    .and_then(|d| self.members.get(d))
                    .is_some_and(|(first, _)| now - *first >= ttl);
                if !mine && settled && !held.releasing {
                    info!(role = %self.config.role, stream = %stream, to = ?desired, "handing the stream over to a new replica");
                    held.releasing = true;
                    self.publish_owned();
                }
                continue;
            }
            if mine {
                self.try_take(stream, now).await;
            }
        }
        let unwanted: Vec<StreamName> = self
            .held
            .iter()
            .filter(|(s, h)| !wanted.contains(*s) && !h.releasing)
            .map(|(s, _)| s.clone())
            .collect();
        for stream in unwanted {
            if let Some(h) = self.held.get_mut(&stream) {
                h.releasing = true;
            }
            self.publish_owned();
        }
    }

    /// Renews every held lease due; a conflict or a lease not renewed for
    /// its TTL is lost.
    async fn renew(&mut self, now: Instant) {
        let due: Vec<StreamName> = self
            .held
            .iter()
            .filter(|(_, h)| now - h.renewed_at >= self.config.heartbeat())
            .map(|(s, _)| s.clone())
            .collect();
        for stream in due {
            let Some((key, revision, renewed_at)) = self
                .held
                .get(&stream)
                .map(|h| (h.key.clone(), h.revision, h.renewed_at))
            else {
                continue;
            };
            match self.kv.update(&key, self.record(), revision).await {
                Ok(revision) => {
                    if let Some(h) = self.held.get_mut(&stream) {
                        h.revision = revision;
                        h.renewed_at = now;
                    }
                }
                Err(BusError::KvConflict { .. }) => {
                    warn!(role = %self.config.role, stream = %stream, "lease lost: another replica took it");
                    self.held.remove(&stream);
                    self.moves.changed("lost", self.held.len());
                    self.publish_owned();
                }
                Err(e) if now - renewed_at >= self.config.ttl => {
                    warn!(role = %self.config.role, stream = %stream, error = %e, "lease lost: not renewed within its TTL");
                    self.held.remove(&stream);
                    self.moves.changed("lost", self.held.len());
                    self.publish_owned();
                }
                Err(e) => debug!(stream = %stream, error = %e, "lease renewal failed; retrying"),
            }
        }
    }

    /// Takes a stream's lease if it is free or stale.
    async fn try_take(&mut self, stream: &StreamName, now: Instant) {
        let key = lease_key(&self.config.role, stream);
        let result = match self.leases.get(&key) {
            None => self.kv.create(&key, self.record()).await,
            Some(seen) if seen.holder.is_none() => self.kv.create(&key, self.record()).await,
            Some(seen) if now - seen.at >= self.config.ttl => {
                self.kv.update(&key, self.record(), seen.revision).await
            }
            Some(_) => return,
        };
        match result {
            Ok(revision) => {
                let previous = self.leases.get(&key).and_then(|s| s.holder.clone());
                info!(role = %self.config.role, stream = %stream, previous = ?previous, "lease taken");
                self.held.insert(
                    stream.clone(),
                    Held {
                        key,
                        revision,
                        renewed_at: now,
                        releasing: false,
                    },
                );
                self.moves.changed("acquired", self.held.len());
                self.publish_owned();
                self.publish_moved(stream, previous).await;
            }
            Err(BusError::KvConflict { .. }) => {}
            Err(e) => debug!(stream = %stream, error = %e, "cannot take the lease yet"),
        }
    }

    /// Deletes a held lease (its worker stopped).
    async fn release(&mut self, stream: &StreamName) {
        let Some(held) = self.held.remove(stream) else {
            return;
        };
        // Only if still ours: a delete is unconditional, so check first.
        match self.kv.get(&held.key).await {
            Ok(Some(entry)) if entry.revision == held.revision => {
                if let Err(e) = self.kv.delete(&held.key).await {
                    debug!(stream = %stream, error = %e, "cannot delete a released lease; it expires");
                }
            }
            _ => {}
        }
        info!(role = %self.config.role, stream = %stream, "lease released");
        self.moves.changed("released", self.held.len());
        self.publish_owned();
    }

    fn record(&self) -> Bytes {
        Bytes::from(
            LeaseRecord {
                v: PROTO_VERSION,
                holder: self.config.node.clone(),
                renewed: self.clock.now(),
            }
            .encode(),
        )
    }

    fn publish_owned(&self) {
        let owned: BTreeSet<StreamName> = self
            .held
            .iter()
            .filter(|(_, h)| !h.releasing)
            .map(|(s, _)| s.clone())
            .collect();
        self.owned.send_if_modified(|current| {
            let changed = *current != owned;
            *current = owned;
            changed
        });
    }

    async fn publish_moved(&self, stream: &StreamName, previous: Option<String>) {
        let Some(events) = &self.events else {
            return;
        };
        let mut details = serde_json::Map::new();
        details.insert("role".into(), self.config.role.clone().into());
        details.insert("holder".into(), self.config.node.clone().into());
        if let Some(previous) = previous {
            details.insert("previous".into(), previous.into());
        }
        let event = Event {
            v: PROTO_VERSION,
            kind: EventKind::LeaseMoved,
            stream: stream.clone(),
            at: self.clock.now(),
            node: self.config.node.clone(),
            details,
        };
        if let Err(e) = events.publish(&event).await {
            debug!(error = %e, "cannot publish lease_moved");
        }
    }
}

async fn next(watch: &mut Option<KvWatch>) -> Option<Result<KvEntry, BusError>> {
    match watch {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

/// The bucket every [`Ownership`] uses.
pub const BUCKET: &str = LEASES_KV_BUCKET;

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> StreamName {
        StreamName::new(s).unwrap()
    }

    #[test]
    fn rendezvous_moves_only_the_streams_a_new_member_wins() {
        let streams: Vec<StreamName> = (0..200).map(|i| name(&format!("ch{i}"))).collect();
        let two = ["a", "b"];
        let three = ["a", "b", "c"];
        let mut moved = 0;
        let mut per_member: HashMap<&str, usize> = HashMap::new();
        for s in &streams {
            let before = rendezvous(s, two).unwrap();
            let after = rendezvous(s, three).unwrap();
            *per_member.entry(after).or_default() += 1;
            if before != after {
                assert_eq!(after, "c", "{s}: a stream only moves to the newcomer");
                moved += 1;
            }
        }
        // About a third moves; each member gets a fair share.
        assert!((40..=95).contains(&moved), "{moved} of 200 moved");
        for (member, n) in per_member {
            assert!((40..=95).contains(&n), "{member} owns {n} of 200");
        }
    }

    #[test]
    fn node_ids_become_key_tokens() {
        assert_eq!(key_safe("pod-7.ns.svc:8080"), "pod-7_ns_svc_8080");
        assert_eq!(key_safe(""), "node");
    }
}
