//! Lines for the user on stderr, shared by the command line (`cli`) and the daemon's entry
//! points (`daemon`). It sits below both so that neither imports the other for them: `cli`
//! calls into `daemon`, never the other way round.

use std::process::ExitCode;

/// Prints a one-line error and returns exit status 2 (bad input; nothing was changed).
pub fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    stderr_line(format_args!("bucketfs: error: {msg}"));
    ExitCode::from(2)
}

/// Writes one line to stderr. Unlike `eprintln!`, a stderr that cannot be written (a full
/// disk, `2>/dev/full`, a closed pipe) loses the line instead of panicking.
pub fn stderr_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
