//! `ebctl completions SHELL` and the hidden `ebctl man --out DIR`: shell
//! completion scripts and man pages, generated from the same clap
//! definitions as the parser, so they never drift from it.
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::path::Path;

use clap::CommandFactory as _;

use crate::cli::Cli;
use crate::failure::Failure;

/// Prints the completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<(), Failure> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "ebctl", &mut script);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&script)
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::operational(format!("cannot write to stdout: {e}")))
}

/// Writes `ebctl.1` and `ebctl-<command>.1` for every visible command into `dir`.
pub fn man(dir: &Path) -> Result<(), Failure> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::operational(format!("cannot create {}: {e}", dir.display())))?;
    let command = Cli::command();
    write_page(dir, "ebctl", command.clone())?;
    for sub in command.get_subcommands().filter(|c| !c.is_hide_set()) {
        let name = format!("ebctl-{}", sub.get_name());
        let page = sub
            .clone()
            .display_name(name.clone())
            .bin_name(format!("ebctl {}", sub.get_name()))
            .version(env!("CARGO_PKG_VERSION"));
        write_page(dir, &name, page)?;
    }
    Ok(())
}

fn write_page(dir: &Path, name: &str, command: clap::Command) -> Result<(), Failure> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut page)
        .map_err(|e| Failure::operational(format!("cannot render the {name} man page: {e}")))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page)
        .map_err(|e| Failure::operational(format!("cannot write {}: {e}", path.display())))
}
