//! The router's output, and the one way to reach the router.
//!
//! The router pushes frames into connections' outbound queues without waking
//! their writers (a wake-up per frame would cost a context switch each):
//! whoever ran the router must flush those queues after releasing its lock.
//! [`RouterCell::with`] is the only way to run the router, and it does that
//! every time, so no caller can forget: lock, the caller's work,
//! [`Router::finish`] (doomed connections closed, announcements published,
//! touched queues collected into [`Effects`]), unlock, carry the effects out.

use std::sync::{Arc, Mutex, MutexGuard};

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
}

impl Effects {
    fn carry_out(&mut self) {
        for out in self.flush.drain(..) {
            out.try_flush();
        }
    }
}

/// The router behind its lock.
#[derive(Debug)]
pub(crate) struct RouterCell {
    router: Mutex<Router>,
}

impl RouterCell {
    pub(crate) fn new(router: Router) -> Self {
        Self {
            router: Mutex::new(router),
        }
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
            result
        };
        effects.carry_out();
        result
    }

    fn lock(&self) -> MutexGuard<'_, Router> {
        // A panic inside the router is a bug; continuing with its state is still
        // better than taking every other client down with it.
        self.router.lock().unwrap_or_else(|p| p.into_inner())
    }
}
