//! `cargo xtask hot-functions`: writes each `hot-functions.txt` (the
//! broker's, `crates/broker/`, and the bridge's, `crates/bridge/`): the
//! functions a running binary executes, hottest first, which release
//! builds lay out together (the `hot-layout` crate says where and why).
//!
//! It builds each binary, and `busbench`, in release mode and runs the
//! binary under callgrind (`valgrind`, a Debian package) through the
//! patterns it serves, stops it with SIGTERM, and lists every function of
//! the binary's own that ran, by the instructions it executed:
//! - the broker: clients connecting and subscribing, plain and queue-group
//!   round trips, a work queue with acks, confirmed publishes, a pub/sub
//!   stream; twice, in memory and with durable queue groups;
//! - the bridge (needs `nats-server`): `busbench fleet-workload`, two
//!   loopback nodes and one NATS server, round trips across them,
//!   at-most-once and at-least-once events; twice, with the profiled
//!   bridge as the exporting and requesting node 1, then as node 2, which
//!   imports and serves.
//!
//! The names carry a hash of the crate they come from, and of its build:
//! a list fits its binary built alone from the lock file (`cargo build
//! --release -p broker`, `cargo install --locked --path crates/broker`).
//! Other builds get the usual layout: with other packages, whose features
//! unify differently; `cargo install` without `--locked`, which picks the
//! newest dependencies. A toolchain or dependency update renames the
//! functions too: `--check` says how many of the listed names each binary
//! built alone still has, and fails under [`FRESH_SHARE`]; run the task
//! again then.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::build::{build_packages, find};
use crate::fleet::{Proc, stop_all};
use crate::process::{output, probe};

/// A binary laid out with its hot functions first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Binary {
    Broker,
    Bridge,
}

impl Binary {
    const ALL: [Self; 2] = [Self::Broker, Self::Bridge];

    /// Its package, built alone.
    fn package(self) -> &'static str {
        match self {
            Self::Broker => "broker",
            Self::Bridge => "eventbus-bridge",
        }
    }

    /// The executable's name.
    fn executable(self) -> &'static str {
        self.package()
    }

    /// Where its list lives, from the workspace root.
    pub fn list(self) -> &'static str {
        match self {
            Self::Broker => "crates/broker/hot-functions.txt",
            Self::Bridge => "crates/bridge/hot-functions.txt",
        }
    }

    /// What the list's header says runs.
    fn running(self) -> &'static str {
        match self {
            Self::Broker => "a running broker",
            Self::Bridge => "a running bridge",
        }
    }

    /// The profiled runs of its workload, whose costs are summed.
    fn runs(self) -> [Run; 2] {
        match self {
            Self::Broker => [
                Run::Broker { durable: false },
                Run::Broker { durable: true },
            ],
            Self::Bridge => [Run::Bridge { node: 1 }, Run::Bridge { node: 2 }],
        }
    }

    /// Builds it alone, as it is released and installed: built with other
    /// packages, its dependencies' features unify differently, which
    /// renames their functions.
    pub fn build(self, root: &Path) -> Result<PathBuf> {
        find(
            &build_packages(root, &[self.package()], &["--release"])?,
            self.executable(),
        )
    }
}

/// One profiled run of a binary's workload.
#[derive(Debug, Clone, Copy)]
enum Run {
    /// The broker, every queue group durable or none.
    Broker { durable: bool },
    /// The bridge, as node 1 (exporting, requesting) or 2 (importing, serving).
    Bridge { node: u8 },
}

impl Run {
    /// Its directory's name.
    fn name(self) -> String {
        match self {
            Self::Broker { durable: true } => "broker-durable".to_owned(),
            Self::Broker { durable: false } => "broker-memory".to_owned(),
            Self::Bridge { node } => format!("bridge-node{node}"),
        }
    }
}

/// The share of listed names a fresh list has in the binary; under it,
/// `--check` fails and asks for a new list.
const FRESH_SHARE: f64 = 0.9;

/// How long the broker (slow under callgrind) and each role get to start.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// Options of `cargo xtask hot-functions`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Report how many listed names each release binary has, instead of
    /// writing the lists.
    #[arg(long)]
    check: bool,
    /// Only this binary's list [default: both].
    #[arg(long, value_enum)]
    only: Option<Binary>,
}

pub fn run(root: &Path, args: &Args) -> Result<()> {
    let binaries: Vec<Binary> = match args.only {
        Some(one) => vec![one],
        None => Binary::ALL.to_vec(),
    };
    if args.check {
        let mut stale = Vec::new();
        for &binary in &binaries {
            let exe = binary.build(root)?;
            let fit = freshness(root, binary, &exe)?;
            println!("{}: layout {}", exe.display(), layout(root, binary, &exe));
            if !fit.fresh() {
                stale.push(binary.list());
            }
        }
        if !stale.is_empty() {
            bail!(
                "stale: {}: run `cargo xtask hot-functions` to write them again",
                stale.join(", ")
            );
        }
        return Ok(());
    }
    if !probe(Command::new("valgrind").arg("--version")) {
        bail!("valgrind is not installed (`apt-get install valgrind`)");
    }
    if binaries.contains(&Binary::Bridge) && eventbus_harness::find_nats_server().is_none() {
        bail!(
            "the bridge's workload needs nats-server (`apt-get install nats-server`, or set \
             $NATS_SERVER); `--only broker` writes the broker's list alone"
        );
    }
    // Each binary alone first: a later build of other packages leaves it be.
    let built: Vec<(Binary, PathBuf)> = binaries
        .iter()
        .map(|&b| Ok((b, b.build(root)?)))
        .collect::<Result<_>>()?;
    // The broker the bridge's workload runs beside: the same binary.
    let broker = match built.iter().find(|(b, _)| *b == Binary::Broker) {
        Some((_, exe)) => exe.clone(),
        None => Binary::Broker.build(root)?,
    };
    let busbench = find(&build_packages(root, &["e2e"], &["--release"])?, "busbench")?;
    let dir = tempfile::tempdir()?;
    for (binary, exe) in built {
        let mut cost: HashMap<String, u64> = HashMap::new();
        for run in binary.runs() {
            let run_dir = dir.path().join(run.name());
            std::fs::create_dir_all(&run_dir)?;
            let profile = run_dir.join("callgrind.out");
            match run {
                Run::Broker { durable } => {
                    profile_broker(&exe, &busbench, &run_dir, &profile, durable)?;
                }
                Run::Bridge { node } => {
                    profile_bridge(&broker, &exe, &busbench, &run_dir, &profile, node)?;
                }
            }
            let text = std::fs::read_to_string(&profile)
                .with_context(|| format!("reading {}", profile.display()))?;
            for (name, own) in executed_in(&text, &exe) {
                *cost.entry(name).or_default() += own;
            }
        }
        write_list(root, binary, cost)?;
    }
    Ok(())
}

/// Writes `binary`'s list: the functions in `cost`, most first.
fn write_list(root: &Path, binary: Binary, cost: HashMap<String, u64>) -> Result<()> {
    let mut hot: Vec<(String, u64)> = cost.into_iter().collect();
    hot.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let hot: Vec<String> = hot.into_iter().map(|(name, _)| name).collect();
    if hot.len() < 100 {
        bail!(
            "only {} functions of {} ran: the workload did not run",
            hot.len(),
            binary.executable()
        );
    }
    let package_dir = Path::new(binary.list())
        .parent()
        .map_or_else(String::new, |d| d.display().to_string());
    let mut list = format!(
        "# The functions {} executes, hottest first: release builds lay\n\
         # them out together ({package_dir}/build.rs). Written by `cargo xtask\n\
         # hot-functions`; do not edit.\n",
        binary.running()
    );
    for name in &hot {
        list.push_str(name);
        list.push('\n');
    }
    std::fs::write(root.join(binary.list()), list)?;
    println!("{}: {} functions", binary.list(), hot.len());
    Ok(())
}

/// Runs `bridge` under callgrind as node `node`'s bridge through `busbench
/// fleet-workload` (the other node runs it plainly), writing `profile`.
fn profile_bridge(
    broker: &Path,
    bridge: &Path,
    busbench: &Path,
    dir: &Path,
    profile: &Path,
    node: u8,
) -> Result<()> {
    // The workload starts the profiled bridge through a wrapper, with the
    // bridge's own arguments; the paths go into it single-quoted.
    for path in [profile, bridge] {
        if path.to_string_lossy().contains('\'') {
            bail!("a path with a quote in it: {}", path.display());
        }
    }
    let wrapper = dir.join("callgrind-bridge.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec valgrind --tool=callgrind --demangle=no \
             --callgrind-out-file='{}' '{}' \"$@\"\n",
            profile.display(),
            bridge.display()
        ),
    )?;
    make_executable(&wrapper)?;
    output(
        Command::new(busbench)
            .arg("fleet-workload")
            .arg("--broker")
            .arg(broker)
            .arg("--bridge")
            .arg(bridge)
            .arg("--profiled")
            .arg(&wrapper)
            .arg("--node")
            .arg(node.to_string()),
    )
    .context("busbench fleet-workload")?;
    if !profile.is_file() {
        bail!(
            "the profiled bridge wrote no profile ({})",
            profile.display()
        );
    }
    Ok(())
}

#[cfg(unix)]
fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> Result<()> {
    bail!("the bridge's profile runs on Linux only")
}

/// Runs the broker under callgrind through its workload, writing `profile`;
/// with `durable`, every queue group is durable (a journal in `dir`).
fn profile_broker(
    broker: &Path,
    busbench: &Path,
    dir: &Path,
    profile: &Path,
    durable: bool,
) -> Result<()> {
    let socket = dir.join("b.sock");
    let socket = socket.to_str().context("a UTF-8 temp dir")?;
    let never = || false;
    let mut cmd = Command::new("valgrind");
    cmd.arg("--tool=callgrind")
        .arg("--demangle=no")
        .arg(format!("--callgrind-out-file={}", profile.display()))
        .arg(broker)
        .args(["--socket", socket]);
    if durable {
        cmd.arg("--durable").arg("--data-dir").arg(dir.join("data"));
    }
    let mut procs = vec![Proc::start("broker", cmd, dir, START_DEADLINE, &never)?];
    let busbench = |name: &str, args: &[&str]| {
        let mut cmd = Command::new(busbench);
        cmd.arg(name).args(["--socket", socket]).args(args);
        cmd
    };
    // A role that stays (ready line first), and one that runs to its end.
    let role = |name: &str, args: &[&str]| -> Result<Proc> {
        Proc::start(name, busbench(name, args), dir, START_DEADLINE, &never)
    };
    let finish =
        |name: &str, args: &[&str]| -> Result<()> { output(&mut busbench(name, args)).map(drop) };
    // Clients that connect and subscribe; plain and queue-group round trips.
    let mut roles = Vec::new();
    for _ in 0..10 {
        roles.push(role("responder", &[])?);
    }
    roles.push(role("responder", &["--queue", "--topic", "bench.q"])?);
    finish("rtt", &["--count", "300", "--warmup", "10", "--retry"])?;
    let queue = [
        "--count", "300", "--warmup", "10", "--retry", "--topic", "bench.q",
    ];
    finish("rtt", &queue)?;
    // A work queue with acks, and a stream to a subscriber.
    roles.push(role("worker", &[])?);
    roles.push(role("worker", &[])?);
    finish("tasks", &["--count", "3000", "--concurrency", "500"])?;
    // Confirmed publishes into a queue group (journaled when durable),
    // each delivered and acked.
    roles.push(role("hold", &["--topic", "bench.confirm", "--ack"])?);
    let confirmed = [
        "--topic",
        "bench.confirm",
        "--count",
        "2000",
        "--in-flight",
        "16",
    ];
    finish("confirm-pub", &confirmed)?;
    let sub = role("sub", &["--count", "20000"])?;
    finish("pub", &["--count", "20000"])?;
    roles.push(sub);
    // Clients leave, then the broker stops cleanly (callgrind writes at exit).
    stop_all(&mut roles, Duration::from_secs(5), &never);
    stop_all(&mut procs, Duration::from_secs(30), &never);
    Ok(())
}

/// The functions of `binary` that a callgrind profile saw run, by the
/// instructions they executed themselves, most first.
///
/// Callgrind names each object (`ob=`) and function (`fn=`) once, as
/// `(id) name`, and by `(id)` alone after; callee records (`cfn=`, `cob=`)
/// name them too. A cost line after `calls=` is the call's inclusive cost,
/// not the caller's own.
fn executed_in(profile: &str, binary: &Path) -> Vec<(String, u64)> {
    let binary = binary.to_string_lossy();
    let mut objects: HashMap<&str, &str> = HashMap::new();
    let mut functions: HashMap<&str, &str> = HashMap::new();
    let mut own: HashMap<&str, u64> = HashMap::new();
    let (mut object, mut function) = ("", None);
    let mut call_cost_next = false;
    for line in profile.lines() {
        if let Some((key, rest)) = line.split_once('=')
            && let Some(rest) = rest.strip_prefix('(')
            && let Some((id, name)) = rest.split_once(')')
        {
            let name = name.trim_start();
            match key {
                "ob" | "cob" => {
                    if !name.is_empty() {
                        objects.insert(id, name);
                    }
                    if key == "ob" {
                        object = objects.get(id).copied().unwrap_or("");
                    }
                }
                "fn" | "cfn" => {
                    if !name.is_empty() {
                        functions.insert(id, name);
                    }
                    if key == "fn" {
                        function = functions.get(id).copied().filter(|_| object == binary);
                    }
                }
                _ => {}
            }
            continue;
        }
        if line.starts_with("calls=") {
            call_cost_next = true;
            continue;
        }
        let cost_line = line.starts_with(|c: char| c.is_ascii_digit() || "+-*".contains(c));
        if !cost_line {
            continue;
        }
        if std::mem::take(&mut call_cost_next) {
            continue;
        }
        if let Some(f) = function {
            let instructions = line.split_whitespace().nth(1).and_then(|n| n.parse().ok());
            *own.entry(f).or_default() += instructions.unwrap_or(0);
        }
    }
    let mut hot: Vec<(String, u64)> = own.into_iter().map(|(f, c)| (f.to_owned(), c)).collect();
    hot.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    hot
}

/// What a report says of `exe`'s layout: how much of `binary`'s list it
/// has, and whether the linker put those first.
pub fn layout(root: &Path, binary: Binary, exe: &Path) -> String {
    match freshness(root, binary, exe) {
        Ok(f) if !f.fresh() => format!(
            "usual: the list is stale ({} of {} listed functions found; \
             `cargo xtask hot-functions` writes it again)",
            f.found, f.listed
        ),
        Ok(f) if f.first * 10 < f.found * 9 => format!(
            "usual: the list was not applied (a linker other than LLD, or \
             EVENTBUS_PLAIN_LAYOUT; {} of {} listed functions found)",
            f.found, f.listed
        ),
        Ok(f) => format!(
            "hot functions first ({} of {} listed functions found, laid out first)",
            f.found, f.listed
        ),
        Err(e) => format!("not checked ({e:#})"),
    }
}

/// How the list fits a binary.
#[derive(Debug)]
pub struct Freshness {
    /// Names listed.
    pub listed: usize,
    /// Listed names the binary has.
    pub found: usize,
    /// Of the binary's first `found` functions by address, how many are
    /// listed: all of them when the linker applied the list.
    pub first: usize,
}

impl Freshness {
    fn fresh(&self) -> bool {
        self.found as f64 >= FRESH_SHARE * self.listed as f64
    }
}

/// How `binary`'s list fits `exe`, from its symbol table (`nm -n`).
pub fn freshness(root: &Path, binary: Binary, exe: &Path) -> Result<Freshness> {
    let list = binary.list();
    let list =
        std::fs::read_to_string(root.join(list)).with_context(|| format!("reading {list}"))?;
    let listed: BTreeSet<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let symbols = output(Command::new("nm").arg("-n").arg(exe)).context("running nm (binutils)")?;
    // Functions, by address.
    let functions: Vec<&str> = symbols
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let (_, kind, name) = (parts.next()?, parts.next()?, parts.next()?);
            matches!(kind, "t" | "T" | "W" | "w").then_some(name)
        })
        .collect();
    let found = functions.iter().filter(|n| listed.contains(*n)).count();
    let first = functions
        .iter()
        .take(found)
        .filter(|n| listed.contains(*n))
        .count();
    Ok(Freshness {
        listed: listed.len(),
        found,
        first,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_binarys_own_cost_counts() {
        let profile = "\
ob=(1) /x/broker
fl=(1) a.rs
fn=(1) hot
1 100
cob=(2) /lib/libc.so.6
cfn=(2) memcpy
calls=3 0
1 5000
fn=(3) warm
2 10
ob=(2)
fn=(2)
1 999999
ob=(1)
fn=(1)
3 50
";
        let hot = executed_in(profile, Path::new("/x/broker"));
        let expected = [("hot".to_owned(), 150), ("warm".to_owned(), 10)];
        assert_eq!(
            hot, expected,
            "memcpy is libc's; the call's 5000 is memcpy's"
        );
    }
}
