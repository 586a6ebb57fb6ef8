//! The fan-out fast path: a fire-and-forget publish whose topic only plain
//! subscriptions match is delivered without decoding its envelope (see
//! `codec::raw`). It counts, stamps and applies every subscriber's overflow
//! policy exactly as [`publish`](Router::publish) does; anything else —
//! queue groups, a draining broker, an invalid topic — decodes the frame and
//! takes that path.

use super::*;
use crate::codec::raw::{RawDeliver, RawPublish};

impl Router {
    /// Handles a publish the reader kept encoded.
    pub fn handle_raw(&mut self, conn: ConnId, raw: RawPublish) -> Handled {
        if self.fan_out(conn, &raw) {
            return Handled::Done;
        }
        match crate::codec::decode_body(raw.body) {
            Ok(frame) => self.handle(conn, frame),
            Err(e) => {
                // `scan_publish` only keeps what decodes; never expected.
                tracing::error!(error = %e, "a publish kept encoded does not decode");
                Handled::Done
            }
        }
    }

    /// Delivers `raw` to the plain subscriptions its topic matches; returns
    /// `false`, having done nothing, when the fast path does not apply.
    fn fan_out(&mut self, conn: ConnId, raw: &RawPublish) -> bool {
        if self.draining {
            return false;
        }
        let Some(mut route) = self.route_for(raw) else {
            return false;
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            self.fanout_route = Some(route);
            return false;
        };
        // Counted once the fast path is sure to apply: the decoding path counts its own.
        c.counters.published += 1;
        let source = c.client_id.clone();
        let id = self.next_id();
        self.totals.published += 1;
        let mut delivered = 0;
        let mut refusal = None;
        for &(to, sid) in &route.plain {
            let deliver = RawDeliver {
                sid,
                envelope: raw.envelope(),
                id,
                source: source.clone(),
                timestamp_us: self.clock_us,
            };
            match self.deliver_plain(to, &route.topic, Outgoing::Deliver(deliver)) {
                Ok(true) => delivered += 1,
                Ok(false) => {}
                Err(r) => refusal = Some(r),
            }
        }
        route.published += 1;
        route.delivered += delivered;
        self.fanout_route = Some(route);
        // As on the decoding path: refused everywhere (`reject` policy), the
        // publisher hears why, under the fire-and-forget `seq` 0.
        if let (0, Some(r)) = (delivered, refusal) {
            self.send(conn, r.into_frame(0));
        }
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
            self.count_topic_n(route.topic, route.published, route.delivered);
        }
        let topic = Topic::new(raw.topic()).ok()?;
        let mut targets = std::mem::take(&mut self.scratch);
        self.index.extend_matches(&topic, &mut targets);
        let mut plain = Vec::with_capacity(targets.len());
        let mut grouped = false;
        for target in targets.drain(..) {
            match target {
                Target::Plain { conn, sid } => plain.push((conn, sid)),
                Target::Group(_) => grouped = true,
            }
        }
        self.scratch = targets;
        (!grouped).then_some(Route {
            topic,
            generation,
            plain,
            published: 0,
            delivered: 0,
        })
    }

    /// Adds what the cached route counted to the per-topic stats.
    pub(crate) fn settle_fanout_counts(&mut self) {
        if let Some(route) = &mut self.fanout_route
            && route.published > 0
        {
            let (published, delivered) = (route.published, route.delivered);
            (route.published, route.delivered) = (0, 0);
            let topic = route.topic.clone();
            self.count_topic_n(topic, published, delivered);
        }
    }
}

/// Where publishes on one topic go, as of one generation of the index.
#[derive(Debug)]
pub(super) struct Route {
    topic: Topic,
    generation: u64,
    /// `(connection, subscription id)` of every matching plain subscription.
    plain: Vec<(ConnId, u64)>,
    /// Publishes and deliveries on this route not yet in the topic stats
    /// (added when the route is replaced or stats are read).
    published: u64,
    delivered: u64,
}
