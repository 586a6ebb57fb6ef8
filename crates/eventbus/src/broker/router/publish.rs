//! Publishing: routing a message to plain subscribers, queue groups or one client.

use super::*;

impl Router {
    /// Publishes, or hands the frame back with the wait allowed when a full queue
    /// with the `block` policy must make room first.
    pub(super) fn publish(
        &mut self,
        conn: ConnId,
        p: proto::Publish,
    ) -> Result<Option<(proto::Publish, Duration)>, (u64, Refusal)> {
        let seq = p.seq;
        let fail = |r: Refusal| Err((seq, r));
        if self.draining {
            return fail(Refusal::new(
                ErrorCode::ShuttingDown,
                "broker is shutting down",
            ));
        }
        let Some(raw_topic) = p.message.as_ref().map(|m| m.topic.as_str()) else {
            return fail(Refusal::new(
                ErrorCode::InvalidArgument,
                "publish without a message",
            ));
        };
        let topic = match Topic::new(raw_topic) {
            Ok(t) => t,
            Err(e) => return fail(Refusal::new(ErrorCode::InvalidTopic, e.to_string())),
        };
        if self.blocking_groups > 0
            && p.target_client.is_empty()
            && let Some((_, timeout)) = self.blocking_group(&topic)
        {
            return Ok(Some((p, timeout)));
        }
        let mode = PublishMode::try_from(p.mode).unwrap_or(PublishMode::FireAndForget);
        let mut msg = p.message.expect("checked above");
        let c = self.conns.get_mut(&conn).expect("checked by handle");
        c.counters.published += 1;
        msg.id = self.next_id;
        self.next_id += 1;
        msg.source = c.client_id.as_str().to_owned();
        msg.timestamp_us = self.clock_us;
        msg.attempt = 1;
        self.totals.published += 1;
        let request = matches!(mode, PublishMode::Request | PublishMode::RequestConfirmed);
        if request {
            if self.requests.len() >= self.config.max_pending_requests {
                return fail(
                    Refusal::new(ErrorCode::QueueFull, "too many requests awaiting replies")
                        .detail("max_len", self.config.max_pending_requests),
                );
            }
            msg.correlation_id = msg.id;
            msg.reply_to = msg.source.clone();
        }
        let message_id = msg.id;
        if !p.target_client.is_empty() {
            let routed = self.direct(&p.target_client, msg);
            self.count_topic(topic, 0);
            routed.map_err(|r| (seq, r))?;
        } else {
            let routed = self.route(&topic, msg);
            let delivered = *routed.as_ref().unwrap_or(&0);
            if delivered == 0 && request {
                self.count_topic(topic.clone(), 0);
                return fail(
                    Refusal::new(
                        ErrorCode::NoResponders,
                        format!("no subscriber for topic {topic}"),
                    )
                    .detail("topic", &topic),
                );
            }
            self.count_topic(topic, delivered);
            routed.map_err(|r| (seq, r))?;
        }
        if request {
            let timeout = match p.timeout_ms {
                0 => Duration::from_secs(30),
                ms => Duration::from_millis(u64::from(ms)),
            };
            let deadline = Instant::now() + timeout;
            self.requests.insert(
                message_id,
                PendingRequest {
                    conn,
                    seq,
                    deadline,
                },
            );
            self.due_by(deadline);
            if mode == PublishMode::RequestConfirmed {
                self.send(conn, ok(seq, message_id));
            }
        } else if mode == PublishMode::Confirmed {
            self.send(conn, ok(seq, message_id));
        }
        Ok(None)
    }

    /// Counts one publish on `topic` and its deliveries: one hash lookup, and a
    /// new entry only while fewer than `MAX_TRACKED_TOPICS` are tracked.
    pub(super) fn count_topic(&mut self, topic: Topic, delivered: u64) {
        self.count_topic_n(topic, 1, delivered);
    }

    /// Counts `published` publishes on `topic` and their `delivered` deliveries.
    pub(super) fn count_topic_n(&mut self, topic: Topic, published: u64, delivered: u64) {
        if let Some(counts) = self.topics.get_mut(&topic) {
            counts.0 += published;
            counts.1 += delivered;
        } else if self.topics.len() < MAX_TRACKED_TOPICS {
            self.topics.insert(topic, (published, delivered));
        }
    }

    /// A full queue group with the `block` policy that `topic` would go to, with
    /// its block timeout.
    pub(super) fn blocking_group(&mut self, topic: &Topic) -> Option<(u64, Duration)> {
        let mut targets = std::mem::take(&mut self.scratch);
        self.index.extend_matches(topic, &mut targets);
        let found = targets.drain(..).find_map(|t| match t {
            Target::Group(gid) => self.groups.get(&gid).and_then(|g| {
                let p = g.policy();
                (p.overflow == OverflowPolicy::Block && g.is_full())
                    .then_some((gid, p.block_timeout))
            }),
            Target::Plain { .. } => None,
        });
        targets.clear();
        self.scratch = targets;
        found
    }

    /// Refuses a publish whose blocking wait ran out.
    pub(crate) fn refuse_blocked(&mut self, conn: ConnId, p: proto::Publish, waited: Duration) {
        let topic = p
            .message
            .as_ref()
            .map(|m| m.topic.clone())
            .unwrap_or_default();
        let blocked = Topic::new(&topic)
            .ok()
            .and_then(|t| self.blocking_group(&t));
        let (group, max_len) = match blocked.and_then(|(gid, _)| self.groups.get_mut(&gid)) {
            Some(g) => {
                g.counters.rejected += 1;
                (g.name.to_string(), g.policy().max_len)
            }
            None => (String::new(), 0),
        };
        let refusal = Refusal::new(
            ErrorCode::BlockTimeout,
            format!(
                "queue for {topic} (group {group}) stayed full ({max_len} messages) for {waited:?}"
            ),
        )
        .detail("topic", topic)
        .detail("group", group)
        .detail("max_len", max_len)
        .detail("waited_ms", waited.as_millis());
        self.send(conn, refusal.into_frame(p.seq));
    }

    /// Delivers `msg` to every matching target; returns how many took it.
    ///
    /// A message one of its queue groups would refuse (full, `reject` or a
    /// timed-out `block`) goes nowhere and is refused as a whole: a publisher
    /// told `QueueFull` knows no copy went out, and one told `Ok` knows every
    /// matching group holds its task.
    pub(super) fn route(
        &mut self,
        topic: &Topic,
        msg: Box<proto::Envelope>,
    ) -> Result<u64, Refusal> {
        let mut targets = std::mem::take(&mut self.scratch);
        self.index.extend_matches(topic, &mut targets);
        let refusing = targets.iter().find_map(|t| match *t {
            Target::Group(gid) => self.groups.get(&gid).and_then(|g| {
                let refuses = matches!(
                    g.policy().overflow,
                    OverflowPolicy::Reject | OverflowPolicy::Block
                );
                (refuses && g.is_full()).then_some(gid)
            }),
            Target::Plain { .. } => None,
        });
        if let Some(gid) = refusing {
            targets.clear();
            self.scratch = targets;
            // `enqueue` decides as checked above: this counts and returns the refusal.
            return self.enqueue(gid, topic, msg).map(|()| 1);
        }
        let mut delivered = 0;
        let mut refusal = None;
        let mut msg = Some(msg);
        let last = targets.len().saturating_sub(1);
        for (i, target) in targets.drain(..).enumerate() {
            let m = if i == last {
                msg.take().expect("taken once, at the last target")
            } else {
                msg.clone().expect("present until the last target")
            };
            match target {
                Target::Plain { conn, sid } => {
                    match self.deliver_plain(conn, topic, deliver(sid, m)) {
                        Ok(true) => delivered += 1,
                        Ok(false) => {}
                        Err(r) => refusal = Some(r),
                    }
                }
                Target::Group(gid) => match self.enqueue(gid, topic, m) {
                    Ok(()) => delivered += 1,
                    Err(r) => refusal = Some(r),
                },
            }
        }
        self.scratch = targets;
        match refusal {
            Some(r) if delivered == 0 => Err(r),
            _ => Ok(delivered),
        }
    }

    /// Queues a fan-out delivery (`item`: the `Deliver` frame, maybe already
    /// encoded) for `conn`, under its overflow policy.
    pub(super) fn deliver_plain(
        &mut self,
        conn: ConnId,
        topic: &Topic,
        item: Outgoing,
    ) -> Result<bool, Refusal> {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Ok(false);
        };
        let pushed = c.out.push_droppable(item);
        if matches!(pushed, Ok(Pushed::Queued | Pushed::EvictedOldest)) && !c.touched {
            c.touched = true;
            self.touched.push(conn);
        }
        match pushed {
            Ok(Pushed::Queued) => {
                c.counters.delivered += 1;
                self.totals.delivered += 1;
                return Ok(true);
            }
            Ok(Pushed::EvictedOldest) => self.note_slow_consumer(conn),
            Ok(Pushed::DroppedIncoming) => {
                self.note_slow_consumer(conn);
                return Ok(false);
            }
            Err(PushError::Full { max_len }) => {
                let client = c.client_id.clone();
                self.note_slow_consumer(conn);
                return Err(Refusal::new(
                    ErrorCode::QueueFull,
                    format!("outbound buffer of subscriber {client} is full: {max_len} messages; topic {topic}"),
                )
                .detail("topic", topic)
                .detail("group", format!("subscriber:{client}"))
                .detail("max_len", max_len));
            }
            Err(PushError::Closed) => return Ok(false),
            Err(PushError::TooSlow { .. }) => {
                self.doomed
                    .push((conn, "too slow: outbound buffer at its hard cap"));
                return Ok(false);
            }
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.counters.delivered += 1;
        }
        self.totals.delivered += 1;
        Ok(true)
    }

    pub(super) fn enqueue(
        &mut self,
        gid: u64,
        topic: &Topic,
        message: Box<proto::Envelope>,
    ) -> Result<(), Refusal> {
        let group = self.groups.get_mut(&gid).expect("indexed groups exist");
        match group.enqueue(message) {
            Enqueued::Queued | Enqueued::EvictedOldest => {}
            Enqueued::DroppedIncoming => {
                self.totals.dropped += 1;
                return Ok(());
            }
            Enqueued::Rejected => {
                let max_len = group.policy().max_len;
                return Err(Refusal::new(
                    ErrorCode::QueueFull,
                    format!(
                        "queue {} (group {}) is full: {max_len} messages waiting; topic {topic}",
                        group.filter, group.name
                    ),
                )
                .detail("topic", topic)
                .detail("group", &group.name)
                .detail("max_len", max_len));
            }
        }
        self.pump(gid);
        Ok(())
    }

    /// Hands waiting messages of a group to members with credit.
    pub(super) fn pump(&mut self, gid: u64) {
        let mut dispatched = false;
        while let Some(group) = self.groups.get_mut(&gid) {
            let Some((conn, sid, message)) = group.next_dispatch() else {
                break;
            };
            dispatched = true;
            let delivery_id = self.next_id();
            self.totals.delivered += 1;
            self.send_delivery(conn, sid, delivery_id, Some(gid), message);
        }
        if dispatched && self.blocking_groups > 0 {
            self.space.notify_waiters();
        }
    }

    pub(super) fn send_delivery(
        &mut self,
        conn: ConnId,
        sid: u64,
        delivery_id: u64,
        group: Option<u64>,
        message: Box<proto::Envelope>,
    ) {
        let frame = Frame {
            kind: Some(Kind::Deliver(proto::Deliver {
                sid,
                delivery_id,
                message: Some(message.clone()),
            })),
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.counters.delivered += 1;
            c.in_flight += 1;
            if group.is_none() {
                c.direct_in_flight += 1;
            }
        }
        let deadline = group
            .and_then(|gid| self.groups.get(&gid))
            .and_then(|g| g.policy().ack_timeout)
            .map(|t| Instant::now() + t);
        if let Some(d) = deadline {
            self.next_ack_deadline = Some(self.next_ack_deadline.map_or(d, |n| n.min(d)));
            self.due_by(d);
        }
        self.in_flight.insert(
            delivery_id,
            InFlight {
                conn,
                sid,
                group,
                message,
                deadline,
            },
        );
        self.send(conn, frame);
    }

    pub(super) fn direct(
        &mut self,
        target: &str,
        msg: Box<proto::Envelope>,
    ) -> Result<(), Refusal> {
        let conn = ClientId::new(target)
            .ok()
            .and_then(|id| self.by_client.get(&id).copied())
            .ok_or_else(|| {
                Refusal::new(
                    ErrorCode::NoSuchClient,
                    format!("no connected client {target:?}"),
                )
                .detail("client_id", target)
            })?;
        let max = self.config.max_direct_in_flight;
        if self.conns[&conn].direct_in_flight >= max {
            return Err(Refusal::new(
                ErrorCode::QueueFull,
                format!("direct inbox of {target} is full: {max} messages unsettled"),
            )
            .detail("topic", &msg.topic)
            .detail("group", format!("direct:{target}"))
            .detail("max_len", max));
        }
        let delivery_id = self.next_id();
        self.totals.delivered += 1;
        self.send_delivery(conn, 0, delivery_id, None, msg);
        Ok(())
    }

    /// Returns the credit a settled or withdrawn delivery held on its connection.
    pub(super) fn release(&mut self, f: &InFlight) {
        if let Some(c) = self.conns.get_mut(&f.conn) {
            c.in_flight = c.in_flight.saturating_sub(1);
            if f.group.is_none() {
                c.direct_in_flight = c.direct_in_flight.saturating_sub(1);
            }
        }
    }
}

/// The `Deliver` frame of a fan-out delivery on plain subscription `sid`.
fn deliver(sid: u64, message: Box<proto::Envelope>) -> Outgoing {
    Outgoing::Frame(Frame {
        kind: Some(Kind::Deliver(proto::Deliver {
            sid,
            delivery_id: 0,
            message: Some(message),
        })),
    })
}
