//! The `router` fuzz target: see `eventbus_fuzz::router`.
#![forbid(unsafe_code)]
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| eventbus_fuzz::router::run(data));
