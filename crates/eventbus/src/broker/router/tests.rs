//! The ticker's schedule: it sleeps until something is due, and is woken
//! when something falls due sooner.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Waker};

use super::lifecycle::MAX_TICK;
use super::*;

fn hello(client_id: &str, heartbeat_ms: u32) -> proto::Hello {
    proto::Hello {
        protocol_version: proto::PROTOCOL_VERSION,
        client_id: client_id.to_owned(),
        heartbeat_interval_ms: heartbeat_ms,
        heartbeat_misses: 3,
        ..Default::default()
    }
}

/// Whether the ticker has been asked to wake (consumes the request).
fn woken(router: &Router) -> bool {
    let notified = router.ticker.notified();
    let mut notified = pin!(notified);
    notified
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
        .is_ready()
}

#[test]
fn the_ticker_sleeps_until_a_heartbeat_is_due_and_wakes_for_a_sooner_one() {
    let config = Arc::new(BrokerConfig::default());
    let mut router = Router::new(config.clone());
    let start = Instant::now();
    assert_eq!(router.tick(start), start + MAX_TICK, "nothing to do");

    let out = Outbound::new(config.outbound_limits());
    let (conn, _) = router
        .register(
            hello("c-1", 100),
            out.clone(),
            CancellationToken::new(),
            None,
        )
        .unwrap();
    assert!(woken(&router), "a heartbeat due before the planned tick");
    let registered = router.conns[&conn].last_seen;
    let due = router.tick(registered);
    assert_eq!(due, registered + Duration::from_millis(100));
    assert!(!woken(&router));

    // Due: a heartbeat goes out, and the next one is planned.
    assert_eq!(out.depth(), 0);
    assert_eq!(router.tick(due), due + Duration::from_millis(100));
    assert_eq!(out.depth(), 1);

    // A later deadline does not wake the ticker; an earlier one does.
    router.due_by(due + Duration::from_secs(5));
    assert!(!woken(&router));
    router.due_by(due + Duration::from_millis(10));
    assert!(woken(&router));

    // Silent past misses × interval: dropped on the tick after the limit.
    let limit = registered + Duration::from_millis(300);
    router.tick(limit);
    assert_eq!(
        router.connection_count(),
        1,
        "at the limit, not yet past it"
    );
    router.tick(limit + Duration::from_millis(1));
    assert_eq!(router.connection_count(), 0);
}
