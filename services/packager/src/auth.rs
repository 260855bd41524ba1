//! Play authorization in front of every playback answer: no byte of a
//! stream with a policy leaves without an allow.
//!
//! The [`Gate`] is a middleware layer, so no handler can forget it. It
//! takes the session's parts from the request (the stream from the path,
//! `?token=`, the client address, `User-Agent`, `Referer`, the protocol
//! from the URL form) and asks an [`Authorizer`] (the engine itself in
//! embedded mode, the auth service over the bus otherwise) for the first
//! request of a session; the answer is kept for the duration it carries,
//! so a cached allow costs no round trip. It costs no allocation either:
//! the session is found by a keyed hash of its parts, read in place from
//! the request, in a cache sharded by worker thread (see [`cache`]),
//! because a cached allow is to cost within 5 % of no auth at all. When the
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

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once, Weak};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dvr_bus::Authorizer;
use dvr_common::StreamName;
use dvr_edge::ClientAddr;
use dvr_proto::{AuthDecision, AuthRequest, SessionBytes, SessionUsage, PROTO_VERSION};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::url::{self, Form};

mod cache;

use cache::{Cached, Found, ReadFields, SessionCache, SessionKey};

/// How long a session that was allowed keeps playing while the auth
/// service cannot be reached, before it is asked again.
const UNREACHABLE_GRACE: Duration = Duration::from_secs(10);
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

/// The authorization layer of the packager's router.
#[derive(Debug)]
pub struct Gate {
    authorizer: Arc<dyn Authorizer>,
    cache: SessionCache,
    report_every: Duration,
    reporting: Once,
}

impl Gate {
    /// A gate asking `authorizer`. The client address is the one the
    /// edge resolved ([`ClientAddr`]), else the TCP peer's.
    pub fn new(authorizer: Arc<dyn Authorizer>) -> Self {
        Self {
            authorizer,
            cache: SessionCache::default(),
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
            .meters()
            .into_iter()
            .filter_map(|m| {
                let bytes = m.unreported.swap(0, Ordering::Relaxed);
                (bytes > 0).then_some((m, bytes))
            })
            .collect();
        if taken.is_empty() {
            return;
        }
        let usage = SessionUsage {
            v: PROTO_VERSION,
            sessions: per_session(&taken),
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

    /// The client: as the edge resolved it through the trusted proxies
    /// (`http.trusted_proxies`), else the TCP peer.
    fn client_ip(request: &Request) -> Option<IpAddr> {
        ClientAddr::of(request.extensions()).map(|c| c.0)
    }
}

/// What the gate knows of a request before it asks anyone.
enum Lookup {
    /// Not a play of a protected stream: the handler answers.
    Unprotected,
    /// The session's answer is cached and fresh.
    Cached(Cached),
    /// A play that cannot be a session (no client address, a bad name).
    Refused,
    /// The authorizer must decide (the first request of a session, so
    /// boxed: the cached answer is the small, common one).
    Ask(Box<Ask>),
}

/// A question for the authorizer, and what it decided before, if anything.
struct Ask {
    key: SessionKey,
    question: AuthRequest,
    stale: Option<Cached>,
}

impl Gate {
    /// Finds the request's session in the cache, borrowing all it needs
    /// from the request: a cached allow allocates nothing.
    fn lookup(&self, request: &Request, now: Instant) -> Lookup {
        // What is not a playback URL of a valid stream gets the handler's
        // 400 or 404, which serves no stream bytes.
        let Ok(playback) = url::parse(request.uri().path()) else {
            return Lookup::Unprotected;
        };
        // Only valid names are protected, so what passes here is no stream.
        let Some(reads) = self.authorizer.reads(playback.stream) else {
            return Lookup::Unprotected;
        };
        let stream = playback.stream;
        let Some(ip) = Self::client_ip(request) else {
            warn!(stream, "refusing a play request without a client address");
            return Lookup::Refused;
        };
        let token = token(request.uri().query());
        let headers = request.headers();
        let field = |name| headers.get(name).map_or(&b""[..], HeaderValue::as_bytes);
        let read = ReadFields {
            protocol: reads.protocol.then(|| protocol(playback.form)),
            user_agent: reads.user_agent.then(|| field(header::USER_AGENT)),
            referer: reads.referer.then(|| field(header::REFERER)),
        };
        let key = self.cache.key(stream, ip, &token, read);
        let stale = match self.cache.find(key, now) {
            Found::Fresh(c) => return Lookup::Cached(c),
            Found::Stale(c) => c,
        };
        let Ok(stream_name) = StreamName::new(stream) else {
            return Lookup::Refused;
        };
        let question = AuthRequest {
            v: PROTO_VERSION,
            stream: stream_name,
            ip: ip.to_string(),
            token: token.as_ref().to_owned(),
            user_agent: header_text(headers, header::USER_AGENT),
            referer: header_text(headers, header::REFERER),
            protocol: protocol(playback.form).into(),
        };
        Lookup::Ask(Box::new(Ask {
            key,
            question,
            stale,
        }))
    }
}

/// The bytes of `taken` added up by session (the cache keeps a meter per
/// shard), in session order.
fn per_session(taken: &[(Arc<SessionMeter>, u64)]) -> Vec<SessionBytes> {
    let mut sessions = BTreeMap::<&str, u64>::new();
    for (meter, bytes) in taken {
        *sessions.entry(&meter.session).or_default() += bytes;
    }
    sessions
        .into_iter()
        .map(|(session, bytes)| SessionBytes {
            session: session.to_owned(),
            bytes,
        })
        .collect()
}

/// The middleware (`axum::middleware::from_fn_with_state`). A refused
/// `embed.html` is the player page saying so (it carries no media), not a
/// bare `403` the viewer would see as a blank frame.
pub async fn authorize(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    // The suffix first: the one parse more stays off every other request.
    let path = request.uri().path();
    let embed = match path.ends_with("/embed.html").then(|| url::parse(path)) {
        Some(Ok(playback)) if playback.form == Form::Embed => Some(playback.stream.to_owned()),
        _ => None,
    };
    let response = decide(gate, request, next).await;
    match embed {
        Some(stream) if response.status() == StatusCode::FORBIDDEN => {
            dvr_web::refused_page(&stream)
        }
        _ => response,
    }
}

async fn decide(gate: Arc<Gate>, request: Request, next: Next) -> Response {
    let now = Instant::now();
    let Ask {
        key,
        question,
        stale,
    } = match gate.lookup(&request, now) {
        Lookup::Unprotected => return next.run(request).await,
        Lookup::Cached(cached) => return answer(cached, request, next).await,
        Lookup::Refused => return forbidden(),
        Lookup::Ask(ask) => *ask,
    };
    let (stream_name, ip) = (&question.stream, &question.ip);
    let decided = match gate.authorizer.check(&question).await {
        Ok(reply) => {
            if reply.decision != AuthDecision::Allow {
                info!(stream = %stream_name, ip = %ip, session = %reply.session, decision = ?reply.decision, reason = %reply.reason, "play refused");
            }
            // The session keeps its meter across re-checks, so bytes not
            // yet reported stay counted.
            let meter = (reply.decision == AuthDecision::Allow)
                .then(|| cache::meter_for(&reply.session, stale.as_ref()));
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
        gate.cache.remember(key, decided.clone());
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

/// The `token` query parameter, or empty; borrowed unless it had to be
/// decoded.
fn token(query: Option<&str>) -> Cow<'_, str> {
    let query = query.unwrap_or_default();
    // Without `%` or `+` decoding changes nothing, so the common query is
    // split in place rather than decoded pair by pair.
    if query.bytes().any(|b| b == b'%' || b == b'+') {
        return form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v)
            .unwrap_or_default();
    }
    query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(k, _)| *k == "token")
        .map_or(Cow::Borrowed(""), |(_, v)| Cow::Borrowed(v))
}

/// The seeds' `type` of a URL form.
fn protocol(form: Form) -> &'static str {
    match form {
        Form::LiveMpegts
        | Form::RangeMpegts { .. }
        | Form::TimeshiftAbsMpegts { .. }
        | Form::TimeshiftRelMpegts { .. } => "mpegts",
        Form::LiveDash | Form::RewindDash { .. } | Form::RangeDash { .. } => "dash",
        Form::RangeMp4 { .. } => "mp4",
        _ => "hls",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_adds_up_each_sessions_meters() {
        let meter = |session: &str| Arc::new(SessionMeter::new(session.to_owned()));
        let taken = [(meter("b"), 5), (meter("a"), 1), (meter("b"), 7)];
        let sessions: Vec<_> = per_session(&taken)
            .into_iter()
            .map(|s| (s.session, s.bytes))
            .collect();
        assert_eq!(sessions, [("a".to_owned(), 1), ("b".to_owned(), 12)]);
    }

    #[test]
    fn tokens_and_protocols() {
        assert_eq!(token(Some("a=1&token=t%2B1&b=2")), "t+1");
        assert_eq!(token(Some("a=1&tok%65n=x")), "x");
        assert_eq!(token(Some("a=1&token=abc&token=d")), "abc");
        assert_eq!(token(Some("tokens=1&token")), "");
        assert_eq!(token(Some("a=b+c&token=d+e")), "d e");
        assert!(matches!(
            token(Some("&&token=abc=d&")),
            Cow::Borrowed("abc=d")
        ));
        assert_eq!(token(Some("a=1")), "");
        assert_eq!(token(None), "");
        assert_eq!(protocol(url::parse("/ch/index.m3u8").unwrap().form), "hls");
        assert_eq!(protocol(url::parse("/ch/mpegts").unwrap().form), "mpegts");
        assert_eq!(
            protocol(url::parse("/ch/archive-1700000000-60.mp4").unwrap().form),
            "mp4"
        );
    }
}
