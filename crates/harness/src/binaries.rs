//! Finding (or building, once) the binaries a test runs: the `broker`, or any
//! binary of a package in the test's own cargo workspace (a worker, a
//! collector).
//!
//! Cargo tells a test where the binaries of its *own* package are
//! (`CARGO_BIN_EXE_<name>`), but not those of other packages, so each is
//! resolved in this order:
//!
//! 1. **Override:** an environment variable naming the file (for the broker,
//!    `EVENTBUS_BROKER_BIN`), used as given. Set it when the tests run from a
//!    nextest archive (`cargo nextest archive`, then `run --archive-file`),
//!    where there may be no cargo and no sources to build from: archive the
//!    binaries next to the tests and point the variables at them.
//! 2. **Build once:** otherwise the first use in a test process runs
//!    `$CARGO build -p <package> --bin <bin>` (`cargo` when `CARGO` is unset)
//!    for the profile, target triple and target directory of the running test.
//!    The build inherits the whole environment (`RUSTFLAGS`, `CARGO_TARGET_DIR`,
//!    `LLVM_PROFILE_FILE`, ...), so under cargo-llvm-cov the binaries are
//!    instrumented like the tests. A plain `cargo nextest run` from a clean
//!    checkout therefore needs no pre-build. Nextest runs every test in its own
//!    process: an exclusive lock on `<target>/eventbus-harness-build.lock` (std
//!    [`File::lock`](std::fs::File::lock)) lets one of them build while the
//!    others wait and then find everything fresh (a no-op build); a
//!    [`OnceLock`] per binary makes it once per process under `cargo test` too.
//! 3. **Locate:** the binaries are then in `<target>/[<triple>/]<profile>/`,
//!    derived from the test's own path, [`std::env::current_exe`], which is
//!    `<target>/[<triple>/]<profile>/deps/<test>-<hash>`.
//!
//! Every failure here panics with what was tried: these functions run inside
//! tests, where that is the most useful report.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// Environment variable overriding the path of the `broker` binary.
pub const BROKER_BIN_ENV: &str = "EVENTBUS_BROKER_BIN";

/// The path of the `broker` binary of package `broker` (see the module doc
/// for how it is found). Outside this project's workspace, set
/// [`BROKER_BIN_ENV`], or use an embedded broker
/// ([`Cluster::embedded`](crate::Cluster::embedded)).
pub fn broker_bin() -> PathBuf {
    workspace_bin("broker", "broker", BROKER_BIN_ENV)
}

/// The path of binary `bin` of package `package` in the running test's cargo
/// workspace, or of the file `env` names when that variable is set (see the
/// module doc).
///
/// ```no_run
/// let worker = eventbus_harness::binaries::workspace_bin("my-app", "worker", "MY_APP_WORKER_BIN");
/// ```
pub fn workspace_bin(package: &str, bin: &str, env: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{env}={} does not name a file",
            path.display()
        );
        return path;
    }
    let layout = built(package, bin);
    let path = layout
        .output_dir
        .join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing after `cargo build -p {package} --bin {bin}`; set {env} to its path",
        path.display()
    );
    path
}

/// Where the running test was built, and so where the binaries go.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    /// The cargo target directory (`--target-dir`).
    target_dir: PathBuf,
    /// The target triple, when the test was built with `--target`.
    triple: Option<String>,
    /// The cargo profile (`--profile`).
    profile: String,
    /// `<target>/[<triple>/]<profile-dir>`: where binaries land.
    output_dir: PathBuf,
}

impl Layout {
    /// Reads the layout from a test executable's path,
    /// `<target>/[<triple>/]<profile-dir>/deps/<test>-<hash>`.
    ///
    /// A directory is the target root when it holds `.rustc_info.json`, which
    /// cargo writes only there; otherwise the level above the profile directory
    /// is a target triple.
    fn from_test_exe(exe: &Path) -> Option<Self> {
        let deps = exe.parent()?;
        if deps.file_name()? != "deps" {
            return None;
        }
        let output_dir = deps.parent()?;
        let profile_dir = output_dir.file_name()?.to_str()?;
        let above = output_dir.parent()?;
        let (target_dir, triple) = if above.join(".rustc_info.json").is_file() {
            (above, None)
        } else {
            match above.parent() {
                Some(root) if root.join(".rustc_info.json").is_file() => {
                    (root, Some(above.file_name()?.to_str()?.to_owned()))
                }
                _ => (above, None),
            }
        };
        Some(Self {
            target_dir: target_dir.to_owned(),
            triple,
            profile: profile_name(profile_dir).to_owned(),
            output_dir: output_dir.to_owned(),
        })
    }

    /// `cargo build` arguments that build `bin` of `package` into this layout.
    fn build_args(&self, package: &str, bin: &str) -> Vec<OsString> {
        let mut args: Vec<OsString> = ["build", "-p", package, "--bin", bin]
            .map(OsString::from)
            .into();
        args.extend(["--profile".into(), self.profile.clone().into()]);
        args.extend(["--target-dir".into(), self.target_dir.clone().into()]);
        if let Some(triple) = &self.triple {
            args.extend(["--target".into(), triple.clone().into()]);
        }
        args
    }
}

/// The profile that writes into a profile directory: `dev` and `test` write
/// `debug`, `release` and `bench` write `release`, custom profiles their name.
fn profile_name(dir: &str) -> &str {
    match dir {
        "debug" => "dev",
        other => other,
    }
}

/// Builds `bin` of `package` once per process, under the cross-process lock.
fn built(package: &str, bin: &str) -> Layout {
    static BUILT: OnceLock<Mutex<HashMap<(String, String), Layout>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let key = (package.to_owned(), bin.to_owned());
    if let Some(layout) = built.get(&key) {
        return layout.clone();
    }
    let exe = std::env::current_exe().expect("the path of the running test");
    let layout = Layout::from_test_exe(&exe).unwrap_or_else(|| {
        panic!(
            "cannot find the target directory from {}: expected \
             <target>/<profile>/deps/<test>; set the binary's environment variable",
            exe.display()
        )
    });
    let lock = lock_file(&layout.target_dir);
    build(&layout, package, bin);
    drop(lock);
    built.insert(key, layout.clone());
    layout
}

/// Takes the exclusive build lock; it is released when the file is closed.
fn lock_file(target_dir: &Path) -> File {
    let path = target_dir.join("eventbus-harness-build.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    file.lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", path.display()));
    file
}

fn build(layout: &Layout, package: &str, bin: &str) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let args = layout.build_args(package, bin);
    let output = Command::new(&cargo)
        .args(&args)
        .current_dir(workspace_dir())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cargo.to_string_lossy()));
    assert!(
        output.status.success(),
        "`{} {}` failed ({}):\n{}",
        cargo.to_string_lossy(),
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The directory to run cargo in: the running test's package, at run time
/// when cargo or nextest says where it is (archives remap it), else this
/// crate's, where it was built.
fn workspace_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_a_host_build() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join(".rustc_info.json"), "{}").unwrap();
        let exe = root.path().join("debug/deps/scenarios-0123abcd");
        let layout = Layout::from_test_exe(&exe).unwrap();
        assert_eq!(layout.target_dir, root.path());
        assert_eq!(layout.triple, None);
        assert_eq!(layout.profile, "dev");
        assert_eq!(layout.output_dir, root.path().join("debug"));
    }

    #[test]
    fn layout_of_a_cross_build_with_a_custom_profile() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join(".rustc_info.json"), "{}").unwrap();
        let exe = root
            .path()
            .join("x86_64-unknown-linux-musl/ci-fast/deps/scenarios-0123abcd");
        let layout = Layout::from_test_exe(&exe).unwrap();
        assert_eq!(layout.target_dir, root.path());
        assert_eq!(layout.triple.as_deref(), Some("x86_64-unknown-linux-musl"));
        assert_eq!(layout.profile, "ci-fast");
        let args: Vec<String> = layout
            .build_args("broker", "broker")
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert!(args.windows(2).any(|w| w == ["--profile", "ci-fast"]));
        assert!(
            args.windows(2)
                .any(|w| w == ["--target", "x86_64-unknown-linux-musl"])
        );
    }

    #[test]
    fn a_path_outside_deps_is_not_a_layout() {
        assert_eq!(Layout::from_test_exe(Path::new("/usr/bin/true")), None);
    }
}
