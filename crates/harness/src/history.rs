//! The history of a test run, task by task, and the checker that judges it.
//!
//! Whatever drives the system (a requester, a publisher, the workers
//! themselves) records, per task id and in the order they happen: published,
//! accepted (the broker confirmed the publish, or a request was sent and may
//! have been taken), delivered (to which consumer, started when), acked (a
//! reply or an ack came back), and errors. [`History::check`] turns the log
//! into a [`Verdict`]: which accepted tasks were lost, which were delivered or
//! acked again after their ack, which started out of publish order (for FIFO
//! queues), and anything that should not have happened at all.
//!
//! Task ids are the application's: any string that names one unit of work
//! across retries and redeliveries.
//!
//! ```
//! use eventbus_harness::{History, Order};
//! let history = History::new();
//! history.published("t-1");
//! history.accepted("t-1");
//! history.delivered("t-1", "worker-1", 1); // crashed mid-task
//! history.delivered("t-1", "worker-2", 2); // redelivered
//! history.acked("t-1");
//! let verdict = history.check(Order::Any);
//! assert!(verdict.is_clean(), "{verdict}");
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

/// One thing that happened to a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The driver is about to send it.
    Published,
    /// The broker took it: a confirmed publish succeeded, or a request was sent
    /// (recorded once its outcome is known, if that outcome does not rule it out).
    Accepted,
    /// A collector (or consumer) started on it.
    Delivered {
        /// Who took it.
        collector: String,
        /// When it started, in µs since the Unix epoch, or any key that
        /// increases in start order (used for the FIFO check).
        started_us: u64,
    },
    /// Its reply or ack came back.
    Acked,
    /// An attempt failed (a timeout, a refusal, an error reply).
    Error(String),
    /// Something that must not happen, e.g. a reply for another task.
    Unexpected(String),
}

/// Whether [`History::check`] also checks start order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Any order is fine (several consumers, or concurrent publishers).
    #[default]
    Any,
    /// Tasks must start in the order they were accepted: one FIFO queue with
    /// one consumer, or publishes that each wait for the previous task.
    Fifo,
}

/// A task that started after a task accepted later than it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inversion {
    /// The task that started late.
    pub task_id: String,
    /// The later-accepted task that started before it.
    pub overtaken_by: String,
}

/// What the checker found. Scenarios assert on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Distinct tasks published.
    pub published: usize,
    /// Distinct tasks acked at least once.
    pub completed: usize,
    /// Accepted tasks never acked.
    pub lost: Vec<String>,
    /// Tasks acked more than once, or delivered again after their ack.
    pub duplicated_after_ack: Vec<String>,
    /// Start-order inversions (only with [`Order::Fifo`]).
    pub out_of_order: Vec<Inversion>,
    /// Events that must not happen: `(task id, what)`.
    pub unexpected: Vec<(String, String)>,
    /// Failed attempts, for information: `(task id, error)`. A task retried to
    /// success has errors and is still complete.
    pub errors: Vec<(String, String)>,
}

impl Verdict {
    /// No loss, no duplicate, no inversion, nothing unexpected.
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated_after_ack.is_empty()
            && self.out_of_order.is_empty()
            && self.unexpected.is_empty()
    }
}

impl fmt::Display for Verdict {
    /// A summary with the first few of each finding, for assertion messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn few<T: fmt::Debug>(items: &[T]) -> String {
            let shown: Vec<_> = items.iter().take(5).collect();
            let more = items.len().saturating_sub(shown.len());
            if more > 0 {
                format!("{shown:?} and {more} more")
            } else {
                format!("{shown:?}")
            }
        }
        write!(
            f,
            "{} published, {} completed; lost {}: {}; duplicated after ack {}: {}; \
             out of order {}: {}; unexpected {}: {}; errors {}: {}",
            self.published,
            self.completed,
            self.lost.len(),
            few(&self.lost),
            self.duplicated_after_ack.len(),
            few(&self.duplicated_after_ack),
            self.out_of_order.len(),
            few(&self.out_of_order),
            self.unexpected.len(),
            few(&self.unexpected),
            self.errors.len(),
            few(&self.errors),
        )
    }
}

/// A shared, append-only log of task events. Cheap to clone: clones share the log.
#[derive(Debug, Clone, Default)]
pub struct History {
    log: Arc<Mutex<Vec<(String, Event)>>>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    fn log(&self) -> MutexGuard<'_, Vec<(String, Event)>> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one event.
    pub fn record(&self, task_id: &str, event: Event) {
        self.log().push((task_id.to_owned(), event));
    }

    /// Records [`Event::Published`].
    pub fn published(&self, task_id: &str) {
        self.record(task_id, Event::Published);
    }

    /// Records [`Event::Accepted`].
    pub fn accepted(&self, task_id: &str) {
        self.record(task_id, Event::Accepted);
    }

    /// Records [`Event::Delivered`].
    pub fn delivered(&self, task_id: &str, collector: &str, started_us: u64) {
        let collector = collector.to_owned();
        self.record(
            task_id,
            Event::Delivered {
                collector,
                started_us,
            },
        );
    }

    /// Records [`Event::Acked`].
    pub fn acked(&self, task_id: &str) {
        self.record(task_id, Event::Acked);
    }

    /// Records [`Event::Error`].
    pub fn error(&self, task_id: &str, error: impl fmt::Display) {
        self.record(task_id, Event::Error(error.to_string()));
    }

    /// Appends several events for one task at once (no other event comes
    /// between them).
    pub fn record_all(&self, task_id: &str, events: impl IntoIterator<Item = Event>) {
        let mut log = self.log();
        for event in events {
            log.push((task_id.to_owned(), event));
        }
    }

    /// Distinct tasks acked so far.
    pub fn completed(&self) -> usize {
        let log = self.log();
        let acked: std::collections::HashSet<&str> = log
            .iter()
            .filter(|(_, e)| *e == Event::Acked)
            .map(|(id, _)| id.as_str())
            .collect();
        acked.len()
    }

    /// A copy of the log.
    pub fn events(&self) -> Vec<(String, Event)> {
        self.log().clone()
    }

    /// Judges the log so far.
    pub fn check(&self, order: Order) -> Verdict {
        check(&self.log(), order)
    }
}

/// What the checker tracks per task.
#[derive(Debug, Default)]
struct Task {
    published: bool,
    /// Position among accepted tasks, from the first `Accepted`.
    accepted: Option<usize>,
    delivered: bool,
    acks: u32,
    delivered_after_ack: bool,
    /// The first start key.
    started: Option<u64>,
}

fn check(log: &[(String, Event)], order: Order) -> Verdict {
    let mut verdict = Verdict::default();
    let mut tasks: HashMap<&str, Task> = HashMap::new();
    let mut first_seen: Vec<&str> = Vec::new();
    let mut accepted = 0;
    for (id, event) in log {
        let task = tasks.entry(id.as_str()).or_insert_with(|| {
            first_seen.push(id.as_str());
            Task::default()
        });
        let mut unexpected = |why: &str| verdict.unexpected.push((id.clone(), why.to_owned()));
        match event {
            Event::Published => task.published = true,
            Event::Accepted => {
                if !task.published {
                    unexpected("accepted but never published");
                }
                if task.accepted.is_none() {
                    task.accepted = Some(accepted);
                    accepted += 1;
                }
            }
            Event::Delivered { started_us, .. } => {
                if !task.published {
                    unexpected("delivered but never published");
                }
                if task.acks > 0 {
                    task.delivered_after_ack = true;
                }
                task.delivered = true;
                task.started.get_or_insert(*started_us);
            }
            Event::Acked => {
                if !task.delivered {
                    unexpected("acked but never delivered");
                }
                task.acks += 1;
            }
            Event::Error(e) => verdict.errors.push((id.clone(), e.clone())),
            Event::Unexpected(why) => unexpected(why),
        }
    }
    for id in &first_seen {
        let task = &tasks[id];
        verdict.published += usize::from(task.published);
        verdict.completed += usize::from(task.acks > 0);
        if task.accepted.is_some() && task.acks == 0 {
            verdict.lost.push((*id).to_owned());
        }
        if task.acks > 1 || task.delivered_after_ack {
            verdict.duplicated_after_ack.push((*id).to_owned());
        }
    }
    if order == Order::Fifo {
        verdict.out_of_order = inversions(&first_seen, &tasks);
    }
    verdict
}

/// Walks tasks in start order; a task accepted before the latest-accepted task
/// already started has been overtaken.
fn inversions(ids: &[&str], tasks: &HashMap<&str, Task>) -> Vec<Inversion> {
    let mut started: Vec<(u64, usize, &str)> = ids
        .iter()
        .filter_map(|id| {
            let t = &tasks[id];
            Some((t.started?, t.accepted?, *id))
        })
        .collect();
    started.sort_unstable();
    let mut latest: Option<(usize, &str)> = None;
    let mut found = Vec::new();
    for (_, accepted, id) in started {
        match latest {
            Some((seq, by)) if seq > accepted => found.push(Inversion {
                task_id: id.to_owned(),
                overtaken_by: by.to_owned(),
            }),
            _ => latest = Some((accepted, id)),
        }
    }
    found
}

#[cfg(test)]
mod tests;
