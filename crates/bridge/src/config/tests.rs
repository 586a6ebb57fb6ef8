use super::*;

#[test]
fn the_template_is_valid_and_every_key_is_commented() {
    let config = BridgeConfig::from_toml(TEMPLATE).expect("the template is valid");
    assert_eq!(config.exports.len(), 1);
    assert_eq!(config.imports.len(), 1);
    assert_eq!(config.serves.len(), 1);
    // Every key set or shown in the template follows a comment line.
    let lines: Vec<&str> = TEMPLATE.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let key = line.trim_start_matches("# ").trim();
        if key.contains(" = ") && !line.starts_with("# ") {
            assert!(
                i > 0 && lines[i - 1].starts_with('#'),
                "key without a comment: {line}"
            );
        }
    }
}

#[test]
fn the_contract_example_parses() {
    let text = r#"
[local]
socket = "/run/eventbus/broker.sock"
client_id = "bridge-node1"

[nats]
servers = ["nats://10.10.0.1:4222", "nats://10.10.0.2:4222"]
name = "node1"
reconnect_max_ms = 2000
buffer_max_messages = 10000
buffer_overflow = "drop-oldest"

[[export]]
filter = "events.#"
remove_prefix = ""
add_prefix = "fleet.node1"
mode = "at-most-once"
stream = ""

[[import]]
subject = "fleet.task.>"
remove_prefix = "fleet.task"
add_prefix = "control.collector.task"
mode = "at-least-once"
stream = "FLEET_TASKS"
durable = "bridge-node1"

[[serve]]
topic_filter = "control.collector.task.#"
subject_prefix = "fleet.req"
"#;
    let config = BridgeConfig::from_toml(text).unwrap();
    assert_eq!(config.name, "node1");
    assert_eq!(config.client_id.as_str(), "bridge-node1");
    assert_eq!(config.status_topic(), "_sys.bridge.node1");
    assert_eq!(config.nats.buffer_overflow, BufferOverflow::DropOldest);
    assert_eq!(config.imports[0].durable, "bridge-node1");
}

#[test]
fn defaults_fill_what_is_left_out() {
    let config = BridgeConfig::from_toml("[nats]\nname = \"n1\"\n").unwrap();
    assert_eq!(config.client_id.as_str(), "bridge-n1");
    assert_eq!(config.nats.buffer_max_messages, DEFAULT_BUFFER_MAX_MESSAGES);
    assert_eq!(
        config.nats.backlog_max_messages,
        DEFAULT_BACKLOG_MAX_MESSAGES
    );
    assert_eq!(config.nats.max_hops, DEFAULT_MAX_HOPS);
    assert!(config.exports.is_empty());
}

#[test]
fn bad_configs_are_typed_errors() {
    type Is = fn(&ConfigError) -> bool;
    let cases: &[(&str, Is)] = &[
        ("[nats]\nnmae = \"x\"", |e| {
            matches!(e, ConfigError::Parse(_))
        }),
        ("[nats]\nname = \"Node 1\"", |e| {
            matches!(e, ConfigError::Name { .. })
        }),
        ("[nats]\nname = \"n\"\nservers = []", |e| {
            matches!(e, ConfigError::NoServers)
        }),
        ("[nats]\nname = \"n\"\nbuffer_max_messages = 0", |e| {
            matches!(e, ConfigError::Range { .. })
        }),
        ("[nats]\nname = \"n\"\nbacklog_max_messages = 0", |e| {
            matches!(e, ConfigError::Range { .. })
        }),
        (
            "[nats]\nname = \"n\"\nbacklog_max_messages = 4611686018427387904",
            |e| matches!(e, ConfigError::Range { .. }),
        ),
        (
            "[nats]\nname = \"n\"\nbuffer_max_messages = 16777217",
            |e| matches!(e, ConfigError::Range { .. }),
        ),
        (
            "[nats]\nname = \"n\"\nbuffer_overflow = \"drop-all\"",
            |e| matches!(e, ConfigError::Parse(_)),
        ),
        ("[nats]\nname = \"n\"\n[local]\nclient_id = \"a b\"", |e| {
            matches!(e, ConfigError::ClientId(_))
        }),
        (
            "[nats]\nname = \"n\"\n[[export]]\nfilter = \"a.#\"\nadd_prefix = \"$JS\"",
            |e| {
                matches!(
                    e,
                    ConfigError::Mapping {
                        section: "export",
                        index: 0,
                        ..
                    }
                )
            },
        ),
        (
            "[nats]\nname = \"n\"\n[[export]]\nfilter = \"a.#\"\nmode = \"at-least-once\"",
            |e| matches!(e, ConfigError::Stream { .. }),
        ),
        ("[nats]\nname = \"n\"\n[[import]]\nsubject = \"A.>\"", |e| {
            matches!(
                e,
                ConfigError::Mapping {
                    section: "import",
                    ..
                }
            )
        }),
        (
            "[nats]\nname = \"n\"\n[[import]]\nsubject = \"a.>\"\nmode = \"at-least-once\"\nstream = \"S.1\"",
            |e| matches!(e, ConfigError::Stream { .. }),
        ),
        (
            "[nats]\nname = \"n\"\n[[import]]\nsubject = \"a.>\"\nmode = \"at-least-once\"\nstream = \"S\"\ndurable = \"a.b\"",
            |e| matches!(e, ConfigError::Name { .. }),
        ),
        (
            "[nats]\nname = \"n\"\n[[serve]]\ntopic_filter = \"x.#\"\nsubject_prefix = \"\"",
            |e| {
                matches!(
                    e,
                    ConfigError::Mapping {
                        section: "serve",
                        ..
                    }
                )
            },
        ),
        ("[nats]\nname = \"n\"\nservers = [\"http://[::1\"]", |e| {
            matches!(e, ConfigError::Server(_))
        }),
    ];
    for (text, is) in cases {
        let e = BridgeConfig::from_toml(text).expect_err(text);
        assert!(is(&e), "{text}: {e:?}");
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn host_names_become_plain_names() {
    assert!(is_plain_name(&host_name()));
}
