//! The fleet harness's own guarantees: namespaces are made and always torn
//! down, hosts reach the NATS cluster over their own links, a partition cuts
//! a host off and a heal brings it back, the cluster serves on when a server
//! dies, and the loopback fallback's proxies cut a NATS connection too.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use e2e::fleet::nemesis::{self, FleetFault, FleetSchedule};
use e2e::fleet::{FleetBuilder, FleetMode, nats_connect, network_or_skip};
use eventbus_harness::{DEADLINE, NatsCluster, Placement, TcpFaultProxy, wait_until};

/// How long a connection attempt that must fail is given.
const CUT: Duration = Duration::from_millis(300);

fn netns_list() -> String {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether `addr` answers as a NATS server from inside `host` (its `INFO` line).
fn speaks_nats(host: &eventbus_harness::Host, addr: SocketAddr) -> bool {
    host.enter(|| {
        use std::io::Read as _;
        let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, CUT) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(CUT));
        let mut head = [0u8; 4];
        stream.read_exact(&mut head).is_ok() && &head == b"INFO"
    })
    .unwrap_or(false)
}

#[test]
fn namespaces_are_made_and_torn_down() {
    let Some(network) = network_or_skip(&["a", "b"]) else {
        return;
    };
    let (a, b) = (network.host("a").clone(), network.host("b").clone());
    let bridge = network.bridge().to_owned();
    let list = netns_list();
    assert!(
        list.contains(a.netns()) && list.contains(b.netns()),
        "{list}"
    );
    assert!(link_exists(&bridge) && link_exists(a.link()));
    // A listener inside b, reached from inside a over the bridge.
    let listener = b
        .enter(|| std::net::TcpListener::bind((b.ip(), 0)).unwrap())
        .unwrap();
    let addr = listener.local_addr().unwrap();
    assert!(a.can_connect(addr, DEADLINE));
    drop(network);
    let list = netns_list();
    assert!(
        !list.contains(a.netns()) && !list.contains(b.netns()),
        "{list}"
    );
    assert!(!link_exists(&bridge) && !link_exists(a.link()));
}

#[test]
fn a_panicking_test_leaves_no_namespace_behind() {
    let made = std::sync::Mutex::new(None);
    let panicked = std::panic::catch_unwind(|| {
        let Some(network) = network_or_skip(&["x"]) else {
            return;
        };
        *made.lock().unwrap() = Some((
            network.host("x").netns().to_owned(),
            network.bridge().to_owned(),
        ));
        panic!("a test fails with its network up");
    });
    let Some((netns, bridge)) = made.into_inner().unwrap() else {
        return;
    };
    assert!(panicked.is_err());
    assert!(!netns_list().contains(&netns));
    assert!(!link_exists(&bridge));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_cuts_a_host_off_the_nats_cluster_and_a_heal_restores_it() {
    let Some(network) = network_or_skip(&["nats1", "nats2", "nats3", "node1"]) else {
        return;
    };
    let placements: Vec<Placement> = network.hosts()[..3]
        .iter()
        .cloned()
        .map(Placement::Host)
        .collect();
    let nats = NatsCluster::start(&placements).await;
    let node = network.host("node1").clone();
    for server in nats.servers() {
        assert!(
            speaks_nats(&node, server.client_addr()),
            "{} unreachable from node1",
            server.name()
        );
    }
    node.partition().unwrap();
    for server in nats.servers() {
        assert!(
            !node.can_connect(server.client_addr(), CUT),
            "{} reachable across a partition",
            server.name()
        );
    }
    // The cluster itself is untouched.
    nats.wait_serving(DEADLINE).await;
    node.heal().unwrap();
    let first = nats.servers()[0].client_addr();
    wait_until("node1 reaches nats again", DEADLINE, || async {
        speaks_nats(&node, first)
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_serves_on_when_one_server_is_killed() {
    let mut nats = NatsCluster::loopback(3).await;
    let urls = nats.urls();
    // A subscriber on n2, a publisher that knows all three and starts on n1.
    let subscriber = nats_connect(&urls[1..2]).await;
    let mut sub = subscriber.subscribe("fleet.check").await.unwrap();
    subscriber.flush().await.unwrap();
    let publisher = nats_connect(&urls).await;
    // Routes propagate the interest asynchronously: publish until one arrives.
    let arrived = async {
        use futures_util::StreamExt as _;
        loop {
            publisher
                .publish("fleet.check", "before".into())
                .await
                .unwrap();
            publisher.flush().await.unwrap();
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(100), sub.next()).await
            {
                return m;
            }
        }
    };
    let first = tokio::time::timeout(DEADLINE, arrived)
        .await
        .expect("delivered across routes");
    assert_eq!(&first.payload[..], b"before");
    nats.server_mut(0).kill();
    let alive: Vec<_> = nats.servers()[1..].iter().collect();
    wait_until("the two survivors serve", DEADLINE, || async {
        alive.iter().all(|s| s.healthy())
    })
    .await
    .unwrap();
    publisher
        .publish("fleet.check", "after".into())
        .await
        .unwrap();
    publisher.flush().await.unwrap();
    let next = loop {
        use futures_util::StreamExt as _;
        let m = tokio::time::timeout(DEADLINE, sub.next())
            .await
            .unwrap()
            .unwrap();
        if &m.payload[..] != b"before" {
            break m;
        }
    };
    assert_eq!(&next.payload[..], b"after");
    nats.server_mut(0).restart().await;
    nats.wait_serving(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_proxy_partition_stalls_a_nats_connection_until_the_heal() {
    use futures_util::StreamExt as _;
    let nats = NatsCluster::loopback(1).await;
    let proxy = TcpFaultProxy::start(nats.servers()[0].client_addr())
        .await
        .unwrap();
    let client = nats_connect(&[format!("nats://{}", proxy.addr())]).await;
    let mut echo = client.subscribe("fleet.echo").await.unwrap();
    // A message that comes back proves the round trip through the proxy.
    client.publish("fleet.echo", "open".into()).await.unwrap();
    let open = tokio::time::timeout(DEADLINE, echo.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&open.payload[..], b"open");
    proxy.partition();
    client.publish("fleet.echo", "held".into()).await.unwrap();
    client.flush().await.unwrap();
    assert!(
        tokio::time::timeout(CUT, echo.next()).await.is_err(),
        "a message crossed the partition"
    );
    proxy.heal();
    let held = tokio::time::timeout(DEADLINE, echo.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&held.payload[..], b"held");
}

/// The network namespace a process is in (`/proc/<pid>/ns/net`).
fn netns_of(pid: u32) -> std::path::PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_runs_each_broker_on_its_host_and_the_nemesis_cuts_and_heals_in_order() {
    if network_or_skip(&["probe"]).is_none() {
        return;
    }
    let mut fleet = FleetBuilder::new()
        .nodes(2)
        .mode(FleetMode::Netns)
        .start()
        .await;
    assert_eq!(fleet.mode(), FleetMode::Netns);
    let here = netns_of(std::process::id());
    let mut seen = Vec::new();
    for node in fleet.nodes() {
        let broker = netns_of(node.cluster().broker().pid());
        assert_ne!(
            broker,
            here,
            "{}'s broker runs in the root namespace",
            node.name()
        );
        assert!(!seen.contains(&broker), "two nodes share a namespace");
        seen.push(broker);
        // Its local bus works, from the test, over its Unix socket.
        node.cluster().client("probe").await.stats().await.unwrap();
    }
    let server = fleet.nats().servers()[0].client_addr();
    let schedule = FleetSchedule::new(1)
        .fault(
            Duration::ZERO,
            Duration::from_millis(400),
            FleetFault::Partition(0),
        )
        .fault(
            Duration::from_millis(100),
            Duration::from_millis(200),
            FleetFault::KillNats(2),
        );
    let node1 = fleet.node(0).host().unwrap().clone();
    let start = tokio::time::Instant::now();
    let cut_off = async {
        wait_until("node1 is cut off", DEADLINE, || async {
            !node1.can_connect(server, CUT)
        })
        .await
    };
    let (log, cut_off) = tokio::join!(nemesis::run(&schedule, start, &mut fleet), cut_off);
    cut_off.unwrap();
    let lines = nemesis::log_lines(&log);
    assert_eq!(log.len(), 4, "{lines:#?}");
    assert!(lines.iter().all(|l| !l.contains("FAILED")), "{lines:#?}");
    assert!(
        lines[0].contains("partitioned node1") && lines[3].contains("healed node1"),
        "{lines:#?}"
    );
    fleet.nats().wait_serving(DEADLINE).await;
    wait_until("node1 reaches nats again", DEADLINE, || async {
        speaks_nats(&node1, server)
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_fleet_partitions_a_node_in_its_proxies() {
    use futures_util::StreamExt as _;
    let fleet = FleetBuilder::new()
        .nodes(1)
        .nats_servers(1)
        .mode(FleetMode::Loopback)
        .start()
        .await;
    assert_eq!(fleet.mode(), FleetMode::Loopback);
    let node = fleet.node(0);
    assert!(node.host().is_none());
    let direct = fleet.nats().servers()[0].url();
    assert!(
        !node.nats_urls().contains(&direct),
        "the node must go through its proxy"
    );
    let client = nats_connect(node.nats_urls()).await;
    let mut echo = client.subscribe("fleet.echo").await.unwrap();
    client.publish("fleet.echo", "open".into()).await.unwrap();
    tokio::time::timeout(DEADLINE, echo.next())
        .await
        .unwrap()
        .unwrap();
    node.partition().unwrap();
    client.publish("fleet.echo", "held".into()).await.unwrap();
    client.flush().await.unwrap();
    assert!(
        tokio::time::timeout(CUT, echo.next()).await.is_err(),
        "a message crossed the partition"
    );
    node.heal().unwrap();
    let held = tokio::time::timeout(DEADLINE, echo.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&held.payload[..], b"held");
}

/// A schedule of one action, now.
fn now(action: nemesis::Action) -> FleetSchedule {
    FleetSchedule {
        seed: 0,
        steps: vec![nemesis::Step {
            at: Duration::ZERO,
            action,
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nemesis_degrades_a_link_kills_a_node_and_pauses_a_server_and_heals_each() {
    use nemesis::Action::{Heal, Inject};
    if network_or_skip(&["probe"]).is_none() {
        return;
    }
    let mut fleet = FleetBuilder::new()
        .nodes(1)
        .nats_servers(1)
        .mode(FleetMode::Netns)
        .start()
        .await;
    let server = fleet.nats().servers()[0].client_addr();
    let node = fleet.node(0).host().unwrap().clone();
    let mut log = Vec::new();
    let mut apply = async |fleet: &mut e2e::fleet::Fleet, action| {
        let applied = nemesis::run(&now(action), tokio::time::Instant::now(), fleet).await;
        log.extend(nemesis::log_lines(&applied));
    };

    // 100 ms each way: a TCP handshake from the node takes at least 200 ms.
    let netem = eventbus_harness::Netem {
        delay: Duration::from_millis(100),
        ..Default::default()
    };
    let slow = FleetFault::Netem { node: 0, netem };
    let handshake = |node: &eventbus_harness::Host| {
        node.enter(|| {
            let start = std::time::Instant::now();
            std::net::TcpStream::connect_timeout(&server, DEADLINE).map(|_| start.elapsed())
        })
        .unwrap()
        .unwrap()
    };
    // Netem needs the kernel's sch_netem, which some VMs lack: then the
    // nemesis logs the fault as FAILED, with the reason.
    match node.set_netem(netem) {
        Err(eventbus_harness::NetnsError::NetemUnavailable { why }) => {
            println!("WARNING: SKIPPED the netem part: {why}");
        }
        other => {
            other.unwrap();
            node.clear_netem().unwrap();
            apply(&mut fleet, Inject(slow)).await;
            assert!(handshake(&node) >= Duration::from_millis(200));
            apply(&mut fleet, Heal(slow)).await;
            assert!(handshake(&node) < Duration::from_millis(200));
        }
    }

    let before = fleet.node(0).cluster().broker().pid();
    apply(&mut fleet, Inject(FleetFault::KillNode(0))).await;
    assert!(
        fleet
            .node_mut(0)
            .cluster_mut()
            .broker_mut()
            .try_exit()
            .is_some()
    );
    apply(&mut fleet, Heal(FleetFault::KillNode(0))).await;
    assert_ne!(fleet.node(0).cluster().broker().pid(), before);
    fleet
        .node(0)
        .cluster()
        .client("after")
        .await
        .stats()
        .await
        .unwrap();

    apply(&mut fleet, Inject(FleetFault::PauseNats(0))).await;
    assert!(
        !fleet.nats().servers()[0].healthy(),
        "a frozen server answered"
    );
    apply(&mut fleet, Heal(FleetFault::PauseNats(0))).await;
    fleet.nats().wait_serving(DEADLINE).await;

    assert!(log.len() == 4 || log.len() == 6, "{log:#?}");
    assert!(log.iter().all(|l| !l.contains("FAILED")), "{log:#?}");
}
