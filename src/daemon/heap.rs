//! Gives the heap's free memory back to the system once a second. glibc returns only the top
//! of a heap by itself and keeps pages freed in the middle (a listing's pages of XML, the
//! requests of its HEADs) for later allocations: after `ls -l` of 100,000 names the daemon
//! held 42.6-50.8 MB and kept them; trimmed once a second, it settles at 38.4-38.8 MB within
//! two seconds (12.5 MB idle: 260 B a name instead of 300-380 B), at no measurable cost to
//! the `ls -l` itself or to 1 GiB reads and writes. The arenas are limited in `main.rs`.

use std::time::Duration;

/// How often the free pages go back: a trim takes about a millisecond.
const EVERY: Duration = Duration::from_secs(1);

/// Runs for the life of the mount.
pub(super) async fn give_back_free_memory() {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // It holds the arena's lock while it walks the free chunks: not on a worker thread.
        let _ = tokio::task::spawn_blocking(trim).await;
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only returns free memory of the allocator's own heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::trim;

    fn resident_bytes() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096
    }

    #[test]
    fn memory_freed_in_the_middle_of_the_heap_goes_back_to_the_system() {
        // 64 MiB in blocks of 4 KiB, every 64th kept: what is left pins the heap's top, so
        // glibc keeps the rest for later allocations until it is trimmed.
        let blocks: Vec<Vec<u8>> = (0..16_384).map(|i| vec![i as u8; 4096]).collect();
        let kept: Vec<Vec<u8>> = blocks
            .into_iter()
            .enumerate()
            .filter_map(|(i, b)| (i % 64 == 0).then_some(b))
            .collect();
        let before = resident_bytes();
        trim();
        let after = resident_bytes();
        assert!(
            before.saturating_sub(after) > 32 << 20,
            "resident {before} bytes before the trim, {after} after"
        );
        drop(kept);
    }
}
