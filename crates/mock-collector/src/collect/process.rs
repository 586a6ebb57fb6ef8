//! The process collector: samples from `/proc/<pid>/stat` and `/proc/<pid>/status`.
//!
//! `stat` is one line whose second field, the command name, is in parentheses and
//! may itself hold spaces and parentheses (`1 (a) b)) S ...`): it is split at the
//! *last* `)`, after which every field is a plain token.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::CollectError;

/// One process, as a process task reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessSample {
    /// Process id.
    pub pid: u32,
    /// Command name (`comm`), at most 15 bytes on Linux.
    pub name: String,
    /// One-letter state code (`R`, `S`, `D`, `Z`, ...).
    pub state: String,
    /// The state spelled out (`running`, `sleeping`, ...).
    pub state_name: &'static str,
    /// Parent process id.
    pub ppid: u32,
    /// CPU time in user mode, in clock ticks.
    pub utime_ticks: u64,
    /// CPU time in kernel mode, in clock ticks.
    pub stime_ticks: u64,
    /// Resident set size in bytes (`VmRSS`; 0 for kernel threads).
    pub rss_bytes: u64,
    /// Number of threads.
    pub threads: u64,
}

/// All processes: how many, by state, and the largest by RSS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessOverview {
    /// Processes seen.
    pub count: u64,
    /// Processes per state name.
    pub by_state: BTreeMap<&'static str, u64>,
    /// The `top` processes with the largest RSS, largest first.
    pub top: Vec<ProcessSample>,
}

/// The fields taken from `/proc/<pid>/stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// Process id.
    pub pid: u32,
    /// Command name, without the parentheses.
    pub name: String,
    /// State code.
    pub state: char,
    /// Parent process id.
    pub ppid: u32,
    /// User-mode ticks.
    pub utime: u64,
    /// Kernel-mode ticks.
    pub stime: u64,
    /// Number of threads.
    pub threads: u64,
}

/// Parses one `/proc/<pid>/stat` line; `None` if it is malformed.
pub fn parse_stat(line: &str) -> Option<Stat> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = line[..open].trim().parse().ok()?;
    let name = line[open + 1..close].to_owned();
    // Fields after the name, numbered from 3 (state) as in proc(5).
    let rest: Vec<&str> = line[close + 1..].split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).copied();
    let mut state_chars = field(3)?.chars();
    let state = state_chars.next()?;
    if state_chars.next().is_some() {
        return None;
    }
    Some(Stat {
        pid,
        name,
        state,
        ppid: field(4)?.parse().ok()?,
        utime: field(14)?.parse().ok()?,
        stime: field(15)?.parse().ok()?,
        threads: field(20)?.parse().ok()?,
    })
}

/// `VmRSS` in bytes and `Threads` from `/proc/<pid>/status`; `VmRSS` is absent
/// for kernel threads.
pub fn parse_status(text: &str) -> (Option<u64>, Option<u64>) {
    let mut rss = None;
    let mut threads = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("VmRSS:") {
            let kib = v.trim().trim_end_matches("kB").trim();
            rss = kib.parse::<u64>().ok().map(|k| k.saturating_mul(1024));
        } else if let Some(v) = line.strip_prefix("Threads:") {
            threads = v.trim().parse().ok();
        }
    }
    (rss, threads)
}

/// The name of a state code, per proc(5).
pub fn state_name(state: char) -> &'static str {
    match state {
        'R' => "running",
        'S' => "sleeping",
        'D' => "disk_sleep",
        'Z' => "zombie",
        'T' => "stopped",
        't' => "tracing_stop",
        'X' | 'x' => "dead",
        'I' => "idle",
        'P' => "parked",
        'W' => "waking",
        'K' => "wakekill",
        _ => "unknown",
    }
}

/// Joins what `stat` and `status` say about one process.
pub fn sample_from(stat: Stat, status: &str) -> ProcessSample {
    let (rss, threads) = parse_status(status);
    ProcessSample {
        pid: stat.pid,
        state: stat.state.to_string(),
        state_name: state_name(stat.state),
        name: stat.name,
        ppid: stat.ppid,
        utime_ticks: stat.utime,
        stime_ticks: stat.stime,
        rss_bytes: rss.unwrap_or(0),
        threads: threads.unwrap_or(stat.threads),
    }
}

/// Samples one process under `proc_root` (normally `/proc`).
pub fn sample(proc_root: &Path, pid: u32) -> Result<ProcessSample, CollectError> {
    let dir = proc_root.join(pid.to_string());
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => CollectError::NoSuchProcess { pid },
            _ => CollectError::Io { path, source },
        })
    };
    let stat_text = read("stat")?;
    let status_text = read("status")?;
    let stat = parse_stat(&stat_text).ok_or_else(|| CollectError::Malformed {
        path: dir.join("stat"),
        what: "unexpected /proc/<pid>/stat layout".to_owned(),
    })?;
    Ok(sample_from(stat, &status_text))
}

/// Samples every process under `proc_root`; processes that exit meanwhile are
/// skipped. Keeps the `top` largest by RSS.
pub fn overview(proc_root: &Path, top: usize) -> Result<ProcessOverview, CollectError> {
    let entries = std::fs::read_dir(proc_root).map_err(|source| CollectError::Io {
        path: proc_root.to_owned(),
        source,
    })?;
    let mut count = 0;
    let mut by_state = BTreeMap::new();
    let mut largest: Vec<ProcessSample> = Vec::with_capacity(top + 1);
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(s) = sample(proc_root, pid) else {
            continue;
        };
        count += 1;
        *by_state.entry(s.state_name).or_insert(0) += 1;
        keep_largest(&mut largest, s, top);
    }
    Ok(ProcessOverview {
        count,
        by_state,
        top: largest,
    })
}

/// Inserts `s` into `largest` (sorted by RSS, largest first, then by pid) and
/// keeps at most `top` entries, so memory stays bounded by `top`.
fn keep_largest(largest: &mut Vec<ProcessSample>, s: ProcessSample, top: usize) {
    if top == 0 {
        return;
    }
    let key = |p: &ProcessSample| (std::cmp::Reverse(p.rss_bytes), p.pid);
    let at = largest.partition_point(|p| key(p) < key(&s));
    if at < top {
        largest.insert(at, s);
        largest.truncate(top);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (we(ird) na)me) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                        37 11 0 0 20 0 3 0 12345 1000000 250 18446744073709551615";

    #[test]
    fn stat_is_split_at_the_last_parenthesis() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(s.pid, 4242);
        assert_eq!(s.name, "we(ird) na)me");
        assert_eq!(
            (s.state, s.ppid, s.utime, s.stime, s.threads),
            ('S', 1, 37, 11, 3)
        );
    }

    #[test]
    fn malformed_stat_lines_are_refused() {
        for line in [
            "",
            "12 no parens S 1",
            "12 (x) S",
            "x (a) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18",
        ] {
            assert_eq!(parse_stat(line), None, "{line:?}");
        }
    }

    #[test]
    fn status_gives_rss_in_bytes_and_threads() {
        let status = "Name:\tsh\nState:\tS (sleeping)\nVmRSS:\t    1536 kB\nThreads:\t4\n";
        assert_eq!(parse_status(status), (Some(1536 * 1024), Some(4)));
        assert_eq!(
            parse_status("Name:\tkworker\nThreads:\t1\n"),
            (None, Some(1))
        );
    }

    #[test]
    fn keeps_only_the_largest_by_rss() {
        let mut largest = Vec::new();
        for (pid, rss) in [(1, 10), (2, 50), (3, 30), (4, 50), (5, 1)] {
            let stat = parse_stat(STAT).unwrap();
            let mut s = sample_from(stat, "");
            s.pid = pid;
            s.rss_bytes = rss;
            keep_largest(&mut largest, s, 3);
        }
        let order: Vec<u32> = largest.iter().map(|p| p.pid).collect();
        assert_eq!(order, [2, 4, 3]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn samples_this_process_and_the_overview_includes_it() {
        let root = Path::new("/proc");
        let me = sample(root, std::process::id()).unwrap();
        assert!(me.rss_bytes > 0 && me.threads >= 1, "{me:?}");
        let all = overview(root, 5).unwrap();
        assert!(all.count >= 1 && all.top.len() <= 5, "{all:?}");
        assert!(matches!(
            sample(root, u32::MAX),
            Err(CollectError::NoSuchProcess { .. })
        ));
    }
}
