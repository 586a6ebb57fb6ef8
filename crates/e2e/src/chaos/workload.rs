//! Workloads: a weighted mix of operations at a target rate, for a duration,
//! from several concurrent clients, every operation recorded.
//!
//! The load is open-loop: each client starts an operation on every tick of its
//! own clock whatever happened to the previous ones, as real agents do, so an
//! outage shows up as failures and not as a politely slower load. Operations in
//! flight per client are bounded ([`Workload::max_in_flight`]); a tick that
//! finds the bound reached records an [`Outcome::Overloaded`] failure.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eventbus::client::RequestError;
use eventbus::{ClientId, Topic, TopicFilter};
use futures_core::Stream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use crate::driver::Driver;
use crate::tasks::{CollectorKind, TaskReply};
use eventbus_harness::rng::Rng;

/// One kind of operation of a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A task request to a capability's queue group (`submit`, then the reply).
    Task(CollectorKind),
    /// A task request to one named collector (`request_direct`).
    Direct {
        /// Its type, which decides the payload.
        kind: CollectorKind,
        /// Its client id.
        target: String,
    },
    /// A fire-and-forget event on `chaos.events.<client>`, counted by a
    /// subscriber (at most once: reported, not judged).
    Event,
}

impl Op {
    /// A short label for tables: `task:process`, `direct:procmond-1`, `event`.
    pub fn label(&self) -> String {
        match self {
            Self::Task(kind) => format!("task:{kind}"),
            Self::Direct { target, .. } => format!("direct:{target}"),
            Self::Event => "event".to_owned(),
        }
    }
}

/// A load to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Operations and their weights.
    pub mix: Vec<(Op, u32)>,
    /// Operations started per second, over all clients.
    pub rate_per_s: f64,
    /// How long operations are started for.
    pub duration: Duration,
    /// Concurrent client connections sharing the rate.
    pub clients: usize,
    /// How long a request waits for its reply: the availability deadline.
    pub timeout: Duration,
    /// Operations in flight per client, at most.
    pub max_in_flight: usize,
    /// Working memory (`scratch_bytes`) every task of one kind asks its
    /// collector for; `None` for none.
    pub scratch: Option<(CollectorKind, u64)>,
}

/// How one operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done: an `ok` reply, or an event the broker took.
    Ok,
    /// A typed error or an error reply.
    Failed(String),
    /// Not started: the client already had [`Workload::max_in_flight`] running.
    Overloaded,
}

/// One operation, as it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpRecord {
    /// [`Op::label`].
    pub op: String,
    /// The task id, for task and direct operations.
    pub task_id: Option<String>,
    /// When it started, since the start of the run.
    pub started: Duration,
    /// How long it took.
    pub latency: Duration,
    /// Whether the broker accepted it: a `submit` it confirmed, or any request
    /// that did not fail with a refusal (it may have been taken).
    pub accepted: bool,
    /// Whether the broker confirmed it: a `submit` that returned its message
    /// id (the only acceptance a durable queue promises to keep).
    pub confirmed: bool,
    /// When it ended, in µs since the Unix epoch (to compare with the collectors' logs).
    pub finished_unix_us: u64,
    /// The reply's collector, if any.
    pub replied_by: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
}

impl OpRecord {
    /// Whether it ended well.
    pub fn is_ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }
}

/// Everything a workload did.
#[derive(Debug, Clone, Default)]
pub struct WorkloadRun {
    /// Every operation, in completion order.
    pub records: Vec<OpRecord>,
    /// Events the broker took.
    pub events_sent: u64,
    /// Events the subscriber received.
    pub events_received: u64,
}

/// Microseconds since the Unix epoch, now.
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl Workload {
    /// Runs the load against the broker at `socket`, from `start` (the run's
    /// time zero, shared with the nemesis) for [`duration`](Self::duration),
    /// then waits for every operation in flight. Each client draws its
    /// operations from its own fork of `seed`.
    pub async fn run(&self, socket: &Path, seed: u64, start: Instant) -> WorkloadRun {
        let events = EventCounter::start(socket).await;
        let per_client = self.rate_per_s / self.clients.max(1) as f64;
        let period = Duration::from_secs_f64(1.0 / per_client.max(0.001));
        let mut clients = JoinSet::new();
        for n in 0..self.clients.max(1) {
            let driver = Driver::connect(socket)
                .await
                .unwrap_or_else(|e| panic!("workload client {n} cannot connect: {e}"));
            let load = self.clone();
            let rng = Rng::new(seed).fork(n as u64);
            clients.spawn(async move { load.client(n, driver, rng, period, start).await });
        }
        let mut run = WorkloadRun::default();
        while let Some(done) = clients.join_next().await {
            let records = done.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            run.events_sent += records
                .iter()
                .filter(|r| r.op == "event" && r.is_ok())
                .count() as u64;
            run.records.extend(records);
        }
        run.events_received = events.settle(run.events_sent).await;
        run
    }

    /// One client's share: an operation per tick, until the duration is over.
    async fn client(
        self,
        n: usize,
        driver: Driver,
        mut rng: Rng,
        period: Duration,
        start: Instant,
    ) -> Vec<OpRecord> {
        let load = Arc::new(self);
        let slots = Arc::new(Semaphore::new(load.max_in_flight.max(1)));
        let mut ticker = tokio::time::interval_at(start, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let mut running = JoinSet::new();
        let mut records = Vec::new();
        let mut seq = 0u64;
        let events = Topic::new(format!("chaos.events.c{n}")).expect("a valid topic");
        loop {
            let tick = ticker.tick().await;
            if tick >= start + load.duration {
                break;
            }
            let op = load.draw(&mut rng);
            seq += 1;
            let task_id = format!("c{n}-{seq}");
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                records.push(OpRecord {
                    op: op.label(),
                    task_id: None,
                    started: tick - start,
                    latency: Duration::ZERO,
                    accepted: false,
                    confirmed: false,
                    finished_unix_us: unix_us(),
                    replied_by: None,
                    outcome: Outcome::Overloaded,
                });
                continue;
            };
            let (load, driver, events) = (load.clone(), driver.clone(), events.clone());
            running.spawn(async move {
                let _permit = permit;
                load.perform(&driver, op, task_id, &events, start).await
            });
            while let Some(done) = running.try_join_next() {
                records.push(done.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())));
            }
        }
        while let Some(done) = running.join_next().await {
            records.push(done.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())));
        }
        records
    }

    fn draw(&self, rng: &mut Rng) -> Op {
        let total: u64 = self.mix.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut ticket = rng.below(total);
        for (op, weight) in &self.mix {
            if ticket < u64::from(*weight) {
                return op.clone();
            }
            ticket -= u64::from(*weight);
        }
        self.mix.first().map_or(Op::Event, |(op, _)| op.clone())
    }

    fn payload(&self, kind: CollectorKind, task_id: &str) -> String {
        match self.scratch {
            Some((k, bytes)) if k == kind => kind.payload_with_scratch(task_id, bytes),
            _ => kind.payload(task_id),
        }
    }

    /// Performs one operation and records how it went.
    async fn perform(
        &self,
        driver: &Driver,
        op: Op,
        task_id: String,
        events: &Topic,
        start: Instant,
    ) -> OpRecord {
        let began = Instant::now();
        let client = driver.client();
        let mut accepted = false;
        let mut confirmed = false;
        let result: Result<Option<TaskReply>, String> = match &op {
            Op::Event => client
                .publish(events, task_id.clone())
                .map(|()| None)
                .map_err(|e| e.to_string()),
            Op::Task(kind) => {
                let topic = kind.task_topic();
                match client
                    .submit(&topic, self.payload(*kind, &task_id), self.timeout)
                    .await
                {
                    Ok(pending) => {
                        accepted = true;
                        confirmed = true;
                        reply_of(pending.reply().await)
                    }
                    Err(e) => {
                        accepted = in_doubt(&e);
                        Err(e.to_string())
                    }
                }
            }
            Op::Direct { kind, target } => {
                let target = ClientId::new(target.as_str()).expect("collector ids are client ids");
                let outcome = client
                    .request_direct(
                        &target,
                        &kind.task_topic(),
                        self.payload(*kind, &task_id),
                        self.timeout,
                    )
                    .await;
                accepted = outcome.as_ref().map_or_else(in_doubt, |_| true);
                reply_of(outcome)
            }
        };
        let (outcome, replied_by) = match result {
            Ok(None) => (Outcome::Ok, None),
            Ok(Some(reply)) if reply.is_ok() => (Outcome::Ok, Some(reply.collector_id)),
            Ok(Some(reply)) => (
                Outcome::Failed(format!("error reply: {}", reply.error.unwrap_or_default())),
                Some(reply.collector_id),
            ),
            Err(e) => (Outcome::Failed(e), None),
        };
        OpRecord {
            op: op.label(),
            task_id: (op != Op::Event).then_some(task_id),
            started: began.saturating_duration_since(start),
            latency: began.elapsed(),
            accepted,
            confirmed,
            finished_unix_us: unix_us(),
            replied_by,
            outcome,
        }
    }
}

/// A request error after which the broker may still hold the task.
fn in_doubt(e: &RequestError) -> bool {
    matches!(e, RequestError::Closed | RequestError::Timeout(_))
}

fn reply_of(outcome: Result<eventbus::Message, RequestError>) -> Result<Option<TaskReply>, String> {
    let message = outcome.map_err(|e| e.to_string())?;
    TaskReply::parse(&message)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// A subscriber to every workload event, counting them.
struct EventCounter {
    received: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl EventCounter {
    async fn start(socket: &Path) -> Self {
        let driver = Driver::connect(socket)
            .await
            .unwrap_or_else(|e| panic!("event subscriber cannot connect: {e}"));
        let filter = TopicFilter::new("chaos.events.#").expect("a valid filter");
        let mut subscription = driver
            .client()
            .subscribe(&filter)
            .await
            .unwrap_or_else(|e| panic!("event subscriber cannot subscribe: {e}"));
        let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = received.clone();
        let task = tokio::spawn(async move {
            let _driver = driver;
            while std::future::poll_fn(|cx| std::pin::Pin::new(&mut subscription).poll_next(cx))
                .await
                .is_some()
            {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        Self { received, task }
    }

    /// Waits (a little) for the events still on their way, then stops counting.
    async fn settle(self, sent: u64) -> u64 {
        let received = self.received.clone();
        let _ = eventbus_harness::wait_until(
            "the events in flight arrive",
            Duration::from_secs(2),
            || {
                let received = received.clone();
                async move { received.load(std::sync::atomic::Ordering::Relaxed) >= sent }
            },
        )
        .await;
        self.task.abort();
        self.received.load(std::sync::atomic::Ordering::Relaxed)
    }
}
