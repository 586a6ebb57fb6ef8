//! Who a client is: a live client's id is its own, `broker` is nobody's,
//! and nobody holds a slot longer than the broker allows.

use e2e::ClusterExt as _;
use e2e::hostile::{RawClient, hello, message};
use e2e::{
    BrokerBuilder, Cluster, CollectorBuilder, CollectorKind, DEADLINE, TaskReply, wait_until,
};
use eventbus::ClientId;
use eventbus::proto::{self, ErrorCode, frame::Kind};

use super::{assert_refused, raw, victim_tasks_complete};

/// What an impostor answers to the tasks it steals.
const FORGED: &str = r#"{"forged":true}"#;

/// Answers every direct request the impostor receives with [`FORGED`],
/// as long as its connection lasts.
async fn answer_stolen_tasks(mut impostor: RawClient) {
    while let Some(d) = impostor.next_delivery(DEADLINE).await {
        let Some(msg) = d.message else { continue };
        let reply = proto::Reply {
            correlation_id: msg.correlation_id,
            delivery_id: d.delivery_id,
            message: Some(message(&msg.topic, FORGED)),
            seq: 0,
        };
        if impostor.send(Kind::Reply(reply)).await.is_err() {
            return;
        }
    }
}

/// Proves that a live collector's client id cannot be taken over: an
/// impostor saying hello as `procmond-1` while the real one is connected is
/// refused with `DuplicateClientId` (it has no resume token), and 5 direct
/// tasks sent to `procmond-1` are all answered by the real process, which
/// the broker still lists under that id with its own pid. (Were the
/// impostor admitted, it would answer every direct task it got.) The
/// holder of an id can still take it over with the resume token its
/// `Welcome` gave it; a guessed token is refused the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_a_live_collectors_id_cannot_be_taken_over() {
    let cluster = Cluster::start().await;
    let real = cluster
        .add_collector(CollectorBuilder::new(CollectorKind::Process, 1))
        .await;
    let driver = cluster.driver().await;
    let attempt = RawClient::connect(cluster.socket(), hello("procmond-1")).await;
    let (refusal, impostor) = match attempt {
        Ok((client, _)) => (None, Some(tokio::spawn(answer_stolen_tasks(client)))),
        Err(refusal) => (Some(refusal), None),
    };
    let target = ClientId::new("procmond-1").unwrap();
    let topic = CollectorKind::Process.task_topic();
    let mut by_impostor = 0;
    for i in 0..5 {
        let task = CollectorKind::Process.payload(&format!("direct-{i}"));
        let reply = driver
            .client()
            .request_direct(&target, &topic, task, DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("direct task {i}: {e}"));
        match TaskReply::parse(&reply) {
            Ok(r) if r.collector_pid == real.pid() && r.source == "procmond-1" => {}
            _ => by_impostor += 1,
        }
    }
    if let Some(task) = impostor {
        task.abort();
    }
    assert_eq!(
        by_impostor, 0,
        "the impostor answered {by_impostor} of 5 direct tasks"
    );
    match refusal {
        Some(r) if r.code() == Some(ErrorCode::DuplicateClientId) => {}
        other => panic!("impostor: expected DuplicateClientId, got {other:?} (None: admitted)"),
    }
    let stats = driver.stats().await;
    let listed: Vec<_> = stats
        .connections
        .iter()
        .filter(|c| c.id == "procmond-1")
        .map(|c| c.pid)
        .collect();
    assert_eq!(listed, [real.pid()], "procmond-1 is the real process");

    // The holder itself takes its id over with the token its Welcome gave
    // it (a reconnect before its old link timed out); a guessed one fails.
    let (_old_link, welcome) = RawClient::connect(cluster.socket(), hello("agent-7"))
        .await
        .unwrap();
    let guessed = proto::Hello {
        resume_token: vec![0; welcome.resume_token.len().max(16)].into(),
        ..hello("agent-7")
    };
    let guessed = RawClient::connect(cluster.socket(), guessed).await;
    assert_refused(
        guessed.map(drop),
        ErrorCode::DuplicateClientId,
        "a guessed token",
    );
    let holder = proto::Hello {
        resume_token: welcome.resume_token,
        ..hello("agent-7")
    };
    let resumed = RawClient::connect(cluster.socket(), holder).await;
    assert!(
        resumed.is_ok(),
        "the holder's own token: {:?}",
        resumed.err()
    );
}

/// Proves that `broker` is the broker's own name and `_sys.*` its own
/// topics: a client saying hello as `broker` is refused with
/// `InvalidClientId`; an ordinary client publishing on
/// `_sys.slow-consumer` (confirmed) and `_sys.dead-letter.process`
/// (fire-and-forget) is refused with `PermissionDenied` both times; a
/// subscriber on `_sys.#` receives nothing (checked against a later
/// message from the same publisher, so no sleep decides it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_broker_is_not_a_client_id_and_sys_topics_are_the_brokers() {
    let cluster = Cluster::start().await;
    let mut watcher = raw(cluster.socket(), "watcher").await;
    watcher.subscribe(1, "_sys.#", "", 0).await.unwrap();
    watcher.subscribe(2, "events.#", "", 0).await.unwrap();
    let as_broker = RawClient::connect(cluster.socket(), hello("broker")).await;
    // Were `broker` admitted, it would be the attacker below.
    let (refusal, mut attacker) = match as_broker {
        Ok((client, _)) => (None, client),
        Err(r) => (Some(r), raw(cluster.socket(), "mallory").await),
    };
    let forged = r#"{"client":"procmond-1","dropped":1000000}"#;
    let slow = attacker.publish_to("_sys.slow-consumer", forged).await;
    attacker
        .send(Kind::Publish(proto::Publish {
            message: Some(message("_sys.dead-letter.process", forged)),
            ..Default::default()
        }))
        .await
        .unwrap();
    attacker
        .publish_to("events.barrier", "after")
        .await
        .unwrap();
    let mut seen = Vec::new();
    while let Some(d) = watcher.next_delivery(DEADLINE).await {
        let msg = d.message.unwrap_or_default();
        if msg.topic == "events.barrier" {
            break;
        }
        seen.push((msg.topic, msg.source));
    }
    assert!(
        seen.is_empty(),
        "the watcher got forged broker messages: {seen:?}"
    );
    match refusal {
        Some(r) if r.code() == Some(ErrorCode::InvalidClientId) => {}
        other => {
            panic!("hello as broker: expected InvalidClientId, got {other:?} (None: admitted)")
        }
    }
    assert_refused(
        slow,
        ErrorCode::PermissionDenied,
        "publish on _sys.slow-consumer",
    );
    let errors = attacker.take(|f| matches!(&f.kind, Some(Kind::Error(e)) if e.seq == 0));
    let codes: Vec<_> = errors
        .iter()
        .filter_map(|f| match &f.kind {
            Some(Kind::Error(e)) => Some(e2e::hostile::code(e)),
            _ => None,
        })
        .collect();
    assert_eq!(
        codes,
        [ErrorCode::PermissionDenied],
        "the fire-and-forget publish on _sys.dead-letter.process"
    );
}

/// Proves that heartbeat requests are bounded by the broker: a client
/// asking for a 60 s interval and 100 misses (100 minutes of silence
/// before it counts as dead) is granted at most the defaults'
/// `max_heartbeat_interval_ms` (10 s) and `max_heartbeat_misses` (10).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_heartbeat_requests_are_clamped_to_the_brokers_bounds() {
    let cluster = Cluster::start().await;
    let asked = proto::Hello {
        heartbeat_interval_ms: 60_000,
        heartbeat_misses: 100,
        ..hello("sleepy")
    };
    let (_client, welcome) = RawClient::connect(cluster.socket(), asked).await.unwrap();
    let granted = (welcome.heartbeat_interval_ms, welcome.heartbeat_misses);
    assert!(
        granted.0 <= 10_000 && granted.1 <= 10,
        "asked 60,000 ms x 100, granted {} ms x {}",
        granted.0,
        granted.1
    );
}

/// Proves that the heartbeat bound is enforced, not only announced: with
/// `max_heartbeat_interval_ms = 500` and `max_heartbeat_misses = 4`, a
/// client that asks for 60 s x 100, joins the process group next to
/// `procmond-1` and goes silent once it holds one of the victim's two tasks
/// is declared dead within the bound (2 s); the task it held is redelivered
/// (counted by the broker) to `procmond-1`, which answers both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_a_silent_client_loses_its_tasks_within_the_brokers_heartbeat_bound() {
    let cluster = Cluster::start_with(BrokerBuilder::new().config_toml(
        "heartbeat_interval_ms = 250\nheartbeat_misses = 4\n\
         max_heartbeat_interval_ms = 500\nmax_heartbeat_misses = 4\n",
    ))
    .await;
    let kind = CollectorKind::Process;
    let real = cluster.add_collector(CollectorBuilder::new(kind, 1)).await;
    let driver = cluster.driver().await;
    let mut squatter = raw(cluster.socket(), "squatter").await;
    squatter
        .subscribe(1, kind.task_topic().as_str(), "process", 1)
        .await
        .unwrap();
    // Round robin hands one of the two to each member.
    let mut pending = Vec::new();
    for task in ["first", "second"] {
        let submitted = driver
            .client()
            .submit(&kind.task_topic(), kind.payload(task), DEADLINE)
            .await
            .unwrap();
        pending.push(submitted);
    }
    let held = squatter.next_delivery(DEADLINE).await;
    assert!(held.is_some(), "the squatter was handed a task");
    for submitted in pending {
        let reply = submitted
            .reply()
            .await
            .unwrap_or_else(|e| panic!("a task, one held by the silent squatter: {e}"));
        assert_eq!(TaskReply::parse(&reply).unwrap().collector_pid, real.pid());
    }
    let queue = driver.queue_stats(kind).await.unwrap();
    assert!(queue.redelivered >= 1, "{queue:?}");
    wait_until("the squatter is gone", DEADLINE, || async {
        !driver
            .stats()
            .await
            .connections
            .iter()
            .any(|c| c.id == "squatter")
    })
    .await
    .unwrap();
    victim_tasks_complete(&driver, "after-squatter", "procmond-1").await;
}
