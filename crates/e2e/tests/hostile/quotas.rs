//! One client cannot use up what everyone shares: a queue group on `#`,
//! the table of pending requests, the queues' memory.

use e2e::ClusterExt as _;
use e2e::hostile::{RawClient, Refusal, message, rss_bytes};
use e2e::{Cluster, CollectorBuilder, CollectorKind};
use eventbus::proto::{self, ErrorCode, frame::Kind};

use super::{assert_refused, raw, victim_tasks_complete};

/// Tiny messages the `#` flood publishes: the default `queue.max_len`.
const FLOOD: usize = 100_000;

/// Proves that a queue group on `#` cannot stop the world: with the default
/// configuration, joining a group on `#` is refused with `PermissionDenied`
/// (a group on a filter starting with a wildcard exists only where the
/// config declares it); the attacker then floods 100,000 tiny messages, and
/// an unrelated confirmed publish and the victim's tasks still succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_a_hash_queue_group_cannot_stop_the_world() {
    let cluster = Cluster::start().await;
    let _collector = cluster
        .add_collector(CollectorBuilder::new(CollectorKind::Process, 1))
        .await;
    let driver = cluster.driver().await;
    let mut attacker = raw(cluster.socket(), "mallory").await;
    let joined = attacker.subscribe(1, "#", "sink", 1).await;
    let flood = (0..FLOOD).map(|i| {
        Kind::Publish(proto::Publish {
            message: Some(message(&format!("events.flood.t{}", i % 8), "x")),
            ..Default::default()
        })
    });
    attacker.send_all(flood).await.unwrap();
    // Everything before it is routed once this is answered.
    let _ = attacker.publish_to("events.flood.end", "x").await;
    let mut victim = raw(cluster.socket(), "victim").await;
    let unrelated = victim.publish_to("events.process.started", "{}").await;
    assert!(
        unrelated.is_ok(),
        "an unrelated confirmed publish after the flood: {unrelated:?} (the `#` group: {joined:?})"
    );
    assert_refused(joined, ErrorCode::PermissionDenied, "a queue group on #");
    victim_tasks_complete(&driver, "after-flood", "procmond-1").await;
}

/// Requests the attacker parks: the default broker-wide
/// `max_pending_requests`.
const PARKED: usize = 65_536;

/// Proves that parked requests hit the parker's own quota, not the bus: an
/// attacker subscribes to its own topic (so its requests have a responder
/// that never answers) and sends 65,536 requests with the longest timeout
/// (`u32::MAX` ms); those past its `quotas.max_pending_requests` (16,384)
/// are refused with `QuotaExceeded`, and the victim's requests to a live
/// collector are still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_parked_requests_hit_the_parkers_quota_not_the_bus() {
    let cluster = Cluster::start().await;
    let _collector = cluster
        .add_collector(CollectorBuilder::new(CollectorKind::Process, 1))
        .await;
    let driver = cluster.driver().await;
    let mut attacker = raw(cluster.socket(), "mallory").await;
    attacker.subscribe(1, "sink.requests", "", 0).await.unwrap();
    let first_seq = attacker.next_seq();
    let requests = (0..PARKED as u64).map(|i| {
        Kind::Publish(proto::Publish {
            seq: first_seq + i,
            mode: proto::PublishMode::Request as i32,
            message: Some(message("sink.requests", "never answered")),
            timeout_ms: u32::MAX,
            ..Default::default()
        })
    });
    attacker.send_all(requests).await.unwrap();
    attacker.set_next_seq(first_seq + PARKED as u64);
    // The barrier: every request before it has been routed.
    attacker.publish_to("events.parked", "x").await.unwrap();
    let refused = attacker.take(|f| matches!(&f.kind, Some(Kind::Error(e)) if e.seq >= first_seq));
    let answered = driver
        .request_task(CollectorKind::Process, "victim", e2e::DEADLINE)
        .await;
    assert!(
        answered.is_ok(),
        "the victim's request after {PARKED} parked ones ({} of them refused): {answered:?}",
        refused.len()
    );
    let codes: Vec<_> = refused.iter().filter_map(error).collect();
    let quota = codes
        .iter()
        .filter(|e| e2e::hostile::code(e) == ErrorCode::QuotaExceeded)
        .count();
    assert_eq!(
        quota,
        codes.len(),
        "only quota refusals: {:?}",
        codes.first()
    );
    assert_eq!(quota, PARKED - 16_384, "refused beyond the quota of 16,384");
    assert_eq!(codes[0].details["quota"], "max_pending_requests");
    victim_tasks_complete(&driver, "after-parking", "procmond-1").await;
}

/// The `Error` inside a frame.
fn error(frame: &proto::Frame) -> Option<&proto::Error> {
    match &frame.kind {
        Some(Kind::Error(e)) => Some(e),
        _ => None,
    }
}

/// What the attacker of [`fill_a_never_acked_queue`] got.
struct Filled {
    accepted: usize,
    refusal: Option<Refusal>,
    rss_growth: u64,
}

/// Joins a queue group on `bulk.jobs` (prefetch 1, never acks) and
/// publishes `publish()` into it, confirmed, until the broker refuses or
/// `attempts` are accepted; measures the broker's RSS growth.
async fn fill_a_never_acked_queue(
    cluster: &Cluster,
    attacker: &mut RawClient,
    attempts: usize,
    publish: impl Fn() -> proto::Publish,
) -> Filled {
    attacker.subscribe(1, "bulk.jobs", "bulk", 1).await.unwrap();
    let pid = cluster.broker().pid();
    let before = rss_bytes(pid);
    let mut filled = Filled {
        accepted: 0,
        refusal: None,
        rss_growth: 0,
    };
    for _ in 0..attempts {
        match attacker.publish_confirmed(publish()).await {
            Ok(_) => filled.accepted += 1,
            Err(r) => {
                filled.refusal = Some(r);
                break;
            }
        }
        // Deliveries (the one in flight) are not read: the member never acks.
    }
    filled.rss_growth = rss_bytes(pid).saturating_sub(before);
    filled
}

/// Bytes of each big payload: 900 kB, under the 1 MiB frame limit.
const BIG: usize = 900_000;
/// Big messages the attacker tries: 180 MB, well past its 64 MiB quota.
const BIG_ATTEMPTS: usize = 200;
/// The most the broker may grow by: the 64 MiB quota plus room for the
/// allocator and buffers in flight.
const MAX_GROWTH: u64 = 128 << 20;

/// Proves the per-client queued-bytes quota and that the broker's memory
/// stays bounded: an attacker publishes 900 kB messages into a queue whose
/// only member (itself) never acks; it is refused with `QuotaExceeded`
/// (`max_queued_bytes`) before 64 MiB of them are queued, the broker's RSS
/// grows by less than 128 MiB, and the victim's tasks complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_big_payloads_into_a_never_acked_queue_are_bounded() {
    let cluster = Cluster::start().await;
    let _collector = cluster
        .add_collector(CollectorBuilder::new(CollectorKind::Process, 1))
        .await;
    let driver = cluster.driver().await;
    let mut attacker = raw(cluster.socket(), "mallory").await;
    let payload = bytes::Bytes::from(vec![b'x'; BIG]);
    let filled =
        fill_a_never_acked_queue(&cluster, &mut attacker, BIG_ATTEMPTS, || proto::Publish {
            message: Some(message("bulk.jobs", payload.clone())),
            ..Default::default()
        })
        .await;
    let growth_mib = filled.rss_growth >> 20;
    println!(
        "figure: big payloads: {} of {BIG_ATTEMPTS} accepted, broker RSS +{growth_mib} MiB",
        filled.accepted
    );
    assert!(
        filled.refusal.is_some() && filled.rss_growth < MAX_GROWTH,
        "accepted {} of {BIG_ATTEMPTS} messages of {BIG} bytes ({} MB); broker RSS +{growth_mib} MiB; \
         refusal {:?}",
        filled.accepted,
        filled.accepted * BIG / 1_000_000,
        filled.refusal
    );
    let refusal = filled.refusal.unwrap();
    assert_eq!(
        refusal.code(),
        Some(ErrorCode::QuotaExceeded),
        "{refusal:?}"
    );
    assert_eq!(refusal.detail("quota"), "max_queued_bytes");
    assert!(
        filled.accepted * BIG <= 64 << 20,
        "{} accepted",
        filled.accepted
    );
    victim_tasks_complete(&driver, "after-bulk", "procmond-1").await;
}

/// Bytes of headers on each message: just under the 1 MiB frame limit.
const HEADER_BYTES: usize = 1_000_000;

/// Proves that headers are counted as bytes: an attacker publishes messages
/// with a 1-byte payload and 1 MB of headers into a queue nobody acks; it
/// is refused with `QuotaExceeded` (`max_queued_bytes`) before 64 MiB of
/// them are queued, the queue's stats count at least 1 MB per waiting
/// message, and the broker's RSS grows by less than 128 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_headers_are_counted_as_bytes() {
    let cluster = Cluster::start().await;
    let mut attacker = raw(cluster.socket(), "mallory").await;
    let value = "h".repeat(HEADER_BYTES);
    let filled = fill_a_never_acked_queue(&cluster, &mut attacker, BIG_ATTEMPTS, || {
        let mut m = message("bulk.jobs", "x");
        m.headers.insert("padding".to_owned(), value.clone());
        proto::Publish {
            message: Some(m),
            ..Default::default()
        }
    })
    .await;
    let growth_mib = filled.rss_growth >> 20;
    println!(
        "figure: 1 MB headers: {} of {BIG_ATTEMPTS} accepted, broker RSS +{growth_mib} MiB",
        filled.accepted
    );
    assert!(
        filled.refusal.is_some() && filled.rss_growth < MAX_GROWTH,
        "accepted {} of {BIG_ATTEMPTS} messages with {HEADER_BYTES} bytes of headers; \
         broker RSS +{growth_mib} MiB; refusal {:?}",
        filled.accepted,
        filled.refusal
    );
    let refusal = filled.refusal.unwrap();
    assert_eq!(
        refusal.code(),
        Some(ErrorCode::QuotaExceeded),
        "{refusal:?}"
    );
    assert_eq!(refusal.detail("quota"), "max_queued_bytes");
    assert!(
        filled.accepted * HEADER_BYTES <= 64 << 20,
        "{} accepted",
        filled.accepted
    );
    let mut observer = raw(cluster.socket(), "observer").await;
    let stats = observer.stats().await.unwrap();
    let queue = stats.queues.iter().find(|q| q.group == "bulk").unwrap();
    assert!(
        queue.bytes >= queue.depth * HEADER_BYTES as u64,
        "{} waiting, counted as {} bytes",
        queue.depth,
        queue.bytes
    );
}
