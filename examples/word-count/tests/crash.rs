//! The worker crashes mid-task: the task goes to another worker, nothing is
//! lost or done twice.
use eventbus::Body;
use eventbus_harness::{Cluster, DEADLINE, History, Order, Output, ProcessBuilder, Ready};

fn worker(id: &str, delay_ms: &str) -> ProcessBuilder {
    ProcessBuilder::new(id, env!("CARGO_BIN_EXE_worker"))
        .arg(id)
        .env("WORK_DELAY_MS", delay_ms)
        .ready(Ready::JsonLine)
}

#[tokio::test]
async fn a_task_survives_its_worker_crashing() {
    let cluster = Cluster::embedded().await; // the broker runs in this test
    let mut slow = cluster.spawn(worker("slow-1", "60000")).await;
    let client = cluster.client("requester").await;
    let history = History::new();
    let mut pending = Vec::new();
    for n in 0..5 {
        let id = format!("t{n}");
        history.published(&id);
        let body = Body::new("one two three").header("task-id", &id).unwrap();
        let request = client.submit("jobs.word-count", body, DEADLINE).await;
        pending.push((id.clone(), request.unwrap()));
        history.accepted(&id);
    }
    let started = |line: &str| line.starts_with("started ");
    let line = slow.wait_for_line(Output::Stderr, DEADLINE, started).await;
    history.delivered(line.trim_start_matches("started "), "slow-1", 0);
    slow.kill(); // SIGKILL mid-task
    let _fast = cluster.spawn(worker("fast-1", "0")).await;
    for (n, (id, pending)) in pending.into_iter().enumerate() {
        let reply = pending.reply().await.unwrap();
        assert_eq!(reply.payload(), "3");
        assert_eq!(reply.headers().get("task-id"), Some(id.as_str()));
        history.delivered(&id, reply.source(), n as u64 + 1);
        history.acked(&id);
    }
    let verdict = history.check(Order::Any);
    assert!(verdict.is_clean(), "{verdict}");
    let stats = client.stats().await.unwrap();
    assert_eq!(stats.queues[0].redelivered, 1, "{stats:?}");
}

#[tokio::test]
async fn the_requester_prints_each_count() {
    let cluster = Cluster::embedded().await;
    let _worker = cluster.spawn(worker("w-1", "0")).await;
    let requester = ProcessBuilder::new("requester", env!("CARGO_BIN_EXE_requester"));
    let mut requester = cluster.spawn(requester.args(["a b", "c d e"])).await;
    assert!(requester.wait_exit(DEADLINE).await.success());
    let expected = "t0: 2 words, counted by w-1\nt1: 3 words, counted by w-1\n";
    assert_eq!(requester.output(Output::Stdout), expected);
}
