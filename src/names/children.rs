//! A directory's children by name, in name order (listings are served in it, and the
//! read-ahead of walks and attributes asks for the names after one).
//!
//! Kept small for a table of millions of entries: a file holds no map at all (a node's
//! `Children` is one pointer until a child is entered), and a listing of a large directory
//! ends with `compact`, which rebuilds the map with full nodes. Names entered in order split
//! the B-tree's leaves in the middle and leave them half full: 100,000 names then took ~48
//! bytes each, compact ~26.

use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Unbounded};
use std::sync::Arc;

use super::inode::Ino;

/// Invariant: `Some` only while the map holds a child (an empty map is freed). Boxed on
/// purpose: a file's `None` takes 8 bytes of its node, a `BTreeMap` 24.
#[allow(clippy::box_collection)]
#[derive(Debug, Default)]
pub struct Children(Option<Box<BTreeMap<Arc<str>, Ino>>>);

impl Children {
    pub fn get(&self, name: &str) -> Option<Ino> {
        self.0.as_ref()?.get(name).copied()
    }

    pub fn insert(&mut self, name: Arc<str>, ino: Ino) {
        self.0
            .get_or_insert_with(Default::default)
            .insert(name, ino);
    }

    /// Removes `name`; returns the inode it had.
    pub fn remove(&mut self, name: &str) -> Option<Ino> {
        let map = self.0.as_mut()?;
        let ino = map.remove(name);
        if map.is_empty() {
            self.0 = None;
        }
        ino
    }

    /// Removes `name` if it still stands for `ino` (and not for a node that took the name
    /// since).
    pub fn remove_if(&mut self, name: &str, ino: Ino) {
        if self.get(name) == Some(ino) {
            self.remove(name);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |m| m.len())
    }

    /// Every child, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, Ino)> {
        self.0.iter().flat_map(|m| m.iter().map(|(n, i)| (n, *i)))
    }

    /// The children after `name`, in name order.
    pub fn after<'a>(&'a self, name: &str) -> impl Iterator<Item = (&'a Arc<str>, Ino)> {
        let range = self
            .0
            .as_ref()
            .map(|m| m.range::<str, _>((Excluded(name), Unbounded)));
        range.into_iter().flatten().map(|(n, i)| (n, *i))
    }

    /// Rebuilds the map with full nodes (see the module's comment); O(children).
    pub fn compact(&mut self) {
        if let Some(map) = self.0.as_mut() {
            **map = std::mem::take(&mut **map).into_iter().collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Children;

    #[test]
    fn names_in_order_after_one_and_freed_when_empty() {
        let mut c = Children::default();
        assert!(c.is_empty());
        for (i, name) in ["b", "a", "d", "c"].into_iter().enumerate() {
            c.insert(name.into(), i as u64);
        }
        let after: Vec<&str> = c.after("b").map(|(n, _)| &**n).collect();
        assert_eq!(after, ["c", "d"]);
        c.compact();
        let all: Vec<(&str, u64)> = c.iter().map(|(n, i)| (&**n, i)).collect();
        assert_eq!(all, [("a", 1), ("b", 0), ("c", 3), ("d", 2)]);
        c.remove_if("a", 7);
        assert_eq!(c.get("a"), Some(1), "a name taken by another node stays");
        for name in ["a", "b", "c", "d"] {
            c.remove(name);
        }
        assert!(c.is_empty() && c.0.is_none());
        assert_eq!(c.len(), 0);
    }
}
