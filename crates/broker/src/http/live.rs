//! `/api/v1/live`: a WebSocket that pushes what the dashboard draws.
//!
//! One [`Hub`] task per listener turns the monitor's events into JSON once
//! for every page: each second's snapshot (overview with the latest
//! sample, clients, queues, workers) goes into a `watch` (a page that is
//! slow just skips to the newest), and connects, disconnects, slow
//! consumers and dead letters into a `broadcast` of [`LIVE_EVENTS`] (a page
//! that falls behind is told how many it missed). A new page first gets a
//! `hello`: the snapshot, the history ring and the latest dead letters, so
//! it draws the last minutes at once.
//!
//! Messages, all JSON with a `type`: `hello`, `snapshot`, `event`,
//! `lagged`. Cross-origin upgrades are refused (`403`): a page from another
//! origin cannot subscribe; a client that sends no `Origin` (not a browser)
//! may.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use eventbus::broker::Monitor;
use eventbus::broker::monitor::{MonitorEvent, OutcomeFilter, TaskOutcome, TaskQuery};
use serde_json::json;
use tokio::sync::{broadcast, watch};

use super::AppState;
use super::api::{ApiError, params};

/// Events a page may fall behind by before it loses the oldest.
pub const LIVE_EVENTS: usize = 256;
/// Dead letters a new page is shown.
const RECENT_DEAD_LETTERS: usize = 20;
/// How long a send to a page may take before the page is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest message a page may send (it has nothing to say).
const MAX_INBOUND_BYTES: usize = 4096;

/// The JSON every page is sent, built once.
#[derive(Debug, Clone)]
pub struct Hub {
    monitor: Monitor,
    snapshot: watch::Receiver<Utf8Bytes>,
    events: broadcast::Sender<Utf8Bytes>,
}

impl Hub {
    /// Starts the hub's task on the current runtime.
    pub fn start(monitor: Monitor) -> Self {
        let (snapshot_tx, snapshot) = watch::channel(Utf8Bytes::from(snapshot_json(&monitor)));
        let (events, _) = broadcast::channel(LIVE_EVENTS);
        let mut source = monitor.events();
        let hub = Self {
            monitor: monitor.clone(),
            snapshot,
            events: events.clone(),
        };
        tokio::spawn(async move {
            loop {
                match source.recv().await {
                    Ok(MonitorEvent::Sample(_)) => {
                        // Nobody watching: no snapshot to build.
                        if snapshot_tx.receiver_count() > 1 {
                            let _ = snapshot_tx.send(snapshot_json(&monitor).into());
                        }
                    }
                    Ok(event) => {
                        let text = json!({ "type": "event", "event": event }).to_string();
                        let _ = events.send(text.into());
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "the live hub fell behind the monitor's events");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        hub
    }
}

/// The second's snapshot: what the dashboard redraws.
fn snapshot_json(monitor: &Monitor) -> String {
    json!({
        "type": "snapshot",
        "overview": monitor.overview(),
        "clients": monitor.clients(),
        "queues": monitor.queues(),
        "workers": monitor.workers(),
        "bridges": crate::http::api::bridges_json(monitor),
    })
    .to_string()
}

/// Upgrades a same-origin request to the live channel.
pub async fn upgrade(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    params(&uri, &[])?;
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let origin = origin.to_str().unwrap_or_default();
        let same = host.is_some_and(|host| {
            origin.eq_ignore_ascii_case(&format!("http://{host}"))
                || origin.eq_ignore_ascii_case(&format!("https://{host}"))
        });
        if !same {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("cross-origin WebSocket refused: origin {origin:?} is not this listener"),
            ));
        }
    }
    let ws = ws.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("expected a WebSocket upgrade: {e}"),
        )
    })?;
    let hub = state.live.clone();
    Ok(ws
        .max_message_size(MAX_INBOUND_BYTES)
        .max_frame_size(MAX_INBOUND_BYTES)
        .on_upgrade(move |socket| page(socket, hub))
        .into_response())
}

/// Serves one page until it closes or stops reading.
async fn page(mut socket: WebSocket, hub: Hub) {
    let mut snapshot = hub.snapshot.clone();
    let mut events = hub.events.subscribe();
    let hello = hello_json(&hub.monitor);
    if send(&mut socket, hello).await.is_err() {
        return;
    }
    snapshot.mark_unchanged();
    loop {
        let text: Utf8Bytes = tokio::select! {
            changed = snapshot.changed() => match changed {
                Ok(()) => snapshot.borrow_and_update().clone(),
                Err(_) => return,
            },
            event = events.recv() => match event {
                Ok(text) => text,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    json!({ "type": "lagged", "missed": missed }).to_string().into()
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            inbound = socket.recv() => match inbound {
                // Pings are answered by the WebSocket layer; text is ignored.
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
        };
        if send(&mut socket, text).await.is_err() {
            return;
        }
    }
}

/// Sends `text`, giving up on a page that does not read.
async fn send(socket: &mut WebSocket, text: impl Into<Utf8Bytes>) -> Result<(), ()> {
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text.into()))).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// What a new page gets first.
fn hello_json(monitor: &Monitor) -> String {
    let mut query = TaskQuery::default();
    query.outcome = Some(OutcomeFilter::Ended(TaskOutcome::DeadLettered));
    query.limit = RECENT_DEAD_LETTERS;
    let dead = monitor.tasks(&query);
    let snapshot: serde_json::Value =
        serde_json::from_str(&snapshot_json(monitor)).unwrap_or_default();
    json!({
        "type": "hello",
        "snapshot": snapshot,
        "history": monitor.history(monitor.history_capacity()),
        "dead_letters": dead.tasks,
    })
    .to_string()
}
