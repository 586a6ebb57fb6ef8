//! `ebctl publish`: confirmed publishes, one after another.
#![forbid(unsafe_code)]

use eventbus::{Body, Client, Topic};
use serde::Serialize;

use crate::cli::PublishArgs;
use crate::failure::Failure;
use crate::output;

/// What `ebctl publish --json` prints.
#[derive(Debug, Serialize)]
struct PublishedJson<'a> {
    /// The topic published on.
    topic: &'a str,
    /// How many messages the broker accepted.
    published: u64,
    /// Their message ids, in order (for `cancel` and for tracing).
    ids: &'a [u64],
}

/// Publishes `args.count` messages on `topic`, each confirmed by the broker,
/// then prints how many were published (also when one fails).
pub async fn run(
    client: &Client,
    topic: &Topic,
    body: Body,
    args: &PublishArgs,
) -> Result<(), Failure> {
    let mut ids = Vec::new();
    let mut failure = None;
    for n in 0..args.count {
        match client.publish_confirmed(topic, body.clone()).await {
            Ok(id) => ids.push(id),
            Err(e) => {
                failure = Some(Failure::operational(format!(
                    "publish {} of {} to {topic} failed: {e}",
                    n + 1,
                    args.count
                )));
                break;
            }
        }
    }
    let published = ids.len() as u64;
    output::line(&if args.json {
        serde_json::to_string(&PublishedJson {
            topic: topic.as_str(),
            published,
            ids: &ids,
        })?
    } else {
        format!("published {published}")
    })?;
    failure.map_or(Ok(()), Err)
}
