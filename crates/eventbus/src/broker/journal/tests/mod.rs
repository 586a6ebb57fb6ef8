//! The journal's tests, on real files in temp dirs.

mod compaction;
mod crashes;
mod disk_full;
mod group_commit;
pub(crate) mod model;
mod roundtrip;
pub(crate) mod support;
mod torn;
