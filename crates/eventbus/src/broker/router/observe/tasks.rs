//! The task ring: the life of the last `monitor.tasks` tasks (messages in
//! queue groups, and direct sends), from queued through each delivery to
//! how they ended.
//!
//! **Invariants:** the ring holds at most `capacity` records, oldest first;
//! when full, the oldest record is forgotten to make room, whatever its
//! state (counted in `forgotten`), and later news of it is ignored.
//! `by_key` and `by_delivery` point only at records in the ring, so both
//! hold at most `capacity` entries (a record has at most one open delivery).

use std::collections::VecDeque;
use std::time::Instant;

use super::super::Map;
use crate::broker::ids::{DeliveryId, GroupId, MessageId};
use crate::broker::monitor::{
    AttemptEnd, MAX_ATTEMPTS_KEPT, OutcomeFilter, TaskAttempt, TaskOutcome, TaskPage, TaskQuery,
    TaskRecord, TaskState,
};
use crate::names::{ClientId, GroupName};
use crate::topic::Topic;

/// A task: a message in one queue group, or one direct send (`group` None).
pub(super) type TaskKey = (MessageId, Option<GroupId>);

/// One delivery, as recorded.
#[derive(Debug)]
struct Attempt {
    collector: ClientId,
    delivered_wall_ms: u64,
    delivered: Instant,
    end: Option<(AttemptEnd, Instant)>,
}

/// One task, as recorded.
#[derive(Debug)]
struct Record {
    key: TaskKey,
    topic: Topic,
    group: Option<GroupName>,
    publisher: String,
    queued_wall_ms: u64,
    queued: Instant,
    first_delivery: Option<Instant>,
    deliveries: u32,
    attempts: VecDeque<Attempt>,
    /// The delivery in flight, if one is.
    open: Option<DeliveryId>,
    ended: Option<(TaskOutcome, Instant)>,
    reason: Option<String>,
}

/// What a new task brings.
#[derive(Debug)]
pub(super) struct NewTask<'a> {
    pub key: TaskKey,
    pub topic: &'a Topic,
    pub group: Option<&'a GroupName>,
    pub publisher: &'a str,
}

/// A delivery that ended, for the worker statistics.
#[derive(Debug, Clone)]
pub(super) struct Ended {
    pub collector: ClientId,
    pub run: std::time::Duration,
    pub end: AttemptEnd,
}

/// The ring.
#[derive(Debug)]
pub(super) struct TaskRing {
    capacity: usize,
    records: VecDeque<Record>,
    /// The sequence number of `records[0]`.
    first: u64,
    by_key: Map<TaskKey, u64>,
    by_delivery: Map<DeliveryId, u64>,
    forgotten: u64,
}

impl TaskRing {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            records: VecDeque::new(),
            first: 0,
            by_key: Map::default(),
            by_delivery: Map::default(),
            forgotten: 0,
        }
    }

    fn get_mut(&mut self, seq: u64) -> Option<&mut Record> {
        let index = seq.checked_sub(self.first)?;
        self.records.get_mut(usize::try_from(index).ok()?)
    }

    /// Records a task queued at `now` (if it is not recorded already: a
    /// redelivery is queued again without a new record).
    pub fn queued(&mut self, task: NewTask<'_>, now: Instant, wall_ms: u64) {
        if self.by_key.contains_key(&task.key) {
            return;
        }
        if self.records.len() == self.capacity {
            self.forget_oldest();
        }
        let seq = self.first + self.records.len() as u64;
        self.by_key.insert(task.key, seq);
        self.records.push_back(Record {
            key: task.key,
            topic: task.topic.clone(),
            group: task.group.cloned(),
            publisher: task.publisher.to_owned(),
            queued_wall_ms: wall_ms,
            queued: now,
            first_delivery: None,
            deliveries: 0,
            attempts: VecDeque::new(),
            open: None,
            ended: None,
            reason: None,
        });
    }

    fn forget_oldest(&mut self) {
        let Some(old) = self.records.pop_front() else {
            return;
        };
        if self.by_key.get(&old.key) == Some(&self.first) {
            self.by_key.remove(&old.key);
        }
        if let Some(d) = old.open {
            self.by_delivery.remove(&d);
        }
        self.first += 1;
        self.forgotten += 1;
    }

    /// Records delivery `delivery` of task `key` to `collector`; a task not
    /// recorded yet (a direct send) is recorded first by `new`.
    pub fn dispatched(
        &mut self,
        new: NewTask<'_>,
        delivery: DeliveryId,
        collector: &ClientId,
        now: Instant,
        wall_ms: u64,
    ) {
        let key = new.key;
        if !self.by_key.contains_key(&key) {
            self.queued(new, now, wall_ms);
        }
        let Some(&seq) = self.by_key.get(&key) else {
            return;
        };
        let Some(r) = self.get_mut(seq) else { return };
        let stale = r.open.replace(delivery);
        r.deliveries = r.deliveries.saturating_add(1);
        r.first_delivery.get_or_insert(now);
        if r.attempts.len() == MAX_ATTEMPTS_KEPT {
            r.attempts.pop_front();
        }
        r.attempts.push_back(Attempt {
            collector: collector.clone(),
            delivered_wall_ms: wall_ms,
            delivered: now,
            end: None,
        });
        if let Some(stale) = stale {
            self.by_delivery.remove(&stale);
        }
        self.by_delivery.insert(delivery, seq);
    }

    /// Ends the open delivery `delivery` with `end`; returns what the worker
    /// statistics need, if the task is still in the ring.
    pub fn delivery_ended(
        &mut self,
        delivery: DeliveryId,
        end: AttemptEnd,
        now: Instant,
    ) -> Option<Ended> {
        let seq = self.by_delivery.remove(&delivery)?;
        let r = self.get_mut(seq)?;
        r.open = None;
        let attempt = r.attempts.back_mut()?;
        attempt.end = Some((end, now));
        Some(Ended {
            collector: attempt.collector.clone(),
            run: now.saturating_duration_since(attempt.delivered),
            end,
        })
    }

    /// Ends the open delivery of task `key`, if it has one (a redelivery or
    /// dead letter after the holder left, or a cancel).
    pub fn open_delivery(&self, key: TaskKey) -> Option<DeliveryId> {
        let seq = *self.by_key.get(&key)?;
        let index = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        self.records.get(index)?.open
    }

    /// Task `key` ended with `outcome`.
    pub fn finished(
        &mut self,
        key: TaskKey,
        outcome: TaskOutcome,
        reason: Option<&str>,
        now: Instant,
    ) {
        let Some(&seq) = self.by_key.get(&key) else {
            return;
        };
        if let Some(r) = self.get_mut(seq)
            && r.ended.is_none()
        {
            r.ended = Some((outcome, now));
            r.reason = reason.map(str::to_owned);
        }
    }

    /// The tasks with a delivery open to `collector`.
    pub fn open_of(&self, collector: &ClientId) -> Vec<TaskKey> {
        self.by_delivery
            .values()
            .filter_map(|&seq| {
                let r = self.records.get(usize::try_from(seq - self.first).ok()?)?;
                let holder = &r.attempts.back()?.collector;
                (holder == collector).then_some(r.key)
            })
            .collect()
    }

    /// Every recorded task of message `id` (one per group it went to).
    pub fn keys_of(&self, id: MessageId) -> Vec<TaskKey> {
        self.by_key
            .keys()
            .filter(|(m, _)| *m == id)
            .copied()
            .collect()
    }

    /// The tasks `query` asks for, newest first.
    pub fn query(&self, query: &TaskQuery) -> TaskPage {
        let limit = if query.limit == 0 {
            usize::MAX
        } else {
            query.limit
        };
        let tasks = self
            .records
            .iter()
            .rev()
            .filter(|r| matches(r, query))
            .take(limit)
            .map(to_record)
            .collect();
        TaskPage {
            tasks,
            capacity: self.capacity,
            forgotten: self.forgotten,
        }
    }

    /// Records in the ring.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Checks the ring's invariants.
    #[cfg(any(test, fuzzing))]
    pub fn check(&self) {
        assert!(self.records.len() <= self.capacity);
        assert!(self.by_key.len() <= self.capacity);
        assert!(self.by_delivery.len() <= self.capacity);
        for (&d, &seq) in &self.by_delivery {
            let r = &self.records[(seq - self.first) as usize];
            assert_eq!(r.open, Some(d), "by_delivery points at its record");
        }
    }
}

fn matches(r: &Record, q: &TaskQuery) -> bool {
    if let Some(filter) = &q.topic
        && !filter.matches(&r.topic)
    {
        return false;
    }
    if let Some(collector) = &q.collector
        && !r
            .attempts
            .iter()
            .any(|a| a.collector.as_str() == collector.as_str())
    {
        return false;
    }
    match q.outcome {
        None => true,
        Some(OutcomeFilter::Pending) => r.ended.is_none(),
        Some(OutcomeFilter::Ended(o)) => r.ended.is_some_and(|(e, _)| e == o),
    }
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn to_record(r: &Record) -> TaskRecord {
    let state = match (r.ended, r.open) {
        (Some(_), _) => TaskState::Done,
        (None, Some(_)) => TaskState::InFlight,
        (None, None) => TaskState::Queued,
    };
    TaskRecord {
        message_id: r.key.0.get(),
        topic: r.topic.as_str().to_owned(),
        group: r.group.as_ref().map(|g| g.as_str().to_owned()),
        publisher: r.publisher.clone(),
        queued_at_ms: r.queued_wall_ms,
        state,
        outcome: r.ended.map(|(o, _)| o),
        reason: r.reason.clone(),
        deliveries: r.deliveries,
        attempts: r
            .attempts
            .iter()
            .map(|a| TaskAttempt {
                collector: a.collector.as_str().to_owned(),
                delivered_at_ms: a.delivered_wall_ms,
                end: a.end.map(|(e, _)| e),
                run_us: a
                    .end
                    .map(|(_, at)| micros(at.saturating_duration_since(a.delivered))),
            })
            .collect(),
        wait_us: r
            .first_delivery
            .map(|d| micros(d.saturating_duration_since(r.queued))),
        total_us: r
            .ended
            .map(|(_, at)| micros(at.saturating_duration_since(r.queued))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic() -> Topic {
        Topic::new("work.a").unwrap()
    }

    fn new(topic: &Topic, id: u64) -> NewTask<'_> {
        NewTask {
            key: (MessageId::new(id), None),
            topic,
            group: None,
            publisher: "p",
        }
    }

    #[test]
    fn a_full_ring_forgets_its_oldest_record_and_its_open_delivery() {
        let t = topic();
        let mut ring = TaskRing::new(2);
        let now = Instant::now();
        let worker = ClientId::new("w").unwrap();
        for id in 1..=3 {
            ring.dispatched(new(&t, id), DeliveryId::new(100 + id), &worker, now, 0);
            ring.check();
        }
        assert_eq!(ring.len(), 2);
        let page = ring.query(&TaskQuery::default());
        assert_eq!(page.forgotten, 1);
        let ids: Vec<_> = page.tasks.iter().map(|t| t.message_id).collect();
        assert_eq!(ids, [3, 2], "newest first, the oldest forgotten");
        assert!(
            ring.delivery_ended(DeliveryId::new(101), AttemptEnd::Acked, now)
                .is_none(),
            "news of a forgotten task is ignored"
        );
        let ended = ring
            .delivery_ended(DeliveryId::new(103), AttemptEnd::Acked, now)
            .unwrap();
        assert_eq!(ended.collector, worker);
        ring.check();
    }

    #[test]
    fn attempts_kept_are_bounded_but_deliveries_are_counted() {
        let t = topic();
        let mut ring = TaskRing::new(4);
        let now = Instant::now();
        let worker = ClientId::new("w").unwrap();
        for d in 0..(MAX_ATTEMPTS_KEPT as u64 + 3) {
            ring.dispatched(new(&t, 1), DeliveryId::new(10 + d), &worker, now, 0);
            ring.delivery_ended(DeliveryId::new(10 + d), AttemptEnd::Nacked, now);
        }
        let task = &ring.query(&TaskQuery::default()).tasks[0];
        assert_eq!(task.attempts.len(), MAX_ATTEMPTS_KEPT);
        assert_eq!(task.deliveries as usize, MAX_ATTEMPTS_KEPT + 3);
        assert_eq!(task.state, TaskState::Queued);
        ring.check();
    }
}
