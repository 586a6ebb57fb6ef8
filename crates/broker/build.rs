//! Lays the broker's hot functions out together.
//!
//! A running broker executes about 700 of the binary's functions, spread
//! over its 3.4 MB of code. The kernel maps the file's pages in around
//! each page a fault touches (64 KiB at a time), so those scattered
//! functions kept 3.4 MiB of the binary resident, and the pages the CPU
//! runs through on each wake-up are as scattered. `hot-functions.txt`
//! lists the functions a broker executes, the hottest first (`cargo xtask
//! hot-functions` writes it by running a broker under callgrind). The
//! linker places them first, in that order, and with 10 clients connected
//! 1.6 MiB of the binary is resident (`docs/performance.md`, "Hot
//! functions first").
//!
//! Only where that is known to work: a release build for
//! `x86_64-unknown-linux-gnu` with Rust 1.90 or later and the toolchain's
//! own linker (LLD, that target's default since 1.90), with no linker
//! chosen in the environment or the flags. Elsewhere, or with
//! `EVENTBUS_PLAIN_LAYOUT` set, the binary is laid out as usual. A name the
//! binary does not have is skipped silently: the layout degrades, the build
//! never fails. Names carry a hash of their crate's build, so the list fits
//! the broker built alone from the lock file (`cargo build --release -p
//! broker`, `cargo install --locked`), until a toolchain or dependency
//! update (`cargo xtask hot-functions --check`).
#![forbid(unsafe_code)]

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// The list, beside this file.
const LIST: &str = "hot-functions.txt";

fn main() {
    println!("cargo::rerun-if-changed={LIST}");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=EVENTBUS_PLAIN_LAYOUT");
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
        "cargo::rustc-link-arg-bin=broker=-Wl,--symbol-ordering-file={}",
        list.display()
    );
    println!("cargo::rustc-link-arg-bin=broker=-Wl,--no-warn-symbol-ordering");
}

/// Whether this build links with LLD for the target the list was made on.
fn applies() -> bool {
    let var = |name: &str| env::var(name).unwrap_or_default();
    var("TARGET") == "x86_64-unknown-linux-gnu"
        && var("PROFILE") == "release"
        && env::var_os("EVENTBUS_PLAIN_LAYOUT").is_none()
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
    let text = String::from_utf8(out.stdout).ok()?;
    let release = text.lines().find_map(|l| l.strip_prefix("release: "))?;
    let mut parts = release.split('.');
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    (major == 1).then_some(minor)
}
