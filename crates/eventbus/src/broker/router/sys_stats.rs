//! `_sys.stats`: a JSON summary of the broker the monitor's sampler
//! publishes every `monitor.stats_interval_ms` (off by default), as
//! mosquitto publishes `$SYS`: subscribers see the broker's state on the bus
//! itself, with no HTTP listener.

use prost::Message as _;

use std::time::Instant;

use super::lifecycle::BROKER_CLIENT_ID;
use super::{Clock, Router};
use crate::broker::queue::Queued;
use crate::codec::raw::{ReplyStamp, Stamped};
use crate::names::ClientId;
use crate::proto;
use crate::topic::Topic;

/// The topic the summary is published on.
pub const SYS_STATS_TOPIC: &str = "_sys.stats";

impl Router {
    /// Publishes the summary on [`SYS_STATS_TOPIC`] to whoever subscribes.
    pub(crate) fn publish_sys_stats(&mut self, now: Instant, rss: Option<u64>) {
        self.clock = Clock::at(now);
        self.settle_fanout_counts();
        let depth: u64 = self.queues.iter().map(|(_, g)| g.depth() as u64).sum();
        let payload = format!(
            concat!(
                r#"{{"uptime_ms":{},"connections":{},"queues":{},"published":{},"#,
                r#""delivered":{},"dropped":{},"depth":{},"in_flight":{},"#,
                r#""pending_requests":{},"queued_bytes":{},"rss_bytes":{}}}"#
            ),
            self.clock
                .now
                .saturating_duration_since(self.started)
                .as_millis(),
            self.conns.iter().count(),
            self.queues.iter().count(),
            self.totals.published,
            self.totals.delivered,
            self.totals.dropped,
            depth,
            self.in_flight.len(),
            self.requests.len(),
            self.usage.total().bytes,
            rss.unwrap_or(0),
        );
        let topic = Topic::new(SYS_STATS_TOPIC).expect("a valid topic");
        let envelope = proto::Envelope {
            topic: SYS_STATS_TOPIC.to_owned(),
            payload: payload.into(),
            ..Default::default()
        };
        let message = Stamped {
            envelope: envelope.encode_to_vec().into(),
            topic: topic.clone(),
            id: self.ids.message().get(),
            source: ClientId::new(BROKER_CLIENT_ID).expect("a valid client id"),
            timestamp_us: self.clock.wall_us,
            attempt: 1,
            reply: ReplyStamp::None,
        };
        let _ = self.route(&topic, Queued::new(message), None);
    }
}
