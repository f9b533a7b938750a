//! Read-ahead for one open file handle.
//!
//! The kernel asks for a file in pieces of at most 128 KiB to 1 MiB; one GET per piece would be
//! dominated by request latency. This keeps the last fetched window and, while reads stay
//! sequential, doubles the next window from `min` up to `max`; a seek starts again at `min`,
//! so random reads fetch little more than they need.

use std::ops::Range;

use bytes::Bytes;

#[derive(Debug)]
pub struct ReadAhead {
    start: u64,
    data: Bytes,
    /// Offset right after the last read served: a read there is sequential.
    next: u64,
    window: u64,
    min: u64,
    max: u64,
}

impl ReadAhead {
    pub fn new(min: u64, max: u64) -> Self {
        ReadAhead {
            start: 0,
            data: Bytes::new(),
            next: 0,
            window: min,
            min,
            max: max.max(min),
        }
    }

    /// The bytes for `offset..offset+len` if the current window holds all of them (or all up to
    /// `file_size`).
    pub fn get(&mut self, offset: u64, len: u64, file_size: u64) -> Option<Bytes> {
        let end = (offset + len).min(file_size);
        let buf_end = self.start + self.data.len() as u64;
        if offset < self.start || end > buf_end || offset > end {
            return None;
        }
        self.next = end;
        let from = (offset - self.start) as usize;
        Some(self.data.slice(from..(end - self.start) as usize))
    }

    /// The range to fetch for a read of `len` bytes at `offset` that missed the window.
    pub fn plan(&mut self, offset: u64, len: u64, file_size: u64) -> Range<u64> {
        if offset == self.next && offset != 0 {
            self.window = (self.window * 2).min(self.max);
        } else {
            self.window = self.min;
        }
        let end = offset.saturating_add(len.max(self.window)).min(file_size);
        offset..end
    }

    /// Stores a fetched window starting at `start`.
    pub fn fill(&mut self, start: u64, data: Bytes) {
        self.start = start;
        self.data = data;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_reads_grow_the_window_and_a_seek_resets_it() {
        let mut ra = ReadAhead::new(1 << 20, 8 << 20);
        let size = 1 << 30;
        let r = ra.plan(0, 4096, size);
        assert_eq!(r, 0..1 << 20);
        ra.fill(r.start, Bytes::from(vec![0u8; (r.end - r.start) as usize]));
        assert!(ra.get(0, 1 << 20, size).is_some());
        let r = ra.plan(1 << 20, 4096, size);
        assert_eq!(r.end - r.start, 2 << 20, "sequential: doubled");
        let r = ra.plan(500 << 20, 4096, size);
        assert_eq!(r.end - r.start, 1 << 20, "seek: back to the minimum");
    }

    #[test]
    fn windows_stop_at_the_end_of_the_file() {
        let mut ra = ReadAhead::new(1 << 20, 8 << 20);
        assert_eq!(ra.plan(10, 100, 50), 10..50);
        ra.fill(10, Bytes::from(vec![1u8; 40]));
        assert_eq!(ra.get(20, 100, 50).unwrap().len(), 30);
    }
}
