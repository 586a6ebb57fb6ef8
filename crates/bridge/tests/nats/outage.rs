//! Failures: NATS away, the bridge restarted, the local broker restarted.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_leaves_the_local_bus_alone_and_loses_no_at_least_once_export() {
    let mut server = NatsServer::start_jetstream().await;
    let broker = TestBroker::start().await;
    let rules = "[[export]]\nfilter = \"events.#\"\nadd_prefix = \"fleet\"\n\
                 mode = \"at-least-once\"\nstream = \"EVENTS\"\n";
    let bridge = Bridge::start(config(&broker, &server.url(), "n1", rules))
        .await
        .unwrap();
    connected(&bridge).await;
    let publisher = broker.client("publisher").await;
    let watcher = broker.client("watcher").await;
    for n in 0..20 {
        publisher
            .publish_confirmed("events.e", format!("{n}"))
            .await
            .unwrap();
    }
    wait_until("the first 20 stored", DEADLINE, || async {
        bridge.status().exported == 20
    })
    .await
    .unwrap();
    server.kill();
    status_where(&watcher, "n1", "nats is connecting", |s| {
        s.nats == "connecting"
    })
    .await;
    // The local bus keeps working, untouched.
    let mut local = watcher.subscribe("events.#").await.unwrap();
    for n in 20..50 {
        publisher
            .publish_confirmed("events.e", format!("{n}"))
            .await
            .unwrap();
    }
    assert_eq!(take(&mut local, 30).await.len(), 30);
    let waiting = status_where(&watcher, "n1", "exports are buffered", |s| s.buffered > 0).await;
    assert_eq!(waiting.nats, "connecting");
    server.restart().await;
    let back = status_where(&watcher, "n1", "back and drained", |s| {
        s.nats == "connected" && s.exported >= 50 && s.buffered == 0
    })
    .await;
    assert!(back.reconnects >= 1, "{back:?}");
    // Every one of the 50 is in the stream (a retry may store one twice).
    let nats = nats_client(&server).await;
    let js = jetstream::new(nats);
    let stream = js.get_stream("EVENTS").await.unwrap();
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut seen = BTreeSet::new();
    while seen.len() < 50 {
        let m = next(&mut messages).await.unwrap().unwrap();
        seen.insert(String::from_utf8_lossy(&m.payload).into_owned());
    }
    let expected: BTreeSet<String> = (0..50).map(|n| n.to_string()).collect();
    assert_eq!(seen, expected);
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_once_exports_wait_in_the_bounded_buffer_during_an_outage() {
    let mut server = NatsServer::start().await;
    let broker = TestBroker::start().await;
    let rules = "buffer_max_messages = 10\nbuffer_overflow = \"drop-oldest\"\n\
                 [[export]]\nfilter = \"events.#\"\nadd_prefix = \"fleet\"\n";
    let bridge = Bridge::start(config(&broker, &server.url(), "n1", rules))
        .await
        .unwrap();
    connected(&bridge).await;
    server.kill();
    let mut states = bridge.nats_states();
    tokio::time::timeout(DEADLINE, states.wait_for(|s| *s == NatsState::Connecting))
        .await
        .unwrap()
        .unwrap();
    let publisher = broker.client("publisher").await;
    for n in 0..25 {
        publisher
            .publish_confirmed("events.e", format!("{n}"))
            .await
            .unwrap();
    }
    wait_until("15 dropped, 10 held", DEADLINE, || async {
        let s = bridge.status();
        s.dropped == 15 && s.buffered == 10
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", bridge.status()));
    server.restart().await;
    connected(&bridge).await;
    wait_until("the 10 held are sent", DEADLINE, || async {
        let s = bridge.status();
        s.buffered == 0 && s.exported == 10
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", bridge.status()));
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_at_least_once_import_survives_a_bridge_restart_without_loss() {
    let server = NatsServer::start_jetstream().await;
    let broker = TestBroker::start().await;
    let rules = "[[import]]\nsubject = \"fleet.task.>\"\nremove_prefix = \"fleet.task\"\n\
                 add_prefix = \"tasks\"\nmode = \"at-least-once\"\nstream = \"TASKS\"\n\
                 durable = \"n1\"\n";
    let cfg = config(&broker, &server.url(), "n1", rules);
    let bridge = Bridge::start(cfg.clone()).await.unwrap();
    connected(&bridge).await;
    let local = broker.client("worker").await;
    let mut sub = local.subscribe("tasks.#").await.unwrap();
    let js = jetstream::new(nats_client(&server).await);
    publish_once_stored(&js, "fleet.task.process", "0").await;
    for n in 1..20 {
        js.publish("fleet.task.process", format!("{n}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let first = take(&mut sub, 20).await;
    bridge.stop().await;
    for n in 20..40 {
        js.publish("fleet.task.process", format!("{n}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let bridge = Bridge::start(cfg).await.unwrap();
    let mut seen = payloads(first.iter().map(Message::payload));
    while seen.len() < 40 {
        let m = next(&mut sub).await.unwrap();
        assert_eq!(m.topic(), "tasks.process");
        seen.insert(String::from_utf8_lossy(m.payload()).into_owned());
    }
    let expected: BTreeSet<String> = (0..40).map(|n| n.to_string()).collect();
    assert_eq!(seen, expected);
    bridge.stop().await;
}

/// The local broker keeps what a stopped bridge held unacknowledged (and
/// what is published while those wait) in the bridge's queue group, and
/// hands it to the restarted bridge. (A group with no member and nothing
/// waiting is forgotten: see docs/fleet.md, "Not there yet".)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_exports_held_by_a_stopped_bridge_go_out_after_its_restart() {
    let mut server = NatsServer::start_jetstream().await;
    let broker = TestBroker::start().await;
    let rules = "[[export]]\nfilter = \"jobs.#\"\nadd_prefix = \"fleet\"\n\
                 mode = \"at-least-once\"\nstream = \"JOBS\"\n";
    let cfg = config(&broker, &server.url(), "n1", rules);
    let bridge = Bridge::start(cfg.clone()).await.unwrap();
    connected(&bridge).await;
    let publisher = broker.client("publisher").await;
    publisher.publish_confirmed("jobs.j", "0").await.unwrap();
    wait_until("the first stored", DEADLINE, || async {
        bridge.status().exported == 1
    })
    .await
    .unwrap();
    // NATS away: the bridge holds the next ones unacknowledged.
    server.kill();
    for n in 1..20 {
        publisher
            .publish_confirmed("jobs.j", format!("{n}"))
            .await
            .unwrap();
    }
    wait_until("the bridge holds them", DEADLINE, || async {
        bridge.status().buffered > 0
    })
    .await
    .unwrap();
    bridge.stop().await;
    // No bridge: what it held waits in its group, with what comes next.
    for n in 20..30 {
        publisher
            .publish_confirmed("jobs.j", format!("{n}"))
            .await
            .unwrap();
    }
    server.restart().await;
    let bridge = Bridge::start(cfg).await.unwrap();
    wait_until("the 29 held are stored", DEADLINE, || async {
        bridge.status().exported >= 29
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", bridge.status()));
    let js = jetstream::new(nats_client(&server).await);
    let stream = js.get_stream("JOBS").await.unwrap();
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut seen = BTreeSet::new();
    while seen.len() < 30 {
        let m = next(&mut messages).await.unwrap().unwrap();
        seen.insert(String::from_utf8_lossy(&m.payload).into_owned());
    }
    let expected: BTreeSet<String> = (0..30).map(|n| n.to_string()).collect();
    assert_eq!(seen, expected);
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_goes_on_after_the_local_broker_restarts() {
    let server = NatsServer::start().await;
    let broker = TestBroker::start().await;
    let rules = "[[export]]\nfilter = \"events.#\"\nadd_prefix = \"fleet\"\n\
                 [[import]]\nsubject = \"in.>\"\nremove_prefix = \"in\"\n";
    let bridge = Bridge::start(config(&broker, &server.url(), "n1", rules))
        .await
        .unwrap();
    connected(&bridge).await;
    let nats = nats_client(&server).await;
    let mut out = nats.subscribe("fleet.>").await.unwrap();
    nats.flush().await.unwrap();
    let broker = broker.restart().await;
    // The bridge's client reconnects and restores its subscriptions: poll
    // until an event crosses (each attempt is a new, distinct event).
    let publisher = broker.client("publisher").await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    for n in 0.. {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no event crossed after the restart: {:?}",
            bridge.status()
        );
        let published = publisher
            .publish_confirmed("events.after", format!("{n}"))
            .await;
        if published.is_ok()
            && next_within(&mut out, Duration::from_millis(200))
                .await
                .is_some()
        {
            break;
        }
    }
    // And imports land on the new broker.
    let local = broker.client("sub").await;
    let mut sub = local.subscribe("x.#").await.unwrap();
    nats.publish("in.x.y", "hello".into()).await.unwrap();
    assert_eq!(next(&mut sub).await.unwrap().payload(), "hello");
    bridge.stop().await;
}
