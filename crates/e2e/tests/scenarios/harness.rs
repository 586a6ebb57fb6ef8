//! The harness itself: what it leaves behind when a scenario panics, and when
//! it ends normally.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use e2e::ClusterExt as _;
use e2e::{Cluster, CollectorBuilder, CollectorKind, History, RunOptions, task_ids};

use super::{alive, assert_clean};

/// What a scenario saw of its cluster before it ended.
#[derive(Debug, Clone)]
struct Remains {
    pids: Vec<u32>,
    socket: PathBuf,
    dir: PathBuf,
}

/// Proves that a panic inside a scenario still kills and reaps the broker and
/// every collector (no pid is left, not even a zombie) and removes the socket
/// file, while the cluster directory is kept with the logs for the post-mortem.
#[test]
fn a_panicking_scenario_leaves_no_process_and_no_socket() {
    let seen: Arc<Mutex<Option<Remains>>> = Arc::default();
    let record = seen.clone();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let cluster = Cluster::start().await;
            let process = cluster
                .add_collector(CollectorBuilder::new(CollectorKind::Process, 1))
                .await;
            let network = cluster
                .add_collector(CollectorBuilder::new(CollectorKind::Network, 1))
                .await;
            network.pause();
            *record.lock().unwrap() = Some(Remains {
                pids: vec![cluster.broker().pid(), process.pid(), network.pid()],
                socket: cluster.socket().to_owned(),
                dir: cluster.dir().to_owned(),
            });
            panic!("this scenario fails on purpose (harness self-test)");
        })
    }));
    assert!(outcome.is_err(), "the scenario panicked");
    let remains = seen.lock().unwrap().clone().expect("the cluster started");
    for pid in &remains.pids {
        assert!(!alive(*pid), "process {pid} outlived the panic");
    }
    assert!(
        !remains.socket.exists(),
        "socket {} left behind",
        remains.socket.display()
    );
    assert!(
        remains.dir.join("broker.stderr.log").is_file(),
        "logs kept in {}",
        remains.dir.display()
    );
    std::fs::remove_dir_all(&remains.dir).expect("remove the kept directory");
}

/// Proves that a scenario that ends normally, with a collector crashed on
/// purpose on the way, leaves nothing behind: no broker or collector process,
/// no socket file, no temporary directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_scenario_leaves_no_process_socket_or_directory() {
    let remains = {
        let cluster = Cluster::start().await;
        let procmond = cluster
            .add_collector(CollectorBuilder::new(CollectorKind::Process, 1))
            .await;
        let mut fsmond = cluster
            .add_collector(CollectorBuilder::new(CollectorKind::Filesystem, 1))
            .await;
        let driver = cluster.driver().await;
        let history = History::new();
        for kind in [CollectorKind::Process, CollectorKind::Filesystem] {
            let ids = task_ids(&format!("cleanup-{kind}"), 5);
            let report = driver
                .run_tasks(kind, ids, RunOptions::default(), &history)
                .await;
            assert!(report.failures.is_empty(), "{:?}", report.failures);
        }
        assert_clean(&history.check(e2e::Order::Any));
        let remains = Remains {
            pids: vec![cluster.broker().pid(), procmond.pid(), fsmond.pid()],
            socket: cluster.socket().to_owned(),
            dir: cluster.dir().to_owned(),
        };
        assert!(remains.socket.exists(), "the broker listens");
        fsmond.kill();
        remains
    };
    for pid in &remains.pids {
        assert!(!alive(*pid), "process {pid} left behind");
    }
    assert!(!remains.socket.exists(), "socket left behind");
    assert!(!remains.dir.exists(), "directory left behind");
}
