//! Securetoken (`dvr_auth::securetoken`), both variants, as a website
//! signs it and as an attacker rearranges it.
//!
//! Shared by the `securetoken` fuzz target and the auth crate's corpus
//! replay test. Three properties, not just "no panic":
//!
//! - a token `sign` made verifies for its stream and address exactly while
//!   `starttime <= now <= endtime`, in both spellings (concatenated and
//!   `hash-salt-endtime-starttime`), and answers its `endtime`;
//! - no token made of the same signature with the signed times and salt
//!   split elsewhere (`1699999000` + `1700003600` + `99ab` read as
//!   `169999900` + `01700003600` or `1700003600` + `99` + `ab`) verifies
//!   with another `endtime` or before the signed `starttime`: that is how a
//!   token is stretched without the secret;
//! - an HMAC token does not verify for another split of its stream and
//!   address (`news` + `12.0.2.7` as `news1` + `2.0.2.7`); the SHA-1 form
//!   keeps that seam for compatibility with the seeds' formula.
//!
//! Any other text is answered without a panic, and only while it is valid.

use dvr_auth::securetoken::{sign, verify};

#[path = "input.rs"]
mod input;
use input::Input;

/// The latest time a ten-digit field can hold.
const MAX_TIME: i64 = 9_999_999_999;

/// Signs a token for fields picked by `data`, checks it and its
/// rearrangements, then verifies the rest of `data` as a token.
pub fn exercise_securetoken(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.byte();
    let hmac = flags & 1 != 0;
    let secret = input.text();
    let stream = input.text();
    let ip = input.text();
    // A website's salt: printable ASCII, digits and `-` included.
    let salt: String = input
        .bytes()
        .iter()
        .map(|b| char::from(b'!' + b % 94))
        .collect();
    let start = input.up_to(MAX_TIME);
    let end = match flags >> 1 & 1 {
        0 => input.up_to(MAX_TIME),
        _ => start
            .saturating_add(input.delta().abs() * 3600)
            .min(MAX_TIME),
    };
    // Around the edges of the validity, where off-by-ones live.
    let now = match flags >> 2 & 3 {
        0 => start + input.delta(),
        1 => end + input.delta(),
        2 => input.up_to(MAX_TIME),
        _ => start + (end - start) / 2,
    };
    let cuts = [input.byte(), input.byte(), input.byte()];
    let token = sign(&secret, hmac, &stream, &ip, &salt, start, end);
    let signed = Signed {
        secret: &secret,
        hmac,
        stream: &stream,
        ip: &ip,
        salt: &salt,
        start,
        end,
    };
    signed.check_genuine(&token, now);
    signed.check_resplit(&token, now, cuts);
    if hmac {
        signed.check_other_address(&token, now, cuts[0]);
    }

    // Anything else: an answer, and `Ok` only while valid.
    let text = input.rest_text();
    if let Ok(until) = verify(&secret, hmac, &text, &stream, &ip, now) {
        assert!(
            until >= now,
            "{text:?} verified at {now}, past its end {until}"
        );
    }
}

/// What a website signed.
#[derive(Debug)]
struct Signed<'a> {
    secret: &'a str,
    hmac: bool,
    stream: &'a str,
    ip: &'a str,
    salt: &'a str,
    start: i64,
    end: i64,
}

impl Signed<'_> {
    fn verify(&self, token: &str, stream: &str, ip: &str, now: i64) -> Option<i64> {
        verify(self.secret, self.hmac, token, stream, ip, now).ok()
    }

    fn hash_len(&self) -> usize {
        if self.hmac {
            64
        } else {
            40
        }
    }

    /// The token verifies, in both spellings, exactly while valid.
    fn check_genuine(&self, token: &str, now: i64) {
        // The HMAC variant ends each field with a newline, so a stream or
        // address holding one cannot be signed.
        let signable = !(self.hmac && (self.stream.contains('\n') || self.ip.contains('\n')));
        if !signable {
            return;
        }
        let valid = self.start <= now && now <= self.end;
        let want = valid.then_some(self.end);
        let got = self.verify(token, self.stream, self.ip, now);
        assert_eq!(got, want, "{token:?} at {now} ({self:?})");
        let Some(hash) = token.get(..self.hash_len()) else {
            panic!("{token:?}: shorter than its hash");
        };
        let dashed = format!("{hash}-{}-{:010}-{:010}", self.salt, self.end, self.start);
        let got = self.verify(&dashed, self.stream, self.ip, now);
        assert_eq!(got, want, "{dashed:?} at {now} ({self:?})");
    }

    /// The signed times and salt, split at other places under the same
    /// signature, never verify with other times.
    fn check_resplit(&self, token: &str, now: i64, cuts: [u8; 3]) {
        let Some(hash) = token.get(..self.hash_len()) else {
            return;
        };
        // The signed text runs starttime, endtime (and, for HMAC, the salt)
        // together; every regrouping of those characters is a candidate.
        let fields = format!("{:010}{:010}{}", self.start, self.end, self.salt);
        let n = fields.len();
        let mut at = [
            usize::from(cuts[0]) % (n + 1),
            usize::from(cuts[1]) % (n + 1),
        ];
        at.sort_unstable();
        let (start, end, salt) = (&fields[..at[0]], &fields[at[0]..at[1]], &fields[at[1]..]);
        // Also one digit moved across the start/end seam, the shortest
        // stretch.
        let shift = usize::from(cuts[2] % 3);
        let seam = (10 + shift).saturating_sub(1).min(n);
        let moved = (
            &fields[..seam],
            &fields[seam..20.max(seam)],
            &fields[20.max(seam)..],
        );
        for (start, end, salt) in [(start, end, salt), moved] {
            for candidate in [
                format!("{hash}{salt}{end}{start}"),
                format!("{hash}-{salt}-{end}-{start}"),
            ] {
                if let Some(until) = self.verify(&candidate, self.stream, self.ip, now) {
                    assert!(
                        until == self.end && self.start <= now,
                        "forged {candidate:?} verifies until {until} at {now}; \
                         signed from {} until {} ({self:?})",
                        self.start,
                        self.end
                    );
                }
            }
        }
    }

    /// An HMAC token is for its stream and address, not for another split
    /// of their characters.
    fn check_other_address(&self, token: &str, now: i64, cut: u8) {
        let joined = format!("{}{}", self.stream, self.ip);
        let at = usize::from(cut) % (joined.len() + 1);
        let (Some(stream), Some(ip)) = (joined.get(..at), joined.get(at..)) else {
            return;
        };
        if stream != self.stream {
            let got = self.verify(token, stream, ip, now);
            assert_eq!(
                got, None,
                "{token:?} signed for {:?} at {:?} verifies for {stream:?} at {ip:?}",
                self.stream, self.ip
            );
        }
    }
}
