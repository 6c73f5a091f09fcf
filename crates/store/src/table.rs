//! [`Table`]: the in-memory table's map of key → entry, keeping how many keys each collection has as it changes, so
//! a collection's count is read without walking its keys under the state lock.

use std::collections::{BTreeMap, HashMap};
use std::ops::Deref;

use crate::collection;
use crate::store::RESERVED_ID_PREFIX;

/// The table's map and its per-collection key counts. Reads go through `Deref`; every change goes through
/// [`Table::insert`], [`Table::remove`] or [`Table::get_mut`] (which cannot change a key), so the counts always
/// match the map.
#[derive(Debug, Clone)]
pub(crate) struct Table<E> {
    map: BTreeMap<String, E>,
    /// Keys of each named collection (not `default`); a collection with none has no entry.
    named: HashMap<String, usize>,
    /// Keys under [`RESERVED_ID_PREFIX`] (medic's own documents, collection settings).
    reserved: usize,
}

impl<E> Default for Table<E> {
    fn default() -> Self {
        Table {
            map: BTreeMap::new(),
            named: HashMap::new(),
            reserved: 0,
        }
    }
}

impl<E> From<BTreeMap<String, E>> for Table<E> {
    fn from(map: BTreeMap<String, E>) -> Self {
        let mut t = Table {
            map: BTreeMap::new(),
            ..Table::default()
        };
        for k in map.keys() {
            t.count(k, 1);
        }
        t.map = map;
        t
    }
}

impl<E> Deref for Table<E> {
    type Target = BTreeMap<String, E>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl<E> Table<E> {
    fn count(&mut self, key: &str, delta: isize) {
        if key.starts_with(RESERVED_ID_PREFIX) {
            self.reserved = self.reserved.saturating_add_signed(delta);
        } else if collection::is_namespaced(key) {
            let c = collection::split(key).0;
            let n = self.named.entry(c.to_owned()).or_default();
            *n = n.saturating_add_signed(delta);
            if *n == 0 {
                self.named.remove(c);
            }
        }
    }

    /// Inserts or replaces `key`'s entry.
    pub(crate) fn insert(&mut self, key: String, e: E) -> Option<E> {
        if !self.map.contains_key(&key) {
            self.count(&key, 1);
        }
        self.map.insert(key, e)
    }

    /// Removes `key`'s entry.
    pub(crate) fn remove(&mut self, key: &str) -> Option<E> {
        let old = self.map.remove(key);
        if old.is_some() {
            self.count(key, -1);
        }
        old
    }

    /// The entry of `key`, to change in place.
    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut E> {
        self.map.get_mut(key)
    }

    /// Documents of every collection: medic's own (collection settings, the probe's document) left out.
    pub(crate) fn documents(&self) -> usize {
        self.map.len() - self.reserved
    }

    /// Documents of `collection` (medic's own left out).
    pub(crate) fn count_in(&self, c: &str) -> usize {
        if c == collection::DEFAULT {
            let named: usize = self.named.values().sum();
            self.map.len() - named - self.reserved
        } else {
            self.named.get(c).copied().unwrap_or(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_every_change() {
        let mut t: Table<u8> = Table::default();
        t.insert("a".into(), 1);
        t.insert("a".into(), 2);
        t.insert(collection::key("w", "a"), 1);
        t.insert(collection::key("w", "b"), 1);
        t.insert(".medic/probe".into(), 1);
        assert_eq!(
            (t.count_in("default"), t.count_in("w"), t.count_in("x")),
            (1, 2, 0)
        );
        t.remove(&collection::key("w", "a"));
        t.remove(&collection::key("w", "zz"));
        t.remove("a");
        assert_eq!((t.count_in("default"), t.count_in("w")), (0, 1));
        let again = Table::from(t.map.clone());
        assert_eq!(
            (
                again.count_in("default"),
                again.count_in("w"),
                again.reserved
            ),
            (0, 1, 1)
        );
    }
}
