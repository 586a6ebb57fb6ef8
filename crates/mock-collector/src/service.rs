//! A collector's life: connect, join the queue group, announce readiness, take
//! tasks until shutdown or connection loss, then drain.
//!
//! The dispatcher owns the subscriptions and the task counter; each task runs in
//! its own tokio task holding one of `prefetch` permits, so at most `prefetch`
//! tasks run at once (the broker's credit window already bounds queue
//! deliveries; the permits bound direct deliveries too).
//!
//! Graceful shutdown keeps the subscriptions until running tasks have replied:
//! dropping a queue subscription makes the broker requeue *every* unsettled
//! delivery of it, including tasks still being worked on, whose replies would
//! then be refused. So: stop taking deliveries, wait (bounded) for running tasks,
//! then drop the subscriptions (deliveries received but never started go back to
//! the queue), then say goodbye.

use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use eventbus::client::{ConnectError, SubscribeError};
use eventbus::names::NameError;
use eventbus::topic::TopicFilterError;
use eventbus::{Client, ClientOptions, Delivery, GroupName, QueueSubscription, TopicFilter};
use futures_core::Stream;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cli::CollectorConfig;
use crate::emit::Emitter;
use crate::faults::{self, FaultAction};
use crate::handler::{self, TaskContext};
use crate::status::{STATUS_TOPIC, StatusSource, TaskCounters};

/// Missed heartbeats tolerated when `--heartbeat-interval-ms` is given.
pub const HEARTBEAT_MISSES: u32 = 3;

/// How a collector run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Shutdown was requested and the collector drained and said goodbye.
    Stopped,
    /// The connection to the broker was lost.
    ConnectionLost,
}

/// Why a collector could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The broker could not be reached or refused the client.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The task topic or group name is invalid (a registry bug).
    #[error("invalid task topic: {0}")]
    Topic(#[from] TopicFilterError),
    /// The group name is invalid (a registry bug).
    #[error("invalid group name: {0}")]
    Group(#[from] NameError),
    /// The broker did not confirm the queue subscription.
    #[error("cannot join queue group {group:?} on {topic}: {source}")]
    Subscribe {
        /// The task topic.
        topic: String,
        /// The group.
        group: String,
        /// What went wrong.
        source: SubscribeError,
    },
    /// The ready line could not be written.
    #[error("cannot write the ready line: {0}")]
    Ready(#[source] std::io::Error),
}

/// The one line printed on stdout once the collector takes tasks.
#[derive(Debug, Serialize)]
struct Ready<'a> {
    event: &'static str,
    id: &'a str,
    pid: u32,
}

/// Runs a collector until `shutdown` completes or the connection is lost.
pub async fn run(
    config: CollectorConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<Outcome, StartError> {
    let started = std::time::Instant::now();
    let mut options = ClientOptions::new(&config.socket)
        .client_id(config.client_id.clone())
        .kind("collector")
        .capability(config.kind.capability());
    options = options.reconnect(if config.reconnect {
        // A short cap keeps a collector within a quarter second of a restarted broker.
        eventbus::ReconnectPolicy {
            max: Duration::from_millis(250),
            ..eventbus::ReconnectPolicy::default()
        }
    } else {
        eventbus::ReconnectPolicy::disabled()
    });
    if let Some(interval) = config.heartbeat {
        options = options.heartbeat(interval, HEARTBEAT_MISSES);
    }
    let client = Client::connect(options).await?;
    let topic = config.kind.task_topic();
    let filter = TopicFilter::new(&topic)?;
    let group = GroupName::new(config.kind.capability())?;
    let queue = client
        .queue_subscribe(&filter, &group, config.prefetch)
        .await
        .map_err(|source| StartError::Subscribe {
            topic: topic.clone(),
            group: group.as_str().to_owned(),
            source,
        })?;
    let direct = client.direct_deliveries();
    // Status requests are a courtesy: an identity not allowed to take them
    // (an auth file without the topic, a subscription quota) still collects.
    let status_requests = match client.queue_subscribe(STATUS_TOPIC, &group, 1).await {
        Ok(requests) => Some(requests),
        Err(e @ (SubscribeError::Refused(_) | SubscribeError::Limit { .. })) => {
            tracing::warn!(error = %e, topic = STATUS_TOPIC, "not answering status requests");
            None
        }
        Err(source) => {
            return Err(StartError::Subscribe {
                topic: STATUS_TOPIC.to_owned(),
                group: group.as_str().to_owned(),
                source,
            });
        }
    };
    announce(config.client_id.as_str()).map_err(StartError::Ready)?;
    tracing::info!(id = %config.client_id, %topic, prefetch = config.prefetch, "collector ready");

    let stop_emitting = CancellationToken::new();
    let emitter = config.emit_interval.map(|interval| {
        let emitter = Emitter {
            client: client.clone(),
            kind: config.kind,
            interval,
            watch_path: config.watch_path.clone(),
        };
        tokio::spawn(emitter.run(stop_emitting.clone()))
    });
    let ctx = Arc::new(TaskContext {
        kind: config.kind,
        collector_id: config.client_id.as_str().to_owned(),
        collector_pid: std::process::id(),
        delay: config.delay,
        counters: TaskCounters::default(),
    });
    let stop_status = CancellationToken::new();
    let status_source = StatusSource {
        kind: config.kind,
        collector_id: config.client_id.as_str().to_owned(),
        collector_pid: std::process::id(),
        started,
    };
    let status = status_requests.map(|requests| {
        tokio::spawn(status_source.serve(requests, ctx.clone(), stop_status.clone()))
    });
    let mut dispatcher = Dispatcher {
        client: client.clone(),
        queue,
        direct,
        ctx,
        config: &config,
        tasks: TaskTracker::new(),
    };
    let outcome = dispatcher.run(shutdown).await;
    if outcome == Outcome::ConnectionLost {
        return Ok(outcome);
    }
    stop_emitting.cancel();
    dispatcher.drain(config.drain_timeout).await;
    stop_status.cancel();
    if let Some(status) = status {
        let _ = status.await;
    }
    let shed = dispatcher.ctx.counters.shed.load(Ordering::Relaxed);
    drop(dispatcher);
    if let Some(emitter) = emitter {
        let _ = emitter.await;
    }
    client.close().await;
    tracing::info!(shed, "collector stopped");
    Ok(Outcome::Stopped)
}

/// Prints the ready line and flushes it, so a reader sees it immediately.
fn announce(id: &str) -> std::io::Result<()> {
    let ready = Ready {
        event: "ready",
        id,
        pid: std::process::id(),
    };
    let line = serde_json::to_string(&ready).expect("the ready line always serializes");
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").and_then(|()| stdout.flush())
}

/// Owns the subscriptions; dropping it hands unsettled deliveries back.
struct Dispatcher<'a> {
    client: Client,
    queue: QueueSubscription,
    direct: QueueSubscription,
    ctx: Arc<TaskContext>,
    config: &'a CollectorConfig,
    tasks: TaskTracker,
}

impl Dispatcher<'_> {
    /// Takes deliveries and starts tasks until shutdown or connection loss.
    async fn run(&mut self, shutdown: impl Future<Output = ()>) -> Outcome {
        let slots = Arc::new(Semaphore::new(self.config.prefetch as usize));
        let mut received = 0u64;
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                biased;
                () = &mut shutdown => return Outcome::Stopped,
                () = self.client.closed() => return Outcome::ConnectionLost,
                permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            let delivery = tokio::select! {
                biased;
                () = &mut shutdown => return Outcome::Stopped,
                () = self.client.closed() => return Outcome::ConnectionLost,
                delivery = next_delivery(&mut self.queue, &mut self.direct, received) => match delivery {
                    Some(delivery) => delivery,
                    None => return Outcome::ConnectionLost,
                },
            };
            received += 1;
            match self.config.faults.action(received) {
                FaultAction::Crash => faults::crash(received),
                FaultAction::Hang => faults::freeze(received),
                action => {
                    let ctx = self.ctx.clone();
                    self.tasks.spawn(async move {
                        let _permit = permit;
                        handler::handle(&ctx, delivery, action == FaultAction::Fail).await;
                    });
                }
            }
        }
    }

    /// Waits up to `timeout` for running tasks to finish.
    async fn drain(&self, timeout: Duration) {
        self.tasks.close();
        let running = self.tasks.len();
        if running > 0 {
            tracing::info!(running, "waiting for running tasks");
        }
        if tokio::time::timeout(timeout, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                running = self.tasks.len(),
                ?timeout,
                "tasks still running after the drain timeout"
            );
        }
    }
}

/// The next delivery from either stream; `None` once one of them ends (the
/// connection is gone). Which stream is polled first alternates, so neither can
/// starve the other.
async fn next_delivery(
    queue: &mut QueueSubscription,
    direct: &mut QueueSubscription,
    turn: u64,
) -> Option<Delivery> {
    std::future::poll_fn(|cx| {
        let (first, second) = if turn.is_multiple_of(2) {
            (&mut *queue, &mut *direct)
        } else {
            (&mut *direct, &mut *queue)
        };
        match Pin::new(first).poll_next(cx) {
            Poll::Pending => Pin::new(second).poll_next(cx),
            ready => ready,
        }
    })
    .await
}
