//! Finding the `broker` and `mock-collector` binaries the scenarios run.
//!
//! Cargo tells a test where the binaries of its *own* package are
//! (`CARGO_BIN_EXE_<name>`), but these two belong to other packages, so each
//! is resolved in this order:
//!
//! 1. **Overrides:** `EVENTBUS_BROKER_BIN` and `EVENTBUS_COLLECTOR_BIN`, used as
//!    given (each on its own). Set both when the tests run from a nextest
//!    archive (`cargo nextest archive`, then `run --archive-file`), where there
//!    may be no cargo and no sources to build from: archive the binaries next to
//!    the tests and point the variables at them.
//! 2. **Build once:** otherwise the first use in a test process runs
//!    `$CARGO build -p broker -p mock-collector` (`cargo` when `CARGO` is unset)
//!    for the profile, target triple and target directory of the running test.
//!    The build inherits the whole environment (`RUSTFLAGS`, `CARGO_TARGET_DIR`,
//!    `LLVM_PROFILE_FILE`, ...), so under cargo-llvm-cov the binaries are
//!    instrumented like the tests. A plain `cargo nextest run` from a clean
//!    checkout therefore needs no pre-build. Nextest runs every test in its own
//!    process: an exclusive lock on `<target>/e2e-build.lock` (std
//!    [`File::lock`](std::fs::File::lock)) lets one of them build while the
//!    others wait and then find everything fresh (a no-op build); a
//!    [`OnceLock`] makes it once per process under `cargo test` too.
//! 3. **Locate:** the binaries are then in `<target>/[<triple>/]<profile>/`,
//!    derived from the test's own path, [`std::env::current_exe`], which is
//!    `<target>/[<triple>/]<profile>/deps/<test>-<hash>`.
//!
//! Every failure here panics with what was tried: these functions run inside
//! tests, where that is the most useful report.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Environment variable overriding the path of the `broker` binary.
pub const BROKER_BIN_ENV: &str = "EVENTBUS_BROKER_BIN";
/// Environment variable overriding the path of the `mock-collector` binary.
pub const COLLECTOR_BIN_ENV: &str = "EVENTBUS_COLLECTOR_BIN";

/// The path of the `broker` binary (see the module doc for how it is found).
pub fn broker_bin() -> PathBuf {
    resolve(BROKER_BIN_ENV, "broker")
}

/// The path of the `mock-collector` binary (see the module doc for how it is found).
pub fn collector_bin() -> PathBuf {
    resolve(COLLECTOR_BIN_ENV, "mock-collector")
}

fn resolve(env: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{env}={} does not name a file",
            path.display()
        );
        return path;
    }
    let layout = built();
    let path = layout
        .output_dir
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing after `cargo build -p broker -p mock-collector`; set {env} to its path",
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

    /// `cargo build` arguments that build into this layout.
    fn build_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = ["build", "-p", "broker", "-p", "mock-collector"]
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

/// Builds the binaries once per process, under the cross-process lock.
fn built() -> &'static Layout {
    static BUILT: OnceLock<Layout> = OnceLock::new();
    BUILT.get_or_init(|| {
        let exe = std::env::current_exe().expect("the path of the running test");
        let layout = Layout::from_test_exe(&exe).unwrap_or_else(|| {
            panic!(
                "cannot find the target directory from {}: expected \
                 <target>/<profile>/deps/<test>; set {BROKER_BIN_ENV} and {COLLECTOR_BIN_ENV}",
                exe.display()
            )
        });
        let lock = lock_file(&layout.target_dir);
        build(&layout);
        drop(lock);
        layout
    })
}

/// Takes the exclusive build lock; it is released when the file is closed.
fn lock_file(target_dir: &Path) -> File {
    let path = target_dir.join("e2e-build.lock");
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

fn build(layout: &Layout) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let args = layout.build_args();
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

/// The directory to run cargo in: this package's, at run time when cargo or
/// nextest says where it is (archives remap it), else where it was built.
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
            .build_args()
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
