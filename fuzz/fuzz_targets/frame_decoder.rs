//! The `frame_decoder` fuzz target: see `eventbus_fuzz::decoder`.
#![forbid(unsafe_code)]
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| eventbus_fuzz::decoder::run(data));
