//! [`TopicFilter`]: a topic pattern with wildcards, as used by subscriptions.

use std::borrow::Borrow;
use std::fmt;
use std::iter::FusedIterator;
use std::str::FromStr;
use std::sync::Arc;

use super::grammar::{self, HASH, PLUS, Violation, quoted};
use super::{MAX_TOPIC_BYTES, MAX_TOPIC_SEGMENTS, Topic};

/// A validated pattern over [`Topic`]s, such as `sensors.+.temp` or
/// `sensors.#`.
///
/// # Grammar
///
/// A filter follows the [`Topic` grammar](Topic#grammar) (1 to
/// [`MAX_TOPIC_SEGMENTS`] non-empty `[a-z0-9_-]` segments separated by `.`,
/// at most [`MAX_TOPIC_BYTES`] bytes), and a segment may also be a wildcard:
///
/// - `+` matches exactly one segment, whatever it is;
/// - `#` matches zero or more trailing segments, and may only be the last
///   segment.
///
/// A wildcard is a whole segment: `a+` or `#a` are rejected.
///
/// # Matching
///
/// | filter  | matches              | does not match |
/// |---------|----------------------|----------------|
/// | `a.b`   | `a.b`                | `a`, `a.b.c`   |
/// | `a.+`   | `a.b`, `a.c`         | `a`, `a.b.c`   |
/// | `a.#`   | `a`, `a.b`, `a.b.c`  | `b`            |
/// | `+.#`   | every topic          |                |
/// | `#`     | every topic          |                |
///
/// Every topic is also a filter that matches only itself, see
/// [`From<Topic>`](#impl-From<Topic>-for-TopicFilter).
///
/// Like [`Topic`], a `TopicFilter` is an [`Arc<str>`] inside (cheap to
/// clone) and compares, hashes and orders as its string.
///
/// # Examples
///
/// ```
/// use eventbus::topic::{Topic, TopicFilter};
///
/// let filter = TopicFilter::new("sensors.+.temp")?;
/// assert!(filter.matches(&Topic::new("sensors.kitchen.temp")?));
/// assert!(!filter.matches(&Topic::new("sensors.kitchen.humidity")?));
///
/// let all_sensors = TopicFilter::new("sensors.#")?;
/// assert!(all_sensors.matches(&Topic::new("sensors")?));
/// assert!(!all_sensors.is_literal());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter(Arc<str>);

/// Why a string is not a valid [`TopicFilter`].
///
/// Every variant carries the rejected input and the facts needed to fix it.
/// Segment indices start at 0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicFilterError {
    /// The input is the empty string.
    #[error("topic filter is empty; a filter needs at least one segment")]
    Empty,
    /// The input is longer than [`MAX_TOPIC_BYTES`].
    #[error("topic filter {} is {len} bytes long; the maximum is {max}", quoted(.filter))]
    TooLong {
        /// The rejected input.
        filter: String,
        /// Its length in bytes.
        len: usize,
        /// The limit, [`MAX_TOPIC_BYTES`].
        max: usize,
    },
    /// The input has more than [`MAX_TOPIC_SEGMENTS`] segments.
    #[error("topic filter {} has {count} segments; the maximum is {max}", quoted(.filter))]
    TooManySegments {
        /// The rejected input.
        filter: String,
        /// How many `.`-separated segments it has.
        count: usize,
        /// The limit, [`MAX_TOPIC_SEGMENTS`].
        max: usize,
    },
    /// A segment is empty: the input starts or ends with `.` or has `..`.
    #[error("topic filter {} has an empty segment at index {segment}", quoted(.filter))]
    EmptySegment {
        /// The rejected input.
        filter: String,
        /// Index of the empty segment.
        segment: usize,
    },
    /// A segment that is not a wildcard contains a character outside
    /// `[a-z0-9_-]`.
    #[error(
        "topic filter {} has invalid character {ch:?} in segment {segment}; \
         segments may only contain a-z, 0-9, '_' and '-', or be exactly '+' or '#'",
        quoted(.filter)
    )]
    InvalidChar {
        /// The rejected input.
        filter: String,
        /// Index of the segment holding the character.
        segment: usize,
        /// The first offending character of that segment.
        ch: char,
    },
    /// A wildcard shares its segment with other characters, as in `a+` or
    /// `##`.
    #[error(
        "topic filter {} has wildcard {ch:?} inside segment {segment}; \
         a wildcard must be a whole segment",
        quoted(.filter)
    )]
    WildcardNotAlone {
        /// The rejected input.
        filter: String,
        /// Index of the segment holding the wildcard.
        segment: usize,
        /// The wildcard character, `+` or `#`.
        ch: char,
    },
    /// A `#` segment is followed by more segments.
    #[error(
        "topic filter {} has '#' at segment {segment}, which is not the last; \
         '#' may only end a filter",
        quoted(.filter)
    )]
    HashNotLast {
        /// The rejected input.
        filter: String,
        /// Index of the misplaced `#` segment.
        segment: usize,
    },
}

impl TopicFilterError {
    fn new(filter: &str, violation: Violation) -> Self {
        let filter = filter.to_owned();
        match violation {
            Violation::Empty => Self::Empty,
            Violation::TooLong { len } => Self::TooLong {
                filter,
                len,
                max: MAX_TOPIC_BYTES,
            },
            Violation::TooManySegments { count } => Self::TooManySegments {
                filter,
                count,
                max: MAX_TOPIC_SEGMENTS,
            },
            Violation::EmptySegment { segment } => Self::EmptySegment { filter, segment },
            Violation::InvalidChar { segment, ch } => Self::InvalidChar {
                filter,
                segment,
                ch,
            },
            Violation::Wildcard { segment, ch } => Self::WildcardNotAlone {
                filter,
                segment,
                ch,
            },
            Violation::HashNotLast { segment } => Self::HashNotLast { filter, segment },
        }
    }
}

impl TopicFilter {
    /// Validates `filter` against the [grammar](TopicFilter#grammar).
    ///
    /// # Errors
    ///
    /// Returns the first rule the input breaks, checked in this order:
    /// [`Empty`](TopicFilterError::Empty),
    /// [`TooLong`](TopicFilterError::TooLong),
    /// [`TooManySegments`](TopicFilterError::TooManySegments), then each
    /// segment from left to right.
    pub fn new(filter: impl AsRef<str>) -> Result<Self, TopicFilterError> {
        let filter = filter.as_ref();
        match grammar::check(filter, true) {
            Ok(()) => Ok(Self(Arc::from(filter))),
            Err(violation) => Err(TopicFilterError::new(filter, violation)),
        }
    }

    /// The filter as a string slice, e.g. `"sensors.+.temp"`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `.`-separated segments, left to right, wildcards included as
    /// `"+"` and `"#"`; never empty.
    pub fn segments(&self) -> impl DoubleEndedIterator<Item = &str> + FusedIterator + Clone {
        self.0.split('.')
    }

    /// Whether the filter has no wildcard, so it matches exactly one topic:
    /// the one with the same string.
    pub fn is_literal(&self) -> bool {
        // Valid filters only hold `+` and `#` as whole wildcard segments.
        !self.0.bytes().any(|b| b == b'+' || b == b'#')
    }

    /// Whether `topic` matches this filter, segment by segment (see
    /// [Matching](TopicFilter#matching)).
    ///
    /// Runs in `O(segments)` without allocating. To match one topic against
    /// many filters, use a [`SubscriptionIndex`](super::SubscriptionIndex).
    pub fn matches(&self, topic: &Topic) -> bool {
        let mut topic_segments = topic.segments();
        for pattern in self.segments() {
            match (pattern, topic_segments.next()) {
                // `#` is last and takes whatever is left, possibly nothing.
                (HASH, _) => return true,
                (_, None) => return false,
                (PLUS, Some(_)) => {}
                (literal, Some(segment)) if literal == segment => {}
                (_, Some(_)) => return false,
            }
        }
        topic_segments.next().is_none()
    }

    /// Whether every topic `other` matches, this filter matches too
    /// (`events.#` covers `events.+.start`; `events.+` does not cover
    /// `events.#`). Used to check a subscription against the filters a
    /// client is allowed.
    pub fn covers(&self, other: &TopicFilter) -> bool {
        let mut theirs = other.segments();
        let mut ours_left = self.segments();
        let mut at = 0;
        while let Some(ours) = ours_left.next() {
            match (ours, theirs.next()) {
                (HASH, _) => return true,
                // Theirs takes any rest, of at least one segment when it is
                // the whole filter (a topic has one): `+.#` covers `#`.
                (PLUS, Some(HASH)) if at == 0 => {
                    return ours_left.next() == Some(HASH) && ours_left.next().is_none();
                }
                // Ours needs one more segment; theirs matches without it.
                (_, None) | (_, Some(HASH)) => return false,
                (PLUS, Some(_)) => {}
                (literal, Some(segment)) if literal == segment => {}
                (_, Some(_)) => return false,
            }
            at += 1;
        }
        theirs.next().is_none()
    }

    /// Whether some topic matches both filters. Used to check a subscription
    /// against the filters a client is denied.
    pub fn overlaps(&self, other: &TopicFilter) -> bool {
        let mut theirs = other.segments();
        for ours in self.segments() {
            match (ours, theirs.next()) {
                (HASH, _) | (_, Some(HASH)) => return true,
                (_, None) => return false,
                (PLUS, Some(_)) | (_, Some(PLUS)) => {}
                (literal, Some(segment)) if literal == segment => {}
                (_, Some(_)) => return false,
            }
        }
        matches!(theirs.next(), None | Some(HASH))
    }
}

impl From<Topic> for TopicFilter {
    /// A topic is a literal filter that matches only itself; the string is
    /// shared, not copied.
    fn from(topic: Topic) -> Self {
        Self(topic.into_inner())
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TopicFilter {
    type Err = TopicFilterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<&str> for TopicFilter {
    type Error = TopicFilterError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl TryFrom<String> for TopicFilter {
    type Error = TopicFilterError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl AsRef<str> for TopicFilter {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for TopicFilter {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn filter(s: &str) -> TopicFilter {
        TopicFilter::new(s).unwrap_or_else(|e| panic!("{s:?} rejected: {e}"))
    }

    fn topic(s: &str) -> Topic {
        Topic::new(s).unwrap_or_else(|e| panic!("{s:?} rejected: {e}"))
    }

    #[test]
    fn accepts_valid_filters() {
        let cases = [
            ("a", true),
            ("a.b-c.d_e.0", true),
            ("+", false),
            ("#", false),
            ("+.+", false),
            ("a.+.c", false),
            ("a.#", false),
            ("+.#", false),
            ("a.b.c.d.e.f.g.#", false),
        ];
        for (s, literal) in cases {
            let f = filter(s);
            assert_eq!(f.as_str(), s);
            assert_eq!(f.to_string(), s);
            assert_eq!(f.is_literal(), literal, "is_literal({s:?})");
            assert_eq!(f.segments().collect::<Vec<_>>().join("."), s);
        }
    }

    #[test]
    fn rejects_invalid_filters() {
        use TopicFilterError as E;
        let too_long = format!("{}.#", "a".repeat(MAX_TOPIC_BYTES));
        let s = String::from;
        let cases: &[(&str, E)] = &[
            ("", E::Empty),
            (
                &too_long,
                E::TooLong {
                    filter: too_long.clone(),
                    len: 257,
                    max: 255,
                },
            ),
            (
                "+.+.+.+.+.+.+.+.#",
                E::TooManySegments {
                    filter: s("+.+.+.+.+.+.+.+.#"),
                    count: 9,
                    max: 8,
                },
            ),
            (
                "a..#",
                E::EmptySegment {
                    filter: s("a..#"),
                    segment: 1,
                },
            ),
            (
                "#.",
                E::HashNotLast {
                    filter: s("#."),
                    segment: 0,
                },
            ),
            (
                "+.",
                E::EmptySegment {
                    filter: s("+."),
                    segment: 1,
                },
            ),
            (
                "#.a",
                E::HashNotLast {
                    filter: s("#.a"),
                    segment: 0,
                },
            ),
            (
                "a.#.+",
                E::HashNotLast {
                    filter: s("a.#.+"),
                    segment: 1,
                },
            ),
            (
                "#.#",
                E::HashNotLast {
                    filter: s("#.#"),
                    segment: 0,
                },
            ),
            (
                "a+",
                E::WildcardNotAlone {
                    filter: s("a+"),
                    segment: 0,
                    ch: '+',
                },
            ),
            (
                "a.##",
                E::WildcardNotAlone {
                    filter: s("a.##"),
                    segment: 1,
                    ch: '#',
                },
            ),
            (
                "a.b*",
                E::InvalidChar {
                    filter: s("a.b*"),
                    segment: 1,
                    ch: '*',
                },
            ),
            (
                "A.#",
                E::InvalidChar {
                    filter: s("A.#"),
                    segment: 0,
                    ch: 'A',
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                TopicFilter::new(input).as_ref(),
                Err(expected),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn error_messages_quote_the_input() {
        assert_eq!(
            TopicFilter::new("a.#.b").unwrap_err().to_string(),
            "topic filter \"a.#.b\" has '#' at segment 1, which is not the last; \
             '#' may only end a filter"
        );
        assert_eq!(
            TopicFilter::new("a.x+").unwrap_err().to_string(),
            "topic filter \"a.x+\" has wildcard '+' inside segment 1; \
             a wildcard must be a whole segment"
        );
    }

    #[test]
    fn matching_table() {
        let cases: &[(&str, &str, bool)] = &[
            // Literal filters match only the same topic.
            ("a", "a", true),
            ("a", "b", false),
            ("a.b", "a.b", true),
            ("a.b", "a", false),
            ("a.b", "a.b.c", false),
            ("a", "a.b", false),
            // `+` matches exactly one segment.
            ("+", "a", true),
            ("+", "a.b", false),
            ("a.+", "a.b", true),
            ("a.+", "a", false),
            ("a.+", "a.b.c", false),
            ("+.b", "a.b", true),
            ("+.b", "a.c", false),
            ("+.+", "x.y", true),
            ("a.+.c", "a.b.c", true),
            ("a.+.c", "a.b.d", false),
            // `#` matches zero or more trailing segments.
            ("#", "a", true),
            ("#", "a.b.c.d.e.f.g.h", true),
            ("a.#", "a", true),
            ("a.#", "a.b", true),
            ("a.#", "a.b.c", true),
            ("a.#", "b", false),
            ("a.#", "b.a", false),
            ("a.b.#", "a", false),
            ("a.b.#", "a.b", true),
            ("+.#", "a", true),
            ("+.#", "a.b.c", true),
            ("+.b.#", "a.c", false),
            ("+.b.#", "x.b", true),
        ];
        for &(f, t, expected) in cases {
            assert_eq!(filter(f).matches(&topic(t)), expected, "{f:?} ~ {t:?}");
        }
    }

    #[test]
    fn a_topic_is_a_filter_matching_only_itself() {
        let t = topic("a.b");
        let f = TopicFilter::from(t.clone());
        assert!(f.is_literal());
        assert_eq!(f, filter("a.b"));
        assert!(f.matches(&t));
        assert!(!f.matches(&topic("a.b.c")));
    }

    #[test]
    fn conversions_agree() {
        let f = filter("a.+");
        assert_eq!("a.+".parse::<TopicFilter>().unwrap(), f);
        assert_eq!(TopicFilter::try_from("a.+").unwrap(), f);
        assert_eq!(TopicFilter::try_from(String::from("a.+")).unwrap(), f);
        assert_eq!(AsRef::<str>::as_ref(&f), "a.+");
        assert_eq!(format!("{f:?}"), "TopicFilter(\"a.+\")");
        let set: std::collections::HashSet<TopicFilter> = [f].into();
        assert!(set.contains("a.+"));
    }

    /// A second, recursive statement of the matching rules, used as oracle.
    fn reference_match(filter: &[&str], topic: &[&str]) -> bool {
        match (filter.split_first(), topic.split_first()) {
            (None, None) => true,
            (Some((&"#", _)), _) => true,
            (Some((&"+", f_rest)), Some((_, t_rest))) => reference_match(f_rest, t_rest),
            (Some((f, f_rest)), Some((t, t_rest))) => f == t && reference_match(f_rest, t_rest),
            _ => false,
        }
    }

    fn small_filter() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(&["a", "b", "+", "#"][..]), 1..=5).prop_map(
            |mut segments| {
                if let Some(hash) = segments.iter().position(|s| *s == "#") {
                    segments.truncate(hash + 1);
                }
                segments.join(".")
            },
        )
    }

    fn small_topic() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(&["a", "b"][..]), 1..=5)
            .prop_map(|segments| segments.join("."))
    }

    proptest! {
        #[test]
        fn matches_agrees_with_reference(f in small_filter(), t in small_topic()) {
            let filter = filter(&f);
            let topic = topic(&t);
            let f_segments: Vec<&str> = f.split('.').collect();
            let t_segments: Vec<&str> = t.split('.').collect();
            prop_assert_eq!(
                filter.matches(&topic),
                reference_match(&f_segments, &t_segments)
            );
        }

        #[test]
        fn covers_and_overlaps_agree_with_every_topic(f in small_filter(), g in small_filter()) {
            let (f, g) = (filter(&f), filter(&g));
            // Every topic of 1 to 6 segments of `a` and `b`.
            let topics: Vec<Topic> = (1..=6u32)
                .flat_map(|len| {
                    (0..1u32 << len).map(move |bits| {
                        (0..len)
                            .map(|i| if bits >> i & 1 == 1 { "a" } else { "b" })
                            .collect::<Vec<_>>()
                            .join(".")
                    })
                })
                .map(|t| topic(&t))
                .collect();
            let covers = topics.iter().all(|t| !g.matches(t) || f.matches(t));
            let overlaps = topics.iter().any(|t| f.matches(t) && g.matches(t));
            prop_assert_eq!(f.covers(&g), covers, "{} covers {}", f, g);
            prop_assert_eq!(f.overlaps(&g), overlaps, "{} overlaps {}", f, g);
        }

        #[test]
        fn never_panics_and_round_trips(s in "[a-z.+#_-]{0,40}") {
            if let Ok(f) = TopicFilter::new(&s) {
                prop_assert_eq!(f.to_string().parse::<TopicFilter>(), Ok(f.clone()));
                prop_assert_eq!(f.as_str(), s.as_str());
            }
        }

        #[test]
        fn never_panics_on_arbitrary_strings(s in any::<String>()) {
            if let Ok(f) = TopicFilter::new(&s) {
                prop_assert_eq!(f.to_string(), s);
            }
        }

        #[test]
        fn every_valid_topic_is_a_valid_filter(s in "[a-z.+#_-]{0,40}") {
            if let Ok(t) = Topic::new(&s) {
                prop_assert_eq!(TopicFilter::new(&s), Ok(TopicFilter::from(t)));
            }
        }
    }
}
