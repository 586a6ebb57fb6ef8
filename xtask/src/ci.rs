//! `cargo xtask ci`: the project's gate.
//!
//! The last step, `windows`, runs the Windows build under Wine (see
//! [`crate::windows`]); it fails, never skips, when Wine cannot be installed
//! or the build fails; a Wine that is installed but cannot boot a prefix on
//! the machine is a warning that quotes Wine's errors.
//!
//! A fixed sequence of [`Step`]s run from the workspace root. Each step prints
//! its name and its duration; the first failure stops the run with a non-zero
//! exit. Anything a step could not check (an advisory database that cannot be
//! fetched, a target whose std cannot be installed) is a `WARNING:` line, printed
//! when it happens and again in the final summary: never a silent pass.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;

use crate::audit;
use crate::process::{self, cargo, ensure_cargo_tool, probe, run};

/// Options of `cargo xtask ci`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run only these steps (repeatable or comma-separated), in gate order.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "STEP")]
    only: Vec<Step>,
    /// Skip these steps (repeatable or comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "STEP")]
    skip: Vec<Step>,
}

/// One step of the gate, in the order the gate runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Step {
    /// `cargo fmt --all --check`.
    Fmt,
    /// `cargo clippy --workspace --all-targets -- -D warnings`.
    Clippy,
    /// `cargo clippy -p eventbus` with each feature set a user may pick alone
    /// (see [`FEATURE_SETS`]): the workspace build unifies them all.
    Features,
    /// The unsafe audit: `unsafe_code` forbidden in every crate (see `audit.rs`).
    UnsafeAudit,
    /// `cargo nextest run --workspace --profile ci`.
    Nextest,
    /// `cargo test --workspace --doc`: the examples in doc comments (nextest skips them).
    Doctest,
    /// `cargo doc --workspace --no-deps` with `RUSTDOCFLAGS="-D warnings"`.
    Doc,
    /// `cargo publish --dry-run` of every publishable crate (packaged and
    /// built from the package, never uploaded).
    Publish,
    /// `cargo deny check`: advisories (when the database can be fetched), bans, licenses, sources.
    Deny,
    /// `cargo check --workspace` for the Windows, macOS and FreeBSD targets.
    CrossCheck,
    /// `cargo xtask windows`: the Windows build's smoke suite under Wine.
    Windows,
}

/// The targets checked by [`Step::CrossCheck`], besides the host that the
/// other steps cover. Keep in sync with `.ci/run` and `.github/workflows/ci.yml`.
pub const CROSS_TARGETS: [&str; 3] = [
    "x86_64-pc-windows-gnu",
    "x86_64-apple-darwin",
    "x86_64-unknown-freebsd",
];

/// `eventbus` feature sets checked by [`Step::Features`], each without the
/// defaults: none, each half alone, and the JSON helpers without a client.
pub const FEATURE_SETS: [&str; 4] = ["", "client", "broker", "serde"];

impl Step {
    const ALL: [Step; 11] = [
        Step::Fmt,
        Step::Clippy,
        Step::Features,
        Step::UnsafeAudit,
        Step::Nextest,
        Step::Doctest,
        Step::Doc,
        Step::Publish,
        Step::Deny,
        Step::CrossCheck,
        Step::Windows,
    ];

    fn run(self, ctx: &mut StepContext) -> Result<()> {
        match self {
            Step::Fmt => run(cargo().args(["fmt", "--all", "--check"])),
            Step::Clippy => run(cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])),
            Step::Features => features(),
            Step::UnsafeAudit => unsafe_audit(ctx),
            Step::Nextest => {
                ensure_cargo_tool("nextest", "cargo-nextest")?;
                let mut command = cargo();
                command.args(["nextest", "run", "--workspace", "--profile", "ci"]);
                let mut left_out = Vec::new();
                if !browser_available(ctx)? {
                    left_out.push(BROWSER_TESTS);
                }
                if !nats_available(ctx)? {
                    left_out.push(NATS_TESTS);
                }
                if !left_out.is_empty() {
                    let left_out: Vec<String> = left_out.iter().map(|f| format!("({f})")).collect();
                    command.args(["-E", &format!("not ({})", left_out.join(" | "))]);
                }
                run(&mut command)
            }
            Step::Doctest => run(cargo().args(["test", "--workspace", "--doc"])),
            Step::Doc => run(cargo()
                .args(["doc", "--workspace", "--no-deps"])
                .env("RUSTDOCFLAGS", rustdocflags())),
            Step::Publish => publish_dry_run(ctx),
            Step::Deny => deny(ctx),
            Step::CrossCheck => cross_check(ctx),
            Step::Windows => windows(ctx),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self
            .to_possible_value()
            .expect("no step is skipped by clap");
        f.write_str(value.get_name())
    }
}

/// The Windows build under Wine. The build (cross-compiled and linked with
/// mingw-w64) must succeed and so must the suite; only a Wine that cannot
/// boot a prefix on this machine — the emulator failing before any of the
/// project's code runs — is a warning, with Wine's own error lines quoted.
fn windows(ctx: &mut StepContext) -> Result<()> {
    match crate::windows::run(ctx.root, &crate::windows::Args::default()) {
        Err(error) => match error.downcast_ref::<crate::windows::BootFailed>() {
            Some(boot) => {
                ctx.warn(format!(
                    "the Windows build compiled and linked, but its smoke suite did not run: {boot}"
                ));
                Ok(())
            }
            None => Err(error),
        },
        ok => ok,
    }
}

/// What a running step may use: the workspace root, and a place to record
/// what it could not check.
struct StepContext<'a> {
    root: &'a Path,
    warnings: Vec<String>,
}

impl StepContext<'_> {
    fn warn(&mut self, message: String) {
        eprintln!("WARNING: {message}");
        self.warnings.push(message);
    }
}

/// How one step ended, for the summary.
struct StepReport {
    step: Step,
    passed: bool,
    elapsed: Duration,
    warnings: Vec<String>,
}

/// Runs the selected steps of the gate from the workspace `root`.
pub fn run_gate(root: &Path, args: &Args) -> Result<()> {
    let steps: Vec<Step> = Step::ALL
        .into_iter()
        .filter(|step| args.only.is_empty() || args.only.contains(step))
        .filter(|step| !args.skip.contains(step))
        .collect();
    if steps.is_empty() {
        bail!("no step selected: --only and --skip leave nothing to run");
    }

    let gate_start = Instant::now();
    let mut reports = Vec::new();
    for (index, &step) in steps.iter().enumerate() {
        eprintln!("\n==> [{}/{}] {step}", index + 1, steps.len());
        let mut ctx = StepContext {
            root,
            warnings: Vec::new(),
        };
        let start = Instant::now();
        let result = step.run(&mut ctx);
        let elapsed = start.elapsed();
        let passed = result.is_ok();
        eprintln!(
            "<== {step} {} in {}",
            if passed { "passed" } else { "FAILED" },
            format_duration(elapsed)
        );
        reports.push(StepReport {
            step,
            passed,
            elapsed,
            warnings: ctx.warnings,
        });
        if let Err(error) = result {
            print_summary(&reports, gate_start.elapsed());
            return Err(error.context(format!("ci step `{step}` failed")));
        }
    }
    print_summary(&reports, gate_start.elapsed());
    Ok(())
}

fn print_summary(reports: &[StepReport], total: Duration) {
    eprintln!("\nci summary:");
    for report in reports {
        let status = match (report.passed, report.warnings.len()) {
            (false, _) => "FAILED".to_owned(),
            (true, 0) => "passed".to_owned(),
            (true, 1) => "passed, 1 warning".to_owned(),
            (true, n) => format!("passed, {n} warnings"),
        };
        eprintln!(
            "  {:<14} {:>8}  {status}",
            report.step.to_string(),
            format_duration(report.elapsed)
        );
        for warning in &report.warnings {
            eprintln!("    WARNING: {warning}");
        }
    }
    eprintln!("  {:<14} {:>8}", "total", format_duration(total));
}

fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        format!(
            "{}m{:02}s",
            duration.as_secs() / 60,
            duration.as_secs() % 60
        )
    }
}

/// The nextest filter of the tests that drive a real browser.
const BROWSER_TESTS: &str = "package(e2e) & test(/^browser::/)";

/// Whether the browser tests can run: Chromium is on the PATH (or named by
/// `$CHROMIUM`). Without it they are left out with a WARNING, except in CI
/// (`CI` set), where `.ci/run` installs it and its absence is an error:
/// never a silent pass.
fn browser_available(ctx: &mut StepContext) -> Result<bool> {
    let found = std::env::var_os("CHROMIUM").is_some()
        || std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| dir.join("chromium").is_file())
        });
    if found {
        return Ok(true);
    }
    if std::env::var_os("CI").is_some() {
        bail!(
            "chromium not found, and CI is set: the dashboard's browser test must run in CI \
             (.ci/run installs Debian's chromium)"
        );
    }
    ctx.warn(
        "the dashboard's browser test NOT run: chromium not found \
         (apt-get install chromium, or set $CHROMIUM)"
            .to_owned(),
    );
    Ok(false)
}

/// The nextest filter of the tests that run a real `nats-server`: the
/// bridge's, and the fleet suite's (its harness self-tests are in the gate).
const NATS_TESTS: &str =
    "(package(eventbus-bridge) & binary(nats)) | (package(e2e) & binary(fleet))";

/// Whether the NATS tests (the bridge's, the fleet's) can run: `nats-server` is on the PATH,
/// in `/usr/sbin` (Debian's package), or named by `$NATS_SERVER`. Without
/// it they are left out with a WARNING, except in CI (`CI` set), where
/// `.ci/run` installs it and its absence is an error.
fn nats_available(ctx: &mut StepContext) -> Result<bool> {
    // Where the tests' harness looks for it.
    if eventbus_harness::find_nats_server().is_some() {
        return Ok(true);
    }
    if std::env::var_os("CI").is_some() {
        bail!(
            "nats-server not found, and CI is set: the NATS tests (bridge, fleet) must run in CI \
             (.ci/run installs Debian's nats-server)"
        );
    }
    ctx.warn(
        "the NATS tests (bridge, fleet) NOT run: nats-server not found \
         (apt-get install nats-server, or set $NATS_SERVER)"
            .to_owned(),
    );
    Ok(false)
}

/// Adds `-D warnings` to whatever `RUSTDOCFLAGS` the caller already set.
fn rustdocflags() -> String {
    match std::env::var("RUSTDOCFLAGS") {
        Ok(flags) if !flags.trim().is_empty() => format!("{flags} -D warnings"),
        _ => "-D warnings".to_owned(),
    }
}

/// Each of [`FEATURE_SETS`] builds without a warning on its own.
fn features() -> Result<()> {
    for set in FEATURE_SETS {
        eprintln!("eventbus --no-default-features --features '{set}'");
        run(cargo().args([
            "clippy",
            "--package",
            "eventbus",
            "--no-default-features",
            "--features",
            set,
            "--",
            "-D",
            "warnings",
        ]))
        .with_context(|| format!("eventbus with features '{set}'"))?;
    }
    Ok(())
}

/// Packages every publishable workspace crate and builds it from its package,
/// in dependency order (`cargo publish --workspace` semantics), without
/// uploading: always `--dry-run`. What would block a real release is a
/// warning: a placeholder repository, or a crate name crates.io already has.
fn publish_dry_run(ctx: &mut StepContext) -> Result<()> {
    let metadata: serde_json::Value = serde_json::from_str(&process::output(cargo().args([
        "metadata",
        "--no-deps",
        "--format-version",
        "1",
    ]))?)
    .context("cargo metadata is JSON")?;
    let mut args = vec![
        "publish".to_owned(),
        "--dry-run".to_owned(),
        "--allow-dirty".to_owned(),
    ];
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let name = package["name"].as_str().unwrap_or_default();
        // `publish = false` is an empty list of registries.
        if package["publish"].as_array().is_some_and(Vec::is_empty) {
            continue;
        }
        let repository = package["repository"].as_str().unwrap_or_default();
        if repository.contains("example.invalid") {
            ctx.warn(format!(
                "{name}: `repository` is the placeholder {repository} (see docs/releasing.md)"
            ));
        }
        args.extend(["--package".to_owned(), name.to_owned()]);
    }
    let output = cargo()
        .args(&args)
        .stderr(std::process::Stdio::piped())
        .output()
        .context("running cargo publish --dry-run")?;
    let log = String::from_utf8_lossy(&output.stderr);
    eprint!("{log}");
    for line in log
        .lines()
        .filter(|l| l.contains("already exists on crates.io"))
    {
        ctx.warn(format!(
            "{}: the name is taken on crates.io by another project (see docs/releasing.md)",
            line.trim_start_matches("warning: ").trim()
        ));
    }
    if !output.status.success() {
        bail!("cargo publish --dry-run failed ({})", output.status);
    }
    Ok(())
}

fn unsafe_audit(ctx: &mut StepContext) -> Result<()> {
    let violations = audit::audit(ctx.root)?;
    if violations.is_empty() {
        eprintln!("every workspace member forbids unsafe code");
        return Ok(());
    }
    for violation in &violations {
        eprintln!("{violation}");
    }
    bail!("unsafe audit: {} violation(s)", violations.len());
}

/// Advisories need the RustSec database from github.com. When it cannot be
/// fetched, the advisories check is skipped with a warning; bans, licenses
/// and sources need only the local dependency graph and always run.
/// Fetching first keeps the two apart: once the database is here, an
/// advisory failure is a real finding, never mistaken for a network error.
fn deny(ctx: &mut StepContext) -> Result<()> {
    ensure_cargo_tool("deny", "cargo-deny")?;
    let mut checks = vec!["bans", "licenses", "sources"];
    match run(cargo().args(["deny", "fetch", "db"])) {
        Ok(()) => checks.insert(0, "advisories"),
        Err(error) => ctx.warn(format!(
            "advisories NOT checked: the RustSec advisory database could not be fetched \
             ({error:#}; is github.com reachable?). bans, licenses and sources are still checked."
        )),
    }
    run(cargo().args(["deny", "check"]).args(&checks))
}

/// `cargo check --workspace` (libraries and binaries) for each of
/// [`CROSS_TARGETS`]; a target whose std cannot be installed is skipped with a
/// warning.
///
/// Not `--all-targets`: dev-dependencies would then be built for the target,
/// and some compile C in their build scripts (criterion → alloca → cc), which
/// needs a C cross-compiler and, for macOS, Apple's SDK. Test code for macOS
/// and Windows is compiled natively by the CI jobs on those systems.
fn cross_check(ctx: &mut StepContext) -> Result<()> {
    for target in CROSS_TARGETS {
        if let Err(reason) = ensure_target(target) {
            ctx.warn(format!(
                "{target} NOT checked: its std is not available ({reason:#})"
            ));
            continue;
        }
        run(cargo().args(["check", "--workspace", "--target", target]))
            .with_context(|| format!("cargo check for {target}"))?;
    }
    Ok(())
}

/// Makes sure the standard library for `target` is installed, with
/// `rustup target add` when it is not.
pub(crate) fn ensure_target(target: &str) -> Result<()> {
    let sysroot =
        PathBuf::from(process::output(process::rustc().args(["--print", "sysroot"]))?.trim());
    let std_dir = sysroot.join("lib").join("rustlib").join(target).join("lib");
    if std_dir.is_dir() {
        return Ok(());
    }
    eprintln!("std for {target} not installed: adding it with rustup");
    if !probe(std::process::Command::new("rustup").arg("--version")) {
        bail!(
            "{} is missing and rustup is not available",
            std_dir.display()
        );
    }
    run(std::process::Command::new("rustup").args(["target", "add", target]))?;
    if !std_dir.is_dir() {
        bail!(
            "`rustup target add {target}` succeeded but {} is still missing",
            std_dir.display()
        );
    }
    Ok(())
}
