//! The `deliver_scan` fuzz target: see `eventbus_fuzz::scanners`.
#![forbid(unsafe_code)]
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| eventbus_fuzz::scanners::deliver(data));
