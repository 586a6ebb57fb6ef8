//! The fleet: several nodes, each a broker with its bridge and collectors on
//! a network host of its own, around a cluster of real `nats-server`s.
//!
//! ```text
//!   node1 (netns, 10.a.b.4)        node2 (10.a.b.5)        nats1..3 (netns, .1-.3)
//!   broker ◀─unix─▶ bridge ──veth──┐   ...                 ┌── nats-server n1 ◀─routes─▶ n2, n3
//!   collectors ◀─unix─▶ broker     └──── Linux bridge ─────┘   JetStream, store each
//! ```
//!
//! - [`node`]: a [`Node`] and its link; kill or partition a whole node.
//! - [`bridge`]: the bridge's config file and status, per the bridge contract.
//! - [`nemesis`]: seeded fault schedules across nodes (partitions, netem,
//!   nats-server kills and pauses, node kills, progressive failures), carried
//!   out on time and logged.
//!
//! Two modes ([`FleetMode`]): `netns`, every node and every NATS server in a
//! network namespace of its own (root and iproute2 needed), so each node's
//! NATS traffic crosses its own veth link, cut by link down and degraded by
//! `tc netem`; or the fallback `loopback`, everything on 127.0.0.1 with a
//! `TcpFaultProxy` (`eventbus_harness::TcpFaultProxy`) in front of each node's
//! connection to each server (partitions and delay only). `$EVENTBUS_FLEET_MODE`
//! (`netns`, `loopback`, default `auto`: netns when it can be made) chooses;
//! every fleet prints `figure: fleet mode = netns|loopback` for the report.
//!
//! **Invariant:** dropping a [`Fleet`] kills and reaps every process, then the
//! NATS servers, then deletes the namespaces, links and bridge, in that order
//! (a namespace lives while a process is in it), during a panic too.

pub mod bridge;
pub mod nemesis;
pub mod node;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use eventbus_harness::{
    BrokerBuilder, Cluster, NatsCluster, NetnsError, Network, Placement, TcpFaultProxy,
};

pub use bridge::{BridgeConfig, BridgeStatus, Export, Import, Mode, Overflow, Serve};
pub use node::Node;

/// The variable choosing the fleet mode: `netns`, `loopback` or `auto`.
pub const MODE_ENV: &str = "EVENTBUS_FLEET_MODE";

/// Where a fleet's nodes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetMode {
    /// Each node and NATS server in a network namespace with its own link.
    Netns,
    /// Everything on loopback, a TCP fault proxy on each node's NATS links.
    Loopback,
}

impl fmt::Display for FleetMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Netns => "netns",
            Self::Loopback => "loopback",
        })
    }
}

/// A network of `names`, or `None` (with a warning) when namespaces cannot be
/// made here, for tests that need namespaces. Under CI (`$CI` set) it panics
/// instead: CI runs as root with iproute2, so a missing namespace is a
/// broken machine, never a silent pass.
pub fn network_or_skip(names: &[&str]) -> Option<Network> {
    match Network::create(names) {
        Ok(network) => Some(network),
        Err(NetnsError::Unavailable { why }) if std::env::var_os("CI").is_none() => {
            eprintln!("WARNING: SKIPPED, network namespaces unavailable: {why}");
            None
        }
        Err(e) => panic!("cannot make a network: {e}"),
    }
}

/// A NATS client of `urls`, tried in order, that reconnects forever and
/// notices a silent server within about a second. Panics if none answers.
pub async fn nats_connect(urls: &[String]) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .retain_servers_order()
        .connection_timeout(Duration::from_secs(2))
        .ping_interval(Duration::from_millis(500))
        .max_reconnects(None)
        .connect(urls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to NATS at {urls:?}: {e}"))
}

/// Why a JetStream stream could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The request got no answer.
    #[error("no answer to creating stream {stream}: {source}")]
    Request {
        /// The stream.
        stream: String,
        /// Why.
        source: async_nats::RequestError,
    },
    /// JetStream refused it.
    #[error("JetStream refused stream {stream}: {answer}")]
    Refused {
        /// The stream.
        stream: String,
        /// Its answer.
        answer: String,
    },
}

/// Creates JetStream stream `name` on `subjects`, file-backed, with
/// `replicas` copies (3: it survives the loss of one server of three), as an
/// operator provisions it before the bridges run (they create a missing one
/// with their own defaults). Uses the JetStream API over core NATS.
pub async fn create_stream(
    client: &async_nats::Client,
    name: &str,
    subjects: &[&str],
    replicas: usize,
) -> Result<(), StreamError> {
    let config = serde_json::json!({
        "name": name,
        "subjects": subjects,
        "num_replicas": replicas,
        "storage": "file",
        "retention": "limits",
    });
    let answer = client
        .request(
            format!("$JS.API.STREAM.CREATE.{name}"),
            config.to_string().into(),
        )
        .await
        .map_err(|source| StreamError::Request {
            stream: name.to_owned(),
            source,
        })?;
    let json: serde_json::Value = serde_json::from_slice(&answer.payload).unwrap_or_default();
    if json.get("error").is_some() || json.get("config").is_none() {
        return Err(StreamError::Refused {
            stream: name.to_owned(),
            answer: String::from_utf8_lossy(&answer.payload).into_owned(),
        });
    }
    Ok(())
}

/// How to start a [`Fleet`].
#[derive(Debug, Clone)]
pub struct FleetBuilder {
    nodes: usize,
    nats_servers: usize,
    mode: Option<FleetMode>,
    broker_bin: Option<PathBuf>,
    bridge_bin: Option<PathBuf>,
}

impl Default for FleetBuilder {
    fn default() -> Self {
        Self {
            nodes: 3,
            nats_servers: 3,
            mode: None,
            broker_bin: None,
            bridge_bin: None,
        }
    }
}

impl FleetBuilder {
    /// Three nodes, three NATS servers, the mode of `$EVENTBUS_FLEET_MODE`.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many nodes (`node1`, ...).
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = n;
        self
    }

    /// How many NATS servers (`n1`, ...).
    pub fn nats_servers(mut self, n: usize) -> Self {
        self.nats_servers = n;
        self
    }

    /// This mode, whatever the environment says.
    pub fn mode(mut self, mode: FleetMode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// The `broker` binary [default: the workspace's, see
    /// [`binaries`](eventbus_harness::binaries)].
    pub fn broker_bin(mut self, path: impl Into<PathBuf>) -> Self {
        self.broker_bin = Some(path.into());
        self
    }

    /// The `eventbus-bridge` binary [default: [`bridge::bridge_bin`]].
    pub fn bridge_bin(mut self, path: impl Into<PathBuf>) -> Self {
        self.bridge_bin = Some(path.into());
        self
    }

    /// Starts the network (if any), the NATS cluster (awaited until it
    /// serves) and a broker per node; bridges and collectors are added per
    /// node. Panics, with the logs, if anything does not start.
    pub async fn start(self) -> Fleet {
        let (mode, network) = self.network();
        println!("figure: fleet mode = {mode}");
        let placements: Vec<Placement> = match &network {
            Some(network) => network.hosts()[..self.nats_servers]
                .iter()
                .cloned()
                .map(Placement::Host)
                .collect(),
            None => vec![Placement::Loopback; self.nats_servers],
        };
        let nats = NatsCluster::start(&placements).await;
        let mut nodes = Vec::with_capacity(self.nodes);
        for i in 0..self.nodes {
            let name = format!("node{}", i + 1);
            let node = match &network {
                Some(network) => {
                    let host = network.hosts()[self.nats_servers + i].clone();
                    let broker = self.broker().wrap_in("ip", ["netns", "exec", host.netns()]);
                    let cluster = Cluster::start_with(broker).await;
                    Node::new(name, cluster, node::Link::Host(host), nats.urls())
                }
                None => {
                    let mut proxies = Vec::with_capacity(nats.servers().len());
                    for server in nats.servers() {
                        let proxy = TcpFaultProxy::start(server.client_addr())
                            .await
                            .unwrap_or_else(|e| panic!("a TCP proxy for {}: {e}", server.name()));
                        proxies.push(proxy);
                    }
                    let urls = proxies
                        .iter()
                        .map(|p| format!("nats://{}", p.addr()))
                        .collect();
                    let cluster = Cluster::start_with(self.broker()).await;
                    Node::new(name, cluster, node::Link::Proxies(proxies), urls)
                }
            };
            nodes.push(node.with_bridge_bin(self.bridge_bin.clone()));
        }
        Fleet {
            nodes,
            nats,
            network,
            mode,
        }
    }

    fn broker(&self) -> BrokerBuilder {
        match &self.broker_bin {
            Some(bin) => BrokerBuilder::new().bin(bin),
            None => BrokerBuilder::new(),
        }
    }

    fn network(&self) -> (FleetMode, Option<Network>) {
        let wanted = std::env::var(MODE_ENV).unwrap_or_default();
        let wanted = self.mode.map(|m| m.to_string()).unwrap_or(wanted);
        if wanted == "loopback" {
            return (FleetMode::Loopback, None);
        }
        let names: Vec<String> = (1..=self.nats_servers)
            .map(|i| format!("nats{i}"))
            .chain((1..=self.nodes).map(|i| format!("node{i}")))
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        match Network::create(&names) {
            Ok(network) => (FleetMode::Netns, Some(network)),
            Err(e @ NetnsError::Unavailable { .. })
                if wanted != "netns" && std::env::var_os("CI").is_none() =>
            {
                println!("WARNING: fleet falls back to loopback: {e}");
                (FleetMode::Loopback, None)
            }
            Err(e) => panic!("cannot make the fleet's network ({MODE_ENV}={wanted:?}): {e}"),
        }
    }
}

/// Nodes, the NATS cluster, and the network they share.
#[derive(Debug)]
pub struct Fleet {
    /// Dropped first: every process of every node.
    nodes: Vec<Node>,
    /// Then the NATS servers.
    nats: NatsCluster,
    /// Last: namespaces, links, the bridge.
    network: Option<Network>,
    mode: FleetMode,
}

impl Fleet {
    /// Three nodes and three NATS servers.
    pub async fn start() -> Self {
        FleetBuilder::new().start().await
    }

    /// Which mode it runs in.
    pub fn mode(&self) -> FleetMode {
        self.mode
    }

    /// The nodes.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Node `i` (0-based: `node1` is 0).
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// Node `i`, for processes and faults.
    pub fn node_mut(&mut self, i: usize) -> &mut Node {
        &mut self.nodes[i]
    }

    /// The NATS cluster.
    pub fn nats(&self) -> &NatsCluster {
        &self.nats
    }

    /// The NATS cluster, for faults.
    pub fn nats_mut(&mut self) -> &mut NatsCluster {
        &mut self.nats
    }

    /// The network, in `netns` mode.
    pub fn network(&self) -> Option<&Network> {
        self.network.as_ref()
    }
}
