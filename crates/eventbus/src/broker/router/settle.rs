//! Settling deliveries: acks, nacks, replies and cancellation.

use super::*;

impl Router {
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
            if how == Settle::Requeue {
                group.requeue_front(f.message);
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
            self.release(&f);
            self.send(
                f.conn,
                Frame {
                    kind: Some(Kind::Cancel(proto::Cancel {
                        seq: 0,
                        message_id: id,
                    })),
                },
            );
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
