//! The `bucketfs` binary: everything lives in the library; see `cli`.

fn main() -> std::process::ExitCode {
    // glibc gives each thread that allocates its own arena and keeps the multi-MiB buffers
    // (upload parts, read chunks) freed there, so memory grows far past what is in use: the
    // peak of a 1 GiB read was 245 MiB with the default arenas. Two arenas keep the peaks of
    // a 1 GiB read and write at 169 and 82 MiB (one: 165 and 56) and take half the lock
    // contention of one off the many small allocations of HEADs and LISTs: `ls -l` of
    // 100,000 names took 6.2-6.7 s of which 5.7-6.2 s daemon CPU, against 7.2-7.6 s and
    // 6.6-6.9 s with one (mimalloc: 5.6-6.4 s, but its peak while writing 1 GiB was 1.1 GiB).
    // Mapping large blocks directly instead (M_MMAP_THRESHOLD) costs a page fault per 4 KiB
    // of every buffer and a third of the speed.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    bucketfs::cli::main()
}
