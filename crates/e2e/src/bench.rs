//! What every benchmark role prints, shared by `busbench` (the bus and the
//! raw-socket floor) and `peerbench` (the peer brokers), so their figures
//! are read the same way: a JSON ready line, and percentiles in
//! microseconds (with every sample, for a caller that merges runs).

use std::time::Duration;

use hdrhistogram::Histogram;

/// Tells the parent process this role is ready, as one JSON line.
pub fn ready() {
    println!(
        "{}",
        serde_json::json!({"event": "ready", "pid": std::process::id()})
    );
}

/// A histogram of nanoseconds, from 1 ns to a minute, 3 significant figures.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

/// Percentiles of a histogram of nanoseconds, in microseconds.
pub fn summary(h: &Histogram<u64>) -> serde_json::Value {
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    serde_json::json!({
        "count": h.len(), "p50_us": us(0.5), "p90_us": us(0.9), "p99_us": us(0.99),
        "p999_us": us(0.999), "max_us": h.max() as f64 / 1000.0, "mean_us": h.mean() / 1000.0,
    })
}

/// The round trips one role measures.
pub struct Recorder {
    hist: Histogram<u64>,
    samples: Option<Vec<u64>>,
}

impl Recorder {
    /// Room for `count` round trips; with `samples`, every one is kept too.
    pub fn new(count: u64, samples: bool) -> Self {
        Self {
            hist: histogram(),
            samples: samples.then(|| Vec::with_capacity(count as usize)),
        }
    }

    /// Records one round trip.
    pub fn record(&mut self, elapsed: Duration) -> anyhow::Result<()> {
        let ns = elapsed.as_nanos() as u64;
        self.hist.record(ns)?;
        if let Some(samples) = &mut self.samples {
            samples.push(ns);
        }
        Ok(())
    }

    /// Prints the percentiles (and the samples, if kept) as one JSON line.
    pub fn report(&self) {
        let mut summary = summary(&self.hist);
        if let Some(samples) = &self.samples {
            summary["samples_ns"] = serde_json::json!(samples);
        }
        println!("{summary}");
    }
}
