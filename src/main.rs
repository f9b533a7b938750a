//! The `bucketfs` binary: everything lives in the library; see `cli`.

fn main() -> std::process::ExitCode {
    // glibc serves multi-MiB buffers (upload parts, read chunks) from per-thread arenas once a
    // large block was freed, and keeps them: memory then grows far past what is in use. Mapping
    // blocks above 128 KiB directly gives them back to the system when freed.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
    bucketfs::cli::main()
}
