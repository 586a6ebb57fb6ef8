//! The open journal's table of durable queues: each [`QueueKey`] gets a
//! [`QueueRef`] once, and keeps it for the journal's life.

use std::collections::HashMap;

use super::record::{QueueKey, QueueRef};

/// Queue keys by handle and handles by key.
#[derive(Debug, Default)]
pub(crate) struct QueueTable {
    keys: Vec<QueueKey>,
    refs: HashMap<QueueKey, QueueRef>,
}

impl QueueTable {
    /// The handle of `key`, issued now if it has none yet.
    pub(crate) fn intern(&mut self, key: &QueueKey) -> QueueRef {
        if let Some(queue) = self.refs.get(key) {
            return *queue;
        }
        let queue = QueueRef(u32::try_from(self.keys.len()).expect("fewer than 2^32 queues"));
        self.keys.push(key.clone());
        self.refs.insert(key.clone(), queue);
        queue
    }

    /// The key of `queue`, if this table issued it.
    pub(crate) fn key(&self, queue: QueueRef) -> Option<&QueueKey> {
        self.keys.get(queue.index())
    }

    /// How many queues there are.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}
