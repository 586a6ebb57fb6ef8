//! The peer brokers measured next to eventbus: found on `PATH` (or in the
//! `sbin` directories Debian installs servers to), else installed with
//! `apt-get` when that is possible (root, Debian), else left out with a note
//! that says why, in the run's output and in the report.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::run;

/// One peer: its server binary and the Debian package that has it.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The name in reports.
    pub name: &'static str,
    /// The server binary.
    pub binary: &'static str,
    /// busbench's option for it.
    pub option: &'static str,
    /// The Debian package.
    pub package: &'static str,
}

/// Every peer, in report order.
pub const PEERS: [Peer; 3] = [
    Peer {
        name: "nats-server",
        binary: "nats-server",
        option: "--nats-server",
        package: "nats-server",
    },
    Peer {
        name: "redis",
        binary: "redis-server",
        option: "--redis-server",
        package: "redis-server",
    },
    Peer {
        name: "mosquitto",
        binary: "mosquitto",
        option: "--mosquitto",
        package: "mosquitto",
    },
];

/// Where servers are looked for besides `PATH` (Debian puts nats-server
/// and mosquitto in `/usr/sbin`, often not on a user's `PATH`).
const SBIN: [&str; 3] = ["/usr/local/sbin", "/usr/sbin", "/sbin"];

/// The peers found (after installing what was missing, where possible),
/// and a note on each one left out.
#[derive(Debug, Default)]
pub struct Found {
    /// Each found peer and its binary.
    pub servers: Vec<(Peer, PathBuf)>,
    /// Why each missing peer is left out.
    pub notes: Vec<String>,
}

/// Finds every peer, installing the missing ones with apt-get when `install`
/// and possible.
pub fn find(install: bool) -> Found {
    let missing: Vec<Peer> = PEERS
        .iter()
        .copied()
        .filter(|p| locate(p.binary).is_none())
        .collect();
    let mut notes = Vec::new();
    if !missing.is_empty() {
        let packages: Vec<&str> = missing.iter().map(|p| p.package).collect();
        match install_with_apt(install, &packages) {
            Ok(()) => {}
            Err(why) => notes.push(format!("could not install {}: {why}", packages.join(", "))),
        }
    }
    let mut servers = Vec::new();
    for peer in PEERS {
        match locate(peer.binary) {
            Some(path) => servers.push((peer, path)),
            None => notes.push(format!(
                "{} is LEFT OUT: `{}` not found on PATH or in {} (Debian package `{}`)",
                peer.name,
                peer.binary,
                SBIN.join(", "),
                peer.package
            )),
        }
    }
    Found { servers, notes }
}

/// `name` on `PATH` or in [`SBIN`].
fn locate(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn install_with_apt(install: bool, packages: &[&str]) -> Result<(), String> {
    if !install {
        return Err("installing was turned off (--no-install)".into());
    }
    if !cfg!(target_os = "linux") || !Path::new("/usr/bin/apt-get").is_file() {
        return Err("no apt-get on this machine".into());
    }
    if !is_root() {
        return Err("not root, so apt-get cannot install".into());
    }
    eprintln!("installing the missing peers: {}", packages.join(" "));
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut cmd).map_err(|e| e.to_string())
    };
    apt(&["update"])?;
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend_from_slice(packages);
    apt(&args)
}

#[cfg(unix)]
fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[cfg(not(unix))]
fn is_root() -> bool {
    false
}
