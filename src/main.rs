//! The `bucketfs` binary: everything lives in the library; see `cli`.

fn main() -> std::process::ExitCode {
    bucketfs::cli::main()
}
