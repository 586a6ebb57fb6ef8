//! The monitor (`broker --http`) against real processes: the JSON API
//! (`api`), `/metrics` (`metrics`), the live channel (`live`), and the
//! dashboard in headless Chromium (`browser`, over `cdp`). `support` has
//! the cluster with a monitor and a minimal HTTP client.
#![cfg(target_os = "linux")]
#![forbid(unsafe_code)]

mod api;
mod browser;
mod cdp;
mod live;
mod metrics;
mod support;
