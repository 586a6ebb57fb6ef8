//! eventbus: a local message bus for processes on one host.
//!
//! Map of the crate (see `docs/ARCHITECTURE.md` for the whole picture):
//!
//! - [`topic`]: validated [`Topic`] and [`TopicFilter`] names and the
//!   subscription index that matches them.
//! - [`names`]: validated [`ClientId`] and [`GroupName`].
//! - [`proto`]: the wire types generated from `proto/eventbus.proto`.
//! - [`codec`]: length-prefixed framing with a size limit and typed errors.
//! - [`framed`]: frames over a stream: a batching reader and a bounded outbound
//!   queue drained by one writer per connection.
//! - [`transport`]: the socket path, binding it safely, connecting to it.
//! - [`broker`]: the embeddable [`Broker`].
//! - [`client`]: the [`Client`] handle, subscriptions and deliveries.
//!
//! **Invariants:** no `unsafe`; every buffer and channel is bounded with an explicit
//! policy at its bound; nothing in this crate blocks the async runtime.
#![forbid(unsafe_code)]

pub mod broker;
pub mod client;
pub mod codec;
pub mod framed;
pub mod names;
pub mod proto;
pub mod topic;
pub mod transport;

#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;

pub use broker::{Broker, BrokerConfig};
pub use client::{
    Client, ClientOptions, ConnectionEvent, Delivery, Message, QueueSubscription, ReconnectPolicy,
    Subscription,
};
pub use framed::OverflowPolicy;
pub use names::{ClientId, GroupName};
pub use topic::{Topic, TopicFilter};
