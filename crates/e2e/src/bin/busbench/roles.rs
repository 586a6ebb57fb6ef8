//! Bus-side roles: a responder, a sequential requester, a publisher and a subscriber.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eventbus::{Client, ClientOptions, Topic};
use hdrhistogram::Histogram;

/// Arguments shared by the round-trip roles.
#[derive(Debug, clap::Args)]
pub struct RttArgs {
    /// Socket to connect to.
    #[arg(long)]
    pub socket: PathBuf,
    /// Measured round trips.
    #[arg(long, default_value_t = 20_000)]
    pub count: u64,
    /// Round trips before measuring.
    #[arg(long, default_value_t = 1_000)]
    pub warmup: u64,
    /// Payload bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Topic the requests go to (a `responder` answers on the same one).
    #[arg(long, default_value = "bench.rtt")]
    pub topic: String,
    /// Retry failed requests (for a responder still reconnecting) instead of failing.
    #[arg(long)]
    pub retry: bool,
    /// Also print every measured round trip (`samples_ns`), for a caller
    /// that merges several runs.
    #[arg(long)]
    pub samples: bool,
}

pub use e2e::bench::{Recorder, histogram, ready, summary};

/// Prints percentiles in microseconds as one JSON line.
pub fn report_histogram(h: &Histogram<u64>) {
    println!("{}", summary(h));
}

pub async fn connect(socket: &Path) -> anyhow::Result<Client> {
    // The same reconnect cap as the mock collectors, so restart figures match theirs.
    let reconnect = eventbus::ReconnectPolicy {
        max: Duration::from_millis(250),
        ..eventbus::ReconnectPolicy::default()
    };
    Ok(Client::connect(
        ClientOptions::new(socket)
            .kind("bench")
            .reconnect(reconnect),
    )
    .await?)
}

/// Arguments of `busbench responder`.
#[derive(Debug, clap::Args)]
pub struct ResponderArgs {
    /// Socket to connect to.
    #[arg(long)]
    pub socket: PathBuf,
    /// Topic to answer on.
    #[arg(long, default_value = "bench.rtt")]
    pub topic: String,
    /// Answer as a member of queue group `responders` (prefetch 1), with a
    /// reply that is also the ack, as collectors do; without it, a plain
    /// subscription answers with `Client::reply`.
    #[arg(long)]
    pub queue: bool,
}

/// Answers every request on its topic with the request's own payload.
pub async fn responder(args: &ResponderArgs) -> anyhow::Result<()> {
    let client = connect(&args.socket).await?;
    if args.queue {
        let mut requests = client
            .queue_subscribe(args.topic.as_str(), "responders", 1)
            .await?;
        ready();
        while let Some(d) = requests.next().await {
            d.reply(d.message().payload().clone())?;
        }
    } else {
        let mut requests = client.subscribe(args.topic.as_str()).await?;
        ready();
        while let Some(m) = requests.next().await {
            client.reply(&m, m.payload().clone())?;
        }
    }
    Ok(())
}

pub async fn rtt(args: &RttArgs) -> anyhow::Result<()> {
    let client = connect(&args.socket).await?;
    let topic = Topic::new(&args.topic)?;
    let payload = bytes::Bytes::from(vec![7u8; args.size]);
    let mut recorder = Recorder::new(args.count, args.samples);
    for i in 0..args.warmup + args.count {
        let start = Instant::now();
        loop {
            match client
                .request(&topic, payload.clone(), Duration::from_secs(5))
                .await
            {
                Ok(_) => break,
                // A responder still reconnecting after a broker restart.
                Err(_) if args.retry => tokio::time::sleep(Duration::from_millis(1)).await,
                Err(e) => return Err(e.into()),
            }
        }
        if i >= args.warmup {
            recorder.record(start.elapsed())?;
        }
    }
    recorder.report();
    Ok(())
}

/// Counts messages on `bench.stream` until COUNT, or a second of silence.
pub async fn sub(socket: &Path, count: u64) -> anyhow::Result<()> {
    let client = connect(socket).await?;
    let mut stream = client.subscribe("bench.stream").await?;
    ready();
    let mut first = None;
    let mut got = 0u64;
    let mut last = Instant::now();
    // Stop at COUNT, or after a second of silence once the stream has started
    // (messages dropped for a slow subscriber never arrive). The deadline moves
    // every 1024 messages, so the clock is not read per message.
    let silence = tokio::time::sleep(Duration::from_secs(60));
    tokio::pin!(silence);
    while got < count {
        tokio::select! {
            biased;
            m = stream.next() => {
                if m.is_none() {
                    break;
                }
                if first.is_none() {
                    first = Some(Instant::now());
                }
                got += 1;
                if got.is_multiple_of(1024) || got == count {
                    last = Instant::now();
                    silence.as_mut().reset((last + Duration::from_secs(1)).into());
                }
            }
            () = &mut silence => break,
        }
    }
    let secs = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    println!(
        "{}",
        serde_json::json!({
            "received": got, "seconds": secs, "dropped": stream.dropped(),
            "per_s": if secs > 0.0 { got as f64 / secs } else { 0.0 },
        })
    );
    Ok(())
}

/// Publishes COUNT messages; with `rate`, paced in millisecond steps.
pub async fn publish(
    socket: &Path,
    count: u64,
    size: usize,
    topic: &str,
    rate: Option<u64>,
) -> anyhow::Result<()> {
    let client = connect(socket).await?;
    let topic = Topic::new(topic)?;
    let payload = bytes::Bytes::from(vec![7u8; size]);
    let mut pace = crate::rate::Pacer::new(rate);
    let start = Instant::now();
    let mut sent = 0;
    // COUNT - 1 fire-and-forget, then one confirmed: once it is confirmed, the
    // broker has accepted everything before it.
    while sent + 1 < count {
        let step = pace.step(count - 1 - sent).await;
        for _ in 0..step {
            // Waits for the writer to drain a full outbound buffer rather
            // than spinning: a spinning publisher takes the CPU the broker needs.
            client.publish_wait(&topic, payload.clone()).await?;
        }
        sent += step;
    }
    client.publish_confirmed(&topic, payload).await?;
    sent += 1;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"sent": sent, "seconds": secs, "per_s": sent as f64 / secs})
    );
    Ok(())
}
