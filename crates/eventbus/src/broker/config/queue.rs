//! `[queue]` and `[[queue.overrides]]`: the bounds and behaviour of queue
//! groups, and how one group's settings are resolved from them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::framed::OverflowPolicy;
use crate::topic::{Topic, TopicFilter};

/// The smallest per-queue disk bound: below it not even one small message
/// with the broker's stamps would fit.
pub(crate) const MIN_QUEUE_DISK_BYTES: u64 = 1024;

/// Bounds and behaviour of queue groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct QueueConfig {
    /// Most messages waiting in one group's queue.
    pub max_len: usize,
    /// What happens to a message published to a full queue.
    pub overflow: OverflowPolicy,
    /// With `overflow = "block"`: how long a publisher waits for space before its
    /// publish fails with `BlockTimeout`, in milliseconds.
    pub block_timeout_ms: u64,
    /// Prefetch granted to a member that asks for 0.
    pub default_prefetch: u32,
    /// Largest prefetch a member may ask for.
    pub max_prefetch: u32,
    /// Most bytes of messages waiting in one group's queue (their delivery
    /// frames); `overflow` applies at this bound as at `max_len`.
    pub max_bytes: usize,
    /// Whether queue groups journal their messages, so a confirmed one
    /// survives a broker crash (see `[[queue.overrides]]` to choose per
    /// pattern).
    pub durable: bool,
    /// Most bytes one durable queue's unsettled messages may take in the
    /// journal; `overflow` applies at this bound as at
    /// `durability.max_disk_bytes` (the total, which still applies). 0: only
    /// the total bounds it; else at least 1024 and at most the total.
    pub max_disk_bytes: u64,
    /// A delivery not settled within this many milliseconds is taken back and
    /// redelivered; 0 disables the timeout.
    pub ack_timeout_ms: u64,
    /// Deliveries of one message before it goes to the dead-letter topic
    /// `_sys.dead-letter.<group>`; 0 means unlimited.
    pub max_attempts: u32,
    /// Most deliveries of one group in flight at once, across all members;
    /// 0 means only the members' prefetch limits it. 1 makes task starts FIFO.
    pub concurrency: u32,
    /// Settings for the groups whose filter matches a pattern; the first match wins.
    pub overrides: Vec<QueueOverride>,
}

/// Queue settings for groups whose filter matches `filter`; unset fields keep the
/// `[queue]` value.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct QueueOverride {
    /// A topic filter: applies to a group with this exact filter, or with a
    /// literal filter that this one matches.
    pub filter: String,
    /// See [`QueueConfig::max_len`].
    pub max_len: Option<usize>,
    /// See [`QueueConfig::max_bytes`].
    pub max_bytes: Option<usize>,
    /// See [`QueueConfig::durable`].
    pub durable: Option<bool>,
    /// See [`QueueConfig::max_disk_bytes`].
    pub max_disk_bytes: Option<u64>,
    /// See [`QueueConfig::overflow`].
    pub overflow: Option<OverflowPolicy>,
    /// See [`QueueConfig::block_timeout_ms`].
    pub block_timeout_ms: Option<u64>,
    /// See [`QueueConfig::ack_timeout_ms`].
    pub ack_timeout_ms: Option<u64>,
    /// See [`QueueConfig::max_attempts`].
    pub max_attempts: Option<u32>,
    /// See [`QueueConfig::concurrency`].
    pub concurrency: Option<u32>,
}

/// The resolved settings of one queue group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueuePolicy {
    pub max_len: usize,
    pub max_bytes: usize,
    pub durable: bool,
    /// The queue's own bound on its bytes in the journal; 0: none.
    pub max_disk_bytes: u64,
    pub overflow: OverflowPolicy,
    pub block_timeout: Duration,
    pub ack_timeout: Option<Duration>,
    pub max_attempts: u32,
    pub concurrency: u32,
}

impl QueueConfig {
    /// Whether an override names exactly `filter`: what a queue group on a
    /// filter starting with a wildcard needs to exist.
    pub(crate) fn declares(&self, filter: &TopicFilter) -> bool {
        self.overrides.iter().any(|o| o.filter == filter.as_str())
    }

    /// The settings for a group on `filter`: the first matching override, then defaults.
    pub(crate) fn policy_for(&self, filter: &TopicFilter) -> QueuePolicy {
        let applies = |o: &&QueueOverride| {
            o.filter == filter.as_str()
                || (filter.is_literal()
                    && TopicFilter::new(&o.filter)
                        .is_ok_and(|f| Topic::new(filter.as_str()).is_ok_and(|t| f.matches(&t))))
        };
        let o = self.overrides.iter().find(applies);
        let pick =
            |f: fn(&QueueOverride) -> Option<u64>, default: u64| o.and_then(f).unwrap_or(default);
        let ack_timeout_ms = pick(|o| o.ack_timeout_ms, self.ack_timeout_ms);
        QueuePolicy {
            max_len: o.and_then(|o| o.max_len).unwrap_or(self.max_len),
            max_bytes: o.and_then(|o| o.max_bytes).unwrap_or(self.max_bytes),
            durable: o.and_then(|o| o.durable).unwrap_or(self.durable),
            max_disk_bytes: pick(|o| o.max_disk_bytes, self.max_disk_bytes),
            overflow: o.and_then(|o| o.overflow).unwrap_or(self.overflow),
            block_timeout: Duration::from_millis(pick(
                |o| o.block_timeout_ms,
                self.block_timeout_ms,
            )),
            ack_timeout: (ack_timeout_ms > 0).then(|| Duration::from_millis(ack_timeout_ms)),
            max_attempts: o.and_then(|o| o.max_attempts).unwrap_or(self.max_attempts),
            concurrency: o.and_then(|o| o.concurrency).unwrap_or(self.concurrency),
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_len: 100_000,
            overflow: OverflowPolicy::Reject,
            block_timeout_ms: 5_000,
            default_prefetch: 1,
            max_prefetch: 10_000,
            max_bytes: 256 * 1024 * 1024,
            durable: false,
            max_disk_bytes: 0,
            ack_timeout_ms: 30_000,
            max_attempts: 5,
            concurrency: 0,
            overrides: Vec::new(),
        }
    }
}

impl QueueConfig {
    /// Checks each queue's disk bound: 0 (none), or at least
    /// [`MIN_QUEUE_DISK_BYTES`] and no more than the journal's total
    /// `total`, which would bind first. (A bound below the largest frame is
    /// allowed: such a queue takes small messages only, and a larger one
    /// meets its overflow policy.)
    pub(super) fn validate_disk_bounds(&self, total: u64) -> Result<(), ConfigError> {
        let bounds = std::iter::once(("queue.max_disk_bytes", Some(self.max_disk_bytes))).chain(
            self.overrides
                .iter()
                .map(|o| ("queue.overrides.max_disk_bytes", o.max_disk_bytes)),
        );
        for (field, bound) in bounds {
            let Some(bound) = bound.filter(|&b| b > 0) else {
                continue;
            };
            let reason = if bound < MIN_QUEUE_DISK_BYTES {
                "must be 0 (only durability.max_disk_bytes bounds the queue) or at least 1024"
            } else if bound > total {
                "larger than durability.max_disk_bytes, which would bind first; raise that too"
            } else {
                continue;
            };
            return Err(ConfigError::Invalid {
                field,
                value: bound.to_string(),
                reason,
            });
        }
        Ok(())
    }
}
