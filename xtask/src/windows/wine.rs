//! Wine: the tools (installed when missing), a fresh prefix booted once per
//! run with its own persistent wineserver, and the `ProcessPrng` shim.
//!
//! **Invariant:** a [`Prefix`] leaves nothing running. Its wineserver is our
//! child (`wineserver -f -p`, foreground and persistent, so one boot serves
//! every step); [`Prefix::shut_down`] (or drop) runs `wineserver -k`, which
//! ends every Windows process of the prefix, and reaps the server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::process::{probe, run};

/// The Debian packages the suite needs: the cross C compiler (Rust's linker
/// for `x86_64-pc-windows-gnu`, and the shim's compiler) and Wine.
pub const PACKAGES: [&str; 3] = ["gcc-mingw-w64-x86-64", "wine", "wine64"];

/// The C compiler for the shim (and the linker rustc uses for the target).
const MINGW_GCC: &str = "x86_64-w64-mingw32-gcc";

/// How long a fresh prefix may take to boot (about 20 s on a 2-core machine).
const BOOT_DEADLINE: Duration = Duration::from_secs(240);

/// How long `wineserver -k`, and then the server, may take to end.
const KILL_DEADLINE: Duration = Duration::from_secs(10);

/// How often waits look at their deadline.
const POLL: Duration = Duration::from_millis(50);

/// The DLL Rust's standard library imports `ProcessPrng` from (Windows 10+).
pub const PRNG_DLL: &str = "bcryptprimitives.dll";

/// Source of the stand-in for [`PRNG_DLL`]: `ProcessPrng` over
/// `SystemFunction036` (`RtlGenRandom`), which every Wine has.
const PRNG_SHIM_SOURCE: &str = include_str!("prng_shim.c");

/// Makes sure `wine` and the mingw compiler are on the PATH, installing the
/// Debian packages when they are not. Fails, saying why, when they cannot be
/// installed: the suite never passes without having run.
pub fn ensure_tools() -> Result<()> {
    if tools_present() {
        return Ok(());
    }
    eprintln!(
        "wine or {MINGW_GCC} not found: installing {} with apt-get",
        PACKAGES.join(" ")
    );
    if !probe(Command::new("apt-get").arg("--version")) {
        bail!(
            "Wine and mingw-w64 are missing and there is no apt-get to install them; \
             install {} (or your system's equivalents) and run again",
            PACKAGES.join(" ")
        );
    }
    let mut update = Command::new("apt-get");
    update.args(["update", "-qq"]);
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(PACKAGES)
        .env("DEBIAN_FRONTEND", "noninteractive");
    run(&mut update)
        .and_then(|()| run(&mut install))
        .with_context(|| {
            format!(
                "cannot install Wine: `apt-get install {}` failed (root is needed)",
                PACKAGES.join(" ")
            )
        })?;
    if !tools_present() {
        bail!(
            "installed {} but `wine` or `{MINGW_GCC}` is still not on the PATH",
            PACKAGES.join(" ")
        );
    }
    Ok(())
}

fn tools_present() -> bool {
    probe(Command::new("wine").arg("--version")) && probe(Command::new(MINGW_GCC).arg("--version"))
}

/// The installed Wine's version line, e.g. `wine-8.0 (Debian 8.0~repack-4)`.
pub fn version() -> String {
    crate::process::output(
        Command::new("wine")
            .arg("--version")
            .env("WINEDEBUG", "-all"),
    )
    .map(|v| v.trim().to_owned())
    .unwrap_or_else(|_| "wine (version unknown)".to_owned())
}

/// A fresh Wine prefix with its wineserver running.
#[derive(Debug)]
pub struct Prefix {
    /// `WINEPREFIX`.
    dir: PathBuf,
    /// The persistent wineserver, our child.
    server: Option<Child>,
}

impl Prefix {
    /// Creates and boots a prefix in `dir` (which must not exist yet), with
    /// the server's output in `logs`.
    pub fn boot(dir: &Path, logs: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let server_log = logs.join("wineserver.log");
        let log = std::fs::File::create(&server_log)
            .with_context(|| format!("creating {}", server_log.display()))?;
        let mut server = Command::new("wineserver");
        env(&mut server, dir)
            .args(["-f", "-p"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let server = server.spawn().context("starting wineserver")?;
        let mut prefix = Self {
            dir: dir.to_owned(),
            server: Some(server),
        };

        // `wineboot` started before the server has made its directory
        // starts a server of its own, which finds ours holding the prefix's
        // lock and leaves, and then fails ("chdir to /tmp/wine-…/server-…:
        // No such file or directory"): wait until ours listens.
        prefix.wait_until_listening(&server_log)?;

        let boot_log = logs.join("wineboot.log");
        let log = std::fs::File::create(&boot_log)
            .with_context(|| format!("creating {}", boot_log.display()))?;
        let mut boot = prefix.command(Path::new("wineboot"));
        boot.arg("--init")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let mut boot = boot.spawn().context("starting wineboot")?;
        let until = Instant::now() + BOOT_DEADLINE;
        let status = loop {
            if let Some(status) = boot.try_wait()? {
                break status;
            }
            if Instant::now() >= until {
                let _ = boot.kill();
                let _ = boot.wait();
                bail!(
                    "wineboot did not finish within {BOOT_DEADLINE:?} (see {})",
                    boot_log.display()
                );
            }
            thread::sleep(POLL);
        };
        if !status.success() {
            let detail = prefix.diagnose_boot(logs);
            return Err(BootFailed {
                reason: format!("wineboot --init exited with {status}"),
                detail,
            }
            .into());
        }
        if !prefix.system32().is_dir() {
            return Err(BootFailed {
                reason: format!(
                    "wineboot exited 0 but {} does not exist",
                    prefix.system32().display()
                ),
                detail: tail(&boot_log),
            }
            .into());
        }
        if let Some(status) = prefix
            .server
            .as_mut()
            .and_then(|s| s.try_wait().ok().flatten())
        {
            prefix.server = None;
            bail!(
                "wineserver exited ({status}) during boot; see {}",
                server_log.display()
            );
        }
        Ok(prefix)
    }

    /// Waits up to [`LISTEN_DEADLINE`] for the server's socket, failing when
    /// the server exits first.
    fn wait_until_listening(&mut self, server_log: &Path) -> Result<()> {
        let until = Instant::now() + LISTEN_DEADLINE;
        loop {
            if server_socket_exists(&self.dir) {
                return Ok(());
            }
            if let Some(status) = self
                .server
                .as_mut()
                .and_then(|s| s.try_wait().ok().flatten())
            {
                self.server = None;
                return Err(BootFailed {
                    reason: format!("wineserver exited ({status}) before it listened"),
                    detail: tail(server_log),
                }
                .into());
            }
            if Instant::now() >= until {
                return Err(BootFailed {
                    reason: format!("wineserver made no socket within {LISTEN_DEADLINE:?}"),
                    detail: tail(server_log),
                }
                .into());
            }
            thread::sleep(POLL);
        }
    }

    /// Runs `wineboot --init` once more with Wine's error channels on
    /// (`WINEDEBUG=err+all`), so the failure's cause is in the report and not
    /// only in a log left on the machine; returns that run's last lines.
    fn diagnose_boot(&self, logs: &Path) -> String {
        let log_path = logs.join("wineboot-diagnose.log");
        let Ok(log) = std::fs::File::create(&log_path) else {
            return String::new();
        };
        let mut boot = self.command(Path::new("wineboot"));
        boot.arg("--init")
            .env("WINEDEBUG", "err+all,fixme-all")
            .stdin(Stdio::null());
        if let Ok(out) = log.try_clone() {
            boot.stdout(out).stderr(log);
        }
        if let Ok(mut child) = boot.spawn()
            && !wait_for(&mut child, BOOT_DEADLINE)
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        tail(&log_path)
    }

    /// `wine <exe>` in this prefix.
    pub fn command(&self, exe: &Path) -> Command {
        let mut cmd = Command::new("wine");
        env(&mut cmd, &self.dir).arg(exe);
        cmd
    }

    /// The prefix's `C:\windows\system32`.
    fn system32(&self) -> PathBuf {
        self.dir.join("drive_c/windows/system32")
    }

    /// Whether Wine provides `dll` (a prefix holds a stub of every built-in DLL
    /// in system32).
    pub fn has_dll(&self, dll: &str) -> bool {
        self.system32().join(dll).is_file()
    }

    /// Ends every process of the prefix and the server; fails when the server
    /// does not go within [`KILL_DEADLINE`] (it is killed then).
    pub fn shut_down(mut self) -> Result<()> {
        self.kill_server()
    }

    /// `wineserver -k` (which ends the prefix's processes), then waits for
    /// the server; one that lingers gets SIGTERM, then SIGKILL. Fails only
    /// when it had to be killed.
    fn kill_server(&mut self) -> Result<()> {
        let Some(mut server) = self.server.take() else {
            return Ok(());
        };
        let mut kill = Command::new("wineserver");
        env(&mut kill, &self.dir)
            .arg("-k")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Ok(mut kill) = kill.spawn()
            && !wait_for(&mut kill, KILL_DEADLINE)
        {
            let _ = kill.kill();
            let _ = kill.wait();
        }
        if wait_for(&mut server, KILL_DEADLINE) {
            return Ok(());
        }
        // Persistent servers do not always leave after `-k` once their
        // processes are gone; SIGTERM is their ordinary way out.
        eprintln!("wineserver still runs after `wineserver -k`: sending SIGTERM");
        #[cfg(unix)]
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_child(&server),
            rustix::process::Signal::TERM,
        );
        if wait_for(&mut server, KILL_DEADLINE) {
            return Ok(());
        }
        let _ = server.kill();
        let _ = server.wait();
        bail!(
            "wineserver ignored `wineserver -k` and SIGTERM for {KILL_DEADLINE:?} each; killed it"
        );
    }
}

/// How long a fresh wineserver may take to make its socket.
const LISTEN_DEADLINE: Duration = Duration::from_secs(30);

/// Whether the wineserver of `prefix` listens: its socket is
/// `<tmp>/<dir>/server-<dev>-<inode>/socket`, with the prefix's device and
/// inode in hex, under a `.wine-<uid>` directory (upstream) or a random
/// `wine-XXXXXX` one (Debian).
#[cfg(unix)]
fn server_socket_exists(prefix: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(meta) = std::fs::metadata(prefix) else {
        return false;
    };
    let server = format!("server-{:x}-{:x}", meta.dev(), meta.ino());
    let Ok(entries) = std::fs::read_dir("/tmp") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        (name.starts_with("wine-") || name.starts_with(".wine-"))
            && entry.path().join(&server).join("socket").exists()
    })
}

/// Wine runs on Unix only; elsewhere there is no server to wait for.
#[cfg(not(unix))]
fn server_socket_exists(_prefix: &Path) -> bool {
    true
}

/// Wine could not boot a fresh prefix on this machine: the emulator failed
/// before any of the project's code ran. `cargo xtask windows` fails on it;
/// the gate reports it as a warning (see `crate::ci`), since the Windows
/// build itself has already been compiled and linked by then.
#[derive(Debug)]
pub struct BootFailed {
    /// What went wrong, in one line.
    pub reason: String,
    /// The last lines Wine printed with its error channels on.
    pub detail: String,
}

impl std::fmt::Display for BootFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Wine cannot boot a prefix here: {}", self.reason)?;
        if !self.detail.is_empty() {
            write!(f, "\nwine printed:\n{}", self.detail)?;
        }
        Ok(())
    }
}

impl std::error::Error for BootFailed {}

/// How many of a log's last lines a report quotes.
const TAIL_LINES: usize = 25;

/// The last [`TAIL_LINES`] lines of the file at `path` (empty when unreadable).
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

/// Waits up to `deadline` for `child` to exit (reaping it); false when it
/// still runs.
fn wait_for(child: &mut Child, deadline: Duration) -> bool {
    let until = Instant::now() + deadline;
    loop {
        if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        thread::sleep(POLL);
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        if let Err(error) = self.kill_server() {
            eprintln!("warning: {error:#}");
        }
    }
}

/// The environment of every Wine command: this prefix, 64-bit only, no debug
/// channels, no Mono or Gecko installers, no display (console programs only).
fn env<'a>(cmd: &'a mut Command, prefix: &Path) -> &'a mut Command {
    cmd.env("WINEPREFIX", prefix)
        .env("WINEARCH", "win64")
        .env("WINEDEBUG", "-all")
        .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
}

/// Compiles the `ProcessPrng` shim as `<dir>/bcryptprimitives.dll`, next to
/// the executables that import it. Test scaffolding: it only ever lives in the
/// suite's temporary directory.
pub fn build_prng_shim(dir: &Path) -> Result<PathBuf> {
    let source = dir.join("prng_shim.c");
    std::fs::write(&source, PRNG_SHIM_SOURCE)
        .with_context(|| format!("writing {}", source.display()))?;
    let dll = dir.join(PRNG_DLL);
    let mut gcc = Command::new(MINGW_GCC);
    gcc.args(["-shared", "-O2", "-s", "-o"])
        .arg(&dll)
        .arg(&source)
        .arg("-ladvapi32");
    run(&mut gcc).context("building the ProcessPrng shim")?;
    Ok(dll)
}

/// Command lines of the processes, other than this one, that mention
/// `needle` on their command line: for the check that a run left nothing.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    processes_where(|pid| {
        let line = read_nul_separated(pid, "cmdline")?;
        line.contains(needle).then_some(line)
    })
}

/// Command lines of the processes whose environment has `WINEPREFIX=<prefix>`:
/// the prefix's Windows processes and its wineserver.
pub fn processes_with_prefix(prefix: &Path) -> Vec<String> {
    let entry = format!("WINEPREFIX={}", prefix.display());
    processes_where(|pid| {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        environ
            .split(|&b| b == 0)
            .any(|var| var == entry.as_bytes())
            .then(|| read_nul_separated(pid, "cmdline").unwrap_or_default())
    })
}

/// `"<pid> <description>"` for each process (but this one) `describe` describes.
fn processes_where(describe: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let own = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|pid| *pid != own && pid.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|pid| describe(&pid).map(|text| format!("{pid} {text}")))
        .collect()
}

/// `/proc/<pid>/<file>` with its NUL separators as spaces.
fn read_nul_separated(pid: &str, file: &str) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/{file}")).ok()?;
    Some(
        String::from_utf8_lossy(&raw)
            .replace('\0', " ")
            .trim()
            .to_owned(),
    )
}
