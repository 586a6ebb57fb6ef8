//! Requests across hosts, both ways.

use super::*;

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
