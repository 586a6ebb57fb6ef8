//! The side-by-side table of issue 16: the relay floor, eventbus (queue
//! group, reply = ack) and each peer's analogue, every figure from the same
//! `busbench suite` run, with ratios to the floor and eventbus ÷ each peer;
//! and the scale table (what each idle client costs).

use std::fmt::Write as _;

use serde_json::Value;

/// The columns after the floor, in order.
pub const BROKERS: [&str; 4] = ["eventbus", "nats-server", "redis", "mosquitto"];

/// One row: a label, the floor's figure if it has one, and each broker's.
struct Row {
    label: String,
    unit: Unit,
    floor: Option<f64>,
    values: [Option<f64>; 4],
}

#[derive(Clone, Copy, PartialEq)]
enum Unit {
    Micros,
    PerSecond,
    Kib,
}

impl Unit {
    fn text(self, v: f64) -> String {
        match self {
            Self::Micros => format!("{v:.1} µs"),
            Self::PerSecond if v >= 1e6 => format!("{:.2} M/s", v / 1e6),
            Self::PerSecond => format!("{:.0} k/s", v / 1e3),
            Self::Kib if v >= 1024.0 => format!("{:.1} MiB", v / 1024.0),
            Self::Kib => format!("{v:.1} KiB"),
        }
    }
}

fn latency_rows(latency: &Value) -> Vec<Row> {
    let mut rows = Vec::new();
    for pinned in [false, true] {
        let Some(run) = latency
            .as_array()
            .and_then(|runs| runs.iter().find(|r| r["pinned"].as_bool() == Some(pinned)))
        else {
            continue;
        };
        let mode = if pinned {
            "pinned to CPU 0"
        } else {
            "unpinned"
        };
        for (key, label) in [("p50_us", "p50"), ("p99_us", "p99")] {
            let peer = |name: &str| run["peers"][name][key].as_f64();
            rows.push(Row {
                label: format!("round trip {label}, {mode}"),
                unit: Unit::Micros,
                floor: run["floor"][key].as_f64(),
                values: [
                    run["queue"][key].as_f64(),
                    peer("nats-server"),
                    peer("redis"),
                    peer("mosquitto"),
                ],
            });
        }
    }
    rows
}

fn work_rows(work: &Value) -> Vec<Row> {
    let find = |broker: &str, pinned: bool| {
        work.as_array().and_then(|runs| {
            runs.iter()
                .find(|r| r["broker"] == broker && r["pinned"].as_bool() == Some(pinned))
        })
    };
    let mut rows = Vec::new();
    for pinned in [false, true] {
        rows.push(Row {
            label: format!(
                "work queue, 5 workers, 10 k in flight, {}",
                if pinned { "pinned" } else { "unpinned" }
            ),
            unit: Unit::PerSecond,
            floor: None,
            values: BROKERS.map(|b| find(b, pinned).and_then(|r| r["per_s"].as_f64())),
        });
    }
    rows.push(Row {
        label: "broker RSS after the work-queue phase (unpinned)".into(),
        unit: Unit::Kib,
        floor: None,
        values: BROKERS.map(|b| find(b, false).and_then(|r| r["broker_rss_kib_after"].as_f64())),
    });
    rows
}

/// The scale run of `broker` with the most clients.
fn largest<'a>(scale: &'a Value, broker: &str) -> Option<&'a Value> {
    scale
        .as_array()?
        .iter()
        .filter(|r| r["broker"] == broker)
        .max_by_key(|r| r["clients"].as_u64())
}

fn scale_rows(scale: &Value) -> Vec<Row> {
    let clients = largest(scale, "eventbus")
        .and_then(|r| r["clients"].as_u64())
        .unwrap_or(0);
    let each = |f: &dyn Fn(&Value) -> Option<f64>| BROKERS.map(|b| largest(scale, b).and_then(f));
    vec![
        Row {
            label: format!("broker memory per idle client ({clients} clients × 11 subscriptions)"),
            unit: Unit::Kib,
            floor: None,
            values: each(&|r| r["broker_kib_per_client"].as_f64()),
        },
        Row {
            label: format!("fan-out deliveries to {clients} clients"),
            unit: Unit::PerSecond,
            floor: None,
            values: each(&|r| r["fanout"]["per_s"].as_f64()),
        },
        Row {
            label: format!("round trip p50 with {clients} clients connected, unpinned"),
            unit: Unit::Micros,
            floor: largest(scale, "eventbus")
                .and_then(|r| r["round_trip"]["floor"]["p50_us"].as_f64()),
            values: each(&|r| r["round_trip"]["bus"]["p50_us"].as_f64()),
        },
    ]
}

fn cell(unit: Unit, value: Option<f64>, floor: Option<f64>) -> String {
    match (value, floor) {
        (Some(v), Some(f)) if f > 0.0 => format!("{} ({:.2} ×)", unit.text(v), v / f),
        (Some(v), _) => unit.text(v),
        (None, _) => "—".to_owned(),
    }
}

/// Appends the side-by-side tables; nothing when the run has none of it.
pub fn markdown(md: &mut String, process: &Value, notes: &[String]) {
    let mut rows = latency_rows(&process["latency"]);
    rows.extend(work_rows(&process["work_queue_pipelined"]));
    rows.extend(scale_rows(&process["scale"]));
    rows.retain(|r| r.values.iter().any(Option::is_some));
    if rows.is_empty() {
        return;
    }
    md.push_str(
        "## Side by side: eventbus and its peers (64 B, one run)\n\n\
         eventbus: a queue group whose reply is also the ack; nats-server: a queue \
         group, no acks (TCP loopback: it has no Unix socket listener); redis: lists \
         (LPUSH, BLMPOP; no acks) over its Unix socket, pub/sub for the fan-out; \
         mosquitto: MQTT 3.1.1 QoS 0, a shared subscription, over its Unix socket. \
         Round trips: one request at a time; (× floor) is the ratio to the relay \
         floor measured in the same alternating blocks.\n\n",
    );
    for note in notes {
        let _ = writeln!(md, "**{note}**\n");
    }
    md.push_str("| measurement | relay floor | eventbus | nats-server | redis | mosquitto |\n");
    md.push_str("|---|---|---|---|---|---|\n");
    for r in &rows {
        let _ = write!(
            md,
            "| {} | {} |",
            r.label,
            r.floor.map_or_else(|| "—".to_owned(), |f| r.unit.text(f))
        );
        for v in r.values {
            let _ = write!(md, " {} |", cell(r.unit, v, r.floor));
        }
        md.push('\n');
    }
    md.push_str(
        "\neventbus ÷ each peer (for latency and memory lower is better, for rates higher):\n\n\
         | measurement | ÷ nats-server | ÷ redis | ÷ mosquitto |\n|---|---|---|---|\n",
    );
    for r in &rows {
        let _ = write!(md, "| {} |", r.label);
        for peer in &r.values[1..] {
            let ratio = match (r.values[0], *peer) {
                (Some(bus), Some(p)) if p > 0.0 => format!("{:.2}", bus / p),
                _ => "—".to_owned(),
            };
            let _ = write!(md, " {ratio} |");
        }
        md.push('\n');
    }
    md.push('\n');
    scale_table(md, &process["scale"]);
}

/// Every scale run: what idle clients cost each broker.
fn scale_table(md: &mut String, scale: &Value) {
    let Some(runs) = scale.as_array().filter(|r| !r.is_empty()) else {
        return;
    };
    md.push_str(
        "## Scale: idle clients with 11 subscriptions (10 with a wildcard, one shared fan-out topic)\n\n\
         | broker | clients | RSS before → with clients | per client | after the fan-out → after 2.5 s quiet | \
         fan-out deliveries | round trip p50 (floor) |\n|---|---|---|---|---|---|---|\n",
    );
    for r in runs {
        let kib = |k: &str| {
            r[k].as_f64()
                .map_or_else(|| "—".to_owned(), |v| Unit::Kib.text(v))
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} → {} | {} | {} → {} | {} ({} of {}) | {} ({}) |",
            r["broker"].as_str().unwrap_or("?"),
            r["clients"],
            kib("broker_rss_kib_before"),
            kib("broker_rss_kib_with_clients"),
            kib("broker_kib_per_client"),
            kib("broker_rss_kib_after_fanout"),
            kib("broker_rss_kib_after_quiet"),
            r["fanout"]["per_s"]
                .as_f64()
                .map_or_else(|| "—".to_owned(), |v| Unit::PerSecond.text(v)),
            r["fanout"]["received"],
            r["fanout"]["expected"],
            cell(
                Unit::Micros,
                r["round_trip"]["bus"]["p50_us"].as_f64(),
                None
            ),
            cell(
                Unit::Micros,
                r["round_trip"]["floor"]["p50_us"].as_f64(),
                None
            ),
        );
    }
    md.push('\n');
}
