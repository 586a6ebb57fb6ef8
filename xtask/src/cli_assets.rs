//! `cargo xtask cli-assets`: the `ebctl` shell completions (bash, zsh, fish,
//! elvish, PowerShell) and man pages, for packaging.
//!
//! The generators live in `ebctl` itself (`ebctl completions SHELL`, the
//! hidden `ebctl man --out DIR`), next to the clap definitions they read, so
//! they cannot drift from the parser; this task builds `ebctl` and runs them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::process::{cargo, output, run};

/// Options of `cargo xtask cli-assets`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write `completions/` and `man/` [default: target/cli-assets].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// The shells `ebctl completions` is run for, and each script's file name.
const SHELLS: [(&str, &str); 5] = [
    ("bash", "ebctl.bash"),
    ("zsh", "_ebctl"),
    ("fish", "ebctl.fish"),
    ("elvish", "ebctl.elv"),
    ("powershell", "_ebctl.ps1"),
];

/// Builds `ebctl` and writes every completion script and man page.
pub fn run_task(root: &Path, args: &Args) -> Result<()> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| root.join("target").join("cli-assets"));
    run(cargo().args(["build", "--quiet", "-p", "broker", "--bin", "ebctl"]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let ebctl = target
        .join("debug")
        .join(format!("ebctl{}", std::env::consts::EXE_SUFFIX));
    let completions = out.join("completions");
    std::fs::create_dir_all(&completions)
        .with_context(|| format!("creating {}", completions.display()))?;
    for (shell, file) in SHELLS {
        let script = output(Command::new(&ebctl).args(["completions", shell]))?;
        let path = completions.join(file);
        std::fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
    }
    let man = out.join("man");
    run(Command::new(&ebctl).arg("man").arg("--out").arg(&man))?;
    eprintln!(
        "wrote {} completion scripts to {} and the man pages to {}",
        SHELLS.len(),
        completions.display(),
        man.display()
    );
    Ok(())
}
