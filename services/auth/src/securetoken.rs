//! `securetoken://SECRET`: tokens a website signs with a shared key, so no
//! backend is asked (the seeds' "Securing access to streams").
//!
//! The seeds' formula, so middleware that already makes such tokens works
//! unchanged:
//!
//! ```text
//! token = sha1(stream + ip + starttime + endtime + secret + salt) + salt + endtime + starttime
//! ```
//!
//! with `starttime`/`endtime` Unix seconds (ten digits) and `salt` any
//! random string. Flussonic's published PHP example joins the four parts
//! with `-` (`hash-salt-endtime-starttime`); both spellings are read. The
//! HMAC variant (`securetoken-hmac://`) signs the same fields with
//! HMAC-SHA256 keyed by the secret, as `hmac(stream + ip + starttime +
//! endtime + salt)` in hex (64 digits), and is otherwise identical: it does
//! not rely on SHA-1 and the secret is never part of the hashed text.
//!
//! A token is valid for its stream and client address only, from
//! `starttime` to `endtime` inclusive; comparisons are constant-time.

use hmac::{KeyInit, Mac};
use sha1::{Digest, Sha1};
use sha2::Sha256;

/// Why a token was refused (for the log; never shown to the player).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not of the form `hash salt endtime starttime`.
    #[error("malformed securetoken")]
    Malformed,
    /// `endtime` is past.
    #[error("securetoken expired")]
    Expired,
    /// `starttime` is still to come.
    #[error("securetoken not valid yet")]
    NotYetValid,
    /// The hash does not match this stream, address and secret (wrong
    /// stream, wrong IP, tampered salt or times, or another secret).
    #[error("securetoken signature does not match stream, address and secret")]
    BadSignature,
}

/// The parts of a token.
#[derive(Debug, PartialEq, Eq)]
struct Parts<'a> {
    hash: &'a str,
    salt: &'a str,
    end: &'a str,
    start: &'a str,
}

fn split(token: &str, hash_len: usize) -> Option<Parts<'_>> {
    let dashed: Vec<&str> = token.split('-').collect();
    let parts = if dashed.len() == 4 {
        Parts {
            hash: dashed[0],
            salt: dashed[1],
            end: dashed[2],
            start: dashed[3],
        }
    } else {
        // Concatenated: the hash has a fixed length and the two times are
        // ten digits each until the year 2286.
        if !token.is_ascii() || token.len() < hash_len + 20 {
            return None;
        }
        let (hash, rest) = token.split_at(hash_len);
        let (salt, times) = rest.split_at(rest.len() - 20);
        let (end, start) = times.split_at(10);
        Parts {
            hash,
            salt,
            end,
            start,
        }
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 12 && s.bytes().all(|b| b.is_ascii_digit());
    let ok = parts.hash.len() == hash_len
        && parts.hash.bytes().all(|b| b.is_ascii_hexdigit())
        && digits(parts.end)
        && digits(parts.start);
    ok.then_some(parts)
}

fn digest(secret: &str, hmac: bool, stream: &str, ip: &str, p: &Parts<'_>) -> String {
    if hmac {
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(secret.as_bytes())
            .expect("HMAC takes keys of any length");
        for part in [stream, ip, p.start, p.end, p.salt] {
            mac.update(part.as_bytes());
        }
        hex::encode(mac.finalize().into_bytes())
    } else {
        let mut sha = Sha1::new();
        for part in [stream, ip, p.start, p.end, secret, p.salt] {
            sha.update(part.as_bytes());
        }
        hex::encode(sha.finalize())
    }
}

/// Checks `token` for `stream` played from `ip` at `now` (Unix seconds);
/// on success, the token's `endtime`.
pub fn verify(
    secret: &str,
    hmac: bool,
    token: &str,
    stream: &str,
    ip: &str,
    now: i64,
) -> Result<i64, TokenError> {
    let parts = split(token, if hmac { 64 } else { 40 }).ok_or(TokenError::Malformed)?;
    let want = digest(secret, hmac, stream, ip, &parts);
    // Signature first, so a forged time is reported as forged.
    if !constant_time_eq(want.as_bytes(), parts.hash.to_ascii_lowercase().as_bytes()) {
        return Err(TokenError::BadSignature);
    }
    let (end, start): (i64, i64) = match (parts.end.parse(), parts.start.parse()) {
        (Ok(e), Ok(s)) => (e, s),
        _ => return Err(TokenError::Malformed),
    };
    if now > end {
        return Err(TokenError::Expired);
    }
    if now < start {
        return Err(TokenError::NotYetValid);
    }
    Ok(end)
}

/// Makes a token the way a website would (for tests, benchmarks and
/// operators' scripts): the seeds' concatenated form.
pub fn sign(
    secret: &str,
    hmac: bool,
    stream: &str,
    ip: &str,
    salt: &str,
    start: i64,
    end: i64,
) -> String {
    let (start, end) = (format!("{start:010}"), format!("{end:010}"));
    let parts = Parts {
        hash: "",
        salt,
        end: &end,
        start: &start,
    };
    format!(
        "{}{salt}{end}{start}",
        digest(secret, hmac, stream, ip, &parts)
    )
}

/// Equal bytes, in time that depends on the length only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    /// The seeds' formula computed independently: `sha1sum` of the
    /// concatenation, as a PHP `sha1()` would.
    #[test]
    fn matches_the_seeds_formula() {
        let token = sign(
            "SECRETKEY",
            false,
            "news",
            "192.0.2.7",
            "abc123",
            1_699_999_000,
            1_700_003_600,
        );
        // sha1("news192.0.2.7" + "1699999000" + "1700003600" + "SECRETKEY" + "abc123")
        let text = "news192.0.2.716999990001700003600SECRETKEYabc123";
        let want = hex::encode(Sha1::digest(text.as_bytes()));
        assert_eq!(token, format!("{want}abc12317000036001699999000"));
        assert_eq!(
            verify("SECRETKEY", false, &token, "news", "192.0.2.7", NOW),
            Ok(1_700_003_600)
        );
        let dashed = format!("{want}-abc123-1700003600-1699999000");
        assert_eq!(
            verify("SECRETKEY", false, &dashed, "news", "192.0.2.7", NOW),
            Ok(1_700_003_600)
        );
    }

    #[test]
    fn every_field_is_bound() {
        for hmac in [false, true] {
            let t = sign("k", hmac, "news", "192.0.2.7", "s4lt", NOW - 60, NOW + 60);
            let check = |token: &str, stream: &str, ip: &str, now: i64| {
                verify("k", hmac, token, stream, ip, now)
            };
            assert_eq!(check(&t, "news", "192.0.2.7", NOW), Ok(NOW + 60));
            assert_eq!(
                check(&t, "ort", "192.0.2.7", NOW),
                Err(TokenError::BadSignature)
            );
            assert_eq!(
                check(&t, "news", "192.0.2.8", NOW),
                Err(TokenError::BadSignature)
            );
            assert_eq!(
                check(&t, "news", "192.0.2.7", NOW + 61),
                Err(TokenError::Expired)
            );
            assert_eq!(
                check(&t, "news", "192.0.2.7", NOW - 61),
                Err(TokenError::NotYetValid)
            );
            assert_eq!(
                verify("other", hmac, &t, "news", "192.0.2.7", NOW),
                Err(TokenError::BadSignature)
            );
            let tampered = t.replace("s4lt", "s5lt");
            assert_eq!(
                check(&tampered, "news", "192.0.2.7", NOW),
                Err(TokenError::BadSignature)
            );
            // Pushing endtime forward breaks the signature.
            let later = t.replace(&format!("{}", NOW + 60), &format!("{}", NOW + 9_000));
            assert_eq!(
                check(&later, "news", "192.0.2.7", NOW),
                Err(TokenError::BadSignature)
            );
            for bad in ["", "short", &t[..t.len() - 1], "zz-zz-1-2"] {
                assert!(check(bad, "news", "192.0.2.7", NOW).is_err(), "{bad}");
            }
        }
        // A SHA-1 token is no HMAC token and the other way round.
        let sha = sign("k", false, "news", "192.0.2.7", "s", NOW, NOW + 1);
        assert!(verify("k", true, &sha, "news", "192.0.2.7", NOW).is_err());
    }

    #[test]
    fn constant_time_eq_is_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
