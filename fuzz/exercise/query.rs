//! The query string (`dvr_packager::query::Query::parse`) under any text a
//! client can send, and under queries written from known values.
//!
//! Shared by the `query` fuzz target and the packager's corpus replay test.
//! A query either parses with every number inside its bound (the service
//! does arithmetic on them unchecked) or is refused with one line that
//! names the parameter; a query written from values reads back as them.

use dvr_common::UtcMs;
use dvr_packager::query::{Query, Timelapse, MAX_PREVIEW_WIDTH, MAX_TIMELAPSE_SECS};

#[path = "input.rs"]
mod input;
use input::Input;

/// The largest `started` (milliseconds) and `utc`/`lutc` (seconds).
const MAX_STARTED: i64 = UtcMs::LAST_SECOND * 1000;

/// Builds a query from `data` and checks it reads back, then checks the
/// rest of `data` as a query of its own.
pub fn exercise_query(data: &[u8]) {
    let mut input = Input::new(data);
    check_built(&mut input);
    check(Some(&input.rest_text()));
    assert_eq!(Query::parse(None), Ok(Query::default()));
}

/// What holds of any query.
fn check(raw: Option<&str>) {
    let text = raw.unwrap_or_default();
    match Query::parse(raw) {
        Ok(q) => {
            let bounded = |n: Option<i64>, max: i64| n.is_none_or(|n| (0..=max).contains(&n));
            assert!(bounded(q.started, MAX_STARTED), "{text:?}: {q:?}");
            assert!(bounded(q.utc, UtcMs::LAST_SECOND), "{text:?}: {q:?}");
            assert!(bounded(q.lutc, UtcMs::LAST_SECOND), "{text:?}: {q:?}");
            let width = q.width.map(i64::from);
            assert!(
                bounded(width, i64::from(MAX_PREVIEW_WIDTH)),
                "{text:?}: {q:?}"
            );
            if let Some(Timelapse::Fit(n)) = q.timelapse {
                assert!((1..=MAX_TIMELAPSE_SECS).contains(&n), "{text:?}: {q:?}");
            }
            // The token is carried byte for byte, as one pair of the query.
            if let Some(token) = &q.token {
                assert!(token.starts_with("token="), "{text:?}: {token:?}");
                assert!(text.split('&').any(|pair| pair == token), "{text:?}");
            }
            assert_eq!(q.carried(), q.token);
        }
        Err(line) => {
            let named = [
                "event=",
                "ignore_gaps=",
                "started=",
                "utc=",
                "lutc=",
                "precise=",
                "dynamic=",
                "timelapse=",
                "width=",
            ]
            .iter()
            .any(|name| line.starts_with(name));
            assert!(named, "{text:?}: {line:?} names no parameter");
            assert!(!line.contains('\n'), "{text:?}: {line:?} is not one line");
        }
    }
}

/// A query of some of the parameters the packager reads, plus one it does
/// not, from values picked by `input`.
fn check_built(input: &mut Input<'_>) {
    let mut pairs: Vec<String> = Vec::new();
    let mut want = Query::default();
    let mut refused = false;
    let present = input.byte();
    let encode = |text: &str| form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    if present & 1 != 0 {
        let token = encode(&input.text());
        let pair = format!("token={token}");
        want.token = Some(pair.clone());
        pairs.push(pair);
    }
    for (bit, name) in [(2u8, "event"), (4, "ignore_gaps")] {
        if present & bit != 0 {
            let (value, on) = match input.byte() % 5 {
                0 => ("true", Some(true)),
                1 => ("1", Some(true)),
                2 => ("false", Some(false)),
                3 => ("0", Some(false)),
                _ => ("yes", None),
            };
            match (on, name) {
                (Some(on), "event") => want.event = on,
                (Some(on), _) => want.ignore_gaps = on,
                (None, _) => refused = true,
            }
            pairs.push(format!("{name}={value}"));
        }
    }
    for (bit, name, max) in [
        (8u8, "started", MAX_STARTED),
        (16, "utc", UtcMs::LAST_SECOND),
        (32, "lutc", UtcMs::LAST_SECOND),
    ] {
        if present & bit != 0 {
            // Past the bound now and then.
            let n = input.up_to(max.saturating_mul(2));
            refused |= n > max;
            let slot = match name {
                "started" => &mut want.started,
                "utc" => &mut want.utc,
                _ => &mut want.lutc,
            };
            *slot = Some(n);
            pairs.push(format!("{name}={n}"));
        }
    }
    if present & 64 != 0 {
        let (from, to) = (input.text(), input.text());
        pairs.push(format!("from={}&to={}", encode(&from), encode(&to)));
        want.from = Some(from);
        want.to = Some(to);
        let words: Vec<String> = (0..=input.below(3)).map(|_| input.text()).collect();
        let list = words.join(",");
        pairs.push(format!("request={}", encode(&list)));
        want.request = list.split(',').map(str::to_owned).collect();
    }
    if present & 128 != 0 {
        // Players and middleware add their own parameters.
        pairs.push(format!(
            "{}={}",
            encode(&input.text()),
            encode(&input.text())
        ));
        if pairs.last().is_some_and(|p| known(p)) {
            pairs.pop();
        }
    }
    let raw = pairs.join("&");
    match Query::parse(Some(&raw)) {
        Ok(q) => {
            assert!(!refused, "{raw:?} parsed: {q:?}");
            assert_eq!(q, want, "{raw:?}");
        }
        Err(line) => assert!(refused, "{raw:?} refused: {line}"),
    }
    check(Some(&raw));
}

/// Whether a pair names a parameter the packager reads.
fn known(pair: &str) -> bool {
    let name = pair.split('=').next().unwrap_or_default();
    let name = form_urlencoded::parse(name.as_bytes())
        .next()
        .map(|(k, _)| k.into_owned())
        .unwrap_or_default();
    [
        "token",
        "event",
        "ignore_gaps",
        "from",
        "to",
        "request",
        "started",
        "utc",
        "lutc",
        "precise",
        "dynamic",
        "timelapse",
        "width",
    ]
    .contains(&name.as_str())
}
