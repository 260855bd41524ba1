//! The sessions one engine has decided: their state, their re-checks,
//! their usage, and their mirror in the sessions bucket.
//!
//! The one idea: a *session* (see [`session_id_for`](crate::session_id_for))
//! is decided once and then re-checked every `X-AuthDuration`; in between,
//! its state answers. An open session whose re-check is due is answered
//! from its state at once while the backends are asked in the background,
//! so a backend that hangs never stalls a viewer who is already watching;
//! a session that was never opened waits for the backends (at most their
//! 3 s timeout) and stays unopened if they are silent. A denial by a
//! backend is cached for its duration, so a banned token does not reach
//! the backend again.
//!
//! This file holds that state and what writes it; what a policy says
//! about a request is in `policy.rs`, and the engine, which asks the
//! backends, joins the two. Every change of a session is mirrored into
//! the sessions bucket by one task, in order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use dvr_bus::{BusError, Kv};
use dvr_common::{StreamName, UtcMs};
use dvr_proto::{
    AuthDecision, AuthReply, AuthRequest, SessionRecord, SessionUsage, Versioned, PROTO_VERSION,
};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::backend::{BackendAnswer, DEFAULT_AUTH_DURATION_S};
use crate::metrics;
use crate::policy::{is_session_id, reply, secs_until};

/// How long an open session is answered from its state while its re-check
/// is under way, before the asker comes back for the result.
pub const RECHECK_GRACE_S: u32 = 5;
/// How long after a silent re-check the backends are asked again.
const RETRY_MS: i64 = 10_000;
/// An open session nobody asked about for this long after its re-check
/// was due is closed (the player went away).
const IDLE_MS: i64 = 60_000;
/// How long a closed session stays listed.
const KEEP_CLOSED_MS: i64 = 10 * 60_000;
/// Sweeps for idle sessions at most this often.
const SWEEP_EVERY_MS: i64 = 5_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    Denied { until: UtcMs },
    Closed,
}

#[derive(Debug)]
struct Session {
    record: SessionRecord,
    token: String,
    referer: String,
    state: State,
    recheck_at: UtcMs,
    checking: bool,
    max_sessions: Option<u32>,
}

impl Session {
    /// A session first seen in `req`, not open yet.
    fn new(req: &AuthRequest, id: &str, now: UtcMs) -> Self {
        Self {
            record: SessionRecord {
                v: PROTO_VERSION,
                id: id.to_owned(),
                stream: req.stream.clone(),
                ip: req.ip.clone(),
                user_id: None,
                protocol: req.protocol.clone(),
                opened_at: now,
                updated_at: now,
                closed_at: None,
                bytes: 0,
            },
            token: req.token.clone(),
            referer: req.referer.clone().unwrap_or_default(),
            state: State::Closed,
            recheck_at: now,
            checking: false,
            max_sessions: None,
        }
    }

    /// Changes the state, keeping the open-sessions gauge true.
    fn set_state(&mut self, state: State) {
        let (was, is) = (self.state == State::Open, state == State::Open);
        if was != is {
            metrics::open_sessions_changed(self.record.stream.as_str(), if is { 1 } else { -1 });
        }
        self.state = state;
    }
}

#[derive(Debug, Default)]
struct Sessions {
    map: HashMap<String, Session>,
    /// Soft limitation: checks in a row a user was over their limit.
    strikes: HashMap<String, u32>,
    last_sweep: i64,
}

impl Sessions {
    fn open_count(&self, stream: Option<&StreamName>) -> usize {
        self.map
            .values()
            .filter(|s| s.state == State::Open && stream.is_none_or(|n| &s.record.stream == n))
            .count()
    }
}

/// A write to the sessions bucket, applied in order by one task.
///
/// A record's `bytes` belong to the bucket: usage reports add to them with
/// compare-and-set, and a state change keeps what the bucket counted. So
/// with several auth replicas, each answering some reports, none loses
/// another's bytes.
#[derive(Debug)]
enum KvWrite {
    Put(SessionRecord),
    AddBytes { id: String, bytes: u64, at: UtcMs },
    Delete(String),
}

/// How often a compare-and-set on one record is tried before giving up.
const CAS_ATTEMPTS: usize = 8;

impl KvWrite {
    async fn apply(&self, kv: &dyn Kv) -> Result<(), BusError> {
        match self {
            KvWrite::Put(record) => {
                update_record(kv, &record.id, |stored| {
                    let mut record = record.clone();
                    if let Some(stored) = stored {
                        record.bytes = stored.bytes;
                    }
                    Some(record)
                })
                .await
            }
            KvWrite::AddBytes { id, bytes, at } => {
                update_record(kv, id, |stored| {
                    let mut record = stored?;
                    record.bytes = record.bytes.saturating_add(*bytes);
                    record.updated_at = record.updated_at.max(*at);
                    Some(record)
                })
                .await
            }
            KvWrite::Delete(id) => kv.delete(id).await,
        }
    }
}

/// Rewrites the record under `id` as `change` says (given the stored
/// record, if any; `None` leaves it alone), retrying when another writer
/// got there first.
async fn update_record(
    kv: &dyn Kv,
    id: &str,
    change: impl Fn(Option<SessionRecord>) -> Option<SessionRecord>,
) -> Result<(), BusError> {
    let mut attempt = 1;
    loop {
        let entry = kv.get(id).await?;
        let stored = entry
            .as_ref()
            .and_then(|e| SessionRecord::decode(&e.value).ok());
        let Some(record) = change(stored) else {
            return Ok(());
        };
        let value = Bytes::from(record.encode());
        let written = match &entry {
            Some(e) => kv.update(id, value, e.revision).await,
            None => kv.create(id, value).await,
        };
        match written {
            Err(BusError::KvConflict { .. }) if attempt < CAS_ATTEMPTS => attempt += 1,
            other => return other.map(drop),
        }
    }
}

/// What opening a session grants.
#[derive(Debug)]
pub(crate) struct Grant {
    /// Seconds until the session is checked again.
    pub(crate) duration_s: u32,
    /// `X-UserId`, kept from an earlier allow when absent.
    pub(crate) user_id: Option<String>,
    /// `X-Max-Sessions` of the user.
    pub(crate) max_sessions: Option<u32>,
    /// Soft limitation: excess sessions live until a second check.
    pub(crate) soft: bool,
}

impl Grant {
    /// An allow by a rule or a token: no user, no limit.
    pub(crate) fn plain(duration_s: u32) -> Self {
        Self {
            duration_s,
            user_id: None,
            max_sessions: None,
            soft: false,
        }
    }

    /// What a backend's allow grants; `None` for any other answer.
    fn allowed_by(answer: &BackendAnswer, soft: bool) -> Option<Self> {
        let BackendAnswer::Allow {
            duration_s,
            user_id,
            max_sessions,
            ..
        } = answer
        else {
            return None;
        };
        Some(Self {
            duration_s: *duration_s,
            user_id: user_id.clone(),
            max_sessions: *max_sessions,
            soft,
        })
    }
}

/// What a session's state says about a request.
#[derive(Debug)]
pub(crate) enum Standing {
    /// The state answers (open, or denied earlier).
    Answered(AuthReply),
    /// Open with its re-check due: answered open for [`RECHECK_GRACE_S`];
    /// with `start`, this request marked the re-check under way and the
    /// caller runs it.
    Rechecking { reply: AuthReply, start: bool },
    /// Nothing answers: decide (again).
    Undecided,
}

/// What a background re-check sends the backends: the request that opened
/// the session, as far as the session remembers it.
#[derive(Debug)]
pub(crate) struct RecheckQuery {
    /// Stream, address and protocol of the session (no token or headers:
    /// those are the fields below).
    pub(crate) req: AuthRequest,
    /// The session's token.
    pub(crate) token: String,
    /// The session's `Referer`, or empty.
    pub(crate) referer: String,
}

/// The session table and its writer to the sessions bucket.
#[derive(Debug)]
pub(crate) struct SessionTable {
    sessions: Mutex<Sessions>,
    kv: Option<mpsc::UnboundedSender<KvWrite>>,
}

impl SessionTable {
    /// An empty table mirrored into `kv` when given (by a task spawned
    /// here, so inside a Tokio runtime).
    pub(crate) fn new(kv: Option<Arc<dyn Kv>>) -> Self {
        let kv = kv.map(|kv| {
            let (tx, mut rx) = mpsc::unbounded_channel::<KvWrite>();
            tokio::spawn(async move {
                while let Some(write) = rx.recv().await {
                    if let Err(e) = write.apply(kv.as_ref()).await {
                        warn!(error = %e, "cannot record a session in the sessions bucket");
                    }
                }
            });
            tx
        });
        Self {
            sessions: Mutex::new(Sessions::default()),
            kv,
        }
    }

    /// Every session (open, denied and recently closed), oldest first.
    pub(crate) fn list(&self) -> Vec<SessionRecord> {
        let sessions = self.lock();
        let mut out: Vec<_> = sessions.map.values().map(|s| s.record.clone()).collect();
        out.sort_by(|a, b| (a.opened_at, &a.id).cmp(&(b.opened_at, &b.id)));
        out
    }

    /// Adds reported bytes to each session's record, here and in the
    /// bucket; a session id that cannot be one is ignored.
    pub(crate) fn record_usage(&self, usage: &SessionUsage, now: UtcMs) {
        let mut sessions = self.lock();
        for reported in &usage.sessions {
            if reported.bytes == 0 {
                continue;
            }
            if !is_session_id(&reported.session) {
                warn!(
                    session = %reported.session.escape_debug(),
                    "ignoring usage for a malformed session id"
                );
                continue;
            }
            if let Some(s) = sessions.map.get_mut(&reported.session) {
                s.record.bytes = s.record.bytes.saturating_add(reported.bytes);
                s.record.updated_at = s.record.updated_at.max(now);
            }
            self.write(KvWrite::AddBytes {
                id: reported.session.clone(),
                bytes: reported.bytes,
                at: now,
            });
        }
    }

    /// Open sessions on this engine, and of `stream`: what backends are
    /// told as `total_clients` and `stream_clients`.
    pub(crate) fn open_counts(&self, stream: &StreamName) -> (usize, usize) {
        let s = self.lock();
        (s.open_count(None), s.open_count(Some(stream)))
    }

    /// What session `id`'s state says at `now` (after sweeping idle and
    /// expired sessions). An open session of a policy without backends is
    /// decided again when due (a rule or token check is cheap).
    pub(crate) fn standing(&self, id: &str, now: UtcMs, has_backends: bool) -> Standing {
        let mut sessions = self.lock();
        self.sweep(&mut sessions, now);
        let Some(s) = sessions.map.get_mut(id) else {
            return Standing::Undecided;
        };
        match s.state {
            State::Denied { until } if until > now => Standing::Answered(reply(
                AuthDecision::Deny,
                secs_until(now, until),
                id,
                "denied earlier",
            )),
            State::Open if s.recheck_at > now => {
                s.record.updated_at = now;
                Standing::Answered(reply(
                    AuthDecision::Allow,
                    secs_until(now, s.recheck_at),
                    id,
                    "open session",
                ))
            }
            State::Open if has_backends => {
                s.record.updated_at = now;
                let start = !s.checking;
                s.checking = true;
                Standing::Rechecking {
                    reply: reply(
                        AuthDecision::Allow,
                        RECHECK_GRACE_S,
                        id,
                        "open session, re-check under way",
                    ),
                    start,
                }
            }
            _ => Standing::Undecided,
        }
    }

    /// Opens session `id` (first seen in `req`) as `grant` says, then
    /// enforces the user's session limit.
    pub(crate) fn open(&self, req: &AuthRequest, id: &str, grant: Grant, now: UtcMs) {
        let mut sessions = self.lock();
        let session = sessions
            .map
            .entry(id.to_owned())
            .or_insert_with(|| Session::new(req, id, now));
        if session.state != State::Open {
            session.record.opened_at = now;
            session.record.closed_at = None;
        }
        session.record.updated_at = now;
        self.grant(&mut sessions, id, grant, now);
    }

    /// Keeps session `id` open as `grant` says, records it, and enforces
    /// the user's session limit: what an allow does to a new session and
    /// to a re-checked one alike.
    fn grant(&self, sessions: &mut Sessions, id: &str, grant: Grant, now: UtcMs) {
        let Some(session) = sessions.map.get_mut(id) else {
            return;
        };
        session.set_state(State::Open);
        session.recheck_at = now.saturating_add_ms(i64::from(grant.duration_s) * 1000);
        session.record.user_id = grant.user_id.or(session.record.user_id.take());
        session.max_sessions = grant.max_sessions;
        self.write(KvWrite::Put(session.record.clone()));
        self.enforce_limit(sessions, id, now, grant.soft);
    }

    /// Closes a session a re-decision denied (a rule or token session).
    pub(crate) fn close(&self, id: &str, now: UtcMs) {
        let mut sessions = self.lock();
        if let Some(s) = sessions.map.get_mut(id) {
            if s.state == State::Open {
                s.set_state(State::Closed);
                s.record.closed_at = Some(now);
                self.write(KvWrite::Put(s.record.clone()));
            }
        }
    }

    /// Applies the backends' answer on a new session: an allow opens it,
    /// a denial is remembered for its duration; a redirect or no data
    /// leaves it unopened.
    pub(crate) fn backends_decided(
        &self,
        req: &AuthRequest,
        id: &str,
        answer: &BackendAnswer,
        soft: bool,
        now: UtcMs,
    ) {
        if let Some(grant) = Grant::allowed_by(answer, soft) {
            self.open(req, id, grant, now);
        } else if let BackendAnswer::Deny { duration_s, .. } = answer {
            self.deny_for(req, id, *duration_s, now);
        }
    }

    /// What to send the backends to re-check session `id`; `None` when it
    /// is gone.
    pub(crate) fn recheck_query(&self, id: &str) -> Option<RecheckQuery> {
        let s = self.lock();
        let session = s.map.get(id)?;
        Some(RecheckQuery {
            req: AuthRequest {
                v: PROTO_VERSION,
                stream: session.record.stream.clone(),
                ip: session.record.ip.clone(),
                token: String::new(),
                user_agent: None,
                referer: None,
                protocol: session.record.protocol.clone(),
            },
            token: session.token.clone(),
            referer: session.referer.clone(),
        })
    }

    /// Applies a background re-check's answer to open session `id`: an
    /// allow keeps it open for the new duration, a denial closes it, and
    /// no answer keeps its state and asks again soon.
    pub(crate) fn rechecked(&self, id: &str, answer: &BackendAnswer, soft: bool, now: UtcMs) {
        let mut sessions = self.lock();
        let Some(session) = sessions.map.get_mut(id) else {
            return;
        };
        session.checking = false;
        session.record.updated_at = now;
        if let Some(grant) = Grant::allowed_by(answer, soft) {
            self.grant(&mut sessions, id, grant, now);
            return;
        }
        match answer {
            BackendAnswer::Deny { duration_s, status } => {
                info!(session = id, stream = %session.record.stream, status = *status, "backend closed an open session");
                session.set_state(State::Denied {
                    until: now.saturating_add_ms(i64::from(*duration_s) * 1000),
                });
                session.record.closed_at = Some(now);
                self.write(KvWrite::Put(session.record.clone()));
            }
            BackendAnswer::Allow { .. } | BackendAnswer::Redirect(_) | BackendAnswer::NoData(_) => {
                // (An allow was granted above.) No data: the session keeps
                // its state; ask again soon.
                debug!(
                    session = id,
                    "re-check without an answer; keeping the session open"
                );
                session.recheck_at = now.saturating_add_ms(RETRY_MS);
            }
        }
    }

    /// A backend's denial: remembered for its duration.
    fn deny_for(&self, req: &AuthRequest, id: &str, duration_s: u32, now: UtcMs) {
        let until = now.saturating_add_ms(i64::from(duration_s) * 1000);
        let mut sessions = self.lock();
        let session = sessions
            .map
            .entry(id.to_owned())
            .or_insert_with(|| Session::new(req, id, now));
        // Closed now if it was open, or is new (denied from the start).
        if session.state == State::Open || session.record.closed_at.is_none() {
            session.record.closed_at = Some(now);
        }
        session.set_state(State::Denied { until });
        self.write(KvWrite::Put(session.record.clone()));
    }

    /// `X-Max-Sessions`: closes the user's oldest open sessions beyond the
    /// limit (with soft limitation, only when the excess is seen at two
    /// checks in a row), banned for the auth duration.
    fn enforce_limit(&self, sessions: &mut Sessions, id: &str, now: UtcMs, soft: bool) {
        let Some(session) = sessions.map.get(id) else {
            return;
        };
        let (Some(user), Some(max)) = (session.record.user_id.clone(), session.max_sessions) else {
            return;
        };
        let mut open: Vec<(UtcMs, String)> = sessions
            .map
            .values()
            .filter(|s| s.state == State::Open && s.record.user_id.as_deref() == Some(&user))
            .map(|s| (s.record.opened_at, s.record.id.clone()))
            .collect();
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        if open.len() <= max {
            sessions.strikes.remove(&user);
            return;
        }
        if soft {
            let strikes = sessions.strikes.entry(user.clone()).or_insert(0);
            *strikes += 1;
            if *strikes < 2 {
                return;
            }
        }
        sessions.strikes.remove(&user);
        open.sort();
        let excess = open.len() - max;
        for (_, victim) in open.into_iter().take(excess) {
            if let Some(s) = sessions.map.get_mut(&victim) {
                let duration = (s.recheck_at.0 - s.record.opened_at.0)
                    .max(i64::from(DEFAULT_AUTH_DURATION_S) * 1000);
                s.set_state(State::Denied {
                    until: now.saturating_add_ms(duration),
                });
                s.record.closed_at = Some(now);
                warn!(session = %victim, user_id = %user, stream = %s.record.stream, "ban session due to exceeded session limit");
                self.write(KvWrite::Put(s.record.clone()));
            }
        }
    }

    /// Closes idle sessions and forgets expired denials and old closed
    /// sessions (at most every few seconds).
    fn sweep(&self, sessions: &mut Sessions, now: UtcMs) {
        if now.0 - sessions.last_sweep < SWEEP_EVERY_MS {
            return;
        }
        sessions.last_sweep = now.0;
        let mut forget = Vec::new();
        for (id, s) in &mut sessions.map {
            match s.state {
                State::Open if now.0 > s.recheck_at.0 + IDLE_MS && !s.checking => {
                    s.set_state(State::Closed);
                    s.record.closed_at = Some(now);
                    self.write(KvWrite::Put(s.record.clone()));
                }
                State::Denied { until } if until < now => forget.push(id.clone()),
                State::Closed
                    if s.record
                        .closed_at
                        .is_some_and(|c| now.0 - c.0 > KEEP_CLOSED_MS) =>
                {
                    forget.push(id.clone());
                }
                _ => {}
            }
        }
        for id in forget {
            sessions.map.remove(&id);
            self.write(KvWrite::Delete(id));
        }
    }

    fn write(&self, w: KvWrite) {
        if let Some(tx) = &self.kv {
            let _ = tx.send(w);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
