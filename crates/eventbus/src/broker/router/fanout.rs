//! The fan-out fast path: a fire-and-forget publish whose topic only plain
//! subscriptions match is delivered without decoding its envelope (see
//! `codec::raw`). It counts, stamps and applies every subscriber's overflow
//! policy exactly as [`publish`](Router::publish) does; anything else —
//! queue groups, a draining broker, an invalid topic — decodes the frame and
//! takes that path.

use super::*;
use crate::codec::raw::{RawPublish, Stamp, deliver_frame};

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
        if self.draining || !self.conns.contains_key(&conn) {
            return false;
        }
        let Ok(topic) = Topic::new(raw.topic()) else {
            return false;
        };
        let mut targets = std::mem::take(&mut self.scratch);
        self.index.extend_matches(&topic, &mut targets);
        if targets.iter().any(|t| matches!(t, Target::Group(_))) {
            targets.clear();
            self.scratch = targets;
            return false;
        }
        let id = self.next_id();
        let c = self.conns.get_mut(&conn).expect("checked above");
        c.counters.published += 1;
        let source = c.client_id.clone();
        self.totals.published += 1;
        let stamp = Stamp {
            id,
            source: source.as_str(),
            timestamp_us: self.clock_us,
        };
        let mut delivered = 0;
        let mut refusal = None;
        for target in targets.drain(..) {
            let Target::Plain { conn: to, sid } = target else {
                continue;
            };
            let frame = deliver_frame(sid, &raw.envelope, &stamp);
            match self.deliver_plain(to, &topic, Outgoing::Encoded(frame)) {
                Ok(true) => delivered += 1,
                Ok(false) => {}
                Err(r) => refusal = Some(r),
            }
        }
        self.scratch = targets;
        self.count_topic(topic, delivered);
        // As on the decoding path: refused everywhere (`reject` policy), the
        // publisher hears why, under the fire-and-forget `seq` 0.
        if let (0, Some(r)) = (delivered, refusal) {
            self.send(conn, r.into_frame(0));
        }
        true
    }
}
