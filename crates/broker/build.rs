//! The broker's hot functions first: `hot-functions.txt`, beside this
//! file, written by `cargo xtask hot-functions` (the `hot-layout` crate
//! says where it applies and why).
#![forbid(unsafe_code)]

fn main() {
    hot_layout::lay_out_first("broker");
}
