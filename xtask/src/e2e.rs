//! `cargo xtask e2e`: runs a type of process scenarios (`crates/e2e/tests/scenarios/`,
//! the hostile-client suite in `crates/e2e/tests/hostile/`, and the collectors'
//! emit tests in `crates/mock-collector/tests/emit.rs`)
//! under `cargo nextest run --profile ci` and writes a report directory.
//!
//! A type is a nextest filter over the scenarios' module paths ([`ScenarioType::filter`]);
//! `--filter` narrows it further. The report directory,
//! `<log-dir>/<UTC timestamp>/` (default `target/e2e-reports/`), holds:
//! - `junit.xml`: nextest's JUnit report (`target/nextest/ci/junit.xml`);
//! - `nextest.log`: everything nextest printed, with every test's output
//!   (`--success-output final`), so passing scenarios' figures are kept too;
//! - `summary.md`: pass/fail and duration per scenario, from the JUnit XML,
//!   the key figures (the lines of test output that start with `figure:`),
//!   and the criteria table of every chaos scenario that ran;
//! - `chaos/<scenario>.{md,json}`: each chaos scenario's report (seed,
//!   criteria, what the nemesis did, per-second metrics), written by the
//!   scenario itself into `$EVENTBUS_CHAOS_REPORT_DIR`, which is set here.
//!
//! A failing scenario prints the directory its cluster kept, with every
//! process's log (see `e2e::Cluster`); that line is in `nextest.log`.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;

use crate::process::{cargo, ensure_cargo_tool};

/// Options of `cargo xtask e2e`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which scenarios to run.
    #[arg(long = "type", value_enum, default_value_t = ScenarioType::All)]
    kind: ScenarioType,
    /// A nextest filter expression that narrows the type, e.g. `test(/cancel/)`.
    #[arg(long, value_name = "EXPR")]
    filter: Option<String>,
    /// Where report directories are created (default: `target/e2e-reports`).
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
}

/// A type of scenarios: a set of modules of the scenario suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScenarioType {
    /// Routing, the harness's own guarantees and bounded queues.
    Integration,
    /// Collector and broker faults: crashes, freezes, restarts, failover.
    Fault,
    /// FIFO queues: per-queue concurrency, order, cancellation, queue stats.
    Fifo,
    /// Volume and latency.
    Load,
    /// The collectors' emit tests (real workloads, real rows) and the tripwire
    /// that every collector type has one.
    Collectors,
    /// Seeded fault schedules (the nemesis, fault proxies) under load, judged
    /// by success criteria.
    Chaos,
    /// Hostile clients (`crates/e2e/tests/hostile/`): one client attacks the
    /// others; the victims are unaffected, the attacker is refused.
    Hostile,
    /// Durable queues across broker crashes: SIGKILL loops, order, results by
    /// id, a full disk, a damaged journal tail, and the chaos run with broker
    /// crashes (`chaos::durable`, also a chaos scenario).
    Durability,
    /// Several nodes (broker, bridge, collectors), each on a network host of
    /// its own, around a 3-server NATS cluster (`crates/e2e/tests/fleet/`):
    /// events and tasks across hosts, partitions, nats-server loss, loops.
    /// Needs root and iproute2 for network namespaces (else it falls back to
    /// loopback and says so) and `nats-server`.
    Fleet,
    /// Every scenario but the fleet's (the `stress_*` ones only run in the
    /// `stress` profile).
    All,
}

impl ScenarioType {
    /// Whether this type's tests are outside the profile's default filter
    /// (`.config/nextest.toml`), so it must be ignored: the fleet scenarios
    /// are left out of the gate that way.
    pub fn past_default_filter(self) -> bool {
        self == Self::Fleet
    }

    /// The nextest filter expression selecting this type.
    pub fn filter(self) -> &'static str {
        match self {
            Self::Integration => "binary(scenarios) & test(/^(routing|harness|backpressure)::/)",
            Self::Fault => "binary(scenarios) & test(/^(faults|failover|broker_restart|gather)::/)",
            Self::Fifo => "binary(scenarios) & test(/^fifo::/)",
            Self::Load => "binary(scenarios) & test(/^load::/)",
            Self::Collectors => "package(mock-collector) & binary(emit)",
            Self::Chaos => "binary(scenarios) & test(/^chaos::/)",
            Self::Hostile => "package(e2e) & binary(hostile)",
            Self::Durability => "binary(scenarios) & test(/^(durability|chaos::durable)::/)",
            Self::Fleet => "package(e2e) & binary(fleet)",
            Self::All => {
                "binary(scenarios) | (package(e2e) & binary(hostile)) | (package(mock-collector) & binary(emit))"
            }
        }
    }
}

/// Runs the scenarios of `args.kind` and writes the report.
pub fn run(root: &Path, args: &Args) -> Result<()> {
    let type_filter = args.kind.filter();
    let filter = match &args.filter {
        Some(extra) => format!("({type_filter}) & ({extra})"),
        None => type_filter.to_owned(),
    };
    let log_dir = args
        .log_dir
        .clone()
        .unwrap_or_else(|| target_dir(root).join("e2e-reports"));
    let report = log_dir.join(utc_timestamp(SystemTime::now()));
    std::fs::create_dir_all(&report)
        .with_context(|| format!("creating the report directory {}", report.display()))?;

    ensure_cargo_tool("nextest", "cargo-nextest")?;
    let junit = target_dir(root).join("nextest/ci/junit.xml");
    // A stale report from an earlier run must not pass for this one.
    let _ = std::fs::remove_file(&junit);
    let log_path = report.join("nextest.log");
    let chaos_dir = report.join("chaos");
    let passed = run_nextest(args.kind, &filter, &log_path, &chaos_dir)?;

    let junit_xml = std::fs::read_to_string(&junit)
        .with_context(|| format!("nextest wrote no JUnit report at {}", junit.display()))?;
    std::fs::write(report.join("junit.xml"), &junit_xml)?;
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let cases = parse_junit(&junit_xml);
    let mut summary = summary_markdown(&filter, &cases, &figures_in_log(&log));
    summary.push_str(&chaos_section(&chaos_dir));
    std::fs::write(report.join("summary.md"), &summary)?;
    let failed = cases.iter().filter(|c| c.status != Status::Passed).count();
    println!(
        "e2e report ({} scenarios, {failed} not passed): {}",
        cases.len(),
        report.display()
    );
    if !passed {
        bail!(
            "scenarios failed; see {}",
            report.join("summary.md").display()
        );
    }
    Ok(())
}

/// Runs nextest, echoing its output and writing it to `log_path`; true when it passed.
fn run_nextest(
    kind: ScenarioType,
    filter: &str,
    log_path: &Path,
    chaos_dir: &Path,
) -> Result<bool> {
    let ignore_default_filter = kind.past_default_filter();
    // The fleet's nodes run the bridge: built before the first scenario
    // needs it, like the broker.
    let bridge: &[&str] = if kind == ScenarioType::Fleet {
        &["-p", "eventbus-bridge"]
    } else {
        &[]
    };
    let nextest = cargo();
    // nextest prints progress and the tests' output on stderr and its summary
    // on stdout: `sh` merges them into one pipe, so the log keeps their order.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "exec \"$@\" 2>&1", "sh"])
        .arg(nextest.get_program())
        .args([
            "nextest",
            "run",
            "-p",
            "e2e",
            "-p",
            "mock-collector",
            // Built before the first scenario needs it, not inside its
            // time limit (the tests' filter leaves the broker's own tests out).
            "-p",
            "broker",
        ])
        .args(bridge)
        .args(["--profile", "ci"])
        .args(["--success-output", "final", "--failure-output", "final"])
        .args(ignore_default_filter.then_some("--ignore-default-filter"))
        .args(["-E", filter])
        .env("EVENTBUS_CHAOS_REPORT_DIR", chaos_dir)
        .stdout(Stdio::piped());
    let ignore = if ignore_default_filter {
        " --ignore-default-filter"
    } else {
        ""
    };
    eprintln!(
        "$ cargo nextest run -p e2e -p mock-collector -p broker {} --profile ci --success-output final --failure-output final{ignore} -E '{filter}'",
        bridge.join(" ")
    );
    let mut child = cmd.spawn().context("could not start cargo nextest")?;
    let mut log = std::fs::File::create(log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let out = child.stdout.take().context("piped stdout")?;
    for line in BufReader::new(out).lines() {
        let line = line.context("reading nextest's output")?;
        eprintln!("{line}");
        writeln!(log, "{line}")?;
    }
    Ok(child.wait()?.success())
}

/// Every chaos report the scenarios wrote (`<scenario>.md`), in name order,
/// under one heading; empty when none ran.
fn chaos_section(dir: &Path) -> String {
    let mut reports: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "md"))
                .collect()
        })
        .unwrap_or_default();
    if reports.is_empty() {
        return String::new();
    }
    reports.sort();
    let mut out = String::from("\n## Chaos criteria\n\n");
    for path in reports {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = writeln!(out, "{}\n", text.trim_end());
    }
    out
}

/// `$CARGO_TARGET_DIR`, else `<root>/target`.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| root.join(dir))
        .unwrap_or_else(|| root.join("target"))
}

/// `YYYY-MM-DDTHH-MM-SSZ` in UTC (no colons, so it is a portable directory name).
fn utc_timestamp(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}-{m:02}-{s:02}Z")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// How a test case ended, as the JUnit report says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Passed,
    /// Failed at first, then passed on a retry (the `ci` profile fails the run).
    Flaky,
    Failed,
    Skipped,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Self::Passed => "pass",
            Self::Flaky => "FLAKY",
            Self::Failed => "FAIL",
            Self::Skipped => "skipped",
        }
    }
}

/// One `<testcase>` of the JUnit report.
#[derive(Debug, Clone, PartialEq)]
struct Case {
    name: String,
    seconds: f64,
    status: Status,
    /// `figure:` lines of its captured output (kept by nextest for failures).
    figures: Vec<String>,
}

/// The test cases of a nextest JUnit report, by simple scanning: nextest
/// writes one `<testcase ...>` tag per test, self-closing when it passed.
fn parse_junit(xml: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<testcase ") {
        rest = &rest[start..];
        let tag_end = rest.find('>').unwrap_or(rest.len());
        let tag = &rest[..tag_end];
        let self_closing = tag.ends_with('/');
        let body_end = if self_closing {
            tag_end
        } else {
            rest.find("</testcase>").unwrap_or(rest.len())
        };
        let body = &rest[tag_end.min(body_end)..body_end];
        let status = if body.contains("<failure") || body.contains("<error") {
            Status::Failed
        } else if body.contains("<skipped") {
            Status::Skipped
        } else if body.contains("<flakyFailure") || body.contains("<flakyError") {
            Status::Flaky
        } else {
            Status::Passed
        };
        cases.push(Case {
            name: unescape(&attribute(tag, "name").unwrap_or_default()),
            seconds: attribute(tag, "time")
                .and_then(|t| t.parse().ok())
                .unwrap_or(0.0),
            status,
            figures: figure_lines(&unescape(element_text(body, "system-out"))),
        });
        rest = &rest[body_end.max(1)..];
    }
    cases
}

/// The value of `name="..."` in a tag.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let len = tag[start..].find('"')?;
    Some(tag[start..start + len].to_owned())
}

/// The text of the first `<name>...</name>` element in `xml`, or "".
fn element_text<'a>(xml: &'a str, name: &str) -> &'a str {
    let open = format!("<{name}>");
    let Some(start) = xml.find(&open).map(|i| i + open.len()) else {
        return "";
    };
    let end = xml[start..]
        .find(&format!("</{name}>"))
        .map_or(xml.len(), |i| start + i);
    &xml[start..end]
}

/// The five predefined XML entities.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn figure_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("figure:"))
        .map(|l| l["figure:".len()..].trim().to_owned())
        .collect()
}

/// `figure:` lines of nextest's log, by test: nextest heads each test's
/// output with its status line, `PASS [   0.113s] (1/6) <binary> <test name>`.
fn figures_in_log(log: &str) -> Vec<(String, String)> {
    let mut current = String::new();
    let mut figures = Vec::new();
    for line in log.lines() {
        let status = line.split_whitespace().next().unwrap_or_default();
        let is_status_line = !status.is_empty()
            && status.bytes().all(|b| b.is_ascii_uppercase())
            && line.contains("s] (");
        if is_status_line {
            current = line
                .split_whitespace()
                .last()
                .unwrap_or_default()
                .to_owned();
        } else if let [figure] = figure_lines(line).as_slice() {
            figures.push((current.clone(), figure.clone()));
        }
    }
    figures
}

/// The report: one row per scenario, then the key figures.
fn summary_markdown(filter: &str, cases: &[Case], log_figures: &[(String, String)]) -> String {
    let passed = cases.iter().filter(|c| c.status == Status::Passed).count();
    let total: f64 = cases.iter().map(|c| c.seconds).sum();
    let mut out = String::new();
    let _ = writeln!(out, "# e2e report\n");
    let _ = writeln!(out, "Filter: `{filter}`\n");
    let _ = writeln!(
        out,
        "{passed} of {} scenarios passed; {total:.1} s of test time.\n",
        cases.len()
    );
    let _ = writeln!(out, "| scenario | result | duration |\n|---|---|---|");
    for case in cases {
        let _ = writeln!(
            out,
            "| `{}` | {} | {:.3} s |",
            case.name,
            case.status.label(),
            case.seconds
        );
    }
    let mut figures: Vec<(String, String)> = cases
        .iter()
        .flat_map(|c| c.figures.iter().map(|f| (c.name.clone(), f.clone())))
        .collect();
    for figure in log_figures {
        if !figures.contains(figure) {
            figures.push(figure.clone());
        }
    }
    if !figures.is_empty() {
        let _ = writeln!(out, "\n## Key figures\n");
        for (test, figure) in figures {
            let _ = writeln!(out, "- `{test}`: {figure}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const JUNIT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="3" failures="1" errors="0">
    <testsuite name="e2e::scenarios" tests="3" disabled="0" errors="0" failures="1">
        <testcase name="fifo::ten_tasks" classname="e2e::scenarios" timestamp="2026-01-01T00:00:00+00:00" time="0.113"/>
        <testcase name="fifo::window" classname="e2e::scenarios" timestamp="2026-01-01T00:00:00+00:00" time="2.5">
            <failure type="test failure">thread panicked: 5 &lt; 4</failure>
            <system-out>figure: window &lt;= 5 tasks
</system-out>
            <system-err>e2e: cluster directory kept</system-err>
        </testcase>
        <testcase name="load::rtt" classname="e2e::scenarios" timestamp="2026-01-01T00:00:00+00:00" time="1.000">
            <flakyFailure type="test failure">timed out</flakyFailure>
        </testcase>
    </testsuite>
</testsuites>
"#;

    #[test]
    fn junit_cases_become_summary_rows_with_durations_and_figures() {
        let cases = parse_junit(JUNIT);
        let got: Vec<_> = cases
            .iter()
            .map(|c| (c.name.as_str(), c.status, c.seconds))
            .collect();
        assert_eq!(
            got,
            [
                ("fifo::ten_tasks", Status::Passed, 0.113),
                ("fifo::window", Status::Failed, 2.5),
                ("load::rtt", Status::Flaky, 1.0),
            ]
        );
        assert_eq!(cases[1].figures, ["window <= 5 tasks"]);

        let log = "  FLAKY 2/2 [   1.000s] (3/3) e2e::scenarios load::rtt\n  stdout ───\n    figure: p99 3ms\n";
        let summary = summary_markdown("binary(scenarios)", &cases, &figures_in_log(log));
        assert!(summary.contains("1 of 3 scenarios passed"), "{summary}");
        assert!(
            summary.contains("| `fifo::ten_tasks` | pass | 0.113 s |"),
            "{summary}"
        );
        assert!(
            summary.contains("| `fifo::window` | FAIL | 2.500 s |"),
            "{summary}"
        );
        assert!(
            summary.contains("| `load::rtt` | FLAKY | 1.000 s |"),
            "{summary}"
        );
        assert!(
            summary.contains("- `fifo::window`: window <= 5 tasks"),
            "{summary}"
        );
        assert!(summary.contains("- `load::rtt`: p99 3ms"), "{summary}");
    }

    #[test]
    fn every_type_has_a_filter_over_the_scenarios() {
        for kind in ScenarioType::value_variants() {
            let filter = kind.filter();
            assert!(
                filter.starts_with("binary(scenarios)")
                    || filter.contains("binary(emit)")
                    || filter.contains("binary(hostile)")
                    || filter.contains("binary(fleet)"),
                "{filter}"
            );
            // Only the fleet's scenarios live outside the default filter.
            assert_eq!(
                kind.past_default_filter(),
                filter.contains("binary(fleet)"),
                "{filter}"
            );
        }
        assert!(!ScenarioType::All.filter().contains("fleet"));
        assert!(ScenarioType::Chaos.filter().contains("chaos::"));
        assert!(
            ScenarioType::Durability
                .filter()
                .contains("durability|chaos::durable")
        );
        assert!(ScenarioType::All.filter().contains("binary(hostile)"));
    }

    #[test]
    fn chaos_reports_are_gathered_under_one_heading() {
        let dir = std::env::temp_dir().join(format!("xtask-chaos-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(chaos_section(&dir), "");
        std::fs::write(dir.join("b.md"), "### chaos: b\n").unwrap();
        std::fs::write(dir.join("a.md"), "### chaos: a\n").unwrap();
        std::fs::write(dir.join("a.json"), "{}").unwrap();
        let section = chaos_section(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(section.starts_with("\n## Chaos criteria"), "{section}");
        let (a, b) = (section.find("chaos: a"), section.find("chaos: b"));
        assert!(a.is_some() && a < b, "{section}");
        assert!(!section.contains("{}"), "{section}");
    }

    #[test]
    fn timestamps_are_utc_dates() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_795_241_898);
        assert_eq!(utc_timestamp(t), "2026-11-21T06-18-18Z");
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00-00-00Z");
    }
}
