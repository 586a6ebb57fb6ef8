//! The brokers measured side by side: eventbus's own, and the peers
//! (nats-server, redis-server, mosquitto) when the suite is given their
//! binaries and `peerbench`, which runs the same roles through each peer's
//! client. A [`Broker`] starts one, waits until it accepts connections, and
//! says how to run each role against it.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::suite::{Proc, SuiteArgs, command, start};

/// How long a peer server gets to accept connections.
const SERVER_START: Duration = Duration::from_secs(10);

/// One broker to measure.
#[derive(Debug, Clone)]
pub enum Broker {
    /// eventbus's broker binary; roles run as busbench.
    Bus(PathBuf),
    /// A peer server; roles run as peerbench.
    Peer {
        /// Which one.
        kind: PeerKind,
        /// Its server binary.
        server: PathBuf,
        /// The peerbench binary.
        bench: PathBuf,
    },
}

/// The peers `peerbench` speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKind {
    Nats,
    Redis,
    Mosquitto,
}

impl PeerKind {
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Nats => "nats-server",
            Self::Redis => "redis",
            Self::Mosquitto => "mosquitto",
        }
    }

    /// peerbench's `--peer` value.
    fn flag(self) -> &'static str {
        match self {
            Self::Nats => "nats",
            Self::Redis => "redis",
            Self::Mosquitto => "mqtt",
        }
    }
}

/// A running broker: its process, pid, and how roles reach it.
pub struct Started {
    /// Held to be killed and reaped when this is dropped.
    _proc: Proc,
    /// For its RSS.
    pub pid: u64,
    program: PathBuf,
    target: Vec<String>,
    bus: bool,
}

impl Started {
    /// The program and arguments of `role` against this broker, `extra`
    /// after them.
    pub fn role(&self, role: &str, extra: &[&str]) -> (PathBuf, Vec<String>) {
        let mut args = vec![role.to_owned()];
        args.extend(self.target.iter().cloned());
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        (self.program.clone(), args)
    }

    /// Whether this is eventbus (some roles take bus-only options).
    pub fn is_bus(&self) -> bool {
        self.bus
    }
}

impl Broker {
    /// The name in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Bus(_) => "eventbus",
            Self::Peer { kind, .. } => kind.name(),
        }
    }

    /// Starts it in `dir` (pinned to CPU 0 or not) and waits until it
    /// accepts connections.
    pub fn start(&self, dir: &Path, pinned: bool) -> anyhow::Result<Started> {
        let me = std::env::current_exe()?;
        std::fs::create_dir_all(dir)?;
        match self {
            Self::Bus(broker) => {
                let sock = dir.join("bus.sock").to_string_lossy().into_owned();
                let (proc, ready) = start(pinned, broker, &["--socket", &sock])?;
                let pid = ready["pid"].as_u64().context("pid")?;
                Ok(Started {
                    _proc: proc,
                    pid,
                    program: me,
                    target: vec!["--socket".into(), sock],
                    bus: true,
                })
            }
            Self::Peer {
                kind,
                server,
                bench,
            } => {
                let (args, addr) = server_args(*kind, dir)?;
                let child = command(pinned, server, &args)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .with_context(|| format!("starting {}", server.display()))?;
                let pid = u64::from(child.id());
                let proc = Proc(child);
                wait_accepting(*kind, &addr)?;
                Ok(Started {
                    _proc: proc,
                    pid,
                    program: bench.clone(),
                    target: vec!["--peer".into(), kind.flag().into(), "--addr".into(), addr],
                    bus: false,
                })
            }
        }
    }
}

/// The server's command line in `dir`, and the address roles connect to.
fn server_args(kind: PeerKind, dir: &Path) -> anyhow::Result<(Vec<String>, String)> {
    Ok(match kind {
        PeerKind::Nats => {
            // No Unix socket listener: TCP loopback, on a port free a moment ago.
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let args = ["-a", "127.0.0.1", "-p", &port.to_string()].map(String::from);
            (args.to_vec(), format!("127.0.0.1:{port}"))
        }
        PeerKind::Redis => {
            let sock = dir.join("redis.sock").to_string_lossy().into_owned();
            let _ = std::fs::remove_file(&sock);
            let args = [
                "--port",
                "0",
                "--unixsocket",
                &sock,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                &dir.to_string_lossy(),
            ]
            .map(String::from);
            (args.to_vec(), sock)
        }
        PeerKind::Mosquitto => {
            let sock = dir.join("mqtt.sock").to_string_lossy().into_owned();
            let _ = std::fs::remove_file(&sock);
            let conf = dir.join("mosquitto.conf");
            // Run as root, mosquitto switches to its own user, which could
            // not bind in our private directory: `user root` keeps it ours.
            let user = if rustix::process::geteuid().is_root() {
                "user root\n"
            } else {
                ""
            };
            std::fs::write(
                &conf,
                format!("{user}listener 0 {sock}\nallow_anonymous true\n"),
            )?;
            (vec!["-c".into(), conf.to_string_lossy().into_owned()], sock)
        }
    })
}

/// Polls until the server accepts a connection, with a deadline.
pub fn wait_accepting(kind: PeerKind, addr: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + SERVER_START;
    loop {
        let up = match kind {
            PeerKind::Nats => std::net::TcpStream::connect(addr).is_ok(),
            PeerKind::Redis | PeerKind::Mosquitto => {
                std::os::unix::net::UnixStream::connect(addr).is_ok()
            }
        };
        if up {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not accept connections on {addr} within {SERVER_START:?}",
                kind.name()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every broker the suite measures: eventbus's, then each peer it was given.
pub fn brokers(args: &SuiteArgs) -> Vec<Broker> {
    let mut all = vec![Broker::Bus(args.broker.clone())];
    if let Some(bench) = &args.peerbench {
        for (kind, server) in [
            (PeerKind::Nats, &args.nats_server),
            (PeerKind::Redis, &args.redis_server),
            (PeerKind::Mosquitto, &args.mosquitto),
        ] {
            if let Some(server) = server {
                all.push(Broker::Peer {
                    kind,
                    server: server.clone(),
                    bench: bench.clone(),
                });
            }
        }
    }
    all
}
