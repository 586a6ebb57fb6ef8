//! Connection life cycle: reaping doomed connections, slow-consumer
//! announcements, disconnects and the periodic tick (heartbeats, dead peers,
//! expiries).

use super::*;

/// The longest the ticker sleeps, whatever is due.
pub(super) const MAX_TICK: Duration = Duration::from_secs(1);
/// The shortest: a deadline met exactly is handled on the next tick, not in a spin.
const MIN_TICK: Duration = Duration::from_millis(1);

impl Router {
    /// Closes connections that were found too slow or dead while handling frames.
    pub fn reap(&mut self) {
        while let Some((conn, reason)) = self.doomed.pop() {
            self.disconnect(conn, reason);
        }
        for payload in std::mem::take(&mut self.slow_announcements) {
            let message = Box::new(proto::Envelope {
                id: self.next_id(),
                topic: SLOW_CONSUMER_TOPIC.to_owned(),
                payload: payload.into(),
                source: "broker".to_owned(),
                timestamp_us: now_us(),
                attempt: 1,
                ..Default::default()
            });
            let topic = Topic::new(SLOW_CONSUMER_TOPIC).expect("a valid topic");
            let _ = self.route(&topic, message);
        }
    }

    /// Counts a message a subscriber's full buffer cost, and queues an
    /// announcement if this client was not announced in the last second.
    pub(super) fn note_slow_consumer(&mut self, conn: ConnId) {
        let max_len = self.config.subscriber.max_len;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.counters.dropped += 1;
        self.totals.dropped += 1;
        let now = Instant::now();
        if c.last_slow_announce
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        c.last_slow_announce = Some(now);
        c.counters.slow_consumer_events += 1;
        tracing::warn!(client = %c.client_id, dropped = c.counters.dropped, "slow consumer");
        self.slow_announcements.push(format!(
            r#"{{"client_id":"{}","dropped":{},"outbound_depth":{},"max_len":{max_len}}}"#,
            c.client_id,
            c.counters.dropped,
            c.out.depth()
        ));
    }

    /// Removes a connection and everything it held. Idempotent.
    ///
    /// Its queue deliveries in flight go back to the front of their queues at once.
    pub fn disconnect(&mut self, conn: ConnId, reason: &str) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        tracing::debug!(client = %c.client_id, reason, "closing connection");
        let sids: Vec<u64> = c.subs.keys().copied().collect();
        for sid in sids {
            self.drop_sub(conn, sid);
        }
        let direct: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.conn == conn)
            .map(|(&id, _)| id)
            .collect();
        let capabilities = std::mem::take(
            &mut self
                .conns
                .get_mut(&conn)
                .expect("checked above")
                .capabilities,
        );
        for id in direct {
            let f = self.in_flight.remove(&id).expect("collected above");
            self.hand_over_direct(&capabilities, f.message, reason);
        }
        self.requests.retain(|_, p| p.conn != conn);
        let c = self.conns.remove(&conn).expect("checked above");
        if self.by_client.get(&c.client_id) == Some(&conn) {
            self.by_client.remove(&c.client_id);
        }
        let _ = c.out.push(Frame {
            kind: Some(Kind::Goodbye(proto::Goodbye {
                reason: reason.to_owned(),
            })),
        });
        c.out.close();
        c.cancel.cancel();
    }

    /// Periodic work: heartbeats out, dead peers and expired requests out.
    /// Returns when it is due again: the earliest heartbeat, heartbeat limit,
    /// request or ack deadline (at most [`MAX_TICK`] away), so an idle broker
    /// sleeps instead of waking on a fixed beat.
    pub fn tick(&mut self, now: Instant) -> Instant {
        let mut next = now + MAX_TICK;
        for (&id, c) in &mut self.conns {
            let limit = c.last_seen + c.heartbeat * c.misses;
            if now > limit {
                self.doomed.push((id, "heartbeats missed"));
                continue;
            }
            if now >= c.next_heartbeat {
                c.next_heartbeat = now + c.heartbeat;
                if let Err(PushError::TooSlow { .. }) = c.out.push(Frame {
                    kind: Some(Kind::Heartbeat(proto::Heartbeat { nonce: 0 })),
                }) {
                    self.doomed
                        .push((id, "too slow: outbound buffer at its hard cap"));
                }
            }
            next = next.min(c.next_heartbeat).min(limit);
        }
        self.requests.retain(|_, p| {
            let pending = p.deadline > now;
            if pending {
                next = next.min(p.deadline);
            }
            pending
        });
        self.expire_deliveries(now);
        if let Some(d) = self.next_ack_deadline {
            next = next.min(d);
        }
        self.reap();
        self.next_tick = next.max(now + MIN_TICK);
        self.next_tick
    }

    /// Makes sure the ticker runs by `at`, waking it if it planned to sleep
    /// longer.
    pub(super) fn due_by(&mut self, at: Instant) {
        if at < self.next_tick {
            self.next_tick = at;
            self.ticker.notify_one();
        }
    }

    /// A direct message whose holder went away goes to a queue group named after
    /// one of the holder's capabilities whose filter matches its topic; with none,
    /// a waiting requester learns at once that nobody will answer.
    pub(super) fn hand_over_direct(
        &mut self,
        capabilities: &[String],
        message: Box<proto::Envelope>,
        reason: &str,
    ) {
        let topic = Topic::new(&message.topic).ok();
        let gid = self
            .groups
            .iter()
            .find(|(_, g)| {
                capabilities.iter().any(|c| c == g.name.as_str())
                    && topic.as_ref().is_some_and(|t| g.filter.matches(t))
            })
            .map(|(&gid, _)| gid);
        if let Some(gid) = gid {
            self.redeliver(gid, message, reason);
            self.pump(gid);
        } else if let Some(pending) = self.requests.remove(&message.id) {
            self.send(
                pending.conn,
                Refusal::new(
                    ErrorCode::NoResponders,
                    format!(
                        "the holder of direct message {} left ({reason}) and no group can take it",
                        message.id
                    ),
                )
                .detail("topic", &message.topic)
                .into_frame(pending.seq),
            );
        }
    }
}
