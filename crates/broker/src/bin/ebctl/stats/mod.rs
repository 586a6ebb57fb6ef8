//! `ebctl stats`: the broker's counters, as tables or as the stable JSON
//! document of `eventbus::BrokerStats` (field names in `docs/stats.md`).
#![forbid(unsafe_code)]

mod table;

use eventbus::Client;

use crate::cli::StatsArgs;
use crate::failure::Failure;
use crate::output;

/// Fetches a snapshot and prints it; with `--watch`, every interval until
/// interrupted or `--count` snapshots.
pub async fn run(client: &Client, args: &StatsArgs) -> Result<(), Failure> {
    let Some(every) = args.watch else {
        let stats = client.stats().await?;
        let text = if args.json {
            serde_json::to_string_pretty(&stats)?
        } else {
            table::render(&stats)
        };
        return output::line(text.trim_end());
    };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut printed = 0;
    while args.count.is_none_or(|count| printed < count) {
        ticks.tick().await;
        let stats = client.stats().await?;
        let text = if args.json {
            // One document per line, for `jq` and friends.
            serde_json::to_string(&stats)?
        } else {
            format!("{}\n", table::render(&stats).trim_end())
        };
        output::line(&text)?;
        printed += 1;
    }
    Ok(())
}
