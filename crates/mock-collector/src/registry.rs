//! The registry of collector types: the one place that names each type, its
//! capability, its aliases, its task topic and the events it emits.
//!
//! **Invariant:** every type listed in [`KNOWN_COLLECTORS`] has an emit test in
//! `tests/emit.rs` (a tripwire test there fails otherwise).

use std::fmt;
use std::str::FromStr;

/// Every collector type this binary can run, in a stable order.
pub const KNOWN_COLLECTORS: &[CollectorType] = &[
    CollectorType::Process,
    CollectorType::Network,
    CollectorType::Filesystem,
];

/// Prefix of the topics collectors take tasks on: `control.collector.task.<capability>`.
pub const TASK_TOPIC_PREFIX: &str = "control.collector.task";

/// Prefix of the topics collectors emit events on: `events.<capability>.<kind>`.
pub const EVENT_TOPIC_PREFIX: &str = "events";

/// A kind of collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CollectorType {
    /// Processes, from `/proc/<pid>/{stat,status}`.
    Process,
    /// Sockets, from `/proc/net/{tcp,tcp6,udp,udp6}`.
    Network,
    /// Files under a directory, from a bounded walk.
    Filesystem,
}

impl CollectorType {
    /// The capability name: announced to the broker, used in topics and as the
    /// queue group name (`process`, `network`, `filesystem`).
    pub const fn capability(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::Network => "network",
            Self::Filesystem => "filesystem",
        }
    }

    /// The daemon-style alias, also the prefix of the default client id
    /// (`procmond`, `netmond`, `fsmond`).
    pub const fn alias(self) -> &'static str {
        match self {
            Self::Process => "procmond",
            Self::Network => "netmond",
            Self::Filesystem => "fsmond",
        }
    }

    /// The kinds of event this type publishes with `--emit-interval-ms`, the last
    /// segment of `events.<capability>.<kind>`.
    pub const fn event_kinds(self) -> &'static [&'static str] {
        match self {
            Self::Process => &["snapshot"],
            Self::Network => &["sockets"],
            Self::Filesystem => &["usage"],
        }
    }

    /// The topic this type takes tasks on, e.g. `control.collector.task.process`.
    pub fn task_topic(self) -> String {
        format!("{TASK_TOPIC_PREFIX}.{}", self.capability())
    }

    /// The topic of one of this type's events, e.g. `events.process.snapshot`.
    pub fn event_topic(self, kind: &str) -> String {
        format!("{EVENT_TOPIC_PREFIX}.{}.{kind}", self.capability())
    }

    /// The default client id of instance `n`, e.g. `procmond-1`.
    pub fn default_client_id(self, instance: u32) -> String {
        format!("{}-{instance}", self.alias())
    }
}

impl fmt::Display for CollectorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.capability())
    }
}

/// A name that is neither a capability nor an alias of a known collector type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown collector type {name:?}; known are {known}")]
pub struct UnknownCollectorType {
    /// The name given.
    pub name: String,
    /// The accepted names, for the message.
    pub known: String,
}

impl FromStr for CollectorType {
    type Err = UnknownCollectorType;

    /// Accepts a capability (`process`) or an alias (`procmond`).
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        KNOWN_COLLECTORS
            .iter()
            .copied()
            .find(|t| t.capability() == name || t.alias() == name)
            .ok_or_else(|| UnknownCollectorType {
                name: name.to_owned(),
                known: KNOWN_COLLECTORS
                    .iter()
                    .map(|t| format!("{}|{}", t.capability(), t.alias()))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_and_aliases_parse_back_to_their_type() {
        for &t in KNOWN_COLLECTORS {
            assert_eq!(t.capability().parse::<CollectorType>(), Ok(t));
            assert_eq!(t.alias().parse::<CollectorType>(), Ok(t));
        }
        let err = "diskmond".parse::<CollectorType>().unwrap_err();
        assert!(err.known.contains("procmond"), "{err}");
    }

    #[test]
    fn topics_and_ids_follow_the_naming_scheme() {
        let t = CollectorType::Network;
        assert_eq!(t.task_topic(), "control.collector.task.network");
        assert_eq!(t.event_topic(t.event_kinds()[0]), "events.network.sockets");
        assert_eq!(CollectorType::Process.default_client_id(1), "procmond-1");
    }

    #[test]
    fn topics_are_valid_eventbus_names() {
        for &t in KNOWN_COLLECTORS {
            eventbus::Topic::new(t.task_topic()).unwrap();
            eventbus::GroupName::new(t.capability()).unwrap();
            for kind in t.event_kinds() {
                eventbus::Topic::new(t.event_topic(kind)).unwrap();
            }
        }
    }
}
