//! The journal's tests, on real files in temp dirs.

mod roundtrip;
pub(crate) mod support;
mod torn;
