//! The bridge against a real `nats-server` on loopback and embedded
//! brokers: exports, imports, no loops between two bridges, a NATS outage,
//! a bridge restart at least once, requests across, and hostile input from
//! both sides. Needs `nats-server` (Debian's package; `.ci/run` installs
//! it): without it these tests panic with how to install it, and
//! `cargo xtask ci` leaves them out with a WARNING outside CI.

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use eventbus::{Body, Client, Message, Subscription};
use eventbus_bridge::origin::{NATS_HOPS, NATS_ORIGIN};
use eventbus_bridge::status::{NatsState, Status};
use eventbus_bridge::{Bridge, BridgeConfig};
use eventbus_harness::{
    DEADLINE, NatsServer, TestBroker, next, next_within, quiet_for, wait_until,
};

/// Long enough for a message that would come to come, on a loaded machine.
const QUIET: Duration = Duration::from_millis(300);

fn config(broker: &TestBroker, nats: &str, name: &str, rules: &str) -> BridgeConfig {
    let text = format!(
        "[local]\nsocket = {socket:?}\n[nats]\nservers = [{nats:?}]\nname = {name:?}\n\
         reconnect_max_ms = 200\n{rules}",
        socket = broker.socket().display().to_string(),
    );
    BridgeConfig::from_toml(&text).expect("a valid test config")
}

async fn connected(bridge: &Bridge) {
    tokio::time::timeout(DEADLINE, bridge.nats_ready())
        .await
        .expect("NATS connected in time");
}

async fn nats_client(server: &NatsServer) -> async_nats::Client {
    async_nats::connect(server.url())
        .await
        .expect("connect to nats-server")
}

/// Takes `n` messages from a local subscription.
async fn take(sub: &mut Subscription, n: usize) -> Vec<Message> {
    let mut got = Vec::new();
    while got.len() < n {
        got.push(next(sub).await.expect("subscription open"));
    }
    got
}

fn payloads<'a>(messages: impl IntoIterator<Item = &'a Bytes>) -> BTreeSet<String> {
    messages
        .into_iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect()
}

async fn status_where(
    client: &Client,
    name: &str,
    what: &str,
    pred: impl Fn(&Status) -> bool,
) -> Status {
    let mut sub = client
        .subscribe(format!("_sys.bridge.{name}"))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(message) = next_within(&mut sub, left).await else {
            panic!("no status where {what} within {DEADLINE:?}");
        };
        let status: Status = message.json().expect("status JSON");
        if pred(&status) {
            return status;
        }
    }
}

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
    // The bridge creates the stream; publish once it is there.
    // The bridge creates the stream; the server takes publishes on its
    // subjects a moment after it exists (no responders until then, and
    // then nothing was stored).
    wait_until("the stream takes publishes", DEADLINE, || async {
        match js.publish("fleet.task.process", "0".into()).await {
            Ok(ack) => ack.await.is_ok(),
            Err(_) => false,
        }
    })
    .await
    .unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_requests_are_served_by_the_local_bus() {
    let server = NatsServer::start().await;
    let broker = TestBroker::start().await;
    let rules = "[[serve]]\ntopic_filter = \"svc.#\"\nsubject_prefix = \"fleet.req\"\n";
    let bridge = Bridge::start(config(&broker, &server.url(), "n1", rules))
        .await
        .unwrap();
    connected(&bridge).await;
    let nats = nats_client(&server).await;
    // Nobody serves it locally yet: a typed answer, not a hang.
    let answer = nats
        .request("fleet.req.svc.echo", "hi".into())
        .await
        .unwrap();
    let why = answer
        .headers
        .as_ref()
        .and_then(|h| h.get("x-bridge-error"));
    assert_eq!(why.map(|v| v.as_str()), Some("no-responders"));
    let responder = broker.client("echo").await;
    let mut tasks = responder
        .queue_subscribe("svc.echo", "echo", 4)
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Some(task) = tasks.next().await {
            let mut reply = b"echo: ".to_vec();
            reply.extend_from_slice(task.message().payload());
            let _ = task.reply(reply);
        }
    });
    let reply = nats
        .request("fleet.req.svc.echo", "hi".into())
        .await
        .unwrap();
    assert_eq!(reply.payload, "echo: hi");
    // Not covered by the rule, or not a topic: refused.
    for subject in ["fleet.req.other.x", "fleet.req.UPPER"] {
        let answer = nats.request(subject, "x".into()).await.unwrap();
        let why = answer
            .headers
            .as_ref()
            .and_then(|h| h.get("x-bridge-error"));
        assert_eq!(why.map(|v| v.as_str()), Some("unmappable"), "{subject}");
    }
    assert_eq!(bridge.status().requests_in, 2);
    bridge.stop().await;
}

/// A responder on `broker` that answers `echo: <payload>` from `who`.
async fn echo_responder(broker: &TestBroker, who: &str) -> tokio::task::JoinHandle<()> {
    let client = broker.client(who).await;
    let mut tasks = client.queue_subscribe("svc.echo", "echo", 4).await.unwrap();
    let who = who.to_owned();
    tokio::spawn(async move {
        let _client = client;
        while let Some(task) = tasks.next().await {
            let reply = format!(
                "{who}: {}",
                String::from_utf8_lossy(task.message().payload())
            );
            let _ = task.reply(reply);
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_nobody_serves_locally_is_served_by_another_host() {
    let server = NatsServer::start().await;
    let a = TestBroker::start().await;
    let b = TestBroker::start().await;
    let rules = "[[serve]]\ntopic_filter = \"svc.echo\"\nsubject_prefix = \"fleet.req\"\n\
                 group = \"echo\"\n";
    let bridge_a = Bridge::start(config(&a, &server.url(), "a", rules))
        .await
        .unwrap();
    let bridge_b = Bridge::start(config(&b, &server.url(), "b", rules))
        .await
        .unwrap();
    connected(&bridge_a).await;
    connected(&bridge_b).await;
    let requester = a.client("requester").await;
    // Nobody anywhere: a typed failure, not a hang.
    let none = requester.request("svc.echo", "x", DEADLINE).await;
    assert!(
        matches!(
            none,
            Err(eventbus::client::RequestError::DeadLettered { .. })
        ),
        "{none:?}"
    );
    // Served on b only: the request crosses and the reply comes back.
    let on_b = echo_responder(&b, "on-b").await;
    let reply = requester.request("svc.echo", "hi", DEADLINE).await.unwrap();
    assert_eq!(reply.payload(), "on-b: hi");
    assert_eq!(bridge_a.status().requests_out, 2);
    assert_eq!(bridge_b.status().requests_in, 2);
    // Served on a too: a's own member takes it, nothing crosses.
    let on_a = echo_responder(&a, "on-a").await;
    for _ in 0..5 {
        let reply = requester.request("svc.echo", "hi", DEADLINE).await.unwrap();
        assert_eq!(reply.payload(), "on-a: hi");
    }
    assert_eq!(bridge_a.status().requests_out, 2);
    on_a.abort();
    on_b.abort();
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
