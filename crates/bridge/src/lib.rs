//! eventbus-bridge: a local eventbus broker's bridge onto a NATS server or
//! cluster, so events and tasks cross hosts over a proven distributed
//! engine instead of a home-made cluster protocol.
//!
//! The bridge is a client of both: of the local broker (kind `bridge`, which
//! lets it publish its status on `_sys.bridge.<name>`) and of NATS
//! (`async-nats`). `docs/fleet.md` is the user's guide: rules, delivery
//! modes and what each guarantees under partition and node loss.
//!
//! Map of the crate:
//!
//! - [`config`]: the TOML file, validated once into [`BridgeConfig`].
//! - [`mapping`]: local topics ↔ NATS subjects, checked at config time.
//! - [`origin`]: loop prevention and the bridge headers.
//! - [`buffer`]: the bounded export buffer and its overflow policy.
//! - [`link`]: the NATS client, its backoff and its link state.
//! - [`shared`]: what the tasks share.
//! - [`export`]: local → NATS (core NATS or JetStream).
//! - [`import`]: NATS → local (core NATS or a durable JetStream consumer).
//! - [`serve`]: NATS requests served by the local bus.
//! - [`status`]: counters and the status JSON.
//! - [`bridge`]: [`Bridge::start`] and [`Bridge::stop`].
//!
//! **Invariants:** the local bus never waits for NATS (exports wait in the
//! bounded buffer, the bridge's own local subscriptions absorb the rest
//! under the broker's policies); every buffer is bounded by a named
//! constant or config value; a message the bridge published locally is
//! never exported again; at least once, nothing is acknowledged to one side
//! before the other side confirmed it; bad input from either side is
//! counted and skipped, never fatal.
#![forbid(unsafe_code)]

pub mod bridge;
pub mod buffer;
pub mod config;
pub mod export;
pub mod import;
pub mod link;
pub mod mapping;
pub mod origin;
pub mod serve;
pub mod shared;
pub mod status;

pub use bridge::{Bridge, StartError};
pub use config::{BridgeConfig, ConfigError};
