//! [`Topic`]: the validated name a message is published to.

use std::borrow::Borrow;
use std::fmt;
use std::iter::FusedIterator;
use std::str::FromStr;
use std::sync::Arc;

use super::grammar::{self, Violation, quoted};
use super::{MAX_TOPIC_BYTES, MAX_TOPIC_SEGMENTS};

/// A concrete topic such as `sensors.kitchen.temp`, validated once on
/// construction and trusted everywhere else.
///
/// # Grammar
///
/// - one to [`MAX_TOPIC_SEGMENTS`] (8) segments separated by `.`;
/// - every segment is non-empty and made only of `a`–`z`, `0`–`9`, `_` and
///   `-` (no upper case, no whitespace, no wildcards);
/// - at most [`MAX_TOPIC_BYTES`] (255) bytes in total, dots included.
///
/// Wildcards (`+`, `#`) belong to [`TopicFilter`](super::TopicFilter), never to
/// a topic.
///
/// A `Topic` is an [`Arc<str>`] inside, so cloning it is a reference-count
/// increment. Equality, hashing and ordering are those of the string, which
/// is also why `Topic` implements [`Borrow<str>`]: a `HashMap<Topic, _>` can
/// be queried with a `&str`.
///
/// # Examples
///
/// ```
/// use eventbus::topic::{Topic, TopicError};
///
/// let topic = Topic::new("sensors.kitchen.temp")?;
/// assert_eq!(topic.as_str(), "sensors.kitchen.temp");
/// assert_eq!(topic.segments().collect::<Vec<_>>(), ["sensors", "kitchen", "temp"]);
///
/// assert!(matches!(
///     Topic::new("sensors..temp"),
///     Err(TopicError::EmptySegment { segment: 1, .. })
/// ));
/// # Ok::<(), TopicError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(Arc<str>);

/// Why a string is not a valid [`Topic`].
///
/// Every variant carries the rejected input and the facts needed to fix it.
/// Segment indices start at 0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The input is the empty string.
    #[error("topic is empty; a topic needs at least one segment")]
    Empty,
    /// The input is longer than [`MAX_TOPIC_BYTES`].
    #[error("topic {} is {len} bytes long; the maximum is {max}", quoted(.topic))]
    TooLong {
        /// The rejected input.
        topic: String,
        /// Its length in bytes.
        len: usize,
        /// The limit, [`MAX_TOPIC_BYTES`].
        max: usize,
    },
    /// The input has more than [`MAX_TOPIC_SEGMENTS`] segments.
    #[error("topic {} has {count} segments; the maximum is {max}", quoted(.topic))]
    TooManySegments {
        /// The rejected input.
        topic: String,
        /// How many `.`-separated segments it has.
        count: usize,
        /// The limit, [`MAX_TOPIC_SEGMENTS`].
        max: usize,
    },
    /// A segment is empty: the input starts or ends with `.` or has `..`.
    #[error("topic {} has an empty segment at index {segment}", quoted(.topic))]
    EmptySegment {
        /// The rejected input.
        topic: String,
        /// Index of the empty segment.
        segment: usize,
    },
    /// A segment contains a character outside `[a-z0-9_-]`.
    #[error(
        "topic {} has invalid character {ch:?} in segment {segment}; \
         segments may only contain a-z, 0-9, '_' and '-'",
        quoted(.topic)
    )]
    InvalidChar {
        /// The rejected input.
        topic: String,
        /// Index of the segment holding the character.
        segment: usize,
        /// The first offending character of that segment.
        ch: char,
    },
    /// A segment contains a wildcard, which only filters may use.
    #[error(
        "topic {} has wildcard {ch:?} in segment {segment}; \
         wildcards are only allowed in topic filters",
        quoted(.topic)
    )]
    Wildcard {
        /// The rejected input.
        topic: String,
        /// Index of the segment holding the wildcard.
        segment: usize,
        /// The wildcard character, `+` or `#`.
        ch: char,
    },
}

impl TopicError {
    fn new(topic: &str, violation: Violation) -> Self {
        let topic = topic.to_owned();
        match violation {
            Violation::Empty => Self::Empty,
            Violation::TooLong { len } => Self::TooLong {
                topic,
                len,
                max: MAX_TOPIC_BYTES,
            },
            Violation::TooManySegments { count } => Self::TooManySegments {
                topic,
                count,
                max: MAX_TOPIC_SEGMENTS,
            },
            Violation::EmptySegment { segment } => Self::EmptySegment { topic, segment },
            Violation::InvalidChar { segment, ch } => Self::InvalidChar { topic, segment, ch },
            Violation::Wildcard { segment, ch } => Self::Wildcard { topic, segment, ch },
            // Without wildcards allowed `#` is reported as `Wildcard` before
            // its position is looked at; mapping it the same way keeps this
            // total.
            Violation::HashNotLast { segment } => Self::Wildcard {
                topic,
                segment,
                ch: '#',
            },
        }
    }
}

impl Topic {
    /// Validates `topic` against the [grammar](Topic#grammar).
    ///
    /// # Errors
    ///
    /// Returns the first rule the input breaks, checked in this order:
    /// [`Empty`](TopicError::Empty), [`TooLong`](TopicError::TooLong),
    /// [`TooManySegments`](TopicError::TooManySegments), then each segment
    /// from left to right ([`EmptySegment`](TopicError::EmptySegment),
    /// [`Wildcard`](TopicError::Wildcard),
    /// [`InvalidChar`](TopicError::InvalidChar)).
    pub fn new(topic: impl AsRef<str>) -> Result<Self, TopicError> {
        let topic = topic.as_ref();
        match grammar::check(topic, false) {
            Ok(()) => Ok(Self(Arc::from(topic))),
            Err(violation) => Err(TopicError::new(topic, violation)),
        }
    }

    /// The topic as a string slice, e.g. `"sensors.kitchen.temp"`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `.`-separated segments, left to right; never empty.
    pub fn segments(&self) -> impl DoubleEndedIterator<Item = &str> + FusedIterator + Clone {
        self.0.split('.')
    }

    /// The shared string, for [`TopicFilter`](super::TopicFilter) to reuse
    /// without copying.
    pub(super) fn into_inner(self) -> Arc<str> {
        self.0
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Topic {
    type Err = TopicError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<&str> for Topic {
    type Error = TopicError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl TryFrom<String> for Topic {
    type Error = TopicError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl AsRef<str> for Topic {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Topic {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn topic(s: &str) -> String {
        s.to_owned()
    }

    #[test]
    fn accepts_valid_topics() {
        let long_ok = format!("{}.{}", "a".repeat(127), "b".repeat(127));
        assert_eq!(long_ok.len(), MAX_TOPIC_BYTES);
        let cases = [
            "a",
            "0",
            "_",
            "-",
            "a.b",
            "sensors.kitchen.temp",
            "snake_case.kebab-case.v2",
            "a.b.c.d.e.f.g.h",
            &long_ok,
        ];
        for s in cases {
            let t = Topic::new(s).unwrap_or_else(|e| panic!("{s:?} rejected: {e}"));
            assert_eq!(t.as_str(), s);
            assert_eq!(t.segments().collect::<Vec<_>>().join("."), s);
        }
    }

    #[test]
    fn rejects_invalid_topics() {
        let too_long = "a".repeat(MAX_TOPIC_BYTES + 1);
        let cases: &[(&str, TopicError)] = &[
            ("", TopicError::Empty),
            (
                &too_long,
                TopicError::TooLong {
                    topic: too_long.clone(),
                    len: 256,
                    max: 255,
                },
            ),
            (
                "a.b.c.d.e.f.g.h.i",
                TopicError::TooManySegments {
                    topic: topic("a.b.c.d.e.f.g.h.i"),
                    count: 9,
                    max: 8,
                },
            ),
            (
                ".",
                TopicError::EmptySegment {
                    topic: topic("."),
                    segment: 0,
                },
            ),
            (
                ".a",
                TopicError::EmptySegment {
                    topic: topic(".a"),
                    segment: 0,
                },
            ),
            (
                "a.",
                TopicError::EmptySegment {
                    topic: topic("a."),
                    segment: 1,
                },
            ),
            (
                "a..b",
                TopicError::EmptySegment {
                    topic: topic("a..b"),
                    segment: 1,
                },
            ),
            (
                "a.B",
                TopicError::InvalidChar {
                    topic: topic("a.B"),
                    segment: 1,
                    ch: 'B',
                },
            ),
            (
                "a b",
                TopicError::InvalidChar {
                    topic: topic("a b"),
                    segment: 0,
                    ch: ' ',
                },
            ),
            (
                "caf\u{e9}",
                TopicError::InvalidChar {
                    topic: topic("caf\u{e9}"),
                    segment: 0,
                    ch: '\u{e9}',
                },
            ),
            (
                "a.+",
                TopicError::Wildcard {
                    topic: topic("a.+"),
                    segment: 1,
                    ch: '+',
                },
            ),
            (
                "#",
                TopicError::Wildcard {
                    topic: topic("#"),
                    segment: 0,
                    ch: '#',
                },
            ),
            (
                "a.#.b",
                TopicError::Wildcard {
                    topic: topic("a.#.b"),
                    segment: 1,
                    ch: '#',
                },
            ),
            (
                "ab+",
                TopicError::Wildcard {
                    topic: topic("ab+"),
                    segment: 0,
                    ch: '+',
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(Topic::new(input).as_ref(), Err(expected), "input {input:?}");
        }
    }

    #[test]
    fn error_messages_quote_the_input() {
        let err = Topic::new("a.Bad").unwrap_err();
        assert_eq!(
            err.to_string(),
            "topic \"a.Bad\" has invalid character 'B' in segment 1; \
             segments may only contain a-z, 0-9, '_' and '-'"
        );
        let err = Topic::new("a.+").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("topic \"a.+\" has wildcard '+'")
        );
        let err = Topic::new("x".repeat(1000)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "topic \"{}\"... is 1000 bytes long; the maximum is 255",
                "x".repeat(40)
            )
        );
    }

    #[test]
    fn conversions_agree() {
        let t = Topic::new("a.b").unwrap();
        assert_eq!("a.b".parse::<Topic>().unwrap(), t);
        assert_eq!(Topic::try_from("a.b").unwrap(), t);
        assert_eq!(Topic::try_from(String::from("a.b")).unwrap(), t);
        assert_eq!(Topic::new(String::from("a.b")).unwrap(), t);
        assert_eq!(t.to_string(), "a.b");
        assert_eq!(format!("{t:?}"), "Topic(\"a.b\")");
        assert_eq!(AsRef::<str>::as_ref(&t), "a.b");
        assert!("A".parse::<Topic>().is_err());

        let set: std::collections::HashSet<Topic> = [t.clone()].into();
        assert!(set.contains("a.b"));
        assert!(Topic::new("a.a").unwrap() < t);
    }

    /// An independent statement of the grammar, used as the test oracle.
    fn is_valid_topic(s: &str) -> bool {
        let segments: Vec<&str> = s.split('.').collect();
        s.len() <= 255
            && segments.len() <= 8
            && segments.iter().all(|seg| {
                !seg.is_empty()
                    && seg
                        .bytes()
                        .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
            })
    }

    fn assert_round_trips(s: &str) -> Result<(), TestCaseError> {
        if let Ok(t) = Topic::new(s) {
            let shown = t.to_string();
            prop_assert_eq!(&shown, s);
            prop_assert_eq!(shown.parse::<Topic>(), Ok(t));
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_strings(s in any::<String>()) {
            prop_assert_eq!(Topic::new(&s).is_ok(), is_valid_topic(&s));
            assert_round_trips(&s)?;
        }

        #[test]
        fn agrees_with_the_oracle_near_the_grammar(s in "[a-z.+#_-]{0,40}") {
            prop_assert_eq!(Topic::new(&s).is_ok(), is_valid_topic(&s));
            assert_round_trips(&s)?;
        }

        #[test]
        fn valid_topics_round_trip(s in "[a-z0-9_-]{1,30}(\\.[a-z0-9_-]{1,25}){0,7}") {
            let t = Topic::new(&s);
            prop_assert!(t.is_ok(), "{:?} rejected: {:?}", s, t);
            assert_round_trips(&s)?;
        }
    }
}
