//! A set of byte ranges (sorted, disjoint, merged): which parts of a file were written
//! locally, as opposed to still being the object's bytes in the bucket.

use std::ops::Range;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ranges(Vec<Range<u64>>);

impl Ranges {
    pub fn insert(&mut self, r: Range<u64>) {
        if r.is_empty() {
            return;
        }
        let (mut start, mut end) = (r.start, r.end);
        self.0.retain(|x| {
            let touches = x.start <= end && start <= x.end;
            if touches {
                start = start.min(x.start);
                end = end.max(x.end);
            }
            !touches
        });
        let at = self.0.partition_point(|x| x.start < start);
        self.0.insert(at, start..end);
    }

    /// Forgets everything at or past `len`.
    pub fn truncate(&mut self, len: u64) {
        self.0.retain(|x| x.start < len);
        if let Some(last) = self.0.last_mut() {
            last.end = last.end.min(len);
        }
    }

    /// The ranges, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Range<u64>> {
        self.0.iter()
    }

    /// End of the range that starts at 0, or 0.
    pub fn prefix_end(&self) -> u64 {
        self.0.first().filter(|r| r.start == 0).map_or(0, |r| r.end)
    }

    pub fn overlaps(&self, r: &Range<u64>) -> bool {
        self.0.iter().any(|x| x.start < r.end && r.start < x.end)
    }

    /// `r` cut into consecutive pieces, each marked true when it lies in the set.
    pub fn segments(&self, r: Range<u64>) -> Vec<(Range<u64>, bool)> {
        let mut out = Vec::new();
        let mut pos = r.start;
        for x in &self.0 {
            if x.end <= pos || pos >= r.end {
                continue;
            }
            if x.start >= r.end {
                break;
            }
            if x.start > pos {
                out.push((pos..x.start, false));
                pos = x.start;
            }
            let end = x.end.min(r.end);
            out.push((pos..end, true));
            pos = end;
        }
        if pos < r.end {
            out.push((pos..r.end, false));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_merge_and_segments_alternate() {
        let mut r = Ranges::default();
        r.insert(10..20);
        r.insert(30..40);
        r.insert(18..31);
        assert_eq!(
            r.segments(0..50),
            vec![(0..10, false), (10..40, true), (40..50, false)]
        );
        r.insert(50..60);
        assert_eq!(
            r.segments(0..70),
            vec![
                (0..10, false),
                (10..40, true),
                (40..50, false),
                (50..60, true),
                (60..70, false)
            ]
        );
        assert_eq!(r.segments(12..15), vec![(12..15, true)]);
        assert!(r.overlaps(&(39..45)));
        assert!(!r.overlaps(&(40..50)));
        r.truncate(35);
        assert_eq!(
            r.segments(0..50),
            vec![(0..10, false), (10..35, true), (35..50, false)]
        );
    }
}
