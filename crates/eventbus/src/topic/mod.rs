//! Topics, topic filters and the subscription index.
//!
//! Publishers send to a [`Topic`]; subscribers listen on a [`TopicFilter`];
//! the router keeps the filters of all live subscriptions in a
//! [`SubscriptionIndex`] and asks it which subscriptions match each published
//! topic. Both names are validated once, at the edge (`Topic::new`,
//! `TopicFilter::new`), and trusted everywhere inside.
//!
//! # Grammar
//!
//! ```text
//! topic    = segment *( "." segment )
//! filter   = fsegment *( "." fsegment ) [ "." "#" ] / "#"
//! fsegment = segment / "+"
//! segment  = 1*( %x61-7A / DIGIT / "_" / "-" )   ; [a-z0-9_-]+
//! ```
//!
//! with two limits on both topics and filters: at most
//! [`MAX_TOPIC_SEGMENTS`] segments and at most [`MAX_TOPIC_BYTES`] bytes,
//! dots included.
//!
//! In a filter, `+` stands for exactly one segment and `#` for zero or more
//! trailing segments: `a.+` matches `a.b` but not `a` or `a.b.c`, while `a.#`
//! matches `a`, `a.b` and `a.b.c`, and `#` alone matches every topic.
//!
//! **Invariant:** a `Topic` never contains a wildcard, and a `TopicFilter`
//! holds `+` and `#` only as whole segments, with `#` only last.

mod filter;
mod grammar;
mod index;
mod name;

pub use filter::{TopicFilter, TopicFilterError};
pub use index::SubscriptionIndex;
pub use name::{Topic, TopicError};

/// The longest a [`Topic`] or [`TopicFilter`] may be, in bytes, dots
/// included.
pub const MAX_TOPIC_BYTES: usize = 255;

/// The most `.`-separated segments a [`Topic`] or [`TopicFilter`] may have,
/// a trailing `#` included.
pub const MAX_TOPIC_SEGMENTS: usize = 8;

/// The `Hello.kind` of a bridge to another messaging system
/// (`eventbus-bridge`): the broker lets such a client publish its status
/// below [`BRIDGE_STATUS_PREFIX`], the one part of the reserved `_sys`
/// topics a client may write (under an auth file, only if its identity's
/// publish rules allow the topic too).
pub const BRIDGE_KIND: &str = "bridge";

/// The topics bridges announce their status on: `_sys.bridge.<name>`.
pub const BRIDGE_STATUS_PREFIX: &str = "_sys.bridge";
