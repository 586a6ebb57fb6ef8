//! The router's output, and the one way to reach the router.
//!
//! The router pushes frames into connections' outbound queues without waking
//! their writers (a wake-up per frame would cost a context switch each):
//! whoever ran the router must flush those queues after releasing its lock.
//! [`RouterCell::with`] is the only way to run the router, and it does that
//! every time, so no caller can forget: lock, the caller's work,
//! [`Router::finish`] (doomed connections closed, announcements published,
//! touched queues collected into [`Effects`]), unlock, carry the effects out.
//!
//! The confirmations of durable publishes are effects too: the router
//! leaves them with the LSN of their last record, and they are handed to
//! [`Confirmations`], which sends each once its record is on disk.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard};

use super::confirm::{Confirmations, Due, Held};
use super::ids::ConnId;
use super::refusal::DisconnectReason;
use super::router::Router;
use crate::framed::Outbound;

/// What the router's work left to do once its lock is released.
#[derive(Debug, Default)]
#[must_use]
pub(crate) struct Effects {
    /// Outbound queues with frames pushed since the last flush: each is
    /// flushed from the caller's task if its writer is idle (saving the
    /// writer's wake-up), else left to the writer.
    pub(super) flush: Vec<Arc<Outbound>>,
    /// Confirmations waiting for their journal records, in LSN order.
    pub(super) held: Vec<Held>,
}

impl Effects {
    /// Hands the held items to `confirmations`, under the router's lock so
    /// they queue there in the order the router made them; returns those
    /// already due.
    fn hold(&mut self, confirmations: &Confirmations) -> Due {
        if self.held.is_empty() {
            return Due::default();
        }
        confirmations.hold(std::mem::take(&mut self.held))
    }

    fn carry_out(&mut self, due: Due) {
        due.send();
        for out in self.flush.drain(..) {
            out.try_flush();
        }
    }
}

/// The router behind its lock.
#[derive(Debug)]
pub(crate) struct RouterCell {
    router: Mutex<Router>,
    /// Where held confirmations wait for the journal (shared with its
    /// writer thread's callback).
    confirmations: Arc<Confirmations>,
}

impl RouterCell {
    pub(crate) fn new(router: Router) -> Self {
        Self {
            router: Mutex::new(router),
            confirmations: Arc::default(),
        }
    }

    /// The confirmations the journal's sync callback releases.
    pub(crate) fn confirmations(&self) -> &Arc<Confirmations> {
        &self.confirmations
    }

    /// Runs `work` on the router, then carries out its effects once the lock
    /// is released. Held for `work` only: never across an await, since
    /// `work` is synchronous.
    pub(crate) fn with<T>(&self, work: impl FnOnce(&mut Router) -> T) -> T {
        let mut effects = Effects::default();
        let result = {
            let mut router = self.lock();
            let result = work(&mut router);
            router.finish(&mut effects);
            (result, effects.hold(&self.confirmations))
        };
        let (result, due) = result;
        effects.carry_out(due);
        result
    }

    /// Like [`with`](Self::with), for work on behalf of connection `conn`:
    /// a panic in `work` (a bug) is logged and closes that connection, and
    /// the broker carries on for everyone else. `None` when it panicked.
    pub(crate) fn for_conn<T>(
        &self,
        conn: ConnId,
        work: impl FnOnce(&mut Router) -> T,
    ) -> Option<T> {
        self.with(|router| match catch_unwind(AssertUnwindSafe(|| work(router))) {
            Ok(result) => Some(result),
            Err(panic) => {
                let what = panic_text(panic.as_ref());
                tracing::error!(%conn, panic = what, "bug: a panic while handling a connection's frames; closing it");
                let closed = catch_unwind(AssertUnwindSafe(|| {
                    router.disconnect(conn, DisconnectReason::InternalError);
                }));
                if closed.is_err() {
                    tracing::error!(%conn, "bug: closing the connection panicked too");
                }
                None
            }
        })
    }

    fn lock(&self) -> MutexGuard<'_, Router> {
        // A panic inside the router is a bug; continuing with its state is still
        // better than taking every other client down with it.
        self.router.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a panic said, when it said it with a string.
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::broker::BrokerConfig;
    use crate::broker::router::Registration;
    use crate::proto;

    fn register(cell: &RouterCell, id: &str) -> (ConnId, Arc<Outbound>) {
        let config = BrokerConfig::default();
        let out = Outbound::new(config.outbound_limits());
        let registration = Registration {
            hello: proto::Hello {
                protocol_version: proto::PROTOCOL_VERSION,
                client_id: id.into(),
                ..Default::default()
            },
            principal: crate::broker::auth::Authenticator::new(None, &config)
                .unwrap()
                .authenticate(None, Some(1000))
                .unwrap(),
            out: out.clone(),
            cancel: CancellationToken::new(),
            peer_pid: None,
        };
        let (conn, _) = cell
            .with(|r| r.register(registration, Instant::now()))
            .unwrap();
        (conn, out)
    }

    #[test]
    fn a_panic_for_one_connection_closes_it_and_nobody_else_notices() {
        let cell = RouterCell::new(Router::new(
            Arc::new(BrokerConfig::default()),
            Instant::now(),
        ));
        let (victim, victim_out) = register(&cell, "victim");
        let (_, other_out) = register(&cell, "other");
        let got = cell.for_conn(victim, |_| -> u32 { panic!("a bug") });
        assert_eq!(got, None);
        assert!(victim_out.is_closed(), "the panicking connection is closed");
        assert!(!other_out.is_closed());
        assert_eq!(cell.with(|r| r.connection_count()), 1);
        assert_eq!(
            cell.for_conn(victim, |_| 7),
            Some(7),
            "the router still serves"
        );
    }
}
