//! [`NatsCluster`]: a cluster of real `nats-server` processes with routes
//! between them and JetStream on (a store directory each), for testing what
//! talks to NATS: started on free loopback ports, or each inside a
//! [`Host`](crate::netns::Host) of a network on the standard ports; awaited
//! until every server answers `/healthz` and has a route to every other;
//! killed, paused, resumed or restarted one at a time; reaped on drop.
//!
//! The servers do not advertise their client URLs to clients
//! (`cluster.no_advertise`): a client reconnects only to the addresses it
//! was given, so a proxy or a partition in front of it is never bypassed.
//!
//! The binary is found like a lone [`NatsServer`](crate::NatsServer)'s
//! ([`find_nats_server`](crate::find_nats_server)). For one server without
//! routes or namespaces, that type is simpler.

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use tempfile::TempDir;

use crate::process::{Process, ProcessBuilder, Ready};
use crate::wait::{DEADLINE, wait_until};

/// How long one `/healthz` or `/routez` probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// The largest monitoring answer read.
const PROBE_MAX_BYTES: u64 = 1 << 20;

/// Where a server runs.
#[derive(Debug, Clone)]
pub enum Placement {
    /// On this host's loopback, on free ports.
    Loopback,
    /// Inside a network namespace, on its address and the standard ports
    /// (4222 clients, 6222 routes, 8222 monitoring).
    #[cfg(target_os = "linux")]
    Host(crate::netns::Host),
}

/// One server of a [`NatsCluster`].
#[derive(Debug)]
pub struct ClusterServer {
    name: String,
    client: SocketAddr,
    monitor: SocketAddr,
    process: Process,
}

impl ClusterServer {
    /// Its `server_name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where clients connect.
    pub fn client_addr(&self) -> SocketAddr {
        self.client
    }

    /// `nats://<client address>`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.client)
    }

    /// Its monitoring (HTTP) address.
    pub fn monitor_addr(&self) -> SocketAddr {
        self.monitor
    }

    /// The process, for its pid and logs.
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// SIGKILL and reap: the server crashes.
    pub fn kill(&mut self) -> ExitStatus {
        self.process.kill()
    }

    /// SIGSTOP: the server freezes with its sockets open.
    #[cfg(unix)]
    pub fn pause(&self) {
        self.process.pause();
    }

    /// SIGCONT after [`pause`](Self::pause).
    #[cfg(unix)]
    pub fn resume(&self) {
        self.process.resume();
    }

    /// Whether `/healthz` answers 200 now.
    pub fn healthy(&self) -> bool {
        http_get(self.monitor, "/healthz").is_ok_and(|(status, _)| status == 200)
    }

    /// How many routes it has now (`/routez`), if it answers.
    pub fn routes(&self) -> Option<u64> {
        let (status, body) = http_get(self.monitor, "/routez").ok()?;
        let json: serde_json::Value = serde_json::from_str(&body).ok().filter(|_| status == 200)?;
        json["num_routes"].as_u64()
    }

    /// Kills it if it runs, starts it again with the same config, store and
    /// ports, and waits until it serves. Panics, with its logs, if it does not.
    pub async fn restart(&mut self) {
        if self.process.try_exit().is_none() {
            self.process.kill();
        }
        self.process
            .restart()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let what = format!("{} answers /healthz after its restart", self.name);
        if let Err(e) = wait_until(&what, DEADLINE, || async { self.healthy() }).await {
            self.process.fail(&e.to_string());
        }
    }
}

/// Servers with routes to each other, JetStream on. Killed and reaped on
/// drop; their directory (configs, stores, logs) is removed, or kept and
/// printed when the test panics.
#[derive(Debug)]
pub struct NatsCluster {
    servers: Vec<ClusterServer>,
    dir: Option<TempDir>,
}

impl NatsCluster {
    /// `n` servers on loopback. Panics, with the logs, if they do not serve.
    pub async fn loopback(n: usize) -> Self {
        Self::start(&vec![Placement::Loopback; n]).await
    }

    /// One server per placement, named `n1`, `n2`, ...; waits until each
    /// answers `/healthz` and has a route to every other. Panics, with the
    /// logs, if they do not.
    pub async fn start(placements: &[Placement]) -> Self {
        let bin = crate::nats::find_nats_server().unwrap_or_else(|| {
            panic!("nats-server not found: set $NATS_SERVER, or apt-get install nats-server")
        });
        let dir = crate::embedded::short_temp_dir();
        let specs = specs(placements);
        let routes: Vec<String> = specs
            .iter()
            .map(|s| format!("nats-route://{}", s.route))
            .collect();
        let cluster_name = format!("eb{}", std::process::id());
        let mut servers = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let others: Vec<&String> = routes
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, r)| r)
                .collect();
            let config =
                server_config(&name, spec, &cluster_name, &others, &dir.path().join(&name));
            let config_path = dir.path().join(format!("{name}.conf"));
            std::fs::write(&config_path, config)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", config_path.display()));
            let monitor = spec.monitor;
            // Serving needs a JetStream quorum: each process is started once
            // its monitoring port accepts, then all are awaited together.
            let command = ProcessBuilder::new(&name, &bin)
                .args(["--config".as_ref(), config_path.as_os_str()])
                .logs_in(dir.path())
                .ready(Ready::probe(move || {
                    TcpStream::connect_timeout(&monitor, PROBE_TIMEOUT).is_ok()
                }));
            #[cfg(target_os = "linux")]
            let command = match &placements[i] {
                Placement::Host(host) => host.wrap(command),
                Placement::Loopback => command,
            };
            let process = match command.start().await {
                Ok(process) => process,
                Err(e) => panic!(
                    "{e}\n(nats cluster directory kept: {})",
                    dir.keep().display()
                ),
            };
            servers.push(ClusterServer {
                name,
                client: spec.client,
                monitor,
                process,
            });
        }
        let cluster = Self {
            servers,
            dir: Some(dir),
        };
        cluster.wait_serving(DEADLINE).await;
        cluster
    }

    /// Waits until every running server answers `/healthz` and has a route
    /// to every other running one. Panics, with the first server's logs, past
    /// `deadline`.
    pub async fn wait_serving(&self, deadline: Duration) {
        let want = self.servers.len() as u64 - 1;
        let done = wait_until(
            "every nats-server is healthy and routed",
            deadline,
            || async {
                self.servers
                    .iter()
                    .all(|s| s.healthy() && s.routes().is_some_and(|r| r >= want))
            },
        )
        .await;
        if let Err(e) = done {
            let mut why = e.to_string();
            for s in &self.servers {
                let _ = write!(
                    why,
                    "\n  {}: healthy {} routes {:?}",
                    s.name,
                    s.healthy(),
                    s.routes()
                );
            }
            self.servers[0].process.fail(&why);
        }
    }

    /// The servers, `n1` first.
    pub fn servers(&self) -> &[ClusterServer] {
        &self.servers
    }

    /// Server `i` (0-based), for faults.
    pub fn server_mut(&mut self, i: usize) -> &mut ClusterServer {
        &mut self.servers[i]
    }

    /// Every server's client URL.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(ClusterServer::url).collect()
    }

    /// The directory with configs, stores and logs.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("kept until drop").path()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for server in &mut self.servers {
            server.process.kill();
        }
        let Some(dir) = self.dir.take() else { return };
        if std::thread::panicking() {
            eprintln!(
                "eventbus-harness: test failed; nats cluster directory kept: {}",
                dir.keep().display()
            );
        }
    }
}

/// A server's three addresses.
struct Spec {
    client: SocketAddr,
    route: SocketAddr,
    monitor: SocketAddr,
}

fn specs(placements: &[Placement]) -> Vec<Spec> {
    // Every loopback port is held until all are chosen, so none repeats.
    let mut held = Vec::new();
    let mut port = |ip: IpAddr| {
        let listener = TcpListener::bind((ip, 0)).expect("bind a free loopback port");
        let addr = listener.local_addr().expect("a bound address");
        held.push(listener);
        addr
    };
    placements
        .iter()
        .map(|placement| match placement {
            Placement::Loopback => {
                let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
                Spec {
                    client: port(ip),
                    route: port(ip),
                    monitor: port(ip),
                }
            }
            #[cfg(target_os = "linux")]
            Placement::Host(host) => {
                let ip = IpAddr::V4(host.ip());
                Spec {
                    client: SocketAddr::new(ip, 4222),
                    route: SocketAddr::new(ip, 6222),
                    monitor: SocketAddr::new(ip, 8222),
                }
            }
        })
        .collect()
}

/// A server's config file. A lone server has no cluster block: clustered
/// JetStream refuses to start without routes.
fn server_config(
    name: &str,
    spec: &Spec,
    cluster: &str,
    routes: &[&String],
    store: &Path,
) -> String {
    let mut config = format!(
        "server_name: \"{name}\"\n\
         listen: \"{client}\"\n\
         http: \"{monitor}\"\n\
         jetstream {{\n  store_dir: \"{store}\"\n  max_memory_store: 256MB\n  max_file_store: 1GB\n}}\n",
        client = spec.client,
        monitor = spec.monitor,
        store = store.display(),
    );
    if !routes.is_empty() {
        let routes: Vec<String> = routes.iter().map(|r| format!("\"{r}\"")).collect();
        let _ = write!(
            config,
            "cluster {{\n  name: \"{cluster}\"\n  listen: \"{route}\"\n  no_advertise: true\n  routes: [{routes}]\n}}\n",
            route = spec.route,
            routes = routes.join(", "),
        );
    }
    config
}

/// `GET path` on a monitoring port: the status code and the body.
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.take(PROBE_MAX_BYTES).read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("");
    Ok((status, body.to_owned()))
}
