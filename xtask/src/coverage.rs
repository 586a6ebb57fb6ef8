//! `cargo xtask coverage`: line coverage of the whole nextest suite, child
//! processes included, with a floor for `crates/eventbus`.
//!
//! 1. **Tools:** installs cargo-llvm-cov (`cargo install --locked`) and the
//!    `llvm-tools-preview` rustup component when they are missing; the
//!    component is not needed when `LLVM_COV` and `LLVM_PROFDATA` name the tools.
//! 2. **Run:** `cargo llvm-cov nextest --workspace --profile ci --no-report`
//!    (`--profile` goes to nextest; the cargo profile stays `dev`). It builds
//!    into `<target>/llvm-cov-target` with `-C instrument-coverage` (through
//!    `RUSTC_WRAPPER`, for workspace crates only) and sets `LLVM_PROFILE_FILE`
//!    from our [`profile_file_name`]: `%p`, a raw profile per process, and
//!    `%c`, continuous mode, so a process killed with SIGKILL keeps its counts
//!    (see [`continuous_rustflags`] for the flag Linux needs). The processes
//!    the tests spawn inherit all of it: the `mock-collector` tests run
//!    `CARGO_BIN_EXE_mock-collector`, built by the same instrumented build, and
//!    the e2e harness (`e2e::binaries`) runs `$CARGO build -p broker -p
//!    mock-collector` into the test's own target directory with the inherited
//!    environment, which is a no-op build of the same instrumented binaries.
//! 3. **Report:** `cargo llvm-cov report --failure-mode all`, once as lcov and
//!    once as HTML. `all` makes `llvm-profdata merge` skip (and name, as a
//!    warning) a raw profile it cannot read, such as a truncated one, and fail
//!    only when no profile can be read; the default, `any`, would throw the
//!    whole run away for one bad file.
//! 4. **Summary:** lines per crate from the lcov file ([`lcov`]), printed and
//!    written to `target/coverage/summary.md`; the task fails when
//!    `crates/eventbus` is under [`EVENTBUS_LINE_FLOOR`], or when tests failed
//!    (after writing the report, which is still worth reading).
//!
//! Everything lands in `target/coverage/`: `lcov.info`, `html/index.html`,
//! `summary.md`. `docs/coverage.md` has the background and the latest figures.

mod lcov;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::process::{self, cargo, ensure_cargo_tool, probe};

/// The lowest line coverage of `crates/eventbus` that passes, in percent.
pub const EVENTBUS_LINE_FLOOR: f64 = 80.0;

/// Options of `cargo xtask coverage`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Do not run the tests: report on the raw profiles the last run left in
    /// `target/llvm-cov-target`.
    #[arg(long)]
    no_run: bool,
}

/// Runs the suite under coverage (unless `--no-run`), writes the reports and
/// checks the floor.
pub fn run(root: &Path, args: &Args) -> Result<()> {
    let started = Instant::now();
    ensure_cargo_tool("llvm-cov", "cargo-llvm-cov")?;
    ensure_cargo_tool("nextest", "cargo-nextest")?;
    ensure_llvm_tools()?;

    let tests = if args.no_run {
        Ok(())
    } else {
        process::run(
            cargo()
                .args([
                    "llvm-cov",
                    "nextest",
                    "--workspace",
                    "--profile",
                    "ci",
                    "--no-report",
                ])
                .env("RUSTFLAGS", continuous_rustflags())
                .env("LLVM_PROFILE_FILE_NAME", profile_file_name(root)),
        )
    };

    let out = target_dir(root).join("coverage");
    // A stale report from an earlier run must not pass for this one.
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("removing {}", out.display()))?;
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let lcov_path = out.join("lcov.info");
    process::run(report().arg("--lcov").arg("--output-path").arg(&lcov_path))?;
    process::run(report().arg("--html").arg("--output-dir").arg(&out))?;

    let lcov = std::fs::read_to_string(&lcov_path)
        .with_context(|| format!("reading {}", lcov_path.display()))?;
    let summary = lcov::summarize(&lcov, root);
    let table = summary.table();
    let eventbus = summary.get("eventbus").percent();
    let verdict = if eventbus >= EVENTBUS_LINE_FLOOR {
        format!("eventbus line coverage {eventbus:.2}% (floor {EVENTBUS_LINE_FLOOR}%): pass")
    } else {
        format!(
            "eventbus line coverage {eventbus:.2}% is under the floor of {EVENTBUS_LINE_FLOOR}%"
        )
    };
    let elapsed = started.elapsed().as_secs();
    let markdown = format!(
        "# Line coverage\n\n{table}\n{verdict}\n\nTook {}m{:02}s.\n",
        elapsed / 60,
        elapsed % 60
    );
    std::fs::write(out.join("summary.md"), &markdown)?;
    println!("\n{table}\n{verdict}");
    println!(
        "lcov: {}\nhtml: {}\ntook {}m{:02}s",
        lcov_path.display(),
        out.join("html/index.html").display(),
        elapsed / 60,
        elapsed % 60
    );

    tests.context("tests failed under coverage (the report above is still written)")?;
    if eventbus < EVENTBUS_LINE_FLOOR {
        bail!("{verdict}");
    }
    Ok(())
}

/// `RUSTFLAGS` for continuous mode: `$RUSTFLAGS` plus
/// `-C llvm-args=-runtime-counter-relocation`, which Linux needs for `%c`
/// (without it the runtime prints an error and writes an empty profile). It
/// only matters to the instrumented workspace crates, but cargo applies it to
/// every crate, so the dependencies of `target/llvm-cov-target` are built
/// with it too.
fn continuous_rustflags() -> String {
    let mut flags = std::env::var("RUSTFLAGS").unwrap_or_default();
    if !flags.is_empty() {
        flags.push(' ');
    }
    flags.push_str("-C llvm-args=-runtime-counter-relocation");
    flags
}

/// The raw profile name pattern (cargo-llvm-cov puts it in its target
/// directory): `%p`, one file per process, and `%c`, continuous mode: the
/// counters are mapped onto the file while the process runs, so a process
/// killed with SIGKILL keeps what it ran. cargo-llvm-cov's default adds `%Nm`
/// (a pool of files merged at exit), which continuous mode does not use.
fn profile_file_name(root: &Path) -> String {
    let name = root
        .file_name()
        .map_or_else(|| "eventbus".into(), |n| n.to_string_lossy());
    format!("{name}-%p-%c.profraw")
}

/// `cargo llvm-cov report` that skips unreadable raw profiles instead of
/// failing on the first (see the module doc).
fn report() -> Command {
    let mut cmd = cargo();
    cmd.args(["llvm-cov", "report", "--failure-mode", "all"]);
    cmd
}

/// Makes sure `llvm-cov` and `llvm-profdata` can be found: given by
/// `LLVM_COV` and `LLVM_PROFDATA`, else from the `llvm-tools-preview` rustup
/// component, which is added when it is missing.
fn ensure_llvm_tools() -> Result<()> {
    let given = |name| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if given("LLVM_COV") && given("LLVM_PROFDATA") {
        return Ok(());
    }
    if !probe(Command::new("rustup").arg("--version")) {
        bail!("rustup is not available: set LLVM_COV and LLVM_PROFDATA to the LLVM tools");
    }
    let installed = process::output(Command::new("rustup").args(["component", "list"]))?;
    let has_tools = installed
        .lines()
        .any(|line| line.starts_with("llvm-tools") && line.ends_with("(installed)"));
    if !has_tools {
        eprintln!("llvm-tools not installed: adding it with rustup");
        process::run(Command::new("rustup").args(["component", "add", "llvm-tools-preview"]))?;
    }
    Ok(())
}

/// `$CARGO_TARGET_DIR`, else `<root>/target`.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| root.join(dir))
        .unwrap_or_else(|| root.join("target"))
}
