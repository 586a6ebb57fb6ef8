//! `ebctl publish`: confirmed publishes, one after another.
#![forbid(unsafe_code)]

use bytes::Bytes;
use eventbus::{Client, Topic};

use crate::cli::PublishArgs;
use crate::failure::Failure;
use crate::output;

/// Publishes `args.count` messages on `topic`, each confirmed by the broker,
/// then prints how many were published.
pub async fn run(client: &Client, topic: &Topic, args: &PublishArgs) -> Result<(), Failure> {
    let payload = Bytes::from(args.payload.clone());
    for n in 0..args.count {
        if let Err(e) = client.publish_confirmed(topic, payload.clone()).await {
            output::line(&format!("published {n}"))?;
            return Err(Failure::operational(format!(
                "publish {} of {} to {topic} failed: {e}",
                n + 1,
                args.count
            )));
        }
    }
    output::line(&format!("published {}", args.count))?;
    Ok(())
}
