//! What a proxy counts: connections, and per direction the frames forwarded,
//! dropped, duplicated and held.

/// Counters of one [`FaultProxy`](super::FaultProxy) since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Client connections accepted, including those whose broker was not there.
    pub connections: u64,
    /// Connections currently proxied (both sides open).
    pub open: u64,
    /// Accepted connections closed at once because the broker's socket could
    /// not be connected (the broker down or restarting).
    pub upstream_failures: u64,
    /// Frames from clients to the broker.
    pub to_broker: DirStats,
    /// Frames from the broker to clients.
    pub to_client: DirStats,
    /// Frames torn by [`tear`](super::FaultProxy::tear), each closing its connection.
    pub torn: u64,
}

/// Counters of one direction, over every connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirStats {
    /// Frames written, duplicate copies included (a torn frame is not counted).
    pub frames: u64,
    /// Bytes of those frames, headers included.
    pub bytes: u64,
    /// Frames discarded by [`set_drop`](super::FaultProxy::set_drop).
    pub dropped: u64,
    /// Frames written twice by [`set_duplicate`](super::FaultProxy::set_duplicate).
    pub duplicated: u64,
    /// Frames waiting in the delay lines now: delayed, paced or held by a partition.
    pub held: u64,
}
