//! `cargo xtask demo`: runs the broker with collectors and subscribers as real
//! processes, to show the bus at work.
//!
//! Not available yet: the demo needs the broker and the collectors, which are
//! not built. Until they are, the command says so and fails, rather than
//! pretending to run.

use anyhow::{Result, bail};

/// Runs the demo.
pub fn run() -> Result<()> {
    bail!("demo not available yet: it needs the broker and the collectors, which are not built yet")
}
