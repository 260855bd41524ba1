//! `securetoken://SECRET`: tokens a website signs with a shared key, so no
//! backend is asked (the seeds' "Securing access to streams").
//!
//! A token is `hash salt endtime starttime`, valid for one stream and one
//! client address from `starttime` to `endtime` inclusive, written either
//! concatenated (the seeds) or with `-` between the four parts
//! (Flussonic's PHP example, `hash-salt-endtime-starttime`).
//!
//! The one idea: **no field boundary may move.** When a field can grow
//! into its neighbour while the hashed text stays the same, a token can be
//! re-read with other times and the same signature: a salt that starts
//! with digits lends them to `endtime` (valid until the year 2500), a digit
//! of `starttime` moved onto `endtime` makes a token from the future valid
//! now. So every field has a fixed width or a separator it cannot hold:
//!
//! - `starttime` and `endtime` are **exactly ten digits** (Unix seconds,
//!   zero-padded) in both spellings, so the token's tail and the hashed
//!   text split one way only;
//! - the hash is **lowercase** hex of fixed length (40 for SHA-1, 64 for
//!   HMAC-SHA256), so a token has one spelling per form, not 2^40 that
//!   each open a session of their own;
//! - the salt is printable ASCII (`!` to `~`, no space); it may hold `-`:
//!   the dashed spelling is recognised by its dashes at fixed places
//!   (after the hash, and before each ten-digit time), which a
//!   concatenated token, ending in twenty digits, never has;
//! - the HMAC variant ends every signed field with a newline, which none
//!   can hold (stream names, addresses, times and salts have none; a
//!   stream or address that does is refused).
//!
//! The SHA-1 form is the seeds' formula, so middleware that already makes
//! such tokens works unchanged:
//!
//! ```text
//! token = sha1(stream + ip + starttime + endtime + secret + salt) + salt + endtime + starttime
//! ```
//!
//! Its text still runs `stream` into `ip` (`news1` + `92.0.2.7` reads as
//! `news` + `192.0.2.7`), which compatibility does not let us change; the
//! HMAC variant (`securetoken-hmac://`, ours) has no such seam:
//!
//! ```text
//! token = hex(hmac_sha256(secret, stream + "\n" + ip + "\n" + starttime + "\n" + endtime + "\n" + salt + "\n"))
//!         + salt + endtime + starttime
//! ```
//!
//! In shell, for stream `news`, address `192.0.2.7`, salt `abc123`, valid
//! from 1699999000 to 1700003600 with the key `SECRETKEY`:
//!
//! ```text
//! $ printf '%s\n' news 192.0.2.7 1699999000 1700003600 abc123 \
//!     | openssl dgst -sha256 -hmac SECRETKEY -r
//! 45c314a1c72781048c37411f1215e15b831820e00052fd3490506fc01a4fe451 *stdin
//! token: 45c314a1c72781048c37411f1215e15b831820e00052fd3490506fc01a4fe451abc12317000036001699999000
//! ```
//!
//! (PHP: `hash_hmac('sha256', "$stream\n$ip\n$start\n$end\n$salt\n", $key)
//! . $salt . $end . $start`.) The secret is never part of the hashed text
//! and SHA-1 is not relied on. Comparisons are constant-time.

use hmac::{KeyInit, Mac};
use sha1::{Digest, Sha1};
use sha2::Sha256;

/// Digits in `starttime` and `endtime`, in both spellings.
pub const TIME_DIGITS: usize = 10;
/// The latest time a token can name (`9999999999`, in the year 2286).
pub const MAX_TIME: i64 = 9_999_999_999;

/// Why a token was refused (for the log; never shown to the player).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not of the form `hash salt endtime starttime` with lowercase hex,
    /// a printable salt and ten-digit times.
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

/// The token's parts, if it is one: `hash_len` lowercase hex digits, a
/// printable salt, two ten-digit times, concatenated or dash-separated.
fn split(token: &str, hash_len: usize) -> Option<Parts<'_>> {
    const T: usize = TIME_DIGITS;
    // ASCII only, so every index below is a char boundary.
    if !token.is_ascii() {
        return None;
    }
    let b = token.as_bytes();
    let n = b.len();
    // Dashed: `hash-salt-end-start`, its three dashes at fixed places. A
    // concatenated token ends in twenty digits, so it is never read as
    // dashed, whatever its salt holds.
    let dashed = n >= hash_len + 1 + 1 + T + 1 + T
        && b[hash_len] == b'-'
        && b[n - T - 1] == b'-'
        && b[n - 2 * T - 2] == b'-';
    let parts = if dashed {
        Parts {
            hash: &token[..hash_len],
            salt: &token[hash_len + 1..n - 2 * T - 2],
            end: &token[n - 2 * T - 1..n - T - 1],
            start: &token[n - T..],
        }
    } else {
        if n < hash_len + 2 * T {
            return None;
        }
        Parts {
            hash: &token[..hash_len],
            salt: &token[hash_len..n - 2 * T],
            end: &token[n - 2 * T..n - T],
            start: &token[n - T..],
        }
    };
    let lower_hex = |s: &str| s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let time = |s: &str| s.len() == T && s.bytes().all(|c| c.is_ascii_digit());
    let ok = lower_hex(parts.hash)
        && parts.salt.bytes().all(is_salt_byte)
        && time(parts.end)
        && time(parts.start);
    ok.then_some(parts)
}

/// Whether `b` may be part of a salt: printable ASCII, no space.
fn is_salt_byte(b: u8) -> bool {
    b.is_ascii_graphic()
}

/// The token's hash for these fields, lowercase hex; `None` when a field
/// holds the HMAC variant's separator (no token can sign it).
fn digest(secret: &str, hmac: bool, stream: &str, ip: &str, p: &Parts<'_>) -> Option<String> {
    if hmac {
        let fields = [stream, ip, p.start, p.end, p.salt];
        if fields.iter().any(|f| f.contains('\n')) {
            return None;
        }
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(secret.as_bytes())
            .expect("HMAC takes keys of any length");
        for field in fields {
            mac.update(field.as_bytes());
            mac.update(b"\n");
        }
        Some(hex::encode(mac.finalize().into_bytes()))
    } else {
        let mut sha = Sha1::new();
        for part in [stream, ip, p.start, p.end, secret, p.salt] {
            sha.update(part.as_bytes());
        }
        Some(hex::encode(sha.finalize()))
    }
}

/// Checks `token` for `stream` played from `ip` at `now` (Unix seconds);
/// on success, the token's `endtime`. Total: any string is answered,
/// never a panic.
pub fn verify(
    secret: &str,
    hmac: bool,
    token: &str,
    stream: &str,
    ip: &str,
    now: i64,
) -> Result<i64, TokenError> {
    let parts = split(token, if hmac { 64 } else { 40 }).ok_or(TokenError::Malformed)?;
    let want = digest(secret, hmac, stream, ip, &parts).ok_or(TokenError::BadSignature)?;
    // Signature first, so a forged time is reported as forged.
    if !constant_time_eq(want.as_bytes(), parts.hash.as_bytes()) {
        return Err(TokenError::BadSignature);
    }
    // Ten digits always fit; a failure here would be a bug, refused all the same.
    let (Ok(end), Ok(start)) = (parts.end.parse::<i64>(), parts.start.parse::<i64>()) else {
        return Err(TokenError::Malformed);
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
/// operators' scripts), in the seeds' concatenated form. `start` and `end`
/// are written as ten digits: outside `0..=`[`MAX_TIME`], or with a salt
/// holding a space, control or non-ASCII character, the token is one
/// [`verify`] refuses.
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
    let hash = digest(secret, hmac, stream, ip, &parts).unwrap_or_default();
    format!("{hash}{salt}{end}{start}")
}

/// Equal bytes, in time that depends on the length only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_700_000_000;
    const IP: &str = "192.0.2.7";

    /// The seeds' formula computed independently: `sha1sum` of the
    /// concatenation, as a PHP `sha1()` would.
    #[test]
    fn matches_the_seeds_formula() {
        let token = sign(
            "SECRETKEY",
            false,
            "news",
            IP,
            "abc123",
            1_699_999_000,
            1_700_003_600,
        );
        // sha1("news192.0.2.7" + "1699999000" + "1700003600" + "SECRETKEY" + "abc123")
        let text = "news192.0.2.716999990001700003600SECRETKEYabc123";
        let want = hex::encode(Sha1::digest(text.as_bytes()));
        assert_eq!(token, format!("{want}abc12317000036001699999000"));
        assert_eq!(
            verify("SECRETKEY", false, &token, "news", IP, NOW),
            Ok(1_700_003_600)
        );
        let dashed = format!("{want}-abc123-1700003600-1699999000");
        assert_eq!(
            verify("SECRETKEY", false, &dashed, "news", IP, NOW),
            Ok(1_700_003_600)
        );
    }

    /// The worked example of the module doc and docs/auth.md, whose hash
    /// `openssl dgst -sha256 -hmac` computed.
    #[test]
    fn hmac_matches_the_documented_example() {
        let hash = "45c314a1c72781048c37411f1215e15b831820e00052fd3490506fc01a4fe451";
        let token = sign(
            "SECRETKEY",
            true,
            "news",
            IP,
            "abc123",
            1_699_999_000,
            1_700_003_600,
        );
        assert_eq!(token, format!("{hash}abc12317000036001699999000"));
        assert_eq!(
            verify("SECRETKEY", true, &token, "news", IP, NOW),
            Ok(1_700_003_600)
        );
        let dashed = format!("{hash}-abc123-1700003600-1699999000");
        assert_eq!(
            verify("SECRETKEY", true, &dashed, "news", IP, NOW),
            Ok(1_700_003_600)
        );
    }

    #[test]
    fn every_field_is_bound() {
        for hmac in [false, true] {
            let t = sign("k", hmac, "news", IP, "s4lt", NOW - 60, NOW + 60);
            let check = |token: &str, stream: &str, ip: &str, now: i64| {
                verify("k", hmac, token, stream, ip, now)
            };
            assert_eq!(check(&t, "news", IP, NOW), Ok(NOW + 60));
            assert_eq!(check(&t, "ort", IP, NOW), Err(TokenError::BadSignature));
            assert_eq!(
                check(&t, "news", "192.0.2.8", NOW),
                Err(TokenError::BadSignature)
            );
            assert_eq!(check(&t, "news", IP, NOW + 61), Err(TokenError::Expired));
            assert_eq!(
                check(&t, "news", IP, NOW - 61),
                Err(TokenError::NotYetValid)
            );
            assert_eq!(
                verify("other", hmac, &t, "news", IP, NOW),
                Err(TokenError::BadSignature)
            );
            let tampered = t.replace("s4lt", "s5lt");
            assert_eq!(
                check(&tampered, "news", IP, NOW),
                Err(TokenError::BadSignature)
            );
            // Pushing endtime forward breaks the signature.
            let later = t.replace(&format!("{}", NOW + 60), &format!("{}", NOW + 9_000));
            assert_eq!(
                check(&later, "news", IP, NOW),
                Err(TokenError::BadSignature)
            );
            for bad in ["", "short", &t[..t.len() - 1], "zz-zz-1-2"] {
                assert!(check(bad, "news", IP, NOW).is_err(), "{bad}");
            }
        }
        // A SHA-1 token is no HMAC token and the other way round.
        let sha = sign("k", false, "news", IP, "s", NOW, NOW + 1);
        assert!(verify("k", true, &sha, "news", IP, NOW).is_err());
    }

    /// The dashed spelling of a token made by [`sign`].
    fn dashed(token: &str, hmac: bool) -> String {
        let hl = if hmac { 64 } else { 40 };
        let n = token.len();
        format!(
            "{}-{}-{}-{}",
            &token[..hl],
            &token[hl..n - 20],
            &token[n - 20..n - 10],
            &token[n - 10..]
        )
    }

    /// Finding (a): the HMAC text ran `endtime` into the salt, so a salt's
    /// leading digits, moved onto `endtime`, kept the signature and made
    /// the token good for centuries.
    #[test]
    fn salt_digits_cannot_stretch_endtime() {
        for hmac in [true, false] {
            for salt in ["0abc", "00x", "0", "12-34"] {
                let t = sign("k", hmac, "news", IP, salt, NOW - 60, NOW + 60);
                let h = &t[..if hmac { 64 } else { 40 }];
                let (lent, kept) = salt.split_at(
                    salt.find(|c: char| !c.is_ascii_digit())
                        .unwrap_or(salt.len()),
                );
                let forged = format!("{h}-{kept}-{}{lent}-{}", NOW + 60, NOW - 60);
                assert_eq!(
                    verify("k", hmac, &forged, "news", IP, NOW + 3600),
                    Err(TokenError::Malformed),
                    "hmac={hmac} salt={salt}: {forged}"
                );
                // The honest token in both spellings still plays.
                assert_eq!(verify("k", hmac, &t, "news", IP, NOW), Ok(NOW + 60));
                let d = dashed(&t, hmac);
                assert_eq!(verify("k", hmac, &d, "news", IP, NOW), Ok(NOW + 60));
            }
        }
    }

    /// Finding (b): both variants hash `starttime + endtime`, so the last
    /// digit of a future `starttime`, moved onto `endtime`, made the token
    /// valid now (its start in 1975).
    #[test]
    fn starttime_digits_cannot_move_to_endtime() {
        for hmac in [false, true] {
            for salt in ["7salt", "s"] {
                let (start, end) = (NOW + 3_600, NOW + 7_200);
                let t = sign("k", hmac, "news", IP, salt, start, end);
                assert_eq!(
                    verify("k", hmac, &t, "news", IP, NOW),
                    Err(TokenError::NotYetValid)
                );
                let h = &t[..if hmac { 64 } else { 40 }];
                let (s, e) = (start.to_string(), end.to_string());
                let forged = format!("{h}-{salt}-{}{e}-{}", &s[9..], &s[..9]);
                assert_eq!(
                    verify("k", hmac, &forged, "news", IP, NOW),
                    Err(TokenError::Malformed),
                    "hmac={hmac}: {forged}"
                );
            }
        }
    }

    #[test]
    fn one_spelling_per_form() {
        for hmac in [false, true] {
            let t = sign("k", hmac, "news", IP, "abc", NOW, NOW + 60);
            assert_eq!(
                verify("k", hmac, &t.to_ascii_uppercase(), "news", IP, NOW),
                Err(TokenError::Malformed),
                "uppercase hex is another spelling of the same token"
            );
            // Times of other widths are refused even where they would parse.
            let d = dashed(&t, hmac);
            let short = format!("{}{}", &d[..d.len() - 10], &d[d.len() - 9..]);
            assert_eq!(
                verify("k", hmac, &short, "news", IP, NOW),
                Err(TokenError::Malformed)
            );
        }
    }

    /// A salt may hold dashes (a UUID) in either spelling; it may not hold
    /// spaces, control or non-ASCII characters, and the HMAC variant's
    /// separator cannot be smuggled in through the stream or address.
    #[test]
    fn salt_and_field_characters() {
        for hmac in [false, true] {
            let uuid = "550e8400-e29b-41d4-a716-446655440000";
            let t = sign("k", hmac, "news", IP, uuid, NOW, NOW + 60);
            assert_eq!(verify("k", hmac, &t, "news", IP, NOW), Ok(NOW + 60));
            let d = dashed(&t, hmac);
            assert_eq!(verify("k", hmac, &d, "news", IP, NOW), Ok(NOW + 60));
            for salt in ["a b", "a\nb", "é"] {
                let t = sign("k", hmac, "news", IP, salt, NOW, NOW + 60);
                assert_eq!(
                    verify("k", hmac, &t, "news", IP, NOW),
                    Err(TokenError::Malformed),
                    "{salt:?}"
                );
            }
        }
        let t = sign("k", true, "news", IP, "s", NOW, NOW + 60);
        for (stream, ip) in [("news\n", IP), ("news", "192.0.2.7\n")] {
            assert_eq!(
                verify("k", true, &t, stream, ip, NOW),
                Err(TokenError::BadSignature)
            );
        }
    }

    #[test]
    fn constant_time_eq_is_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    /// Every way to re-split `text` in three (`i <= j`).
    fn splits(text: &str) -> impl Iterator<Item = (&str, &str, &str)> + '_ {
        (0..=text.len())
            .flat_map(move |i| (i..=text.len()).map(move |j| (&text[..i], &text[i..j], &text[j..])))
    }

    /// Asserts `candidate` never verifies outside `start..=end`, nor
    /// with another `endtime`.
    fn holds_its_times(hmac: bool, candidate: &str, start: i64, end: i64) {
        let at = |now| verify("key", hmac, candidate, "news", IP, now);
        assert!(at(start - 1).is_err(), "valid before {start}: {candidate}");
        assert!(
            at(end.saturating_add(1)).is_err(),
            "valid after {end}: {candidate}"
        );
        if let Ok(e) = at(start) {
            assert_eq!(e, end, "another endtime: {candidate}");
        }
    }

    proptest! {
        /// No re-reading of a valid token verifies with other times: not
        /// its signed text (`starttime endtime salt`) cut into fields at
        /// other places, in either spelling, nor its characters with
        /// dashes put anywhere.
        #[test]
        fn no_resplit_verifies_with_other_times(
            hmac in any::<bool>(),
            salt in "[0-9]{0,3}[!-~]{0,6}",
            a in 0i64..=MAX_TIME,
            b in 0i64..=MAX_TIME,
        ) {
            let (start, end) = (a.min(b), a.max(b));
            let token = sign("key", hmac, "news", IP, &salt, start, end);
            let hl = if hmac { 64 } else { 40 };
            let hash = &token[..hl];
            prop_assert_eq!(verify("key", hmac, &token, "news", IP, start), Ok(end));
            let signed = format!("{start:010}{end:010}{salt}");
            for (s, e, rest) in splits(&signed) {
                holds_its_times(hmac, &format!("{hash}{rest}{e}{s}"), start, end);
                holds_its_times(hmac, &format!("{hash}-{rest}-{e}-{s}"), start, end);
            }
            let tail = &token[hl..];
            for (x, y, z) in splits(tail) {
                holds_its_times(hmac, &format!("{hash}-{x}-{y}-{z}"), start, end);
            }
        }

        /// Any string is answered, never a panic.
        #[test]
        fn verify_is_total(token in any::<String>(), stream in any::<String>(), hmac in any::<bool>()) {
            let _ = verify("key", hmac, &token, &stream, IP, NOW);
            let _ = verify("key", hmac, &token, "news", &stream, NOW);
        }

        /// Near-valid shapes (hex, dashes, digits) are answered, never a panic.
        #[test]
        fn verify_is_total_on_token_shapes(token in "[0-9a-f\\-é]{0,100}", hmac in any::<bool>()) {
            let _ = verify("key", hmac, &token, "news", IP, NOW);
        }
    }
}
