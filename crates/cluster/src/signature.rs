//! Requests between origins, signed with the cluster key.
//!
//! The signature is an HMAC-SHA256 keyed by the cluster key over one line
//! each of: a version tag, the method, the host, the path, the canonical
//! query (its `&`-separated pairs sorted, so a proxy that reorders them does
//! not break it), the SHA-256 of the body, the date (Unix milliseconds) and
//! a random nonce. The three travel as headers ([`DATE_HEADER`],
//! [`NONCE_HEADER`], [`SIGNATURE_HEADER`]); the key never does.
//!
//! A receiver ([`Verifier`]) refuses a request whose date is more than
//! [`dvr_proto::CLUSTER_SIGNATURE_WINDOW_SECS`] from its own clock, whose
//! signature does not match (compared in constant time), or whose nonce
//! was seen before, on any replica ([`crate::nonces`]). The nonce is taken
//! only after the signature checks, so requests without the key cannot
//! fill the nonce bucket.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use dvr_bus::BusError;
use dvr_common::error::{ErrorKind, HasErrorKind};

use crate::key::ClusterKey;
use crate::nonces::NonceGuard;

/// Header: the request's date, Unix milliseconds.
pub const DATE_HEADER: &str = "x-dvr-cluster-date";
/// Header: the request's nonce, 32 lowercase hex digits.
pub const NONCE_HEADER: &str = "x-dvr-cluster-nonce";
/// Header: the signature, 64 lowercase hex digits.
pub const SIGNATURE_HEADER: &str = "x-dvr-cluster-signature";

/// The first line of every signed text: a new scheme gets a new tag.
const SCHEME: &[u8] = b"DVR-CLUSTER-HMAC-SHA256-V1";

/// The signing facts of one request, as sent in its headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRequest {
    /// Unix milliseconds when it was signed.
    pub date_ms: i64,
    /// Random, 32 lowercase hex digits.
    pub nonce: String,
    /// The HMAC, 64 lowercase hex digits.
    pub signature: String,
}

/// What is signed of a request.
#[derive(Clone, Copy, Debug)]
pub struct RequestLine<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The `Host` the client addressed (with its port, if any).
    pub host: &'a str,
    /// The path, as sent (percent-encoded).
    pub path: &'a str,
    /// The query without `?`, as sent; `""` for none.
    pub query: &'a str,
    /// The body.
    pub body: &'a [u8],
}

impl SignedRequest {
    /// Signs `request` at `date_ms` with a fresh random nonce.
    pub fn sign(key: &ClusterKey, request: &RequestLine<'_>, date_ms: i64) -> Self {
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw).expect("the operating system's random source works");
        let nonce = hex::encode(raw);
        let signature = hex::encode(signature_of(key, request, date_ms, &nonce));
        Self {
            date_ms,
            nonce,
            signature,
        }
    }

    /// The three headers, names and values.
    pub fn headers(&self) -> [(&'static str, String); 3] {
        [
            (DATE_HEADER, self.date_ms.to_string()),
            (NONCE_HEADER, self.nonce.clone()),
            (SIGNATURE_HEADER, self.signature.clone()),
        ]
    }
}

/// The HMAC of a request's canonical text.
fn signature_of(key: &ClusterKey, r: &RequestLine<'_>, date_ms: i64, nonce: &str) -> [u8; 32] {
    let host = r.host.to_ascii_lowercase();
    let query = canonical_query(r.query);
    let body = hex::encode(Sha256::digest(r.body));
    let date = date_ms.to_string();
    key.sign_lines(&[
        SCHEME,
        r.method.as_bytes(),
        host.as_bytes(),
        r.path.as_bytes(),
        query.as_bytes(),
        body.as_bytes(),
        date.as_bytes(),
        nonce.as_bytes(),
    ])
}

/// The query's non-empty `&`-separated pairs, sorted, joined by `&`.
pub fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    pairs.sort_unstable();
    pairs.join("&")
}

/// Why a signed request is refused. No variant holds the key or the
/// signature the request carried.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// A header is absent: not a cluster request at all.
    #[error("this origin-to-origin request is not signed: the {0} header is missing")]
    Missing(&'static str),
    /// A header is not in its format.
    #[error("the {0} header is malformed")]
    Malformed(&'static str),
    /// The date is too far from the receiver's clock.
    #[error(
        "the request's date is {skew_ms} ms from this origin's clock, more than the \
         {window_secs} s allowed (are the clocks in sync?)"
    )]
    OutsideWindow {
        /// Request date minus the receiver's clock.
        skew_ms: i64,
        /// The window either side.
        window_secs: u64,
    },
    /// The signature does not match: another key, or an altered request.
    #[error("the request's signature does not match: not signed with this cluster's key, or altered on the way")]
    BadSignature,
    /// The nonce was used before.
    #[error("the request was replayed: its nonce was used before")]
    Replayed,
    /// The nonce could not be checked.
    #[error("cannot check the request's nonce: {0}")]
    NonceStore(#[from] BusError),
}

impl HasErrorKind for SignatureError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            SignatureError::Missing(_) => ErrorKind::Unauthorized,
            SignatureError::NonceStore(_) => ErrorKind::Unavailable,
            _ => ErrorKind::Forbidden,
        }
    }
}

/// The signing headers of a received request, as found.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReceivedHeaders<'a> {
    /// [`DATE_HEADER`].
    pub date: Option<&'a str>,
    /// [`NONCE_HEADER`].
    pub nonce: Option<&'a str>,
    /// [`SIGNATURE_HEADER`].
    pub signature: Option<&'a str>,
}

/// What a verified request proved: its nonce, to bind the answer to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The request's nonce (32 lowercase hex digits).
    pub nonce: String,
}

/// Checks signed requests against the cluster key.
#[derive(Debug, Clone)]
pub struct Verifier {
    key: ClusterKey,
    window_ms: i64,
    nonces: NonceGuard,
}

impl Verifier {
    /// A verifier with the cluster's key and nonce bucket, accepting dates
    /// within [`dvr_proto::CLUSTER_SIGNATURE_WINDOW_SECS`].
    pub fn new(key: ClusterKey, nonces: NonceGuard) -> Self {
        Self {
            key,
            window_ms: window_secs() as i64 * 1000,
            nonces,
        }
    }

    /// The key, to MAC the answer with.
    pub fn key(&self) -> &ClusterKey {
        &self.key
    }

    /// Checks `request` as received with `headers` at `now_ms`; on success
    /// its nonce is taken, so the same request is refused from now on.
    pub async fn verify(
        &self,
        request: &RequestLine<'_>,
        headers: ReceivedHeaders<'_>,
        now_ms: i64,
    ) -> Result<Verified, SignatureError> {
        let date = headers.date.ok_or(SignatureError::Missing(DATE_HEADER))?;
        let nonce = headers.nonce.ok_or(SignatureError::Missing(NONCE_HEADER))?;
        let signature = headers
            .signature
            .ok_or(SignatureError::Missing(SIGNATURE_HEADER))?;
        let date_ms: i64 = date
            .parse()
            .map_err(|_| SignatureError::Malformed(DATE_HEADER))?;
        if nonce.len() != 32
            || !nonce
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(SignatureError::Malformed(NONCE_HEADER));
        }
        let claimed: [u8; 32] = hex::decode(signature)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(SignatureError::Malformed(SIGNATURE_HEADER))?;
        let skew_ms = date_ms.saturating_sub(now_ms);
        if skew_ms.abs() > self.window_ms {
            return Err(SignatureError::OutsideWindow {
                skew_ms,
                window_secs: window_secs(),
            });
        }
        let expected = signature_of(&self.key, request, date_ms, nonce);
        if !bool::from(expected.ct_eq(&claimed)) {
            return Err(SignatureError::BadSignature);
        }
        if !self.nonces.first_use(nonce).await? {
            return Err(SignatureError::Replayed);
        }
        Ok(Verified {
            nonce: nonce.to_owned(),
        })
    }
}

impl Verifier {
    /// [`Verifier::verify`] for a received HTTP request without a body
    /// (`GET`): its method, the `Host` it names (else the URI's
    /// authority), its path, its query and the signing headers.
    pub async fn verify_http(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        now_ms: i64,
    ) -> Result<Verified, SignatureError> {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let host = text(http::header::HOST.as_str())
            .or_else(|| uri.authority().map(http::uri::Authority::as_str))
            .unwrap_or("");
        let line = RequestLine {
            method: method.as_str(),
            host,
            path: uri.path(),
            query: uri.query().unwrap_or(""),
            body: b"",
        };
        let received = ReceivedHeaders {
            date: text(DATE_HEADER),
            nonce: text(NONCE_HEADER),
            signature: text(SIGNATURE_HEADER),
        };
        self.verify(&line, received, now_ms).await
    }
}

fn window_secs() -> u64 {
    dvr_proto::CLUSTER_SIGNATURE_WINDOW_SECS
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use dvr_bus::MemoryKv;

    const NOW: i64 = 1_780_000_000_000;

    fn key(text: &str) -> ClusterKey {
        ClusterKey::new(text).unwrap()
    }

    fn verifier(text: &str) -> Verifier {
        Verifier::new(
            key(text),
            NonceGuard::new(Arc::new(MemoryKv::new("nonces"))),
        )
    }

    fn line<'a>(query: &'a str, body: &'a [u8]) -> RequestLine<'a> {
        RequestLine {
            method: "GET",
            host: "origin-a.example:8080",
            path: "/_dvr/cluster/v1/feed",
            query,
            body,
        }
    }

    async fn check(
        v: &Verifier,
        r: &RequestLine<'_>,
        s: &SignedRequest,
        now: i64,
    ) -> Result<Verified, SignatureError> {
        let date = s.date_ms.to_string();
        let h = ReceivedHeaders {
            date: Some(&date),
            nonce: Some(&s.nonce),
            signature: Some(&s.signature),
        };
        v.verify(r, h, now).await
    }

    #[tokio::test]
    async fn a_signed_request_passes_once() {
        let v = verifier("the-cluster-key-of-the-test");
        let r = line("stream=ch1&from=5", b"");
        let s = SignedRequest::sign(v.key(), &r, NOW);
        let ok = check(&v, &r, &s, NOW + 1_000).await.unwrap();
        assert_eq!(ok.nonce, s.nonce);
        assert!(matches!(
            check(&v, &r, &s, NOW + 2_000).await,
            Err(SignatureError::Replayed)
        ));
        // Another nonce is another request.
        let again = SignedRequest::sign(v.key(), &r, NOW);
        assert_ne!(again.nonce, s.nonce);
        check(&v, &r, &again, NOW).await.unwrap();
    }

    #[tokio::test]
    async fn every_signed_part_matters() {
        let v = verifier("the-cluster-key-of-the-test");
        let r = line("stream=ch1&from=5", b"body");
        let altered = [
            RequestLine {
                method: "POST",
                ..r
            },
            RequestLine {
                host: "origin-b.example:8080",
                ..r
            },
            RequestLine {
                path: "/_dvr/cluster/v1/feeds",
                ..r
            },
            RequestLine {
                query: "stream=ch2&from=5",
                ..r
            },
            RequestLine { body: b"Body", ..r },
        ];
        for a in altered {
            let s = SignedRequest::sign(v.key(), &r, NOW);
            assert!(
                matches!(
                    check(&v, &a, &s, NOW).await,
                    Err(SignatureError::BadSignature)
                ),
                "{a:?}"
            );
        }
        // The query's order and the host's case are not part of it.
        let s = SignedRequest::sign(v.key(), &r, NOW);
        let reordered = RequestLine {
            query: "from=5&stream=ch1",
            host: "ORIGIN-A.example:8080",
            ..r
        };
        check(&v, &reordered, &s, NOW).await.unwrap();
    }

    #[tokio::test]
    async fn another_key_a_stale_date_or_a_bad_header_is_refused() {
        let v = verifier("the-cluster-key-of-the-test");
        let r = line("stream=ch1", b"");
        let other = SignedRequest::sign(&key("not-the-cluster-key-at-all"), &r, NOW);
        assert!(matches!(
            check(&v, &r, &other, NOW).await,
            Err(SignatureError::BadSignature)
        ));
        let s = SignedRequest::sign(v.key(), &r, NOW);
        let err = check(&v, &r, &s, NOW + 31_000).await.unwrap_err();
        assert!(
            matches!(
                err,
                SignatureError::OutsideWindow {
                    skew_ms: -31_000,
                    ..
                }
            ),
            "{err}"
        );
        let err = check(&v, &r, &s, NOW - 31_000).await.unwrap_err();
        assert!(
            matches!(
                err,
                SignatureError::OutsideWindow {
                    skew_ms: 31_000,
                    ..
                }
            ),
            "{err}"
        );
        // Refusals took no nonce: the request still passes in its window.
        check(&v, &r, &s, NOW).await.unwrap();

        let none = ReceivedHeaders::default();
        let err = v.verify(&r, none, NOW).await.unwrap_err();
        assert_eq!(err.error_kind(), ErrorKind::Unauthorized);
        let date = NOW.to_string();
        for (h, name) in [
            (
                ReceivedHeaders {
                    date: Some("soon"),
                    nonce: Some(&s.nonce),
                    signature: Some(&s.signature),
                },
                DATE_HEADER,
            ),
            (
                ReceivedHeaders {
                    date: Some(&date),
                    nonce: Some("../x"),
                    signature: Some(&s.signature),
                },
                NONCE_HEADER,
            ),
            (
                ReceivedHeaders {
                    date: Some(&date),
                    nonce: Some(&s.nonce),
                    signature: Some("zz"),
                },
                SIGNATURE_HEADER,
            ),
        ] {
            let err = v.verify(&r, h, NOW).await.unwrap_err();
            assert!(
                matches!(err, SignatureError::Malformed(n) if n == name),
                "{err}"
            );
            assert_eq!(err.error_kind(), ErrorKind::Forbidden);
        }
    }

    #[test]
    fn the_canonical_query_sorts_pairs_and_drops_empty_ones() {
        assert_eq!(canonical_query("b=2&&a=1&"), "a=1&b=2");
        assert_eq!(canonical_query(""), "");
    }
}
