//! Counting what the demo's tasks did: outcomes, latencies and who answered,
//! for one reporting window or the whole run, and the lines that show them.
//!
//! Pure bookkeeping: no clocks, no I/O, so it is tested inline.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Highest latency the histograms hold, in microseconds; above it a value is
/// recorded as this (the demo's request timeout is far below it).
const MAX_LATENCY_US: u64 = 60_000_000;

/// Distinct error texts kept as examples for the final summary.
const MAX_ERROR_SAMPLES: usize = 3;

/// Share of non-timeout errors (error replies and request errors) at which the
/// demo fails: collectors doing light work over a local socket should not fail.
const MAX_ERROR_SHARE: f64 = 0.01;

/// Share of timeouts at which the demo fails: a few are tolerated on a loaded
/// machine, many mean something is stuck.
const MAX_TIMEOUT_SHARE: f64 = 0.05;

/// How a task that got no reply failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The request could not be sent or answered (no responders, connection
    /// closed, refused by the broker).
    Request,
    /// No reply within the request timeout (the client's or the broker's).
    Timeout,
}

/// Counters and a latency histogram over a set of finished tasks.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Round-trip time of every reply, ok or error, in microseconds.
    latency: Histogram<u64>,
    /// Replies per responding collector id.
    by_source: BTreeMap<String, u64>,
    /// Replies with `"status":"ok"`.
    ok: u64,
    /// Replies with any other status.
    error_replies: u64,
    /// Requests that failed without a reply, other than timeouts.
    request_errors: u64,
    /// Requests that timed out.
    timeouts: u64,
    /// The first few distinct error texts seen.
    error_samples: Vec<String>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("1..60 s with 3 significant digits are valid bounds"),
            by_source: BTreeMap::new(),
            ok: 0,
            error_replies: 0,
            request_errors: 0,
            timeouts: 0,
            error_samples: Vec::new(),
        }
    }
}

impl Tally {
    /// Counts a reply from `source` that took `latency`; `error` is the
    /// collector's explanation when its status was not `ok`.
    pub fn reply(&mut self, source: &str, latency: Duration, error: Option<String>) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(us.clamp(1, MAX_LATENCY_US));
        match self.by_source.get_mut(source) {
            Some(count) => *count += 1,
            None => {
                self.by_source.insert(source.to_owned(), 1);
            }
        }
        match error {
            None => self.ok += 1,
            Some(text) => {
                self.error_replies += 1;
                self.sample(format!("{source}: {text}"));
            }
        }
    }

    /// Counts a task that got no reply.
    pub fn failure(&mut self, failure: Failure, text: String) {
        match failure {
            Failure::Request => self.request_errors += 1,
            Failure::Timeout => self.timeouts += 1,
        }
        self.sample(text);
    }

    /// Keeps `text` as an example if it is new and there is room.
    fn sample(&mut self, text: String) {
        if self.error_samples.len() < MAX_ERROR_SAMPLES && !self.error_samples.contains(&text) {
            self.error_samples.push(text);
        }
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Tally) {
        self.latency
            .add(&other.latency)
            .expect("histograms with the same bounds add");
        for (source, count) in &other.by_source {
            *self.by_source.entry(source.clone()).or_default() += count;
        }
        self.ok += other.ok;
        self.error_replies += other.error_replies;
        self.request_errors += other.request_errors;
        self.timeouts += other.timeouts;
        for text in &other.error_samples {
            self.sample(text.clone());
        }
    }

    /// Tasks finished, whatever their outcome.
    pub fn finished(&self) -> u64 {
        self.replies() + self.request_errors + self.timeouts
    }

    /// Tasks that got a reply, ok or not.
    fn replies(&self) -> u64 {
        self.ok + self.error_replies
    }

    /// Tasks that failed, whichever way.
    fn errors(&self) -> u64 {
        self.error_replies + self.request_errors + self.timeouts
    }

    /// `errors 0`, or `errors 3 (2 reply, 1 timeout)` naming the non-zero kinds.
    fn errors_text(&self) -> String {
        let mut text = format!("errors {}", self.errors());
        let kinds = [
            (self.error_replies, "reply"),
            (self.request_errors, "request"),
            (self.timeouts, "timeout"),
        ];
        let parts: Vec<String> = kinds
            .iter()
            .filter(|(count, _)| *count > 0)
            .map(|(count, kind)| format!("{count} {kind}"))
            .collect();
        if !parts.is_empty() {
            let _ = write!(text, " ({})", parts.join(", "));
        }
        text
    }

    /// `p50 0.42ms  p99 1.90ms`, or dashes when nothing replied.
    fn percentiles(&self) -> String {
        if self.latency.is_empty() {
            return "p50    -    p99    -   ".to_owned();
        }
        format!(
            "p50 {:>7}  p99 {:>7}",
            ms(self.latency.value_at_quantile(0.50)),
            ms(self.latency.value_at_quantile(0.99)),
        )
    }

    /// One live line for a window of `window` seconds ending `at` seconds into
    /// the run; `total` counts every task finished so far, `in_flight` those
    /// still waiting for a reply.
    pub fn window_line(
        &self,
        at: Duration,
        window: Duration,
        total: u64,
        in_flight: usize,
    ) -> String {
        let rate = per_second(self.finished(), window);
        let shares = self
            .by_source
            .iter()
            .map(|(source, count)| format!("{source} {:.0}%", percent(*count, self.replies())))
            .collect::<Vec<_>>()
            .join("  ");
        format!(
            "[{:>4.0}s] {rate:>6.0} tasks/s  {}  {}  in flight {in_flight:>3}  total {total:>7}  | {shares}",
            at.as_secs_f64(),
            self.percentiles(),
            self.errors_text(),
        )
    }

    /// The final summary over a run of `elapsed`, several lines.
    pub fn summary(&self, elapsed: Duration) -> String {
        let mut text = format!(
            "tasks:      {} finished in {:.1} s ({:.0}/s), {} ok, {}\n",
            self.finished(),
            elapsed.as_secs_f64(),
            per_second(self.finished(), elapsed),
            self.ok,
            self.errors_text(),
        );
        if !self.latency.is_empty() {
            let _ = writeln!(
                text,
                "latency:    p50 {}  p99 {}  max {}",
                ms(self.latency.value_at_quantile(0.50)),
                ms(self.latency.value_at_quantile(0.99)),
                ms(self.latency.max()),
            );
        }
        for (source, count) in &self.by_source {
            let _ = writeln!(
                text,
                "collector:  {source:<12} {count:>7} replies ({:.1}%)",
                percent(*count, self.replies())
            );
        }
        for sample in &self.error_samples {
            let _ = writeln!(text, "error seen: {sample}");
        }
        text
    }

    /// Whether the run counts as a success: some tasks completed, and errors
    /// stayed below [`MAX_ERROR_SHARE`] and timeouts below [`MAX_TIMEOUT_SHARE`].
    pub fn verdict(&self) -> Result<(), String> {
        if self.ok == 0 {
            return Err("no task completed".to_owned());
        }
        let finished = self.finished() as f64;
        let errors = self.error_replies + self.request_errors;
        if errors as f64 / finished >= MAX_ERROR_SHARE {
            return Err(format!(
                "{} of {} tasks failed (limit {:.0}%)",
                errors,
                self.finished(),
                MAX_ERROR_SHARE * 100.0
            ));
        }
        if self.timeouts as f64 / finished >= MAX_TIMEOUT_SHARE {
            return Err(format!(
                "{} of {} tasks timed out (limit {:.0}%)",
                self.timeouts,
                self.finished(),
                MAX_TIMEOUT_SHARE * 100.0
            ));
        }
        Ok(())
    }
}

/// Microseconds as milliseconds with two decimals: `1.25ms`.
fn ms(us: u64) -> String {
    format!("{:.2}ms", us as f64 / 1000.0)
}

/// `count` per second over `over`; 0 over no time.
fn per_second(count: u64, over: Duration) -> f64 {
    if over.is_zero() {
        0.0
    } else {
        count as f64 / over.as_secs_f64()
    }
}

/// `part` as a percentage of `whole`; 0 of nothing.
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts `n` ok replies from `source`, each taking `latency_ms`.
    fn replies(tally: &mut Tally, source: &str, n: u64, latency_ms: u64) {
        for _ in 0..n {
            tally.reply(source, Duration::from_millis(latency_ms), None);
        }
    }

    #[test]
    fn merge_adds_counts_sources_and_latencies() {
        let mut a = Tally::default();
        replies(&mut a, "procmond-1", 3, 1);
        a.failure(Failure::Timeout, "no reply within 5s".to_owned());
        let mut b = Tally::default();
        replies(&mut b, "procmond-1", 1, 9);
        replies(&mut b, "fsmond-1", 2, 2);
        b.reply(
            "fsmond-1",
            Duration::from_millis(2),
            Some("boom".to_owned()),
        );
        a.merge(&b);
        assert_eq!(a.finished(), 8);
        assert_eq!(a.ok, 6);
        assert_eq!(a.error_replies, 1);
        assert_eq!(a.timeouts, 1);
        assert_eq!(a.by_source["procmond-1"], 4);
        assert_eq!(a.by_source["fsmond-1"], 3);
        assert_eq!(a.latency.len(), 7);
        assert!(a.latency.max() >= 9_000);
        assert_eq!(
            a.error_samples,
            ["no reply within 5s".to_owned(), "fsmond-1: boom".to_owned()]
        );
    }

    #[test]
    fn error_samples_are_distinct_and_bounded() {
        let mut tally = Tally::default();
        for i in 0..10 {
            tally.failure(Failure::Request, format!("e{}", i % 5));
            tally.failure(Failure::Request, "e0".to_owned());
        }
        assert_eq!(tally.error_samples, ["e0", "e1", "e2"]);
        assert_eq!(tally.request_errors, 20);
    }

    #[test]
    fn the_window_line_shows_rate_percentiles_shares_and_errors() {
        let mut tally = Tally::default();
        replies(&mut tally, "procmond-1", 150, 1);
        replies(&mut tally, "netmond-1", 50, 3);
        let line = tally.window_line(Duration::from_secs(3), Duration::from_secs(1), 600, 8);
        assert!(line.starts_with("[   3s]    200 tasks/s"), "{line}");
        assert!(line.contains("p50  1.00ms"), "{line}");
        assert!(line.contains("p99  3.00ms"), "{line}");
        assert!(line.contains("errors 0 "), "{line}");
        assert!(line.contains("total     600"), "{line}");
        assert!(line.ends_with("| netmond-1 25%  procmond-1 75%"), "{line}");

        tally.failure(Failure::Timeout, "t".to_owned());
        tally.reply("netmond-1", Duration::from_millis(1), Some("x".to_owned()));
        let line = tally.window_line(Duration::from_secs(4), Duration::from_secs(1), 602, 0);
        assert!(line.contains("errors 2 (1 reply, 1 timeout)"), "{line}");
    }

    #[test]
    fn an_empty_window_has_no_percentiles() {
        let line = Tally::default().window_line(Duration::ZERO, Duration::from_secs(1), 0, 0);
        assert!(line.contains("p50    -"), "{line}");
    }

    #[test]
    fn the_verdict_needs_completions_and_few_errors() {
        assert!(Tally::default().verdict().is_err());

        // 1 error and 4 timeouts in 200: below both limits.
        let mut tally = Tally::default();
        replies(&mut tally, "procmond-1", 195, 1);
        tally.failure(Failure::Request, "r".to_owned());
        for _ in 0..4 {
            tally.failure(Failure::Timeout, "t".to_owned());
        }
        assert_eq!(tally.verdict(), Ok(()));

        // 3 errors in 202: over 1%.
        for _ in 0..2 {
            tally.reply("procmond-1", Duration::from_millis(1), Some("x".to_owned()));
        }
        let verdict = tally.verdict().unwrap_err();
        assert!(verdict.contains("3 of 202 tasks failed"), "{verdict}");

        // 10 timeouts in 200: 5% is too many.
        let mut tally = Tally::default();
        replies(&mut tally, "procmond-1", 190, 1);
        for _ in 0..10 {
            tally.failure(Failure::Timeout, "t".to_owned());
        }
        let verdict = tally.verdict().unwrap_err();
        assert!(verdict.contains("10 of 200 tasks timed out"), "{verdict}");
    }
}
