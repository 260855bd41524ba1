//! The archive's Prometheus metrics: hits and misses of the memory cache
//! the packager reads chunk indexes and segments through.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// Which cache and what happened; two fixed sets of values.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabels {
    /// `index` or `segment`.
    pub cache: &'static str,
    /// `hit` or `miss` (a miss loads from the store; concurrent misses on
    /// one key share one load and count as one miss each).
    pub result: &'static str,
}

static LOOKUPS: LazyLock<Family<LookupLabels, Counter>> = LazyLock::new(|| {
    let family = Family::<LookupLabels, Counter>::default();
    for cache in ["index", "segment"] {
        for result in ["hit", "miss"] {
            let _ = family.get_or_create(&LookupLabels { cache, result });
        }
    }
    dvr_telemetry::metrics::register(|r| {
        r.register(
            "dvr_packager_cache_lookups",
            "Memory cache lookups of chunk indexes and segments, by result: hit or miss",
            family.clone(),
        );
    });
    family
});

/// Registers the cache's family.
pub fn register() {
    LazyLock::force(&LOOKUPS);
}

/// Counts one lookup in `cache` (`index` or `segment`).
pub(crate) fn lookup(cache: &'static str, hit: bool) {
    let result = if hit { "hit" } else { "miss" };
    LOOKUPS.get_or_create(&LookupLabels { cache, result }).inc();
}
