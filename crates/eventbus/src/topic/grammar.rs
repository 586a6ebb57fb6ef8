//! The shared validation of the topic grammar.
//!
//! [`Topic`](super::Topic) and [`TopicFilter`](super::TopicFilter) differ only
//! in whether wildcard segments are allowed, so both run [`check`] and turn the
//! [`Violation`] into their own error type, which adds the offending input.

use std::fmt;

use super::{MAX_TOPIC_BYTES, MAX_TOPIC_SEGMENTS};

/// The single-segment wildcard of a filter.
pub(super) const PLUS: &str = "+";
/// The multi-segment wildcard of a filter; only valid as the last segment.
pub(super) const HASH: &str = "#";

/// The first rule a candidate string breaks, without the string itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Violation {
    Empty,
    TooLong {
        len: usize,
    },
    TooManySegments {
        count: usize,
    },
    EmptySegment {
        segment: usize,
    },
    InvalidChar {
        segment: usize,
        ch: char,
    },
    /// `+` or `#` where a wildcard is not allowed: anywhere in a topic, or
    /// inside a longer segment of a filter.
    Wildcard {
        segment: usize,
        ch: char,
    },
    HashNotLast {
        segment: usize,
    },
}

/// Checks `s` against the grammar described in the [module docs](super).
///
/// The checks run in a fixed order so the reported violation is
/// deterministic: emptiness, byte length, segment count, then each segment
/// from left to right.
pub(super) fn check(s: &str, allow_wildcards: bool) -> Result<(), Violation> {
    if s.is_empty() {
        return Err(Violation::Empty);
    }
    // Length first: every later error quotes the input, and this bounds it.
    if s.len() > MAX_TOPIC_BYTES {
        return Err(Violation::TooLong { len: s.len() });
    }
    let count = s.bytes().filter(|&b| b == b'.').count() + 1;
    if count > MAX_TOPIC_SEGMENTS {
        return Err(Violation::TooManySegments { count });
    }
    for (segment, text) in s.split('.').enumerate() {
        if text.is_empty() {
            return Err(Violation::EmptySegment { segment });
        }
        if allow_wildcards && text == PLUS {
            continue;
        }
        if allow_wildcards && text == HASH {
            if segment + 1 != count {
                return Err(Violation::HashNotLast { segment });
            }
            continue;
        }
        if let Some(ch) = text.chars().find(|&c| !is_segment_char(c)) {
            return Err(if ch == '+' || ch == '#' {
                Violation::Wildcard { segment, ch }
            } else {
                Violation::InvalidChar { segment, ch }
            });
        }
    }
    Ok(())
}

/// `[a-z0-9_-]`: the characters of a literal segment.
fn is_segment_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
}

/// Quotes `s` for an error message, shortened so that a huge rejected input
/// does not end up verbatim in a log line.
pub(super) fn quoted(s: &str) -> Quoted<'_> {
    Quoted(s)
}

/// See [`quoted`].
pub(super) struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const KEEP_CHARS: usize = 40;
        match self.0.char_indices().nth(KEEP_CHARS) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => write!(f, "{:?}...", &self.0[..cut]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_keeps_short_input_and_shortens_long_input() {
        assert_eq!(quoted("a.b").to_string(), "\"a.b\"");
        assert_eq!(quoted("a\"b").to_string(), "\"a\\\"b\"");
        let long = "é".repeat(100);
        assert_eq!(
            quoted(&long).to_string(),
            format!("{:?}...", "é".repeat(40))
        );
    }

    #[test]
    fn reports_the_first_violation_from_the_left() {
        assert_eq!(
            check("a..#.b", true),
            Err(Violation::EmptySegment { segment: 1 })
        );
        assert_eq!(
            check("a.#.B", true),
            Err(Violation::HashNotLast { segment: 1 })
        );
        assert_eq!(
            check("a.B.#.x", true),
            Err(Violation::InvalidChar {
                segment: 1,
                ch: 'B'
            })
        );
    }
}
