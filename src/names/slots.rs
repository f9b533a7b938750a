//! The storage of the inode table: values in numbered slots, their number (the inode) made of
//! the slot and a generation, so a slot freed and given out again never gives an inode number
//! twice (the kernel, the listing caches and the walks key on it).
//!
//! Why not a `HashMap<Ino, Node>`: a hash table of a million nodes is a single block that
//! doubles as it grows (every doubling copies it and leaves the old block to the allocator)
//! and is only 44–87 % full, so a node of 150 bytes took 190–380 bytes of slots. Here the
//! slots come in fixed chunks that never move, a free slot is reused before a new one, and an
//! inode finds its value by index, with no hash. The chunks whose slots are all free are
//! given back when the table is trimmed (`give_back_empty_chunks`), and made again when one
//! of their slots is reused: after `ls -l` of a directory of a million names the table is
//! trimmed back to its bound, and the chunks of the names it let go (~150 MB) went on holding
//! memory. Only then, so a name created and removed again and again in a chunk of its own
//! does not make and free the chunk each time.
//!
//! An inode number is `generation << 32 | slot`: below 2^32 until slots are reused, and slot
//! 0 is never given out (inode 0 means no inode).

/// Slots per chunk: a chunk of nodes is ~150 KiB, small next to a million entries and large
/// enough that the list of chunks stays short.
const CHUNK: usize = 1024;

pub struct Slots<T> {
    /// The values; slot `s` is `chunks[s / CHUNK][s % CHUNK]`. A chunk is never moved; one
    /// given back is empty (no slots) until one of its slots is reused.
    chunks: Vec<Box<[Option<T>]>>,
    /// Values held per chunk.
    held: Vec<u16>,
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
            held: Vec::new(),
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
                    self.chunks.push(Box::default());
                    self.held.push(0);
                }
                slot
            }
        };
        let chunk = slot / CHUNK;
        if self.chunks[chunk].is_empty() {
            self.chunks[chunk] = std::iter::repeat_with(|| None).take(CHUNK).collect();
        }
        self.chunks[chunk][slot % CHUNK] = Some(value);
        self.held[chunk] += 1;
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
        let chunk = slot / CHUNK;
        let value = self.chunks[chunk][slot % CHUNK].take()?;
        self.generations[slot] = self.generations[slot].wrapping_add(1);
        self.free.push(slot as u32);
        self.len -= 1;
        self.held[chunk] -= 1;
        Some(value)
    }

    /// Frees the chunks whose slots are all free.
    pub fn give_back_empty_chunks(&mut self) {
        for (chunk, held) in self.chunks.iter_mut().zip(&self.held) {
            if *held == 0 && !chunk.is_empty() {
                *chunk = Box::default();
            }
        }
    }

    /// Chunks that hold memory.
    #[cfg(test)]
    pub fn chunks_in_use(&self) -> usize {
        self.chunks.iter().filter(|c| !c.is_empty()).count()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Every value with its number.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &T)> {
        self.chunks
            .iter()
            .enumerate()
            .flat_map(|(chunk, values)| {
                values
                    .iter()
                    .enumerate()
                    .map(move |(i, value)| (chunk * CHUNK + i, value))
            })
            .filter_map(|(slot, value)| {
                let value = value.as_ref()?;
                Some((u64::from(self.generations[slot]) << 32 | slot as u64, value))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::{Slots, CHUNK};

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
    fn a_chunk_whose_values_are_all_removed_is_given_back_and_made_again_when_needed() {
        let mut s = Slots::default();
        let ids: Vec<u64> = (0..3 * CHUNK).map(|i| s.insert(i)).collect();
        // Slot 0 is never given out: the first chunk holds 1023 values, the second 1024.
        for id in &ids[CHUNK - 1..2 * CHUNK - 1] {
            s.remove(*id);
        }
        assert_eq!(s.chunks[1].len(), CHUNK, "kept until the table is trimmed");
        s.give_back_empty_chunks();
        assert_eq!(s.chunks[1].len(), 0, "the emptied chunk holds no memory");
        assert_eq!(s.chunks[0].len(), CHUNK);
        assert_eq!(s.iter().count(), 2 * CHUNK);
        assert!(s
            .iter()
            .all(|(id, value)| ids.get(*value) == Some(&id) && s.get(id) == Some(value)));
        let again = s.insert(7);
        assert_eq!(
            s.get(again),
            Some(&7),
            "its slot reused, the chunk made again"
        );
        assert_eq!(s.iter().count(), 2 * CHUNK + 1);
        assert!(ids[CHUNK - 1..2 * CHUNK - 1]
            .iter()
            .all(|id| s.get(*id).is_none()));
    }

    #[test]
    fn values_span_chunks() {
        let mut s = Slots::default();
        let ids: Vec<u64> = (0..3000).map(|i| s.insert(i)).collect();
        assert!(ids.iter().enumerate().all(|(i, id)| s.get(*id) == Some(&i)));
        assert_eq!(s.iter().count(), 3000);
    }
}
