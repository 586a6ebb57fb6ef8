//! `ebctl tasks`: many requests, a fixed number outstanding, and a summary.
//!
//! `--concurrency` worker futures share one [`Client`] (a cheap clone) and pull
//! request numbers from one counter until `--count` are taken, so exactly that
//! many requests are kept in flight. Each worker keeps its own tally, merged at
//! the end: no lock on the hot path.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eventbus::client::RequestError;
use eventbus::{Body, Client, Topic};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::cli::TasksArgs;
use crate::failure::Failure;
use crate::output;

/// Highest latency the histogram tracks exactly, in microseconds (an hour);
/// longer ones are recorded as this.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// What one worker saw.
#[derive(Debug)]
struct Tally {
    completed: u64,
    failed: u64,
    timed_out: u64,
    by_source: BTreeMap<String, u64>,
    latency_us: Histogram<u64>,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Self {
        Self {
            completed: 0,
            failed: 0,
            timed_out: 0,
            by_source: BTreeMap::new(),
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("static histogram bounds are valid"),
            first_error: None,
        }
    }

    fn merge(&mut self, other: Tally) {
        self.completed += other.completed;
        self.failed += other.failed;
        self.timed_out += other.timed_out;
        for (source, n) in other.by_source {
            *self.by_source.entry(source).or_default() += n;
        }
        self.latency_us
            .add(&other.latency_us)
            .expect("histograms with the same bounds merge");
        self.first_error = self.first_error.take().or(other.first_error);
    }
}

/// The summary `ebctl tasks` prints.
#[derive(Debug, Serialize)]
struct Summary {
    /// Requests answered.
    completed: u64,
    /// Requests that failed other than by timing out (no responders, ...).
    failed: u64,
    /// Requests with no reply within `--timeout-ms`.
    timed_out: u64,
    /// Replies per responding client id.
    by_source: BTreeMap<String, u64>,
    /// Latency of the answered requests.
    latency_us: Latency,
    /// Answered requests per second of wall-clock time.
    throughput_per_s: f64,
}

/// Latency percentiles in microseconds (0 when nothing was answered).
#[derive(Debug, Serialize)]
struct Latency {
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

/// Sends `args.count` requests on `topic`, `args.concurrency` at a time, and
/// prints the summary. Fails (exit 1) unless every request was answered.
pub async fn run(
    client: &Client,
    topic: &Topic,
    body: Body,
    args: &TasksArgs,
) -> Result<(), Failure> {
    let next = Arc::new(AtomicU64::new(0));
    let timeout = Duration::from_millis(args.timeout_ms);
    let start = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..args.concurrency {
        workers.spawn(worker(
            client.clone(),
            topic.clone(),
            body.clone(),
            timeout,
            next.clone(),
            args.count,
        ));
    }
    let mut total = Tally::new();
    while let Some(tally) = workers.join_next().await {
        total.merge(tally.map_err(|e| Failure::operational(format!("a worker failed: {e}")))?);
    }
    let summary = summarize(&total, start.elapsed());
    output::line(&if args.json {
        serde_json::to_string(&summary)?
    } else {
        render(&summary)
    })?;
    if total.completed == args.count {
        return Ok(());
    }
    let mut message = format!(
        "{} of {} tasks did not complete ({} failed, {} timed out)",
        args.count - total.completed,
        args.count,
        total.failed,
        total.timed_out,
    );
    if let Some(first) = &total.first_error {
        message.push_str(&format!("; first error: {first}"));
    }
    Err(Failure::operational(message))
}

/// Takes request numbers until `count` are taken, sending one at a time.
async fn worker(
    client: Client,
    topic: Topic,
    body: Body,
    timeout: Duration,
    next: Arc<AtomicU64>,
    count: u64,
) -> Tally {
    let mut tally = Tally::new();
    while next.fetch_add(1, Ordering::Relaxed) < count {
        let sent = Instant::now();
        match client.request(&topic, body.clone(), timeout).await {
            Ok(reply) => {
                tally.completed += 1;
                *tally
                    .by_source
                    .entry(reply.source().to_owned())
                    .or_default() += 1;
                let us = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                tally
                    .latency_us
                    .saturating_record(us.clamp(1, MAX_LATENCY_US));
            }
            Err(e) => {
                if matches!(e, RequestError::Timeout(_)) {
                    tally.timed_out += 1;
                } else {
                    tally.failed += 1;
                }
                tally.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    tally
}

fn summarize(total: &Tally, elapsed: Duration) -> Summary {
    let h = &total.latency_us;
    let at = |q: f64| {
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(q)
        }
    };
    let seconds = elapsed.as_secs_f64();
    Summary {
        completed: total.completed,
        failed: total.failed,
        timed_out: total.timed_out,
        by_source: total.by_source.clone(),
        latency_us: Latency {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: if h.is_empty() { 0 } else { h.max() },
        },
        throughput_per_s: if seconds > 0.0 {
            total.completed as f64 / seconds
        } else {
            0.0
        },
    }
}

fn render(s: &Summary) -> String {
    let l = &s.latency_us;
    let mut text = format!(
        "completed {}  failed {}  timed_out {}  throughput {:.1}/s\n\
         latency_us p50 {}  p90 {}  p99 {}  p999 {}  max {}\n\
         by_source:",
        s.completed, s.failed, s.timed_out, s.throughput_per_s, l.p50, l.p90, l.p99, l.p999, l.max,
    );
    if s.by_source.is_empty() {
        text.push_str(" (none)");
    }
    for (source, n) in &s.by_source {
        text.push_str(&format!("\n  {source} {n}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_merge_and_summarize() {
        let mut a = Tally::new();
        a.completed = 2;
        a.by_source.insert("r1".into(), 2);
        a.latency_us.record(100).unwrap();
        a.latency_us.record(300).unwrap();
        let mut b = Tally::new();
        b.completed = 1;
        b.timed_out = 1;
        b.by_source.insert("r1".into(), 1);
        b.latency_us.record(200).unwrap();
        b.first_error = Some("no reply".into());
        a.merge(b);
        let s = summarize(&a, Duration::from_secs(1));
        assert_eq!((s.completed, s.timed_out, s.failed), (3, 1, 0));
        assert_eq!(s.by_source["r1"], 3);
        assert_eq!(s.latency_us.p50, 200);
        assert_eq!(s.latency_us.max, 300);
        assert!((s.throughput_per_s - 3.0).abs() < 1e-9);
        assert_eq!(a.first_error.as_deref(), Some("no reply"));
    }

    #[test]
    fn an_empty_run_has_zero_latency() {
        let s = summarize(&Tally::new(), Duration::ZERO);
        assert_eq!(
            (s.latency_us.p50, s.latency_us.max, s.throughput_per_s),
            (0, 0, 0.0)
        );
        assert!(render(&s).contains("by_source: (none)"));
    }
}
