//! Sends each argument as a word-count task and prints who counted what.
#![forbid(unsafe_code)]
use std::time::Duration;

use eventbus::{Body, Client, ClientOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::connect(ClientOptions::default()).await?;
    for (n, text) in std::env::args().skip(1).enumerate() {
        let body = Body::new(text).header("task-id", format!("t{n}"))?;
        let reply = client
            .request("jobs.word-count", body, Duration::from_secs(30))
            .await?;
        let words = String::from_utf8_lossy(reply.payload());
        println!("t{n}: {words} words, counted by {}", reply.source());
    }
    client.close().await;
    Ok(())
}
