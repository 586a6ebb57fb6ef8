//! The human-readable rendering of a stats snapshot: a summary line, then one
//! table per section. Not stable: scripts use `--json`.
#![forbid(unsafe_code)]

use std::fmt::Write as _;

use eventbus::BrokerStats;

/// Renders the snapshot as aligned text tables.
pub fn render(s: &BrokerStats) -> String {
    let mut out = format!(
        "uptime {:.1}s  published {}  delivered {}  dropped {}  rss {:.1} MiB\n",
        s.uptime_ms as f64 / 1000.0,
        s.published,
        s.delivered,
        s.dropped,
        s.rss_bytes as f64 / (1024.0 * 1024.0),
    );
    if let Some(j) = &s.journal {
        out.push_str(&journal_line(j));
    }
    let connections: Vec<Vec<String>> = s
        .connections
        .iter()
        .map(|c| {
            vec![
                c.id.clone(),
                c.pid.to_string(),
                c.kind.clone(),
                c.published.to_string(),
                c.delivered.to_string(),
                c.acked.to_string(),
                c.in_flight.to_string(),
                c.dropped.to_string(),
                c.outbound_depth.to_string(),
            ]
        })
        .collect();
    section(
        &mut out,
        "CONNECTIONS",
        &[
            "ID",
            "PID",
            "KIND",
            "PUBLISHED",
            "DELIVERED",
            "ACKED",
            "IN_FLIGHT",
            "DROPPED",
            "OUTBOUND",
        ],
        &connections,
    );
    let mut queues = Vec::new();
    for q in &s.queues {
        queues.push(vec![
            q.topic.clone(),
            q.group.clone(),
            q.depth.to_string(),
            q.in_flight.to_string(),
            q.delivered.to_string(),
            q.acked.to_string(),
            q.nacked.to_string(),
            q.redelivered.to_string(),
            q.dropped.to_string(),
            q.rejected.to_string(),
            q.dead_lettered.to_string(),
            q.cancelled.to_string(),
        ]);
        for m in &q.members {
            queues.push(vec![
                format!("  member {}", m.client_id),
                format!("prefetch {}", m.prefetch),
                String::new(),
                m.in_flight.to_string(),
                m.delivered.to_string(),
                m.acked.to_string(),
            ]);
        }
    }
    section(
        &mut out,
        "QUEUES",
        &[
            "TOPIC",
            "GROUP",
            "DEPTH",
            "IN_FLIGHT",
            "DELIVERED",
            "ACKED",
            "NACKED",
            "REDELIVERED",
            "DROPPED",
            "REJECTED",
            "DEAD_LETTERED",
            "CANCELLED",
        ],
        &queues,
    );
    let topics: Vec<Vec<String>> = s
        .topics
        .iter()
        .map(|t| {
            vec![
                t.topic.clone(),
                t.published.to_string(),
                t.delivered.to_string(),
            ]
        })
        .collect();
    section(
        &mut out,
        "TOPICS",
        &["TOPIC", "PUBLISHED", "DELIVERED"],
        &topics,
    );
    // Only on a bus with bridges.
    if !s.bridges.is_empty() {
        section(
            &mut out,
            "BRIDGES",
            &[
                "NAME", "CLIENT", "STATE", "NATS", "EXPORTED", "IMPORTED", "BUFFERED", "DROPPED",
                "AGE_MS",
            ],
            &s.bridges.iter().map(bridge_row).collect::<Vec<_>>(),
        );
    }
    out
}

/// The journal's summary line: its space, its work, and what went wrong
/// (said only when something did).
fn journal_line(j: &eventbus::client::JournalStats) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let mut line = format!(
        "journal  live {:.1} of {:.1} MiB  files {:.1} MiB  syncs {}  records {}  compactions {}",
        mib(j.live_bytes),
        mib(j.max_disk_bytes),
        mib(j.file_bytes),
        j.syncs,
        j.records,
        j.compactions,
    );
    if j.disk_full {
        line.push_str("  DISK FULL");
    }
    if j.failed_records > 0 {
        let _ = write!(line, "  failed records {}", j.failed_records);
    }
    if j.recovery_damaged > 0 || j.recovery_skipped_records > 0 {
        let _ = write!(
            line,
            "  recovery: lost {} B, damaged {}, skipped records {}",
            j.recovery_lost_bytes, j.recovery_damaged, j.recovery_skipped_records
        );
    }
    line.push('\n');
    line
}

/// One bridge's row: the fields of `eventbus-bridge`'s status JSON that say
/// whether it works (`-` where the status lacks one).
fn bridge_row(b: &eventbus::client::BridgeStats) -> Vec<String> {
    let status: serde_json::Value =
        serde_json::from_str(&b.status_json).unwrap_or(serde_json::Value::Null);
    let field = |name: &str| match &status[name] {
        serde_json::Value::Null => "-".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    vec![
        b.name.clone(),
        b.client_id.clone(),
        if b.connected { "up" } else { "gone" }.to_owned(),
        field("nats"),
        field("exported"),
        field("imported"),
        field("buffered"),
        field("dropped"),
        b.age_ms.to_string(),
    ]
}

/// Appends a titled table; an empty section says `(none)`.
fn section(out: &mut String, title: &str, header: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "\n{title}");
    if rows.is_empty() {
        out.push_str("(none)\n");
        return;
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let mut widths = vec![0; header.len()];
    for row in std::iter::once(&header).chain(rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, &width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventbus::proto;

    #[test]
    fn columns_line_up_and_empty_sections_say_none() {
        let stats = BrokerStats::from(proto::StatsResponse {
            uptime_ms: 1500,
            published: 3,
            delivered: 2,
            connections: vec![proto::ConnectionStats {
                id: "a-much-longer-client-id".into(),
                pid: 42,
                kind: "ebctl".into(),
                published: 3,
                ..Default::default()
            }],
            topics: vec![proto::TopicStats {
                topic: "t.x".into(),
                published: 3,
                delivered: 2,
            }],
            ..Default::default()
        });
        let text = render(&stats);
        assert!(text.starts_with("uptime 1.5s  published 3"), "{text}");
        assert!(text.contains("QUEUES\n(none)\n"), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        let header = lines.iter().position(|l| l.starts_with("ID")).unwrap();
        assert_eq!(
            lines[header].find("PID"),
            lines[header + 1].find("42"),
            "{text}"
        );
        assert!(!text.contains("BRIDGES"), "no bridges, no section: {text}");
        assert!(!text.contains("journal"), "no journal, no line: {text}");
    }

    #[test]
    fn the_journal_line_says_what_went_wrong_only_when_something_did() {
        let journal = |j: proto::JournalStats| {
            render(&BrokerStats::from(proto::StatsResponse {
                journal: Some(j),
                ..Default::default()
            }))
        };
        let healthy = journal(proto::JournalStats {
            live_bytes: 512 * 1024,
            max_disk_bytes: 1 << 30,
            file_bytes: 3 << 20,
            syncs: 7,
            records: 40,
            ..Default::default()
        });
        let line = healthy.lines().nth(1).unwrap();
        assert_eq!(
            line,
            "journal  live 0.5 of 1024.0 MiB  files 3.0 MiB  syncs 7  records 40  compactions 0"
        );
        let troubled = journal(proto::JournalStats {
            disk_full: true,
            failed_records: 3,
            recovery_lost_bytes: 120,
            recovery_damaged: 1,
            recovery_skipped_records: 2,
            ..Default::default()
        });
        let line = troubled.lines().nth(1).unwrap();
        assert!(
            line.ends_with(
                "DISK FULL  failed records 3  recovery: lost 120 B, damaged 1, skipped records 2"
            ),
            "{line}"
        );
    }

    #[test]
    fn a_bridge_shows_its_link_and_counters_and_a_status_that_is_not_json_shows_dashes() {
        let stats = BrokerStats::from(proto::StatsResponse {
            bridges: vec![
                proto::BridgeStats {
                    name: "node-1".into(),
                    client_id: "bridge-node-1".into(),
                    connected: true,
                    age_ms: 300,
                    status_json: r#"{"name":"node-1","nats":"connected","exported":12,"imported":3,"buffered":0,"dropped":1}"#.into(),
                },
                proto::BridgeStats {
                    name: "node-2".into(),
                    client_id: "bridge-node-2".into(),
                    connected: false,
                    age_ms: 9000,
                    status_json: "not json".into(),
                },
            ],
            ..Default::default()
        });
        let text = render(&stats);
        let rows: Vec<Vec<&str>> = text
            .lines()
            .skip_while(|l| *l != "BRIDGES")
            .skip(2)
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows,
            [
                vec![
                    "node-1",
                    "bridge-node-1",
                    "up",
                    "connected",
                    "12",
                    "3",
                    "0",
                    "1",
                    "300"
                ],
                vec![
                    "node-2",
                    "bridge-node-2",
                    "gone",
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    "9000"
                ],
            ],
            "{text}"
        );
    }
}
