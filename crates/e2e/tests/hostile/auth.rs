//! With an auth file: each identity may do only what its entry allows.

use e2e::hostile::{RawClient, hello};
use e2e::{BrokerBuilder, Cluster, CollectorBuilder, CollectorKind, DEADLINE, TaskReply};
use eventbus::client::Credentials;
use eventbus::proto::{self, ErrorCode, frame::Kind};
use eventbus::{Client, ClientId, ClientOptions};

use super::{assert_refused, raw};

/// The agent's secret (a test value; real ones live in a file or the
/// environment, never on a command line).
const AGENT_SECRET: &str = "agent-secret";

/// The auth file: `procmond` is whoever connects with this process's uid
/// and no credentials (the collectors, and the compromised one), limited
/// to its ids, its group, its topics and no stats; `agent` logs in with a
/// secret and may do everything, cancelling included.
fn auth_file(uid: u32) -> String {
    format!(
        r#"
[[user]]
name = "procmond"
uid = {uid}
client_ids = ["procmond-*"]
groups = ["process"]
stats = false
[user.publish]
allow = ["events.process.#"]
[user.subscribe]
allow = ["control.collector.task.process"]

[[user]]
name = "agent"
secret_sha256 = "{hash}"
admin = true
"#,
        hash = eventbus::broker::hash_secret(AGENT_SECRET.as_bytes())
    )
}

/// Proves that an auth file confines each identity: a compromised collector
/// (a client of the `procmond` identity) may publish on
/// `events.process.#` but not `events.network.#` nor hand out tasks; may not
/// read stats, snoop on `events.#`, join the `network` group or another
/// group on its own topic, nor cancel the agent's task; it may not connect
/// as `netmond-1`, and a wrong secret for `agent` is refused — every refusal
/// a `PermissionDenied`. Meanwhile the real `procmond-1` (same identity)
/// answers the agent's tasks, and the agent reads stats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_an_auth_file_confines_each_identity() {
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("auth.toml");
    std::fs::write(&path, auth_file(rustix::process::getuid().as_raw())).unwrap();
    let config = format!("auth_file = {:?}\n", path.to_str().unwrap());
    let cluster = Cluster::start_with(BrokerBuilder::new().config_toml(config)).await;
    let real = cluster
        .add_collector(CollectorBuilder::new(CollectorKind::Process, 1))
        .await;
    let agent = Client::connect(
        ClientOptions::new(cluster.socket())
            .client_id(ClientId::new("agent-1").unwrap())
            .credentials(Credentials::new("agent", AGENT_SECRET))
            .request_timeout(DEADLINE),
    )
    .await
    .unwrap();
    let mut evil = raw(cluster.socket(), "procmond-9").await;

    let task_topic = CollectorKind::Process.task_topic();
    let own = evil.publish_to("events.process.started", "{}").await;
    assert!(own.is_ok(), "its own topic: {own:?}");
    let denied = ErrorCode::PermissionDenied;
    let other = evil.publish_to("events.network.up", "{}").await;
    assert_refused(other, denied, "publish on events.network.up");
    let task = evil.publish_to(task_topic.as_str(), "{}").await;
    assert_refused(task, denied, "hand out a task");
    assert_refused(evil.stats().await, denied, "stats");
    let snoop = evil.subscribe(1, "events.#", "", 0).await;
    assert_refused(snoop, denied, "subscribe to events.#");
    let network = evil
        .subscribe(2, "control.collector.task.network", "network", 1)
        .await;
    assert_refused(network, denied, "join the network group");
    let side_group = evil.subscribe(3, task_topic.as_str(), "shadow", 1).await;
    assert_refused(side_group, denied, "a group of its own on the task topic");

    let pending = agent
        .submit(&task_topic, CollectorKind::Process.payload("a-1"), DEADLINE)
        .await
        .unwrap();
    let seq = evil.next_seq();
    let cancel = Kind::Cancel(proto::Cancel {
        seq,
        message_id: pending.message_id(),
    });
    assert_refused(
        evil.call(cancel, seq).await,
        denied,
        "cancel the agent's task",
    );
    let reply = TaskReply::parse(&pending.reply().await.unwrap()).unwrap();
    assert_eq!(reply.collector_pid, real.pid());

    let as_netmond = RawClient::connect(cluster.socket(), hello("netmond-1")).await;
    assert_refused(as_netmond.map(drop), denied, "connect as netmond-1");
    let wrong = proto::Hello {
        user: "agent".into(),
        secret: b"guess".to_vec().into(),
        ..hello("agent-2")
    };
    let guessed = RawClient::connect(cluster.socket(), wrong).await;
    assert_refused(guessed.map(drop), denied, "agent with a wrong secret");

    let stats = agent.stats().await.unwrap();
    assert!(stats.connections.iter().any(|c| c.id == "procmond-1"));
    for i in 0..5 {
        let reply = agent
            .request(
                &task_topic,
                CollectorKind::Process.payload(&format!("a-{i}")),
                DEADLINE,
            )
            .await
            .unwrap();
        assert_eq!(TaskReply::parse(&reply).unwrap().source, "procmond-1");
    }
}
