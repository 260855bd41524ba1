//! The packager's memory caches: a map kept under a number of bytes,
//! emptied when the next entry would not fit.
//!
//! Everything the packager caches is made from the tape and never changes
//! under its key (fMP4 pieces, decoded sample tables, JPEG previews), so
//! an entry needs no invalidation, only a bound. Emptying the whole map
//! when full is the simplest policy that keeps the bound: it costs one
//! rebuild per entry still in use, and what is in use (a live stream's
//! newest segments, a programme being exported) comes back at once.

use std::collections::HashMap;
use std::hash::Hash;

/// A map of at most `CAP` bytes of values (each weighed when inserted).
#[derive(Debug)]
pub(crate) struct Bounded<K, V, const CAP: usize> {
    entries: HashMap<K, (V, usize)>,
    bytes: usize,
}

impl<K, V, const CAP: usize> Default for Bounded<K, V, CAP> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            bytes: 0,
        }
    }
}

impl<K: Eq + Hash, V: Clone, const CAP: usize> Bounded<K, V, CAP> {
    /// The value under `key`.
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.entries.get(key).map(|(v, _)| v.clone())
    }

    /// Keeps `value`, of `weight` bytes, under `key`: the map is emptied
    /// first when it would not fit; a value larger than the whole cache is
    /// not kept.
    pub(crate) fn insert(&mut self, key: K, value: V, weight: usize) {
        if weight > CAP {
            return;
        }
        if self.bytes + weight > CAP {
            self.entries.clear();
            self.bytes = 0;
        }
        if let Some((_, old)) = self.entries.insert(key, (value, weight)) {
            self.bytes -= old;
        }
        self.bytes += weight;
    }

    /// Bytes held.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_kept_within_their_bytes() {
        const CAP: usize = 100;
        let mut cache: Bounded<u32, u32, CAP> = Bounded::default();
        cache.insert(1, 10, CAP / 2);
        cache.insert(1, 11, CAP / 2);
        assert_eq!(
            cache.bytes(),
            CAP / 2,
            "a replaced entry is not counted twice"
        );
        assert_eq!(cache.get(&1), Some(11));
        cache.insert(2, 20, CAP / 2);
        assert!(cache.get(&1).is_some() && cache.bytes() == CAP);
        // Full: emptied, then the new one kept.
        cache.insert(3, 30, 1);
        assert!(cache.get(&1).is_none() && cache.get(&3) == Some(30));
        assert_eq!(cache.bytes(), 1);
        // Larger than the whole cache: not kept.
        cache.insert(4, 40, CAP + 1);
        assert!(cache.get(&4).is_none());
    }
}
