//! Names across the bridge: local topics ↔ NATS subjects.
//!
//! Both are `.`-separated; a local topic segment (`a-z0-9_-`) is always a
//! valid NATS token, the other way round is not (NATS allows upper case and
//! most punctuation), so every import is checked and refused when it cannot
//! be a local topic. Wildcards map one to one: local `+` ↔ NATS `*`, local
//! `#` ↔ NATS `>`. A rule removes leading segments and then prepends others.
//!
//! What can be checked when the config is read is checked then
//! ([`MappingError`]); what depends on a message's own subject or topic is
//! checked per message ([`Unmappable`], counted, never fatal).

use eventbus::topic::{MAX_TOPIC_SEGMENTS, TopicError, TopicFilterError};
use eventbus::{Topic, TopicFilter};

/// The prefix of the broker's own topics, which an import never writes.
const RESERVED_SEGMENT: &str = "_sys";

/// Why a rule's mapping was refused when the config was read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MappingError {
    /// The local filter is not a valid eventbus topic filter.
    #[error("invalid local filter: {0}")]
    Filter(#[from] TopicFilterError),
    /// A NATS subject or subject prefix breaks NATS's rules or ours.
    #[error("invalid NATS subject {subject:?}: {why}")]
    Subject {
        /// The subject as written.
        subject: String,
        /// The rule it breaks.
        why: &'static str,
    },
    /// A segment that can never be part of a local topic.
    #[error("{token:?} cannot be a local topic segment (use a-z, 0-9, '_' and '-')")]
    NotATopicSegment {
        /// The segment.
        token: String,
    },
    /// `remove_prefix` is not the literal start of the filter or subject.
    #[error("remove_prefix {prefix:?} is not the literal start of {of:?}")]
    PrefixMismatch {
        /// The prefix.
        prefix: String,
        /// The filter or subject it should start.
        of: String,
    },
    /// The mapped names would be longer than a local topic may be.
    #[error("mapped topics would have at least {min} segments; a topic has at most {max}")]
    TooManySegments {
        /// The fewest segments a mapped topic would have.
        min: usize,
        /// [`MAX_TOPIC_SEGMENTS`].
        max: usize,
    },
    /// The rule would write the broker's own `_sys` topics.
    #[error("the rule would write the broker's reserved `_sys` topics")]
    Reserved,
    /// A serve rule's group is not a valid local group name.
    #[error("invalid local group name {group:?}")]
    Group {
        /// The name.
        group: String,
    },
    /// Nothing is left to name a message by.
    #[error("the mapping leaves nothing: the removed prefix is everything and no prefix is added")]
    Empty,
}

/// Why one message could not be mapped (counted in the status's
/// `unmappable`, the message skipped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unmappable {
    /// The name does not start with the rule's `remove_prefix`.
    #[error("{name:?} does not start with the rule's prefix")]
    NotUnderPrefix {
        /// The topic or subject.
        name: String,
    },
    /// Nothing left after the prefix was removed, and nothing added.
    #[error("{name:?} maps to an empty name")]
    Empty {
        /// The topic or subject.
        name: String,
    },
    /// The NATS subject cannot be a local topic.
    #[error("NATS subject maps to an invalid topic: {0}")]
    Topic(#[from] TopicError),
    /// The mapped topic is the broker's own.
    #[error("{topic:?} is a reserved `_sys` topic")]
    Reserved {
        /// The mapped topic.
        topic: String,
    },
    /// A request for a topic the serve rule does not cover.
    #[error("{topic:?} is not covered by the serve rule")]
    NotServed {
        /// The topic.
        topic: String,
    },
}

/// Splits a prefix as written (`""` is no segments).
fn split(prefix: &str) -> Vec<&str> {
    if prefix.is_empty() {
        Vec::new()
    } else {
        prefix.split('.').collect()
    }
}

fn is_topic_segment(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

/// A literal NATS token a rule may write: printable ASCII without `.`,
/// `*`, `>`, whitespace; not starting with `$` (`$JS`, `$SYS` are the
/// server's APIs).
fn check_nats_literal(subject: &str, token: &str) -> Result<(), MappingError> {
    let bad = |why| MappingError::Subject {
        subject: subject.to_owned(),
        why,
    };
    if token.is_empty() {
        return Err(bad("empty token (leading, trailing or double '.')"));
    }
    if token == "*" || token == ">" {
        return Err(bad("a prefix cannot hold wildcards"));
    }
    if token.starts_with('$') {
        return Err(bad("'$' subjects are the NATS server's own"));
    }
    if !token
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'*' && b != b'>')
    {
        return Err(bad("tokens are printable ASCII without '*' or '>' inside"));
    }
    Ok(())
}

/// Local topic → NATS subject, for one `[[export]]` rule.
#[derive(Debug, Clone)]
pub struct ExportMap {
    filter: TopicFilter,
    remove: usize,
    add: String,
    subject_filter: String,
}

impl ExportMap {
    /// Checks a rule as written.
    pub fn new(filter: &str, remove_prefix: &str, add_prefix: &str) -> Result<Self, MappingError> {
        let filter = TopicFilter::new(filter)?;
        let remove = split(remove_prefix);
        let segments: Vec<&str> = filter.segments().collect();
        let mismatch = || MappingError::PrefixMismatch {
            prefix: remove_prefix.to_owned(),
            of: filter.as_str().to_owned(),
        };
        if remove.len() > segments.len() {
            return Err(mismatch());
        }
        for (r, s) in remove.iter().zip(&segments) {
            if !is_topic_segment(r) || r != s {
                return Err(mismatch());
            }
        }
        for token in split(add_prefix) {
            check_nats_literal(add_prefix, token)?;
        }
        let rest = segments[remove.len()..].iter().map(|s| match *s {
            "+" => "*",
            "#" => ">",
            s => s,
        });
        let subject_filter: Vec<&str> = split(add_prefix).into_iter().chain(rest).collect();
        if subject_filter.is_empty() {
            return Err(MappingError::Empty);
        }
        Ok(Self {
            remove: remove.len(),
            add: add_prefix.to_owned(),
            subject_filter: subject_filter.join("."),
            filter,
        })
    }

    /// The local filter the bridge subscribes to.
    pub fn filter(&self) -> &TopicFilter {
        &self.filter
    }

    /// The NATS subject filter every mapped subject matches (the subjects of
    /// an at-least-once rule's stream).
    pub fn subject_filter(&self) -> &str {
        &self.subject_filter
    }

    /// The NATS subject for a local topic.
    pub fn subject_for(&self, topic: &Topic) -> Result<String, Unmappable> {
        if !self.filter.matches(topic) {
            return Err(Unmappable::NotUnderPrefix {
                name: topic.as_str().to_owned(),
            });
        }
        let rest: Vec<&str> = topic.segments().skip(self.remove).collect();
        let mut subject = self.add.clone();
        for segment in rest {
            if !subject.is_empty() {
                subject.push('.');
            }
            subject.push_str(segment);
        }
        if subject.is_empty() {
            return Err(Unmappable::Empty {
                name: topic.as_str().to_owned(),
            });
        }
        Ok(subject)
    }
}

/// NATS subject → local topic, for one `[[import]]` rule.
#[derive(Debug, Clone)]
pub struct ImportMap {
    subject: String,
    remove: usize,
    add: String,
}

impl ImportMap {
    /// Checks a rule as written.
    pub fn new(subject: &str, remove_prefix: &str, add_prefix: &str) -> Result<Self, MappingError> {
        let bad = |why| MappingError::Subject {
            subject: subject.to_owned(),
            why,
        };
        let tokens = split(subject);
        if tokens.is_empty() {
            return Err(bad("empty subject"));
        }
        for (i, token) in tokens.iter().enumerate() {
            match *token {
                ">" if i + 1 == tokens.len() => {}
                ">" => return Err(bad("'>' may only end a subject")),
                "*" => {}
                t if t.starts_with('$') => {
                    return Err(bad("'$' subjects are the NATS server's own"));
                }
                t if !is_topic_segment(t) => {
                    return Err(MappingError::NotATopicSegment {
                        token: t.to_owned(),
                    });
                }
                _ => {}
            }
        }
        let remove = split(remove_prefix);
        if remove.len() > tokens.len()
            || remove
                .iter()
                .zip(&tokens)
                .any(|(r, t)| r != t || *t == "*" || *t == ">")
        {
            return Err(MappingError::PrefixMismatch {
                prefix: remove_prefix.to_owned(),
                of: subject.to_owned(),
            });
        }
        let add = split(add_prefix);
        if let Some(bad) = add.iter().find(|s| !is_topic_segment(s)) {
            return Err(MappingError::NotATopicSegment {
                token: (*bad).to_owned(),
            });
        }
        // `>` stands for at least one token.
        let min = add.len() + tokens.len() - remove.len();
        if min > MAX_TOPIC_SEGMENTS {
            return Err(MappingError::TooManySegments {
                min,
                max: MAX_TOPIC_SEGMENTS,
            });
        }
        if min == 0 {
            return Err(MappingError::Empty);
        }
        let first = add.first().or(tokens.get(remove.len()));
        if first == Some(&RESERVED_SEGMENT) {
            return Err(MappingError::Reserved);
        }
        Ok(Self {
            subject: subject.to_owned(),
            remove: remove.len(),
            add: add_prefix.to_owned(),
        })
    }

    /// The NATS subject (filter) the bridge subscribes to.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The local topic for a NATS subject the subscription delivered.
    pub fn topic_for(&self, subject: &str) -> Result<Topic, Unmappable> {
        let mut tokens = subject.split('.');
        // Only the count is removed: the subscription's filter guarantees
        // the literal prefix, and a NATS server that broke that promise
        // still yields a checked topic.
        for _ in 0..self.remove {
            if tokens.next().is_none() {
                return Err(Unmappable::NotUnderPrefix {
                    name: subject.to_owned(),
                });
            }
        }
        let mut topic = self.add.clone();
        for token in tokens {
            if !topic.is_empty() {
                topic.push('.');
            }
            topic.push_str(token);
        }
        if topic.is_empty() {
            return Err(Unmappable::Empty {
                name: subject.to_owned(),
            });
        }
        let topic = Topic::new(&topic)?;
        if topic.segments().next() == Some(RESERVED_SEGMENT) {
            return Err(Unmappable::Reserved {
                topic: topic.as_str().to_owned(),
            });
        }
        Ok(topic)
    }
}

/// Requests across hosts, for one `[[serve]]` rule: NATS requests on
/// `<subject_prefix>.<topic>` are local requests on `<topic>`, for topics
/// the filter covers.
#[derive(Debug, Clone)]
pub struct ServeMap {
    filter: TopicFilter,
    prefix: String,
    group: Option<eventbus::GroupName>,
}

impl ServeMap {
    /// Checks a rule as written.
    pub fn new(
        topic_filter: &str,
        subject_prefix: &str,
        group: &str,
    ) -> Result<Self, MappingError> {
        let filter = TopicFilter::new(topic_filter)?;
        let group = match group {
            "" => None,
            name => Some(
                eventbus::GroupName::new(name).map_err(|_| MappingError::Group {
                    group: name.to_owned(),
                })?,
            ),
        };
        let prefix = split(subject_prefix);
        if prefix.is_empty() {
            return Err(MappingError::Subject {
                subject: subject_prefix.to_owned(),
                why: "a serve rule needs a subject prefix",
            });
        }
        for token in &prefix {
            check_nats_literal(subject_prefix, token)?;
        }
        if filter.segments().next() == Some(RESERVED_SEGMENT) {
            return Err(MappingError::Reserved);
        }
        Ok(Self {
            filter,
            prefix: subject_prefix.to_owned(),
            group,
        })
    }

    /// The local filter of the rule.
    pub fn filter(&self) -> &TopicFilter {
        &self.filter
    }

    /// The local queue group the bridge joins as a fallback member, if any.
    pub fn group(&self) -> Option<&eventbus::GroupName> {
        self.group.as_ref()
    }

    /// The NATS subject filter the bridge answers requests on.
    pub fn subject_filter(&self) -> String {
        format!("{}.>", self.prefix)
    }

    /// The NATS subject a local request on `topic` goes out on.
    pub fn subject_for(&self, topic: &Topic) -> String {
        format!("{}.{}", self.prefix, topic.as_str())
    }

    /// The local topic of a NATS request, if the rule serves it.
    pub fn topic_for(&self, subject: &str) -> Result<Topic, Unmappable> {
        let rest = subject
            .strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix('.'))
            .ok_or_else(|| Unmappable::NotUnderPrefix {
                name: subject.to_owned(),
            })?;
        let topic = Topic::new(rest)?;
        if !self.filter.matches(&topic) {
            return Err(Unmappable::NotServed {
                topic: topic.as_str().to_owned(),
            });
        }
        Ok(topic)
    }
}

#[cfg(test)]
mod tests;
