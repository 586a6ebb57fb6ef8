//! Paced loads and the highest rate a path carries without (real) loss:
//! the pacing every paced publisher uses, and the search `suite` (broker
//! pub/sub) and `fleet` (the NATS bridge and its raw floor) run over it.
#![forbid(unsafe_code)]

use std::future::Future;
use std::time::Duration;

use serde_json::{Value, json};

/// Paces a publisher in millisecond steps: each tick allows `rate / 1000`
/// messages (at least one); ticks missed while the publisher was busy come
/// in a burst, so the average rate holds. Unpaced, every step allows all.
pub struct Pacer {
    ticks: Option<tokio::time::Interval>,
    per_tick: u64,
}

impl Pacer {
    /// `rate` messages a second, or as fast as possible with `None`.
    pub fn new(rate: Option<u64>) -> Self {
        let ticks = rate.map(|_| {
            let mut ticks = tokio::time::interval(Duration::from_millis(1));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            ticks
        });
        Self {
            ticks,
            per_tick: rate.map_or(u64::MAX, |r| (r / 1000).max(1)),
        }
    }

    /// Waits for the next step; returns how many messages it allows, at
    /// most `left`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a cancelled wait takes no tick.
    pub async fn step(&mut self, left: u64) -> u64 {
        if let Some(ticks) = &mut self.ticks {
            ticks.tick().await;
        }
        self.per_tick.min(left)
    }
}

/// What one paced run at a rate delivered.
pub struct Delivered {
    /// Messages published.
    pub sent: u64,
    /// Messages that arrived.
    pub received: u64,
    /// The run's own report, kept in the result.
    pub run: Value,
}

impl Delivered {
    /// The share that arrived, from 0 to 1.
    pub fn fraction(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        self.received as f64 / self.sent as f64
    }
}

/// What [`highest_rate`] found.
pub struct RateSearch {
    /// The highest rate that delivered enough; `None` when even the lowest
    /// fell short.
    pub best: Option<u64>,
    /// Every run tried, in order: `{"rate", "sent", "received", "ok", "run"}`.
    pub tries: Vec<Value>,
}

/// The highest of `rates` (ascending, messages a second) at which `run`
/// delivers at least `min_fraction` of what it publishes: tried in order up
/// to the first that falls short, then `refine` bisections between the
/// best rate and that one.
pub async fn highest_rate<F, Fut>(
    rates: &[u64],
    min_fraction: f64,
    refine: u32,
    mut run: F,
) -> anyhow::Result<RateSearch>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = anyhow::Result<Delivered>>,
{
    let mut best: Option<u64> = None;
    let mut short: Option<u64> = None;
    let mut tries = Vec::new();
    for &rate in rates {
        if attempt(&mut run, rate, min_fraction, &mut tries).await? {
            best = Some(rate);
        } else {
            short = Some(rate);
            break;
        }
    }
    if let Some(mut high) = short {
        let mut low = best.unwrap_or(0);
        for _ in 0..refine {
            let mid = low + (high - low) / 2;
            if mid == low || mid == 0 {
                break;
            }
            if attempt(&mut run, mid, min_fraction, &mut tries).await? {
                low = mid;
                best = Some(mid);
            } else {
                high = mid;
            }
        }
    }
    Ok(RateSearch { best, tries })
}

/// One run at `rate`, recorded in `tries`: whether it delivered enough.
async fn attempt<F, Fut>(
    run: &mut F,
    rate: u64,
    min_fraction: f64,
    tries: &mut Vec<Value>,
) -> anyhow::Result<bool>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = anyhow::Result<Delivered>>,
{
    let d = run(rate).await?;
    let ok = d.fraction() >= min_fraction;
    tries.push(json!({
        "rate": rate, "sent": d.sent, "received": d.received, "ok": ok, "run": d.run,
    }));
    Ok(ok)
}
