//! A [`Node`] of a fleet: a host with its own broker, bridge and collectors,
//! and the link its NATS traffic crosses.

use std::path::{Path, PathBuf};

use eventbus_harness::{
    Cluster, Host, Netem, NetnsError, Process, ProcessBuilder, Ready, TcpFaultProxy,
};

use super::bridge::{BridgeConfig, bridge_bin};
use crate::collector::{ClusterExt as _, CollectorBuilder, CollectorProcess};

/// The link between a node and the NATS servers.
#[derive(Debug)]
pub(super) enum Link {
    /// A network namespace: its own veth link.
    Host(Host),
    /// Loopback: a TCP fault proxy per NATS server.
    Proxies(Vec<TcpFaultProxy>),
}

/// One node: a broker in a directory of its own (its Unix socket in it), the
/// processes around it, and its link. The broker, bridge and collectors run
/// inside the node's namespace in `netns` mode.
#[derive(Debug)]
pub struct Node {
    name: String,
    /// Processes first: dropped before the broker they talk to.
    bridge: Option<Process>,
    collectors: Vec<CollectorProcess>,
    cluster: Cluster,
    pub(super) link: Link,
    /// The NATS URLs as this node sees them (proxies in loopback mode).
    nats_urls: Vec<String>,
    /// The bridge binary, when not the workspace's.
    bridge_bin: Option<PathBuf>,
}

impl Node {
    pub(super) fn new(name: String, cluster: Cluster, link: Link, nats_urls: Vec<String>) -> Self {
        Self {
            name,
            bridge: None,
            collectors: Vec::new(),
            cluster,
            link,
            nats_urls,
            bridge_bin: None,
        }
    }

    pub(super) fn with_bridge_bin(mut self, bin: Option<PathBuf>) -> Self {
        self.bridge_bin = bin;
        self
    }

    /// The bridge binary this node's next [`start_bridge`](Self::start_bridge)
    /// runs: another build, or a wrapper that runs one (a profiler's).
    pub fn set_bridge_bin(&mut self, bin: impl Into<PathBuf>) {
        self.bridge_bin = Some(bin.into());
    }

    /// Its name (`node1`, ...): also its bridge's origin name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its broker and directory.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Its broker and directory, for broker faults.
    pub fn cluster_mut(&mut self) -> &mut Cluster {
        &mut self.cluster
    }

    /// Its namespace, in `netns` mode.
    pub fn host(&self) -> Option<&Host> {
        match &self.link {
            Link::Host(host) => Some(host),
            Link::Proxies(_) => None,
        }
    }

    /// The NATS servers' URLs as this node reaches them.
    pub fn nats_urls(&self) -> &[String] {
        &self.nats_urls
    }

    /// A bridge configuration for this node: its socket, name and NATS URLs, no rules.
    pub fn bridge_config(&self) -> BridgeConfig {
        BridgeConfig::new(&self.name, self.cluster.socket(), self.nats_urls.clone())
    }

    /// Runs `process` on this node (inside its namespace in `netns` mode).
    pub fn wrap(&self, process: ProcessBuilder) -> ProcessBuilder {
        match &self.link {
            Link::Host(host) => host.wrap(process),
            Link::Proxies(_) => process,
        }
    }

    /// Writes `config` to the node's directory and starts the bridge with it,
    /// waiting for its ready line. Panics, with its logs, if it does not start.
    pub async fn start_bridge(&mut self, config: &BridgeConfig) -> &Process {
        let path = self.cluster.dir().join("bridge.toml");
        std::fs::write(&path, config.to_toml())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        let bin = self.bridge_bin.clone().unwrap_or_else(bridge_bin);
        let command = ProcessBuilder::new(format!("bridge-{}", self.name), bin)
            .arg("--config")
            .arg(&path)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .ready(Ready::JsonLine);
        let command = self.wrap(command);
        let bridge = self.cluster.spawn(command).await;
        self.bridge.insert(bridge)
    }

    /// The bridge, once started.
    pub fn bridge(&self) -> Option<&Process> {
        self.bridge.as_ref()
    }

    /// The bridge, for faults.
    pub fn bridge_mut(&mut self) -> Option<&mut Process> {
        self.bridge.as_mut()
    }

    /// Starts a collector on this node and waits for its ready line.
    pub async fn add_collector(&mut self, collector: CollectorBuilder) -> &mut CollectorProcess {
        let collector = match &self.link {
            Link::Host(host) => collector.wrap_in("ip", ["netns", "exec", host.netns()]),
            Link::Proxies(_) => collector,
        };
        let started = self.cluster.add_collector(collector).await;
        self.collectors.push(started);
        self.collectors.last_mut().expect("just pushed")
    }

    /// Its collectors.
    pub fn collectors(&self) -> &[CollectorProcess] {
        &self.collectors
    }

    /// Cuts the node off NATS: its link goes down (`netns`), or its proxies
    /// hold every byte (loopback).
    pub fn partition(&self) -> Result<(), NetnsError> {
        match &self.link {
            Link::Host(host) => host.partition(),
            Link::Proxies(proxies) => {
                proxies.iter().for_each(TcpFaultProxy::partition);
                Ok(())
            }
        }
    }

    /// Ends a [`partition`](Self::partition).
    pub fn heal(&self) -> Result<(), NetnsError> {
        match &self.link {
            Link::Host(host) => host.heal(),
            Link::Proxies(proxies) => {
                proxies.iter().for_each(TcpFaultProxy::heal);
                Ok(())
            }
        }
    }

    /// Degrades the node's link with `tc netem`; in loopback mode only its
    /// delay is applied (by the proxies; loss and reordering need a real link).
    pub fn set_netem(&self, netem: Netem) -> Result<(), NetnsError> {
        match &self.link {
            Link::Host(host) => host.set_netem(netem),
            Link::Proxies(proxies) => {
                proxies.iter().for_each(|p| p.set_delay(netem.delay));
                Ok(())
            }
        }
    }

    /// Removes the [`set_netem`](Self::set_netem) degradation.
    pub fn clear_netem(&self) -> Result<(), NetnsError> {
        match &self.link {
            Link::Host(host) => host.clear_netem(),
            Link::Proxies(proxies) => {
                proxies
                    .iter()
                    .for_each(|p| p.set_delay(std::time::Duration::ZERO));
                Ok(())
            }
        }
    }

    /// SIGKILL to everything on the node: bridge, collectors, broker (a host
    /// lost). Each is reaped; [`restart`](Self::restart) brings them back.
    pub fn kill(&mut self) {
        if let Some(bridge) = &mut self.bridge {
            bridge.kill();
        }
        for c in &mut self.collectors {
            c.kill();
        }
        self.cluster.broker_mut().kill();
    }

    /// Starts everything [`kill`](Self::kill) stopped again: the broker
    /// first, then the collectors and the bridge, each awaited.
    pub async fn restart(&mut self) {
        let broker = self.cluster.broker_mut();
        if broker.try_exit().is_none() {
            broker.kill();
        }
        broker.restart().await;
        for c in &mut self.collectors {
            if c.try_exit().is_none() {
                c.kill();
            }
            c.restart().await;
        }
        if let Some(bridge) = &mut self.bridge {
            if bridge.try_exit().is_none() {
                bridge.kill();
            }
            bridge.restart().await.unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// Its directory: sockets, configs, logs.
    pub fn dir(&self) -> &Path {
        self.cluster.dir()
    }
}
