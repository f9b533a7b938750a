//! The `bucketfs` binary: everything lives in the library; see `cli`.

fn main() -> std::process::ExitCode {
    // glibc gives each thread that allocates its own arena and keeps the multi-MiB buffers
    // (upload parts, read chunks) freed there, so memory grows far past what is in use. One
    // arena keeps the peak of a 1 GiB read or write under 200 MiB (measured: 245 MiB with the
    // default arenas) at no cost in throughput; mapping large blocks directly instead
    // (M_MMAP_THRESHOLD) costs a page fault per 4 KiB of every buffer and a third of the speed.
    // Two arenas took 12 % off `ls -l` of 100,000 names (less lock contention) but raised the
    // peak of a 1 GiB read to 161-220 MB (one: 152-167 MB); mimalloc peaked at 1.1 GB while
    // writing 1 GiB.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    bucketfs::cli::main()
}
