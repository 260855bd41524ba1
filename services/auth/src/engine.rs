//! The decision engine: joins a stream's policy to the sessions it has
//! opened, and asks the HTTP backends when the policy leaves a decision to
//! them.
//!
//! The one idea: a request is answered by its session's state while that
//! state holds (the session table, `sessions.rs`), and otherwise by its
//! stream's policy (pure, `policy.rs`); only when the policy says
//! `Verdict::AskBackends` does a request wait on the network. An open
//! session whose re-check is due is answered at once while the backends
//! are asked in a task of its own.
//!
//! The fields a policy reads ([`PolicyReads`]) are part of a session's
//! identity: a request that differs in one (a User-Agent a `deny ua` rule
//! refuses, after an allowed one opened a session; MPEG-TS after HLS for a
//! backend that is sent the protocol) is another session, decided on its
//! own: no state answers for a field it was not decided on. Fields the
//! policy does not read are not in the key, so a securetoken session is
//! one session whatever player or protocol uses it.

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use dvr_bus::Kv;
use dvr_common::config::{BackendUrl, Config};
use dvr_common::{Clock, UtcMs};
use dvr_proto::{AuthDecision, AuthReply, AuthRequest, SessionRecord, SessionUsage};
use tracing::{error, Instrument};

use crate::backend::{BackendAnswer, BackendQuery, Backends, BACKEND_TIMEOUT};
use crate::metrics::{self, DecidedBy};
use crate::policy::{backend_reply, reply, Policies, Policy, Verdict};
use crate::sessions::{Grant, SessionTable, Standing};
use dvr_common::config::PolicyReads;

pub use crate::policy::{session_id, session_id_for, OPEN_STREAM_DURATION_S};
pub use crate::sessions::RECHECK_GRACE_S;

/// Decides play requests for the configured streams.
#[derive(Clone, Debug)]
pub struct Engine {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// Replaced whole when the streams change (streams bucket, API).
    policies: RwLock<Policies>,
    backends: Backends,
    clock: Arc<dyn Clock>,
    sessions: SessionTable,
}

/// The policies of `config`'s streams, secrets read from the environment.
/// A secret whose `${VAR}` cannot be read makes its stream deny every
/// play, and is logged.
fn load_policies(config: &Config) -> Policies {
    let (policies, problems) = Policies::resolve(config, |name| std::env::var(name).ok());
    for problem in problems {
        error!("{problem}; its plays are refused");
    }
    policies
}

/// Every secret of `config`'s policies that cannot be read (a `${VAR}`
/// unset or empty), one line per stream and secret: what `dvr run` refuses
/// to start with.
pub fn unreadable_secrets(config: &Config) -> Vec<String> {
    Policies::resolve(config, |name| std::env::var(name).ok()).1
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
        Self {
            shared: Arc::new(Shared {
                policies: RwLock::new(load_policies(config)),
                backends: Backends::new(timeout),
                clock,
                sessions: SessionTable::new(sessions_kv),
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
            .unwrap_or_else(PoisonError::into_inner) = load_policies(config);
    }

    /// The sessions this engine tracks (open, denied and recently closed).
    pub fn sessions(&self) -> Vec<SessionRecord> {
        self.shared.sessions.list()
    }

    /// Adds the bytes a packager served to each session's record (in
    /// this engine's view and in the sessions bucket). A report for a
    /// session id that cannot be one is ignored.
    pub fn record_usage(&self, usage: &SessionUsage) {
        let now = self.shared.clock.now();
        self.shared.sessions.record_usage(usage, now);
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
        match sh.sessions.standing(&id, now, policy.has_backends()) {
            Standing::Answered(reply) => return (reply, DecidedBy::Session),
            Standing::Rechecking { reply, start } => {
                if start {
                    let engine = self.clone();
                    let (id, policy) = (id.clone(), policy.clone());
                    tokio::spawn(async move { engine.recheck(&id, &policy).await });
                }
                return (reply, DecidedBy::Session);
            }
            Standing::Undecided => {}
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
        let sessions = &self.shared.sessions;
        match policy.decide(req, now) {
            Verdict::Allow {
                duration_s,
                why,
                by,
            } => {
                sessions.open(req, id, Grant::plain(duration_s), now);
                (reply(AuthDecision::Allow, duration_s, id, &why), by)
            }
            Verdict::Deny { why, by } => {
                sessions.close(id, now);
                (reply(AuthDecision::Deny, 0, id, &why), by)
            }
            Verdict::AskBackends(backends) => {
                let referer = req.referer.as_deref().unwrap_or_default();
                let answer = self
                    .ask(backends, req, &req.token, referer, "new_session")
                    .await;
                let now = self.shared.clock.now();
                sessions.backends_decided(req, id, &answer, policy.soft_limitation(), now);
                (backend_reply(&answer, id), DecidedBy::Backend)
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
        let (total, stream) = self.shared.sessions.open_counts(&req.stream);
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
        let Some(query) = self.shared.sessions.recheck_query(id) else {
            return;
        };
        let answer = self
            .ask(
                &config.backends,
                &query.req,
                &query.token,
                &query.referer,
                "update_session",
            )
            .await;
        let now = self.shared.clock.now();
        self.shared
            .sessions
            .rechecked(id, &answer, policy.soft_limitation(), now);
    }
}

impl Shared {
    fn policies(&self) -> RwLockReadGuard<'_, Policies> {
        self.policies.read().unwrap_or_else(PoisonError::into_inner)
    }
}
