//! Reading an lcov file into line counts per crate, and the table printed
//! from them. Pure functions over text, so they are tested inline.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// The groups of the table, in order: a crate under `crates/<name>/`, or `xtask`.
pub const GROUPS: [&str; 5] = ["eventbus", "broker", "mock-collector", "e2e", "xtask"];

/// Instrumented and executed lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lines {
    /// Lines that ran at least once.
    pub covered: u64,
    /// Lines with code that could run.
    pub total: u64,
}

impl Lines {
    /// Covered lines as a percentage of the total; 0 when there is nothing to cover.
    pub fn percent(self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.covered as f64 * 100.0 / self.total as f64
        }
    }

    fn add(&mut self, other: Lines) {
        self.covered += other.covered;
        self.total += other.total;
    }
}

/// Line counts per group (see [`GROUPS`]); files outside every group are
/// counted under `other`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Group name to its line counts.
    pub groups: BTreeMap<String, Lines>,
}

impl Summary {
    /// The line counts of a group (zero when no file of it was reported).
    pub fn get(&self, group: &str) -> Lines {
        self.groups.get(group).copied().unwrap_or_default()
    }

    /// Every group added up.
    pub fn total(&self) -> Lines {
        let mut total = Lines::default();
        for lines in self.groups.values() {
            total.add(*lines);
        }
        total
    }

    /// A Markdown table: one row per group in [`GROUPS`], then `other` when
    /// it has lines, then the total.
    pub fn table(&self) -> String {
        let mut out = String::from("| crate | lines covered | lines total | line % |\n");
        out.push_str("|---|---:|---:|---:|\n");
        let mut row = |name: &str, lines: Lines| {
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {:.2} |",
                lines.covered,
                lines.total,
                lines.percent()
            );
        };
        for group in GROUPS {
            row(group, self.get(group));
        }
        if self.get("other").total > 0 {
            row("other", self.get("other"));
        }
        row("**total**", self.total());
        out
    }
}

/// Sums the `DA:` records of each `SF:` file of an lcov report into the group
/// of its path relative to `root`.
///
/// `DA:<line>,<hits>` is counted rather than the `LF`/`LH` totals, so a
/// report that leaves those out still adds up.
pub fn summarize(lcov: &str, root: &Path) -> Summary {
    let mut summary = Summary::default();
    let mut current: Option<(String, Lines)> = None;
    for line in lcov.lines() {
        let line = line.trim_end();
        if let Some(path) = line.strip_prefix("SF:") {
            current = Some((group_of(Path::new(path), root), Lines::default()));
        } else if let Some(record) = line.strip_prefix("DA:") {
            let hits = record.split(',').nth(1).and_then(|h| h.parse::<u64>().ok());
            if let (Some((_, lines)), Some(hits)) = (current.as_mut(), hits) {
                lines.total += 1;
                lines.covered += u64::from(hits > 0);
            }
        } else if line == "end_of_record"
            && let Some((group, lines)) = current.take()
        {
            summary.groups.entry(group).or_default().add(lines);
        }
    }
    summary
}

/// `crates/<name>/…` is `<name>`, `xtask/…` is `xtask`, anything else `other`.
fn group_of(path: &Path, root: &Path) -> String {
    let relative = path.strip_prefix(root).unwrap_or(path);
    let mut parts = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy());
    match (parts.next().as_deref(), parts.next()) {
        (Some("crates"), Some(name)) if parts.next().is_some() => name.into_owned(),
        (Some("xtask"), Some(_)) => "xtask".to_owned(),
        _ => "other".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LCOV: &str = "\
SF:/repo/crates/eventbus/src/lib.rs
FN:1,f
DA:1,3
DA:2,0
DA:3,1
LF:3
LH:2
end_of_record
SF:/repo/crates/eventbus/src/codec.rs
DA:10,0
end_of_record
SF:/repo/crates/broker/src/main.rs
DA:1,7
end_of_record
SF:/repo/xtask/src/main.rs
DA:5,0
DA:6,2
end_of_record
SF:/elsewhere/lib.rs
DA:1,1
end_of_record
";

    #[test]
    fn lines_are_grouped_by_crate() {
        let summary = summarize(LCOV, Path::new("/repo"));
        assert_eq!(
            summary.get("eventbus"),
            Lines {
                covered: 2,
                total: 4
            }
        );
        assert_eq!(
            summary.get("broker"),
            Lines {
                covered: 1,
                total: 1
            }
        );
        assert_eq!(
            summary.get("xtask"),
            Lines {
                covered: 1,
                total: 2
            }
        );
        assert_eq!(
            summary.get("other"),
            Lines {
                covered: 1,
                total: 1
            }
        );
        assert_eq!(summary.get("e2e"), Lines::default());
        assert_eq!(
            summary.total(),
            Lines {
                covered: 5,
                total: 8
            }
        );
    }

    #[test]
    fn the_table_has_every_group_and_the_total() {
        let table = summarize(LCOV, Path::new("/repo")).table();
        assert!(table.contains("| eventbus | 2 | 4 | 50.00 |"), "{table}");
        assert!(table.contains("| e2e | 0 | 0 | 0.00 |"), "{table}");
        assert!(table.contains("| other | 1 | 1 | 100.00 |"), "{table}");
        assert!(table.contains("| **total** | 5 | 8 | 62.50 |"), "{table}");
    }

    #[test]
    fn a_record_without_an_end_is_not_counted() {
        let summary = summarize(
            "SF:/repo/crates/e2e/src/lib.rs\nDA:1,1\n",
            Path::new("/repo"),
        );
        assert_eq!(summary.total(), Lines::default());
    }

    #[test]
    fn nothing_to_cover_is_zero_percent() {
        assert_eq!(Lines::default().percent(), 0.0);
    }
}
