//! The `mock-collector` binary as a child process: how to start one (its flags,
//! faults included), and the faults a scenario can inflict on it: kill,
//! terminate, pause, resume, restart, and memory pressure.
//!
//! **Memory pressure** ([`CollectorProcess::squeeze_memory`]) lowers the
//! running collector's soft `RLIMIT_AS` with `prlimit(2)`: no cgroup is needed
//! (containers rarely let a test create one), only Linux. The limit is on
//! address space, not resident memory: from then on every new mapping (a large
//! allocation, a thread's stack, a malloc arena) must fit in the headroom
//! left, so a task whose `scratch_bytes` does not fit is shed. Keep the headroom
//! below 64 MiB ([`SQUEEZE_HEADROOM`] is 32 MiB): glibc reserves a new malloc
//! arena as one 64 MiB mapping, and creates one as a fallback when a large
//! allocation fails, which would eat a 64 MiB headroom whole and leave no room
//! for a worker thread's stack. Under 64 MiB no arena can be created, and
//! threads without one fall back to plain `mmap` allocations: slower, working.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use eventbus_harness::binaries::workspace_bin;
use eventbus_harness::{Cluster, DEADLINE, FaultProxy, LogPaths, Process, ProcessBuilder, Ready};

use crate::driver::Driver;
use crate::tasks::CollectorKind;

/// Environment variable overriding the path of the `mock-collector` binary
/// (see [`eventbus_harness::binaries`]).
pub const COLLECTOR_BIN_ENV: &str = "EVENTBUS_COLLECTOR_BIN";

/// The path of the `mock-collector` binary: `EVENTBUS_COLLECTOR_BIN`, else
/// built once from this workspace.
pub fn collector_bin() -> PathBuf {
    workspace_bin("mock-collector", "mock-collector", COLLECTOR_BIN_ENV)
}

/// What a [`Cluster`] can do with this project's collectors.
#[allow(async_fn_in_trait)]
pub trait ClusterExt {
    /// Starts a collector on the cluster's broker, at any time, and waits for
    /// its ready line (it has joined its queue group by then).
    async fn add_collector(&self, collector: CollectorBuilder) -> CollectorProcess;

    /// Starts a collector that connects through `proxy` instead of straight to
    /// the broker, and waits for its ready line (so it needs the proxy to let
    /// its handshake and subscription through).
    async fn add_collector_behind(
        &self,
        proxy: &FaultProxy,
        collector: CollectorBuilder,
    ) -> CollectorProcess;

    /// A new driver connected to the broker. Panics if it cannot connect.
    async fn driver(&self) -> Driver;
}

impl ClusterExt for Cluster {
    async fn add_collector(&self, collector: CollectorBuilder) -> CollectorProcess {
        collector.start(self.dir(), self.socket()).await
    }

    async fn add_collector_behind(
        &self,
        proxy: &FaultProxy,
        collector: CollectorBuilder,
    ) -> CollectorProcess {
        collector.start(self.dir(), proxy.socket()).await
    }

    async fn driver(&self) -> Driver {
        let socket = self.socket();
        Driver::connect(socket)
            .await
            .unwrap_or_else(|e| panic!("driver cannot connect to {}: {e}", socket.display()))
    }
}

/// How to start a collector: `mock-collector --type <kind> --instance <n>` and
/// the flags set here. Start it with [`ClusterExt::add_collector`].
///
/// ```no_run
/// # async fn demo(cluster: &e2e::Cluster) {
/// use e2e::{ClusterExt as _, CollectorBuilder, CollectorKind};
/// let slow = cluster
///     .add_collector(CollectorBuilder::new(CollectorKind::Process, 1).prefetch(1).delay_ms(20))
///     .await;
/// assert_eq!(slow.id(), "procmond-1");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CollectorBuilder {
    kind: CollectorKind,
    instance: u32,
    id: Option<String>,
    args: Vec<OsString>,
    /// A wrapper that execs the collector (`ip netns exec NAME`), and its arguments.
    wrapper: Option<(OsString, Vec<OsString>)>,
}

impl CollectorBuilder {
    /// Instance `instance` of `kind`; its id is `<alias>-<instance>` unless set.
    pub fn new(kind: CollectorKind, instance: u32) -> Self {
        Self {
            kind,
            instance,
            id: None,
            args: Vec::new(),
            wrapper: None,
        }
    }

    fn flag(mut self, name: &str, value: impl std::fmt::Display) -> Self {
        self.args.push(format!("--{name}={value}").into());
        self
    }

    /// `--id`: the client id instead of `<alias>-<instance>`.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        let id = id.into();
        self.id = Some(id.clone());
        self.flag("id", id)
    }

    /// `--prefetch`: most tasks held and run at once.
    pub fn prefetch(self, n: u32) -> Self {
        self.flag("prefetch", n)
    }

    /// `--delay-ms`: a pause before every reply.
    pub fn delay_ms(self, ms: u64) -> Self {
        self.flag("delay-ms", ms)
    }

    /// `--fail-every`: every Nth task gets an error reply.
    pub fn fail_every(self, n: u64) -> Self {
        self.flag("fail-every", n)
    }

    /// `--crash-after`: abort (SIGABRT) on receiving the Nth task.
    pub fn crash_after(self, n: u64) -> Self {
        self.flag("crash-after", n)
    }

    /// `--hang-after`: freeze on receiving the Nth task.
    pub fn hang_after(self, n: u64) -> Self {
        self.flag("hang-after", n)
    }

    /// `--heartbeat-interval-ms` (the collector allows 3 misses).
    pub fn heartbeat_interval(self, interval: Duration) -> Self {
        self.flag("heartbeat-interval-ms", interval.as_millis())
    }

    /// `--emit-interval-ms`: publish a snapshot event this often.
    pub fn emit_interval(self, interval: Duration) -> Self {
        self.flag("emit-interval-ms", interval.as_millis())
    }

    /// Any other flag, passed as given.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Runs it through `wrapper`, which must exec it (see
    /// [`ProcessBuilder::wrap_in`]): `ip netns exec NAME` puts it on another
    /// network host.
    pub fn wrap_in<I, S>(mut self, wrapper: impl Into<OsString>, wrapper_args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.wrapper = Some((
            wrapper.into(),
            wrapper_args.into_iter().map(Into::into).collect(),
        ));
        self
    }

    /// Starts it on `socket`, working in `dir`, where its logs also go, and
    /// waits for its ready line, which must carry its id.
    pub(crate) async fn start(self, dir: &Path, socket: &Path) -> CollectorProcess {
        let id = self
            .id
            .clone()
            .unwrap_or_else(|| self.kind.default_id(self.instance));
        let mut command = ProcessBuilder::new(&id, collector_bin())
            .arg(format!("--type={}", self.kind.capability()))
            .arg(format!("--instance={}", self.instance))
            .arg("--socket")
            .arg(socket)
            .args(&self.args)
            .current_dir(dir)
            .logs_in(dir)
            .ready(Ready::JsonLine);
        if let Some((wrapper, args)) = &self.wrapper {
            command = command.wrap_in(wrapper, args);
        }
        let process = command.start().await.unwrap_or_else(|e| panic!("{e}"));
        let collector = CollectorProcess {
            builder: self,
            id,
            process,
        };
        collector.check_ready_line();
        collector
    }
}

/// A running `mock-collector` process, killed and reaped on drop.
///
/// Drop collectors before their [`Cluster`] (declare them after it), so their
/// logs are still there if the test fails.
#[derive(Debug)]
pub struct CollectorProcess {
    builder: CollectorBuilder,
    id: String,
    process: Process,
}

impl CollectorProcess {
    fn check_ready_line(&self) {
        let ready = self
            .process
            .ready()
            .expect("started on its JSON ready line");
        if ready["id"].as_str() != Some(self.id.as_str()) {
            self.process
                .fail(&format!("announced another id than {}: {ready}", self.id));
        }
    }

    /// Its client id (the same across restarts).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its type.
    pub fn kind(&self) -> CollectorKind {
        self.builder.kind
    }

    /// The pid of the current run.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Where its output goes.
    pub fn logs(&self) -> &LogPaths {
        self.process.logs()
    }

    /// The process itself, for anything else.
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// The exit status, if it has exited (reaping it).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.process.try_exit()
    }

    /// Waits up to [`DEADLINE`] for it to exit by itself (a crash, a lost
    /// broker); panics past it.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        self.process.wait_exit(DEADLINE).await
    }

    /// SIGKILL and reap: a crash without warning.
    pub fn kill(&mut self) -> ExitStatus {
        self.process.kill()
    }

    /// SIGTERM (and SIGCONT, so a paused process acts on it), then waits up to
    /// [`DEADLINE`] for the exit status (it drains running tasks first, for up
    /// to 5 s).
    pub async fn terminate(&mut self) -> ExitStatus {
        self.process.terminate(DEADLINE).await
    }

    /// SIGSTOP: the collector freezes, heartbeats included, with its socket open.
    pub fn pause(&self) {
        self.process.pause();
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&self) {
        self.process.resume();
    }

    /// Starts it again with the same id, socket and flags, after terminating it
    /// gracefully if it still runs ([`kill`](Self::kill) first for a crash).
    pub async fn restart(&mut self) {
        self.process
            .restart()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        self.check_ready_line();
    }

    /// Squeezes its memory: lowers the soft `RLIMIT_AS` of the running process
    /// to its virtual size now (`VmSize`) plus `headroom_bytes` (capped at the
    /// hard limit, which is kept: an unprivileged process could not raise it
    /// back). Tasks whose `scratch_bytes` no longer fit are shed to the other
    /// members of the group; heartbeats and small tasks go on. See the module
    /// doc for choosing the headroom. Undo it with
    /// [`relieve_memory`](Self::relieve_memory); a restart undoes it too.
    ///
    /// ```no_run
    /// # async fn demo(collector: &e2e::CollectorProcess) {
    /// use e2e::collector::{SQUEEZE_HEADROOM, SqueezeError};
    /// match collector.squeeze_memory(SQUEEZE_HEADROOM) {
    ///     Ok(squeeze) => {
    ///         // ... tasks with more scratch than the headroom are shed ...
    ///         collector.relieve_memory(squeeze).unwrap();
    ///     }
    ///     Err(e @ SqueezeError::Unsupported { .. }) => eprintln!("skipped: {e}"),
    ///     Err(e) => panic!("{e}"),
    /// }
    /// # }
    /// ```
    pub fn squeeze_memory(&self, headroom_bytes: u64) -> Result<MemorySqueeze, SqueezeError> {
        address_space::squeeze(self.pid(), headroom_bytes)
    }

    /// Its virtual size now (`VmSize`), in bytes: measured while it is idle,
    /// a baseline for [`squeeze_memory_to`](Self::squeeze_memory_to).
    pub fn vm_size(&self) -> Result<u64, SqueezeError> {
        address_space::vm_size(self.pid())
    }

    /// Like [`squeeze_memory`](Self::squeeze_memory), to an absolute soft
    /// limit: under load, `VmSize` includes the working memory of the tasks
    /// running at that moment, so a headroom over an idle baseline is the
    /// steadier squeeze.
    pub fn squeeze_memory_to(&self, limit_bytes: u64) -> Result<MemorySqueeze, SqueezeError> {
        let pid = self.pid();
        address_space::squeeze_to(pid, address_space::vm_size(pid)?, limit_bytes)
    }

    /// Gives back the soft `RLIMIT_AS` it had before `squeeze`. Nothing to do
    /// (`Ok`) when it has been restarted since: the new process never had the
    /// lowered limit.
    pub fn relieve_memory(&self, squeeze: MemorySqueeze) -> Result<(), SqueezeError> {
        if squeeze.pid != self.pid() {
            return Ok(());
        }
        address_space::relieve(&squeeze)
    }
}

/// A headroom for [`CollectorProcess::squeeze_memory`] that leaves ordinary
/// work running (worker threads, small tasks) and sheds any task asking for
/// more `scratch_bytes`: 32 MiB, below glibc's 64 MiB arena reservation.
pub const SQUEEZE_HEADROOM: u64 = 32 << 20;

/// A lowered address-space limit on a collector process, from
/// [`CollectorProcess::squeeze_memory`]; hand it to
/// [`CollectorProcess::relieve_memory`] to undo it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "relieve_memory undoes the squeeze"]
pub struct MemorySqueeze {
    /// The process squeezed.
    pub pid: u32,
    /// Its virtual size (`VmSize`) when squeezed, in bytes.
    pub vm_size: u64,
    /// The soft limit set, in bytes: `vm_size` plus the headroom, at most the
    /// hard limit.
    pub limit: u64,
    /// The soft limit before, which relieving restores (`None`: unlimited).
    pub previous: Option<u64>,
    /// The hard limit, left as it was (`None`: unlimited).
    pub hard: Option<u64>,
}

/// Why a collector's memory could not be squeezed or relieved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqueezeError {
    /// Not Linux: the squeeze needs `prlimit(2)` and `/proc/<pid>/status`.
    #[error("squeezing a collector's memory needs Linux (prlimit(2), /proc); unsupported on {os}")]
    Unsupported {
        /// The operating system the harness runs on.
        os: &'static str,
    },
    /// The pid is no longer a child of this test process: the collector has
    /// exited (and its pid may have been reused).
    #[error("pid {pid} is not a running collector of this test any more")]
    NotRunning {
        /// The pid.
        pid: u32,
    },
    /// A `/proc` file of the collector could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A `/proc` file of the collector lacks the expected line.
    #[error("no {what} line in {}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The line looked for.
        what: &'static str,
    },
    /// The kernel refused the new limit (`EPERM`: not our process; `ESRCH`: it
    /// has exited).
    #[error("cannot set RLIMIT_AS of pid {pid}: {source}")]
    Denied {
        /// The pid.
        pid: u32,
        /// The kernel's error.
        source: std::io::Error,
    },
}

/// `RLIMIT_AS` of another process, through `prlimit(2)` and `/proc`.
#[cfg(target_os = "linux")]
mod address_space {
    use std::path::PathBuf;

    use rustix::process::{Pid, Resource, Rlimit};

    use super::{MemorySqueeze, SqueezeError};

    pub(super) fn vm_size(pid: u32) -> Result<u64, SqueezeError> {
        let status = read_ours(pid, "status")?;
        let kib = field(&status, "VmSize:")
            .and_then(|v| v.strip_suffix(" kB"))
            .and_then(|kb| kb.trim().parse::<u64>().ok())
            .ok_or_else(|| malformed(pid, "status", "VmSize"))?;
        Ok(kib * 1024)
    }

    pub(super) fn squeeze(pid: u32, headroom: u64) -> Result<MemorySqueeze, SqueezeError> {
        let vm_size = vm_size(pid)?;
        squeeze_to(pid, vm_size, vm_size.saturating_add(headroom))
    }

    pub(super) fn squeeze_to(
        pid: u32,
        vm_size: u64,
        limit: u64,
    ) -> Result<MemorySqueeze, SqueezeError> {
        let hard = hard_limit(pid)?;
        let limit = limit.min(hard.unwrap_or(u64::MAX));
        let old = set(pid, Some(limit), hard)?;
        Ok(MemorySqueeze {
            pid,
            vm_size,
            limit,
            previous: old.current,
            hard,
        })
    }

    pub(super) fn relieve(squeeze: &MemorySqueeze) -> Result<(), SqueezeError> {
        read_ours(squeeze.pid, "status")?;
        set(squeeze.pid, squeeze.previous, squeeze.hard).map(drop)
    }

    fn set(pid: u32, soft: Option<u64>, hard: Option<u64>) -> Result<Rlimit, SqueezeError> {
        let target = i32::try_from(pid)
            .ok()
            .and_then(Pid::from_raw)
            .ok_or(SqueezeError::NotRunning { pid })?;
        let new = Rlimit {
            current: soft,
            maximum: hard,
        };
        rustix::process::prlimit(Some(target), Resource::As, new).map_err(|e| {
            SqueezeError::Denied {
                pid,
                source: e.into(),
            }
        })
    }

    /// The hard `RLIMIT_AS` (`prlimit` cannot read another process's limit
    /// without setting it): the `Max address space` line of `/proc/<pid>/limits`.
    fn hard_limit(pid: u32) -> Result<Option<u64>, SqueezeError> {
        let limits = read(pid, "limits")?;
        let hard = limits
            .lines()
            .find_map(|line| line.strip_prefix("Max address space"))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .ok_or_else(|| malformed(pid, "limits", "Max address space"))?;
        match hard {
            "unlimited" => Ok(None),
            bytes => bytes
                .parse()
                .map(Some)
                .map_err(|_| malformed(pid, "limits", "Max address space")),
        }
    }

    /// `/proc/<pid>/<file>`, once `/proc/<pid>/status` shows the pid is still
    /// a child of this process (so not a reused pid).
    fn read_ours(pid: u32, file: &str) -> Result<String, SqueezeError> {
        let status = read(pid, "status").map_err(|e| match e {
            SqueezeError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                SqueezeError::NotRunning { pid }
            }
            e => e,
        })?;
        if field(&status, "PPid:") != Some(&std::process::id().to_string()) {
            return Err(SqueezeError::NotRunning { pid });
        }
        if file == "status" {
            Ok(status)
        } else {
            read(pid, file)
        }
    }

    fn read(pid: u32, file: &str) -> Result<String, SqueezeError> {
        let path = PathBuf::from(format!("/proc/{pid}/{file}"));
        std::fs::read_to_string(&path).map_err(|source| SqueezeError::Io { path, source })
    }

    fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .map(str::trim)
    }

    fn malformed(pid: u32, file: &str, what: &'static str) -> SqueezeError {
        SqueezeError::Malformed {
            path: PathBuf::from(format!("/proc/{pid}/{file}")),
            what,
        }
    }
}

/// Everywhere else: [`SqueezeError::Unsupported`].
#[cfg(not(target_os = "linux"))]
mod address_space {
    use super::{MemorySqueeze, SqueezeError};

    fn unsupported() -> SqueezeError {
        SqueezeError::Unsupported {
            os: std::env::consts::OS,
        }
    }

    pub(super) fn vm_size(_pid: u32) -> Result<u64, SqueezeError> {
        Err(unsupported())
    }

    pub(super) fn squeeze(_pid: u32, _headroom: u64) -> Result<MemorySqueeze, SqueezeError> {
        Err(unsupported())
    }

    pub(super) fn squeeze_to(
        _pid: u32,
        _vm_size: u64,
        _limit: u64,
    ) -> Result<MemorySqueeze, SqueezeError> {
        Err(unsupported())
    }

    pub(super) fn relieve(_squeeze: &MemorySqueeze) -> Result<(), SqueezeError> {
        Err(unsupported())
    }
}
