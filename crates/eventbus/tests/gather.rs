//! Scatter-gather from the client, over real sockets: who gets a gather,
//! its replies as they come, an end the moment the last recipient answered
//! or left, a deadline for the silent, and the aggregation helpers.

use std::time::Duration;

use eventbus::client::{GatherError, GatherOptions, GatherScope, MissReason, Missed, PublishError};
use eventbus::{Client, ClientId, ClientOptions, Message};
use eventbus_harness::{DEADLINE, Direction, FaultProxy, TestBroker};

const SNAPSHOT: &str = "control.collector.snapshot";

/// A gather that only a broker's early end can finish within the test's
/// `DEADLINE`: an end before it proves nobody waited out the timeout.
const NEVER: Duration = Duration::from_secs(3600);

/// Answers every request on `filter` (plainly, or as a member of `group`)
/// with `<its id>:<payload>`, until its client is dropped.
async fn responder(broker: &TestBroker, id: &str, filter: &str, group: Option<&str>) -> Client {
    let client = broker.client(id).await;
    let me = id.to_owned();
    match group {
        None => {
            let mut subs = client.subscribe(filter).await.unwrap();
            let c = client.clone();
            tokio::spawn(async move {
                while let Some(m) = subs.next().await {
                    let answer = format!("{me}:{}", String::from_utf8_lossy(m.payload()));
                    let _ = c.reply(&m, answer);
                }
            });
        }
        Some(group) => {
            let mut tasks = client.queue_subscribe(filter, group, 8).await.unwrap();
            tokio::spawn(async move {
                while let Some(d) = tasks.next().await {
                    let answer = format!("{me}:{}", String::from_utf8_lossy(d.message().payload()));
                    let _ = d.reply(answer);
                }
            });
        }
    }
    client
}

fn ids(ids: &[&str]) -> Vec<ClientId> {
    let mut v: Vec<ClientId> = ids.iter().map(|i| ClientId::new(i).unwrap()).collect();
    v.sort();
    v
}

fn sorted(v: &[ClientId]) -> Vec<ClientId> {
    let mut v = v.to_vec();
    v.sort();
    v
}

fn sources(replies: &[Message]) -> Vec<ClientId> {
    let v: Vec<ClientId> = replies
        .iter()
        .map(|m| ClientId::new(m.source()).unwrap())
        .collect();
    sorted(&v)
}

/// `plain-1` subscribes plainly; `proc-1` and `proc-2` are group `process`;
/// `net-1` is group `network`; `proc-1` also subscribes plainly (and answers
/// there too), so it matches twice and must be asked once.
async fn fleet(broker: &TestBroker) -> Vec<Client> {
    let clients = vec![
        responder(broker, "plain-1", "control.collector.#", None).await,
        responder(broker, "proc-1", SNAPSHOT, Some("process")).await,
        responder(broker, "proc-2", SNAPSHOT, Some("process")).await,
        responder(broker, "net-1", SNAPSHOT, Some("network")).await,
    ];
    let proc1 = clients[1].clone();
    let mut extra = proc1.subscribe("control.#").await.unwrap();
    tokio::spawn(async move {
        while let Some(m) = extra.next().await {
            let answer = format!("proc-1:{}", String::from_utf8_lossy(m.payload()));
            let _ = proc1.reply(&m, answer);
        }
    });
    clients
}

#[tokio::test]
async fn a_gather_reaches_every_client_once_and_ends_with_the_last_reply() {
    let broker = TestBroker::start().await;
    let _fleet = fleet(&broker).await;
    let agent = broker.client("agent").await;

    let gather = agent
        .gather(SNAPSHOT, "report", GatherOptions::new(NEVER))
        .await
        .unwrap();
    let everyone = ids(&["plain-1", "proc-1", "proc-2", "net-1"]);
    assert_eq!(sorted(gather.recipients()), everyone);
    let all = tokio::time::timeout(DEADLINE, gather.collect())
        .await
        .expect("the gather ends with its last reply, not at its timeout");
    assert!(all.outcome.is_complete(), "{:?}", all.outcome);
    assert_eq!(sources(&all.replies), everyone);
    assert_eq!(sorted(&all.outcome.answered), everyone);
    for reply in &all.replies {
        assert_eq!(
            String::from_utf8_lossy(reply.payload()),
            format!("{}:report", reply.source())
        );
    }
}

#[tokio::test]
async fn scopes_pick_plain_subscribers_or_the_members_of_one_group() {
    let broker = TestBroker::start().await;
    let _fleet = fleet(&broker).await;
    let agent = broker.client("agent").await;

    let plain = agent
        .gather(
            SNAPSHOT,
            "",
            GatherOptions::new(NEVER).scope(GatherScope::Plain),
        )
        .await
        .unwrap();
    assert_eq!(sorted(plain.recipients()), ids(&["plain-1", "proc-1"]));

    let process = agent
        .gather(
            SNAPSHOT,
            "",
            GatherOptions::new(NEVER).scope(GatherScope::Group("process".parse().unwrap())),
        )
        .await
        .unwrap();
    assert_eq!(sorted(process.recipients()), ids(&["proc-1", "proc-2"]));
    let replies = process.all().await.unwrap();
    assert_eq!(sources(&replies), ids(&["proc-1", "proc-2"]));
    let replies = plain.all().await.unwrap();
    assert_eq!(sources(&replies), ids(&["plain-1", "proc-1"]));
}

#[tokio::test]
async fn a_recipient_that_leaves_is_reported_at_once_and_a_silent_one_at_the_deadline() {
    let broker = TestBroker::start().await;
    let _answers = responder(&broker, "proc-1", SNAPSHOT, Some("process")).await;
    // Two members that take the request and never answer.
    let leaver = broker.client("proc-2").await;
    let mut held = leaver
        .queue_subscribe(SNAPSHOT, "process", 8)
        .await
        .unwrap();
    let silent = broker.client("proc-3").await;
    let mut kept = silent
        .queue_subscribe(SNAPSHOT, "process", 8)
        .await
        .unwrap();
    let agent = broker.client("agent").await;

    // The leaver goes mid-gather: the gather ends without waiting out its
    // (hour-long) timeout once the others are settled.
    let mut gather = agent
        .gather(SNAPSHOT, "x", GatherOptions::new(NEVER))
        .await
        .unwrap();
    assert_eq!(gather.recipients().len(), 3);
    assert!(held.next().await.is_some());
    let first = gather.next().await.unwrap();
    assert_eq!(first.source(), "proc-1");
    drop(held);
    leaver.close().await;
    // proc-3 answers now, so only the leaver is missing.
    let task = kept.next().await.unwrap();
    task.reply("late but here").unwrap();
    let rest = tokio::time::timeout(DEADLINE, gather.collect())
        .await
        .expect("the gather ends when the leaver's connection does");
    assert_eq!(sources(&rest.replies), ids(&["proc-3"]));
    assert_eq!(
        rest.outcome.missing,
        vec![Missed {
            client_id: ClientId::new("proc-2").unwrap(),
            reason: MissReason::Disconnected,
        }]
    );

    // A silent member is missing at the deadline.
    let gather = agent
        .gather(
            SNAPSHOT,
            "y",
            GatherOptions::new(Duration::from_millis(200)),
        )
        .await
        .unwrap();
    assert_eq!(gather.recipients().len(), 2);
    let all = gather.collect().await;
    assert_eq!(sources(&all.replies), ids(&["proc-1"]));
    assert_eq!(
        all.outcome.missing,
        vec![Missed {
            client_id: ClientId::new("proc-3").unwrap(),
            reason: MissReason::TimedOut,
        }]
    );
    // Its answer after the end is refused by the broker and never reaches
    // the requester.
    let task = kept.next().await.unwrap();
    let _ = task.reply("too late");
    let again = agent
        .gather(
            SNAPSHOT,
            "z",
            GatherOptions::new(Duration::from_millis(200)),
        )
        .await
        .unwrap();
    let all = again.collect().await;
    assert!(
        all.replies
            .iter()
            .all(|m| m.payload().as_ref() != b"too late"),
        "{:?}",
        all.replies
    );
}

#[tokio::test]
async fn a_gather_nobody_can_answer_and_one_over_the_bounds_are_refused_with_typed_errors() {
    let broker = TestBroker::start_with(|c| {
        c.max_gather_recipients = 2;
        c.quotas.max_concurrent_gathers = 1;
    })
    .await;
    let agent = broker.client("agent").await;

    let none = agent
        .gather(SNAPSHOT, "", GatherOptions::new(NEVER))
        .await
        .unwrap_err();
    assert_eq!(
        none,
        GatherError::NoResponders {
            topic: SNAPSHOT.into()
        }
    );
    let bad = agent
        .gather("control.#", "", GatherOptions::new(NEVER))
        .await
        .unwrap_err();
    assert!(
        matches!(bad, GatherError::Publish(PublishError::InvalidTopic(_))),
        "{bad:?}"
    );

    let silent = [
        broker.client("proc-1").await,
        broker.client("proc-2").await,
        broker.client("proc-3").await,
    ];
    let mut subs = Vec::new();
    for c in &silent[..2] {
        subs.push(c.subscribe(SNAPSHOT).await.unwrap());
    }
    // Two recipients: one gather at a time for this client.
    let going = agent
        .gather(SNAPSHOT, "", GatherOptions::new(NEVER))
        .await
        .unwrap();
    let second = agent
        .gather(SNAPSHOT, "", GatherOptions::new(NEVER))
        .await
        .unwrap_err();
    assert_eq!(second, GatherError::TooManyGathers { limit: 1 });
    drop(going);

    subs.push(silent[2].subscribe(SNAPSHOT).await.unwrap());
    let other = broker.client("other").await;
    let over = other
        .gather(SNAPSHOT, "", GatherOptions::new(NEVER))
        .await
        .unwrap_err();
    assert_eq!(over, GatherError::TooManyRecipients { limit: 2 });
}

#[tokio::test]
async fn aggregation_first_n_quorum_fold_and_all() {
    let broker = TestBroker::start().await;
    let _answering = [
        responder(&broker, "proc-1", SNAPSHOT, Some("process")).await,
        responder(&broker, "proc-2", SNAPSHOT, Some("process")).await,
    ];
    let silent = broker.client("proc-3").await;
    let _held = silent
        .queue_subscribe(SNAPSHOT, "process", 8)
        .await
        .unwrap();
    let agent = broker.client("agent").await;
    let options = || GatherOptions::new(Duration::from_millis(300));

    // First 2 of 3 return without waiting for the silent one.
    let gather = agent
        .gather(SNAPSHOT, "a", GatherOptions::new(NEVER))
        .await
        .unwrap();
    let two = tokio::time::timeout(DEADLINE, gather.first(2))
        .await
        .expect("first(2) returns with the second reply")
        .unwrap();
    assert_eq!(sources(&two), ids(&["proc-1", "proc-2"]));

    // A majority of 3 is 2.
    let gather = agent.gather(SNAPSHOT, "b", options()).await.unwrap();
    assert_eq!(gather.quorum().await.unwrap().len(), 2);

    // All 3 are not coming: what came, and who is missing.
    let gather = agent.gather(SNAPSHOT, "c", options()).await.unwrap();
    let short = gather.all().await.unwrap_err();
    assert_eq!((short.needed, short.got), (3, 2));
    assert_eq!(sources(&short.replies), ids(&["proc-1", "proc-2"]));
    assert_eq!(short.outcome.missing.len(), 1);
    assert_eq!(short.outcome.missing[0].client_id.as_str(), "proc-3");

    let gather = agent.gather(SNAPSHOT, "d", options()).await.unwrap();
    assert!(gather.first(3).await.is_err());

    let gather = agent.gather(SNAPSHOT, "e", options()).await.unwrap();
    let (bytes, outcome) = gather.fold(0, |sum, m| sum + m.payload().len()).await;
    assert_eq!(bytes, "proc-1:e".len() * 2);
    assert_eq!(outcome.answered.len(), 2);
    assert_eq!(outcome.recipients.len(), 3);
}

#[tokio::test]
async fn a_requester_that_loses_its_connection_ends_its_gathers_as_requester_disconnected() {
    let broker = TestBroker::start().await;
    let silent = broker.client("proc-1").await;
    let _held = silent.subscribe(SNAPSHOT).await.unwrap();
    // The requester reaches the broker through a proxy that can cut its
    // connection while the recipient's stays up.
    let dir = eventbus_harness::embedded::short_temp_dir();
    let proxy = FaultProxy::start(&dir.path().join("p.sock"), broker.socket(), 1)
        .await
        .unwrap();
    let agent = Client::connect(
        ClientOptions::new(proxy.socket()).client_id(ClientId::new("agent").unwrap()),
    )
    .await
    .unwrap();
    let gather = agent
        .gather(SNAPSHOT, "", GatherOptions::new(NEVER))
        .await
        .unwrap();
    proxy.tear(Direction::ToBroker);
    agent.publish("events.poke", "").unwrap();
    let all = tokio::time::timeout(DEADLINE, gather.collect())
        .await
        .expect("the lost connection ends the gather");
    assert_eq!(
        all.outcome.missing,
        vec![Missed {
            client_id: ClientId::new("proc-1").unwrap(),
            reason: MissReason::RequesterDisconnected,
        }]
    );
}
