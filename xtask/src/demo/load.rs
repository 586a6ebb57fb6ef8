//! The load: a stream of collector tasks sent as requests at a target rate,
//! with a bound on how many wait for a reply at once.
//!
//! Each finished task is counted in a shared [`Tally`] window that the
//! reporter swaps out every second; the lock is held only to count, never
//! across an `.await`.

use std::path::Path;

use anyhow::Context as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use eventbus::client::{PublishError, RequestError};
use eventbus::proto::ErrorCode;
use eventbus::{Client, Message, Topic};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::tally::{Failure, Tally};

/// How far the sender may fall behind its schedule before it gives up catching
/// up: when the outstanding limit holds it back, it resumes at the target rate
/// instead of bursting.
const MAX_LAG: Duration = Duration::from_millis(100);

/// Which kind of task each slot of a 20-task cycle is: 14 process (70%),
/// 3 network (15%), 3 filesystem (15%), interleaved.
const CYCLE: [Kind; 20] = {
    use Kind::{Filesystem as F, Network as N, Process as P};
    [P, P, N, P, P, F, P, P, N, P, P, F, P, P, N, P, F, P, P, P]
};

/// A kind of collector task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A process collector task: all processes, or one pid.
    Process,
    /// A network collector task: the socket tables.
    Network,
    /// A filesystem collector task: a bounded directory walk.
    Filesystem,
}

/// What to send: the task topics and what the tasks are about.
#[derive(Debug, Clone)]
pub struct Mix {
    /// Topic of process tasks.
    process: Topic,
    /// Topic of network tasks.
    network: Topic,
    /// Topic of filesystem tasks.
    filesystem: Topic,
    /// Pids to sample with one-process tasks: the collectors' own.
    pids: Vec<u32>,
    /// Directory the filesystem tasks walk.
    walk: String,
    /// Whether process and network tasks can work here (they read `/proc`);
    /// elsewhere every task is a filesystem task.
    proc_fs: bool,
}

impl Mix {
    /// A mix sampling `pids` in one-process tasks and walking `walk`.
    pub fn new(pids: Vec<u32>, walk: &Path) -> anyhow::Result<Self> {
        let walk = walk
            .to_str()
            .with_context(|| format!("{} is not UTF-8", walk.display()))?
            .to_owned();
        Ok(Self {
            process: Topic::new("control.collector.task.process")?,
            network: Topic::new("control.collector.task.network")?,
            filesystem: Topic::new("control.collector.task.filesystem")?,
            pids,
            walk,
            proc_fs: cfg!(target_os = "linux"),
        })
    }

    /// Task number `n`: its topic and JSON payload.
    ///
    /// Process tasks alternate between the all-processes summary and one of
    /// the collectors' pids; filesystem tasks walk at most 3 levels.
    fn task(&self, n: u64) -> (&Topic, Value) {
        let task_id = format!("demo-{n}");
        let kind = if self.proc_fs {
            CYCLE[(n % CYCLE.len() as u64) as usize]
        } else {
            Kind::Filesystem
        };
        match kind {
            Kind::Process if n.is_multiple_of(2) || self.pids.is_empty() => {
                (&self.process, json!({ "task_id": task_id }))
            }
            Kind::Process => {
                let pid = self.pids[(n / 2 % self.pids.len() as u64) as usize];
                (&self.process, json!({ "task_id": task_id, "pid": pid }))
            }
            Kind::Network => (&self.network, json!({ "task_id": task_id })),
            Kind::Filesystem => (
                &self.filesystem,
                json!({
                    "task_id": task_id,
                    "path": self.walk,
                    "max_depth": 3,
                    "max_entries": 5000,
                }),
            ),
        }
    }
}

/// How hard to push.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Tasks started per second.
    pub rate: f64,
    /// Most tasks waiting for a reply at once.
    pub concurrency: usize,
    /// How long one task may wait for its reply.
    pub timeout: Duration,
}

/// A running load: counts finished tasks into a shared window.
#[derive(Debug)]
pub struct Load {
    /// Tasks finished since the reporter last took the window.
    window: Arc<Mutex<Tally>>,
    /// One permit per task allowed in flight.
    permits: Arc<Semaphore>,
    /// The number of permits.
    concurrency: usize,
    /// The sender and every task in flight.
    tracker: TaskTracker,
    /// Tells the sender to stop.
    stop: CancellationToken,
}

impl Load {
    /// Starts sending tasks from `mix` through `client` at `pace`, until
    /// [`stop`](Self::stop).
    pub fn start(client: Client, mix: Mix, pace: Pace) -> Self {
        let load = Self {
            window: Arc::new(Mutex::new(Tally::default())),
            permits: Arc::new(Semaphore::new(pace.concurrency)),
            concurrency: pace.concurrency,
            tracker: TaskTracker::new(),
            stop: CancellationToken::new(),
        };
        let sender = send(
            client,
            mix,
            pace,
            load.window.clone(),
            load.permits.clone(),
            load.tracker.clone(),
            load.stop.clone(),
        );
        load.tracker.spawn(sender);
        load
    }

    /// Takes the counts of tasks finished since the last call.
    pub fn take_window(&self) -> Tally {
        std::mem::take(&mut *lock(&self.window))
    }

    /// Tasks waiting for a reply now.
    pub fn in_flight(&self) -> usize {
        self.concurrency - self.permits.available_permits()
    }

    /// Stops sending new tasks; tasks in flight go on to their reply or timeout.
    pub fn stop(&self) {
        self.stop.cancel();
        self.tracker.close();
    }

    /// Completes when, after [`stop`](Self::stop), every task has finished.
    pub async fn drained(&self) {
        self.tracker.wait().await;
    }
}

/// Locks the window, whether or not a task panicked while holding it.
fn lock(tally: &Mutex<Tally>) -> MutexGuard<'_, Tally> {
    tally
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The sender: starts one task per tick of the schedule once a permit is
/// free, until `stop`.
async fn send(
    client: Client,
    mix: Mix,
    pace: Pace,
    window: Arc<Mutex<Tally>>,
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
    stop: CancellationToken,
) {
    let period = Duration::from_secs_f64(1.0 / pace.rate);
    let mut next = Instant::now();
    for n in 0.. {
        if next > Instant::now() {
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                () = stop.cancelled() => return,
            }
        }
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = stop.cancelled() => return,
        };
        let now = Instant::now();
        next = if now.duration_since(next) > MAX_LAG {
            now + period
        } else {
            next + period
        };
        let (topic, payload) = mix.task(n);
        let topic = topic.clone();
        let payload = payload.to_string();
        let client = client.clone();
        let window = window.clone();
        tracker.spawn(async move {
            let started = Instant::now();
            let result = client.request(&topic, payload, pace.timeout).await;
            let latency = started.elapsed();
            let mut tally = lock(&window);
            match result {
                Ok(reply) => tally.reply(reply.source(), latency, reply_error(&reply)),
                Err(error) => tally.failure(classify(&error), error.to_string()),
            }
            drop(permit);
        });
    }
}

/// The collector's explanation when a reply's `status` is not `ok`.
fn reply_error(reply: &Message) -> Option<String> {
    let body: Value = match serde_json::from_slice(reply.payload()) {
        Ok(body) => body,
        Err(e) => return Some(format!("reply is not JSON: {e}")),
    };
    if body["status"] == "ok" {
        return None;
    }
    Some(match &body["error"] {
        Value::String(text) => text.clone(),
        _ => format!("status {}", body["status"]),
    })
}

/// Timeouts, whether the client's or the broker's, apart from other failures.
fn classify(error: &RequestError) -> Failure {
    match error {
        RequestError::Timeout(_) => Failure::Timeout,
        RequestError::Publish(PublishError::Refused(refused))
            if refused.code == ErrorCode::Timeout =>
        {
            Failure::Timeout
        }
        _ => Failure::Request,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cycle_is_70_15_15() {
        let count = |kind| CYCLE.iter().filter(|k| **k == kind).count();
        assert_eq!(count(Kind::Process), 14);
        assert_eq!(count(Kind::Network), 3);
        assert_eq!(count(Kind::Filesystem), 3);
    }

    #[test]
    fn tasks_have_ids_and_the_right_topic_and_fields() {
        let mut mix = Mix::new(vec![11, 22], Path::new("/w/crates")).unwrap();
        mix.proc_fs = true;
        let mut topics = std::collections::BTreeMap::<&str, usize>::new();
        let mut pids = std::collections::BTreeSet::new();
        for n in 0..200 {
            let (topic, payload) = mix.task(n);
            assert_eq!(payload["task_id"], format!("demo-{n}"));
            *topics.entry(topic.as_str()).or_default() += 1;
            match topic.as_str().rsplit('.').next().unwrap() {
                "process" => {
                    if let Some(pid) = payload["pid"].as_u64() {
                        pids.insert(pid);
                    }
                }
                "filesystem" => {
                    assert_eq!(payload["path"], "/w/crates");
                    assert_eq!(payload["max_depth"], 3);
                }
                "network" => assert_eq!(payload.as_object().unwrap().len(), 1),
                other => panic!("unexpected topic {other}"),
            }
        }
        assert_eq!(topics["control.collector.task.process"], 140);
        assert_eq!(topics["control.collector.task.network"], 30);
        assert_eq!(topics["control.collector.task.filesystem"], 30);
        assert_eq!(pids, [11, 22].into());
    }

    #[test]
    fn without_proc_every_task_walks_the_filesystem() {
        let mut mix = Mix::new(vec![1], Path::new("/w")).unwrap();
        mix.proc_fs = false;
        assert!((0..40).all(|n| mix.task(n).0.as_str().ends_with(".filesystem")));
    }
}
