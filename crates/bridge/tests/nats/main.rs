//! The bridge against a real `nats-server` on loopback and embedded
//! brokers: exports, imports, no loops between two bridges, a NATS outage,
//! a bridge restart at least once, requests across, and hostile input from
//! both sides. Needs `nats-server` (Debian's package; `.ci/run` installs
//! it): without it these tests panic with how to install it, and
//! `cargo xtask ci` leaves them out with a WARNING outside CI.

mod events;
mod imports;
mod outage;
mod requests;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use eventbus::{Body, Client, Message, Subscription};
use eventbus_bridge::origin::{NATS_HOPS, NATS_ORIGIN};
use eventbus_bridge::status::{NatsState, Status};
use eventbus_bridge::{Bridge, BridgeConfig};
use eventbus_harness::{
    DEADLINE, NatsServer, TestBroker, next, next_within, quiet_for, wait_until,
};

/// Long enough for a message that would come to come, on a loaded machine.
pub(crate) const QUIET: Duration = Duration::from_millis(300);

pub(crate) fn config(broker: &TestBroker, nats: &str, name: &str, rules: &str) -> BridgeConfig {
    config_at(broker.socket(), nats, name, rules)
}

/// [`config`] for a bridge whose local broker is at `socket` (a fault
/// proxy's, say).
pub(crate) fn config_at(socket: &Path, nats: &str, name: &str, rules: &str) -> BridgeConfig {
    let text = format!(
        "[local]\nsocket = {socket:?}\n[nats]\nservers = [{nats:?}]\nname = {name:?}\n\
         reconnect_max_ms = 200\n{rules}",
        socket = socket.display().to_string(),
    );
    BridgeConfig::from_toml(&text).expect("a valid test config")
}

pub(crate) async fn connected(bridge: &Bridge) {
    tokio::time::timeout(DEADLINE, bridge.nats_ready())
        .await
        .expect("NATS connected in time");
}

pub(crate) async fn nats_client(server: &NatsServer) -> async_nats::Client {
    async_nats::connect(server.url())
        .await
        .expect("connect to nats-server")
}

/// Takes `n` messages from a local subscription.
pub(crate) async fn take(sub: &mut Subscription, n: usize) -> Vec<Message> {
    let mut got = Vec::new();
    while got.len() < n {
        got.push(next(sub).await.expect("subscription open"));
    }
    got
}

pub(crate) fn payloads<'a>(messages: impl IntoIterator<Item = &'a Bytes>) -> BTreeSet<String> {
    messages
        .into_iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect()
}

pub(crate) async fn status_where(
    client: &Client,
    name: &str,
    what: &str,
    pred: impl Fn(&Status) -> bool,
) -> Status {
    let mut sub = client
        .subscribe(format!("_sys.bridge.{name}"))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(message) = next_within(&mut sub, left).await else {
            panic!("no status where {what} within {DEADLINE:?}");
        };
        let status: Status = message.json().expect("status JSON");
        if pred(&status) {
            return status;
        }
    }
}

/// Publishes `payload` on `subject` once the stream the bridge creates
/// takes it: the server takes publishes on a new stream's subjects a moment
/// after it exists (no responders until then, and then nothing is stored).
pub(crate) async fn publish_once_stored(js: &jetstream::Context, subject: &str, payload: &str) {
    wait_until("the stream takes publishes", DEADLINE, || async {
        match js
            .publish(subject.to_owned(), payload.to_owned().into())
            .await
        {
            Ok(ack) => ack.await.is_ok(),
            Err(_) => false,
        }
    })
    .await
    .unwrap();
}
