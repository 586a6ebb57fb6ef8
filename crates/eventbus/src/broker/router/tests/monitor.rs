//! What the router records for a monitor: task lifecycles, worker
//! statistics, samples, events; and nothing at all without one.

use std::time::Duration;

use super::*;
use crate::broker::monitor::{
    AttemptEnd, HealthStatus, OutcomeFilter, TaskOutcome, TaskQuery, TaskRecord, TaskState,
};
use crate::framed::OverflowPolicy;
use crate::topic::TopicFilter;

const TASKS: &str = "control.task.process";

fn tasks(bus: &Bus) -> Vec<TaskRecord> {
    bus.router.monitor_tasks(&TaskQuery::default()).tasks
}

fn only_task(bus: &Bus) -> TaskRecord {
    let mut all = tasks(bus);
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

fn ends(task: &TaskRecord) -> Vec<(String, Option<AttemptEnd>)> {
    task.attempts
        .iter()
        .map(|a| (a.collector.clone(), a.end))
        .collect()
}

fn drain(rx: &mut tokio::sync::broadcast::Receiver<MonitorEvent>) -> Vec<MonitorEvent> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

#[test]
fn without_a_monitor_nothing_is_recorded() {
    let mut bus = Bus::new();
    let w = bus.connect("w");
    let p = bus.connect("p");
    bus.join(&w, 1, TASKS, "g", 1);
    bus.publish(&p, TASKS, "t");
    assert!(!bus.router.observed());
    assert!(tasks(&bus).is_empty());
    assert!(bus.router.monitor_workers(bus.now).is_empty());
    assert!(
        bus.router
            .monitor_sample(bus.now + Duration::from_secs(1), None)
            .is_none()
    );
}

#[test]
fn a_task_is_recorded_from_queued_through_each_delivery_to_its_ack() {
    let mut bus = Bus::new();
    let _events = bus.observe();
    let a = bus.connect("a");
    let b = bus.connect("b");
    let p = bus.connect("p");
    bus.join(&a, 1, TASKS, "g", 1);
    bus.publish(&p, TASKS, "t");
    let (d1, _) = deliveries(&bus.received(&a))[0].clone();
    let task = only_task(&bus);
    assert_eq!(task.state, TaskState::InFlight);
    assert_eq!(task.publisher, "p");
    bus.now += Duration::from_millis(30);
    bus.nack(&a, d1, true, 0);
    bus.join(&b, 1, TASKS, "g", 1);
    let got = bus.received(&a);
    let (d2, holder) = match deliveries(&got).first() {
        Some((d, _)) => (*d, &a),
        None => (deliveries(&bus.received(&b))[0].0, &b),
    };
    bus.now += Duration::from_millis(20);
    bus.ack(holder, d2, 0);

    let task = only_task(&bus);
    assert_eq!(task.state, TaskState::Done);
    assert_eq!(task.outcome, Some(TaskOutcome::Acked));
    assert_eq!(task.group.as_deref(), Some("g"));
    assert_eq!(task.deliveries, 2);
    assert_eq!(ends(&task)[0], ("a".into(), Some(AttemptEnd::Nacked)));
    assert_eq!(ends(&task)[1].1, Some(AttemptEnd::Acked));
    assert_eq!(task.attempts[0].run_us, Some(30_000));
    assert_eq!(task.attempts[1].run_us, Some(20_000));
    assert_eq!(task.total_us, Some(50_000));
    assert_eq!(task.wait_us, Some(0));

    let workers = bus.router.monitor_workers(bus.now);
    let worker = |id: &str| workers.iter().find(|w| w.client_id == id).cloned();
    let a_row = worker("a").expect("a took a delivery");
    assert_eq!(
        (a_row.ok, a_row.failed),
        (u64::from(holder.conn == a.conn), 1)
    );
}

#[test]
fn dead_letters_timeouts_departures_and_cancels_end_tasks_with_their_reason() {
    let mut bus = Bus::with(|c| {
        c.queue.max_attempts = 2;
        c.queue.ack_timeout_ms = 100;
    });
    let mut events = bus.observe();
    let w = bus.connect("w");
    let p = bus.connect("p");
    bus.join(&w, 1, TASKS, "g", 4);
    // A reject dead-letters at once.
    bus.publish(&p, TASKS, "rejected");
    let (d, _) = deliveries(&bus.received(&w))[0].clone();
    bus.nack(&w, d, false, 0);
    // A timeout, then the holder leaves: two attempts, dead-lettered.
    bus.publish(&p, TASKS, "slow");
    bus.received(&w);
    bus.advance(Duration::from_millis(150));
    // Cancelled while waiting in line behind nobody: cancel it in flight.
    let id = bus.confirmed(&p, 3, TASKS, "cancel me").unwrap();
    bus.cancel(&p, id, 4);
    bus.disconnect(&w);

    let all = tasks(&bus);
    let by_payload_order: Vec<_> = all
        .iter()
        .rev()
        .map(|t| (t.outcome, t.reason.clone().unwrap_or_default()))
        .collect();
    assert_eq!(by_payload_order[0].0, Some(TaskOutcome::DeadLettered));
    assert_eq!(by_payload_order[0].1, "rejected by the consumer");
    assert_eq!(by_payload_order[1].0, Some(TaskOutcome::DeadLettered));
    assert!(
        by_payload_order[1].1.contains("attempts used"),
        "{by_payload_order:?}"
    );
    assert_eq!(by_payload_order[2].0, Some(TaskOutcome::Cancelled));
    let slow = &all[1];
    assert_eq!(
        ends(slow),
        [
            ("w".into(), Some(AttemptEnd::TimedOut)),
            ("w".into(), Some(AttemptEnd::HolderLeft))
        ]
    );
    let dead: Vec<_> = drain(&mut events)
        .into_iter()
        .filter_map(|e| match e {
            MonitorEvent::DeadLetter { group, reason, .. } => Some((group, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0].0, "g");
    let query = |outcome| TaskQuery {
        outcome: Some(outcome),
        ..Default::default()
    };
    let page = bus
        .router
        .monitor_tasks(&query(OutcomeFilter::Ended(TaskOutcome::Cancelled)));
    assert_eq!(page.tasks.len(), 1);
    assert!(
        bus.router
            .monitor_tasks(&query(OutcomeFilter::Pending))
            .tasks
            .is_empty()
    );
}

#[test]
fn evicted_and_direct_tasks_are_recorded_and_filters_select_them() {
    let mut bus = Bus::with(|c| {
        c.queue.max_len = 1;
        c.queue.overflow = OverflowPolicy::DropOldest;
    });
    let _events = bus.observe();
    let p = bus.connect("p");
    let target = bus.connect("target");
    // Nobody takes the group's messages: the second evicts the first.
    let idle = bus.connect("idle");
    bus.join(&idle, 1, "work.idle", "g", 1);
    bus.send_done(
        &idle,
        Kind::Unsubscribe(proto::Unsubscribe { seq: 0, sid: 1 }),
    );
    let holder = bus.connect("holder");
    bus.join(&holder, 1, "work.full", "g", 1);
    for n in 0..3 {
        bus.publish(&p, "work.full", &format!("f{n}"));
    }
    bus.send_done(
        &p,
        Kind::Publish(proto::Publish {
            mode: PublishMode::FireAndForget as i32,
            target_client: "target".into(),
            message: Some(Box::new(proto::Envelope {
                topic: "direct.x".into(),
                ..Default::default()
            })),
            ..Default::default()
        }),
    );
    bus.disconnect(&target);

    let evicted = bus.router.monitor_tasks(&TaskQuery {
        outcome: Some(OutcomeFilter::Ended(TaskOutcome::Evicted)),
        ..Default::default()
    });
    assert_eq!(evicted.tasks.len(), 1, "{:?}", tasks(&bus));
    let direct = bus.router.monitor_tasks(&TaskQuery {
        topic: Some(TopicFilter::new("direct.#").unwrap()),
        ..Default::default()
    });
    assert_eq!(direct.tasks.len(), 1);
    assert_eq!(direct.tasks[0].group, None);
    assert_eq!(direct.tasks[0].outcome, Some(TaskOutcome::Failed));
    let by_holder = bus.router.monitor_tasks(&TaskQuery {
        collector: Some("holder".into()),
        limit: 1,
        ..Default::default()
    });
    assert_eq!(by_holder.tasks.len(), 1);
    assert_eq!(by_holder.tasks[0].state, TaskState::InFlight);
    let waiting = bus.router.monitor_tasks(&TaskQuery {
        outcome: Some(OutcomeFilter::Pending),
        ..Default::default()
    });
    let states: Vec<_> = waiting.tasks.iter().map(|t| t.state).collect();
    assert_eq!(states, [TaskState::Queued, TaskState::InFlight]);
}

#[test]
fn samples_give_rates_over_the_second_and_clients_queues_get_theirs() {
    let mut bus = Bus::new();
    let _events = bus.observe();
    let w = bus.connect("w");
    let p = bus.connect("p");
    bus.join(&w, 1, TASKS, "g", 100);
    let start = bus.now;
    assert!(bus.router.monitor_sample(start, Some(1)).is_some());
    for n in 0..10 {
        bus.publish(&p, TASKS, &format!("{n}"));
    }
    for (d, _) in deliveries(&bus.received(&w)).into_iter().take(4) {
        bus.ack(&w, d, 0);
    }
    let s = bus
        .router
        .monitor_sample(start + Duration::from_secs(2), Some(7))
        .unwrap();
    assert_eq!(
        (s.publish_rate, s.deliver_rate, s.ack_rate),
        (5.0, 5.0, 2.0)
    );
    assert_eq!(
        (s.in_flight, s.depth, s.connections, s.rss_bytes),
        (6, 0, 2, 7)
    );
    let clients = bus.router.monitor_clients();
    let p_row = clients.iter().find(|c| c.id == "p").unwrap();
    assert_eq!(p_row.in_rate, 5.0);
    assert_eq!(p_row.identity, format!("uid:{PEER_UID}"));
    let q = &bus.router.monitor_queues()[0];
    assert_eq!(
        (q.enqueue_rate, q.deliver_rate, q.ack_rate),
        (5.0, 5.0, 2.0)
    );
    assert_eq!(bus.router.monitor_history(Duration::from_secs(60)).len(), 2);
    let worker = &bus.router.monitor_workers(bus.now)[0];
    assert_eq!((worker.client_id.as_str(), worker.tasks_per_s), ("w", 2.0));
}

#[test]
fn connects_disconnects_and_slow_consumers_are_events() {
    let mut bus = Bus::with(|c| {
        c.subscriber.max_len = 2;
        c.subscriber.hard_cap = 10;
    });
    let mut events = bus.observe();
    let s = bus.connect("slow");
    let p = bus.connect("p");
    bus.subscribe(&s, 1, "news.#");
    for _ in 0..4 {
        bus.publish(&p, "news.a", "x");
    }
    bus.disconnect(&s);
    let kinds: Vec<_> = drain(&mut events)
        .into_iter()
        .map(|e| match e {
            MonitorEvent::Connected { client, .. } => format!("+{}", client.id),
            MonitorEvent::Disconnected { client_id, .. } => format!("-{client_id}"),
            MonitorEvent::SlowConsumer { client_id, .. } => format!("slow {client_id}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["+slow", "+p", "slow slow", "-slow"]);
}

#[test]
fn health_is_degraded_near_a_bound_and_draining_when_shutting_down() {
    let mut bus = Bus::with(|c| c.queue.max_len = 1);
    let w = bus.connect("w");
    let p = bus.connect("p");
    assert_eq!(bus.router.monitor_health(2).status, HealthStatus::Ready);
    bus.join(&w, 1, TASKS, "g", 1);
    bus.publish(&p, TASKS, "held");
    bus.publish(&p, TASKS, "waits");
    let health = bus.router.monitor_health(2);
    assert_eq!(health.status, HealthStatus::Degraded);
    assert!(health.reasons[0].contains("queue g"), "{health:?}");
    let health = bus.router.monitor_health(bus.config.max_connections);
    assert_eq!(health.reasons.len(), 2, "{health:?}");
    bus.run(|r, _| r.begin_drain());
    assert_eq!(bus.router.monitor_health(2).status, HealthStatus::Draining);
}
