//! `ebctl stats`: the broker's counters, as tables or as a stable JSON document.
#![forbid(unsafe_code)]

mod document;
mod table;

use eventbus::Client;

use crate::cli::StatsArgs;
use crate::failure::Failure;
use crate::output;
use document::StatsDocument;

/// Fetches a snapshot and prints it.
pub async fn run(client: &Client, args: &StatsArgs) -> Result<(), Failure> {
    let stats = StatsDocument::from(client.stats().await?);
    let text = if args.json {
        serde_json::to_string_pretty(&stats)?
    } else {
        table::render(&stats)
    };
    output::line(text.trim_end())
}
