//! [`Network`]: real network hosts on one machine. Each [`Host`] is a Linux
//! network namespace with a veth link into a Linux bridge of its own network
//! in the root namespace, and its own IPv4 address; processes run inside a
//! host ([`Host::wrap`], through `ip netns exec`), and every byte a host sends
//! crosses its link, where a test cuts it ([`Host::partition`]) or degrades it
//! ([`Host::set_netem`]).
//!
//! Making namespaces needs root (`CAP_NET_ADMIN`) and `ip` (iproute2); `tc`
//! for netem. [`Network::create`] says why it cannot, with a typed error, so
//! a caller can fall back to loopback.
//!
//! Names are unique per test process and network: the tag `eb<pid hex>x<n>`
//! (`<n>` in decimal; at most 11 bytes, so `<tag>br` and `<tag>v<i>` fit the 15-byte interface
//! name limit) names the bridge and the root ends of the links, and namespaces
//! are `ebnet-<pid>-<n>-<host>`. The subnet `10.a.b.0/24` is derived from
//! them and checked unused; the bridge is `.254`, hosts `.1`, `.2`, ...
//!
//! **Invariant:** everything a [`Network`] makes is deleted when it is
//! dropped, during a panic too; what a killed test process left behind (its
//! pid is in every name) is swept by the next [`Network::create`]. Kill the
//! processes of a host before its network is dropped: a namespace lives on
//! while a process is in it (declare the network first, so it drops last).

use std::fmt::Write as _;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::process::ProcessBuilder;

/// Networks made by this process so far, for unique names.
static NETWORKS: AtomicU32 = AtomicU32::new(0);

/// The most hosts one network holds (addresses `.1` to `.250`).
pub const MAX_HOSTS: usize = 250;

/// Why a network could not be made or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetnsError {
    /// Namespaces cannot be made here at all: not root, or no `ip`.
    #[error("network namespaces are unavailable: {why}")]
    Unavailable {
        /// What is missing.
        why: String,
    },
    /// A command failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// How it ended.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The kernel has no `netem` queueing discipline (`sch_netem` not built
    /// or not loaded, as in some VMs): links can be cut, not degraded.
    #[error("tc netem is unavailable here: {why}")]
    NetemUnavailable {
        /// What `tc` said.
        why: String,
    },
    /// A bad request: too many hosts, a host name that is not `[a-z0-9]+`.
    #[error("invalid network: {0}")]
    Invalid(String),
}

/// Link faults of `tc netem` on a host's link, both ways.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Netem {
    /// Delay added to every packet.
    pub delay: Duration,
    /// Up to this much more, at random.
    pub jitter: Duration,
    /// Packets lost, in percent (0 to 100).
    pub loss_percent: f64,
    /// Packets sent at once instead of delayed, in percent: reordering
    /// (needs a delay).
    pub reorder_percent: f64,
}

impl Netem {
    fn args(&self) -> Result<Vec<String>, NetnsError> {
        let percent = |p: f64| (0.0..=100.0).contains(&p);
        if !percent(self.loss_percent) || !percent(self.reorder_percent) {
            return Err(NetnsError::Invalid(format!(
                "netem percentages out of 0..=100: {self:?}"
            )));
        }
        if self.reorder_percent > 0.0 && self.delay.is_zero() {
            return Err(NetnsError::Invalid("netem reordering needs a delay".into()));
        }
        let mut args = vec!["netem".to_owned(), "limit".to_owned(), "10000".to_owned()];
        if !self.delay.is_zero() {
            args.extend(["delay".into(), format!("{}us", self.delay.as_micros())]);
            if !self.jitter.is_zero() {
                args.push(format!("{}us", self.jitter.as_micros()));
            }
        }
        if self.loss_percent > 0.0 {
            args.extend(["loss".into(), format!("{}%", self.loss_percent)]);
        }
        if self.reorder_percent > 0.0 {
            args.extend(["reorder".into(), format!("{}%", self.reorder_percent)]);
        }
        Ok(args)
    }
}

/// One host of a [`Network`]: a namespace, its link and its address. Cheap to
/// clone; it stays valid while its network lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    name: String,
    netns: String,
    /// The root namespace's end of the link, on the bridge.
    link: String,
    ip: Ipv4Addr,
}

impl Host {
    /// The name it was given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its network namespace (`ip netns` name).
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// Its address.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The root namespace's end of its link (where partitions and netem act).
    pub fn link(&self) -> &str {
        &self.link
    }

    /// `process`, run inside this host (`ip netns exec`, which execs it: the
    /// pid stays the process's).
    pub fn wrap(&self, process: ProcessBuilder) -> ProcessBuilder {
        process.wrap_in("ip", ["netns", "exec", self.netns.as_str()])
    }

    /// Cuts its link: nothing goes in or out until [`heal`](Self::heal).
    /// Connections are not reset: they stall, as in a real partition.
    pub fn partition(&self) -> Result<(), NetnsError> {
        ip(&["link", "set", &self.link, "down"])
    }

    /// Restores its link after [`partition`](Self::partition).
    pub fn heal(&self) -> Result<(), NetnsError> {
        ip(&["link", "set", &self.link, "up"])
    }

    /// Puts `netem` on its link, both ways (replacing any earlier one).
    /// [`NetnsError::NetemUnavailable`] when the kernel has no netem.
    pub fn set_netem(&self, netem: Netem) -> Result<(), NetnsError> {
        let args = netem.args()?;
        let mut outgoing = vec!["-n", &self.netns, "qdisc", "replace", "dev", "eth0", "root"];
        outgoing.extend(args.iter().map(String::as_str));
        run("tc", &outgoing).map_err(|e| match e {
            NetnsError::Command { stderr, .. } if stderr.contains("qdisc kind is unknown") => {
                NetnsError::NetemUnavailable { why: stderr }
            }
            NetnsError::Command { stderr, .. }
                if stderr.contains("No such file") || stderr.is_empty() =>
            {
                NetnsError::NetemUnavailable {
                    why: format!("no `tc` (install iproute2): {stderr}"),
                }
            }
            e => e,
        })?;
        let mut incoming = vec!["qdisc", "replace", "dev", &self.link, "root"];
        incoming.extend(args.iter().map(String::as_str));
        run("tc", &incoming)
    }

    /// Removes the netem of [`set_netem`](Self::set_netem) (none is fine).
    pub fn clear_netem(&self) -> Result<(), NetnsError> {
        let _ = run(
            "tc",
            &["-n", &self.netns, "qdisc", "del", "dev", "eth0", "root"],
        );
        let _ = run("tc", &["qdisc", "del", "dev", &self.link, "root"]);
        Ok(())
    }

    /// Runs `f` on a thread inside this host's namespace: every socket it
    /// opens is the host's (a tokio runtime built inside `f` too).
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        let path = format!("/run/netns/{}", self.netns);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let ns = std::fs::File::open(&path)?;
                    rustix::thread::move_into_link_name_space(
                        std::os::fd::AsFd::as_fd(&ns),
                        Some(rustix::thread::LinkNameSpaceType::Network),
                    )?;
                    Ok(f())
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Whether a TCP connection from this host to `addr` succeeds within
    /// `timeout`.
    pub fn can_connect(&self, addr: SocketAddr, timeout: Duration) -> bool {
        self.enter(|| TcpStream::connect_timeout(&addr, timeout).is_ok())
            .unwrap_or(false)
    }
}

/// Hosts on a bridge, each in its own namespace. Everything is deleted on drop.
#[derive(Debug)]
pub struct Network {
    bridge: String,
    gateway: Ipv4Addr,
    hosts: Vec<Host>,
}

impl Network {
    /// A network with a host per name (`[a-z0-9]+`, at most [`MAX_HOSTS`]),
    /// addressed `.1`, `.2`, ... in name order. Fails with
    /// [`NetnsError::Unavailable`] when namespaces cannot be made here.
    pub fn create(names: &[&str]) -> Result<Self, NetnsError> {
        check_available()?;
        if names.len() > MAX_HOSTS {
            return Err(NetnsError::Invalid(format!(
                "{} hosts, at most {MAX_HOSTS}",
                names.len()
            )));
        }
        if let Some(bad) = names.iter().find(|n| {
            n.is_empty()
                || !n
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        }) {
            return Err(NetnsError::Invalid(format!(
                "host name {bad:?} is not [a-z0-9]+"
            )));
        }
        sweep_stale();
        let pid = std::process::id();
        let n = NETWORKS.fetch_add(1, Ordering::Relaxed);
        let tag = format!("eb{pid:x}x{n}");
        if tag.len() > 11 {
            return Err(NetnsError::Invalid(format!(
                "too many networks in one process ({n}): link names would pass 15 bytes"
            )));
        }
        let [a, b] = free_subnet(pid, n)?;
        let mut network = Self {
            bridge: format!("{tag}br"),
            gateway: Ipv4Addr::new(10, a, b, 254),
            hosts: Vec::with_capacity(names.len()),
        };
        // From here on, drop deletes whatever was made.
        ip(&["link", "add", &network.bridge, "type", "bridge"])?;
        let gateway = format!("{}/24", network.gateway);
        ip(&["addr", "add", &gateway, "dev", &network.bridge])?;
        ip(&["link", "set", &network.bridge, "up"])?;
        for (i, name) in names.iter().enumerate() {
            let host = Host {
                name: (*name).to_owned(),
                netns: format!("ebnet-{pid}-{n}-{name}"),
                link: format!("{tag}v{i}"),
                ip: Ipv4Addr::new(10, a, b, i as u8 + 1),
            };
            let peer = format!("{tag}p{i}");
            ip(&["netns", "add", &host.netns])?;
            network.hosts.push(host.clone());
            ip(&[
                "link", "add", &host.link, "type", "veth", "peer", "name", &peer,
            ])?;
            ip(&["link", "set", &peer, "netns", &host.netns])?;
            ip(&["link", "set", &host.link, "master", &network.bridge])?;
            ip(&["link", "set", &host.link, "up"])?;
            let inside = |args: &[&str]| {
                let mut all = vec!["-n", host.netns.as_str()];
                all.extend_from_slice(args);
                ip(&all)
            };
            inside(&["link", "set", &peer, "name", "eth0"])?;
            inside(&["addr", "add", &format!("{}/24", host.ip), "dev", "eth0"])?;
            inside(&["link", "set", "eth0", "up"])?;
            inside(&["link", "set", "lo", "up"])?;
        }
        Ok(network)
    }

    /// The hosts, in the order they were named.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The host called `name`. Panics if there is none.
    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name:?} in this network"))
    }

    /// The bridge's address: how the root namespace reaches the hosts.
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// The bridge's interface name.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for host in &self.hosts {
            let _ = ip(&["link", "del", &host.link]);
            let _ = ip(&["netns", "del", &host.netns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// Root and `ip`, or why not.
fn check_available() -> Result<(), NetnsError> {
    if !rustix::process::geteuid().is_root() {
        return Err(NetnsError::Unavailable {
            why: "not root".into(),
        });
    }
    match Command::new("ip").arg("-V").output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(NetnsError::Unavailable {
            why: format!(
                "`ip -V` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }),
        Err(e) => Err(NetnsError::Unavailable {
            why: format!("no `ip` command (install iproute2): {e}"),
        }),
    }
}

/// A `10.a.b.0/24` no route uses yet, derived from `pid` and `n`.
fn free_subnet(pid: u32, n: u32) -> Result<[u8; 2], NetnsError> {
    let routes = output("ip", &["-4", "route", "show", "table", "all"])?;
    let mut rng = crate::rng::Rng::new(u64::from(pid) << 32 | u64::from(n));
    for _ in 0..64 {
        let (a, b) = (64 + rng.below(64) as u8, rng.below(256) as u8);
        if !routes.contains(&format!("10.{a}.{b}.")) {
            return Ok([a, b]);
        }
    }
    Err(NetnsError::Invalid(
        "no free 10.x.y.0/24 subnet found".into(),
    ))
}

/// Deletes namespaces and links whose test process is gone.
fn sweep_stale() {
    let dead = |pid: &str| {
        pid.parse::<i32>()
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .is_some_and(|pid| rustix::process::test_kill_process(pid).is_err())
    };
    if let Ok(list) = output("ip", &["netns", "list"]) {
        for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
            let pid = ns.strip_prefix("ebnet-").and_then(|r| r.split('-').next());
            if pid.is_some_and(dead) {
                let _ = ip(&["netns", "del", ns]);
            }
        }
    }
    if let Ok(list) = output("ip", &["-o", "link", "show"]) {
        for link in list.lines().filter_map(|l| l.split(": ").nth(1)) {
            let link = link.split('@').next().unwrap_or(link);
            if let Some(pid) = link_owner(link)
                && dead(&pid.to_string())
            {
                let _ = ip(&["link", "del", link]);
            }
        }
    }
}

/// The test pid in a link name this module made: `eb<pid, hex>x<n><br|v<i>|p<i>>`.
fn link_owner(link: &str) -> Option<u32> {
    let (pid, rest) = link.strip_prefix("eb")?.split_once('x')?;
    let hex = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (n, suffix) = rest.split_at(rest.find(|c: char| !c.is_ascii_digit())?);
    let ours = hex(pid)
        && digits(n)
        && (suffix == "br"
            || suffix.strip_prefix('v').is_some_and(digits)
            || suffix.strip_prefix('p').is_some_and(digits));
    if ours {
        u32::from_str_radix(pid, 16).ok()
    } else {
        None
    }
}

fn ip(args: &[&str]) -> Result<(), NetnsError> {
    run("ip", args)
}

fn run(program: &str, args: &[&str]) -> Result<(), NetnsError> {
    output(program, args).map(drop)
}

fn output(program: &str, args: &[&str]) -> Result<String, NetnsError> {
    let mut line = program.to_owned();
    for arg in args {
        let _ = write!(line, " {arg}");
    }
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| NetnsError::Command {
            command: line.clone(),
            status: "not run".into(),
            stderr: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(NetnsError::Command {
            command: line,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_of_this_module_are_swept() {
        assert_eq!(link_owner("eb1a2bx0br"), Some(0x1a2b));
        assert_eq!(link_owner("eb1a2bx13v3"), Some(0x1a2b));
        assert_eq!(link_owner("eb1a2bx2p12"), Some(0x1a2b));
        for other in [
            "eth0",
            "ebx0br",
            "eb1a2bx0",
            "eb1a2bx0vx",
            "eb1a2bxbbr",
            "eb1A2Bx0br",
            "ebtables0",
            "eb1x0bridge",
        ] {
            assert_eq!(link_owner(other), None, "{other}");
        }
    }

    #[test]
    fn netem_arguments_are_checked() {
        let netem = Netem {
            delay: Duration::from_millis(20),
            jitter: Duration::from_millis(5),
            loss_percent: 1.5,
            reorder_percent: 10.0,
        };
        assert_eq!(
            netem.args().unwrap().join(" "),
            "netem limit 10000 delay 20000us 5000us loss 1.5% reorder 10%"
        );
        let no_delay = Netem {
            reorder_percent: 5.0,
            ..Netem::default()
        };
        assert!(matches!(no_delay.args(), Err(NetnsError::Invalid(_))));
        let too_much = Netem {
            loss_percent: 101.0,
            ..Netem::default()
        };
        assert!(matches!(too_much.args(), Err(NetnsError::Invalid(_))));
    }
}
