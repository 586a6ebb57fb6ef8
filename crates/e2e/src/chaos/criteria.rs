//! Success criteria: what a chaos scenario must achieve, what it measured, and
//! whether that passes, as a table a user can read.
//!
//! A scenario builds a [`Report`], prints it, records it (as Markdown and JSON
//! in `$EVENTBUS_CHAOS_REPORT_DIR` when set, which `cargo xtask e2e --type
//! chaos` does) and then asserts that every criterion passed.

use std::fmt::{self, Write as _};
use std::path::PathBuf;

use serde::Serialize;

/// The environment variable naming the directory reports are written to.
pub const REPORT_DIR_ENV: &str = "EVENTBUS_CHAOS_REPORT_DIR";

/// How a measured value is compared with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Compare {
    /// It must be at least the threshold.
    AtLeast,
    /// It must be at most the threshold.
    AtMost,
}

/// One criterion, judged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Criterion {
    /// What is judged, e.g. "availability (completed ÷ attempted within 3 s)".
    pub name: String,
    /// How.
    pub compare: Compare,
    /// The bound.
    pub threshold: f64,
    /// What the run measured.
    pub measured: f64,
    /// The unit both are in ("", "s", "MiB").
    pub unit: String,
    /// Whether it passed.
    pub pass: bool,
}

/// A scenario's record: its seed, criteria, notes and per-second metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The scenario's name (also the file name of the recorded report).
    pub scenario: String,
    /// The seed its schedule derived from.
    pub seed: u64,
    /// The criteria, in the order added.
    pub criteria: Vec<Criterion>,
    /// Facts worth reading that are not criteria (the schedule, counts, skips).
    pub notes: Vec<String>,
    /// The per-second metrics as a Markdown table, if the scenario has any.
    pub per_second: Option<String>,
    /// The test binary and the test-name filter that replay it
    /// [default: `scenarios` and the scenario's name].
    pub replay: (String, String),
}

impl Report {
    /// An empty report for `scenario`, run with `seed`.
    pub fn new(scenario: &str, seed: u64) -> Self {
        Self {
            scenario: scenario.to_owned(),
            seed,
            criteria: Vec::new(),
            notes: Vec::new(),
            per_second: None,
            replay: ("scenarios".to_owned(), scenario.to_owned()),
        }
    }

    /// Replayed from test binary `binary` with the test-name filter `filter`
    /// (for scenarios outside `tests/scenarios/`, or named otherwise).
    pub fn replayed_by(mut self, binary: &str, filter: &str) -> Self {
        self.replay = (binary.to_owned(), filter.to_owned());
        self
    }

    /// Adds a criterion that `measured` is at least `threshold`.
    pub fn at_least(&mut self, name: &str, threshold: f64, measured: f64, unit: &str) {
        self.add(name, Compare::AtLeast, threshold, measured, unit);
    }

    /// Adds a criterion that `measured` is at most `threshold`.
    pub fn at_most(&mut self, name: &str, threshold: f64, measured: f64, unit: &str) {
        self.add(name, Compare::AtMost, threshold, measured, unit);
    }

    fn add(&mut self, name: &str, compare: Compare, threshold: f64, measured: f64, unit: &str) {
        let pass = match compare {
            Compare::AtLeast => measured >= threshold,
            Compare::AtMost => measured <= threshold,
        };
        self.criteria.push(Criterion {
            name: name.to_owned(),
            compare,
            threshold,
            measured,
            unit: unit.to_owned(),
            pass,
        });
    }

    /// Adds a note.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Whether every criterion passed.
    pub fn passed(&self) -> bool {
        self.criteria.iter().all(|c| c.pass)
    }

    /// Prints the report, records it if [`REPORT_DIR_ENV`] is set, and panics
    /// (with the report) unless every criterion passed.
    pub fn finish(&self) {
        println!("{self}");
        if let Some(dir) = std::env::var_os(REPORT_DIR_ENV).map(PathBuf::from) {
            let write = |ext: &str, text: String| {
                let path = dir.join(format!("{}.{ext}", self.scenario));
                std::fs::create_dir_all(&dir)
                    .and_then(|()| std::fs::write(&path, text))
                    .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            };
            write("md", self.to_string());
            write(
                "json",
                serde_json::to_string_pretty(self).expect("a report serialises"),
            );
        }
        assert!(self.passed(), "criteria failed:\n{self}");
    }
}

fn number(value: f64, unit: &str) -> String {
    let text = if value.is_infinite() {
        "never".to_owned()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.3}")
    };
    if unit.is_empty() || value.is_infinite() {
        text
    } else {
        format!("{text} {unit}")
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        writeln!(f, "### chaos: {} — {verdict}\n", self.scenario)?;
        writeln!(
            f,
            "Seed {} (replay: `EVENTBUS_CHAOS_SEED={} cargo nextest run -p e2e --test {} {}`).\n",
            self.seed, self.seed, self.replay.0, self.replay.1
        )?;
        let mut table =
            String::from("| criterion | threshold | measured | result |\n|---|---:|---:|---|\n");
        for c in &self.criteria {
            let op = match c.compare {
                Compare::AtLeast => "≥",
                Compare::AtMost => "≤",
            };
            let _ = writeln!(
                table,
                "| {} | {op} {} | {} | {} |",
                c.name,
                number(c.threshold, &c.unit),
                number(c.measured, &c.unit),
                if c.pass { "pass" } else { "FAIL" }
            );
        }
        writeln!(f, "{table}")?;
        for note in &self.notes {
            writeln!(f, "- {note}")?;
        }
        if let Some(per_second) = &self.per_second {
            writeln!(f, "\nPer second:\n\n{per_second}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criteria_pass_on_their_side_of_the_threshold() {
        let mut report = Report::new("demo", 7);
        report.at_least("availability", 0.8, 0.95, "");
        report.at_most("recovery", 5.0, 1.25, "s");
        assert!(report.passed());
        report.at_most("lost tasks", 0.0, 1.0, "");
        assert!(!report.passed());
        let text = report.to_string();
        assert!(
            text.contains("| availability | ≥ 0.800 | 0.950 | pass |"),
            "{text}"
        );
        assert!(
            text.contains("| recovery | ≤ 5 s | 1.250 s | pass |"),
            "{text}"
        );
        assert!(text.contains("| lost tasks | ≤ 0 | 1 | FAIL |"), "{text}");
        assert!(text.contains("EVENTBUS_CHAOS_SEED=7"), "{text}");
    }

    #[test]
    fn a_bound_never_reached_reads_never() {
        let mut report = Report::new("demo", 1);
        report.at_most("recovery", 5.0, f64::INFINITY, "s");
        assert!(report.to_string().contains("| never | FAIL |"));
    }
}
