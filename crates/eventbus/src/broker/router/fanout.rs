//! The fan-out fast path: a fire-and-forget publish whose topic only plain
//! subscriptions match is delivered without decoding its envelope (see
//! `codec::raw`). It counts, stamps and applies every subscriber's overflow
//! policy exactly as the decoding path does; anything else — queue groups, a
//! draining broker, an invalid topic — decodes the frame into a
//! [`Command`] and takes that path.

use super::counters::TopicCount;
use super::{Applied, Router, Target};
use crate::broker::command::{Command, STAMP_ALLOWANCE, is_reserved_topic};
use crate::broker::ids::{ConnId, Seq, SubscriptionId};
use crate::codec::raw::{RawDeliver, RawPublish};
use crate::framed::Outgoing;
use crate::topic::Topic;

impl Router {
    /// Handles a publish the reader kept encoded.
    pub(super) fn fan_out(&mut self, conn: ConnId, raw: RawPublish) -> Applied {
        if self.fan_out_fast(conn, &raw) {
            return Applied::Done;
        }
        let wire_len = raw.body.len();
        match crate::codec::decode_body(raw.body) {
            Ok(frame) => self.apply(conn, Command::from_frame(frame, wire_len)),
            Err(e) => {
                // `scan_publish` only keeps what decodes; never expected.
                tracing::error!(error = %e, "a publish kept encoded does not decode");
                Applied::Done
            }
        }
    }

    /// Delivers `raw` to the plain subscriptions its topic matches; returns
    /// `false`, having done nothing, when the fast path does not apply.
    fn fan_out_fast(&mut self, conn: ConnId, raw: &RawPublish) -> bool {
        if self.draining {
            return false;
        }
        let Some(mut route) = self.route_for(raw) else {
            return false;
        };
        if raw.body.len() + STAMP_ALLOWANCE > route.min_frame {
            // Too large for a receiver: the decoding path refuses it.
            self.fanout_route = Some(route);
            return false;
        }
        let Some(c) = self.conns.get(conn) else {
            self.fanout_route = Some(route);
            return false;
        };
        // Not allowed: the decoding path refuses it.
        if !c.principal.perms.publish.allows_topic(&route.topic) {
            self.fanout_route = Some(route);
            return false;
        }
        let source = c.client_id.clone();
        let id = self.ids.message().get();
        let mut delivered = 0;
        let mut refusal = None;
        for &(to, sid) in &route.plain {
            let deliver = RawDeliver {
                sid: sid.get(),
                envelope: raw.envelope(),
                id,
                source: source.clone(),
                timestamp_us: self.clock.wall_us,
            };
            match self.deliver_plain(to, &route.topic, Outgoing::Deliver(deliver)) {
                Ok(true) => delivered += 1,
                Ok(false) => {}
                Err(r) => refusal = Some(r),
            }
        }
        // As on the decoding path: refused everywhere (`reject` policy), the
        // publisher hears why, under the fire-and-forget `seq` 0, and the
        // publish does not count as accepted.
        match (delivered, refusal) {
            (0, Some(r)) => self.refuse(conn, Seq::NONE, r.into()),
            _ => {
                if let Some(c) = self.conns.get_mut(conn) {
                    c.counters.published += 1;
                }
                self.totals.published += 1;
                route.pending.published += 1;
                route.pending.delivered += delivered;
            }
        }
        self.fanout_route = Some(route);
        true
    }

    /// The plain subscriptions `raw`'s topic goes to, or `None` when it is not a
    /// valid topic or a queue group matches it (the decoding path's job).
    /// Publishers repeat topics, so the last route is kept while the topic
    /// and the subscription index stay the same.
    fn route_for(&mut self, raw: &RawPublish) -> Option<Route> {
        let generation = self.index.generation();
        if let Some(route) = self.fanout_route.take() {
            if route.generation == generation
                && route.topic.as_str().as_bytes() == raw.topic_bytes()
            {
                return Some(route);
            }
            if route.pending.published > 0 {
                self.topics.add(&route.topic, route.pending);
            }
        }
        let topic = Topic::new(raw.topic()).ok()?;
        if is_reserved_topic(topic.as_str()) {
            return None;
        }
        let mut targets = std::mem::take(&mut self.scratch);
        self.index.extend_matches(&topic, &mut targets);
        let mut plain = Vec::with_capacity(targets.len());
        let mut grouped = false;
        let mut min_frame = usize::MAX;
        for target in targets.drain(..) {
            match target {
                Target::Plain { conn, sid } => {
                    plain.push((conn, sid));
                    if let Some(c) = self.conns.get(conn) {
                        min_frame = min_frame.min(c.max_frame);
                    }
                }
                Target::Group(_) => grouped = true,
            }
        }
        self.scratch = targets;
        (!grouped).then_some(Route {
            topic,
            generation,
            plain,
            min_frame,
            pending: TopicCount::default(),
        })
    }

    /// Adds what the cached route counted to the per-topic stats.
    pub(super) fn settle_fanout_counts(&mut self) {
        if let Some(route) = &mut self.fanout_route
            && route.pending.published > 0
        {
            let pending = std::mem::take(&mut route.pending);
            self.topics.add(&route.topic, pending);
        }
    }
}

/// Where publishes on one topic go, as of one generation of the index.
#[derive(Debug)]
pub(super) struct Route {
    topic: Topic,
    generation: u64,
    /// `(connection, subscription id)` of every matching plain subscription.
    plain: Vec<(ConnId, SubscriptionId)>,
    /// The smallest frame limit among them.
    min_frame: usize,
    /// Publishes and deliveries on this route not yet in the topic stats
    /// (added when the route is replaced or stats are read).
    pending: TopicCount,
}
