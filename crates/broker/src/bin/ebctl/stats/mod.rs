//! `ebctl stats`: the broker's counters, as tables or as the stable JSON
//! document of `eventbus::BrokerStats` (field names in `docs/stats.md`).
#![forbid(unsafe_code)]

mod table;

use eventbus::Client;

use crate::cli::StatsArgs;
use crate::failure::Failure;
use crate::output;

/// Fetches a snapshot and prints it.
pub async fn run(client: &Client, args: &StatsArgs) -> Result<(), Failure> {
    let stats = client.stats().await?;
    let text = if args.json {
        serde_json::to_string_pretty(&stats)?
    } else {
        table::render(&stats)
    };
    output::line(text.trim_end())
}
