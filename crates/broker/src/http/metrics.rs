//! `/metrics`: the broker in the Prometheus text format (0.0.4), through
//! `prometheus-client`, built from one set of monitor snapshots per scrape.
//!
//! Cardinality is bounded whatever clients do: no per-topic or per-client
//! series (topics and client ids are unbounded; they are in the JSON API);
//! per queue group at most [`MAX_QUEUE_SERIES`] groups (the busiest by
//! depth, then deliveries; the rest summed under `group="_other"`); per
//! client kind at most [`MAX_KIND_SERIES`] kinds (kinds are self-declared;
//! the rest under `kind="_other"`). `docs/monitoring.md` lists every metric.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use axum::extract::State;
use axum::http::{HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use eventbus::broker::monitor::{ClientInfo, Health, JournalInfo, Overview, QueueInfo};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::AppState;
use super::api::{ApiError, params};

/// Most queue groups with series of their own.
pub const MAX_QUEUE_SERIES: usize = 50;
/// Most client kinds with series of their own.
pub const MAX_KIND_SERIES: usize = 16;
/// The label of what is summed past a bound.
const OTHER: &str = "_other";

type Labels = Vec<(String, String)>;
type GaugeFamily = Family<Labels, Gauge<f64, AtomicU64>>;
type CounterFamily = Family<Labels, Counter>;

pub async fn scrape(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    params(&uri, &[])?;
    let m = &state.monitor;
    let text = render(&m.health(), &m.overview(), &m.clients(), &m.queues());
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(prometheus_text::CONTENT_TYPE),
    );
    Ok(response)
}

/// A gauge without labels set to `value`.
fn gauge(registry: &mut Registry, name: &str, help: &str, unit: Option<Unit>, value: f64) {
    let g = Gauge::<f64, AtomicU64>::default();
    g.set(value);
    match unit {
        Some(unit) => registry.register_with_unit(name, help, unit, g),
        None => registry.register(name, help, g),
    }
}

/// A counter without labels at `value`.
fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

/// The exposition of one scrape.
pub fn render(
    health: &Health,
    overview: &Overview,
    clients: &[ClientInfo],
    queues: &[QueueInfo],
) -> String {
    let mut r = Registry::with_prefix("eventbus");
    let last = overview.last.as_ref();
    gauge(
        &mut r,
        "uptime",
        "Time since the broker started",
        Some(Unit::Seconds),
        overview.uptime_ms as f64 / 1000.0,
    );
    let states = GaugeFamily::default();
    for status in ["ready", "degraded", "draining"] {
        let now = serde_json::to_value(health.status).ok();
        let on = now.as_ref().and_then(|v| v.as_str()) == Some(status);
        states
            .get_or_create(&vec![("status".into(), status.into())])
            .set(if on { 1.0 } else { 0.0 });
    }
    r.register(
        "health",
        "1 for the broker's current health status (see /healthz).",
        states,
    );
    counter(
        &mut r,
        "messages_published",
        "Publishes accepted",
        last.map_or(0, |s| s.published),
    );
    counter(
        &mut r,
        "deliveries",
        "Deliveries made to subscribers, queue members and direct receivers",
        last.map_or(0, |s| s.delivered),
    );
    counter(
        &mut r,
        "acks",
        "Deliveries acknowledged (replies included)",
        last.map_or(0, |s| s.acked),
    );
    counter(
        &mut r,
        "messages_dropped",
        "Messages dropped by an overflow policy",
        last.map_or(0, |s| s.dropped),
    );
    counter(
        &mut r,
        "dead_letters",
        "Messages moved to a dead-letter topic",
        last.map_or(0, |s| s.dead_lettered),
    );
    gauge(
        &mut r,
        "resident_memory",
        "Resident memory of the broker process",
        Some(Unit::Bytes),
        last.map_or(0, |s| s.rss_bytes) as f64,
    );
    gauge(
        &mut r,
        "queue_groups",
        "Queue groups",
        None,
        overview.queues as f64,
    );
    gauge(
        &mut r,
        "in_flight_deliveries",
        "Deliveries awaiting settlement",
        None,
        overview.in_flight as f64,
    );
    gauge(
        &mut r,
        "pending_requests",
        "Requests awaiting replies",
        None,
        overview.pending_requests as f64,
    );
    gauge(
        &mut r,
        "queued",
        "Bytes held in queue groups, waiting and in flight",
        Some(Unit::Bytes),
        overview.queued_bytes as f64,
    );
    gauge(
        &mut r,
        "queued_limit",
        "The ceiling on bytes held in queue groups (memory.max_queued_bytes)",
        Some(Unit::Bytes),
        overview.max_queued_bytes as f64,
    );
    if let Some(j) = &overview.journal {
        journal(&mut r, j);
    }
    kinds(&mut r, clients);
    queue_series(&mut r, queues);
    let mut text = String::new();
    prometheus_text::encode(&mut text, &r).expect("writing to a String cannot fail");
    text
}

/// The durable queues' journal: its space, its work since the broker
/// started, and what recovery at that start could not read.
fn journal(r: &mut Registry, j: &JournalInfo) {
    let bytes = [
        (
            "journal_files",
            "Bytes in the journal's segment files",
            j.file_bytes,
        ),
        (
            "journal_live",
            "Bytes of journal records still needed (the rest is garbage compaction reclaims)",
            j.live_bytes,
        ),
        (
            "journal_live_limit",
            "The bound on the journal's live bytes (durability.max_disk_bytes)",
            j.max_disk_bytes,
        ),
        (
            "journal_recovery_lost",
            "Bytes of the journal recovery cut off or set aside at this start",
            j.recovery_lost_bytes,
        ),
    ];
    for (name, help, value) in bytes {
        gauge(r, name, help, Some(Unit::Bytes), value as f64);
    }
    gauge(
        r,
        "journal_disk_full",
        "1 while the journal's last write failed for lack of space (durable publishes are refused)",
        None,
        if j.disk_full { 1.0 } else { 0.0 },
    );
    gauge(
        r,
        "journal_recovery_damaged",
        "Places recovery found damaged in the journal at this start",
        None,
        j.recovery_damaged as f64,
    );
    gauge(
        r,
        "journal_recovery_skipped_records",
        "Journal records with a good checksum recovery could not use at this start",
        None,
        j.recovery_skipped_records as f64,
    );
    let counts = [
        ("journal_syncs", "fdatasync calls of the journal", j.syncs),
        (
            "journal_records",
            "Journal records written and synced",
            j.records,
        ),
        (
            "journal_failed_records",
            "Journal records that could not be written (each a publish refused)",
            j.failed_records,
        ),
        (
            "journal_compactions",
            "Journal compactions completed",
            j.compactions,
        ),
    ];
    for (name, help, value) in counts {
        counter(r, name, help, value);
    }
}

/// Per client kind: connections, unsettled deliveries, outbound depth.
fn kinds(r: &mut Registry, clients: &[ClientInfo]) {
    let mut by_kind: BTreeMap<&str, [f64; 4]> = BTreeMap::new();
    for c in clients {
        let e = by_kind.entry(c.kind.as_str()).or_default();
        e[0] += 1.0;
        e[1] += c.unsettled as f64;
        e[2] += c.outbound_depth as f64;
        e[3] += c.dropped as f64;
    }
    let mut rows: Vec<_> = by_kind.into_iter().collect();
    rows.sort_by(|a, b| b.1[0].total_cmp(&a.1[0]).then(a.0.cmp(b.0)));
    let families: [(&str, &str); 4] = [
        ("connections", "Connected clients, by self-declared kind"),
        (
            "client_unsettled_deliveries",
            "Deliveries held unsettled by clients, by kind",
        ),
        (
            "client_outbound_frames",
            "Frames waiting in clients' outbound buffers, by kind",
        ),
        (
            "client_dropped_messages",
            "Messages dropped for connected clients by their buffers' overflow policy, by kind (a gauge: clients come and go)",
        ),
    ];
    let gauges: Vec<GaugeFamily> = families.iter().map(|_| GaugeFamily::default()).collect();
    for (i, (kind, values)) in rows.iter().enumerate() {
        let kind = if i < MAX_KIND_SERIES { kind } else { OTHER };
        let kind = if kind.is_empty() { "unknown" } else { kind };
        let labels = vec![("kind".to_owned(), kind.to_owned())];
        for (g, v) in gauges.iter().zip(values) {
            g.get_or_create(&labels).inc_by(*v);
        }
    }
    for ((name, help), g) in families.into_iter().zip(gauges) {
        r.register(name, help, g);
    }
}

/// Per queue group, the busiest [`MAX_QUEUE_SERIES`] on their own.
fn queue_series(r: &mut Registry, queues: &[QueueInfo]) {
    let mut order: Vec<&QueueInfo> = queues.iter().collect();
    order.sort_by(|a, b| {
        (b.depth, b.delivered)
            .cmp(&(a.depth, a.delivered))
            .then((&a.filter, &a.group).cmp(&(&b.filter, &b.group)))
    });
    let gauges: [(&str, &str, Option<Unit>); 4] = [
        ("queue_depth", "Messages waiting in the group's queue", None),
        (
            "queue_in_flight",
            "Deliveries of the group awaiting settlement",
            None,
        ),
        ("queue_members", "Members of the group", None),
        (
            "queue_oldest_message_age",
            "Age of the oldest waiting message (0 when none waits)",
            Some(Unit::Seconds),
        ),
    ];
    let counters: [(&str, &str); 8] = [
        ("queue_accepted", "Messages the group accepted"),
        (
            "queue_delivered",
            "Deliveries the group made, redeliveries included",
        ),
        ("queue_acked", "Deliveries acknowledged"),
        ("queue_nacked", "Deliveries handed back with a nack"),
        ("queue_redelivered", "Messages put back for another attempt"),
        (
            "queue_dropped",
            "Messages dropped by the group's overflow policy",
        ),
        (
            "queue_rejected",
            "Publishes refused because the group was full",
        ),
        (
            "queue_dead_lettered",
            "Messages moved to the group's dead-letter topic",
        ),
    ];
    const AGE: usize = 3;
    let gf: Vec<GaugeFamily> = gauges.iter().map(|_| GaugeFamily::default()).collect();
    let cf: Vec<CounterFamily> = counters.iter().map(|_| CounterFamily::default()).collect();
    for (i, q) in order.iter().enumerate() {
        let labels = if i < MAX_QUEUE_SERIES {
            vec![
                ("filter".to_owned(), q.filter.clone()),
                ("group".to_owned(), q.group.clone()),
            ]
        } else {
            vec![
                ("filter".to_owned(), OTHER.to_owned()),
                ("group".to_owned(), OTHER.to_owned()),
            ]
        };
        let age = q.oldest_age_ms.unwrap_or(0) as f64 / 1000.0;
        let g_values = [
            q.depth as f64,
            q.in_flight as f64,
            q.members.len() as f64,
            age,
        ];
        for (k, (g, v)) in gf.iter().zip(g_values).enumerate() {
            let gauge = g.get_or_create(&labels);
            if k == AGE {
                // Past the bound, the oldest of all: the largest age.
                if v > gauge.get() {
                    gauge.set(v);
                }
            } else {
                gauge.inc_by(v);
            }
        }
        let c_values = [
            q.accepted,
            q.delivered,
            q.acked,
            q.nacked,
            q.redelivered,
            q.dropped,
            q.rejected,
            q.dead_lettered,
        ];
        for (c, v) in cf.iter().zip(c_values) {
            c.get_or_create(&labels).inc_by(v);
        }
    }
    for ((name, help, unit), g) in gauges.into_iter().zip(gf) {
        match unit {
            Some(unit) => r.register_with_unit(name, help, unit, g),
            None => r.register(name, help, g),
        }
    }
    for ((name, help), c) in counters.into_iter().zip(cf) {
        r.register(name, help, c);
    }
}
