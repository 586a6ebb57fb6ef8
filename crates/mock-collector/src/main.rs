//! `mock-collector`: a collector process that does real, light collection work.
#![forbid(unsafe_code)]

fn main() -> anyhow::Result<()> {
    anyhow::bail!("mock-collector is not built yet (issue: mock-collector)")
}
