//! One proxied connection: the client's stream, the broker's stream, and the
//! four pumps between them, closed together.

use std::path::Path;
use std::sync::Arc;

use tokio::net::UnixStream;
use tokio::task::JoinSet;

use super::faults::{Flow, Shared};
use super::pump::{Ended, delay_line};
use crate::rng::Rng;

/// Connects `client` to the broker at `upstream` and pumps frames both ways
/// until either pump asks to close; then closes both sockets.
///
/// If the broker's socket cannot be connected (the broker is down or
/// restarting), `client` is closed at once: to the client that is a broker
/// that went away, and it reconnects, as it would to a restarted broker.
pub(super) async fn serve(client: UnixStream, upstream: &Path, shared: Arc<Shared>, rng: Rng) {
    let broker = match UnixStream::connect(upstream).await {
        Ok(broker) => broker,
        Err(_) => {
            shared.with(|s| s.stats.upstream_failures += 1);
            return;
        }
    };
    let _open = Open::new(&shared);
    let (client_read, client_write) = client.into_split();
    let (broker_read, broker_write) = broker.into_split();
    let mut pumps = JoinSet::new();
    for (flow, src, dst) in [
        (Flow::ToBroker, client_read, broker_write),
        (Flow::ToClient, broker_read, client_write),
    ] {
        let (line_in, line_out) = delay_line(&shared, flow);
        // A stream of random choices per connection and direction, so that a
        // run replays from its seed whatever the other connections do.
        let stream = match flow {
            Flow::ToBroker => 0,
            Flow::ToClient => 1,
        };
        pumps.spawn(line_in.run(src, rng.fork(stream)));
        pumps.spawn(line_out.run(dst));
    }
    while let Some(ended) = pumps.join_next().await {
        if !matches!(ended, Ok(Ended::Reader)) {
            break;
        }
    }
    // Aborts the other pumps and waits for them: their halves of both sockets
    // are dropped, which closes them, and their queued frames are discarded.
    pumps.shutdown().await;
}

/// One connection counted in [`ProxyStats::open`](super::ProxyStats::open)
/// while it lives.
struct Open(Arc<Shared>);

impl Open {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.with(|s| s.stats.open += 1);
        Self(shared.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.with(|s| s.stats.open -= 1);
    }
}
