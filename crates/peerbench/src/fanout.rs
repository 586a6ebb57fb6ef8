//! Counting a fan-out across many idle clients, the same way for every
//! peer (and as busbench's `idle` counts it for the bus).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Subscriptions with a wildcard each idle client holds (never matched).
pub const WILDCARD_SUBS: usize = 10;
/// The fan-out's end: this long without a delivery once it has started.
const SILENCE: Duration = Duration::from_secs(2);

/// Deliveries counted across every client of the role.
#[derive(Debug)]
pub struct Tally {
    total: u64,
    received: AtomicU64,
    first: OnceLock<Instant>,
    last: Mutex<Instant>,
    done: Notify,
}

impl Tally {
    /// Expecting `total` deliveries in all.
    pub fn new(total: u64) -> Arc<Self> {
        Arc::new(Self {
            total,
            received: AtomicU64::new(0),
            first: OnceLock::new(),
            last: Mutex::new(Instant::now()),
            done: Notify::new(),
        })
    }

    /// Counts one delivery.
    pub fn count(&self) {
        self.first.get_or_init(Instant::now);
        let n = self.received.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(1024) || n == self.total {
            *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        }
        if n == self.total {
            self.done.notify_one();
        }
    }

    /// Waits for every delivery, or for two seconds without one once they
    /// started; prints the result as busbench's `idle` does.
    pub async fn report(&self, clients: usize) {
        loop {
            tokio::select! {
                () = self.done.notified() => break,
                () = tokio::time::sleep(SILENCE) => {
                    let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
                    if self.first.get().is_some() && last.elapsed() >= SILENCE {
                        break;
                    }
                }
            }
        }
        let got = self.received.load(Ordering::Relaxed);
        let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
        let secs = self
            .first
            .get()
            .map_or(0.0, |f| last.duration_since(*f).as_secs_f64());
        println!(
            "{}",
            serde_json::json!({
                "clients": clients, "expected": self.total, "received": got, "seconds": secs,
                "per_s": if secs > 0.0 { got as f64 / secs } else { 0.0 },
            })
        );
    }
}
