//! Events across: exported once, imported with hostile input refused, two
//! bridges without echo, hostile local messages.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_events_reach_a_nats_subscriber_once() {
    let server = NatsServer::start().await;
    let broker = TestBroker::start().await;
    let rules = "[[export]]\nfilter = \"events.#\"\nadd_prefix = \"fleet.n1\"\n";
    let bridge = Bridge::start(config(&broker, &server.url(), "n1", rules))
        .await
        .unwrap();
    connected(&bridge).await;
    let nats = nats_client(&server).await;
    let mut sub = nats.subscribe("fleet.>").await.unwrap();
    nats.flush().await.unwrap();
    let publisher = broker.client("publisher").await;
    for n in 0..100 {
        publisher
            .publish_wait(
                "events.process.start",
                Body::new(n.to_string()).header("trace-id", "t").unwrap(),
            )
            .await
            .unwrap();
    }
    publisher.publish("other.topic", "not exported").unwrap();
    let mut got = Vec::new();
    for _ in 0..100 {
        let m = next(&mut sub).await.unwrap();
        assert_eq!(m.subject.as_str(), "fleet.n1.events.process.start");
        let h = m.headers.as_ref().expect("bridge headers");
        assert_eq!(h.get(NATS_ORIGIN).unwrap().as_str(), "n1");
        assert_eq!(h.get(NATS_HOPS).unwrap().as_str(), "1");
        assert_eq!(h.get("trace-id").unwrap().as_str(), "t");
        got.push(m.payload);
    }
    let expected: BTreeSet<String> = (0..100).map(|n| n.to_string()).collect();
    assert_eq!(payloads(&got), expected);
    assert!(
        quiet_for(&mut sub, QUIET).await,
        "nothing more: no duplicates"
    );
    assert_eq!(bridge.status().exported, 100);
    bridge.stop().await;
}

/// The export buffer is for outages: while NATS is connected a burst far
/// larger than it waits for the sender instead of being dropped at its
/// bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_while_nats_is_connected_is_not_dropped_at_the_outage_buffer() {
    const BURST: usize = 5_000;
    let server = NatsServer::start().await;
    let broker = TestBroker::start().await;
    // The local subscription holds the whole burst: what it keeps of a
    // burst while the bridge lags is `backlog_max_messages`, the client's
    // subscription bound (`client/mailbox.rs` tests it), and a loaded
    // machine can hold the bridge back for most of a burst.
    let rules = format!(
        "buffer_max_messages = 10\nbuffer_overflow = \"drop-oldest\"\n\
         backlog_max_messages = {}\n\
         [[export]]\nfilter = \"events.#\"\nadd_prefix = \"fleet\"\n",
        2 * BURST
    );
    let bridge = Bridge::start(config(&broker, &server.url(), "n1", &rules))
        .await
        .unwrap();
    connected(&bridge).await;
    let nats = nats_client(&server).await;
    let mut sub = nats.subscribe("fleet.>").await.unwrap();
    nats.flush().await.unwrap();
    let publisher = broker.client("publisher").await;
    let receive = async {
        let mut got = Vec::with_capacity(BURST);
        while got.len() < BURST {
            let Some(message) = next_within(&mut sub, DEADLINE).await else {
                panic!(
                    "{} of {BURST} exported within the deadline: {:?}",
                    got.len(),
                    bridge.status()
                );
            };
            got.push(message.payload);
        }
        got
    };
    let publish = async {
        for n in 0..BURST {
            publisher
                .publish_wait("events.burst", n.to_string())
                .await
                .unwrap();
        }
    };
    let (got, ()) = tokio::join!(receive, publish);
    let expected: BTreeSet<String> = (0..BURST).map(|n| n.to_string()).collect();
    assert_eq!(payloads(&got), expected);
    wait_until("every export counted", DEADLINE, || async {
        bridge.status().exported == BURST as u64
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", bridge.status()));
    let status = bridge.status();
    assert_eq!(
        (status.dropped, status.local_dropped, status.buffered),
        (0, 0, 0),
        "{status:?}"
    );
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_messages_reach_local_subscribers_and_hostile_ones_are_refused() {
    let server = NatsServer::start().await;
    // A small frame limit: a large NATS payload cannot be a local message.
    let broker = TestBroker::start_with(|c| c.max_frame_bytes = 64 * 1024).await;
    let rules = "[[import]]\nsubject = \"fleet.task.>\"\nremove_prefix = \"fleet.task\"\n\
                 add_prefix = \"control.task\"\n";
    let bridge = Bridge::start(config(&broker, &server.url(), "n2", rules))
        .await
        .unwrap();
    connected(&bridge).await;
    let local = broker.client("collector").await;
    let mut sub = local.subscribe("control.task.#").await.unwrap();
    let nats = nats_client(&server).await;
    // Hostile first: each is refused or stopped, none crashes the bridge.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(NATS_HOPS, "not a number");
    nats.publish_with_headers("fleet.task.x", headers, "bad hops".into())
        .await
        .unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(NATS_ORIGIN, "n2");
    nats.publish_with_headers("fleet.task.x", headers, "own origin".into())
        .await
        .unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(NATS_HOPS, "4");
    nats.publish_with_headers("fleet.task.x", headers, "too many hops".into())
        .await
        .unwrap();
    nats.publish("fleet.task.UPPER", "not a topic".into())
        .await
        .unwrap();
    nats.publish("fleet.task._sys", "fine: control.task._sys".into())
        .await
        .unwrap();
    nats.publish("fleet.task.a.b.c.d.e.f.g", "too many segments".into())
        .await
        .unwrap();
    nats.publish("fleet.task.big", Bytes::from(vec![b'x'; 200 * 1024]))
        .await
        .unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("x-dead-letter-reason", "forged");
    headers.insert("Trace-Id", "upper case, left behind");
    headers.insert("trace-id", "kept");
    nats.publish_with_headers("fleet.task.process", headers, "good 0".into())
        .await
        .unwrap();
    for n in 1..50 {
        nats.publish("fleet.task.process", format!("good {n}").into())
            .await
            .unwrap();
    }
    nats.flush().await.unwrap();
    let got = take(&mut sub, 51).await;
    let mut good: Vec<&Message> = got
        .iter()
        .filter(|m| m.topic() == "control.task.process")
        .collect();
    assert_eq!(good.len(), 50, "{got:?}");
    let first = good.remove(0);
    assert_eq!(first.payload(), "good 0");
    assert_eq!(first.headers().get("trace-id"), Some("kept"));
    assert_eq!(first.headers().get("bridge-origin"), Some("nats"));
    assert_eq!(first.headers().get("bridge-hops"), Some("1"));
    assert!(first.headers().get("x-dead-letter-reason").is_none());
    assert!(got.iter().any(|m| m.topic() == "control.task._sys"));
    assert!(
        quiet_for(&mut sub, QUIET).await,
        "the hostile ones never arrive"
    );
    wait_until("the refusals are counted", DEADLINE, || async {
        let s = bridge.status();
        s.loops_stopped == 3 && s.refused == 3
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", bridge.status()));
    assert_eq!(bridge.status().imported, 51);
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bridges_exporting_and_importing_the_same_topics_do_not_echo() {
    let server = NatsServer::start().await;
    let a = TestBroker::start().await;
    let b = TestBroker::start().await;
    let rules = "[[export]]\nfilter = \"events.#\"\nadd_prefix = \"fleet\"\n\
                 [[import]]\nsubject = \"fleet.>\"\nremove_prefix = \"fleet\"\n";
    let bridge_a = Bridge::start(config(&a, &server.url(), "a", rules))
        .await
        .unwrap();
    let bridge_b = Bridge::start(config(&b, &server.url(), "b", rules))
        .await
        .unwrap();
    connected(&bridge_a).await;
    connected(&bridge_b).await;
    // Both imports are subscribed once a message crosses each way.
    let (pa, pb) = (a.client("pa").await, b.client("pb").await);
    let mut on_a = a.client("sa").await.subscribe("events.#").await.unwrap();
    let mut on_b = b.client("sb").await.subscribe("events.#").await.unwrap();
    for n in 0..20 {
        pa.publish_wait("events.a", format!("a{n}")).await.unwrap();
        pb.publish_wait("events.b", format!("b{n}")).await.unwrap();
    }
    let got_a = take(&mut on_a, 40).await;
    let got_b = take(&mut on_b, 40).await;
    for got in [&got_a, &got_b] {
        let seen: Vec<String> = got
            .iter()
            .map(|m| String::from_utf8_lossy(m.payload()).into_owned())
            .collect();
        let distinct: BTreeSet<&String> = seen.iter().collect();
        assert_eq!(
            distinct.len(),
            40,
            "each message once on each node: {seen:?}"
        );
    }
    assert!(
        quiet_for(&mut on_a, QUIET).await,
        "nothing echoes back to a"
    );
    assert!(
        quiet_for(&mut on_b, QUIET).await,
        "nothing echoes back to b"
    );
    // Each bridge exported its 20 and imported the other's 20, and never
    // exported what it imported.
    for bridge in [&bridge_a, &bridge_b] {
        let s = bridge.status();
        assert_eq!((s.exported, s.imported), (20, 20), "{s:?}");
    }
    bridge_a.stop().await;
    bridge_b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_local_messages_are_refused_or_cleaned_and_exports_go_on() {
    // A server that takes 4 KiB at most: a larger local message cannot go.
    let server = NatsServer::start_configured(false, "max_payload: 4096\n").await;
    let broker = TestBroker::start().await;
    let rules = "[[export]]\nfilter = \"events.#\"\nadd_prefix = \"fleet\"\n";
    let bridge = Bridge::start(config(&broker, &server.url(), "n1", rules))
        .await
        .unwrap();
    connected(&bridge).await;
    let nats = nats_client(&server).await;
    let mut sub = nats.subscribe(">").await.unwrap();
    nats.flush().await.unwrap();
    let publisher = broker.client("publisher").await;
    // Too large for NATS: refused, counted.
    publisher
        .publish_confirmed("events.big", vec![b'x'; 16 * 1024])
        .await
        .unwrap();
    // A header value that would break the NATS protocol: the header stays
    // behind, the message goes.
    let injected = Body::new("injected")
        .header("evil", "v\r\nPUB fleet.forged 1\r\nX")
        .unwrap();
    publisher
        .publish_confirmed("events.header", injected)
        .await
        .unwrap();
    // Forged bridge headers: junk hops is refused, too many hops stopped.
    for (name, value) in [
        ("bridge-hops", "junk"),
        ("bridge-hops", "9"),
        ("bridge-origin", "Not A Node"),
    ] {
        let body = Body::new("forged").header(name, value).unwrap();
        publisher
            .publish_confirmed("events.forged", body)
            .await
            .unwrap();
    }
    publisher
        .publish_confirmed("events.after", "still exporting")
        .await
        .unwrap();
    let first = next(&mut sub).await.unwrap();
    assert_eq!(first.subject.as_str(), "fleet.events.header");
    let h = first.headers.as_ref().unwrap();
    assert!(h.get("evil").is_none());
    let second = next(&mut sub).await.unwrap();
    assert_eq!(second.subject.as_str(), "fleet.events.after");
    assert!(
        quiet_for(&mut sub, QUIET).await,
        "nothing forged, nothing else"
    );
    let s = bridge.status();
    assert_eq!((s.exported, s.refused, s.loops_stopped), (2, 1, 3), "{s:?}");
    bridge.stop().await;
}
