//! Shell completions and man pages, written from the clap definition in `cli` (with every
//! option flag of the option table), so they never drift from the command line:
//! `bucketfs completions SHELL` prints a completion script, `bucketfs man` prints bucketfs(1)
//! and `bucketfs man DIR` writes a page per command (bucketfs.1, bucketfs-mount.1, ...). Both
//! commands are hidden from `--help`: they are for packagers and installers (see README).

use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;
use crate::console::usage_error;

/// `bucketfs completions SHELL`: the completion script on stdout.
pub fn completions(shell: Shell) -> ExitCode {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "bucketfs", &mut std::io::stdout());
    ExitCode::SUCCESS
}

/// `bucketfs man [DIR]`: bucketfs(1) on stdout, or every command's page written to DIR.
pub fn man(dir: Option<&Path>) -> ExitCode {
    let written = match dir {
        None => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()),
        Some(dir) => clap_mangen::generate_to(Cli::command(), dir),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => usage_error(format!("cannot write the man pages: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_man_pages_document_every_command_and_its_flags() {
        let dir = tempfile::tempdir().unwrap();
        clap_mangen::generate_to(Cli::command(), dir.path()).unwrap();
        let mount = std::fs::read_to_string(dir.path().join("bucketfs-mount.1")).unwrap();
        assert!(mount.starts_with(".ie \\n(.g .ds Aq"), "roff");
        assert!(mount.contains(".TH bucketfs-mount 1"), "{mount}");
        assert!(mount.contains("part\\-size"), "the option table's flags");
        assert!(
            mount.contains("BUCKETFS_PART_SIZE"),
            "with their environment names"
        );
        for page in [
            "bucketfs.1",
            "bucketfs-unmount.1",
            "bucketfs-status.1",
            "bucketfs-flush.1",
            "bucketfs-check.1",
        ] {
            assert!(dir.path().join(page).exists(), "{page}");
        }
        assert!(
            !dir.path().join("bucketfs-man.1").exists(),
            "hidden commands have none"
        );
    }

    #[test]
    fn completions_offer_the_commands_and_the_option_flags() {
        let mut out = Vec::new();
        clap_complete::generate(Shell::Bash, &mut Cli::command(), "bucketfs", &mut out);
        let script = String::from_utf8(out).unwrap();
        assert!(
            script.contains("complete -F _bucketfs"),
            "a bash completion"
        );
        assert!(
            script.contains("--write-back-delay"),
            "the option table's flags"
        );
        assert!(script.contains("unmount"), "the commands");
    }
}
