//! Validated names for clients and queue groups.
//!
//! Like topics, names are checked once where they enter (an API call or a frame from
//! the socket) and trusted everywhere after that.

use std::fmt;
use std::sync::Arc;

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
    fn group_names() {
        assert!(GroupName::new("process").is_ok());
        assert!(GroupName::new("Process").is_err());
        assert!(GroupName::new("a.b").is_err());
        let err = GroupName::new("a/b").unwrap_err().to_string();
        assert!(err.contains("a/b"), "{err}");
    }
}
