//! `/metrics` read by a Prometheus text parser: the names and labels the
//! docs promise, counters that never go down across scrapes, and series
//! whose number does not grow with the topics clients invent.

use std::collections::BTreeMap;

use e2e::ClusterExt as _;
use e2e::{CollectorBuilder, CollectorKind, DEADLINE, History, RunOptions, task_ids, wait_until};
use eventbus::Topic;
use prometheus_parse::{Scrape, Value};

use crate::support::{cluster_with_http, get};

/// One scrape: every series by name and labels, with its value.
async fn scrape(addr: std::net::SocketAddr) -> (Scrape, BTreeMap<String, f64>) {
    let response = get(addr, "/metrics").await;
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        response.headers
    );
    let lines = response.body.lines().map(|l| Ok(l.to_owned()));
    let scrape = Scrape::parse(lines).expect("the exposition parses");
    let mut series = BTreeMap::new();
    for s in &scrape.samples {
        let value = match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => panic!("unexpected sample type for {}", s.metric),
        };
        let key = key(s);
        assert!(
            series.insert(key.clone(), value).is_none(),
            "duplicate series {key}"
        );
    }
    (scrape, series)
}

/// A series' name and its labels, in a stable order.
fn key(s: &prometheus_parse::Sample) -> String {
    let labels: BTreeMap<&String, &String> = s.labels.iter().collect();
    format!("{}{labels:?}", s.metric)
}

fn counters(scrape: &Scrape) -> BTreeMap<String, f64> {
    scrape
        .samples
        .iter()
        .filter_map(|s| match s.value {
            Value::Counter(v) => Some((key(s), v)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn metrics_parse_stay_monotonic_and_keep_cardinality_bounded() {
    let (cluster, addr) = cluster_with_http("").await;
    let _collector = cluster
        .add_collector(CollectorBuilder::new(CollectorKind::Process, 1))
        .await;
    let driver = cluster.driver().await;
    let history = History::default();
    let run = |prefix: &'static str| {
        let (driver, history) = (driver.clone(), history.clone());
        async move {
            driver
                .run_tasks(
                    CollectorKind::Process,
                    task_ids(prefix, 20),
                    RunOptions::default(),
                    &history,
                )
                .await
        }
    };
    assert!(run("a").await.failures.is_empty());
    wait_until("a sample counts the tasks", DEADLINE, || async {
        scrape(addr).await.1.get("eventbus_acks_total{}").copied() >= Some(20.0)
    })
    .await
    .unwrap();
    let (first, first_series) = scrape(addr).await;

    for name in [
        "eventbus_uptime_seconds",
        "eventbus_messages_published_total",
        "eventbus_deliveries_total",
        "eventbus_acks_total",
        "eventbus_dead_letters_total",
        "eventbus_resident_memory_bytes",
        "eventbus_in_flight_deliveries",
    ] {
        assert!(first.samples.iter().any(|s| s.metric == name), "no {name}");
    }
    // The collector's task group (it is also a member of the status group).
    let depth = first
        .samples
        .iter()
        .find(|s| {
            s.metric == "eventbus_queue_depth"
                && s.labels.get("filter") == Some("control.collector.task.process")
        })
        .expect("a series for the task queue");
    assert_eq!(depth.labels.get("group"), Some("process"));
    assert!(
        first.samples.iter().any(
            |s| s.metric == "eventbus_connections" && s.labels.get("kind") == Some("collector")
        )
    );

    // 1,000 topics nobody subscribes to, then more tasks.
    let client = driver.client();
    for n in 0..1000 {
        let topic = Topic::new(format!("noise.topic{n}")).unwrap();
        client.publish_wait(&topic, "x").await.unwrap();
    }
    assert!(run("b").await.failures.is_empty());
    wait_until("a sample counts the new tasks", DEADLINE, || async {
        scrape(addr).await.1.get("eventbus_acks_total{}").copied() >= Some(40.0)
    })
    .await
    .unwrap();
    let (second, second_series) = scrape(addr).await;
    assert!(
        second_series.len() <= first_series.len() + 2,
        "series grew with topics: {} -> {}",
        first_series.len(),
        second_series.len()
    );
    assert!(
        !second
            .samples
            .iter()
            .any(|s| s.labels.values().any(|v| v.starts_with("noise.")))
    );
    let (before, after) = (counters(&first), counters(&second));
    for (series, value) in &before {
        let now = after
            .get(series)
            .unwrap_or_else(|| panic!("{series} went away"));
        assert!(now >= value, "{series} went down: {value} -> {now}");
    }
    assert!(
        after["eventbus_messages_published_total{}"]
            >= before["eventbus_messages_published_total{}"] + 1000.0
    );
}

/// A durable broker's journal is in `/metrics`, in the overview and in
/// `Client::stats`: its space and its work since the start move as
/// confirmed durable publishes are written.
#[tokio::test]
async fn a_durable_broker_shows_its_journal() {
    let data = tempfile::tempdir().unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", crate::support::free_port())
        .parse()
        .unwrap();
    let cluster = e2e::Cluster::start_with(
        e2e::BrokerBuilder::new()
            .arg("--durable")
            .arg("--data-dir")
            .arg(data.path())
            .arg(format!("--http={addr}")),
    )
    .await;
    let client = cluster.client("publisher").await;
    let holder = cluster.client("holder").await;
    drop(
        holder
            .queue_subscribe("jobs.scan", "workers", 1)
            .await
            .unwrap(),
    );
    for n in 0..5 {
        client
            .publish_confirmed("jobs.scan", format!("m-{n}"))
            .await
            .unwrap();
    }
    let journal = client
        .stats()
        .await
        .unwrap()
        .journal
        .expect("journal stats");
    assert!(journal.records >= 5 && journal.syncs >= 1, "{journal:?}");
    assert!(journal.live_bytes > 0 && !journal.disk_full, "{journal:?}");

    let overview = crate::support::get_json(addr, "/api/v1/overview").await;
    assert!(
        overview["journal"]["records"].as_u64() >= Some(5),
        "{overview}"
    );
    assert_eq!(overview["journal"]["disk_full"], false, "{overview}");
    let (_, series) = scrape(addr).await;
    assert!(
        series["eventbus_journal_records_total{}"] >= 5.0,
        "{series:?}"
    );
    assert!(series["eventbus_journal_live_bytes{}"] > 0.0, "{series:?}");
    assert_eq!(series["eventbus_journal_disk_full{}"], 0.0, "{series:?}");
    for name in [
        "eventbus_journal_files_bytes{}",
        "eventbus_journal_live_limit_bytes{}",
        "eventbus_journal_syncs_total{}",
        "eventbus_journal_failed_records_total{}",
        "eventbus_journal_compactions_total{}",
        "eventbus_journal_recovery_lost_bytes{}",
        "eventbus_journal_recovery_damaged{}",
        "eventbus_journal_recovery_skipped_records{}",
    ] {
        assert!(series.contains_key(name), "no {name}: {series:?}");
    }
    client.close().await;
    holder.close().await;
}
