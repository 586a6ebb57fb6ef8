//! Load shedding: a collector whose memory is squeezed (its soft `RLIMIT_AS`
//! lowered to its size plus some headroom) hands back the tasks it cannot take,
//! so another member of the group answers them, and serves on.
#![cfg(target_os = "linux")]

mod common;

use common::{Collector, DEADLINE, TestBroker, ask, task_topic, wait_until};
use eventbus::client::RequestError;
use eventbus::{Client, ClientId};
use rustix::process::{Pid, Resource, Rlimit};
use serde_json::json;

/// Room for worker threads and small tasks, not for a malloc arena (64 MiB).
const HEADROOM: u64 = 32 << 20;
/// Never fits in [`HEADROOM`].
const BIG: u64 = 128 << 20;
/// Fits.
const SMALL: u64 = 4 << 20;

/// The collector's virtual size (`VmSize`), in bytes.
fn vm_size(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().strip_suffix(" kB"))
        .expect("a VmSize line");
    kb.trim().parse::<u64>().unwrap() * 1024
}

/// Sets the soft `RLIMIT_AS` of `pid` (the hard one, inherited from this test,
/// is kept); `None` is unlimited.
fn set_soft_limit(pid: u32, soft: Option<u64>) {
    let hard = rustix::process::getrlimit(Resource::As).maximum;
    let pid = Pid::from_raw(pid as i32).unwrap();
    let new = Rlimit {
        current: soft,
        maximum: hard,
    };
    rustix::process::prlimit(Some(pid), Resource::As, new).expect("prlimit");
}

fn squeeze(collector: &Collector, headroom: u64) {
    let pid = collector.pid();
    set_soft_limit(pid, Some(vm_size(pid) + headroom));
}

async fn ask_direct(
    client: &Client,
    collector: &Collector,
    task: serde_json::Value,
) -> Result<serde_json::Value, RequestError> {
    let target = ClientId::new(&collector.id).unwrap();
    let reply = client
        .request_direct(&target, &task_topic("network"), task.to_string(), DEADLINE)
        .await?;
    Ok(serde_json::from_slice(reply.payload()).unwrap())
}

async fn wait_for_log(collector: &Collector, line: &str) {
    wait_until(
        &format!("{} logs {line:?}", collector.id),
        DEADLINE,
        || async { collector.stderr().iter().any(|l| l.contains(line)) },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_does_not_fit_is_shed_to_another_member() {
    let broker = TestBroker::start().await;
    let mut squeezed = Collector::start(broker.socket(), "network", 1, &[]).await;
    let roomy = Collector::start(broker.socket(), "network", 2, &[]).await;
    let client = broker.client("tester").await;
    squeeze(&squeezed, HEADROOM);

    for n in 1..=4 {
        let task = json!({"task_id": format!("big{n}"), "scratch_bytes": BIG});
        let (reply, answer) = ask(&client, "network", task).await;
        assert_eq!(answer["status"], "ok", "{answer}");
        assert_eq!(reply.source(), roomy.id, "{answer}");
    }
    wait_for_log(
        &squeezed,
        &format!("shedding load: cannot reserve {BIG} bytes"),
    )
    .await;

    let small = json!({"task_id": "small", "scratch_bytes": SMALL});
    let answer = ask_direct(&client, &squeezed, small).await.unwrap();
    assert_eq!(
        (answer["status"].as_str(), answer["collector_id"].as_str()),
        (Some("ok"), Some(squeezed.id.as_str())),
        "{answer}"
    );
    // A direct task has no other member to go to: its requester learns at once.
    let big = json!({"task_id": "big-direct", "scratch_bytes": BIG});
    let err = ask_direct(&client, &squeezed, big).await.unwrap_err();
    assert!(matches!(err, RequestError::NoResponders { .. }), "{err:?}");
    assert!(squeezed.is_running());

    set_soft_limit(squeezed.pid(), None);
    let big = json!({"task_id": "big-relieved", "scratch_bytes": BIG});
    let answer = ask_direct(&client, &squeezed, big).await.unwrap();
    assert_eq!(answer["status"], "ok", "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_room_for_a_worker_thread_sheds_every_task_without_aborting() {
    let broker = TestBroker::start().await;
    // Fresh, so it has no worker thread yet, and 1 MiB is less than a stack.
    let mut squeezed = Collector::start(broker.socket(), "network", 1, &[]).await;
    squeeze(&squeezed, 1 << 20);
    let roomy = Collector::start(broker.socket(), "network", 2, &[]).await;
    let client = broker.client("tester").await;

    // The scratch fits once, not twice: shedding must free it.
    let scratch = 768 << 10;
    for n in 1..=3 {
        let task = json!({"task_id": format!("t{n}"), "scratch_bytes": scratch});
        let (reply, answer) = ask(&client, "network", task).await;
        assert_eq!(answer["status"], "ok", "{answer}");
        assert_eq!(reply.source(), roomy.id, "{answer}");
    }
    wait_for_log(&squeezed, "shedding load: no worker thread").await;
    assert!(squeezed.is_running(), "the squeezed collector aborted");
    let log = squeezed.stderr();
    let shed: Vec<_> = log.iter().filter(|l| l.contains("shedding load")).collect();
    assert!(shed.len() >= 2, "{log:#?}");
    assert!(
        shed.iter().all(|l| l.contains("no worker thread")),
        "{shed:#?}"
    );

    set_soft_limit(squeezed.pid(), None);
    let answer = ask_direct(&client, &squeezed, json!({"task_id": "after"}))
        .await
        .unwrap();
    assert_eq!(answer["collector_id"], squeezed.id.as_str(), "{answer}");
    assert_eq!(answer["status"], "ok", "{answer}");
}
