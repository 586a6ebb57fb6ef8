//! The journal's tests, on real files in temp dirs.

mod compaction;
pub(crate) mod model;
mod roundtrip;
pub(crate) mod support;
mod torn;
