//! `broker`: the eventbus broker daemon.
#![forbid(unsafe_code)]

fn main() -> anyhow::Result<()> {
    anyhow::bail!("the broker is not built yet (issue: broker and client across processes)")
}
