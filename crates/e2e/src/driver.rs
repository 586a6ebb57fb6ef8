//! The driver: an eventbus [`Client`] that sends the scenario's tasks, collects
//! the replies with bounded concurrency, records the [`History`], and measures.
//!
//! Retries are typed: a request is tried again only when it failed with
//! [`RequestError::Closed`] or [`RequestError::Timeout`], and each failed
//! attempt is recorded as an error in the history.

use std::collections::BTreeMap;
use std::future::poll_fn;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use eventbus::client::{BrokerStats, QueueStats};
use eventbus::client::{CallError, ConnectError, PublishError, RequestError};
use eventbus::{Client, ClientOptions, GroupName, TopicFilter};
use futures_core::Stream;
use hdrhistogram::Histogram;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::tasks::{CollectorKind, TaskReply};
use eventbus_harness::DEADLINE;
use eventbus_harness::History;

/// How [`Driver::run_tasks`] sends its tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// Most requests awaiting replies at once.
    pub concurrency: usize,
    /// How long each attempt waits for its reply.
    pub timeout: Duration,
    /// Attempts per task; more than one retries `Closed` and `Timeout` failures.
    pub attempts: u32,
}

impl Default for RunOptions {
    /// One at a time, [`DEADLINE`] per attempt, no retry.
    fn default() -> Self {
        Self {
            concurrency: 1,
            timeout: DEADLINE,
            attempts: 1,
        }
    }
}

impl RunOptions {
    /// Sets [`concurrency`](Self::concurrency) (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Sets [`timeout`](Self::timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`attempts`](Self::attempts) (at least 1).
    pub fn attempts(mut self, n: u32) -> Self {
        self.attempts = n.max(1);
        self
    }
}

/// What a run of tasks produced.
#[derive(Debug)]
pub struct RunReport {
    /// The reply of every task that got one, in completion order.
    pub replies: Vec<TaskReply>,
    /// Tasks whose last attempt failed, with that failure.
    pub failures: Vec<(String, RequestError)>,
    /// Attempts beyond the first.
    pub retries: u64,
    /// Round-trip time of every successful attempt, in microseconds.
    pub latency_us: Histogram<u64>,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

impl RunReport {
    /// Replies per collector, by the broker-stamped reply source.
    pub fn per_collector(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for reply in &self.replies {
            *counts.entry(reply.source.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// The latency at quantile `q` (0.0 to 1.0).
    pub fn latency(&self, q: f64) -> Duration {
        Duration::from_micros(self.latency_us.value_at_quantile(q))
    }
}

/// A latency histogram in microseconds, from 1 µs to one hour, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// A connection to the broker that drives a scenario. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Driver {
    client: Client,
}

impl Driver {
    /// Connects to the broker at `socket`. The driver asks for a relaxed
    /// heartbeat (0.5 s, 20 misses), so a scenario that gives collectors a tight
    /// one does not lose its own connection when the test process stalls.
    pub async fn connect(socket: &Path) -> Result<Self, ConnectError> {
        let options = ClientOptions::new(socket)
            .kind("e2e-driver")
            .request_timeout(DEADLINE)
            .heartbeat(Duration::from_millis(500), 20);
        Ok(Self {
            client: Client::connect(options).await?,
        })
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Sends one task as a request and waits up to `timeout` for its reply.
    /// Panics on a reply that is not the documented JSON.
    pub async fn request_task(
        &self,
        kind: CollectorKind,
        task_id: &str,
        timeout: Duration,
    ) -> Result<TaskReply, RequestError> {
        let message = self
            .client
            .request(&kind.task_topic(), kind.payload(task_id), timeout)
            .await?;
        Ok(TaskReply::parse(&message).unwrap_or_else(|e| panic!("task {task_id}: {e}")))
    }

    /// Sends every task as a request, at most `options.concurrency` at once,
    /// recording each in `history`, and waits for all of them.
    pub async fn run_tasks(
        &self,
        kind: CollectorKind,
        task_ids: Vec<String>,
        options: RunOptions,
        history: &History,
    ) -> RunReport {
        let started = Instant::now();
        let slots = Arc::new(Semaphore::new(options.concurrency));
        let mut running = JoinSet::new();
        let mut report = RunReport {
            replies: Vec::with_capacity(task_ids.len()),
            failures: Vec::new(),
            retries: 0,
            latency_us: latency_histogram(),
            elapsed: Duration::ZERO,
        };
        for task_id in task_ids {
            let permit = slots.clone().acquire_owned().await.expect("never closed");
            let (driver, history) = (self.clone(), history.clone());
            running.spawn(async move {
                let _permit = permit;
                driver.run_one(kind, task_id, options, &history).await
            });
            while let Some(done) = running.try_join_next() {
                report.add(done);
            }
        }
        while let Some(done) = running.join_next().await {
            report.add(done);
        }
        report.elapsed = started.elapsed();
        report
    }

    /// One task, with typed retries. Returns the outcome, the attempts beyond
    /// the first, and the round trip of the successful attempt.
    async fn run_one(
        &self,
        kind: CollectorKind,
        task_id: String,
        options: RunOptions,
        history: &History,
    ) -> Attempted {
        history.published(&task_id);
        let mut attempt = 1;
        loop {
            let sent = Instant::now();
            match self.request_task(kind, &task_id, options.timeout).await {
                Ok(reply) => {
                    history.record_all(&task_id, reply.events(&task_id));
                    return Attempted {
                        task_id,
                        outcome: Ok((reply, sent.elapsed())),
                        retries: attempt - 1,
                    };
                }
                Err(e) => {
                    let in_doubt = matches!(e, RequestError::Closed | RequestError::Timeout(_));
                    if in_doubt {
                        // The broker may have taken it: it counts as accepted.
                        history.accepted(&task_id);
                    }
                    history.error(&task_id, &e);
                    if !in_doubt || attempt >= options.attempts {
                        return Attempted {
                            task_id,
                            outcome: Err(e),
                            retries: attempt - 1,
                        };
                    }
                    attempt += 1;
                }
            }
        }
    }

    /// Publishes each task with a confirmed publish (not a request), one after
    /// the other, recording each in `history`; returns each result in order.
    pub async fn publish_tasks(
        &self,
        kind: CollectorKind,
        task_ids: &[String],
        history: &History,
    ) -> Vec<Result<u64, PublishError>> {
        let topic = kind.task_topic();
        let mut results = Vec::with_capacity(task_ids.len());
        for task_id in task_ids {
            history.published(task_id);
            let result = self
                .client
                .publish_confirmed(&topic, kind.payload(task_id))
                .await;
            match &result {
                Ok(_) => history.accepted(task_id),
                Err(e) => history.error(task_id, e),
            }
            results.push(result);
        }
        results
    }

    /// Joins `kind`'s queue group itself, as consumer `consumer_id` in the
    /// history, takes `count` deliveries (waiting up to [`DEADLINE`] for each),
    /// acks each, and returns their task ids in the order received. Deliveries
    /// are recorded with their position as the start key, for the FIFO check.
    pub async fn drain_queue(
        &self,
        kind: CollectorKind,
        prefetch: u32,
        count: usize,
        history: &History,
    ) -> Vec<String> {
        let filter = TopicFilter::new(kind.task_topic().as_str()).expect("a topic is a filter");
        let group = GroupName::new(kind.capability()).expect("capabilities are group names");
        let mut queue = self
            .client
            .queue_subscribe(&filter, &group, prefetch)
            .await
            .unwrap_or_else(|e| panic!("driver cannot join group {group:?}: {e}"));
        let consumer = self.client.client_id().as_str().to_owned();
        let mut received = Vec::with_capacity(count);
        while received.len() < count {
            let next = poll_fn(|cx| Pin::new(&mut queue).poll_next(cx));
            let delivery = tokio::time::timeout(DEADLINE, next)
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "delivery {} of {count} not within {DEADLINE:?}",
                        received.len()
                    )
                })
                .expect("the driver's connection stays up");
            let payload: serde_json::Value = serde_json::from_slice(delivery.message().payload())
                .unwrap_or_else(|e| panic!("a task payload is JSON: {e}"));
            let task_id = payload["task_id"].as_str().unwrap_or_default().to_owned();
            history.delivered(&task_id, &consumer, received.len() as u64);
            delivery
                .ack_confirmed()
                .await
                .unwrap_or_else(|e| panic!("ack of {task_id}: {e}"));
            history.acked(&task_id);
            received.push(task_id);
        }
        received
    }

    /// A snapshot of the broker's counters. Panics if the broker does not answer.
    pub async fn stats(&self) -> BrokerStats {
        self.try_stats()
            .await
            .unwrap_or_else(|e| panic!("broker stats: {e}"))
    }

    /// A snapshot of the broker's counters.
    pub async fn try_stats(&self) -> Result<BrokerStats, CallError> {
        self.client.stats().await
    }

    /// The stats of `kind`'s queue group, if it exists.
    pub async fn queue_stats(&self, kind: CollectorKind) -> Option<QueueStats> {
        let topic = kind.task_topic();
        self.stats()
            .await
            .queues
            .into_iter()
            .find(|q| q.topic == topic.as_str() && q.group == kind.capability())
    }
}

/// How one task of a run ended.
struct Attempted {
    task_id: String,
    outcome: Result<(TaskReply, Duration), RequestError>,
    retries: u32,
}

impl RunReport {
    fn add(&mut self, done: Result<Attempted, tokio::task::JoinError>) {
        let done = match done {
            Ok(done) => done,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("a task of the run was cancelled: {e}"),
        };
        self.retries += u64::from(done.retries);
        match done.outcome {
            Ok((reply, rtt)) => {
                let us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX);
                self.latency_us.saturating_record(us.max(1));
                self.replies.push(reply);
            }
            Err(e) => self.failures.push((done.task_id, e)),
        }
    }
}
