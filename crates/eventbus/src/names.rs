//! Validated names for clients and queue groups, and [`IntoName`]: how an
//! API call takes any validated name, or a string to validate.
//!
//! Like topics, names are checked once where they enter (an API call or a frame from
//! the socket) and trusted everywhere after that.

use std::fmt;
use std::sync::Arc;

use crate::topic::{Topic, TopicError, TopicFilter, TopicFilterError};

/// A validated name type: [`Topic`], [`TopicFilter`], [`ClientId`] or
/// [`GroupName`]. Sealed: the set of name types is this crate's.
pub trait Name: Clone + sealed::Sealed {
    /// Why a string is not a valid name of this type.
    type Error: std::error::Error + Clone + Send + Sync + 'static;

    /// Validates `text` as a name of this type.
    fn parse(text: &str) -> Result<Self, Self::Error>;
}

/// A name of type `N`, or a string to validate as one: what every client call
/// that takes a topic, a filter, a group or a client id accepts.
///
/// A name validated beforehand (`N` or `&N`) is passed on as is (a `&N` costs
/// a reference-count increment); a `&str` or `String` is validated inside
/// the call, and an invalid one fails that call with a typed error (for
/// example [`PublishError::InvalidTopic`](crate::client::PublishError::InvalidTopic)).
///
/// ```no_run
/// # async fn demo(client: eventbus::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use eventbus::Topic;
/// client.publish("events.process.start", "pid 42")?; // validated on each call
/// let topic = Topic::new("events.process.start")?; // validated once
/// client.publish(&topic, "pid 43")?;
/// # Ok(()) }
/// ```
pub trait IntoName<N: Name>: sealed::Sealed {
    /// The name, validated if it was not already.
    fn into_name(self) -> Result<N, N::Error>;
}

mod sealed {
    /// Keeps [`Name`](super::Name) and [`IntoName`](super::IntoName) this crate's.
    pub trait Sealed {}
    impl Sealed for super::Topic {}
    impl Sealed for super::TopicFilter {}
    impl Sealed for super::ClientId {}
    impl Sealed for super::GroupName {}
    impl<N: super::Name> Sealed for &N {}
    impl Sealed for &str {}
    impl Sealed for String {}
    impl Sealed for &String {}
}

impl<N: Name> IntoName<N> for N {
    #[inline]
    fn into_name(self) -> Result<N, N::Error> {
        Ok(self)
    }
}

impl<N: Name> IntoName<N> for &N {
    #[inline]
    fn into_name(self) -> Result<N, N::Error> {
        Ok(self.clone())
    }
}

impl<N: Name> IntoName<N> for &str {
    fn into_name(self) -> Result<N, N::Error> {
        N::parse(self)
    }
}

impl<N: Name> IntoName<N> for String {
    fn into_name(self) -> Result<N, N::Error> {
        N::parse(&self)
    }
}

impl<N: Name> IntoName<N> for &String {
    fn into_name(self) -> Result<N, N::Error> {
        N::parse(self)
    }
}

impl Name for Topic {
    type Error = TopicError;
    fn parse(text: &str) -> Result<Self, TopicError> {
        Topic::new(text)
    }
}

impl Name for TopicFilter {
    type Error = TopicFilterError;
    fn parse(text: &str) -> Result<Self, TopicFilterError> {
        TopicFilter::new(text)
    }
}

/// Longest client id or group name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// Why a client id or group name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("{what} must not be empty")]
    Empty {
        /// Which kind of name ("client id", "group name").
        what: &'static str,
    },
    /// The name is longer than [`MAX_NAME_BYTES`].
    #[error("{what} {name:?} is {len} bytes long; the limit is {max}")]
    TooLong {
        /// Which kind of name.
        what: &'static str,
        /// The offending name.
        name: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name holds a character outside its alphabet.
    #[error("{what} {name:?} contains {ch:?}; allowed are {allowed}")]
    InvalidChar {
        /// Which kind of name.
        what: &'static str,
        /// The offending name.
        name: String,
        /// The first character not allowed.
        ch: char,
        /// A description of the allowed characters.
        allowed: &'static str,
    },
}

fn validate(
    what: &'static str,
    name: &str,
    allowed: &'static str,
    ok: impl Fn(char) -> bool,
) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { what });
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong {
            what,
            name: name.to_owned(),
            len: name.len(),
            max: MAX_NAME_BYTES,
        });
    }
    if let Some(ch) = name.chars().find(|&c| !ok(c)) {
        return Err(NameError::InvalidChar {
            what,
            name: name.to_owned(),
            ch,
            allowed,
        });
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $what:literal, $allowed:literal, $ok:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $ty(Arc<str>);

        impl $ty {
            /// Validates `name`.
            pub fn new(name: impl AsRef<str>) -> Result<Self, NameError> {
                let name = name.as_ref();
                validate($what, name, $allowed, $ok)?;
                Ok(Self(Arc::from(name)))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($ty), &*self.0)
            }
        }

        impl std::str::FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = NameError;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Name for $ty {
            type Error = NameError;
            fn parse(text: &str) -> Result<Self, NameError> {
                Self::new(text)
            }
        }
    };
}

name_type!(
    /// A client's unique id on one broker, e.g. `procmond-1`.
    ///
    /// 1 to 64 bytes of ASCII letters, digits, `-`, `_` and `.`.
    ClientId,
    "client id",
    "ASCII letters, digits, '-', '_' and '.'",
    |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
);

name_type!(
    /// A queue group's name, e.g. `process`: members of one group share its messages.
    ///
    /// 1 to 64 bytes of `[a-z0-9_-]`.
    GroupName,
    "group name",
    "lowercase ASCII letters, digits, '-' and '_'",
    |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_')
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids() {
        for ok in [
            "procmond-1",
            "a",
            "Agent_7.main",
            &"x".repeat(MAX_NAME_BYTES),
        ] {
            assert_eq!(ClientId::new(ok).unwrap().as_str(), ok);
        }
        assert!(matches!(ClientId::new(""), Err(NameError::Empty { .. })));
        assert!(matches!(
            ClientId::new("x".repeat(MAX_NAME_BYTES + 1)),
            Err(NameError::TooLong { len: 65, .. })
        ));
        assert!(matches!(
            ClientId::new("a b"),
            Err(NameError::InvalidChar { ch: ' ', .. })
        ));
    }

    #[test]
    fn names_and_strings_go_in_as_names() {
        let topic = Topic::new("a.b").unwrap();
        let by_ref: Topic = (&topic).into_name().unwrap();
        let by_str: Topic = "a.b".into_name().unwrap();
        let by_string: Topic = String::from("a.b").into_name().unwrap();
        assert!([by_ref, by_str, by_string].iter().all(|t| *t == topic));
        assert!(IntoName::<Topic>::into_name("a.#").is_err());
        assert!(IntoName::<TopicFilter>::into_name("a.#").is_ok());
        let group: Result<GroupName, _> = "Process".into_name();
        assert!(matches!(group, Err(NameError::InvalidChar { ch: 'P', .. })));
        let id: ClientId = "agent-1".into_name().unwrap();
        assert_eq!(id.as_str(), "agent-1");
    }

    #[test]
    fn group_names() {
        assert!(GroupName::new("process").is_ok());
        assert!(GroupName::new("Process").is_err());
        assert!(GroupName::new("a.b").is_err());
        let err = GroupName::new("a/b").unwrap_err().to_string();
        assert!(err.contains("a/b"), "{err}");
    }
}
