//! What the collectors actually ran, read back from their logs.
//!
//! A requester only sees replies; a task may also run on a collector that was
//! killed before replying, or run again after the requester already had its
//! answer. Every collector logs `task started` with the task id and the
//! delivery's attempt number at `info` (tracing's default format: an RFC
//! 3339 UTC timestamp first). Logs are
//! appended across restarts, so one file holds every run of a collector.

use std::collections::HashMap;
use std::path::Path;

/// One start of one task on one collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    /// The task.
    pub task_id: String,
    /// Which collector (the log's owner).
    pub collector: String,
    /// When it started, in µs since the Unix epoch.
    pub started_unix_us: u64,
    /// The delivery's attempt number (1 for the first; 1 when the line has none).
    pub attempt: u32,
}

/// Every `task started` line of the stderr log at `path`, owned by `collector`.
/// A missing log yields nothing.
pub fn read_log(path: &Path, collector: &str) -> Vec<Execution> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| parse_line(line, collector))
        .collect()
}

/// Executions by task id.
pub fn by_task(executions: &[Execution]) -> HashMap<&str, Vec<&Execution>> {
    let mut map: HashMap<&str, Vec<&Execution>> = HashMap::new();
    for e in executions {
        map.entry(e.task_id.as_str()).or_default().push(e);
    }
    map
}

fn parse_line(line: &str, collector: &str) -> Option<Execution> {
    if !line.contains("task started") {
        return None;
    }
    let stamp = line.split_whitespace().next()?;
    let started_unix_us = parse_rfc3339_utc_us(stamp)?;
    let rest = &line[line.find("task_id=")? + "task_id=".len()..];
    let task_id = match rest.strip_prefix('"') {
        Some(quoted) => &quoted[..quoted.find('"')?],
        None => rest.split_whitespace().next()?,
    };
    let attempt = line
        .find(" attempt=")
        .and_then(|at| line[at + " attempt=".len()..].split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    Some(Execution {
        task_id: task_id.to_owned(),
        collector: collector.to_owned(),
        started_unix_us,
        attempt,
    })
}

/// `2026-11-21T07:30:00.123456Z` → µs since the Unix epoch (UTC only, any
/// number of fraction digits).
fn parse_rfc3339_utc_us(stamp: &str) -> Option<u64> {
    let stamp = stamp.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut d = date.splitn(3, '-').map(str::parse::<i64>);
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(str::parse::<u64>);
    let (h, min, s) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let digits: String = fraction.chars().take(6).collect();
    let micros: u64 = format!("{digits:0<6}").parse().ok()?;
    let days = u64::try_from(days_from_civil(y, m, day)).ok()?;
    Some(((days * 86_400 + h * 3_600 + min * 60 + s) * 1_000_000) + micros)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_to_unix_microseconds() {
        assert_eq!(parse_rfc3339_utc_us("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_utc_us("2026-11-21T07:30:00.123456Z"),
            Some(1_795_246_200_123_456)
        );
        assert_eq!(
            parse_rfc3339_utc_us("2000-03-01T00:00:01.5Z"),
            Some(951_868_801_500_000)
        );
        assert_eq!(parse_rfc3339_utc_us("yesterday"), None);
    }

    #[test]
    fn task_started_lines_become_executions() {
        let line = "2026-11-21T07:30:00.000001Z  INFO mock_collector::handler: task started task_id=\"c0-7\" attempt=2";
        assert_eq!(
            parse_line(line, "procmond-1"),
            Some(Execution {
                task_id: "c0-7".into(),
                collector: "procmond-1".into(),
                started_unix_us: 1_795_246_200_000_001,
                attempt: 2,
            })
        );
        let bare = "2026-11-21T07:30:00Z  INFO x: task started task_id=c0-8 other=1";
        assert_eq!(
            parse_line(bare, "a").map(|e| (e.task_id, e.attempt)),
            Some(("c0-8".into(), 1))
        );
        assert_eq!(parse_line("2026-11-21T07:30:00Z INFO task done", "a"), None);
    }
}
