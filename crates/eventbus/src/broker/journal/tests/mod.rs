//! The journal's tests, on real files in temp dirs.

pub(crate) mod support;
