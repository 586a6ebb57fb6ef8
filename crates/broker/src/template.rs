//! `broker generate-config`: the default configuration as commented TOML.
//!
//! The values come from serializing [`BrokerConfig::default`], so they cannot
//! drift from the code; the comments are written here by hand, one entry per
//! key. A unit test fails when a key has no comment (a field was added to
//! `BrokerConfig` without documenting it here) or when the output does not
//! parse back to the defaults.

use std::path::PathBuf;

use eventbus::BrokerConfig;

use crate::http::HttpConfig;

/// The comment for each key, by dotted path (`table.key` inside a table).
const COMMENTS: &[(&str, &str)] = &[
    (
        "socket",
        "Socket path to listen on. Left unset, the broker uses $EVENTBUS_SOCKET, else\n\
         $XDG_RUNTIME_DIR/eventbus/broker.sock, else /tmp/eventbus-<uid>/broker.sock;\n\
         the commented value below is that default where this file was generated.",
    ),
    (
        "max_connections",
        "Most client connections at once; more are refused with ConnectionLimit.",
    ),
    (
        "max_frame_bytes",
        "Largest frame accepted or sent, in bytes (frame header excluded).",
    ),
    (
        "max_subscriptions_per_client",
        "Most subscriptions (plain and queue) one client may hold.",
    ),
    (
        "heartbeat_interval_ms",
        "Heartbeat interval offered to clients, in milliseconds.",
    ),
    (
        "heartbeat_misses",
        "Missed heartbeats after which a peer is declared dead.",
    ),
    (
        "max_heartbeat_interval_ms",
        "Longest heartbeat interval a client may ask for, in milliseconds: with\n\
         max_heartbeat_misses, how long a silent client can hold its client id\n\
         and its deliveries.",
    ),
    (
        "max_heartbeat_misses",
        "Most missed heartbeats a client may ask for before it counts as dead.",
    ),
    (
        "handshake_timeout_ms",
        "How long a new connection has to send its Hello, in milliseconds.",
    ),
    (
        "drain_timeout_ms",
        "How long a graceful shutdown waits for in-flight work, in milliseconds.",
    ),
    (
        "max_pending_requests",
        "Most requests awaiting a reply at once, across all clients.",
    ),
    (
        "max_direct_in_flight",
        "Most unsettled direct messages one client may hold; more are refused (QueueFull).",
    ),
    (
        "max_gather_recipients",
        "Most recipients of one gather (scatter-gather); more are refused (QuotaExceeded).",
    ),
    (
        "allowed_uids",
        "Extra user ids allowed to connect besides the broker's own (Unix only).",
    ),
    (
        "auth_file",
        "Auth file: users, secret hashes, permissions and quotas (docs/security.md).\n\
         Without one, every client the socket admits may do everything but cancel\n\
         other clients' messages.",
    ),
    (
        "data_dir",
        "Where durable queues keep their journal (created 0700). Left unset:\n\
         $XDG_STATE_HOME/eventbus, else ~/.local/state/eventbus. Opened only when\n\
         a queue is durable.",
    ),
    (
        "durability",
        "The journal of durable queues (docs/durability.md) and the replies to\n\
         durable requests it keeps for `Client::result` / `ebctl result`.",
    ),
    (
        "durability.max_disk_bytes",
        "Most bytes of unsettled durable messages and kept replies on disk; at the\n\
         bound the queue's overflow policy applies (reject and block refuse with\n\
         Storage, drop-oldest evicts, drop-incoming drops).",
    ),
    (
        "durability.segment_bytes",
        "A journal segment file is closed at this size (then compacted when mostly\n\
         settled); at least max_frame_bytes + 4 KiB.",
    ),
    (
        "durability.max_queues",
        "Most durable queues (filter and group): they outlive their members, so\n\
         joining a new one past this is refused with QuotaExceeded.",
    ),
    (
        "durability.max_results",
        "Most replies to durable requests kept for their requesters.",
    ),
    (
        "durability.max_result_bytes",
        "Most bytes of those replies (the oldest go first).",
    ),
    (
        "durability.result_ttl_ms",
        "How long a reply is kept, in milliseconds; after it, asking gives Expired.",
    ),
    (
        "quotas",
        "What one client may hold in the broker (an auth file can set them per user);\n\
         a client at a quota gets QuotaExceeded and nobody else notices.",
    ),
    (
        "quotas.max_pending_requests",
        "Most requests one client may have awaiting replies.",
    ),
    (
        "quotas.max_direct_unsettled",
        "Most direct messages one client may have sent that are not settled yet.",
    ),
    (
        "quotas.max_queued_messages",
        "Most of one client's messages waiting or in flight in queue groups.",
    ),
    (
        "quotas.max_queued_bytes",
        "Most bytes of one client's messages waiting or in flight in queue groups.",
    ),
    (
        "quotas.max_concurrent_gathers",
        "Most gathers one client may have going at once.",
    ),
    (
        "memory",
        "The memory ceiling: above it, publishes into queue groups fail with\n\
         MemoryPressure while acks, replies and consumers keep flowing.",
    ),
    (
        "memory.max_queued_bytes",
        "Most bytes of messages in all queue groups together (waiting and in flight).",
    ),
    (
        "memory.high_watermark_bytes",
        "Resident memory above which the alarm goes off; 0 = 40 % of the machine's\n\
         memory where the platform tells it (Linux), else no resident-memory alarm.",
    ),
    ("subscriber", "Each subscriber's outbound buffer."),
    (
        "subscriber.max_len",
        "Most fan-out messages buffered for one slow subscriber.",
    ),
    (
        "subscriber.max_bytes",
        "Most bytes of fan-out messages buffered for one slow subscriber.",
    ),
    (
        "subscriber.overflow",
        "What happens to fan-out messages beyond max_len or max_bytes:\n\
         \"drop-oldest\", \"drop-incoming\" or \"reject\" (\"block\" is for queues only).",
    ),
    (
        "subscriber.hard_cap_bytes",
        "Most bytes of frames of any kind buffered before the client is disconnected\n\
         as too slow; at least max_bytes.",
    ),
    (
        "subscriber.hard_cap",
        "Most frames of any kind buffered before the client is disconnected as too\n\
         slow; at least max_len.",
    ),
    (
        "queue",
        "Queue groups: each message goes to one member of a group.",
    ),
    (
        "queue.max_len",
        "Most messages waiting in one group's queue.",
    ),
    (
        "queue.overflow",
        "What happens to a message published to a full queue:\n\
         \"drop-oldest\", \"drop-incoming\", \"reject\" (a confirmed publish fails\n\
         with QueueFull) or \"block\" (the publisher waits for room, up to\n\
         block_timeout_ms, then fails with BlockTimeout).",
    ),
    (
        "queue.max_bytes",
        "Most bytes of messages waiting in one group's queue (their delivery frames);\n\
         overflow applies at this bound as at max_len.",
    ),
    (
        "queue.block_timeout_ms",
        "With overflow = \"block\": how long a publisher waits for room, in ms.",
    ),
    (
        "queue.durable",
        "Journal every queue group's messages, so a confirmed one survives a broker\n\
         crash (confirmed once on disk); set it per pattern in [[queue.overrides]].",
    ),
    (
        "queue.max_disk_bytes",
        "Most bytes one durable queue's unsettled messages may take in the journal;\n\
         its overflow policy applies at this bound as at durability.max_disk_bytes\n\
         (which still bounds all queues together). 0: only that total bounds it;\n\
         else at least 1024 and at most durability.max_disk_bytes.",
    ),
    (
        "queue.ack_timeout_ms",
        "A delivery not settled within this many ms is taken back and redelivered;\n\
         0 disables the timeout.",
    ),
    (
        "queue.max_attempts",
        "Deliveries of one message before it goes to the dead-letter topic\n\
         _sys.dead-letter.<group>; 0 means unlimited.",
    ),
    (
        "queue.concurrency",
        "Most deliveries of one group in flight at once across all members;\n\
         0 leaves it to each member's prefetch. 1 makes task starts strictly FIFO.",
    ),
    (
        "queue.overrides",
        "Per-pattern settings, first match wins, e.g.\n\
         [[queue.overrides]]\n\
         filter = \"control.collector.task.#\"\n\
         max_len = 100\n\
         overflow = \"drop-oldest\"\n\
         (also max_bytes, durable, max_disk_bytes, block_timeout_ms, ack_timeout_ms,\n\
         max_attempts, concurrency).\n\
         A queue group on a filter starting with a wildcard (\"#\", \"+.x\") exists\n\
         only where an entry names that exact filter.",
    ),
    (
        "queue.default_prefetch",
        "Prefetch granted to a member that asks for 0.",
    ),
    (
        "queue.max_prefetch",
        "Largest prefetch a member may ask for.",
    ),
    (
        "monitor",
        "What the monitor keeps (with --http or an embedding agent's Broker::monitor;\n\
         nothing is recorded without one), and the _sys.stats announcements.",
    ),
    (
        "monitor.tasks",
        "Most tasks the task ring keeps for /api/v1/tasks; the oldest is forgotten\n\
         to make room.",
    ),
    (
        "monitor.history_seconds",
        "Seconds of one-second samples kept for /api/v1/history and the dashboard's\n\
         charts (at most 86400).",
    ),
    (
        "monitor.stats_interval_ms",
        "Publish a JSON summary of the broker on _sys.stats this often, in ms;\n\
         0 publishes nothing.",
    ),
    (
        "http",
        "The monitor listener: dashboard at /, JSON API under /api/v1/, /healthz,\n\
         /metrics (docs/monitoring.md). Off unless listen is set (or --http).",
    ),
    (
        "http.listen",
        "Address to serve it on; loopback only unless allow_non_loopback.",
    ),
    (
        "http.allow_non_loopback",
        "Let listen be a non-loopback address. The monitor has no authentication:\n\
         whoever reaches it reads client ids, identities, topics and rates.",
    ),
    (
        "http.max_connections",
        "Most HTTP connections at once, live pages included; more wait.",
    ),
    (
        "http.max_request_bytes",
        "Largest request head (request line and headers), in bytes; at least 8192.",
    ),
    (
        "http.header_timeout_ms",
        "How long a client has to send a whole request head, in ms.",
    ),
    (
        "http.allowed_hosts",
        "Host names a request's Host header may name besides IP addresses and\n\
         localhost (a guard against DNS rebinding).",
    ),
];

/// Settings with no default value (`None`), which TOML cannot show: each is
/// printed commented out, with an example, after the key named first.
const UNSET: &[(&str, &str, &str)] = &[
    ("allowed_uids", "auth_file", "\"/etc/eventbus/auth.toml\""),
    ("allowed_uids", "data_dir", "\"/var/lib/eventbus\""),
    ("http", "http.listen", "\"127.0.0.1:9090\""),
];

/// The `[http]` table, which is the binary's, not `BrokerConfig`'s.
#[derive(serde::Serialize)]
struct HttpSection {
    http: HttpConfig,
}

/// The default configuration as commented TOML, ready to save and edit.
pub fn generate() -> String {
    let mut defaults = BrokerConfig::default();
    // TOML strings are UTF-8; the socket line is only shown (commented out), so
    // a lossy rendering of an unusual default path is good enough.
    defaults.socket = PathBuf::from(defaults.socket.to_string_lossy().into_owned());
    let mut values =
        toml::to_string(&defaults).expect("strings and numbers always serialize to TOML");
    values.push('\n');
    values.push_str(
        &toml::to_string(&HttpSection {
            http: HttpConfig::default(),
        })
        .expect("strings and numbers always serialize to TOML"),
    );
    let mut out = String::from(
        "# eventbus broker configuration (generated by `broker generate-config`).\n\
         # Every setting is optional: a missing one keeps the default shown here.\n\
         # Command-line flags override this file.\n",
    );
    let mut table = String::new();
    let mut after_header = false;
    for line in values.lines().filter(|l| !l.is_empty()) {
        let header = line.strip_prefix('[').and_then(|l| l.strip_suffix(']'));
        let key = match header {
            Some(name) => {
                table = name.to_owned();
                Some(name.to_owned())
            }
            None => line.split_once(" = ").map(|(key, _)| match table.as_str() {
                "" => key.to_owned(),
                t => format!("{t}.{key}"),
            }),
        };
        // Lines without a key continue a multi-line value: no comment there.
        if let Some(key) = &key {
            if !after_header {
                out.push('\n');
            }
            for comment in comment(key).lines() {
                out.push_str("# ");
                out.push_str(comment);
                out.push('\n');
            }
        }
        // The socket default depends on the environment of whoever runs the
        // broker, so it is shown but left commented out rather than pinned.
        if key.as_deref() == Some("socket") {
            out.push_str("# ");
        }
        out.push_str(line);
        out.push('\n');
        after_header = header.is_some();
        for (after, unset, example) in UNSET {
            if key.as_deref() == Some(after) {
                out.push('\n');
                for comment in comment(unset).lines() {
                    out.push_str("# ");
                    out.push_str(comment);
                    out.push('\n');
                }
                let name = unset.rsplit('.').next().unwrap_or(unset);
                out.push_str(&format!("# {name} = {example}\n"));
                after_header = false;
            }
        }
    }
    out
}

/// The hand-written comment for `key`; an undocumented key is a bug caught by
/// the unit tests, and shows up in the output as a visible marker meanwhile.
fn comment(key: &str) -> &'static str {
    COMMENTS
        .iter()
        .find(|(k, _)| *k == key)
        .map_or("(undocumented setting)", |(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_config_parses_back_to_the_defaults() {
        let text = generate();
        let parsed = crate::cli::parse_file(&text).unwrap();
        assert_eq!(parsed.broker, BrokerConfig::default());
        assert_eq!(parsed.http, HttpConfig::default());
        // And an example address, left commented out, parses too.
        let listen = text.replace("# listen = ", "listen = ");
        let parsed = crate::cli::parse_file(&listen).unwrap();
        assert!(parsed.http.listen.is_some());
    }

    #[test]
    fn every_key_has_a_hand_written_comment() {
        let text = generate();
        assert!(!text.contains("(undocumented setting)"), "{text}");
        // And no comment is left over from a removed setting.
        for (key, _) in COMMENTS {
            let name = key.rsplit('.').next().unwrap();
            assert!(
                text.lines()
                    .map(|l| l.trim_start_matches("# "))
                    .any(|l| { l.starts_with(&format!("{name} = ")) || l == format!("[{key}]") }),
                "{key} is documented but not generated:\n{text}"
            );
        }
    }
}
