//! Test support: a gate the writer passes before each sync, so a test can
//! hold a sync open while others append.

use std::sync::{Condvar, Mutex};

/// Holds the writer before its syncs while closed.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    closed: bool,
    /// Syncs that reached the gate.
    arrived: u64,
}

impl Gate {
    /// Called by the writer before each sync.
    pub(crate) fn before_sync(&self) {
        let mut st = self.state.lock().unwrap();
        st.arrived += 1;
        self.changed.notify_all();
        while st.closed {
            st = self.changed.wait(st).unwrap();
        }
    }
}
