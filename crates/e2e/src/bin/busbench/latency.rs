//! Round-trip latency, every series in alternating blocks of the same run:
//! the raw-socket floor, eventbus with a plain responder, eventbus with a
//! queue-group responder whose reply is also its ack (as collectors
//! answer), and each peer's queue-group analogue.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{Value, json};

use crate::peers::{Broker, Started};
use crate::suite::{Proc, SuiteArgs, finish, start};

/// The plain responder's topic in the latency runs.
pub const PLAIN_TOPIC: &str = "bench.rtt";
/// The queue-group responder's topic in the latency runs.
pub const QUEUE_TOPIC: &str = "bench.qrtt";

/// Latency runs alternate between the series in this many blocks (each a
/// fresh requester with the full warm-up), so all see the same drift of a
/// noisy machine.
const LATENCY_BLOCKS: u64 = 4;

/// One series: what runs the requester, and the histogram of its round trips.
struct Series {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    hist: hdrhistogram::Histogram<u64>,
}

/// Every series, pinned to CPU 0 or not.
pub fn measure(args: &SuiteArgs, pinned: bool, dir: &Path) -> anyhow::Result<Value> {
    let me = std::env::current_exe()?;
    let s = |p: &str| dir.join(p).to_string_lossy().into_owned();
    let block = args.count.div_ceil(LATENCY_BLOCKS).to_string();
    let warmup = args.warmup.to_string();
    let measured = ["--count", &block, "--warmup", &warmup, "--samples"];

    let (echo_sock, relay_sock) = (s("e.sock"), s("r.sock"));
    let mut running: Vec<Proc> = Vec::new();
    running.push(start(pinned, &me, &["echo", "--listen", &echo_sock])?.0);
    running.push(
        start(
            pinned,
            &me,
            &["relay", "--listen", &relay_sock, "--upstream", &echo_sock],
        )?
        .0,
    );
    let series_of = |name: &str, (program, args): (PathBuf, Vec<String>)| Series {
        name: name.to_owned(),
        program,
        args,
        hist: crate::roles::histogram(),
    };
    let mut raw = vec!["raw-rtt".to_owned(), "--socket".into(), relay_sock.clone()];
    raw.extend(measured.iter().map(|a| (*a).to_owned()));
    let mut series = vec![series_of("floor", (me.clone(), raw))];
    let mut brokers: Vec<Started> = Vec::new();
    for broker in crate::peers::brokers(args) {
        let started = broker.start(&dir.join(format!("lat-{}", broker.name())), pinned)?;
        if let Broker::Bus(_) = broker {
            // Two responders: a plain subscription answering with
            // `Client::reply`, and a queue-group member whose reply is also
            // its ack, each on its own topic.
            for (topic, queue) in [(PLAIN_TOPIC, false), (QUEUE_TOPIC, true)] {
                let mut extra = vec!["--topic", topic];
                if queue {
                    extra.push("--queue");
                }
                running.push(responder(&started, pinned, &extra)?);
                let mut rtt = vec!["--topic", topic];
                rtt.extend(measured);
                let name = if queue { "queue" } else { "bus" };
                series.push(series_of(name, started.role("rtt", &rtt)));
            }
        } else {
            running.push(responder(&started, pinned, &[])?);
            series.push(series_of(broker.name(), started.role("rtt", &measured)));
        }
        brokers.push(started);
    }
    for _ in 0..LATENCY_BLOCKS {
        for one in &mut series {
            let out = finish(pinned, &one.program, &one.args)
                .with_context(|| format!("latency series {}", one.name))?;
            let samples: Vec<u64> =
                serde_json::from_value(out["samples_ns"].clone()).context("samples_ns")?;
            for ns in samples {
                one.hist.record(ns)?;
            }
        }
    }
    drop(running);
    drop(brokers);
    for f in [&relay_sock, &echo_sock] {
        let _ = std::fs::remove_file(f);
    }
    let mut summaries = serde_json::Map::new();
    for one in &series {
        summaries.insert(one.name.clone(), crate::roles::summary(&one.hist));
    }
    let floor = summaries["floor"].clone();
    let ratio =
        |of: &Value, k: &str| of[k].as_f64().unwrap_or(0.0) / floor[k].as_f64().unwrap_or(f64::NAN);
    let (bus, queue) = (summaries["bus"].clone(), summaries["queue"].clone());
    let peers: serde_json::Map<String, Value> = summaries
        .iter()
        .filter(|(name, _)| !["floor", "bus", "queue"].contains(&name.as_str()))
        .map(|(name, v)| (name.clone(), v.clone()))
        .collect();
    Ok(json!({
        "pinned": pinned, "floor": floor, "bus": bus, "queue": queue, "peers": peers,
        "blocks": LATENCY_BLOCKS,
        "ratio_p50": ratio(&bus, "p50_us"), "ratio_p99": ratio(&bus, "p99_us"),
        "queue_ratio_p50": ratio(&queue, "p50_us"), "queue_ratio_p99": ratio(&queue, "p99_us"),
    }))
}

/// Starts `started`'s responder role, waiting for its ready line.
fn responder(started: &Started, pinned: bool, extra: &[&str]) -> anyhow::Result<Proc> {
    let (program, args) = started.role("responder", extra);
    Ok(start(pinned, &program, &args)?.0)
}
