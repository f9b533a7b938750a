//! The storage of the inode table: values in numbered slots, their number (the inode) made of
//! the slot and a generation, so a slot freed and given out again never gives an inode number
//! twice (the kernel, the listing caches and the walks key on it).
//!
//! Why not a `HashMap<Ino, Node>`: a hash table of a million nodes is a single block that
//! doubles as it grows (every doubling copies it and leaves the old block to the allocator)
//! and is only 44–87 % full, so a node of 150 bytes took 190–380 bytes of slots. Here the
//! slots come in fixed chunks that never move, a free slot is reused before a new one, and an
//! inode finds its value by index, with no hash.
//!
//! An inode number is `generation << 32 | slot`: below 2^32 until slots are reused, and slot
//! 0 is never given out (inode 0 means no inode).

/// Slots per chunk: a chunk of nodes is ~150 KiB, small next to a million entries and large
/// enough that the list of chunks stays short.
const CHUNK: usize = 1024;

pub struct Slots<T> {
    /// The values; slot `s` is `chunks[s / CHUNK][s % CHUNK]`. A chunk is never moved or freed.
    chunks: Vec<Box<[Option<T>]>>,
    /// The current generation of each slot (bumped when its value is removed).
    generations: Vec<u32>,
    /// Slots whose value was removed, reused first (last freed, first reused).
    free: Vec<u32>,
    /// Values held.
    len: usize,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            chunks: Vec::new(),
            generations: vec![0], // slot 0: never given out
            free: Vec::new(),
            len: 0,
        }
    }
}

fn split(id: u64) -> (usize, u32) {
    ((id & u64::from(u32::MAX)) as usize, (id >> 32) as u32)
}

impl<T> Slots<T> {
    /// Stores `value`; returns its number.
    pub fn insert(&mut self, value: T) -> u64 {
        let slot = match self.free.pop() {
            Some(slot) => slot as usize,
            None => {
                let slot = self.generations.len();
                assert!(slot <= u32::MAX as usize, "more than 2^32 inodes");
                self.generations.push(0);
                if slot / CHUNK == self.chunks.len() {
                    self.chunks
                        .push(std::iter::repeat_with(|| None).take(CHUNK).collect());
                }
                slot
            }
        };
        self.chunks[slot / CHUNK][slot % CHUNK] = Some(value);
        self.len += 1;
        u64::from(self.generations[slot]) << 32 | slot as u64
    }

    /// The slot of `id` if it holds `id`'s value (not a later one's).
    fn slot(&self, id: u64) -> Option<usize> {
        let (slot, generation) = split(id);
        (slot != 0 && self.generations.get(slot) == Some(&generation)).then_some(slot)
    }

    pub fn get(&self, id: u64) -> Option<&T> {
        let slot = self.slot(id)?;
        self.chunks[slot / CHUNK][slot % CHUNK].as_ref()
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut T> {
        let slot = self.slot(id)?;
        self.chunks[slot / CHUNK][slot % CHUNK].as_mut()
    }

    /// Takes `id`'s value out; its slot is reused under a new number.
    pub fn remove(&mut self, id: u64) -> Option<T> {
        let slot = self.slot(id)?;
        let value = self.chunks[slot / CHUNK][slot % CHUNK].take()?;
        self.generations[slot] = self.generations[slot].wrapping_add(1);
        self.free.push(slot as u32);
        self.len -= 1;
        Some(value)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Every value with its number.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &T)> {
        self.chunks
            .iter()
            .flat_map(|chunk| chunk.iter())
            .enumerate()
            .filter_map(|(slot, value)| {
                let value = value.as_ref()?;
                Some((u64::from(self.generations[slot]) << 32 | slot as u64, value))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::Slots;

    #[test]
    fn a_reused_slot_never_answers_to_its_old_number() {
        let mut s = Slots::default();
        let a = s.insert("a");
        assert_eq!(a, 1, "slot 0 is never given out");
        let b = s.insert("b");
        assert_eq!(s.remove(a), Some("a"));
        assert_eq!(s.get(a), None);
        let c = s.insert("c");
        assert_ne!(c, a, "the slot is reused under a new number");
        assert_eq!(c & 0xffff_ffff, a, "the same slot");
        assert_eq!((s.get(a), s.get(c)), (None, Some(&"c")));
        assert_eq!(s.remove(a), None);
        assert_eq!(s.len(), 2);
        let mut all: Vec<_> = s.iter().collect();
        all.sort();
        assert_eq!(all, vec![(b, &"b"), (c, &"c")]);
        assert_eq!(s.get(0), None);
    }

    #[test]
    fn values_span_chunks() {
        let mut s = Slots::default();
        let ids: Vec<u64> = (0..3000).map(|i| s.insert(i)).collect();
        assert!(ids.iter().enumerate().all(|(i, id)| s.get(*id) == Some(&i)));
        assert_eq!(s.iter().count(), 3000);
    }
}
