//! The broker's ids, one type each, so a delivery id can never be passed where
//! a message id is expected.
//!
//! On the wire they are plain `u64`s; they become these types at the edge
//! (`command.rs`) and go back to `u64` only when a frame is built.

use std::fmt;

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub(crate) struct $name(u64);

        // Not every id is built from the wire or written back to it.
        #[allow(dead_code)]
        impl $name {
            /// The id a wire field carries.
            pub(crate) const fn new(raw: u64) -> Self {
                Self(raw)
            }

            /// The value to put on the wire.
            pub(crate) const fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id! {
    /// One connection inside one broker; never reused.
    ConnId
}
id! {
    /// A message, stamped by the broker when it accepts a publish; a request's
    /// correlation id and the id `Cancel` names.
    MessageId
}
id! {
    /// One delivery that must be settled (queue group or direct send); each
    /// redelivery of a message gets a new one.
    DeliveryId
}
id! {
    /// A queue group.
    GroupId
}
id! {
    /// What a request is answered by: an unguessable token the broker puts
    /// in the delivered request (`Envelope.correlation_id`); see [`Tokens`].
    CorrelationId
}
id! {
    /// A subscription, chosen by its client and unique within its connection;
    /// [`SubscriptionId::DIRECT`] is the direct inbox.
    SubscriptionId
}
id! {
    /// A client-chosen number that correlates an answer (`Ok`, `Error`, ...)
    /// with the frame that asked for it; [`Seq::NONE`] asks for no answer.
    Seq
}

impl SubscriptionId {
    /// Where direct sends are delivered.
    pub(crate) const DIRECT: Self = Self(0);
}

impl Seq {
    /// No answer wanted (fire-and-forget frames, and refusals of a connection).
    pub(crate) const NONE: Self = Self(0);

    /// Whether the client asked for an answer.
    pub(crate) fn wants_answer(self) -> bool {
        self != Self::NONE
    }
}

/// The one counter message, delivery and group ids come from, so no two of
/// them are ever equal within a broker's life (which makes logs unambiguous).
#[derive(Debug)]
pub(crate) struct Ids {
    next: u64,
}

impl Default for Ids {
    fn default() -> Self {
        Self { next: 1 }
    }
}

impl Ids {
    fn take(&mut self) -> u64 {
        let id = self.next;
        self.next += 1;
        id
    }

    pub(crate) fn message(&mut self) -> MessageId {
        MessageId(self.take())
    }

    pub(crate) fn delivery(&mut self) -> DeliveryId {
        DeliveryId(self.take())
    }

    pub(crate) fn group(&mut self) -> GroupId {
        GroupId(self.take())
    }

    /// The next id to be issued.
    pub(crate) fn peek(&self) -> u64 {
        self.next
    }

    /// Issues no id at or below `floor` (a restarted broker's journal
    /// reserved them).
    pub(crate) fn skip_past(&mut self, floor: u64) {
        self.next = self.next.max(floor.saturating_add(1));
    }
}

/// Unguessable correlation tokens: a keyed hash (SipHash, with a key the
/// standard library draws from the operating system's randomness) of a
/// counter, so a client cannot answer a request it was not given by guessing
/// its token, and no two tokens of one broker are equal in practice.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    key: std::collections::hash_map::RandomState,
    counter: u64,
}

impl Tokens {
    /// A client id's resume token: 128 unguessable bits.
    pub(crate) fn resume(&mut self) -> [u8; 16] {
        let mut token = [0; 16];
        token[..8].copy_from_slice(&self.next().get().to_le_bytes());
        token[8..].copy_from_slice(&self.next().get().to_le_bytes());
        token
    }

    pub(crate) fn next(&mut self) -> CorrelationId {
        use std::hash::BuildHasher;
        loop {
            self.counter += 1;
            // 0 means "no correlation" on the wire.
            let token = self.key.hash_one(self.counter);
            if token != 0 {
                return CorrelationId(token);
            }
        }
    }
}

/// Hands out connection ids; none is ever reused.
#[derive(Debug)]
pub(crate) struct ConnIds {
    next: u64,
}

impl Default for ConnIds {
    fn default() -> Self {
        Self { next: 1 }
    }
}

impl ConnIds {
    pub(crate) fn next(&mut self) -> ConnId {
        let id = ConnId(self.next);
        self.next += 1;
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_never_repeated_across_kinds() {
        let mut ids = Ids::default();
        let m = ids.message();
        let d = ids.delivery();
        let g = ids.group();
        assert_eq!([m.get(), d.get(), g.get()], [1, 2, 3]);
        let mut conns = ConnIds::default();
        assert_eq!([conns.next().get(), conns.next().get()], [1, 2]);
        assert!(!Seq::NONE.wants_answer());
        assert!(Seq::new(7).wants_answer());
        assert_eq!(SubscriptionId::DIRECT.get(), 0);
        assert_eq!(MessageId::new(42).to_string(), "42");
        let mut tokens = Tokens::default();
        let (a, b) = (tokens.next(), tokens.next());
        assert_ne!(a, b);
        assert!(a.get() != 0 && b.get() != 0);
        assert!(
            a.get() > 1 << 20 || b.get() > 1 << 20,
            "not a small counter"
        );
    }
}
