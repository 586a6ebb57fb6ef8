//! Connecting, the handshake, and the tasks behind a [`Client`]: a writer draining
//! the outbound queue, a reader routing what arrives, and a heartbeat that both
//! proves this side alive and notices a dead broker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::error::{ConnectError, Refused};
use super::subscription::Incoming;
use super::{Answer, Client, ClientOptions, Handle, Inner, Message, lock};
use crate::codec::FrameCodec;
use crate::framed::{FrameReader, Outbound, OutboundLimits, OverflowPolicy, write_loop};
use crate::names::ClientId;
use crate::proto::{self, Frame, frame::Kind};
use crate::transport::SharedStream;

static NEXT_ANONYMOUS: AtomicU64 = AtomicU64::new(1);

impl Client {
    /// Connects, says hello, and returns once the broker has welcomed the client.
    pub async fn connect(options: ClientOptions) -> Result<Client, ConnectError> {
        let timeout = options.connect_timeout;
        let path = options.socket.clone();
        tokio::time::timeout(timeout, Self::connect_inner(options))
            .await
            .unwrap_or(Err(ConnectError::Timeout {
                path,
                after: timeout,
            }))
    }

    async fn connect_inner(options: ClientOptions) -> Result<Client, ConnectError> {
        let stream = crate::transport::connect(&options.socket)
            .await
            .map_err(|source| ConnectError::Io {
                path: options.socket.clone(),
                source,
            })?;
        let stream = SharedStream(Arc::new(stream));
        let client_id = options.client_id.clone().unwrap_or_else(|| {
            let n = NEXT_ANONYMOUS.fetch_add(1, Ordering::Relaxed);
            ClientId::new(format!("client-{}-{n}", std::process::id()))
                .expect("valid by construction")
        });
        let codec = FrameCodec::default();
        let out = Outbound::new(OutboundLimits {
            max_len: options.outbound_capacity,
            policy: OverflowPolicy::Reject,
            hard_cap: options.outbound_capacity,
        });
        let hello = proto::Hello {
            protocol_version: proto::PROTOCOL_VERSION,
            client_id: client_id.as_str().to_owned(),
            kind: options.kind.clone(),
            capabilities: options.capabilities.clone(),
            pid: std::process::id(),
            max_frame_bytes: 0,
            heartbeat_interval_ms: options
                .heartbeat_interval
                .map_or(0, |d| d.as_millis().clamp(1, u128::from(u32::MAX)) as u32),
            heartbeat_misses: options.heartbeat_misses.unwrap_or(0),
        };
        let _ = out.push(Frame {
            kind: Some(Kind::Hello(hello)),
        });
        let mut reader = FrameReader::new(stream.clone(), codec);
        let writer = tokio::spawn(write_loop(out.clone(), stream.clone(), codec));
        let welcome = match reader.read_one().await {
            Ok(Some(Frame {
                kind: Some(Kind::Welcome(w)),
            })) => w,
            Ok(Some(Frame {
                kind: Some(Kind::Error(e)),
            })) => {
                out.close();
                return Err(ConnectError::Refused(Refused::from(e)));
            }
            Ok(other) => {
                out.close();
                return Err(ConnectError::Handshake(format!(
                    "expected welcome, got {other:?}"
                )));
            }
            Err(e) => {
                out.close();
                return Err(ConnectError::Handshake(e.to_string()));
            }
        };
        let max_frame_bytes = welcome.max_frame_bytes as usize;
        reader.set_codec(FrameCodec::new(max_frame_bytes));
        let inner = Arc::new(Inner {
            client_id,
            options,
            out: out.clone(),
            max_frame_bytes,
            next_seq: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            subs: Mutex::new(HashMap::new()),
            closed: CancellationToken::new(),
        });
        let liveness = Arc::new(Liveness::new());
        let heartbeat = Duration::from_millis(u64::from(welcome.heartbeat_interval_ms.max(1)));
        tokio::spawn(read_loop(reader, inner.clone(), liveness.clone()));
        tokio::spawn(heartbeat_loop(
            inner.clone(),
            liveness,
            heartbeat,
            welcome.heartbeat_misses.max(1),
        ));
        tokio::spawn(watch_writer(writer, inner.clone()));
        Ok(Client {
            handle: Arc::new(Handle(inner)),
        })
    }
}

/// When the broker was last heard from, as milliseconds since `start`.
#[derive(Debug)]
struct Liveness {
    start: Instant,
    last_ms: AtomicU64,
}

impl Liveness {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        let now = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// Routes frames from the broker until the connection ends, then fails every
/// waiting call and ends every subscription stream.
async fn read_loop(
    mut reader: FrameReader<SharedStream>,
    inner: Arc<Inner>,
    liveness: Arc<Liveness>,
) {
    let mut frames = Vec::with_capacity(64);
    loop {
        let read = tokio::select! {
            biased;
            () = inner.closed.cancelled() => break,
            read = reader.read_batch(&mut frames) => read,
        };
        match read {
            Ok(true) => {
                liveness.touch();
                for frame in frames.drain(..) {
                    dispatch(&inner, frame);
                }
            }
            Ok(false) => break,
            Err(e) => {
                tracing::warn!(error = %e, "connection to broker failed");
                break;
            }
        }
    }
    shut(&inner);
}

fn dispatch(inner: &Inner, frame: Frame) {
    let answer = |seq: u64, answer: Answer| {
        if let Some(tx) = lock(&inner.pending).remove(&seq) {
            let _ = tx.send(answer);
        }
    };
    match frame.kind {
        Some(Kind::Deliver(d)) => {
            let mailbox = lock(&inner.subs).get(&d.sid).cloned();
            let message = Message::new(d.message.unwrap_or_default());
            match mailbox {
                Some(mb) => mb.push(Incoming {
                    delivery_id: d.delivery_id,
                    message,
                }),
                None if d.delivery_id != 0 => {
                    // Nobody here takes it any more: hand it back at once.
                    let _ = inner.out.push(Frame {
                        kind: Some(Kind::Nack(proto::Nack {
                            delivery_id: d.delivery_id,
                            requeue: true,
                            seq: 0,
                        })),
                    });
                }
                None => {}
            }
        }
        Some(Kind::Ok(ok)) => answer(ok.seq, Answer::Ok(ok.message_id)),
        Some(Kind::Error(e)) if e.seq != 0 => answer(e.seq, Answer::Error(e)),
        Some(Kind::Error(e)) => {
            tracing::warn!(code = e.code, message = %e.message, "broker reported an error")
        }
        Some(Kind::Reply(r)) => answer(
            r.correlation_id,
            Answer::Reply(r.message.unwrap_or_default()),
        ),
        Some(Kind::StatsResponse(s)) => answer(s.seq, Answer::Stats(s)),
        Some(Kind::Goodbye(g)) => {
            tracing::debug!(reason = %g.reason, "broker said goodbye");
            inner.closed.cancel();
        }
        Some(Kind::Cancel(c)) => {
            tracing::debug!(message_id = c.message_id, "broker cancelled a held message")
        }
        _ => {}
    }
}

/// Marks the connection closed: pending calls fail, streams end.
fn shut(inner: &Inner) {
    inner.closed.cancel();
    inner.out.close();
    lock(&inner.pending).clear();
    for mailbox in lock(&inner.subs).values() {
        mailbox.close();
    }
}

async fn heartbeat_loop(
    inner: Arc<Inner>,
    liveness: Arc<Liveness>,
    interval: Duration,
    misses: u32,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = inner.closed.cancelled() => return,
            _ = tick.tick() => {}
        }
        if liveness.silent_for() > interval * misses {
            tracing::warn!(
                ?interval,
                misses,
                "broker missed its heartbeats; closing the connection"
            );
            shut(&inner);
            return;
        }
        if inner
            .out
            .push(Frame {
                kind: Some(Kind::Heartbeat(proto::Heartbeat { nonce: 0 })),
            })
            .is_err()
        {
            return;
        }
    }
}

async fn watch_writer(writer: tokio::task::JoinHandle<std::io::Result<()>>, inner: Arc<Inner>) {
    if let Ok(Err(e)) = writer.await {
        tracing::debug!(error = %e, "write to broker failed");
    }
    shut(&inner);
}
