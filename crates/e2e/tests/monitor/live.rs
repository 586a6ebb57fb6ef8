//! The live channel: a same-origin page gets `hello` then a snapshot a
//! second; a cross-origin upgrade is refused; a page reconnects to a
//! restarted broker.

use std::net::SocketAddr;

use e2e::ClusterExt as _;
use e2e::DEADLINE;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{Error, Message};

use crate::support::cluster_with_http;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(addr: SocketAddr, origin: Option<&str>) -> Result<Socket, Error> {
    let mut request = format!("ws://{addr}/api/v1/live")
        .into_client_request()
        .unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(socket, _)| socket)
}

/// The next JSON message of type `kind`.
async fn next_of(socket: &mut Socket, kind: &str) -> Value {
    let wait = async {
        while let Some(message) = socket.next().await {
            if let Message::Text(text) = message.expect("a message") {
                let value: Value = serde_json::from_str(&text).expect("JSON");
                if value["type"] == kind {
                    return value;
                }
            }
        }
        panic!("the live channel closed before a {kind}");
    };
    tokio::time::timeout(DEADLINE, wait).await.expect("in time")
}

#[tokio::test]
async fn pages_get_hello_then_snapshots_and_other_origins_are_refused() {
    let (mut cluster, addr) = cluster_with_http("").await;
    match open(addr, Some("http://evil.example")).await {
        Err(Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!(
            "a cross-origin upgrade was not refused: {:?}",
            other.map(|_| ())
        ),
    }
    let mut page = open(addr, Some(&format!("http://{addr}"))).await.unwrap();
    let hello = next_of(&mut page, "hello").await;
    assert!(hello["history"].is_array() && hello["snapshot"]["overview"].is_object());
    let _driver = cluster.driver().await;
    // Pushed as it happens, before the next second's snapshot.
    let connected = next_of(&mut page, "event").await;
    assert_eq!(connected["event"]["event"], "connected", "{connected}");
    let snapshot = next_of(&mut page, "snapshot").await;
    assert!(snapshot["clients"].is_array() && snapshot["workers"].is_array());
    // Pages have nothing to say; what they send is ignored, a ping answered.
    page.send(Message::Text("hi".into())).await.unwrap();
    page.send(Message::Ping(vec![1].into())).await.unwrap();
    next_of(&mut page, "snapshot").await;

    // A restarted broker: the old channel ends, a new one opens on the same URL.
    cluster.broker_mut().restart().await;
    let ended = tokio::time::timeout(DEADLINE, async {
        while let Some(Ok(_)) = page.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the channel outlived its broker");
    let end = tokio::time::Instant::now() + DEADLINE;
    let mut again = loop {
        match open(addr, None).await {
            Ok(socket) => break socket,
            Err(e) if tokio::time::Instant::now() >= end => {
                panic!("the restarted broker's live channel never opened: {e}")
            }
            Err(_) => tokio::time::sleep(e2e::wait::POLL_INTERVAL).await,
        }
    };
    next_of(&mut again, "hello").await;
}
