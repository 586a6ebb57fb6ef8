//! What an identity may do: publish and subscribe filters (allow and deny,
//! in the style of NATS users and mosquitto ACLs), the queue groups it may
//! join, whom it may send direct messages to, whether it may read stats, and
//! whether it is an admin (may cancel other clients' messages).
//!
//! A publish is allowed when some allow filter matches its topic and no deny
//! filter does. A subscription is allowed when some allow filter covers its
//! filter (every topic it matches is allowed) and no deny filter overlaps it
//! (no topic it matches is denied). Names (client ids, groups) are matched
//! by patterns where `*` stands for any run of characters.

use crate::topic::{SubscriptionIndex, Topic, TopicFilter};

/// Allow and deny filters for topics.
#[derive(Debug, Clone, Default)]
pub(crate) enum TopicRules {
    /// Everything (the default).
    #[default]
    Any,
    Only(Box<Only>),
}

/// The filters of [`TopicRules::Only`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Only {
    allow: FilterSet,
    deny: FilterSet,
}

/// Filters, indexed to match a topic against all of them at once.
#[derive(Debug, Clone, Default)]
pub(crate) struct FilterSet {
    filters: Vec<TopicFilter>,
    index: SubscriptionIndex<()>,
}

impl FilterSet {
    pub(crate) fn new(filters: Vec<TopicFilter>) -> Self {
        let mut index = SubscriptionIndex::new();
        for f in &filters {
            index.insert(f, ());
        }
        Self { filters, index }
    }

    fn matches(&self, topic: &Topic) -> bool {
        let mut any = false;
        self.index.for_each_match(topic, |()| any = true);
        any
    }
}

impl TopicRules {
    pub(crate) fn new(allow: Vec<TopicFilter>, deny: Vec<TopicFilter>) -> Self {
        let everything = allow.iter().any(|f| f.as_str() == "#");
        if everything && deny.is_empty() {
            return Self::Any;
        }
        Self::Only(Box::new(Only {
            allow: FilterSet::new(allow),
            deny: FilterSet::new(deny),
        }))
    }

    /// Whether publishing on `topic` is allowed.
    pub(crate) fn allows_topic(&self, topic: &Topic) -> bool {
        match self {
            Self::Any => true,
            Self::Only(only) => only.allow.matches(topic) && !only.deny.matches(topic),
        }
    }

    /// Whether subscribing with `filter` is allowed.
    pub(crate) fn allows_filter(&self, filter: &TopicFilter) -> bool {
        match self {
            Self::Any => true,
            Self::Only(only) => {
                only.allow.filters.iter().any(|a| a.covers(filter))
                    && !only.deny.filters.iter().any(|d| d.overlaps(filter))
            }
        }
    }
}

/// Name patterns: `procmond-*` matches `procmond-1`; `*` alone matches any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum NamePatterns {
    /// Any name (the default).
    #[default]
    Any,
    Only(Vec<String>),
}

impl NamePatterns {
    pub(crate) fn new(patterns: Vec<String>) -> Self {
        if patterns.iter().any(|p| p == "*") {
            return Self::Any;
        }
        Self::Only(patterns)
    }

    pub(crate) fn allows(&self, name: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Only(patterns) => patterns.iter().any(|p| glob(p, name)),
        }
    }
}

/// Whether `name` matches `pattern`, where `*` is any run of characters.
fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: the whole name.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Everything one identity may do.
#[derive(Debug, Clone, Default)]
pub(crate) struct Permissions {
    pub publish: TopicRules,
    pub subscribe: TopicRules,
    /// Queue groups it may join.
    pub groups: NamePatterns,
    /// Client ids it may send direct messages (and direct requests) to.
    pub direct: NamePatterns,
    /// May read stats.
    pub stats: bool,
    /// May cancel other clients' messages.
    pub admin: bool,
}

impl Permissions {
    /// What a client of the socket's owner may do when there is no auth
    /// file: everything but what is an admin's.
    pub(crate) fn owner() -> Self {
        Self {
            stats: true,
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filters(list: &[&str]) -> Vec<TopicFilter> {
        list.iter().map(|f| TopicFilter::new(f).unwrap()).collect()
    }

    #[test]
    fn publish_needs_an_allow_and_no_deny() {
        let rules = TopicRules::new(
            filters(&["events.#", "control.reply"]),
            filters(&["events.secret.#"]),
        );
        let allows = |t: &str| rules.allows_topic(&Topic::new(t).unwrap());
        assert!(allows("events.process.start"));
        assert!(allows("control.reply"));
        assert!(!allows("events.secret.key"));
        assert!(!allows("control.task"));
        assert!(TopicRules::new(filters(&["#"]), vec![]).allows_topic(&Topic::new("x").unwrap()));
        assert!(matches!(
            TopicRules::new(filters(&["#"]), vec![]),
            TopicRules::Any
        ));
        assert!(!TopicRules::new(vec![], vec![]).allows_topic(&Topic::new("x").unwrap()));
    }

    #[test]
    fn a_subscription_must_be_covered_by_an_allow_and_overlap_no_deny() {
        let rules = TopicRules::new(filters(&["events.#"]), filters(&["events.secret.#"]));
        let allows = |f: &str| rules.allows_filter(&TopicFilter::new(f).unwrap());
        assert!(allows("events.process.+"));
        assert!(!allows("events.#"), "would match denied topics");
        assert!(!allows("events.+.key"), "overlaps events.secret.key");
        assert!(!allows("#"));
        assert!(!allows("control.task"));
    }

    #[test]
    fn name_patterns() {
        let p = NamePatterns::new(vec!["procmond-*".into(), "agent".into(), "*-mon-*".into()]);
        for ok in ["procmond-1", "procmond-", "agent", "net-mon-2"] {
            assert!(p.allows(ok), "{ok}");
        }
        for no in ["procmond", "agent-2", "xprocmond-1", "netmon"] {
            assert!(!p.allows(no), "{no}");
        }
        assert!(NamePatterns::new(vec!["*".into()]).allows("anything"));
        assert!(!NamePatterns::new(vec![]).allows("anything"));
        assert!(glob("a*b*c", "a-x-b-y-c") && !glob("a*b*c", "a-c-b"));
    }
}
