//! Values derived from the database, kept in memory for as long as the database does not change.
//!
//! Each value is filed under the data version read before the database was read for it (see
//! [`super::Db::data_version`]). A swap or any commit except an untracked one (last-contact
//! times) moves the version on, and the next use of the cache then empties it. So a cached value
//! is never older than the data it was derived from.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A cache keyed by two strings, such as a license key and a computer id.
#[derive(Debug)]
pub struct VersionCache<V> {
    inner: Mutex<Inner<V>>,
    capacity: usize,
}

#[derive(Debug)]
struct Inner<V> {
    version: u64,
    len: usize,
    entries: HashMap<String, HashMap<String, Arc<V>>>,
}

impl<V> VersionCache<V> {
    /// Creates a cache of at most `capacity` values. A full cache starts again empty, and a
    /// capacity of 0 keeps nothing.
    pub fn new(capacity: usize) -> Self {
        VersionCache {
            inner: Mutex::new(Inner {
                version: 0,
                len: 0,
                entries: HashMap::new(),
            }),
            capacity,
        }
    }

    /// Returns the value filed under `first` and `second`, if it was read at `version`.
    pub fn get(&self, version: u64, first: &str, second: &str) -> Option<Arc<V>> {
        let inner = self.inner.lock().expect("cache lock poisoned");
        if inner.version != version {
            return None;
        }
        inner.entries.get(first)?.get(second).cloned()
    }

    /// Files `value`, read from the database after `version` was read, unless the database has
    /// moved on since.
    pub fn insert(&self, version: u64, first: &str, second: &str, value: Arc<V>) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.inner.lock().expect("cache lock poisoned");
        if version < inner.version {
            return;
        }
        let known = inner
            .entries
            .get(first)
            .is_some_and(|values| values.contains_key(second));
        if version > inner.version || (!known && inner.len >= self.capacity) {
            inner.entries.clear();
            inner.len = 0;
            inner.version = version;
        }
        let previous = inner
            .entries
            .entry(first.to_string())
            .or_default()
            .insert(second.to_string(), value);
        if previous.is_none() {
            inner.len += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_serves_a_value_only_at_its_version() {
        let cache = VersionCache::new(10);
        cache.insert(3, "key", "pc", Arc::new(1));
        assert_eq!(cache.get(3, "key", "pc").as_deref(), Some(&1));
        assert_eq!(cache.get(3, "key", "other-pc"), None);
        assert_eq!(cache.get(4, "key", "pc"), None);
    }

    #[test]
    fn cache_keeps_only_the_newest_version() {
        let cache = VersionCache::new(10);
        cache.insert(3, "key", "pc", Arc::new(1));
        cache.insert(5, "key", "pc-2", Arc::new(2));
        assert_eq!(cache.get(5, "key", "pc"), None);
        assert_eq!(cache.get(5, "key", "pc-2").as_deref(), Some(&2));
        cache.insert(4, "key", "pc", Arc::new(3));
        assert_eq!(cache.get(5, "key", "pc"), None);
        assert_eq!(cache.get(4, "key", "pc"), None);
    }

    #[test]
    fn cache_starts_again_empty_when_full() {
        let cache = VersionCache::new(2);
        cache.insert(1, "a", "pc", Arc::new(1));
        cache.insert(1, "b", "pc", Arc::new(2));
        cache.insert(1, "b", "pc", Arc::new(3));
        assert_eq!(cache.get(1, "a", "pc").as_deref(), Some(&1));
        cache.insert(1, "c", "pc", Arc::new(4));
        assert_eq!(cache.get(1, "a", "pc"), None);
        assert_eq!(cache.get(1, "c", "pc").as_deref(), Some(&4));
    }

    #[test]
    fn cache_of_no_capacity_keeps_nothing() {
        let cache = VersionCache::new(0);
        cache.insert(1, "a", "pc", Arc::new(1));
        assert_eq!(cache.get(1, "a", "pc"), None);
    }
}
