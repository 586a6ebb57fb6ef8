//! Building the project's binaries and finding them.
//!
//! Cargo reports where it put each executable (`--message-format=json`), so the
//! paths are right whatever the target directory: `CARGO_TARGET_DIR`,
//! `build.target-dir` in a config file, or `<workspace root>/target`, and
//! whatever the target triple.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde_json::Value;

use crate::process::{cargo, output};

/// The packages the demo builds; each has a binary of the same name.
const DEMO_PACKAGES: [&str; 2] = ["broker", "mock-collector"];

/// Paths of the binaries the demo runs.
#[derive(Debug)]
pub struct Binaries {
    /// The broker daemon.
    pub broker: PathBuf,
    /// The collector.
    pub collector: PathBuf,
}

/// Builds the broker and the collector in release mode (diagnostics and
/// progress on stderr as usual) and returns where cargo put them.
pub fn build(root: &Path) -> Result<Binaries> {
    let built = build_packages(root, &DEMO_PACKAGES, &["--release"])?;
    Ok(Binaries {
        broker: find(&built, "broker")?,
        collector: find(&built, "mock-collector")?,
    })
}

/// `cargo build` of every binary of `packages` with `extra` arguments (a
/// profile, a `--target`); returns executable paths by binary name.
pub fn build_packages(
    root: &Path,
    packages: &[&str],
    extra: &[&str],
) -> Result<BTreeMap<String, PathBuf>> {
    let mut cmd = cargo();
    cmd.current_dir(root)
        .args([
            "build",
            "--bins",
            "--message-format=json-render-diagnostics",
        ])
        .args(extra);
    for package in packages {
        cmd.args(["-p", package]);
    }
    eprintln!(
        "$ cargo build --bins {} -p {} --message-format=json-render-diagnostics",
        extra.join(" "),
        packages.join(" -p ")
    );
    Ok(executables(&output(&mut cmd)?))
}

/// The executable `name` among those cargo built.
pub fn find(built: &BTreeMap<String, PathBuf>, name: &str) -> Result<PathBuf> {
    built
        .get(name)
        .cloned()
        .with_context(|| format!("cargo built no `{name}` executable"))
}

/// Executable paths by target name, from cargo's JSON messages (one per line;
/// other lines are ignored).
fn executables(messages: &str) -> BTreeMap<String, PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .filter_map(|message| {
            let name = message["target"]["name"].as_str()?.to_owned();
            let path = message["executable"].as_str()?;
            Some((name, PathBuf::from(path)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executables_come_from_compiler_artifacts() {
        let messages = [
            r#"{"reason":"compiler-artifact","target":{"name":"eventbus"},"executable":null}"#,
            r#"{"reason":"compiler-artifact","target":{"name":"broker"},"executable":"/t/release/broker"}"#,
            r#"{"reason":"compiler-message","target":{"name":"ebctl"},"executable":"/x"}"#,
            "not json",
            r#"{"reason":"build-finished","success":true}"#,
        ]
        .join("\n");
        let found = executables(&messages);
        assert_eq!(found.len(), 1);
        assert_eq!(found["broker"], PathBuf::from("/t/release/broker"));
        assert!(find(&found, "ebctl").is_err());
    }
}
