//! Running external tools: echo each command, fail on a non-zero exit, and
//! install a missing cargo subcommand on demand.

use std::env;
use std::ffi::OsString;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// A `cargo` command: the cargo that runs this xtask (`$CARGO`), so nested
/// invocations use the same toolchain.
pub fn cargo() -> Command {
    Command::new(env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")))
}

/// A `rustc` command for the same toolchain (`$RUSTC`, else `rustc`).
pub fn rustc() -> Command {
    Command::new(env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc")))
}

/// Prints `cmd`, runs it with inherited stdio, and fails unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = display(cmd);
    eprintln!("$ {shown}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Runs `cmd` with its output discarded; true when it starts and exits 0.
/// For probes such as `cargo nextest --version`.
pub fn probe(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Runs `cmd` and returns its stdout when it exits 0.
pub fn output(cmd: &mut Command) -> Result<String> {
    let shown = display(cmd);
    let output = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !output.status.success() {
        bail!("`{shown}` failed ({})", output.status);
    }
    String::from_utf8(output.stdout).with_context(|| format!("`{shown}` printed non-UTF-8"))
}

/// Makes sure `cargo <subcommand>` exists, installing `package` with
/// `cargo install --locked` when it does not.
pub fn ensure_cargo_tool(subcommand: &str, package: &str) -> Result<()> {
    if probe(cargo().args([subcommand, "--version"])) {
        return Ok(());
    }
    eprintln!("`cargo {subcommand}` not found: installing {package}");
    run(cargo().args(["install", "--locked", package]))?;
    if !probe(cargo().args([subcommand, "--version"])) {
        bail!("installed {package}, but `cargo {subcommand} --version` still fails");
    }
    Ok(())
}

/// `cmd` as a shell-like line: the environment it sets, the program, the arguments.
fn display(cmd: &Command) -> String {
    let envs = cmd.get_envs().filter_map(|(key, value)| {
        value.map(|value| format!("{}={:?}", key.to_string_lossy(), value.to_string_lossy()))
    });
    let program = cmd.get_program().to_string_lossy();
    let program = if env::var_os("CARGO").is_some_and(|cargo| cargo == cmd.get_program()) {
        "cargo".into()
    } else {
        program
    };
    let args = cmd.get_args().map(|arg| arg.to_string_lossy().into_owned());
    envs.chain(std::iter::once(program.into_owned()))
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}
