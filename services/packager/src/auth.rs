//! Play authorization in front of every playback answer: no byte of a
//! stream with a policy leaves without an allow.
//!
//! The [`Gate`] is a middleware layer, so no handler can forget it. It
//! takes the session's parts from the request (the stream from the path,
//! `?token=`, the client address, `User-Agent`, `Referer`, the protocol
//! from the URL form) and asks an [`Authorizer`] (the engine itself in
//! embedded mode, the auth service over the bus otherwise) for the first
//! request of a session; the answer is kept for the duration it carries,
//! so a cached allow costs a map lookup and no round trip. When the
//! authorizer cannot be reached, a session that was allowed keeps playing
//! a little longer and one that never was is refused.
//!
//! The player gets a bare `403 Forbidden` (or a redirect the backend
//! asked for): why is written to the log, for the operator, never the
//! token.
//!
//! An allowed answer carries its session's [`SessionMeter`] in the
//! response's extensions; the metrics layer, outermost, counts into it the
//! body bytes as the client gets them (after gzip, `304` and ranges). The
//! gate reports what its sessions served to the authorizer every few
//! seconds, in one message for all of them, and keeps what a report could
//! not deliver for the next one.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once, PoisonError, RwLock, Weak};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dvr_auth::Authorizer;
use dvr_common::StreamName;
use dvr_proto::{AuthDecision, AuthRequest, SessionBytes, SessionUsage, PROTO_VERSION};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::url::{self, Form};

/// How long a session that was allowed keeps playing while the auth
/// service cannot be reached, before it is asked again.
const UNREACHABLE_GRACE: Duration = Duration::from_secs(10);
/// Above this many cached sessions, expired ones are dropped.
const PRUNE_ABOVE: usize = 100_000;
/// How often the bytes sessions served are reported.
pub const USAGE_REPORT_EVERY: Duration = Duration::from_secs(10);

/// The bytes one allowed session served that are not reported yet.
#[derive(Debug)]
pub struct SessionMeter {
    session: String,
    unreported: AtomicU64,
}

impl SessionMeter {
    fn new(session: String) -> Self {
        Self {
            session,
            unreported: AtomicU64::new(0),
        }
    }

    /// Counts `bytes` sent in the session.
    pub fn add(&self, bytes: u64) {
        self.unreported.fetch_add(bytes, Ordering::Relaxed);
    }

    fn pending(&self) -> bool {
        self.unreported.load(Ordering::Relaxed) > 0
    }
}

/// The session key: (stream, ip, token), as the seeds define it, in one
/// string (`stream\nip\ntoken`; none of the three holds a newline once
/// parsed) so a cached answer costs one allocation to find.
type SessionKey = String;

fn session_key(stream: &str, ip: IpAddr, token: &str) -> SessionKey {
    use std::fmt::Write as _;
    let mut key = String::with_capacity(stream.len() + token.len() + 42);
    let _ = write!(key, "{stream}\n{ip}\n{token}");
    key
}

#[derive(Clone, Debug)]
struct Cached {
    decision: AuthDecision,
    until: Instant,
    location: Option<String>,
    /// Present for an allow.
    meter: Option<Arc<SessionMeter>>,
}

/// The authorization layer of the packager's router.
#[derive(Debug)]
pub struct Gate {
    authorizer: Arc<dyn Authorizer>,
    trust_forwarded_for: bool,
    cache: RwLock<HashMap<SessionKey, Cached>>,
    report_every: Duration,
    reporting: Once,
}

impl Gate {
    /// A gate asking `authorizer`; with `trust_forwarded_for` the client
    /// address is the last `X-Forwarded-For` entry (behind a proxy that
    /// sets it), else the peer's.
    pub fn new(authorizer: Arc<dyn Authorizer>, trust_forwarded_for: bool) -> Self {
        Self {
            authorizer,
            trust_forwarded_for,
            cache: RwLock::default(),
            report_every: USAGE_REPORT_EVERY,
            reporting: Once::new(),
        }
    }

    /// Reports usage every `every` instead of [`USAGE_REPORT_EVERY`].
    #[must_use]
    pub fn with_usage_reports_every(mut self, every: Duration) -> Self {
        self.report_every = every;
        self
    }

    /// Sends the authorizer the bytes each session served since the last
    /// report; what does not arrive is kept for the next one. The gate
    /// calls this every [`USAGE_REPORT_EVERY`] once it allowed a play; a
    /// service that stops calls it once more.
    pub async fn report_usage(&self) {
        let taken: Vec<(Arc<SessionMeter>, u64)> = self
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter_map(|c| c.meter.as_ref())
            .filter_map(|m| {
                let bytes = m.unreported.swap(0, Ordering::Relaxed);
                (bytes > 0).then(|| (Arc::clone(m), bytes))
            })
            .collect();
        if taken.is_empty() {
            return;
        }
        let usage = SessionUsage {
            v: PROTO_VERSION,
            sessions: taken
                .iter()
                .map(|(m, bytes)| SessionBytes {
                    session: m.session.clone(),
                    bytes: *bytes,
                })
                .collect(),
        };
        if let Err(e) = self.authorizer.report_usage(&usage).await {
            debug!(error = %e, sessions = taken.len(), "usage report not delivered; kept for the next");
            for (meter, bytes) in taken {
                meter.add(bytes);
            }
        }
    }

    /// Starts the periodic usage reports (once), in a task that ends when
    /// the gate is dropped.
    fn start_reports(self: &Arc<Self>) {
        self.reporting.call_once(|| {
            let gate: Weak<Self> = Arc::downgrade(self);
            let every = self.report_every;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(gate) = gate.upgrade() else { break };
                    gate.report_usage().await;
                }
            });
        });
    }

    fn cached(&self, key: &SessionKey) -> Option<Cached> {
        self.cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    fn remember(&self, key: SessionKey, entry: Cached) {
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        if cache.len() > PRUNE_ABOVE {
            let now = Instant::now();
            cache.retain(|_, c| c.until > now || c.meter.as_ref().is_some_and(|m| m.pending()));
        }
        cache.insert(key, entry);
    }

    fn client_ip(&self, request: &Request) -> Option<IpAddr> {
        if self.trust_forwarded_for {
            let forwarded = request
                .headers()
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|a| a.trim().parse::<IpAddr>().ok())
                .next_back();
            if forwarded.is_some() {
                return forwarded;
            }
        }
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_canonical())
    }
}

/// The middleware (`axum::middleware::from_fn_with_state`).
pub async fn authorize(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    // What is not a playback URL of a valid stream gets the handler's 400
    // or 404, which serves no stream bytes.
    let Ok(playback) = url::parse(&path) else {
        return next.run(request).await;
    };
    // Only valid names are protected, so what passes here is no stream.
    if !gate.authorizer.protects(playback.stream) {
        return next.run(request).await;
    }
    let stream = playback.stream;
    let protocol = protocol(playback.form);
    let token = token(request.uri().query());
    let Some(ip) = gate.client_ip(&request) else {
        warn!(stream, "refusing a play request without a client address");
        return forbidden();
    };
    let key = session_key(stream, ip, &token);
    let now = Instant::now();
    let stale = match gate.cached(&key) {
        Some(c) if c.until > now => return answer(c, request, next).await,
        other => other,
    };
    let Ok(stream_name) = StreamName::new(stream) else {
        return forbidden();
    };
    let headers = request.headers();
    let ask = AuthRequest {
        v: PROTO_VERSION,
        stream: stream_name.clone(),
        ip: ip.to_string(),
        token,
        user_agent: header_text(headers, header::USER_AGENT),
        referer: header_text(headers, header::REFERER),
        protocol: protocol.into(),
    };
    let decided = match gate.authorizer.check(&ask).await {
        Ok(reply) => {
            if reply.decision != AuthDecision::Allow {
                info!(stream = %stream_name, ip = %ip, session = %reply.session, decision = ?reply.decision, reason = %reply.reason, "play refused");
            }
            // The session keeps its meter across re-checks, so bytes not
            // yet reported stay counted.
            let meter = (reply.decision == AuthDecision::Allow).then(|| {
                stale
                    .as_ref()
                    .and_then(|c| c.meter.clone())
                    .filter(|m| m.session == reply.session)
                    .unwrap_or_else(|| Arc::new(SessionMeter::new(reply.session.clone())))
            });
            if meter.is_some() {
                gate.start_reports();
            }
            Cached {
                decision: reply.decision,
                until: now + Duration::from_secs(u64::from(reply.duration_s)),
                location: reply.location,
                meter,
            }
        }
        Err(e) => match stale.filter(|c| c.decision == AuthDecision::Allow) {
            Some(mut kept) => {
                warn!(stream = %stream_name, ip = %ip, error = %e, "auth unreachable; the open session keeps playing");
                kept.until = now + UNREACHABLE_GRACE;
                kept
            }
            None => {
                warn!(stream = %stream_name, ip = %ip, error = %e, "auth unreachable; play refused");
                return (StatusCode::SERVICE_UNAVAILABLE, "503 Service Unavailable\n")
                    .into_response();
            }
        },
    };
    if decided.until > now {
        gate.remember(key, decided.clone());
    }
    answer(decided, request, next).await
}

/// Serves (or refuses) as `decided` says; it is the caller's copy, so the
/// meter moves into the response without another reference count.
async fn answer(decided: Cached, request: Request, next: Next) -> Response {
    match (decided.decision, &decided.location) {
        (AuthDecision::Allow, _) => {
            let mut response = next.run(request).await;
            if let Some(meter) = decided.meter {
                response.extensions_mut().insert(meter);
            }
            response
        }
        (AuthDecision::Redirect, Some(location)) => match HeaderValue::from_str(location) {
            Ok(v) => {
                let mut response = Response::new(Body::empty());
                *response.status_mut() = StatusCode::FOUND;
                response.headers_mut().insert(header::LOCATION, v);
                response
            }
            Err(_) => forbidden(),
        },
        _ => forbidden(),
    }
}

fn forbidden() -> Response {
    (StatusCode::FORBIDDEN, "403 Forbidden\n").into_response()
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The `token` query parameter, or empty.
fn token(query: Option<&str>) -> String {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The seeds' `type` of a URL form.
fn protocol(form: Form) -> &'static str {
    match form {
        Form::LiveMpegts
        | Form::RangeMpegts { .. }
        | Form::TimeshiftAbsMpegts { .. }
        | Form::TimeshiftRelMpegts { .. } => "mpegts",
        Form::LiveDash | Form::RangeDash { .. } => "dash",
        Form::RangeMp4 { .. } => "mp4",
        _ => "hls",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_protocols() {
        assert_eq!(token(Some("a=1&token=t%2B1&b=2")), "t+1");
        assert_eq!(token(None), "");
        assert_eq!(protocol(url::parse("/ch/index.m3u8").unwrap().form), "hls");
        assert_eq!(protocol(url::parse("/ch/mpegts").unwrap().form), "mpegts");
        assert_eq!(
            protocol(url::parse("/ch/archive-1700000000-60.mp4").unwrap().form),
            "mp4"
        );
    }
}
