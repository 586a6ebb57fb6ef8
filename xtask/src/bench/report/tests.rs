use std::path::Path;

use serde_json::{Value, json};

use super::{markdown, read_criterion};
use crate::bench::svg;

/// A report as `cargo xtask bench` assembles it, around busbench's fixture.
fn fixture() -> Value {
    let process: Value = serde_json::from_str(include_str!("../fixture.json")).unwrap();
    json!({
        "mode": "quick",
        "nats": "nats-server is not on PATH: the NATS comparison is skipped",
        "micro": [
            {"id": "codec/decode_buffer/1000_frames", "median_ns": 98_500.0, "mean_ns": 99_100.0, "elements": 1000},
            {"id": "codec/encode/publish_64B", "median_ns": 45.25, "mean_ns": 46.0, "elements": null},
        ],
        "process": process,
    })
}

#[test]
fn markdown_has_every_section_with_floor_and_ratio() {
    let md = markdown(&fixture());
    for heading in [
        "## Micro-benchmarks",
        "## Round-trip latency",
        "## Pub/sub throughput",
        "## Pub/sub delivered without loss",
        "## Memory",
        "## Work queues",
        "## Scatter-gather, 5 worker processes",
    ] {
        assert!(md.contains(heading), "missing {heading} in\n{md}");
    }
    assert!(
        md.contains("| unpinned | 129.2 µs / 203.0 µs | 126.3 µs | 1.02 × |"),
        "{md}"
    );
    assert!(
        md.contains("| codec/encode/publish_64B | 45.2 ns | 46.0 ns | — |"),
        "{md}"
    );
    assert!(
        md.contains(
            "| codec/decode_buffer/1000_frames | 98.50 µs | 99.10 µs | 98.5 ns (1000 elements) |"
        ),
        "{md}"
    );
    assert!(
        md.contains("| round trip p50, pinned | 33.9 µs | 41.1 µs | 1.21 |"),
        "{md}"
    );
    assert!(
        md.contains("| round trip p99, unpinned | 92.0 µs | 123.0 µs | 1.34 |"),
        "{md}"
    );
    assert!(
        md.contains("| round trip max, unpinned | 1200.0 µs | 2500.0 µs | 2.08 |"),
        "{md}"
    );
    assert!(
        md.contains("| publisher | 1.03 M msg/s (500000 sent) |"),
        "{md}"
    );
    assert!(
        md.contains("| 1.40 M msg/s | 470000 of 500000 | 1.25 M msg/s |"),
        "{md}"
    );
    assert!(
        md.contains("Highest rate without loss: 1.20 M msg/s."),
        "{md}"
    );
    assert!(
        md.contains("0.86 M msg/s (415000 of 500000 received, 85000 counted as dropped"),
        "{md}"
    );
    assert!(md.contains("| broker RSS, idle | 4.1 MiB |"), "{md}");
    assert!(
        md.contains("| memory per queued 64-byte task | 349 bytes (RSS growth over 99999 tasks) |"),
        "{md}"
    );
    assert!(
        md.contains("| crash → redelivery to another member | p50 640 µs, max 1.1 ms (10 runs) |"),
        "{md}"
    );
    assert!(
        md.contains("| broker restart: ready line → serving | 9.3 ms |"),
        "{md}"
    );
    assert!(
        md.contains("| cancel a queued task | p50 24.0 µs, p99 61.5 µs |"),
        "{md}"
    );
    assert!(md.contains("NATS comparison is skipped"), "{md}");
}

#[test]
fn markdown_leaves_out_sections_busbench_did_not_run() {
    let mut report = fixture();
    report["process"] = json!({"memory": report["process"]["memory"].clone()});
    report["micro"] = json!([]);
    let md = markdown(&report);
    assert!(md.contains("## Memory"));
    for absent in ["## Micro", "## Round-trip", "## Pub/sub", "## Work queues"] {
        assert!(!md.contains(absent), "{absent} should be absent in\n{md}");
    }
}

#[test]
fn svg_has_one_polyline_per_series_and_axis_labels() {
    let plot = svg::latency(&fixture()["process"]).expect("the fixture has latency runs");
    assert!(plot.starts_with("<svg ") && plot.trim_end().ends_with("</svg>"));
    assert_eq!(plot.matches("<polyline").count(), 4);
    assert_eq!(
        plot.matches("<circle").count(),
        20,
        "five percentiles per series"
    );
    for label in [
        "floor, pinned",
        "eventbus, pinned",
        "floor, unpinned",
        "eventbus, unpinned",
        "percentile",
        "round trip (µs, log scale)",
        "p99.9",
        ">max<",
    ] {
        assert!(plot.contains(label), "missing {label}");
    }
    // Floor dashed, bus solid: two dashed polylines.
    assert_eq!(plot.matches(r#"stroke-dasharray="6 4" points"#).count(), 2);
    // Every point is inside the plot area.
    for circle in plot.lines().filter(|l| l.starts_with("<circle")) {
        let attr = |name: &str| -> f64 {
            let start = circle.find(&format!(r#"{name}=""#)).unwrap() + name.len() + 2;
            circle[start..].split('"').next().unwrap().parse().unwrap()
        };
        let (cx, cy) = (attr("cx"), attr("cy"));
        assert!(
            (80.0..=530.0).contains(&cx) && (40.0..=360.0).contains(&cy),
            "{circle}"
        );
    }
}

#[test]
fn svg_is_skipped_without_latency() {
    assert!(svg::latency(&json!({"memory": {}})).is_none());
    assert!(svg::latency(&json!({"latency": []})).is_none());
}

#[test]
fn criterion_results_are_read_for_the_named_groups_only() {
    let dir = tempfile::tempdir().unwrap();
    let put = |rel: &str, group: &str, full_id: &str, elements: Option<u64>, median: f64| {
        let new = dir.path().join(rel).join("new");
        std::fs::create_dir_all(&new).unwrap();
        let throughput = elements.map_or(Value::Null, |n| json!({"Elements": n}));
        let bench = json!({"group_id": group, "full_id": full_id, "throughput": throughput});
        std::fs::write(new.join("benchmark.json"), bench.to_string()).unwrap();
        let estimate = |v: f64| json!({"point_estimate": v, "standard_error": 1.0});
        let estimates = json!({"mean": estimate(median + 1.0), "median": estimate(median)});
        std::fs::write(new.join("estimates.json"), estimates.to_string()).unwrap();
    };
    put(
        "topics/match_10k_hit",
        "topics",
        "topics/match_10k/hit",
        None,
        120.0,
    );
    put(
        "codec/decode_buffer/1000_frames",
        "codec",
        "codec/decode_buffer/1000_frames",
        Some(1000),
        9e4,
    );
    put("other/thing", "other", "other/thing", None, 1.0);
    // A `base/` copy of a previous run is not a result of this one.
    std::fs::create_dir_all(dir.path().join("codec/decode_buffer/1000_frames/base")).unwrap();

    let found = read_criterion(dir.path(), &["codec", "topics"], None).unwrap();
    assert_eq!(
        found,
        [
            json!({"id": "codec/decode_buffer/1000_frames", "median_ns": 9e4, "mean_ns": 90001.0, "elements": 1000}),
            json!({"id": "topics/match_10k/hit", "median_ns": 120.0, "mean_ns": 121.0, "elements": null}),
        ]
    );
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    assert!(
        read_criterion(dir.path(), &["codec"], Some(later))
            .unwrap()
            .is_empty()
    );
    assert!(
        read_criterion(Path::new("/nonexistent/criterion"), &["codec"], None)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn side_by_side_has_the_floor_every_broker_and_the_ratios() {
    let md = markdown(&fixture());
    assert!(
        md.contains("## Side by side: eventbus and its peers"),
        "{md}"
    );
    assert!(
        md.contains("| measurement | relay floor | eventbus | nats-server | redis | mosquitto |"),
        "{md}"
    );
    // The queue-group figure, its ratio to the floor, a peer's, and a peer
    // left out of the run.
    assert!(
        md.contains(
            "| round trip p50, unpinned | 56.8 µs | 61.0 µs (1.07 ×) | 105.8 µs (1.86 ×) | — | 70.6 µs (1.24 ×) |"
        ),
        "{md}"
    );
    assert!(
        md.contains(
            "| work queue, 5 workers, 10 k in flight, unpinned | — | 41 k/s | 63 k/s | — | 20 k/s |"
        ),
        "{md}"
    );
    assert!(
        md.contains("| broker memory per idle client (1000 clients × 11 subscriptions) | — | 14.4 KiB | 27.0 KiB | — | — |"),
        "{md}"
    );
    // eventbus ÷ each peer.
    assert!(
        md.contains("| round trip p50, unpinned | 0.58 | — | 0.86 |"),
        "{md}"
    );
    assert!(
        md.contains("| queue-group round trip p50, pinned | 33.9 µs | 34.5 µs | 1.02 |"),
        "{md}"
    );
    assert!(md.contains("## Scale: idle clients"), "{md}");
    assert!(
        md.contains("| eventbus | 1000 | 4.5 MiB → 18.6 MiB | 14.4 KiB | 50.3 MiB → 29.9 MiB |"),
        "{md}"
    );
    assert!(
        md.contains("| eventbus | unpinned | 50000 completed"),
        "{md}"
    );
}

#[test]
fn a_peer_left_out_is_said_loudly() {
    let mut report = fixture();
    report["peer_notes"] = json!(["redis is LEFT OUT: `redis-server` not found"]);
    let md = markdown(&report);
    assert!(
        md.contains("**redis is LEFT OUT: `redis-server` not found**"),
        "{md}"
    );
}
