//! HTTP auth backends, the seeds' protocol: a GET with the session's
//! parameters, answered by status code.
//!
//! - 200 allows; `X-AuthDuration` (seconds, default 180) is when to ask
//!   again, `X-UserId` names the user, `X-Max-Sessions` (or the deprecated
//!   `X-Unique: true`, meaning 1) limits the user's concurrent sessions;
//! - 401 and 403 deny (also for `X-AuthDuration`);
//! - 301 and 302 send the player to `Location`;
//! - anything else, an unreachable backend or no answer within the timeout
//!   (3 s) is *no data*: the session keeps the state it had.
//!
//! Several backends are asked in parallel: an allow from any wins, then a
//! redirect, then a denial; only when all are silent is the answer
//! [`BackendAnswer::NoData`].

use std::time::Duration;

use dvr_common::config::{mask_credentials, BackendUrl};
use futures::future::join_all;
use reqwest::header::HeaderMap;

/// The default re-check period, when the backend sends no `X-AuthDuration`.
pub const DEFAULT_AUTH_DURATION_S: u32 = 180;
/// How long a backend may take to answer.
pub const BACKEND_TIMEOUT: Duration = Duration::from_secs(3);

/// The query the seeds define.
#[derive(Clone, Debug)]
pub struct BackendQuery<'a> {
    /// The token from the URL.
    pub token: &'a str,
    /// The stream.
    pub name: &'a str,
    /// The client's address.
    pub ip: &'a str,
    /// The `Referer`, or empty.
    pub referer: &'a str,
    /// Open sessions on this server.
    pub total_clients: usize,
    /// Open sessions of this stream.
    pub stream_clients: usize,
    /// `new_session` or `update_session`.
    pub request_type: &'static str,
    /// `hls`, `mpegts`, `dash` or `mp4`.
    pub protocol: &'a str,
}

/// What the backends said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendAnswer {
    /// 200.
    Allow {
        /// `X-AuthDuration` or the default.
        duration_s: u32,
        /// `X-UserId`.
        user_id: Option<String>,
        /// `X-Max-Sessions` (or 1 for `X-Unique: true`).
        max_sessions: Option<u32>,
        /// Which backend (index in the list), for the log.
        backend: usize,
    },
    /// 401 or 403.
    Deny {
        /// `X-AuthDuration` or the default: how long the denial is cached.
        duration_s: u32,
        /// The status.
        status: u16,
    },
    /// 301 or 302 to this location.
    Redirect(String),
    /// No usable answer: keep the previous state.
    NoData(String),
}

impl BackendAnswer {
    /// The answer's class, for metrics and spans: `allow`, `deny`,
    /// `redirect` or `no_data`.
    pub fn result(&self) -> &'static str {
        match self {
            BackendAnswer::Allow { .. } => "allow",
            BackendAnswer::Deny { .. } => "deny",
            BackendAnswer::Redirect(_) => "redirect",
            BackendAnswer::NoData(_) => "no_data",
        }
    }
}

/// The client for backends: one connection pool for all of them.
#[derive(Clone, Debug)]
pub struct Backends {
    http: reqwest::Client,
    timeout: Duration,
}

impl Backends {
    /// A client that gives a backend `timeout` to answer.
    pub fn new(timeout: Duration) -> Self {
        // One TLS stack for every HTTP client: rustls with ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .build()
            .unwrap_or_default();
        Self { http, timeout }
    }

    /// Asks every backend at once and combines their answers.
    pub async fn ask(&self, backends: &[BackendUrl], query: &BackendQuery<'_>) -> BackendAnswer {
        let answers = join_all(
            backends
                .iter()
                .enumerate()
                .map(|(i, b)| self.ask_one(i, &b.url, query)),
        )
        .await;
        let rank = |a: &BackendAnswer| match a {
            BackendAnswer::Allow { .. } => 0,
            BackendAnswer::Redirect(_) => 1,
            BackendAnswer::Deny { .. } => 2,
            BackendAnswer::NoData(_) => 3,
        };
        let mut silent = Vec::new();
        let mut best: Option<BackendAnswer> = None;
        for answer in answers {
            if let BackendAnswer::NoData(why) = &answer {
                silent.push(why.clone());
            }
            if best.as_ref().is_none_or(|b| rank(&answer) < rank(b)) {
                best = Some(answer);
            }
        }
        match best {
            Some(BackendAnswer::NoData(_)) | None => BackendAnswer::NoData(silent.join("; ")),
            Some(answer) => answer,
        }
    }

    async fn ask_one(&self, index: usize, url: &str, q: &BackendQuery<'_>) -> BackendAnswer {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", q.token)
            .append_pair("name", q.name)
            .append_pair("ip", q.ip)
            .append_pair("referer", q.referer)
            .append_pair("total_clients", &q.total_clients.to_string())
            .append_pair("stream_clients", &q.stream_clients.to_string())
            .append_pair("request_type", q.request_type)
            .append_pair("type", q.protocol)
            .finish();
        let sep = if url.contains('?') { '&' } else { '?' };
        let full = format!("{url}{sep}{query}");
        let shown = mask_credentials(url);
        let response = match tokio::time::timeout(self.timeout, self.http.get(&full).send()).await {
            Err(_) => {
                return BackendAnswer::NoData(format!(
                    "backend {shown}: no answer in {:?}",
                    self.timeout
                ))
            }
            Ok(Err(e)) => {
                // reqwest's error text holds the URL with the token: name
                // the class of failure only.
                let what = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "cannot connect"
                } else {
                    "request failed"
                };
                return BackendAnswer::NoData(format!("backend {shown}: {what}"));
            }
            Ok(Ok(r)) => r,
        };
        let status = response.status().as_u16();
        let headers = response.headers();
        let duration_s = header(headers, "x-authduration")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_AUTH_DURATION_S);
        match status {
            200 => {
                let max_sessions = header(headers, "x-max-sessions")
                    .and_then(|v| v.parse().ok())
                    .or_else(|| {
                        (header(headers, "x-unique").as_deref() == Some("true")).then_some(1)
                    });
                BackendAnswer::Allow {
                    duration_s,
                    user_id: header(headers, "x-userid").filter(|u| !u.is_empty()),
                    max_sessions,
                    backend: index,
                }
            }
            401 | 403 => BackendAnswer::Deny { duration_s, status },
            301 | 302 => match header(headers, "location") {
                Some(location) => BackendAnswer::Redirect(location),
                None => {
                    BackendAnswer::NoData(format!("backend {shown}: {status} without Location"))
                }
            },
            other => BackendAnswer::NoData(format!("backend {shown}: status {other}")),
        }
    }
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)?.to_str().ok().map(|v| v.trim().to_owned())
}
