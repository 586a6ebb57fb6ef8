//! One accepted connection: the handshake, then a read loop feeding the router.
//!
//! Each connection has two tasks: this reader, and a writer draining the
//! connection's [`Outbound`] queue. The reader takes the router lock once per
//! batch of frames read, never across an await.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::Shared;
use super::router::{Handled, Refusal};
use crate::codec::raw::{RawPublish, scan_publish};
use crate::codec::{FrameCodec, FrameError, decode_body};
use crate::framed::{FrameReader, Outbound, ReadError, write_loop};
use crate::proto::{self, ErrorCode, Frame, frame::Kind};

/// A blocked publish is retried at least this often, so its timeout is noticed.
const BLOCK_RECHECK: Duration = Duration::from_millis(20);
use crate::transport::{SharedStream, Stream};

/// Serves one connection until it closes, fails, or the broker stops.
pub(super) async fn serve(stream: Stream, shared: Arc<Shared>) {
    let peer_pid = crate::transport::peer_pid(&stream);
    let admitted = admit(&stream, &shared);
    let stream = match SharedStream::new(stream) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot set up an accepted connection");
            return;
        }
    };
    let config = &shared.config;
    let codec = FrameCodec::new(config.max_frame_bytes);
    let mut reader = FrameReader::new(stream.clone(), codec);

    if let Err(refusal) = admitted {
        return refuse(stream, codec, refusal).await;
    }
    let handshake = Duration::from_millis(config.handshake_timeout_ms);
    // Abandoning the read on timeout is safe: the connection is dropped with it,
    // so no half-read frame is ever resumed.
    let hello = match tokio::time::timeout(handshake, reader.read_one()).await {
        Ok(Ok(Some(Frame {
            kind: Some(Kind::Hello(hello)),
        }))) => hello,
        Ok(Ok(None)) => return,
        Ok(Ok(Some(_))) => {
            let refusal = Refusal::new(ErrorCode::Protocol, "the first frame must be hello");
            return refuse(stream, codec, refusal).await;
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "closing connection: bad handshake");
            return refuse(stream, codec, read_refusal(&e)).await;
        }
        Err(_) => {
            tracing::warn!(?handshake, "closing connection: no hello in time");
            return;
        }
    };

    let out = Outbound::new(config.outbound_limits());
    let cancel = CancellationToken::new();
    let registered = shared
        .router()
        .register(hello, out.clone(), cancel.clone(), peer_pid);
    let (conn, welcome) = match registered {
        Ok(ok) => ok,
        Err(refusal) => return refuse(stream, codec, refusal).await,
    };
    let codec = FrameCodec::new(welcome.max_frame_bytes as usize);
    reader.set_codec(codec);
    let _ = out.push(Frame {
        kind: Some(Kind::Welcome(welcome)),
    });
    out.attach_inline(Arc::new(stream.clone()), codec);
    shared
        .tracker
        .spawn(write_loop(out.clone(), stream.clone(), codec));

    let reason = read_loop(&mut reader, &shared, conn, &cancel, &out).await;
    shared.router().disconnect(conn, reason);
}

/// A frame as the reader hands it to the router.
enum Inbound {
    /// Decoded.
    Frame(Frame),
    /// A fire-and-forget publish kept encoded, for the fan-out fast path.
    Publish(RawPublish),
}

/// Keeps fire-and-forget publishes encoded, decodes everything else.
fn classify(body: bytes::Bytes) -> Result<Inbound, FrameError> {
    match scan_publish(body) {
        Ok(publish) => Ok(Inbound::Publish(publish)),
        Err(body) => decode_body(body).map(Inbound::Frame),
    }
}

async fn read_loop(
    reader: &mut FrameReader<SharedStream>,
    shared: &Shared,
    conn: super::ConnId,
    cancel: &CancellationToken,
    out: &Outbound,
) -> &'static str {
    let mut frames = Vec::with_capacity(64);
    loop {
        let read = tokio::select! {
            biased;
            () = cancel.cancelled() => return "closed by the broker",
            read = reader.read_batch_with(&mut frames, classify) => read,
        };
        match read {
            Ok(true) => {
                if handle_batch(&mut frames, shared, conn, cancel)
                    .await
                    .is_err()
                {
                    return "closed by the broker";
                }
            }
            Ok(false) => return "client closed the connection",
            Err(e) => {
                tracing::warn!(error = %e, "closing connection: unreadable input");
                let _ = out.push(read_refusal(&e).into_frame(0));
                return "unreadable input";
            }
        }
    }
}

/// Hands a batch of frames to the router, in order.
///
/// A publish held back by a full queue with the `block` policy stops the batch:
/// this connection waits (the rest of the broker carries on), retrying whenever
/// the queue makes room, until the block timeout refuses it. Its liveness is
/// refreshed meanwhile, since not reading is the broker's choice.
async fn handle_batch(
    frames: &mut Vec<Inbound>,
    shared: &Shared,
    conn: super::ConnId,
    cancel: &CancellationToken,
) -> Result<(), ()> {
    let mut next = 0;
    let mut touched = Vec::new();
    while next < frames.len() {
        let blocked = {
            let mut router = shared.router();
            router.touch(conn, Instant::now());
            let mut blocked = None;
            while next < frames.len() {
                let inbound =
                    std::mem::replace(&mut frames[next], Inbound::Frame(Frame::default()));
                next += 1;
                let handled = match inbound {
                    Inbound::Frame(frame) => router.handle(conn, frame),
                    Inbound::Publish(publish) => router.handle_raw(conn, publish),
                };
                if let Handled::Blocked { publish, timeout } = handled {
                    blocked = Some((publish, timeout, router.space.clone()));
                    break;
                }
            }
            router.reap();
            router.take_touched(&mut touched);
            blocked
        };
        // Write from here what the batch queued: saves waking each writer task.
        for out in touched.drain(..) {
            out.try_flush();
        }
        if let Some((publish, timeout, space)) = blocked {
            wait_for_room(publish, timeout, &space, shared, conn, cancel).await?;
        }
    }
    frames.clear();
    Ok(())
}

/// Retries a blocked publish each time a queue makes room (and at least every
/// `BLOCK_RECHECK`), refusing it once `timeout` has passed.
async fn wait_for_room(
    mut publish: proto::Publish,
    timeout: Duration,
    space: &tokio::sync::Notify,
    shared: &Shared,
    conn: super::ConnId,
    cancel: &CancellationToken,
) -> Result<(), ()> {
    let started = Instant::now();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return Err(()),
            () = space.notified() => {}
            () = tokio::time::sleep(BLOCK_RECHECK) => {}
        }
        let mut router = shared.router();
        router.touch(conn, Instant::now());
        let outcome = if started.elapsed() >= timeout {
            router.refuse_blocked(conn, publish, started.elapsed());
            Handled::Done
        } else {
            let frame = Frame {
                kind: Some(Kind::Publish(publish)),
            };
            router.handle(conn, frame)
        };
        router.reap();
        let mut touched = Vec::new();
        router.take_touched(&mut touched);
        drop(router);
        touched.iter().for_each(|out| out.try_flush());
        match outcome {
            Handled::Done => return Ok(()),
            Handled::Blocked { publish: again, .. } => publish = again,
        }
    }
}

/// Checks connection limits and the peer's user id before any frame is read.
fn admit(stream: &Stream, shared: &Shared) -> Result<(), Refusal> {
    let max = shared.config.max_connections;
    if shared.router().connection_count() >= max {
        tracing::warn!(max, "refusing connection: connection limit reached");
        return Err(Refusal::new(
            ErrorCode::ConnectionLimit,
            format!("connection limit of {max} reached"),
        ));
    }
    #[cfg(unix)]
    {
        let own = crate::transport::current_uid();
        match crate::transport::peer_uid(stream) {
            Some(uid) if uid == own || shared.config.allowed_uids.contains(&uid) => {}
            other => {
                tracing::warn!(peer_uid = ?other, "refusing connection from another user");
                return Err(Refusal::new(
                    ErrorCode::PermissionDenied,
                    format!("user id {other:?} may not connect"),
                ));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = stream;
    Ok(())
}

fn read_refusal(e: &ReadError) -> Refusal {
    let code = match e {
        ReadError::Frame(crate::codec::FrameError::TooLarge { .. }) => ErrorCode::FrameTooLarge,
        _ => ErrorCode::Protocol,
    };
    Refusal::new(code, e.to_string())
}

/// Tells the peer why it is refused, then closes.
async fn refuse(stream: SharedStream, codec: FrameCodec, refusal: Refusal) {
    let out = Outbound::new(crate::framed::OutboundLimits {
        max_len: 1,
        max_bytes: usize::MAX,
        policy: crate::framed::OverflowPolicy::DropIncoming,
        hard_cap: 2,
        hard_cap_bytes: usize::MAX,
    });
    let _ = out.push(refusal.into_frame(0));
    out.close();
    let _ = tokio::time::timeout(Duration::from_secs(1), write_loop(out, stream, codec)).await;
}
