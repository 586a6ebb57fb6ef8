//! The `journal` fuzz target: see `eventbus_fuzz::journal`.
#![forbid(unsafe_code)]
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| eventbus_fuzz::journal::run(data));
