//! A `nats-server` as a supervised child process, for tests of code that
//! talks to NATS (the bridge): on a free loopback port, optionally with
//! JetStream storing in its own temporary directory; killed, restarted on
//! the same port and store, and reaped when dropped, like every
//! [`Process`].
//!
//! Where the binary is: `$NATS_SERVER`, else `nats-server` on the `PATH`,
//! else Debian's `/usr/sbin/nats-server` ([`find_nats_server`]). A test
//! that needs it calls [`NatsServer::start`], which panics with how to
//! install it when it is missing; `cargo xtask ci` leaves such tests out,
//! with a WARNING, outside CI (and fails in CI, where `.ci/run` installs
//! it).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;

use tempfile::TempDir;

use crate::process::{Process, ProcessBuilder, Ready};

/// Where `nats-server` is, if anywhere.
pub fn find_nats_server() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("nats-server"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let debian = PathBuf::from("/usr/sbin/nats-server");
        debian.is_file().then_some(debian)
    })
}

/// A free TCP port on loopback (bound, then released for the child).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().expect("bound").port()
}

/// A running `nats-server`.
pub struct NatsServer {
    process: Process,
    addr: SocketAddr,
    /// JetStream's store and the logs; removed on drop, after the process.
    _dir: TempDir,
}

impl NatsServer {
    /// Starts a core NATS server on a free loopback port.
    pub async fn start() -> Self {
        Self::start_with(false, None).await
    }

    /// Starts one with a configuration file holding `config` (nats-server's
    /// own format, e.g. `max_payload: 4096`), JetStream if `jetstream`.
    pub async fn start_configured(jetstream: bool, config: &str) -> Self {
        Self::start_with(jetstream, Some(config)).await
    }

    /// Starts a NATS server with JetStream (stored in a temporary
    /// directory that outlives restarts).
    pub async fn start_jetstream() -> Self {
        Self::start_with(true, None).await
    }

    async fn start_with(jetstream: bool, config: Option<&str>) -> Self {
        let bin = find_nats_server().unwrap_or_else(|| {
            panic!(
                "NATS TESTS CANNOT RUN: no `nats-server` (nor $NATS_SERVER). \
                 Install Debian's nats-server (`apt-get install nats-server`; .ci/run does), \
                 or run the gate without it: `cargo xtask ci` leaves these tests out, \
                 with a WARNING, when nats-server is missing outside CI."
            )
        });
        let dir = tempfile::tempdir().expect("a temp dir");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut builder = ProcessBuilder::new("nats-server", &bin)
            .args(["-a", "127.0.0.1", "-p", &addr.port().to_string()])
            .logs_in(dir.path())
            .ready(Ready::probe(move || TcpStream::connect(addr).is_ok()));
        if jetstream {
            let store = dir.path().join("jetstream");
            builder = builder.arg("-js").arg("-sd").arg(store);
        }
        if let Some(config) = config {
            let file = dir.path().join("nats-server.conf");
            std::fs::write(&file, config).expect("write the nats-server config");
            builder = builder.arg("-c").arg(file);
        }
        let process = builder
            .start()
            .await
            .unwrap_or_else(|e| panic!("nats-server did not start: {e}"));
        Self {
            process,
            addr,
            _dir: dir,
        }
    }

    /// Its client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The process, for faults (pause, resume, logs).
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// SIGKILL, and reap: the server is gone until [`restart`](Self::restart).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts it again on the same port with the same store.
    pub async fn restart(&mut self) {
        self.process
            .restart()
            .await
            .unwrap_or_else(|e| panic!("nats-server did not restart: {e}"));
    }
}
