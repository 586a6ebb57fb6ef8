//! The `eventbus-bridge` process of a node, as `/work/notes/bridge-contract.md`
//! fixes it: its config file ([`BridgeConfig`], written by the harness), its
//! ready line, and its status on `_sys.bridge.<name>` ([`BridgeStatus`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use eventbus_harness::binaries::workspace_bin;

/// The variable naming the `eventbus-bridge` binary (else it is built from
/// the workspace, see [`binaries`](eventbus_harness::binaries)).
pub const BRIDGE_BIN_ENV: &str = "EVENTBUS_BRIDGE_BIN";

/// The `eventbus-bridge` binary.
pub fn bridge_bin() -> PathBuf {
    workspace_bin("eventbus-bridge", "eventbus-bridge", BRIDGE_BIN_ENV)
}

/// How a rule delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Core NATS: nothing duplicated, loss possible across a partition.
    AtMostOnce,
    /// JetStream with acks on both sides: nothing lost, duplicates possible.
    AtLeastOnce,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Self::AtMostOnce => "at-most-once",
            Self::AtLeastOnce => "at-least-once",
        }
    }
}

/// What happens to exports at the buffer bound while NATS is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// The oldest waiting export is dropped.
    DropOldest,
    /// The new export is dropped.
    DropIncoming,
    /// The local subscription stops being read.
    Block,
}

impl Overflow {
    fn as_str(self) -> &'static str {
        match self {
            Self::DropOldest => "drop-oldest",
            Self::DropIncoming => "drop-incoming",
            Self::Block => "block",
        }
    }
}

/// `[[export]]`: local topics to NATS subjects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// The local topic filter (`+`, `#`).
    pub filter: String,
    /// Segments removed from the local topic first.
    pub remove_prefix: String,
    /// Then prepended.
    pub add_prefix: String,
    /// How it is delivered.
    pub mode: Mode,
    /// At-least-once: the JetStream stream.
    pub stream: String,
}

impl Export {
    /// Local topics matching `filter` to the same NATS subjects, delivered by `mode`.
    pub fn new(filter: &str, mode: Mode) -> Self {
        Self {
            filter: filter.to_owned(),
            remove_prefix: String::new(),
            add_prefix: String::new(),
            mode,
            stream: String::new(),
        }
    }

    /// Prepends `prefix` to each subject.
    pub fn add_prefix(mut self, prefix: &str) -> Self {
        self.add_prefix = prefix.to_owned();
        self
    }

    /// Through JetStream stream `stream` (at-least-once).
    pub fn stream(mut self, stream: &str) -> Self {
        self.stream = stream.to_owned();
        self
    }
}

/// `[[import]]`: NATS subjects to local topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// The NATS subject (`*`, `>`).
    pub subject: String,
    /// Segments removed from the subject first.
    pub remove_prefix: String,
    /// Then prepended.
    pub add_prefix: String,
    /// How it is delivered.
    pub mode: Mode,
    /// At-least-once: the JetStream stream.
    pub stream: String,
    /// At-least-once: the durable consumer (empty: the bridge's client id).
    pub durable: String,
}

impl Import {
    /// NATS subjects matching `subject` to the same local topics, delivered by `mode`.
    pub fn new(subject: &str, mode: Mode) -> Self {
        Self {
            subject: subject.to_owned(),
            remove_prefix: String::new(),
            add_prefix: String::new(),
            mode,
            stream: String::new(),
            durable: String::new(),
        }
    }

    /// Removes `remove` from each subject, then prepends `add`.
    pub fn rename(mut self, remove: &str, add: &str) -> Self {
        self.remove_prefix = remove.to_owned();
        self.add_prefix = add.to_owned();
        self
    }

    /// From JetStream stream `stream` through durable consumer `durable`
    /// (at-least-once).
    pub fn stream(mut self, stream: &str, durable: &str) -> Self {
        self.stream = stream.to_owned();
        self.durable = durable.to_owned();
        self
    }
}

/// `[[serve]]`: requests across hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serve {
    /// Local requests on these topics nobody serves locally go out.
    pub topic_filter: String,
    /// ... as NATS requests on `<subject_prefix>.<topic>`.
    pub subject_prefix: String,
    /// The local queue group (on exactly `topic_filter`) the bridge joins
    /// as a fallback member, so a local request nobody here serves goes out
    /// over NATS; empty: NATS requests are served here, none go out.
    pub group: String,
}

/// A bridge's configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    /// The local broker's socket.
    pub socket: PathBuf,
    /// Its client id at the local broker.
    pub client_id: String,
    /// The NATS servers it may connect to.
    pub servers: Vec<String>,
    /// This node's origin name (loop prevention, the status topic).
    pub name: String,
    /// Backoff cap between reconnects, in milliseconds.
    pub reconnect_max_ms: u64,
    /// Exports waiting while NATS is unreachable, at most.
    pub buffer_max_messages: u64,
    /// At that bound.
    pub buffer_overflow: Overflow,
    /// A burst held per rule while NATS is connected but slower (the
    /// bridge's default when `None`).
    pub backlog_max_messages: Option<u64>,
    /// The rules.
    pub exports: Vec<Export>,
    /// The rules.
    pub imports: Vec<Import>,
    /// The rules.
    pub serves: Vec<Serve>,
}

impl BridgeConfig {
    /// A bridge of node `name` on `socket` to `servers`, with no rules yet.
    pub fn new(name: &str, socket: &Path, servers: Vec<String>) -> Self {
        Self {
            socket: socket.to_owned(),
            client_id: format!("bridge-{name}"),
            servers,
            name: name.to_owned(),
            reconnect_max_ms: 500,
            buffer_max_messages: 10_000,
            buffer_overflow: Overflow::DropOldest,
            backlog_max_messages: None,
            exports: Vec::new(),
            imports: Vec::new(),
            serves: Vec::new(),
        }
    }

    /// The status topic of this bridge at its local broker.
    pub fn status_topic(&self) -> String {
        format!("_sys.bridge.{}", self.name)
    }

    /// The TOML file.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let q = |s: &str| toml_string(s);
        let _ = writeln!(
            out,
            "[local]\nsocket = {}\nclient_id = {}\n",
            q(&self.socket.to_string_lossy()),
            q(&self.client_id)
        );
        let servers: Vec<String> = self.servers.iter().map(|s| q(s)).collect();
        let _ = writeln!(
            out,
            "[nats]\nservers = [{}]\nname = {}\nreconnect_max_ms = {}\nbuffer_max_messages = {}\nbuffer_overflow = {}\n",
            servers.join(", "),
            q(&self.name),
            self.reconnect_max_ms,
            self.buffer_max_messages,
            q(self.buffer_overflow.as_str()),
        );
        if let Some(backlog) = self.backlog_max_messages {
            let _ = writeln!(out, "backlog_max_messages = {backlog}\n");
        }
        for e in &self.exports {
            let _ = writeln!(
                out,
                "[[export]]\nfilter = {}\nremove_prefix = {}\nadd_prefix = {}\nmode = {}\nstream = {}\n",
                q(&e.filter),
                q(&e.remove_prefix),
                q(&e.add_prefix),
                q(e.mode.as_str()),
                q(&e.stream)
            );
        }
        for i in &self.imports {
            let _ = writeln!(
                out,
                "[[import]]\nsubject = {}\nremove_prefix = {}\nadd_prefix = {}\nmode = {}\nstream = {}",
                q(&i.subject),
                q(&i.remove_prefix),
                q(&i.add_prefix),
                q(i.mode.as_str()),
                q(&i.stream)
            );
            if !i.durable.is_empty() {
                let _ = writeln!(out, "durable = {}", q(&i.durable));
            }
            out.push('\n');
        }
        for s in &self.serves {
            let _ = writeln!(
                out,
                "[[serve]]\ntopic_filter = {}\nsubject_prefix = {}\ngroup = {}\n",
                q(&s.topic_filter),
                q(&s.subject_prefix),
                q(&s.group)
            );
        }
        out
    }
}

/// A TOML basic string: quotes, backslashes and control characters escaped.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The status a bridge publishes on `_sys.bridge.<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BridgeStatus {
    /// The node's origin name.
    pub name: String,
    /// `connected` or `connecting`.
    pub nats: String,
    /// Messages sent to NATS.
    pub exported: u64,
    /// Messages brought in from NATS.
    pub imported: u64,
    /// Exports waiting for NATS now.
    pub buffered: u64,
    /// Exports dropped at the buffer bound.
    pub dropped: u64,
    /// Local requests sent over NATS.
    pub requests_out: u64,
    /// NATS requests served locally.
    pub requests_in: u64,
    /// Reconnections to NATS.
    pub reconnects: u64,
}

impl BridgeStatus {
    /// Parses a status payload; `None` for anything else.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        serde_json::from_slice(payload).ok()
    }

    /// Whether it is connected to NATS.
    pub fn connected(&self) -> bool {
        self.nats == "connected"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_has_every_rule_and_escapes_its_strings() {
        let mut config = BridgeConfig::new(
            "node1",
            Path::new("/tmp/x\"y/b.sock"),
            vec!["nats://10.0.0.1:4222".into()],
        );
        config.exports.push(Export {
            filter: "events.#".into(),
            remove_prefix: String::new(),
            add_prefix: "fleet.node1".into(),
            mode: Mode::AtLeastOnce,
            stream: "FLEET_EVENTS".into(),
        });
        config.imports.push(Import {
            subject: "fleet.*.events.>".into(),
            remove_prefix: "fleet".into(),
            add_prefix: "remote".into(),
            mode: Mode::AtMostOnce,
            stream: String::new(),
            durable: "d1".into(),
        });
        config.serves.push(Serve {
            topic_filter: "control.collector.task.process".into(),
            subject_prefix: "fleet.req".into(),
            group: "process".into(),
        });
        let toml = config.to_toml();
        assert!(toml.contains("socket = \"/tmp/x\\\"y/b.sock\""), "{toml}");
        for line in [
            "servers = [\"nats://10.0.0.1:4222\"]",
            "[[export]]\nfilter = \"events.#\"",
            "mode = \"at-least-once\"\nstream = \"FLEET_EVENTS\"",
            "[[import]]\nsubject = \"fleet.*.events.>\"",
            "durable = \"d1\"",
            "[[serve]]\ntopic_filter = \"control.collector.task.process\"\nsubject_prefix = \"fleet.req\"\ngroup = \"process\"",
            "buffer_overflow = \"drop-oldest\"",
        ] {
            assert!(toml.contains(line), "{line:?} missing in\n{toml}");
        }
        assert_eq!(toml_string("a\nb"), "\"a\\u000Ab\"");
    }

    #[test]
    fn a_status_parses_and_junk_does_not() {
        let status = BridgeStatus::parse(
            br#"{"name":"node1","nats":"connected","exported":3,"imported":1,"buffered":0,"dropped":0,"requests_out":0,"requests_in":2,"reconnects":1}"#,
        )
        .unwrap();
        assert!(status.connected());
        assert_eq!((status.exported, status.requests_in), (3, 2));
        assert_eq!(BridgeStatus::parse(b"{\"name\":1}"), None);
        assert_eq!(BridgeStatus::parse(b"\xff"), None);
    }
}
