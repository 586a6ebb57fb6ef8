//! eventbus: a local message bus for processes on one host.
//!
//! Map of the crate (see `docs/ARCHITECTURE.md` for the whole picture):
//!
//! - [`topic`]: validated [`Topic`] and [`TopicFilter`] names and the
//!   subscription index that matches them.
//! - [`names`]: validated [`ClientId`] and [`GroupName`].
//! - [`proto`]: the wire types generated from `proto/eventbus.proto`.
//! - `codec`: length-prefixed framing with a size limit and typed errors.
//! - `framed`: frames over a stream: a batching reader and a bounded outbound
//!   queue drained by one writer per connection.
//! - [`transport`]: the socket path, binding it safely, connecting to it.
//! - [`broker`]: the embeddable [`Broker`].
//! - [`client`]: the [`Client`] handle, subscriptions and deliveries.
//!
//! # Features
//!
//! - `client` (default): the [`Client`] and everything it sends and receives.
//! - `broker`: the embeddable [`Broker`] and its [`BrokerConfig`] (adds
//!   `serde` and `toml` for the configuration file).
//! - `serde`: JSON helpers (`publish_json`, `request_json`, `Message::json`,
//!   `Body::json`) and `Serialize`/`Deserialize` for [`BrokerStats`]. Off by
//!   default: it adds `serde`, `serde_derive` and `serde_json` to a client's
//!   build, about a fifth more compile time for a client-only application
//!   (measured in `docs/performance.md`).
//!
//! A client-only dependency compiles neither the broker nor its
//! configuration parser, and tokio with only `rt`, `net`, `io-util`, `sync`,
//! `time` and `macros`.
//!
//! **Invariants:** no `unsafe`; every buffer and channel is bounded with an explicit
//! policy at its bound; nothing in this crate blocks the async runtime.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "broker")]
#[cfg_attr(docsrs, doc(cfg(feature = "broker")))]
pub mod broker;
#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod client;
// Internals, public only for the benches, the e2e fault proxy and the tests
// that write hostile frames: not part of the API, no semver promise.
#[doc(hidden)]
pub mod codec;
#[doc(hidden)]
pub mod framed;
pub mod names;
pub mod proto;
pub mod topic;
pub mod transport;

#[cfg(all(fuzzing, feature = "broker", feature = "client"))]
#[doc(hidden)]
pub mod fuzzing;

#[cfg(feature = "broker")]
pub use broker::{Broker, BrokerConfig};
#[cfg(feature = "client")]
pub use client::{
    Body, BrokerStats, Client, ClientOptions, ConnectionEvent, Delivery, HeaderError, Headers,
    Message, PendingRequest, QueueSubscription, ReconnectPolicy, ResultError, Subscription,
};
pub use framed::OverflowPolicy;
pub use names::{ClientId, GroupName, IntoName, Name};

/// The crate README's examples (the 5-minute tour), run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
pub use topic::{Topic, TopicFilter};
