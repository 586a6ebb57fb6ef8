//! Lays a binary's hot functions out together, from its build script.
//!
//! A running broker executes about 700 of its binary's functions, spread
//! over 3.4 MB of code; a bridge, about as many over as much. The kernel
//! maps the file's pages in around each page a fault touches (64 KiB at a
//! time), so those scattered functions kept 3.4 MiB of the binary
//! resident, and the pages the CPU runs through on each wake-up are as
//! scattered. A package's `hot-functions.txt`, beside its `build.rs`,
//! lists the functions its binary executes, the hottest first (`cargo
//! xtask hot-functions` writes it by running the binary under callgrind).
//! [`lay_out_first`] has the linker place them first, in that order: with
//! 10 clients connected 1.6 MiB of the broker's binary is resident
//! (`docs/performance.md`, "Hot functions first").
//!
//! Only where that is known to work: a release build for
//! `x86_64-unknown-linux-gnu` with Rust 1.90 or later and the toolchain's
//! own linker (LLD, that target's default since 1.90), with no linker
//! chosen in the environment or the flags. Elsewhere, or with
//! `EVENTBUS_PLAIN_LAYOUT` set, the binary is laid out as usual. A name the
//! binary does not have is skipped silently: the layout degrades, the build
//! never fails. Names carry a hash of their crate's build, so a list fits
//! its binary built alone from the lock file (`cargo build --release -p
//! <package>`, `cargo install --locked`), until a toolchain or dependency
//! update (`cargo xtask hot-functions --check`).
#![forbid(unsafe_code)]

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// The list, beside the calling package's `build.rs`.
pub const LIST: &str = "hot-functions.txt";

/// The environment variable that turns the layout off.
pub const PLAIN_LAYOUT_ENV: &str = "EVENTBUS_PLAIN_LAYOUT";

/// Called from a build script: lays binary `bin` of the calling package out
/// with the functions its [`LIST`] names first, where that applies (see the
/// crate's documentation); otherwise does nothing.
pub fn lay_out_first(bin: &str) {
    println!("cargo::rerun-if-changed={LIST}");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed={PLAIN_LAYOUT_ENV}");
    if !applies() {
        return;
    }
    let Some(dir) = env::var_os("CARGO_MANIFEST_DIR") else {
        return;
    };
    let list = PathBuf::from(dir).join(LIST);
    if !list.is_file() {
        return;
    }
    println!(
        "cargo::rustc-link-arg-bin={bin}=-Wl,--symbol-ordering-file={}",
        list.display()
    );
    println!("cargo::rustc-link-arg-bin={bin}=-Wl,--no-warn-symbol-ordering");
}

/// Whether this build links with LLD for the target the lists were made on.
fn applies() -> bool {
    let var = |name: &str| env::var(name).unwrap_or_default();
    var("TARGET") == "x86_64-unknown-linux-gnu"
        && var("PROFILE") == "release"
        && env::var_os(PLAIN_LAYOUT_ENV).is_none()
        // A linker, a linker flavour or link arguments of someone's choosing:
        // leave the link alone.
        && env::var_os("RUSTC_LINKER").is_none()
        && !var("CARGO_ENCODED_RUSTFLAGS").contains("link")
        && rustc_minor().is_some_and(|minor| minor >= 90)
}

/// The minor version of the compiler building this (`rustc -vV`).
fn rustc_minor() -> Option<u32> {
    let rustc = env::var_os("RUSTC")?;
    let out = Command::new(rustc).arg("-vV").output().ok()?;
    minor_of(&String::from_utf8(out.stdout).ok()?)
}

/// The minor version in `rustc -vV`'s output, for Rust 1.
fn minor_of(text: &str) -> Option<u32> {
    let release = text.lines().find_map(|l| l.strip_prefix("release: "))?;
    let mut parts = release.split('.');
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    (major == 1).then_some(minor)
}

#[cfg(test)]
mod tests {
    use super::minor_of;

    #[test]
    fn the_minor_version_is_read_from_rustc_vv() {
        let text =
            "rustc 1.95.0 (abc 2026-01-01)\nbinary: rustc\nrelease: 1.95.0\nLLVM version: 20.1\n";
        assert_eq!(minor_of(text), Some(95));
        assert_eq!(minor_of("release: 1.90.0-nightly\n"), Some(90));
        assert_eq!(minor_of("release: 2.0.0\n"), None);
        assert_eq!(minor_of("no release line\n"), None);
        assert_eq!(minor_of("release: x.y\n"), None);
    }
}
