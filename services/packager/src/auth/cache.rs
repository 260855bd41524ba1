//! The gate's cache of session answers.
//!
//! Every request of a session looks its answer up here, and on a busy
//! channel the same hot session is looked up by every worker thread at
//! once. One shared map would make each of those lookups write the same
//! memory from every core (the lock's reader count, the entry's reference
//! count, the session's byte counter), and those cache lines would bounce
//! between cores on every request. So the cache is split into shards and
//! each thread works in its own (past eight cores, a few threads share
//! one): a cached allow reads and writes only memory its own core holds.
//!
//! A thread that has no fresh answer in its shard first looks in the
//! others, so a session is asked about once per answer duration, not once
//! per thread. It copies what it finds with a byte meter of its own; usage
//! reports add the meters of a session back together.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use dvr_proto::AuthDecision;
use tokio::time::Instant;

use super::SessionMeter;

/// Above this many sessions in one shard, expired ones are dropped.
const PRUNE_ABOVE: usize = 100_000;
/// At most this many shards, however many cores: a session served by
/// many threads has a copy (about 180 bytes) in each of their shards, so
/// the shard count multiplies the cache's memory. Eight keep 20,000
/// viewers under 30 MB, while spreading the lock traffic enough that the
/// hot session no longer makes every request wait on one cache line.
const MAX_SHARDS: usize = 8;

/// The request fields a stream's policy decides on besides stream, ip and
/// token (see [`dvr_common::config::PolicyReads`]): `None` for a field it does not
/// read, so requests that differ only there share an answer, and the
/// field's value (empty when absent) for one it reads, so they do not.
#[derive(Clone, Copy, Debug, Default, Hash)]
pub(super) struct ReadFields<'a> {
    pub(super) protocol: Option<&'a str>,
    pub(super) user_agent: Option<&'a [u8]>,
    pub(super) referer: Option<&'a [u8]>,
}

/// A session's key: (stream, ip, token) as the seeds define it, and the
/// [`ReadFields`] the policy decides on, held as a 128-bit keyed hash of
/// them: it sits inside the map's table, so
/// a lookup compares 16 bytes in place instead of following pointers to
/// the token's bytes. The keys are random per cache, so no one can make
/// two sessions collide; by chance, two of a billion sessions collide
/// with a probability near 10^-21.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct SessionKey(u128);

/// Hashes the parts of session keys with two independent random keys.
#[derive(Debug, Default)]
struct SessionKeys([RandomState; 2]);

impl SessionKeys {
    /// The key of the session of `token` for `stream` from `ip`, with the
    /// fields its policy reads.
    fn of(&self, stream: &str, ip: IpAddr, token: &str, read: ReadFields<'_>) -> SessionKey {
        let [high, low] = self
            .0
            .each_ref()
            .map(|keys| keys.hash_one((stream, ip, token, read)));
        SessionKey(u128::from(high) << 64 | u128::from(low))
    }
}

/// Hashes a [`SessionKey`], already random, to its low half.
#[derive(Default)]
struct SessionKeyHasher(u64);

impl Hasher for SessionKeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is called for a `SessionKey`; anything else
        // still hashes all of its bytes.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u128(&mut self, key: u128) {
        // Truncation intended: either half of a keyed hash is random.
        #[allow(clippy::cast_possible_truncation)]
        let low = key as u64;
        self.0 = low;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A session's answer, as long as it holds.
#[derive(Clone, Debug)]
pub(super) struct Cached {
    pub(super) decision: AuthDecision,
    pub(super) until: Instant,
    pub(super) location: Option<String>,
    /// Present for an allow.
    pub(super) meter: Option<Arc<SessionMeter>>,
}

impl Cached {
    /// The same answer for another shard: it counts into `mine`'s meter
    /// when that is the same session's, else into a new one of its own.
    fn adopted(self, mine: Option<&Cached>) -> Cached {
        let meter = self.meter.map(|theirs| meter_for(&theirs.session, mine));
        Cached { meter, ..self }
    }
}

/// The meter `session` counts into: `stale`'s when that is the same
/// session's (so bytes not reported yet stay counted), else a new one.
pub(super) fn meter_for(session: &str, stale: Option<&Cached>) -> Arc<SessionMeter> {
    stale
        .and_then(|c| c.meter.clone())
        .filter(|m| m.session == session)
        .unwrap_or_else(|| Arc::new(SessionMeter::new(session.to_owned())))
}

/// What the cache knows of a session.
pub(super) enum Found {
    /// An answer that still holds.
    Fresh(Cached),
    /// An answer that expired (kept for its meter, and for a grace period
    /// when the authorizer cannot be reached), or none.
    Stale(Option<Cached>),
}

type Map = HashMap<SessionKey, Cached, BuildHasherDefault<SessionKeyHasher>>;
type Shard = RwLock<Map>;

/// A shard on a cache line (two, for adjacent-line prefetch) of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded(Shard);

/// Session answers, sharded by thread (one shard per core, up to
/// [`MAX_SHARDS`]).
#[derive(Debug)]
pub(super) struct SessionCache {
    keys: SessionKeys,
    shards: Box<[Padded]>,
}

impl Default for SessionCache {
    fn default() -> Self {
        let threads = std::thread::available_parallelism().map_or(4, std::num::NonZero::get);
        Self::with_shards(threads.min(MAX_SHARDS))
    }
}

impl SessionCache {
    fn with_shards(shards: usize) -> Self {
        Self {
            keys: SessionKeys::default(),
            shards: (0..shards.max(1)).map(|_| Padded::default()).collect(),
        }
    }

    /// The key of the session of `token` for `stream` from `ip`.
    pub(super) fn key(
        &self,
        stream: &str,
        ip: IpAddr,
        token: &str,
        read: ReadFields<'_>,
    ) -> SessionKey {
        self.keys.of(stream, ip, token, read)
    }

    /// The calling thread's shard: threads take shard numbers in turn the
    /// first time they ask.
    fn own(&self) -> usize {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed);
        }
        SLOT.with(|slot| *slot) % self.shards.len()
    }

    fn shard(&self, index: usize) -> &Shard {
        &self.shards[index].0
    }

    /// The session's answer at `now`: the calling thread's own, or a copy
    /// of a fresh one another thread holds, or the stale one.
    pub(super) fn find(&self, key: SessionKey, now: Instant) -> Found {
        self.find_in(self.own(), key, now)
    }

    fn find_in(&self, own: usize, key: SessionKey, now: Instant) -> Found {
        let mine = read(self.shard(own)).get(&key).cloned();
        if let Some(c) = &mine {
            if c.until > now {
                return Found::Fresh(c.clone());
            }
        }
        let mut stale = mine;
        for index in (0..self.shards.len()).filter(|&i| i != own) {
            let Some(theirs) = read(self.shard(index)).get(&key).cloned() else {
                continue;
            };
            if theirs.until > now {
                let entry = theirs.adopted(stale.as_ref());
                write(self.shard(own)).insert(key, entry.clone());
                return Found::Fresh(entry);
            }
            if stale.is_none() {
                stale = Some(theirs.adopted(None));
            }
        }
        Found::Stale(stale)
    }

    /// Keeps `entry` as the session's answer in the calling thread's shard.
    pub(super) fn remember(&self, key: SessionKey, entry: Cached) {
        self.remember_in(self.own(), key, entry);
    }

    fn remember_in(&self, own: usize, key: SessionKey, entry: Cached) {
        let mut shard = write(self.shard(own));
        if shard.len() > PRUNE_ABOVE {
            let now = Instant::now();
            shard.retain(|_, c| c.until > now || c.meter.as_ref().is_some_and(|m| m.pending()));
        }
        shard.insert(key, entry);
    }

    /// Every meter the cache holds, from all shards (a session's may be
    /// in several).
    pub(super) fn meters(&self) -> Vec<Arc<SessionMeter>> {
        self.shards
            .iter()
            .flat_map(|shard| {
                read(&shard.0)
                    .values()
                    .filter_map(|c| c.meter.clone())
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

fn read(shard: &Shard) -> RwLockReadGuard<'_, Map> {
    shard.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(shard: &Shard) -> RwLockWriteGuard<'_, Map> {
    shard.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn allow(session: &str, until: Instant) -> Cached {
        Cached {
            decision: AuthDecision::Allow,
            until,
            location: None,
            meter: Some(Arc::new(SessionMeter::new(session.to_owned()))),
        }
    }

    fn key(cache: &SessionCache, token: &str) -> SessionKey {
        cache.key(
            "ch1",
            IpAddr::from([10, 0, 0, 1]),
            token,
            ReadFields::default(),
        )
    }

    fn fresh(found: Found) -> Option<Cached> {
        match found {
            Found::Fresh(c) => Some(c),
            Found::Stale(_) => None,
        }
    }

    #[test]
    fn each_part_of_the_key_tells_sessions_apart() {
        let cache = SessionCache::with_shards(1);
        let now = Instant::now();
        cache.remember(
            key(&cache, "t1"),
            allow("s1", now + Duration::from_secs(60)),
        );
        assert!(fresh(cache.find(key(&cache, "t1"), now)).is_some());
        assert!(fresh(cache.find(key(&cache, "t2"), now)).is_none());
        let ip = IpAddr::from([10, 0, 0, 1]);
        assert!(fresh(cache.find(
            cache.key(
                "ch1",
                IpAddr::from([10, 0, 0, 2]),
                "t1",
                ReadFields::default()
            ),
            now
        ))
        .is_none());
        assert!(
            fresh(cache.find(cache.key("ch2", ip, "t1", ReadFields::default()), now)).is_none()
        );
        // The parts are hashed apart, not run together.
        assert_ne!(
            cache.key("ch1", ip, "t1", ReadFields::default()),
            cache.key("ch1t", ip, "1", ReadFields::default())
        );
        // A field the policy reads keys the session; one it does not, not.
        let ua = |agent: &'static [u8]| ReadFields {
            user_agent: Some(agent),
            ..ReadFields::default()
        };
        assert_ne!(
            cache.key("ch1", ip, "t1", ua(b"A")),
            cache.key("ch1", ip, "t1", ua(b"B"))
        );
        assert_ne!(
            cache.key("ch1", ip, "t1", ua(b"")),
            cache.key("ch1", ip, "t1", ReadFields::default())
        );
        // Another cache has other keys.
        assert_ne!(
            SessionCache::with_shards(1).key("ch1", ip, "t1", ReadFields::default()),
            key(&cache, "t1")
        );
        // Past its time the answer is stale, and still there.
        match cache.find(key(&cache, "t1"), now + Duration::from_secs(61)) {
            Found::Stale(Some(c)) => assert_eq!(c.decision, AuthDecision::Allow),
            _ => panic!("expected the stale answer"),
        }
    }

    #[test]
    fn shards_share_answers_and_count_into_their_own_meters() {
        let cache = SessionCache::with_shards(3);
        let now = Instant::now();
        let until = now + Duration::from_secs(60);
        cache.remember_in(0, key(&cache, "t"), allow("s1", until));
        for own in [0, 1, 2, 1] {
            let found =
                fresh(cache.find_in(own, key(&cache, "t"), now)).expect("the answer shard 0 holds");
            assert_eq!(found.until, until);
            let meter = found.meter.expect("an allow has a meter");
            assert_eq!(meter.session, "s1");
            meter.add(100);
        }
        // Shards 1 and 2 copied the answer, each with a meter of its own;
        // shard 1 found its copy the second time.
        let meters = cache.meters();
        assert_eq!(meters.len(), 3);
        let counted: Vec<u64> = meters
            .iter()
            .map(|m| m.unreported.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counted.iter().sum::<u64>(), 400);
        assert!(counted.contains(&200), "{counted:?}");
        // Once every copy is stale, a shard gets the stale answer back.
        let later = until + Duration::from_secs(1);
        assert!(matches!(
            cache.find_in(2, key(&cache, "t"), later),
            Found::Stale(Some(_))
        ));
        // A shard that never saw the session gets another's stale answer,
        // so a session allowed before keeps its grace.
        let fresh_cache = SessionCache::with_shards(2);
        fresh_cache.remember_in(0, key(&fresh_cache, "t"), allow("s1", until));
        match fresh_cache.find_in(1, key(&fresh_cache, "t"), later) {
            Found::Stale(Some(c)) => assert_eq!(c.decision, AuthDecision::Allow),
            _ => panic!("expected shard 0's stale answer"),
        }
    }

    #[test]
    fn a_copy_keeps_the_meter_of_the_shard_it_lands_in() {
        let cache = SessionCache::with_shards(2);
        let now = Instant::now();
        // Shard 1 saw the session and counted bytes; its answer expired.
        let old = allow("s1", now);
        old.meter.as_ref().unwrap().add(7);
        cache.remember_in(1, key(&cache, "t"), old);
        // Shard 0 re-checked meanwhile.
        cache.remember_in(
            0,
            key(&cache, "t"),
            allow("s1", now + Duration::from_secs(60)),
        );
        let found = fresh(cache.find_in(1, key(&cache, "t"), now)).expect("shard 0's fresh answer");
        let meter = found.meter.expect("an allow has a meter");
        assert_eq!(
            meter.unreported.load(Ordering::Relaxed),
            7,
            "shard 1's own meter, bytes kept"
        );
    }
}
