//! The fan-out fast path: a fire-and-forget publish whose topic only plain
//! subscriptions match goes to them through a route kept while its topic
//! repeats and the subscription index is unchanged, so such a publish costs
//! no index lookup. It counts, stamps and applies every subscriber's
//! overflow policy exactly as the general path does; anything else — queue
//! groups, a message too large for a subscriber, a topic the publisher may
//! not use — takes the general path (`publish.rs`), which routes or refuses.

use super::counters::TopicCount;
use super::{Router, Target};
use crate::broker::command::Publish;
use crate::broker::ids::{ConnId, Seq, SubscriptionId};
use crate::codec::raw::{ReplyStamp, StampedDeliver};
use crate::framed::Outgoing;
use crate::topic::Topic;

impl Router {
    /// Delivers `p` to the plain subscriptions its topic matches; returns
    /// `false`, having done nothing, when the fast path does not apply.
    pub(super) fn fan_out(&mut self, conn: ConnId, p: &Publish) -> bool {
        let Some(mut route) = self.route_for(&p.topic) else {
            return false;
        };
        let Some(c) = self.conns.get(conn) else {
            self.fanout_route = Some(route);
            return false;
        };
        let mut deliver = StampedDeliver {
            // The largest subscription id, for the size bound.
            sid: u64::MAX,
            delivery_id: 0,
            envelope: p.envelope.clone(),
            id: 0,
            source: c.client_id.clone(),
            timestamp_us: self.clock.wall_us,
            attempt: 1,
            reply: if p.reply_fields {
                ReplyStamp::Clear
            } else {
                ReplyStamp::None
            },
        };
        // Too large for a subscriber, or not allowed: the general path
        // refuses it.
        if deliver.frame_len() > route.min_frame
            || !c.principal.perms.publish.allows_topic(&route.topic)
        {
            self.fanout_route = Some(route);
            return false;
        }
        deliver.id = self.ids.message().get();
        let mut delivered = 0;
        let mut refusal = None;
        for &(to, sid) in &route.plain {
            let item = StampedDeliver {
                sid: sid.get(),
                ..deliver.clone()
            };
            match self.deliver_plain(to, &route.topic, Outgoing::Deliver(item)) {
                Ok(true) => delivered += 1,
                Ok(false) => {}
                Err(r) => refusal = Some(r),
            }
        }
        // As on the general path: refused everywhere (`reject` policy), the
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

    /// The plain subscriptions `topic` goes to, or `None` when a queue group
    /// matches it (the general path's job). Publishers repeat topics, so the
    /// last route is kept while the topic and the subscription index stay
    /// the same.
    fn route_for(&mut self, topic: &Topic) -> Option<Route> {
        let generation = self.index.generation();
        if let Some(route) = self.fanout_route.take() {
            if route.generation == generation && route.topic.as_str() == topic.as_str() {
                return Some(route);
            }
            if route.pending.published > 0 {
                self.topics.add(&route.topic, route.pending);
            }
        }
        let mut targets = std::mem::take(&mut self.scratch);
        self.index.extend_matches(topic, &mut targets);
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
        (!grouped).then(|| Route {
            topic: topic.clone(),
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
    pub(super) topic: Topic,
    generation: u64,
    /// `(connection, subscription id)` of every matching plain subscription.
    plain: Vec<(ConnId, SubscriptionId)>,
    /// The smallest frame limit among them.
    min_frame: usize,
    /// Publishes and deliveries on this route not yet in the topic stats
    /// (added when the route is replaced or stats are read).
    pub(super) pending: TopicCount,
}
