//! Auth policy as plain values: which policy each stream has, what it says
//! about a request, which requests one decision covers, and what a reply
//! says.
//!
//! The one idea: everything here is a function of the config, the request
//! and a time handed in (no clock, no lock, no network, no bucket), so the
//! seeds' rules are tested with plain values, and the
//! [`Engine`](crate::Engine) only adds state and I/O around them: the
//! session table keeps what was decided (`sessions.rs`), the engine asks
//! the HTTP backends when a policy leaves the decision to them
//! ([`Verdict::AskBackends`]).
//!
//! The order of a `auth://NAME` policy is the seeds': allow token, deny
//! token, allow ip, deny ip, allow user agent, deny user agent, then the
//! backends in parallel, then the default (deny unless `default: allow`).
//! A request without a token never reaches a backend or a securetoken
//! check (the seeds' `no_auto_token`): only an allow-list entry for its
//! address or user agent, or `default: allow`, lets it in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use dvr_common::config::{AuthBackendConfig, AuthRules, AuthSpec, BackendUrl, Config, Secret};
use dvr_common::{StreamName, UtcMs};
use dvr_proto::{AuthDecision, AuthReply, AuthRequest, PROTO_VERSION};
use sha2::{Digest, Sha256};

use crate::backend::{BackendAnswer, DEFAULT_AUTH_DURATION_S};
use crate::metrics::DecidedBy;
use crate::securetoken::{self, constant_time_eq};
use dvr_common::config::{policy_reads, PolicyReads};

/// How long an answer for a stream without a policy may be reused.
pub const OPEN_STREAM_DURATION_S: u32 = 3600;

/// A stream's policy, resolved from the config.
#[derive(Clone, Debug)]
pub(crate) enum Policy {
    /// `securetoken://` or `securetoken-hmac://`, the key read.
    SecureToken { secret: Secret, hmac: bool },
    /// Allow and deny lists, then HTTP backends, then the default (an
    /// `auth://NAME` or a single backend URL).
    Lists(Arc<AuthBackendConfig>),
}

/// What a policy says about a request without asking anyone.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict<'a> {
    /// Open the session for `duration_s`.
    Allow {
        duration_s: u32,
        why: String,
        by: DecidedBy,
    },
    /// Refuse (and close the session if it was open).
    Deny { why: String, by: DecidedBy },
    /// Only these HTTP backends can tell.
    AskBackends(&'a [BackendUrl]),
}

impl Policy {
    /// Whether the policy asks HTTP backends (whose sessions are
    /// re-checked in the background).
    pub(crate) fn has_backends(&self) -> bool {
        matches!(self, Policy::Lists(c) if !c.backends.is_empty())
    }

    /// Whether a backend asked for soft `X-Max-Sessions` limitation.
    pub(crate) fn soft_limitation(&self) -> bool {
        matches!(self, Policy::Lists(c) if c.backends.iter().any(|b| b.soft_limitation))
    }

    /// What the policy says about `req` at `now`: a securetoken check, the
    /// seeds' list order and default, or a referral to the backends.
    pub(crate) fn decide(&self, req: &AuthRequest, now: UtcMs) -> Verdict<'_> {
        let deny = |why: &str, by| Verdict::Deny {
            why: why.to_owned(),
            by,
        };
        let allow = |duration_s, why: &str, by| Verdict::Allow {
            duration_s,
            why: why.to_owned(),
            by,
        };
        match self {
            Policy::SecureToken { secret, hmac } => {
                if req.token.is_empty() {
                    return deny("no token", DecidedBy::Default);
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
                        allow(duration, "securetoken valid", DecidedBy::SecureToken)
                    }
                    Err(e) => deny(&e.to_string(), DecidedBy::SecureToken),
                }
            }
            Policy::Lists(config) => {
                if let Some((allowed, why)) = by_lists(config, req) {
                    return if allowed {
                        allow(DEFAULT_AUTH_DURATION_S, why, DecidedBy::List)
                    } else {
                        deny(why, DecidedBy::List)
                    };
                }
                if config.backends.is_empty() {
                    return if config.allow_default {
                        allow(DEFAULT_AUTH_DURATION_S, "allow default", DecidedBy::Default)
                    } else {
                        deny("no rule allows it", DecidedBy::Default)
                    };
                }
                if req.token.is_empty() {
                    return deny("no token", DecidedBy::Default);
                }
                Verdict::AskBackends(&config.backends)
            }
        }
    }
}

/// Every stream's policy.
#[derive(Debug, Default)]
pub(crate) struct Policies {
    /// The policy of each stream that has one.
    pub(crate) by_stream: HashMap<StreamName, Policy>,
    /// What each policy of `by_stream` reads, by name, for a lookup by
    /// `&str` on every request ([`policy_reads`]: the same keys).
    pub(crate) reads: HashMap<String, PolicyReads>,
}

impl Policies {
    /// The policies of `config`'s streams, with each `${VAR}` read through
    /// `env`, and what could not be resolved (one line per stream). A
    /// stream whose secret cannot be read gets a policy that denies every
    /// play, so it stays protected.
    pub(crate) fn resolve(
        config: &Config,
        env: impl Fn(&str) -> Option<String>,
    ) -> (Self, Vec<String>) {
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

/// The seeds' list order; `None` when no list decides.
fn by_lists(config: &AuthBackendConfig, req: &AuthRequest) -> Option<(bool, &'static str)> {
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
        return Some((true, "allow token"));
    }
    if token_in(deny) {
        return Some((false, "deny token"));
    }
    if ip_in(allow) {
        return Some((true, "allow ip"));
    }
    if ip_in(deny) {
        return Some((false, "deny ip"));
    }
    if ua_in(allow) {
        return Some((true, "allow ua"));
    }
    if ua_in(deny) {
        return Some((false, "deny ua"));
    }
    None
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
pub(crate) fn is_session_id(id: &str) -> bool {
    id.len() == 2 * SESSION_ID_BYTES && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whole seconds from `now` until `until`, rounded up.
pub(crate) fn secs_until(now: UtcMs, until: UtcMs) -> u32 {
    u32::try_from((until.0 - now.0 + 999) / 1000).unwrap_or(u32::MAX)
}

/// A reply for session `id`.
pub(crate) fn reply(decision: AuthDecision, duration_s: u32, id: &str, reason: &str) -> AuthReply {
    AuthReply {
        v: PROTO_VERSION,
        decision,
        duration_s,
        session: id.to_owned(),
        location: None,
        reason: reason.to_owned(),
    }
}

/// The reply to a request the backends decided for a new session.
pub(crate) fn backend_reply(answer: &BackendAnswer, id: &str) -> AuthReply {
    match answer {
        BackendAnswer::Allow {
            duration_s,
            backend,
            ..
        } => reply(
            AuthDecision::Allow,
            *duration_s,
            id,
            &format!("backend {backend} allowed"),
        ),
        BackendAnswer::Deny { duration_s, status } => reply(
            AuthDecision::Deny,
            *duration_s,
            id,
            &format!("backend denied ({status})"),
        ),
        BackendAnswer::Redirect(location) => {
            let mut r = reply(AuthDecision::Redirect, 0, id, "backend redirected");
            r.location = Some(location.clone());
            r
        }
        BackendAnswer::NoData(why) => {
            reply(AuthDecision::Deny, 0, id, &format!("not opened: {why}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::securetoken::sign;
    use dvr_common::config::IpNet;

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

    fn backend(url: &str) -> BackendUrl {
        BackendUrl {
            url: url.into(),
            soft_limitation: false,
        }
    }

    fn asking(ip: &str, token: &str, ua: Option<&str>) -> AuthRequest {
        AuthRequest {
            ip: ip.into(),
            ..request(token, ua, None, "hls")
        }
    }

    fn allowed(why: &str, by: DecidedBy) -> Verdict<'static> {
        Verdict::Allow {
            duration_s: DEFAULT_AUTH_DURATION_S,
            why: why.into(),
            by,
        }
    }

    fn denied(why: &str, by: DecidedBy) -> Verdict<'static> {
        Verdict::Deny {
            why: why.into(),
            by,
        }
    }

    #[test]
    fn the_lists_decide_in_the_seeds_order() {
        let rules = |tokens: [&str; 2], ips: [&str; 2], ua: &str| AuthRules {
            ip: ips.map(|n| IpNet::parse(n).unwrap()).to_vec(),
            token: tokens.into_iter().map(Secret::new).collect(),
            ua: vec![ua.into()],
        };
        // "both" and 10.1/16 are on both lists, as "MAG Bot" matches both.
        let lists = AuthBackendConfig {
            allow: rules(["good", "both"], ["10/8", "10.1/16"], "MAG"),
            deny: rules(["bad", "both"], ["192.0.2.0/24", "10.1/16"], "Bot"),
            backends: vec![backend("http://127.0.0.1:9/auth")],
            allow_default: false,
        };
        let policy = Policy::Lists(Arc::new(lists.clone()));
        let now = UtcMs(1_700_000_000_000);
        let decide = |ip, token, ua| policy.decide(&asking(ip, token, ua), now);
        let (denied_ip, allowed_ip, listed_twice_ip, other_ip) =
            ("192.0.2.9", "10.2.0.1", "10.1.2.3", "198.51.100.1");
        // Each rule beats every rule after it.
        let (allow, deny) = (true, false);
        let cases = [
            (denied_ip, "good", "Bot", allow, "allow token"),
            (denied_ip, "both", "Bot", allow, "allow token"),
            (allowed_ip, "bad", "MAG", deny, "deny token"),
            (listed_twice_ip, "t", "Bot", allow, "allow ip"),
            (allowed_ip, "t", "Bot", allow, "allow ip"),
            (denied_ip, "t", "MAG", deny, "deny ip"),
            (other_ip, "t", "MAG Bot", allow, "allow ua"),
            (other_ip, "t", "Bot", deny, "deny ua"),
        ];
        for (ip, token, ua, allows, why) in cases {
            let want = if allows {
                allowed(why, DecidedBy::List)
            } else {
                denied(why, DecidedBy::List)
            };
            assert_eq!(decide(ip, token, Some(ua)), want, "{ip} {token} {ua}");
        }
        // Then the backends, for a request with a token only.
        assert_eq!(
            decide(other_ip, "t", None),
            Verdict::AskBackends(&lists.backends)
        );
        assert_eq!(
            decide(other_ip, "", None),
            denied("no token", DecidedBy::Default)
        );
        // Without backends, the default.
        let no_backends = |allow_default| AuthBackendConfig {
            backends: Vec::new(),
            allow_default,
            ..lists.clone()
        };
        for (allow_default, want) in [
            (true, allowed("allow default", DecidedBy::Default)),
            (false, denied("no rule allows it", DecidedBy::Default)),
        ] {
            let policy = Policy::Lists(Arc::new(no_backends(allow_default)));
            assert_eq!(policy.decide(&asking(other_ip, "t", None), now), want);
        }
        // An empty token is in no token list, even one holding "".
        let empty_token = Policy::Lists(Arc::new(AuthBackendConfig {
            allow: AuthRules {
                token: vec![Secret::new("")],
                ..AuthRules::default()
            },
            ..no_backends(false)
        }));
        assert_eq!(
            empty_token.decide(&asking(other_ip, "", None), now),
            denied("no rule allows it", DecidedBy::Default)
        );
    }

    #[test]
    fn a_securetoken_opens_until_it_ends() {
        let policy = Policy::SecureToken {
            secret: Secret::new("k3y"),
            hmac: false,
        };
        let now = UtcMs(1_700_000_000_500);
        let secs = now.as_secs();
        let token = |key: &str, end| sign(key, false, "news", "192.0.2.1", "s", secs - 60, end);
        let decide = |token: &str| policy.decide(&request(token, None, None, "hls"), now);
        let by = DecidedBy::SecureToken;
        let open_for = |duration_s| Verdict::Allow {
            duration_s,
            why: "securetoken valid".into(),
            by,
        };
        // Re-checked after the default duration, or when the token ends.
        assert_eq!(
            decide(&token("k3y", secs + 3600)),
            open_for(DEFAULT_AUTH_DURATION_S)
        );
        assert_eq!(decide(&token("k3y", secs + 10)), open_for(11));
        let expired = decide(&token("k3y", secs - 1));
        assert!(
            matches!(
                &expired,
                Verdict::Deny {
                    by: DecidedBy::SecureToken,
                    ..
                }
            ),
            "{expired:?}"
        );
        let forged = decide(&token("other", secs + 3600));
        assert!(
            matches!(
                &forged,
                Verdict::Deny {
                    by: DecidedBy::SecureToken,
                    ..
                }
            ),
            "{forged:?}"
        );
        assert_ne!(expired, forged, "the reason tells them apart");
        assert_eq!(decide(""), denied("no token", DecidedBy::Default));
    }

    #[test]
    fn a_backend_answer_is_replied_as_the_seeds_say() {
        let id = session_id("news", "192.0.2.1", "t");
        let allow = backend_reply(
            &BackendAnswer::Allow {
                duration_s: 30,
                user_id: Some("u".into()),
                max_sessions: Some(1),
                backend: 1,
            },
            &id,
        );
        assert_eq!(
            allow,
            reply(AuthDecision::Allow, 30, &id, "backend 1 allowed")
        );
        let deny = backend_reply(
            &BackendAnswer::Deny {
                duration_s: 60,
                status: 403,
            },
            &id,
        );
        assert_eq!(
            deny,
            reply(AuthDecision::Deny, 60, &id, "backend denied (403)")
        );
        let redirect = backend_reply(&BackendAnswer::Redirect("http://x.example/".into()), &id);
        assert_eq!(redirect.decision, AuthDecision::Redirect);
        assert_eq!(redirect.location.as_deref(), Some("http://x.example/"));
        // No data leaves a new session unopened, and is not cached.
        let silent = backend_reply(&BackendAnswer::NoData("timeout".into()), &id);
        assert_eq!(
            silent,
            reply(AuthDecision::Deny, 0, &id, "not opened: timeout")
        );
    }

    #[test]
    fn seconds_until_round_up() {
        let now = UtcMs(10_000);
        assert_eq!(secs_until(now, UtcMs(10_000)), 0);
        assert_eq!(secs_until(now, UtcMs(10_001)), 1);
        assert_eq!(secs_until(now, UtcMs(12_000)), 2);
        assert_eq!(secs_until(now, UtcMs(i64::MAX)), u32::MAX);
    }
}
