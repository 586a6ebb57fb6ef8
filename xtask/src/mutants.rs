//! `cargo xtask mutants`: mutation testing of the broker's router against
//! its own unit tests.
//!
//! cargo-mutants (installed on demand) changes the router's code one small
//! edit at a time (a `<` for a `<=`, a function returning its default, a
//! deleted `!`, ...) and runs only the router's unit tests
//! (`cargo test --lib -- broker::router::`) against each. A mutant the tests
//! notice is *caught*; one they do not is *missed*: a rule the tests would
//! not defend. The router is synchronous and IO-free, so its tests are fast
//! and deterministic, which is what makes this affordable.
//!
//! Scope: `crates/eventbus/src/broker/router/*.rs`, without the tests
//! themselves and `invariants.rs` (test-only code). The task prints caught,
//! missed, timed out and unviable (did not build) mutants, lists the missed
//! ones, and fails when the caught share of the viable mutants is under
//! [`CAUGHT_FLOOR`]. Everything cargo-mutants writes lands in
//! `target/mutants/mutants.out/` (`outcomes.json`, `missed.txt`, logs).

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::process::{cargo, ensure_cargo_tool, run as run_command};

/// The lowest share of viable mutants the router's unit tests must catch,
/// in percent.
pub const CAUGHT_FLOOR: f64 = 85.0;

/// The files mutated, relative to the workspace root.
const MUTATED: &str = "crates/eventbus/src/broker/router/*.rs";
/// Within them, what is not mutated: the tests and test-only code.
const NOT_MUTATED: [&str; 2] = [
    "crates/eventbus/src/broker/router/tests/**",
    "crates/eventbus/src/broker/router/invariants.rs",
];

/// Options of `cargo xtask mutants`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Mutants built and tested at once (each in its own copy of the tree).
    #[arg(long, default_value_t = 1)]
    jobs: u32,
    /// Only list the mutants, without testing them.
    #[arg(long)]
    list: bool,
    /// Do not run: report on the outcomes the last run left.
    #[arg(long)]
    no_run: bool,
}

/// Runs cargo-mutants over the router (unless `--no-run`) and checks the floor.
pub fn run(root: &Path, args: &Args) -> Result<()> {
    if !args.no_run {
        ensure_cargo_tool("mutants", "cargo-mutants")?;
        let mut cmd = cargo();
        cmd.args(["mutants", "--package", "eventbus", "--file", MUTATED]);
        for path in NOT_MUTATED {
            cmd.args(["--exclude", path]);
        }
        if args.list {
            cmd.arg("--list");
            return run_command(&mut cmd);
        }
        cmd.args(["--output", "target/mutants", "--jobs"])
            .arg(args.jobs.to_string())
            // Debug info is not needed to run tests, and costs link time per mutant.
            .env("CARGO_PROFILE_DEV_DEBUG", "0")
            .env("CARGO_PROFILE_TEST_DEBUG", "0")
            .args(["--", "--lib", "--", "broker::router::"]);
        // Missed mutants make cargo-mutants exit non-zero: the summary below
        // decides.
        if let Err(e) = run_command(&mut cmd) {
            eprintln!("note: {e:#}");
        }
    }
    summarize(&root.join("target/mutants/mutants.out"))
}

/// Reads the outcomes, prints the summary and the missed mutants, and
/// checks the floor.
fn summarize(out: &Path) -> Result<()> {
    let path = out.join("outcomes.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (run without --no-run first)", path.display()))?;
    let outcomes: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let count = |key: &str| outcomes[key].as_u64().unwrap_or(0);
    let (caught, missed, timeout, unviable) = (
        count("caught"),
        count("missed"),
        count("timeout"),
        count("unviable"),
    );
    let viable = caught + missed + timeout;
    let share = caught_share(caught, viable);
    println!(
        "mutants: {} in all; {caught} caught, {missed} missed, {timeout} timed out, {unviable} unviable",
        count("total_mutants")
    );
    println!("caught {share:.1} % of {viable} viable mutants (floor {CAUGHT_FLOOR} %)");
    let missed_list = std::fs::read_to_string(out.join("missed.txt")).unwrap_or_default();
    if !missed_list.trim().is_empty() {
        println!("missed:\n{}", missed_list.trim_end());
    }
    if share < CAUGHT_FLOOR {
        bail!(
            "the router's unit tests catch {share:.1} % of viable mutants, under {CAUGHT_FLOOR} %"
        );
    }
    Ok(())
}

/// Caught mutants as a share of the viable ones, in percent (100 when
/// nothing was viable).
fn caught_share(caught: u64, viable: u64) -> f64 {
    if viable == 0 {
        return 100.0;
    }
    caught as f64 * 100.0 / viable as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_counts_timeouts_as_not_caught() {
        assert_eq!(caught_share(85, 100), 85.0);
        assert_eq!(caught_share(0, 0), 100.0);
        assert!(caught_share(84, 100) < CAUGHT_FLOOR);
    }

    #[test]
    fn a_summary_below_the_floor_fails_and_one_above_passes() {
        let dir = tempfile::tempdir().unwrap();
        let write = |caught: u64, missed: u64| {
            let json = serde_json::json!({
                "total_mutants": caught + missed + 3,
                "caught": caught, "missed": missed, "timeout": 0, "unviable": 3,
            });
            std::fs::write(dir.path().join("outcomes.json"), json.to_string()).unwrap();
        };
        write(90, 10);
        summarize(dir.path()).unwrap();
        write(80, 20);
        assert!(summarize(dir.path()).is_err());
    }
}
