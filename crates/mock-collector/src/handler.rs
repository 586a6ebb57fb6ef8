//! One task, start to finish: parse, reserve its scratch memory, pace, collect,
//! reply (or ack), or shed it when it does not fit.
//!
//! A handler never fails the process: a bad payload, a failed read or an injected
//! failure all become an error reply, so the next task is served as usual.
//!
//! A task this collector cannot take for lack of memory (its `scratch_bytes`
//! cannot be reserved, or no blocking thread can be started) is not its fault:
//! the handler *sheds* it, nacking it with `requeue`, so the broker hands it to
//! another member of the group (with its attempt count raised; after the
//! queue's `max_attempts` it is dead-lettered).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use eventbus::Delivery;

use crate::collect::{self, CollectError};
use crate::registry::CollectorType;
use crate::scratch::Scratch;
use crate::status::TaskCounters;
use crate::task::{Reply, Status, Task, Timings, now_us, salvage_task_id};

/// What every handler of one collector shares.
#[derive(Debug)]
pub struct TaskContext {
    /// The collector's type, which decides how payloads are read.
    pub kind: CollectorType,
    /// The collector's client id, stamped in replies.
    pub collector_id: String,
    /// The collector's pid, stamped in replies.
    pub collector_pid: u32,
    /// Pause before replying to every task (`--delay-ms`).
    pub delay: Duration,
    /// Tasks done, failed, shed and running, for status requests.
    pub counters: TaskCounters,
}

/// Counts a task as running until dropped.
struct Running<'a>(&'a AtomicU64);

impl<'a> Running<'a> {
    fn start(running: &'a AtomicU64) -> Self {
        running.fetch_add(1, Ordering::Relaxed);
        Self(running)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How a task ended, for logs and the caller's bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Replied to a request.
    Replied,
    /// Not a request: acknowledged.
    Acked,
    /// Handed back to the queue (nacked with requeue) for lack of memory.
    Shed,
    /// The connection was gone: nothing could be sent.
    Lost,
}

/// Handles one delivery; `inject_failure` makes it an error reply (`--fail-every`).
pub async fn handle(ctx: &TaskContext, delivery: Delivery, inject_failure: bool) -> Settled {
    let _running = Running::start(&ctx.counters.running);
    let message = delivery.message();
    let queued_us = message.timestamp_us();
    let started_us = now_us();
    let payload = message.payload().clone();
    let parsed = Task::parse(ctx.kind, &payload);
    let task_id = match &parsed {
        Ok(task) => Some(task.task_id().to_owned()),
        Err(_) => salvage_task_id(&payload),
    };
    tracing::info!(
        task_id = task_id.as_deref().unwrap_or("-"),
        attempt = message.attempt(),
        "task started"
    );
    let work = match parsed {
        Err(e) => Err(e.to_string()),
        Ok(_) if inject_failure => Err("injected failure (--fail-every)".to_owned()),
        Ok(task) => match Scratch::reserve(task.scratch_bytes()) {
            Ok(scratch) => Ok((task, scratch)),
            Err(e) => return shed(ctx, &delivery, task_id.as_deref(), &e).await,
        },
    };
    if !ctx.delay.is_zero() {
        tokio::time::sleep(ctx.delay).await;
    }
    let outcome: Result<serde_json::Value, String> = match work {
        Err(e) => Err(e),
        Ok((task, scratch)) => match collect::run_task(task, scratch).await {
            Err(e @ CollectError::NoWorker(_)) => {
                return shed(ctx, &delivery, task_id.as_deref(), &e).await;
            }
            data => data.map_err(|e| e.to_string()),
        },
    };
    if let Err(error) = &outcome {
        ctx.counters.failed.fetch_add(1, Ordering::Relaxed);
        tracing::info!(task_id = task_id.as_deref().unwrap_or("-"), %error, "task failed");
    } else {
        ctx.counters.done.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(task_id = task_id.as_deref().unwrap_or("-"), "task done");
    }
    let (status, error, data) = match outcome {
        Ok(data) => (Status::Ok, None, data),
        Err(e) => (Status::Error, Some(e), serde_json::Value::Null),
    };
    let reply = Reply {
        task_id,
        collector_id: ctx.collector_id.clone(),
        collector_pid: ctx.collector_pid,
        status,
        error,
        data,
        timings: Timings {
            queued_us,
            started_us,
            finished_us: now_us(),
        },
    };
    settle(&delivery, &reply)
}

/// Hands the task back to the queue, for another member of the group.
async fn shed(
    ctx: &TaskContext,
    delivery: &Delivery,
    task_id: Option<&str>,
    why: &(dyn std::error::Error + Sync),
) -> Settled {
    let shed = ctx.counters.shed.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::warn!(
        task_id = task_id.unwrap_or("-"),
        attempt = delivery.message().attempt(),
        shed,
        "shedding load: {why}"
    );
    match delivery.nack_confirmed(true).await {
        Ok(()) => Settled::Shed,
        Err(e) => {
            tracing::warn!(error = %e, delivery_id = delivery.delivery_id(), "cannot hand the task back");
            Settled::Lost
        }
    }
}

/// Replies to a request, or acks anything else.
fn settle(delivery: &Delivery, reply: &Reply) -> Settled {
    let sent = if delivery.message().is_request() {
        delivery.reply(reply.to_bytes()).map(|()| Settled::Replied)
    } else {
        delivery.ack().map(|()| Settled::Acked)
    };
    sent.unwrap_or_else(|e| {
        tracing::warn!(error = %e, delivery_id = delivery.delivery_id(), "cannot settle the task");
        Settled::Lost
    })
}
