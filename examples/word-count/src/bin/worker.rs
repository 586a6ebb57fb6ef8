//! A word-count worker: one of group `counters` on `jobs.word-count`; answers
//! each task with the number of words in its payload, echoing its `task-id`
//! header. `WORK_DELAY_MS` makes each task that slow.
#![forbid(unsafe_code)]
use std::time::Duration;

use eventbus::{Body, Client, ClientId, ClientOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let id = std::env::args().nth(1).unwrap_or_else(|| "worker".into());
    let delay = std::env::var("WORK_DELAY_MS").map_or(Ok(0), |ms| ms.parse())?;
    // The broker's socket from $EVENTBUS_SOCKET (or the default path).
    let client = Client::connect(ClientOptions::default().client_id(ClientId::new(&id)?)).await?;
    let mut tasks = client
        .queue_subscribe("jobs.word-count", "counters", 1)
        .await?;
    println!(r#"{{"event":"ready","pid":{}}}"#, std::process::id());
    while let Some(task) = tasks.next().await {
        let message = task.message();
        let task_id = message.headers().get("task-id").unwrap_or("-").to_owned();
        eprintln!("started {task_id}");
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let text = String::from_utf8_lossy(message.payload());
        let words = text.split_whitespace().count().to_string();
        task.reply(Body::new(words).header("task-id", task_id)?)?;
    }
    Ok(())
}
