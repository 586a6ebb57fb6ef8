//! Scatter-gather over a real fleet: 3 process, 1 network and 1 filesystem
//! collector answer a status gather; one killed mid-gather is reported as
//! disconnected at once, one frozen as timed out at the deadline; a gather
//! nobody can answer fails at once.

use std::time::{Duration, Instant};

use e2e::ClusterExt as _;
use e2e::{Cluster, CollectorBuilder, CollectorKind, CollectorProcess, DEADLINE};
use eventbus::ClientId;
use eventbus::client::{GatherError, GatherOptions, MissReason, Missed};

/// The topic every mock collector answers status requests on.
const STATUS: &str = "control.collector.status";

/// Three process collectors, one network, one filesystem.
async fn fleet(cluster: &Cluster) -> Vec<CollectorProcess> {
    let mut fleet = Vec::new();
    for instance in 1..=3 {
        fleet.push(
            cluster
                .add_collector(CollectorBuilder::new(CollectorKind::Process, instance))
                .await,
        );
    }
    for kind in [CollectorKind::Network, CollectorKind::Filesystem] {
        fleet.push(cluster.add_collector(CollectorBuilder::new(kind, 1)).await);
    }
    fleet
}

fn sorted_ids(fleet: &[CollectorProcess]) -> Vec<String> {
    let mut ids: Vec<String> = fleet.iter().map(|c| c.id().to_owned()).collect();
    ids.sort();
    ids
}

/// Proves a gather ends with its last reply: a status gather to all 5
/// collectors (timeout 20 s) names the 5 as recipients at once, gets 5
/// answers, each from a different collector with its own pid, and ends long
/// before its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gather_to_five_collectors_gets_five_answers_without_waiting_out_its_timeout() {
    let cluster = Cluster::start().await;
    let fleet = fleet(&cluster).await;
    let agent = cluster.client("agent").await;

    let start = Instant::now();
    let gather = agent
        .gather(STATUS, "", GatherOptions::new(DEADLINE))
        .await
        .expect("the gather starts");
    let mut recipients: Vec<String> = gather.recipients().iter().map(|c| c.to_string()).collect();
    recipients.sort();
    assert_eq!(recipients, sorted_ids(&fleet));
    let replies = gather.all().await.expect("every collector answers");
    let took = start.elapsed();
    assert!(took < DEADLINE, "ended at its timeout: {took:?}");
    eprintln!("gather over 5 collectors: all answered in {took:?}");
    let mut sources: Vec<String> = replies.iter().map(|m| m.source().to_owned()).collect();
    sources.sort();
    assert_eq!(sources, sorted_ids(&fleet));
    for reply in &replies {
        let status: serde_json::Value = serde_json::from_slice(reply.payload()).unwrap();
        let collector = fleet.iter().find(|c| c.id() == reply.source()).unwrap();
        assert_eq!(status["collector_pid"], collector.pid(), "{status}");
        assert_eq!(status["type"], collector.kind().capability(), "{status}");
    }
}

/// Proves a recipient that dies mid-gather is reported at once: one process
/// collector is frozen (SIGSTOP) so it cannot answer, a gather (timeout 20 s)
/// starts, then the frozen collector is killed (SIGKILL). The gather ends
/// with 4 answers and that collector `Disconnected`, well before its
/// timeout: its socket's end is the broker's signal, not the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_killed_mid_gather_is_reported_disconnected_at_once() {
    let cluster = Cluster::start().await;
    let mut fleet = fleet(&cluster).await;
    let agent = cluster.client("agent").await;

    fleet[0].pause();
    let mut gather = agent
        .gather(STATUS, "", GatherOptions::new(DEADLINE))
        .await
        .expect("the gather starts");
    assert_eq!(gather.recipients().len(), 5);
    // The four others answer; the frozen one holds the request unread.
    for _ in 0..4 {
        let reply = gather.next().await.expect("an answer");
        assert_ne!(reply.source(), fleet[0].id());
    }
    let killed = Instant::now();
    fleet[0].kill();
    assert!(gather.next().await.is_none(), "no fifth answer");
    let reported = killed.elapsed();
    assert!(
        reported < DEADLINE,
        "reported at the deadline: {reported:?}"
    );
    eprintln!("a killed recipient was reported {reported:?} after SIGKILL");
    let outcome = gather.outcome().expect("ended");
    assert_eq!(outcome.answered.len(), 4);
    assert_eq!(
        outcome.missing,
        vec![Missed {
            client_id: ClientId::new(fleet[0].id()).unwrap(),
            reason: MissReason::Disconnected,
        }]
    );
}

/// Proves a frozen recipient is reported at the deadline: one collector is
/// frozen (SIGSTOP) with its socket open and a heartbeat limit far beyond
/// the gather's 1 s timeout; the gather gets the 4 other answers at once
/// and ends at its deadline with the frozen one `TimedOut`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_collector_is_reported_timed_out_at_the_deadline() {
    let cluster = Cluster::start().await;
    let fleet = fleet(&cluster).await;
    let agent = cluster.client("agent").await;

    let frozen = &fleet[4];
    frozen.pause();
    let timeout = Duration::from_secs(1);
    let start = Instant::now();
    let gather = agent
        .gather(STATUS, "", GatherOptions::new(timeout))
        .await
        .expect("the gather starts");
    let all = gather.collect().await;
    let took = start.elapsed();
    frozen.resume();
    assert!(took >= timeout, "ended before its deadline: {took:?}");
    eprintln!("a frozen recipient was reported after {took:?} (timeout {timeout:?})");
    assert_eq!(all.replies.len(), 4);
    assert_eq!(
        all.outcome.missing,
        vec![Missed {
            client_id: ClientId::new(frozen.id()).unwrap(),
            reason: MissReason::TimedOut,
        }]
    );
}

/// Proves a gather nobody can answer fails at once: with no collector
/// connected, a status gather fails with `NoResponders` immediately.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gather_with_no_recipients_fails_at_once_with_no_responders() {
    let cluster = Cluster::start().await;
    let agent = cluster.client("agent").await;
    let refused = agent
        .gather(STATUS, "", GatherOptions::new(DEADLINE))
        .await
        .unwrap_err();
    assert_eq!(
        refused,
        GatherError::NoResponders {
            topic: STATUS.to_owned()
        }
    );
}
