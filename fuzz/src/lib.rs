//! The fuzz targets' code: each target in `fuzz_targets/` is one call into
//! a module here, so the checks can be read (and the seeds written) without
//! libFuzzer. See `README.md`.
//!
//! - [`decoder`]: `frame_decoder`, `FrameCodec` on any bytes cut anywhere;
//! - [`scanners`]: `broker_scan` and `deliver_scan`, the hand-written
//!   readers and writers of messages against prost;
//! - [`router`]: `router`, command sequences from several fake connections
//!   into the router, read as a [`script`];
//! - [`journal`]: `journal`, data directories of any segment files opened
//!   as the broker opens its journal;
//! - [`input`]: reading an input as small values (and writing one).
//!
//! Needs `--cfg fuzzing` (cargo-fuzz sets it), which opens
//! `eventbus::fuzzing`.
#![forbid(unsafe_code)]

pub mod decoder;
pub mod input;
pub mod journal;
pub mod router;
pub mod scanners;
pub mod script;
