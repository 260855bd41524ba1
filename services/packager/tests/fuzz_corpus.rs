//! Replays the packager fuzzers' corpora: every URL, `Range` header and
//! query string they ever kept must still parse (or be refused) with the
//! properties the targets check. The checks live in `fuzz/exercise/`,
//! shared with the targets, so `make test` runs exactly what `make fuzz`
//! runs.

// Each exercise file stands alone as one target's module, reading its input
// through its own copy of `fuzz/exercise/input.rs`; replaying three of them
// here loads that file three times, as three private modules.
#![allow(clippy::duplicate_mod)]

#[path = "../../../fuzz/exercise/url.rs"]
mod url;

#[path = "../../../fuzz/exercise/range.rs"]
mod range;

#[path = "../../../fuzz/exercise/query.rs"]
mod query;

#[test]
fn url_corpus_replays_cleanly() {
    dvr_common::fuzz_corpus::replay("url", 10, url::exercise_url);
}

#[test]
fn range_corpus_replays_cleanly() {
    dvr_common::fuzz_corpus::replay("range", 5, range::exercise_range);
}

#[test]
fn query_corpus_replays_cleanly() {
    dvr_common::fuzz_corpus::replay("query", 5, query::exercise_query);
}
