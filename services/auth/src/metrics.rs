//! The auth service's Prometheus metrics: decisions, how long backends
//! take, and the sessions open now.
//!
//! Decisions are labelled by stream, by what was decided and by what
//! decided it (a handful of fixed values), so an operator can tell a
//! backend that started denying from viewers with expired tokens. Backend
//! latency has no per-backend label: backend URLs may carry credentials,
//! and a slow one shows in the `no_data` results and the log, which names
//! it with the credentials masked.

use std::sync::LazyLock;
use std::time::Duration;

use dvr_proto::AuthDecision;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;

/// What decided a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecidedBy {
    /// The session's state (open, or denied earlier), no check made.
    Session,
    /// A securetoken check.
    SecureToken,
    /// An allow or deny list (token, address, user agent).
    List,
    /// The HTTP backends.
    Backend,
    /// The policy's default (`default: allow`, or deny), or a request
    /// without a token where one is needed.
    Default,
}

impl DecidedBy {
    fn label(self) -> &'static str {
        match self {
            DecidedBy::Session => "session",
            DecidedBy::SecureToken => "securetoken",
            DecidedBy::List => "list",
            DecidedBy::Backend => "backend",
            DecidedBy::Default => "default",
        }
    }
}

/// A decision's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// Stream name.
    pub stream: String,
    /// `allow`, `deny` or `redirect`.
    pub decision: &'static str,
    /// `session`, `securetoken`, `list`, `backend` or `default`.
    pub by: &'static str,
}

/// A backend answer's class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `allow`, `deny`, `redirect` or `no_data` (an error status, no
    /// answer in time, or no connection).
    pub result: &'static str,
}

/// The stream's name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabel {
    /// Stream name.
    pub stream: String,
}

#[derive(Debug)]
struct AuthMetrics {
    decisions: Family<DecisionLabels, Counter>,
    backend_seconds: Family<ResultLabel, Histogram, fn() -> Histogram>,
    open_sessions: Family<StreamLabel, Gauge>,
}

fn backend_histogram() -> Histogram {
    Histogram::new(dvr_telemetry::metrics::request_seconds_buckets())
}

static METRICS: LazyLock<AuthMetrics> = LazyLock::new(|| {
    let m = AuthMetrics {
        decisions: Family::default(),
        backend_seconds: Family::new_with_constructor(backend_histogram),
        open_sessions: Family::default(),
    };
    dvr_telemetry::metrics::register(|r| {
        r.register(
            "dvr_auth_decisions",
            "Play requests decided, by stream, decision and what decided it",
            m.decisions.clone(),
        );
        r.register_with_unit(
            "dvr_auth_backend_request_duration",
            "Time for the HTTP backends' combined answer to one query, by result",
            Unit::Seconds,
            m.backend_seconds.clone(),
        );
        r.register(
            "dvr_auth_open_sessions",
            "Play sessions open now, by stream",
            m.open_sessions.clone(),
        );
    });
    m
});

/// Registers the auth families, so they are listed before the first play.
pub fn register() {
    LazyLock::force(&METRICS);
}

/// Counts a decision.
pub fn decided(stream: &str, decision: AuthDecision, by: DecidedBy) {
    let decision = match decision {
        AuthDecision::Allow => "allow",
        AuthDecision::Deny => "deny",
        AuthDecision::Redirect => "redirect",
    };
    METRICS
        .decisions
        .get_or_create(&DecisionLabels {
            stream: stream.to_owned(),
            decision,
            by: by.label(),
        })
        .inc();
}

/// Times one query of the backends.
pub fn backend_answered(result: &'static str, took: Duration) {
    METRICS
        .backend_seconds
        .get_or_create(&ResultLabel { result })
        .observe(took.as_secs_f64());
}

/// A session of `stream` opened (`+1`) or stopped being open (`-1`).
pub fn open_sessions_changed(stream: &str, by: i64) {
    METRICS
        .open_sessions
        .get_or_create(&StreamLabel {
            stream: stream.to_owned(),
        })
        .inc_by(by);
}
