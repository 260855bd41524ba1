//! `Range` headers (`dvr_packager::http::parse_range` and `range_ask`)
//! against bodies of any length.
//!
//! Shared by the `range` fuzz target and the packager's corpus replay test.
//! A range the packager serves must lie inside the body and be non-empty,
//! or it would read past the end or answer a `206` with nothing; `range_ask`
//! must serve a part exactly when `parse_range` finds one; and the three
//! spellings (`a-b`, `a-`, `-n`) mean what RFC 9110 says.

use dvr_packager::http::{parse_range, range_ask, RangeAsk};

#[path = "input.rs"]
mod input;
use input::Input;

/// Reads a body length and numbers from `data`, checks the headers built
/// from them, then the rest of `data` as a header of its own.
pub fn exercise_range(data: &[u8]) {
    let mut input = Input::new(data);
    let len = match input.byte() % 4 {
        0 => 0,
        1 => input.below(1 << 12),
        2 => input.below(1 << 40),
        _ => input.u64(),
    };
    // Numbers near the length, where the edge cases are.
    let near = |input: &mut Input<'_>| match input.byte() % 3 {
        0 => len.saturating_add_signed(input.delta()),
        1 => input.below(len.saturating_add(2)),
        _ => input.u64(),
    };
    let (a, b) = (near(&mut input), near(&mut input));
    let n = near(&mut input);

    // `a-b`: from a to b inclusive, b cut to the body.
    let (lo, hi) = (a.min(b), a.max(b));
    let want = (lo < len).then(|| (lo, hi.saturating_add(1).min(len)));
    assert_eq!(check(&format!("bytes={lo}-{hi}"), len), want);
    // `a-`: from a to the end.
    assert_eq!(
        check(&format!("bytes={a}-"), len),
        (a < len).then_some((a, len))
    );
    // `-n`: the last n bytes.
    let want = (n > 0 && len > 0).then(|| (len - n.min(len), len));
    assert_eq!(check(&format!("bytes=-{n}"), len), want);
    // Several ranges: never one part of them.
    assert_eq!(check(&format!("bytes={lo}-{hi},{n}-"), len), None);

    check(&input.rest_text(), len);
}

/// What holds of any header; the range it asks for.
fn check(value: &str, len: u64) -> Option<(u64, u64)> {
    let parsed = parse_range(value, len);
    if let Some((start, end)) = parsed {
        assert!(
            start < end && end <= len,
            "{value:?} of {len} bytes: [{start}, {end}) is not inside the body"
        );
    }
    match range_ask(Some(value), len) {
        RangeAsk::Part(start, end) => assert_eq!(parsed, Some((start, end)), "{value:?}"),
        _ => assert_eq!(parsed, None, "{value:?}: a range found but not served"),
    }
    assert_eq!(range_ask(None, len), RangeAsk::Whole);
    parsed
}
