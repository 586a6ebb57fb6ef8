//! The report: criterion's results read back from its output directory, and
//! the summary tables of `report.md` built from the combined JSON.

use std::fmt::Write as _;
use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result};
use serde_json::{Value, json};

/// Every criterion result of the benchmark groups in `groups`, sorted by id,
/// as `{"id", "median_ns", "mean_ns", "elements"}` objects (`elements` is the
/// declared throughput, or null).
///
/// Criterion keeps one directory per benchmark with the latest run in `new/`:
/// `benchmark.json` names it and `estimates.json` holds the point estimates,
/// in nanoseconds per iteration. With `since`, results written before it
/// (benchmarks that did not run this time) are left out.
pub fn read_criterion(
    dir: &Path,
    groups: &[&str],
    since: Option<SystemTime>,
) -> Result<Vec<Value>> {
    let mut found = Vec::new();
    collect(dir, groups, since, &mut found)?;
    found.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    Ok(found)
}

fn collect(
    dir: &Path,
    groups: &[&str],
    since: Option<SystemTime>,
    out: &mut Vec<Value>,
) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for entry in entries {
        let path = entry?.path();
        if !path.is_dir() {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "new") {
            if let Some(result) = read_result(&path, groups, since)? {
                out.push(result);
            }
        } else {
            collect(&path, groups, since, out)?;
        }
    }
    Ok(())
}

/// One benchmark's result from its `new/` directory, if it belongs to `groups`.
fn read_result(new: &Path, groups: &[&str], since: Option<SystemTime>) -> Result<Option<Value>> {
    let (bench_file, estimates_file) = (new.join("benchmark.json"), new.join("estimates.json"));
    if !bench_file.is_file() || !estimates_file.is_file() {
        return Ok(None);
    }
    if let Some(since) = since {
        let written = std::fs::metadata(&estimates_file)?.modified()?;
        if written < since {
            return Ok(None);
        }
    }
    let read = |path: &Path| -> Result<Value> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    };
    let bench = read(&bench_file)?;
    if !groups.iter().any(|g| bench["group_id"] == *g) {
        return Ok(None);
    }
    let estimates = read(&estimates_file)?;
    let id = bench["full_id"]
        .as_str()
        .with_context(|| format!("no full_id in {}", bench_file.display()))?;
    Ok(Some(json!({
        "id": id,
        "median_ns": estimates["median"]["point_estimate"],
        "mean_ns": estimates["mean"]["point_estimate"],
        "elements": bench["throughput"]["Elements"],
    })))
}

/// `report.md`: one table per part of the report; parts missing from the
/// report (busbench sections not run) are left out.
pub fn markdown(report: &Value) -> String {
    let mut md = String::from("# eventbus benchmark report\n\n");
    let mode = report["mode"].as_str().unwrap_or("?");
    let _ = writeln!(
        md,
        "Mode: {mode}. {}.\n",
        report["nats"].as_str().unwrap_or("NATS: not checked")
    );
    if let Some(layout) = report["layout"].as_str() {
        let _ = writeln!(md, "Broker layout: {layout}.\n");
    }
    micro(&mut md, &report["micro"]);
    let process = &report["process"];
    latency(&mut md, &process["latency"]);
    throughput(&mut md, "unpinned", &process["throughput"]);
    throughput(&mut md, "pinned to CPU 0", &process["throughput_pinned"]);
    lossless(&mut md, &process["throughput_lossless"]);
    work_queue(&mut md, &process["work_queue_5_workers"]);
    pipelined(&mut md, &process["work_queue_pipelined"]);
    memory(&mut md, &process["memory"]);
    queue(&mut md, &process["queue"]);
    gather(&mut md, &process["gather"]);
    let notes: Vec<String> = report["peer_notes"]
        .as_array()
        .map(|n| {
            n.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    super::side_by_side::markdown(&mut md, process, &notes);
    md
}

fn micro(md: &mut String, micro: &Value) {
    let Some(rows) = micro.as_array().filter(|r| !r.is_empty()) else {
        return;
    };
    md.push_str("## Micro-benchmarks (criterion, per iteration)\n\n");
    md.push_str("| benchmark | median | mean | median per element |\n|---|---|---|---|\n");
    for row in rows {
        let median = row["median_ns"].as_f64();
        let per_element = match (median, row["elements"].as_u64()) {
            (Some(ns), Some(n)) if n > 1 => format!("{} ({n} elements)", ns_text(ns / n as f64)),
            _ => "—".to_owned(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {per_element} |",
            row["id"].as_str().unwrap_or("?"),
            median.map_or_else(|| "—".to_owned(), ns_text),
            row["mean_ns"]
                .as_f64()
                .map_or_else(|| "—".to_owned(), ns_text),
        );
    }
    md.push('\n');
}

/// The percentiles busbench reports, as `(key, label)`.
pub const PERCENTILES: [(&str, &str); 5] = [
    ("p50_us", "p50"),
    ("p90_us", "p90"),
    ("p99_us", "p99"),
    ("p999_us", "p99.9"),
    ("max_us", "max"),
];

fn latency(md: &mut String, runs: &Value) {
    let Some(runs) = runs.as_array() else {
        return;
    };
    md.push_str(
        "## Round-trip latency, 64 B (floor and bus in alternating blocks of the same run)\n\n",
    );
    md.push_str("| measurement | floor | eventbus | ratio |\n|---|---|---|---|\n");
    // The plain responder's rows, then the queue group's (reply = ack).
    for (series, name) in [("bus", "round trip"), ("queue", "queue-group round trip")] {
        for run in runs {
            let pinned = if run["pinned"].as_bool() == Some(true) {
                "pinned"
            } else {
                "unpinned"
            };
            if !run[series].is_object() {
                continue;
            }
            for (key, label) in PERCENTILES {
                let (floor, bus) = (run["floor"][key].as_f64(), run[series][key].as_f64());
                let ratio = match (floor, bus) {
                    (Some(f), Some(b)) if f > 0.0 => format!("{:.2}", b / f),
                    _ => "—".to_owned(),
                };
                let _ = writeln!(
                    md,
                    "| {name} {label}, {pinned} | {} | {} | {ratio} |",
                    us_text(floor),
                    us_text(bus)
                );
            }
        }
    }
    md.push_str("\nPlot: `latency.svg`.\n\n");
}

fn throughput(md: &mut String, mode: &str, t: &Value) {
    if !t.is_object() {
        return;
    }
    let (publisher, subscriber) = (&t["publisher"], &t["subscriber"]);
    let _ = write!(
        md,
        "## Pub/sub throughput, 1 → 1, 64 B, {mode}\n\n| measurement | value |\n|---|---|\n"
    );
    let _ = writeln!(
        md,
        "| publisher | {} ({} sent) |",
        rate(&publisher["per_s"]),
        count(&publisher["sent"])
    );
    let _ = writeln!(
        md,
        "| subscriber | {} ({} of {} received, {} counted as dropped by the client) |",
        rate(&subscriber["per_s"]),
        count(&subscriber["received"]),
        count(&publisher["sent"]),
        count(&subscriber["dropped"])
    );
    if t["floor"].is_object() {
        let _ = writeln!(
            md,
            "| raw-socket floor (relay process) | {} (subscriber ÷ floor: {:.3}) |",
            rate(&t["floor"]["per_s"]),
            t["ratio_to_floor"].as_f64().unwrap_or(f64::NAN)
        );
    }
    let _ = writeln!(
        md,
        "| broker RSS after the stream | {} |\n",
        kib(&t["broker_rss_kib_after"])
    );
}

/// The paced runs: the highest publish rate every message was delivered at.
fn lossless(md: &mut String, l: &Value) {
    let Some(tries) = l["tries"].as_array() else {
        return;
    };
    md.push_str(
        "## Pub/sub delivered without loss, 1 → 1, 64 B, unpinned\n\n\
         The publisher paced at each rate in turn, default broker bounds, \
         until a run loses messages.\n\n\
         | publish rate | received | subscriber |\n|---|---|---|\n",
    );
    for t in tries {
        let run = &t["run"];
        let _ = writeln!(
            md,
            "| {} | {} of {} | {} |",
            rate(&t["rate"]),
            count(&run["subscriber"]["received"]),
            count(&run["publisher"]["sent"]),
            rate(&run["subscriber"]["per_s"])
        );
    }
    let _ = writeln!(
        md,
        "\nHighest rate without loss: {}.\n",
        rate(&l["max_lossless_per_s"])
    );
}

fn work_queue(md: &mut String, w: &Value) {
    if !w.is_object() {
        return;
    }
    md.push_str(
        "## Work queue, 5 worker processes, replies\n\n| measurement | value |\n|---|---|\n",
    );
    let _ = writeln!(
        md,
        "| tasks | {} completed, {} |\n",
        count(&w["completed"]),
        rate(&w["per_s"])
    );
}

/// The work queue with 10,000 requests in flight from one requester.
fn pipelined(md: &mut String, runs: &Value) {
    let Some(runs) = runs.as_array() else {
        return;
    };
    md.push_str(
        "## Work queue, 5 worker processes, one requester with 10,000 in flight\n\n\
         | broker | mode | tasks | tasks answered per worker | broker RSS after |\n|---|---|---|---|---|\n",
    );
    for r in runs {
        let shares = r["shares"].as_array().map_or_else(String::new, |s| {
            s.iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        });
        let _ = writeln!(
            md,
            "| {} | {} | {} completed, {} | {shares} | {} |",
            r["broker"].as_str().unwrap_or("eventbus"),
            if r["pinned"].as_bool() == Some(true) {
                "pinned"
            } else {
                "unpinned"
            },
            count(&r["completed"]),
            rate(&r["per_s"]),
            kib(&r["broker_rss_kib_after"])
        );
    }
    md.push('\n');
}

fn memory(md: &mut String, m: &Value) {
    if !m.is_object() {
        return;
    }
    md.push_str("## Memory\n\n| measurement | value |\n|---|---|\n");
    let _ = writeln!(
        md,
        "| broker RSS, idle | {} |",
        kib(&m["broker_rss_kib_idle"])
    );
    let _ = writeln!(
        md,
        "| broker RSS, 10 clients | {} |\n",
        kib(&m["broker_rss_kib_10_clients"])
    );
}

fn queue(md: &mut String, q: &Value) {
    if !q.is_object() {
        return;
    }
    md.push_str("## Work queues\n\n| measurement | value |\n|---|---|\n");
    let task = &q["memory_per_queued_task"];
    let _ = writeln!(
        md,
        "| memory per queued 64-byte task | {} bytes (RSS growth over {} tasks) |",
        task["bytes_per_queued_task"]
            .as_f64()
            .map_or_else(|| "—".to_owned(), |b| format!("{b:.0}")),
        count(&task["tasks"])
    );
    for (key, label) in [
        ("failover_crash", "crash → redelivery to another member"),
        (
            "failover_frozen_50ms_x3",
            "freeze (SIGSTOP), heartbeat 50 ms × 3 → redelivery",
        ),
    ] {
        let f = &q[key];
        let _ = writeln!(
            md,
            "| {label} | p50 {}, max {} ({} runs) |",
            ms_text(&f["p50_ms"]),
            ms_text(&f["max_ms"]),
            count(&f["runs"])
        );
    }
    let _ = writeln!(
        md,
        "| broker restart: ready line → serving | {} |",
        ms_text(&q["reconnect_after_restart"]["serving_after_ready_ms"])
    );
    let cancel = &q["cancel_queued_task"];
    let _ = writeln!(
        md,
        "| cancel a queued task | p50 {}, p99 {} |\n",
        us_text(cancel["p50_us"].as_f64()),
        us_text(cancel["p99_us"].as_f64())
    );
}

/// Scatter-gather over 5 worker processes, next to its fan-out floor, the
/// slowest single round trip, 5 sequential requests and the shared inbox.
fn gather(md: &mut String, runs: &Value) {
    let Some(runs) = runs.as_array().filter(|r| !r.is_empty()) else {
        return;
    };
    md.push_str(
        "## Scatter-gather, 5 worker processes\n\n\
         The floor: a relay process that copies 64 bytes to 5 echo processes and \
         their 5 echoes back. The shared inbox is the NATS way: publish once, \
         collect replies until a timeout (the round ends only then).\n\n\
         | run | gather p50 / p99 | fan-out floor p50 | gather ÷ floor | slowest of 5 single round trips p50 | gather ÷ slowest | 5 sequential requests p50 | shared inbox: last reply p50 |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for run in runs {
        let p50 = |v: &Value| us_text(v["p50_us"].as_f64());
        let ratio = |v: &Value| {
            v.as_f64()
                .map_or_else(|| "—".to_owned(), |r| format!("{r:.2} ×"))
        };
        let _ = writeln!(
            md,
            "| {} | {} / {} | {} | {} | {} | {} | {} | {} (ends at {} ms) |",
            if run["pinned"].as_bool() == Some(true) {
                "pinned to CPU 0"
            } else {
                "unpinned"
            },
            p50(&run["gather"]),
            us_text(run["gather"]["p99_us"].as_f64()),
            p50(&run["floor"]["fanout"]),
            ratio(&run["gather_over_fanout_floor_p50"]),
            p50(&run["slowest_single"]),
            ratio(&run["gather_over_slowest_p50"]),
            p50(&run["sequential"]),
            p50(&run["inbox"]["last_reply"]),
            count(&run["inbox"]["wait_ms"]),
        );
    }
    md.push('\n');
}

/// Nanoseconds with a unit that keeps three significant figures.
fn ns_text(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.1} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

fn us_text(us: Option<f64>) -> String {
    us.map_or_else(|| "—".to_owned(), |us| format!("{us:.1} µs"))
}

fn rate(per_s: &Value) -> String {
    per_s
        .as_f64()
        .map_or_else(|| "—".to_owned(), |r| format!("{:.2} M msg/s", r / 1e6))
}

fn kib(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "—".to_owned(), |k| format!("{:.1} MiB", k / 1024.0))
}

fn count(v: &Value) -> String {
    v.as_u64().map_or_else(|| "—".to_owned(), |n| n.to_string())
}

/// Milliseconds, in µs below one millisecond.
fn ms_text(v: &Value) -> String {
    match v.as_f64() {
        Some(ms) if ms < 1.0 => format!("{:.0} µs", ms * 1000.0),
        Some(ms) => format!("{ms:.1} ms"),
        None => "—".to_owned(),
    }
}

#[cfg(test)]
mod tests;
