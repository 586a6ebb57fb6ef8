//! What the fleet scenarios share: bridges started and awaited until
//! connected, their status, numbered events and the tally of what arrived.

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::fleet::{BridgeConfig, BridgeStatus, Fleet, Node};
use eventbus::{Client, Subscription};
use eventbus_harness::{DEADLINE, next_within};
use tokio::time::Instant;

/// How long a stream must stay quiet to count as drained.
pub const QUIET: Duration = Duration::from_secs(1);

/// Starts node `i`'s bridge with `config` and waits until its status says
/// it is connected to NATS.
pub async fn start_bridge(fleet: &mut Fleet, i: usize, config: BridgeConfig) {
    let node = fleet.node_mut(i);
    let mut status = statuses(node).await;
    node.start_bridge(&config).await;
    wait_status(node, &mut status, "connected", BridgeStatus::connected).await;
}

/// A subscription to node's bridge status topic.
pub async fn statuses(node: &Node) -> Subscription {
    let client = node
        .cluster()
        .client(&format!("status-{}", node.name()))
        .await;
    let topic = node.bridge_config().status_topic();
    // The client lives as long as the subscription, which holds a handle to it.
    client
        .subscribe(topic.as_str())
        .await
        .unwrap_or_else(|e| panic!("subscribe {topic}: {e}"))
}

/// The first status on `sub` for which `want` holds. Panics past [`DEADLINE`].
pub async fn wait_status(
    node: &Node,
    sub: &mut Subscription,
    what: &str,
    want: impl Fn(&BridgeStatus) -> bool,
) -> BridgeStatus {
    let end = Instant::now() + DEADLINE;
    let mut last = None;
    while Instant::now() < end {
        let Some(message) = next_within(sub, end - Instant::now()).await else {
            break;
        };
        if let Some(status) = BridgeStatus::parse(message.payload()) {
            if want(&status) {
                return status;
            }
            last = Some(status);
        }
    }
    panic!(
        "{}'s bridge never {what}; last status {last:?}",
        node.name()
    );
}

/// A client of node `i`'s broker.
pub async fn client(fleet: &Fleet, i: usize, id: &str) -> Client {
    fleet.node(i).cluster().client(id).await
}

/// `<publisher>:<seq>`, the payload of a numbered event.
pub fn numbered(publisher: &str, seq: u64) -> String {
    format!("{publisher}:{seq}")
}

/// Publishes `n` numbered events on `topic`, each confirmed by the local
/// broker, optionally paced to `rate` per second.
pub async fn publish_numbered(
    client: &Client,
    topic: &str,
    publisher: &str,
    n: u64,
    rate: Option<u32>,
) {
    let start = Instant::now();
    for seq in 0..n {
        if let Some(rate) = rate {
            tokio::time::sleep_until(start + Duration::from_secs_f64(seq as f64 / f64::from(rate)))
                .await;
        }
        client
            .publish_confirmed(topic, numbered(publisher, seq))
            .await
            .unwrap_or_else(|e| panic!("publish {topic} #{seq}: {e}"));
    }
}

/// What a subscriber received, per publisher, in arrival order, with the
/// arrival time of each.
#[derive(Debug, Default)]
pub struct Received {
    /// Sequence numbers per publisher, in arrival order.
    pub seqs: BTreeMap<String, Vec<u64>>,
    /// When each of `seqs` arrived, in the same order.
    pub arrivals: BTreeMap<String, Vec<Instant>>,
    /// When the last message arrived.
    pub last_at: Option<Instant>,
    /// Payloads that were not numbered events.
    pub junk: u64,
}

impl Received {
    /// Every message received.
    pub fn total(&self) -> usize {
        self.seqs.values().map(Vec::len).sum()
    }

    /// When the last of `publisher`'s events numbered below `below` first
    /// arrived; `None` if one of them never did.
    pub fn all_below_by(&self, publisher: &str, below: u64) -> Option<Instant> {
        let seqs = self.seqs.get(publisher)?;
        let arrivals = self.arrivals.get(publisher)?;
        let mut first: BTreeMap<u64, Instant> = BTreeMap::new();
        for (&seq, &at) in seqs.iter().zip(arrivals) {
            if seq < below {
                first.entry(seq).or_insert(at);
            }
        }
        (first.len() as u64 == below)
            .then(|| first.values().copied().max())
            .flatten()
    }

    /// `publisher`'s tally against `sent` events.
    pub fn tally(&self, publisher: &str, sent: u64) -> Tally {
        let seqs = self
            .seqs
            .get(publisher)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut seen = vec![0u32; sent as usize];
        let mut out_of_order = 0;
        let mut highest: Option<u64> = None;
        for &seq in seqs {
            if let Some(count) = seen.get_mut(seq as usize) {
                // A redelivered duplicate is not a reordering; a first
                // arrival below the highest seen so far is.
                if *count == 0 && highest.is_some_and(|h| seq < h) {
                    out_of_order += 1;
                }
                *count += 1;
            }
            highest = highest.max(Some(seq));
        }
        Tally {
            lost: seen.iter().filter(|&&c| c == 0).count() as u64,
            duplicated: seen.iter().map(|&c| u64::from(c.saturating_sub(1))).sum(),
            out_of_order,
        }
    }
}

/// Lost, duplicated and reordered events of one publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Sent but never received.
    pub lost: u64,
    /// Received more than once (extra copies).
    pub duplicated: u64,
    /// First arrivals below a sequence number already seen.
    pub out_of_order: u64,
}

/// Reads `sub` until `want` messages arrived and then [`QUIET`] passed with
/// no more (so duplicates show), or until `deadline`.
pub async fn receive(sub: &mut Subscription, want: usize, deadline: Duration) -> Received {
    let end = Instant::now() + deadline;
    let mut received = Received::default();
    loop {
        let now = Instant::now();
        if now >= end {
            return received;
        }
        let wait = if received.total() >= want {
            QUIET.min(end - now)
        } else {
            end - now
        };
        let Some(message) = next_within(sub, wait).await else {
            return received;
        };
        received.last_at = Some(Instant::now());
        let text = String::from_utf8_lossy(message.payload());
        match text
            .rsplit_once(':')
            .and_then(|(p, s)| Some((p, s.parse::<u64>().ok()?)))
        {
            Some((publisher, seq)) => {
                received
                    .seqs
                    .entry(publisher.to_owned())
                    .or_default()
                    .push(seq);
                let at = received.last_at.unwrap_or_else(Instant::now);
                received
                    .arrivals
                    .entry(publisher.to_owned())
                    .or_default()
                    .push(at);
            }
            None => received.junk += 1,
        }
    }
}

/// Publishes on `topic` through `client` every 100 ms until every one of
/// `subs` has received one: core NATS interest crosses the routes
/// asynchronously, so an at-most-once scenario warms its path up first.
/// The warm-up messages are consumed. Panics past [`DEADLINE`].
pub async fn warm_up(client: &Client, topic: &str, subs: &mut [Subscription]) {
    let end = Instant::now() + DEADLINE;
    let mut arrived = vec![false; subs.len()];
    while !arrived.iter().all(|&a| a) {
        assert!(
            Instant::now() < end,
            "the warm-up on {topic} never reached every node: {arrived:?}"
        );
        client
            .publish(topic, "warm-up")
            .unwrap_or_else(|e| panic!("publish {topic}: {e}"));
        for (sub, seen) in subs.iter_mut().zip(arrived.iter_mut()) {
            while next_within(sub, Duration::from_millis(50)).await.is_some() {
                *seen = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_counts_losses_duplicates_and_reorderings() {
        let mut received = Received::default();
        received.seqs.insert("p".into(), vec![0, 2, 1, 2, 4, 4]);
        let tally = received.tally("p", 6);
        assert_eq!(
            tally,
            Tally {
                lost: 2,
                duplicated: 2,
                out_of_order: 1
            }
        );
        assert_eq!(
            received.tally("other", 2),
            Tally {
                lost: 2,
                duplicated: 0,
                out_of_order: 0
            }
        );
        let t0 = Instant::now();
        let at: Vec<Instant> = (0..6).map(|k| t0 + Duration::from_secs(k)).collect();
        received.arrivals.insert("p".into(), at);
        // 0 at t0, 2 at t0+1s, 1 at t0+2s.
        assert_eq!(
            received.all_below_by("p", 2),
            Some(t0 + Duration::from_secs(2))
        );
        assert_eq!(received.all_below_by("p", 4), None, "3 never arrived");
    }
}
