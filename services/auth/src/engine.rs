//! The decision engine: which policy a stream has, what it says about a
//! request, and the sessions it has opened.
//!
//! The one idea: a *session* (hash of stream, client address and token,
//! as the seeds define it, and of each further request field the stream's
//! policy decides on, [`PolicyReads`]) is decided once and then re-checked
//! every `X-AuthDuration`; in between, its state answers. An open session whose
//! re-check is due is answered from its state at once while the backends
//! are asked in the background, so a backend that hangs never stalls a
//! viewer who is already watching; a session that was never opened waits
//! for the backends (at most their 3 s timeout) and stays unopened if they
//! are silent. A denial by a backend is cached for its duration, so a
//! banned token does not reach the backend again.
//!
//! Because the read fields are part of the session's identity, a request
//! that differs in one (a User-Agent a `deny ua` rule refuses, after an
//! allowed one opened a session; MPEG-TS after HLS for a backend that is
//! sent the protocol) is another session, decided on its own: no state
//! answers for a field it was not decided on. Fields the policy does not
//! read are not in the key, so a securetoken session is one session
//! whatever player or protocol uses it.
//!
//! The order of a `auth://NAME` policy is the seeds': allow token, deny
//! token, allow ip, deny ip, allow user agent, deny user agent, then the
//! backends in parallel, then the default (deny unless `default: allow`).
//! A request without a token never reaches a backend or a securetoken
//! check (the seeds' `no_auto_token`): only an allow-list entry for its
//! address or user agent, or `default: allow`, lets it in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use dvr_bus::{BusError, Kv};
use dvr_common::config::{AuthBackendConfig, AuthRules, AuthSpec, BackendUrl, Config, Secret};
use dvr_common::{Clock, StreamName, UtcMs};
use dvr_proto::{
    AuthDecision, AuthReply, AuthRequest, SessionRecord, SessionUsage, Versioned, PROTO_VERSION,
};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn, Instrument};

use crate::backend::{
    BackendAnswer, BackendQuery, Backends, BACKEND_TIMEOUT, DEFAULT_AUTH_DURATION_S,
};
use crate::metrics::{self, DecidedBy};
use crate::reads::{policy_reads, PolicyReads};
use crate::securetoken::{self, constant_time_eq};

/// How long an answer for a stream without a policy may be reused.
pub const OPEN_STREAM_DURATION_S: u32 = 3600;
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

/// A stream's policy, resolved from the config.
#[derive(Clone, Debug)]
enum Policy {
    SecureToken { secret: Secret, hmac: bool },
    Lists(Arc<AuthBackendConfig>),
}

impl Policy {
    fn has_backends(&self) -> bool {
        matches!(self, Policy::Lists(c) if !c.backends.is_empty())
    }

    fn soft_limitation(&self) -> bool {
        matches!(self, Policy::Lists(c) if c.backends.iter().any(|b| b.soft_limitation))
    }
}

/// Bytes of the hash a session id keeps.
const SESSION_ID_BYTES: usize = 12;

/// The id of the session of a stream whose policy reads nothing besides
/// stream, client address and token ([`PolicyReads::NONE`]): hex of a
/// hash of the three.
pub fn session_id(stream: &str, ip: &str, token: &str) -> String {
    hash_session([stream, ip, token], [])
}

/// The id of `req`'s session when its stream's policy reads `reads`: hex
/// of a hash of stream, client address, token and each field read (an
/// absent header counts as empty, as the policies read it).
pub fn session_id_for(req: &AuthRequest, reads: PolicyReads) -> String {
    let fields = [
        (b'p', reads.protocol, req.protocol.as_str()),
        (
            b'u',
            reads.user_agent,
            req.user_agent.as_deref().unwrap_or_default(),
        ),
        (
            b'r',
            reads.referer,
            req.referer.as_deref().unwrap_or_default(),
        ),
    ];
    hash_session(
        [req.stream.as_str(), &req.ip, &req.token],
        fields
            .into_iter()
            .filter(|(_, read, _)| *read)
            .map(|(tag, _, value)| (tag, value)),
    )
}

/// The session hash. Every value is length-prefixed and every optional
/// one tagged, so no two lists of values hash the same text (a token
/// holding NUL or a header holding a tag cannot pass for other fields).
fn hash_session<'a>(always: [&str; 3], read: impl IntoIterator<Item = (u8, &'a str)>) -> String {
    fn value(h: &mut Sha256, v: &str) {
        h.update((v.len() as u64).to_le_bytes());
        h.update(v.as_bytes());
    }
    let mut h = Sha256::new();
    for v in always {
        value(&mut h, v);
    }
    for (tag, v) in read {
        h.update([tag]);
        value(&mut h, v);
    }
    hex::encode(&h.finalize()[..SESSION_ID_BYTES])
}

/// Whether `id` has the form [`session_id`] gives (so it is a safe key).
fn is_session_id(id: &str) -> bool {
    id.len() == 2 * SESSION_ID_BYTES && id.bytes().all(|b| b.is_ascii_hexdigit())
}

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

/// Decides play requests for the configured streams.
#[derive(Clone, Debug)]
pub struct Engine {
    shared: Arc<Shared>,
}

/// Every stream's policy.
#[derive(Debug, Default)]
struct Policies {
    by_stream: HashMap<StreamName, Policy>,
    /// What each policy of `by_stream` reads, by name, for a lookup by
    /// `&str` on every request ([`policy_reads`]: the same keys).
    reads: HashMap<String, PolicyReads>,
}

impl Policies {
    /// The policies of `config`'s streams. A secret whose `${VAR}` cannot
    /// be read makes its stream deny every play, and is logged.
    fn of(config: &Config) -> Self {
        let (policies, problems) = Self::resolve(config, |name| std::env::var(name).ok());
        for problem in problems {
            error!("{problem}; its plays are refused");
        }
        policies
    }

    /// The policies, and what could not be resolved (per stream).
    fn resolve(config: &Config, env: impl Fn(&str) -> Option<String>) -> (Self, Vec<String>) {
        let mut by_stream = HashMap::new();
        let mut problems = Vec::new();
        for name in config.streams.keys() {
            let policy = match config.auth_of(name) {
                None | Some(AuthSpec::Off) => continue,
                Some(AuthSpec::SecureToken { secret, hmac }) => match secret.expanded(&env) {
                    Ok(secret) => Policy::SecureToken {
                        secret,
                        hmac: *hmac,
                    },
                    Err(why) => {
                        problems.push(format!("stream {name}: securetoken key: {why}"));
                        Policy::Lists(Arc::default())
                    }
                },
                Some(AuthSpec::Named(n)) => match config.auth_backends.get(n) {
                    Some(b) => match expand_tokens(b, &env) {
                        Ok(b) => Policy::Lists(Arc::new(b)),
                        Err(why) => {
                            problems.push(format!("stream {name}: auth_backends.{n}.{why}"));
                            Policy::Lists(Arc::default())
                        }
                    },
                    // The config refuses unknown names; deny-all if one slips by.
                    None => Policy::Lists(Arc::default()),
                },
                Some(AuthSpec::Backend(url)) => Policy::Lists(Arc::new(AuthBackendConfig {
                    backends: vec![url.clone()],
                    ..AuthBackendConfig::default()
                })),
            };
            by_stream.insert(name.clone(), policy);
        }
        let policies = Self {
            reads: policy_reads(config),
            by_stream,
        };
        (policies, problems)
    }
}

/// `backends` with the `${VAR}`s of its token lists read; the first that
/// cannot be is the error (`allow.token: environment variable …`).
fn expand_tokens(
    backends: &AuthBackendConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<AuthBackendConfig, String> {
    let mut out = backends.clone();
    for (list, rules) in [("allow", &mut out.allow), ("deny", &mut out.deny)] {
        for token in &mut rules.token {
            *token = token
                .expanded(&env)
                .map_err(|why| format!("{list}.token: {why}"))?;
        }
    }
    Ok(out)
}

/// Every secret of `config`'s policies that cannot be read (a `${VAR}`
/// unset or empty), one line per stream and secret: what `dvr run` refuses
/// to start with.
pub fn unreadable_secrets(config: &Config) -> Vec<String> {
    Policies::resolve(config, |name| std::env::var(name).ok()).1
}

#[derive(Debug)]
struct Shared {
    /// Replaced whole when the streams change (streams bucket, API).
    policies: std::sync::RwLock<Policies>,
    backends: Backends,
    clock: Arc<dyn Clock>,
    sessions: Mutex<Sessions>,
    kv: Option<mpsc::UnboundedSender<KvWrite>>,
}

impl Engine {
    /// An engine for `config`'s policies; sessions are mirrored into
    /// `sessions_kv` (the [`dvr_proto::SESSIONS_KV_BUCKET`]) when given.
    /// Must be called inside a Tokio runtime.
    pub fn new(config: &Config, clock: Arc<dyn Clock>, sessions_kv: Option<Arc<dyn Kv>>) -> Self {
        Self::with_backend_timeout(config, clock, sessions_kv, BACKEND_TIMEOUT)
    }

    /// As [`Engine::new`], giving backends `timeout` to answer.
    pub fn with_backend_timeout(
        config: &Config,
        clock: Arc<dyn Clock>,
        sessions_kv: Option<Arc<dyn Kv>>,
        timeout: std::time::Duration,
    ) -> Self {
        let kv = sessions_kv.map(|kv| {
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
            shared: Arc::new(Shared {
                policies: std::sync::RwLock::new(Policies::of(config)),
                backends: Backends::new(timeout),
                clock,
                sessions: Mutex::new(Sessions::default()),
                kv,
            }),
        }
    }

    /// Whether plays of `stream` need an allow.
    pub fn protects(&self, stream: &str) -> bool {
        self.shared.policies().reads.contains_key(stream)
    }

    /// What the policy of `stream` decides on besides stream, address and
    /// token; `None` when it has no policy.
    pub fn reads(&self, stream: &str) -> Option<PolicyReads> {
        self.shared.policies().reads.get(stream).copied()
    }

    /// Takes the policies of `config`'s streams from now on (the streams
    /// bucket changed); open sessions keep their state (a policy that now
    /// reads other fields keys new requests to new sessions).
    pub fn set_policies(&self, config: &Config) {
        *self
            .shared
            .policies
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Policies::of(config);
    }

    /// The sessions this engine tracks (open, denied and recently closed).
    pub fn sessions(&self) -> Vec<SessionRecord> {
        let sessions = self.shared.lock();
        let mut out: Vec<_> = sessions.map.values().map(|s| s.record.clone()).collect();
        out.sort_by(|a, b| (a.opened_at, &a.id).cmp(&(b.opened_at, &b.id)));
        out
    }

    /// Adds the bytes a packager served to each session's record (in
    /// this engine's view and in the sessions bucket). A report for a
    /// session id that cannot be one is ignored.
    pub fn record_usage(&self, usage: &SessionUsage) {
        let now = self.shared.clock.now();
        let mut sessions = self.shared.lock();
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

    /// Decides a request, in a span of its own (the child of the asker's
    /// when the caller's context came along), and counts the decision.
    pub async fn check(&self, req: &AuthRequest) -> AuthReply {
        let span = tracing::info_span!(
            "auth.check",
            stream = %req.stream,
            protocol = %req.protocol,
            decision = tracing::field::Empty,
            by = tracing::field::Empty,
        );
        let (answer, by) = self.answer(req).instrument(span.clone()).await;
        span.record("decision", tracing::field::debug(answer.decision));
        span.record("by", tracing::field::debug(by));
        metrics::decided(req.stream.as_str(), answer.decision, by);
        answer
    }

    async fn answer(&self, req: &AuthRequest) -> (AuthReply, DecidedBy) {
        let sh = &self.shared;
        let (policy, reads) = {
            let policies = sh.policies();
            let reads = policies.reads.get(req.stream.as_str()).copied();
            (policies.by_stream.get(&req.stream).cloned(), reads)
        };
        // The fields the policy reads are part of the session's identity
        // rather than a reason to decide one session again: a session is
        // then exactly one decision, with one state, one re-check carrying
        // its own referer and protocol, and its own byte count. A player
        // keeps its User-Agent, protocol and page, so it is one session;
        // two players (or a forger trying a denied User-Agent) are two,
        // and count as two against X-Max-Sessions, as they would from two
        // tokens. Re-deciding one session instead would flip its state
        // (and its record) between the answers of the players sharing it.
        let id = session_id_for(req, reads.unwrap_or_default());
        let Some(policy) = policy else {
            let open = reply(
                AuthDecision::Allow,
                OPEN_STREAM_DURATION_S,
                &id,
                "no policy",
            );
            return (open, DecidedBy::Default);
        };
        let now = sh.clock.now();
        {
            let mut sessions = sh.lock();
            self.sweep(&mut sessions, now);
            if let Some(s) = sessions.map.get_mut(&id) {
                match s.state {
                    State::Denied { until } if until > now => {
                        let denied = reply(
                            AuthDecision::Deny,
                            secs_until(now, until),
                            &id,
                            "denied earlier",
                        );
                        return (denied, DecidedBy::Session);
                    }
                    State::Open if s.recheck_at > now => {
                        s.record.updated_at = now;
                        let open = reply(
                            AuthDecision::Allow,
                            secs_until(now, s.recheck_at),
                            &id,
                            "open session",
                        );
                        return (open, DecidedBy::Session);
                    }
                    State::Open if policy.has_backends() => {
                        s.record.updated_at = now;
                        if !s.checking {
                            s.checking = true;
                            let engine = self.clone();
                            let (id, policy) = (id.clone(), policy.clone());
                            tokio::spawn(async move { engine.recheck(&id, &policy).await });
                        }
                        let open = reply(
                            AuthDecision::Allow,
                            RECHECK_GRACE_S,
                            &id,
                            "open session, re-check under way",
                        );
                        return (open, DecidedBy::Session);
                    }
                    // A due rule or token check is cheap: decide again below.
                    _ => {}
                }
            }
        }
        self.decide(req, &id, &policy, now).await
    }

    /// A first decision (or a re-decision of a rule or token session).
    async fn decide(
        &self,
        req: &AuthRequest,
        id: &str,
        policy: &Policy,
        now: UtcMs,
    ) -> (AuthReply, DecidedBy) {
        let denied = |why: &str, by: DecidedBy| {
            self.close(id, now);
            (reply(AuthDecision::Deny, 0, id, why), by)
        };
        match policy {
            Policy::SecureToken { secret, hmac } => {
                if req.token.is_empty() {
                    return denied("no token", DecidedBy::Default);
                }
                match securetoken::verify(
                    secret.expose(),
                    *hmac,
                    &req.token,
                    req.stream.as_str(),
                    &req.ip,
                    now.as_secs(),
                ) {
                    Ok(end) => {
                        let left = u32::try_from(end - now.as_secs() + 1).unwrap_or(u32::MAX);
                        let duration = DEFAULT_AUTH_DURATION_S.min(left);
                        self.open(req, id, duration, None, None, false, now);
                        let allowed = reply(AuthDecision::Allow, duration, id, "securetoken valid");
                        (allowed, DecidedBy::SecureToken)
                    }
                    Err(e) => denied(&e.to_string(), DecidedBy::SecureToken),
                }
            }
            Policy::Lists(config) => {
                if let Some((allow, why)) = by_lists(config, req) {
                    return if allow {
                        self.open(req, id, DEFAULT_AUTH_DURATION_S, None, None, false, now);
                        let allowed = reply(AuthDecision::Allow, DEFAULT_AUTH_DURATION_S, id, &why);
                        (allowed, DecidedBy::List)
                    } else {
                        denied(&why, DecidedBy::List)
                    };
                }
                if config.backends.is_empty() {
                    return if config.allow_default {
                        self.open(req, id, DEFAULT_AUTH_DURATION_S, None, None, false, now);
                        let allowed = reply(
                            AuthDecision::Allow,
                            DEFAULT_AUTH_DURATION_S,
                            id,
                            "allow default",
                        );
                        (allowed, DecidedBy::Default)
                    } else {
                        denied("no rule allows it", DecidedBy::Default)
                    };
                }
                if req.token.is_empty() {
                    return denied("no token", DecidedBy::Default);
                }
                let answer = self
                    .ask(
                        &config.backends,
                        req,
                        &req.token,
                        req.referer.as_deref().unwrap_or_default(),
                        "new_session",
                    )
                    .await;
                let now = self.shared.clock.now();
                let answer = match answer {
                    BackendAnswer::Allow {
                        duration_s,
                        user_id,
                        max_sessions,
                        backend,
                    } => {
                        self.open(
                            req,
                            id,
                            duration_s,
                            user_id,
                            max_sessions,
                            policy.soft_limitation(),
                            now,
                        );
                        reply(
                            AuthDecision::Allow,
                            duration_s,
                            id,
                            &format!("backend {backend} allowed"),
                        )
                    }
                    BackendAnswer::Deny { duration_s, status } => {
                        self.deny_for(req, id, duration_s, now);
                        reply(
                            AuthDecision::Deny,
                            duration_s,
                            id,
                            &format!("backend denied ({status})"),
                        )
                    }
                    BackendAnswer::Redirect(location) => {
                        let mut r = reply(AuthDecision::Redirect, 0, id, "backend redirected");
                        r.location = Some(location);
                        r
                    }
                    BackendAnswer::NoData(why) => {
                        reply(AuthDecision::Deny, 0, id, &format!("not opened: {why}"))
                    }
                };
                (answer, DecidedBy::Backend)
            }
        }
    }

    async fn ask(
        &self,
        backends: &[BackendUrl],
        req: &AuthRequest,
        token: &str,
        referer: &str,
        request_type: &'static str,
    ) -> BackendAnswer {
        let (total, stream) = {
            let s = self.shared.lock();
            (s.open_count(None), s.open_count(Some(&req.stream)))
        };
        let query = BackendQuery {
            token,
            name: req.stream.as_str(),
            ip: &req.ip,
            referer,
            total_clients: total,
            stream_clients: stream,
            request_type,
            protocol: &req.protocol,
        };
        let span = tracing::info_span!(
            "auth.backends",
            request_type,
            backends = backends.len(),
            result = tracing::field::Empty,
        );
        let started = std::time::Instant::now();
        let answer = self
            .shared
            .backends
            .ask(backends, &query)
            .instrument(span.clone())
            .await;
        let result = answer.result();
        span.record("result", result);
        metrics::backend_answered(result, started.elapsed());
        answer
    }

    /// The background re-check of an open session.
    async fn recheck(&self, id: &str, policy: &Policy) {
        let Policy::Lists(config) = policy else {
            return;
        };
        let (req, token, referer) = {
            let s = self.shared.lock();
            let Some(session) = s.map.get(id) else { return };
            let req = AuthRequest {
                v: PROTO_VERSION,
                stream: session.record.stream.clone(),
                ip: session.record.ip.clone(),
                token: String::new(),
                user_agent: None,
                referer: None,
                protocol: session.record.protocol.clone(),
            };
            (req, session.token.clone(), session.referer.clone())
        };
        let answer = self
            .ask(&config.backends, &req, &token, &referer, "update_session")
            .await;
        let now = self.shared.clock.now();
        let mut sessions = self.shared.lock();
        let Some(session) = sessions.map.get_mut(id) else {
            return;
        };
        session.checking = false;
        session.record.updated_at = now;
        match answer {
            BackendAnswer::Allow {
                duration_s,
                user_id,
                max_sessions,
                ..
            } => {
                session.set_state(State::Open);
                session.recheck_at = now.saturating_add_ms(i64::from(duration_s) * 1000);
                session.record.user_id = user_id.or(session.record.user_id.take());
                session.max_sessions = max_sessions;
                let record = session.record.clone();
                self.write(KvWrite::Put(record));
                self.enforce_limit(&mut sessions, id, now, policy.soft_limitation());
            }
            BackendAnswer::Deny { duration_s, status } => {
                info!(session = id, stream = %req.stream, status, "backend closed an open session");
                session.set_state(State::Denied {
                    until: now.saturating_add_ms(i64::from(duration_s) * 1000),
                });
                session.record.closed_at = Some(now);
                self.write(KvWrite::Put(session.record.clone()));
            }
            BackendAnswer::Redirect(_) | BackendAnswer::NoData(_) => {
                // No data: the session keeps its state; ask again soon.
                debug!(
                    session = id,
                    "re-check without an answer; keeping the session open"
                );
                session.recheck_at = now.saturating_add_ms(RETRY_MS);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn open(
        &self,
        req: &AuthRequest,
        id: &str,
        duration_s: u32,
        user_id: Option<String>,
        max_sessions: Option<u32>,
        soft: bool,
        now: UtcMs,
    ) {
        let mut sessions = self.shared.lock();
        let recheck_at = now.saturating_add_ms(i64::from(duration_s) * 1000);
        let session = sessions
            .map
            .entry(id.to_owned())
            .or_insert_with(|| Session::new(req, id, now));
        if session.state != State::Open {
            session.record.opened_at = now;
            session.record.closed_at = None;
        }
        session.set_state(State::Open);
        session.recheck_at = recheck_at;
        session.record.updated_at = now;
        session.record.user_id = user_id.or(session.record.user_id.take());
        session.max_sessions = max_sessions;
        self.write(KvWrite::Put(session.record.clone()));
        self.enforce_limit(&mut sessions, id, now, soft);
    }

    /// A backend's denial: remembered for its duration.
    fn deny_for(&self, req: &AuthRequest, id: &str, duration_s: u32, now: UtcMs) {
        let until = now.saturating_add_ms(i64::from(duration_s) * 1000);
        let mut sessions = self.shared.lock();
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

    /// Closes a session a re-decision denied (a rule or token session).
    fn close(&self, id: &str, now: UtcMs) {
        let mut sessions = self.shared.lock();
        if let Some(s) = sessions.map.get_mut(id) {
            if s.state == State::Open {
                s.set_state(State::Closed);
                s.record.closed_at = Some(now);
                self.write(KvWrite::Put(s.record.clone()));
            }
        }
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
        if let Some(tx) = &self.shared.kv {
            let _ = tx.send(w);
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn policies(&self) -> std::sync::RwLockReadGuard<'_, Policies> {
        self.policies.read().unwrap_or_else(PoisonError::into_inner)
    }
}

fn secs_until(now: UtcMs, until: UtcMs) -> u32 {
    u32::try_from((until.0 - now.0 + 999) / 1000).unwrap_or(u32::MAX)
}

fn reply(decision: AuthDecision, duration_s: u32, id: &str, reason: &str) -> AuthReply {
    AuthReply {
        v: PROTO_VERSION,
        decision,
        duration_s,
        session: id.to_owned(),
        location: None,
        reason: reason.to_owned(),
    }
}

/// The seeds' list order; `None` when no list decides.
fn by_lists(config: &AuthBackendConfig, req: &AuthRequest) -> Option<(bool, String)> {
    let token_in = |rules: &AuthRules| {
        !req.token.is_empty()
            && rules
                .token
                .iter()
                .any(|t| constant_time_eq(t.expose().as_bytes(), req.token.as_bytes()))
    };
    let ip: Option<IpAddr> = req.ip.parse().ok();
    let ip_in = |rules: &AuthRules| ip.is_some_and(|ip| rules.ip.iter().any(|n| n.contains(ip)));
    let ua = req.user_agent.as_deref().unwrap_or_default();
    let ua_in =
        |rules: &AuthRules| !ua.is_empty() && rules.ua.iter().any(|u| ua.contains(u.as_str()));
    let (allow, deny) = (&config.allow, &config.deny);
    if token_in(allow) {
        return Some((true, "allow token".into()));
    }
    if token_in(deny) {
        return Some((false, "deny token".into()));
    }
    if ip_in(allow) {
        return Some((true, "allow ip".into()));
    }
    if ip_in(deny) {
        return Some((false, "deny ip".into()));
    }
    if ua_in(allow) {
        return Some((true, "allow ua".into()));
    }
    if ua_in(deny) {
        return Some((false, "deny ua".into()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "version: 1\n\
        auth_backends:\n  main: { allow: { token: [ \"${ALLOWED}\", \"plain\" ] } }\n\
        streams:\n\
        \x20 news: { inputs: [ \"udp://239.0.0.1:1\" ], auth: \"securetoken://pre-${KEY}\" }\n\
        \x20 ort: { inputs: [ \"udp://239.0.0.1:2\" ], auth: \"auth://main\" }\n";

    fn resolve(vars: &[(&str, &str)]) -> (Policies, Vec<String>) {
        let config = Config::from_yaml_str(CONFIG, "t.yaml").unwrap();
        Policies::resolve(&config, |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    fn policy<'a>(p: &'a Policies, stream: &str) -> &'a Policy {
        &p.by_stream[&StreamName::new(stream).unwrap()]
    }

    fn request(
        token: &str,
        ua: Option<&str>,
        referer: Option<&str>,
        protocol: &str,
    ) -> AuthRequest {
        AuthRequest {
            v: PROTO_VERSION,
            stream: StreamName::new("news").unwrap(),
            ip: "192.0.2.1".into(),
            token: token.into(),
            user_agent: ua.map(str::to_owned),
            referer: referer.map(str::to_owned),
            protocol: protocol.into(),
        }
    }

    #[test]
    fn a_session_is_keyed_on_the_fields_its_policy_reads() {
        let base = request("t", Some("MAG"), Some("https://a.example/"), "hls");
        let id = |req: &AuthRequest, reads| session_id_for(req, reads);
        let none = PolicyReads::NONE;
        assert_eq!(id(&base, none), session_id("news", "192.0.2.1", "t"));
        let others = [
            (
                request("t", Some("VLC"), Some("https://a.example/"), "hls"),
                "ua",
            ),
            (
                request("t", Some("MAG"), Some("https://b.example/"), "hls"),
                "referer",
            ),
            (
                request("t", Some("MAG"), Some("https://a.example/"), "mpegts"),
                "protocol",
            ),
        ];
        for (other, field) in &others {
            assert_eq!(id(other, none), id(&base, none), "{field} not read");
            let reads = PolicyReads {
                protocol: *field == "protocol",
                user_agent: *field == "ua",
                referer: *field == "referer",
            };
            assert_ne!(id(other, reads), id(&base, reads), "{field} read");
            assert_ne!(
                id(&base, reads),
                id(&base, none),
                "{field} read is another key"
            );
            assert!(is_session_id(&id(other, reads)), "a valid key");
        }
        // An absent header reads as empty, as the rules read it.
        assert_eq!(
            id(&request("t", None, None, "hls"), PolicyReads::ALL),
            id(&request("t", Some(""), Some(""), "hls"), PolicyReads::ALL)
        );
        // No value can pass for a neighbour: lengths and tags keep them apart.
        let ua = PolicyReads {
            user_agent: true,
            ..none
        };
        let referer = PolicyReads {
            referer: true,
            ..none
        };
        let x = request("t", Some("x"), None, "hls");
        let y = request("t", None, Some("x"), "hls");
        assert_ne!(id(&x, ua), id(&y, referer));
        assert_ne!(
            session_id("news", "192.0.2.1", "a\0b"),
            session_id("news", "192.0.2.1\0a", "b")
        );
    }

    #[test]
    fn secrets_are_read_from_the_environment() {
        let (p, problems) = resolve(&[("KEY", "k3y"), ("ALLOWED", "t0ken")]);
        assert!(problems.is_empty(), "{problems:?}");
        match policy(&p, "news") {
            Policy::SecureToken { secret, hmac } => {
                assert_eq!(secret.expose(), "pre-k3y");
                assert!(!hmac);
            }
            other => panic!("{other:?}"),
        }
        match policy(&p, "ort") {
            Policy::Lists(c) => {
                let tokens: Vec<_> = c.allow.token.iter().map(Secret::expose).collect();
                assert_eq!(tokens, ["t0ken", "plain"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unreadable_secret_refuses_every_play_of_its_stream() {
        let (p, problems) = resolve(&[]);
        assert_eq!(
            problems,
            [
                "stream news: securetoken key: environment variable KEY is not set",
                "stream ort: auth_backends.main.allow.token: environment variable ALLOWED is not set",
            ]
        );
        for stream in ["news", "ort"] {
            assert!(p.reads.contains_key(stream), "{stream} stays protected");
            match policy(&p, stream) {
                Policy::Lists(c) => {
                    assert!(c.backends.is_empty() && !c.allow_default && c.allow.token.is_empty());
                }
                other => panic!("{stream}: {other:?}"),
            }
        }
        let problems = format!("{problems:?}");
        assert!(!problems.contains("pre-"), "no part of a key is printed");
    }
}
