//! Confirmations, and deliveries, held until what they stand on is on disk.
//!
//! A publish into a durable queue is confirmed (`Ok`) only once the journal
//! reports its record durable. A delivery from a durable queue leaves only
//! once its `Delivered` record is durable too, so a consumer never holds a
//! message whose attempt a crash could forget: after any crash it comes
//! back at attempt + 1, never again at the attempt the consumer saw. The router leaves such an `Ok` in
//! [`Effects`](super::effects::Effects) with the record's LSN; once the
//! router's lock is released it is handed here, and the journal's writer
//! thread releases it after the sync that covers it — or sends the refusal
//! instead, if the record could not be written. A confirmation handed over
//! after its sync was reported is released at once: this type remembers how
//! far the reports have gone.
//!
//! **Invariant:** every held confirmation is released exactly once, as its
//! `Ok` when its LSN is durable and as its refusal when it is not; none is
//! released before the report that covers its LSN.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use super::ids::Seq;
use super::journal::{Lsn, SyncReport};
use super::refusal::{PublishRefusal, Refusal};
use crate::framed::{Outbound, Outgoing};

/// A confirmation, or a delivery, waiting for its record.
#[derive(Debug)]
pub(crate) struct Held {
    pub lsn: Lsn,
    pub out: Arc<Outbound>,
    /// Sent when the record is durable.
    pub ok: Outgoing,
    /// What is sent instead when it could not be written.
    pub if_lost: IfLost,
}

/// What a held item becomes when its record could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IfLost {
    /// A `Storage` refusal of the confirmed command `seq`. Built only
    /// then: nearly every record is written, and a refusal's frame (its
    /// text and details) costs several allocations.
    Refuse(Seq),
    /// `ok` all the same: a delivery whose record failed still goes to its
    /// consumer, as it would from a non-durable queue, and a requester
    /// still learns the id its reply is kept under.
    SendOk,
}

impl IfLost {
    fn frame(self, ok: Outgoing, durable: bool) -> Outgoing {
        match self {
            Self::Refuse(seq) if !durable => {
                let refused: Refusal = PublishRefusal::Storage {
                    reason: "its record could not be written".to_owned(),
                }
                .into();
                refused.into_frame(seq).into()
            }
            _ => ok,
        }
    }
}

/// Connections that were handed held items whose records were reported
/// already: to be flushed once the router's lock is released
/// ([`send`](Self::send)). The items are queued on them already, in order.
#[derive(Debug, Default)]
#[must_use]
pub(crate) struct Due(Vec<Arc<Outbound>>);

impl Due {
    /// Flushes each connection once.
    pub(crate) fn send(self) {
        for out in self.0 {
            out.try_flush();
        }
    }
}

/// Failed ranges remembered for confirmations handed over after their
/// report (a handover is at most one piece of router work late).
const FAILED_RANGES: usize = 64;

#[derive(Debug, Default)]
struct State {
    /// Every LSN up to here has been reported.
    reported: Lsn,
    /// The latest ranges of records that were not written (a full disk
    /// fails a batch; later ones are tried again), oldest first.
    failed: VecDeque<(Lsn, Lsn)>,
    /// Held confirmations, in LSN order.
    held: VecDeque<Held>,
}

impl State {
    fn durable(&self, lsn: Lsn) -> bool {
        !self
            .failed
            .iter()
            .any(|&(from, to)| (from..=to).contains(&lsn))
    }
}

/// The confirmations of one broker, shared with the journal's writer.
#[derive(Debug, Default)]
pub(crate) struct Confirmations {
    state: Mutex<State>,
}

impl Confirmations {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes what a piece of router work held (in LSN order); returns
    /// those whose records were reported already, to be sent at once.
    /// Called under the router's lock, so items are queued here in the
    /// order the router made them (a consumer's deliveries stay in order).
    ///
    /// Those are queued on their connections here, under this type's lock,
    /// as [`synced`](Self::synced) queues what it releases: a connection's
    /// items are queued in LSN order whichever thread releases them (a
    /// delivery released by the writer's next sync never overtakes one
    /// handed over as already reported). Only the flush waits for the
    /// router's lock to be released.
    pub(crate) fn hold(&self, held: Vec<Held>) -> Due {
        let mut st = self.lock();
        let mut now = Vec::new();
        for h in held {
            if h.lsn <= st.reported {
                let durable = st.durable(h.lsn);
                now.push((h, durable));
            } else {
                st.held.push_back(h);
            }
        }
        let flush = queue_all(now);
        drop(st);
        Due(flush)
    }

    /// The journal reported `report`: releases what it covers.
    pub(crate) fn synced(&self, report: &SyncReport) {
        let mut st = self.lock();
        if let Some(failure) = &report.failed {
            if st.failed.len() == FAILED_RANGES {
                st.failed.pop_front();
            }
            st.failed.push_back((failure.from, report.last));
            tracing::error!(from = %failure.from, to = %report.last, error = %failure.error, "journal write failed: those durable publishes are refused");
        }
        st.reported = st.reported.max(report.last);
        let mut due = Vec::new();
        while st.held.front().is_some_and(|h| h.lsn <= st.reported) {
            let h = st.held.pop_front().expect("checked");
            let durable = st.durable(h.lsn);
            due.push((h, durable));
        }
        // Queued under the lock (see `hold`), flushed after it.
        let flush = queue_all(due);
        drop(st);
        for out in flush {
            out.try_flush();
        }
    }

    /// How far the journal's reports have gone.
    #[cfg(test)]
    pub(crate) fn reported(&self) -> Lsn {
        self.lock().reported
    }

    /// Confirmations waiting.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.lock().held.len()
    }
}

/// Queues each released item on its connection; returns the connections
/// to flush, once each. The caller flushes them: inline from its thread
/// (usually the journal's writer, right after its sync) when that
/// connection's writer task is idle, which spares waking the runtime for
/// the frame; else the writer task is woken.
fn queue_all(released: Vec<(Held, bool)>) -> Vec<Arc<Outbound>> {
    let mut flush: Vec<Arc<Outbound>> = Vec::new();
    for (h, durable) in released {
        let frame = h.if_lost.frame(h.ok, durable);
        if h.out.push_quiet(frame).is_ok() && !flush.iter().any(|o| Arc::ptr_eq(o, &h.out)) {
            flush.push(h.out);
        }
    }
    flush
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::BrokerConfig;
    use crate::broker::journal::{DiskError, SyncFailure};
    use crate::proto::{self, Frame, frame::Kind};

    fn frame(seq: u64) -> Frame {
        Frame {
            kind: Some(Kind::Ok(proto::Ok {
                seq,
                message_id: 0,
                result_kept: false,
            })),
        }
    }

    fn held(out: &Arc<Outbound>, lsn: u64) -> Held {
        Held {
            lsn: Lsn::new(lsn),
            out: out.clone(),
            ok: frame(lsn).into(),
            if_lost: IfLost::Refuse(Seq::new(1000 + lsn)),
        }
    }

    fn seqs(out: &Outbound) -> Vec<u64> {
        out.take_queued()
            .into_iter()
            .map(|o| match o {
                crate::framed::Outgoing::Frame(Frame {
                    kind: Some(Kind::Ok(ok)),
                }) => ok.seq,
                crate::framed::Outgoing::Frame(Frame {
                    kind: Some(Kind::Error(e)),
                }) => {
                    assert_eq!(e.code, proto::ErrorCode::Storage as i32);
                    e.seq
                }
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn report(first: u64, last: u64, failed_from: Option<u64>) -> SyncReport {
        SyncReport {
            first: Lsn::new(first),
            last: Lsn::new(last),
            failed: failed_from.map(|from| SyncFailure {
                from: Lsn::new(from),
                error: DiskError::Full {
                    kind: std::io::ErrorKind::StorageFull,
                },
            }),
        }
    }

    #[test]
    fn a_confirmation_waits_for_its_sync_and_one_after_it_goes_at_once() {
        let out = Outbound::new(BrokerConfig::default().outbound_limits());
        let c = Confirmations::default();
        c.hold(vec![held(&out, 1), held(&out, 2), held(&out, 3)])
            .send();
        assert!(seqs(&out).is_empty(), "nothing before a sync");
        c.synced(&report(1, 2, None));
        assert_eq!(seqs(&out), [1, 2]);
        assert_eq!(c.waiting(), 1);
        // Handed over after the report covering it: at once.
        c.synced(&report(3, 5, None));
        assert_eq!(seqs(&out), [3]);
        c.hold(vec![held(&out, 4)]).send();
        assert_eq!(seqs(&out), [4]);
    }

    #[test]
    fn records_that_failed_are_refused_and_later_ones_go_on() {
        let out = Outbound::new(BrokerConfig::default().outbound_limits());
        let c = Confirmations::default();
        c.hold(vec![held(&out, 1), held(&out, 2), held(&out, 3)])
            .send();
        c.synced(&report(1, 3, Some(2)));
        assert_eq!(seqs(&out), [1, 1002, 1003]);
        c.hold(vec![held(&out, 3)]).send();
        assert_eq!(seqs(&out), [1003], "handed over late: still refused");
        // Space came back.
        c.hold(vec![held(&out, 4)]).send();
        c.synced(&report(4, 4, None));
        assert_eq!(seqs(&out), [4]);
    }

    /// The writer may release a later item before the router flushes one it
    /// handed over as already reported: the earlier is queued first anyway
    /// (a consumer saw its deliveries out of order when the router queued
    /// its reported items only after releasing its lock).
    #[test]
    fn an_item_handed_over_as_reported_stays_ahead_of_one_the_next_sync_releases() {
        let out = Outbound::new(BrokerConfig::default().outbound_limits());
        let c = Confirmations::default();
        c.synced(&report(1, 1, None));
        let due = c.hold(vec![held(&out, 1), held(&out, 2)]);
        c.synced(&report(2, 2, None));
        due.send();
        assert_eq!(seqs(&out), [1, 2]);
    }
}
