//! Settling deliveries: acks, nacks, replies and cancellation.

use super::*;

impl Router {
    /// Takes a delivery back from its holder: its credit is returned and the
    /// holder is told (`Cancel`), so its late ack or reply will be refused.
    fn withdraw(&mut self, f: &InFlight) {
        self.release(f);
        self.send(
            f.conn,
            Frame {
                kind: Some(Kind::Cancel(proto::Cancel {
                    seq: 0,
                    message_id: f.message.id,
                })),
            },
        );
    }

    /// Puts a message taken back from its holder at the front of its group's queue
    /// with the attempt count raised, or dead-letters it after `max_attempts`.
    /// The caller pumps the group.
    pub(super) fn redeliver(&mut self, gid: u64, message: Box<proto::Envelope>, reason: &str) {
        let Some(group) = self.groups.get_mut(&gid) else {
            return;
        };
        let max = group.policy().max_attempts;
        if max > 0 && message.attempt >= max {
            self.dead_letter(gid, message, &format!("{reason}; {max} attempts used"));
        } else {
            group.requeue_front(message);
        }
    }

    /// Publishes a message that cannot be processed on `_sys.dead-letter.<group>`,
    /// with the reason and attempt count in its headers; a requester waiting on it
    /// gets `DeadLettered` at once.
    pub(super) fn dead_letter(
        &mut self,
        gid: u64,
        mut message: Box<proto::Envelope>,
        reason: &str,
    ) {
        let Some(group) = self.groups.get_mut(&gid) else {
            return;
        };
        group.counters.dead_lettered += 1;
        let group_name = group.name.to_string();
        let id = message.id;
        if let Some(pending) = self.requests.remove(&id) {
            self.send(
                pending.conn,
                Refusal::new(
                    ErrorCode::DeadLettered,
                    format!("message {id} dead-lettered: {reason}"),
                )
                .detail("message_id", id)
                .detail("reason", reason)
                .detail("attempts", message.attempt)
                .into_frame(pending.seq),
            );
        }
        tracing::info!(message_id = id, group = %group_name, reason, "dead-lettering");
        let headers = &mut message.headers;
        headers.insert("x-dead-letter-reason".to_owned(), reason.to_owned());
        headers.insert("x-attempts".to_owned(), message.attempt.to_string());
        headers.insert("x-original-topic".to_owned(), message.topic.clone());
        headers.insert("x-group".to_owned(), group_name.clone());
        message.topic = format!("{DEAD_LETTER_PREFIX}.{group_name}");
        message.reply_to.clear();
        message.correlation_id = 0;
        if let Ok(topic) = Topic::new(&message.topic) {
            let _ = self.route(&topic, message);
        }
    }

    /// Takes back every group delivery whose ack timeout has passed, tells its
    /// holder, and redelivers it.
    pub(super) fn expire_deliveries(&mut self, now: Instant) {
        if self.next_ack_deadline.is_none_or(|d| d > now) {
            return;
        }
        let mut next = None;
        let expired: Vec<u64> = self
            .in_flight
            .iter()
            .filter_map(|(&id, f)| match f.deadline {
                Some(d) if d <= now => Some(id),
                Some(d) => {
                    next = Some(next.map_or(d, |n: Instant| n.min(d)));
                    None
                }
                None => None,
            })
            .collect();
        self.next_ack_deadline = next;
        for id in expired {
            let f = self.in_flight.remove(&id).expect("collected above");
            self.withdraw(&f);
            if let Some(gid) = f.group {
                if let Some(group) = self.groups.get_mut(&gid) {
                    group.release(f.conn, f.sid);
                }
                self.redeliver(gid, f.message, "ack timeout");
                self.pump(gid);
            }
        }
    }

    pub(super) fn settle(
        &mut self,
        conn: ConnId,
        delivery_id: u64,
        seq: u64,
        how: Settle,
    ) -> Result<(), (u64, Refusal)> {
        let owned = self
            .in_flight
            .get(&delivery_id)
            .is_some_and(|f| f.conn == conn);
        if !owned {
            return Err((
                seq,
                Refusal::new(
                    ErrorCode::UnknownDelivery,
                    format!("delivery {delivery_id} is not in flight to this client"),
                )
                .detail("delivery_id", delivery_id),
            ));
        }
        let f = self.in_flight.remove(&delivery_id).expect("checked");
        self.release(&f);
        if how == Settle::Ack
            && let Some(c) = self.conns.get_mut(&conn)
        {
            c.counters.acked += 1;
        }
        if f.group.is_none() && how != Settle::Ack {
            // A direct message handed back has nowhere else to go: its requester,
            // if any, learns it at once instead of waiting for a timeout.
            if let Some(pending) = self.requests.remove(&f.message.id) {
                let holder = self
                    .conns
                    .get(&conn)
                    .map(|c| c.client_id.to_string())
                    .unwrap_or_default();
                self.send(
                    pending.conn,
                    Refusal::new(
                        ErrorCode::NoResponders,
                        format!("client {holder} handed the direct message back"),
                    )
                    .detail("client_id", holder)
                    .into_frame(pending.seq),
                );
            }
        }
        if let Some(gid) = f.group
            && let Some(group) = self.groups.get_mut(&gid)
        {
            group.settle(conn, f.sid, how == Settle::Ack);
            match how {
                Settle::Ack => {}
                Settle::Requeue => self.redeliver(gid, f.message, "nacked"),
                Settle::Drop => self.dead_letter(gid, f.message, "rejected by the consumer"),
            }
            self.pump(gid);
        }
        if seq != 0 {
            self.send(conn, ok(seq, 0));
        }
        Ok(())
    }

    pub(super) fn reply(&mut self, conn: ConnId, r: proto::Reply) -> Result<(), (u64, Refusal)> {
        if r.delivery_id != 0 {
            self.settle(conn, r.delivery_id, 0, Settle::Ack)?;
        }
        let Some(pending) = self.requests.remove(&r.correlation_id) else {
            return Err((
                r.seq,
                Refusal::new(
                    ErrorCode::UnknownMessage,
                    format!("request {} is not awaiting a reply", r.correlation_id),
                ),
            ));
        };
        let source = self.conns[&conn].client_id.as_str().to_owned();
        let mut message = r.message.unwrap_or_default();
        message.source = source;
        message.correlation_id = pending.seq;
        message.timestamp_us = now_us();
        self.send(
            pending.conn,
            Frame {
                kind: Some(Kind::Reply(proto::Reply {
                    correlation_id: pending.seq,
                    delivery_id: 0,
                    message: Some(message),
                    seq: 0,
                })),
            },
        );
        if r.seq != 0 {
            self.send(conn, ok(r.seq, 0));
        }
        Ok(())
    }

    pub(super) fn cancel(&mut self, conn: ConnId, c: proto::Cancel) -> Result<(), (u64, Refusal)> {
        let id = c.message_id;
        let waiting = self
            .groups
            .values_mut()
            .find_map(|g| g.remove_waiting(id).map(|_| g));
        let found = if let Some(group) = waiting {
            group.counters.cancelled += 1;
            true
        } else if let Some((&delivery_id, _)) =
            self.in_flight.iter().find(|(_, f)| f.message.id == id)
        {
            let f = self.in_flight.remove(&delivery_id).expect("found above");
            if let Some(gid) = f.group
                && let Some(group) = self.groups.get_mut(&gid)
            {
                group.settle(f.conn, f.sid, false);
                group.counters.cancelled += 1;
            }
            self.withdraw(&f);
            if let Some(gid) = f.group {
                self.pump(gid);
            }
            true
        } else {
            false
        };
        if !found {
            return Err((
                c.seq,
                Refusal::new(
                    ErrorCode::UnknownMessage,
                    format!("message {id} is neither queued nor in flight"),
                )
                .detail("message_id", id),
            ));
        }
        if let Some(pending) = self.requests.remove(&id) {
            self.send(
                pending.conn,
                Refusal::new(ErrorCode::Cancelled, format!("request {id} was cancelled"))
                    .detail("message_id", id)
                    .into_frame(pending.seq),
            );
        }
        self.send(conn, ok(c.seq, id));
        Ok(())
    }
}

/// How a delivery is finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Settle {
    Ack,
    Requeue,
    Drop,
}
