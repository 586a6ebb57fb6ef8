//! One accepted connection: admission, the handshake, then a read loop
//! that turns each frame into a [`Command`](super::command::Command) and
//! hands each batch to the router.
//!
//! Each connection has two tasks: this reader, and a writer draining the
//! connection's [`Outbound`] queue. The reader runs the router once per batch
//! of frames read ([`RouterCell::with`]), never across an await.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::Shared;
use super::command::{self, Inbound};
use super::ids::{ConnId, Seq};
use super::refusal::{DisconnectReason, HandshakeRefusal, Refusal};
use super::router::{Applied, Parked, Registration};
use crate::codec::FrameCodec;
use crate::framed::{FrameReader, Outbound, OutboundLimits, OverflowPolicy, write_loop};
use crate::proto::{Frame, frame::Kind};
use crate::transport::{SharedStream, Stream};

/// A blocked publish is retried at least this often, so its timeout is noticed.
const BLOCK_RECHECK: Duration = Duration::from_millis(20);
/// How long a refused connection gets to read why before it is closed.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// Commands a connection's batch keeps room for once its reads are small
/// again (a command is ~100 bytes; 64 of them reserved up front were a
/// third of what an idle client cost the broker).
const BATCH_KEEP: usize = 16;
/// Reads in a row of at most `BATCH_KEEP` commands before a burst's room is
/// let go.
const SMALL_BATCHES_TO_SHRINK: u8 = 3;
/// The largest `Hello` frame read: a connection that has not said who it is
/// gets no more buffer than this.
pub(crate) const MAX_HELLO_BYTES: usize = 8 * 1024;

/// Counts an accepted socket, from before its `Hello` until it closes,
/// against `max_connections`.
pub(super) struct Accepted(Arc<Shared>);

impl Accepted {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        shared.sockets.fetch_add(1, Ordering::Relaxed);
        Self(shared)
    }
}

impl Drop for Accepted {
    fn drop(&mut self) {
        self.0.sockets.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one connection until it closes, fails, or the broker stops.
pub(super) async fn serve(stream: Stream, accepted: Accepted) {
    let shared = accepted.0.clone();
    let peer_pid = crate::transport::peer_pid(&stream);
    #[cfg(unix)]
    let peer_uid = crate::transport::peer_uid(&stream);
    #[cfg(not(unix))]
    let peer_uid = None;
    let admitted = admit(peer_uid, &shared);
    let stream = match SharedStream::new(stream) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot set up an accepted connection");
            return;
        }
    };
    let config = &shared.config;
    let codec = FrameCodec::new(config.max_frame_bytes);
    let mut reader = FrameReader::new(stream.clone(), FrameCodec::new(MAX_HELLO_BYTES));

    if let Err(refusal) = admitted {
        return refuse(stream, codec, refusal.into()).await;
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
            return refuse(stream, codec, HandshakeRefusal::NotHello.into()).await;
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "closing connection: bad handshake");
            return refuse(stream, codec, Refusal::unreadable(&e)).await;
        }
        Err(_) => {
            tracing::warn!(?handshake, "closing connection: no hello in time");
            return;
        }
    };

    let credentials = (!hello.user.is_empty()).then(|| (hello.user.as_str(), &hello.secret[..]));
    let principal = match shared.auth.authenticate(credentials, peer_uid) {
        Ok(principal) => principal,
        Err(refusal) => {
            tracing::warn!(
                user = hello.user,
                ?peer_uid,
                "refusing connection: authentication failed"
            );
            return refuse(stream, codec, refusal.into()).await;
        }
    };
    let out = Outbound::new(config.outbound_limits());
    let cancel = CancellationToken::new();
    let topics = command::TopicCache::for_kind(&hello.kind);
    let registration = Registration {
        hello,
        principal,
        out: out.clone(),
        cancel: cancel.clone(),
        peer_pid,
    };
    let registered = shared
        .router
        .with(|router| router.register(registration, Instant::now()));
    let (conn, welcome) = match registered {
        Ok(ok) => ok,
        Err(refusal) => return refuse(stream, codec, refusal.into()).await,
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

    let reason = read_loop(&mut reader, &shared, conn, &cancel, &out, topics).await;
    shared.router.with(|router| router.disconnect(conn, reason));
}

async fn read_loop(
    reader: &mut FrameReader<SharedStream>,
    shared: &Shared,
    conn: ConnId,
    cancel: &CancellationToken,
    out: &Outbound,
    mut topics: command::TopicCache,
) -> DisconnectReason {
    // Grows with the reads (a quiet client needs room for a few commands,
    // a publisher's full read for thousands) and lets a burst's room go
    // after a few small reads: an idle connection keeps `BATCH_KEEP`.
    let mut batch = Vec::new();
    let mut small_batches = 0u8;
    loop {
        let read = tokio::select! {
            biased;
            () = cancel.cancelled() => return DisconnectReason::ClosedByBroker,
            read = reader.read_batch_with(&mut batch, |body| command::decode(body, &mut topics)) => read,
        };
        match read {
            Ok(true) => {
                let len = batch.len();
                if handle_batch(&mut batch, shared, conn, cancel)
                    .await
                    .is_err()
                {
                    return DisconnectReason::ClosedByBroker;
                }
                small_batches = if len <= BATCH_KEEP {
                    small_batches.saturating_add(1)
                } else {
                    0
                };
                if small_batches >= SMALL_BATCHES_TO_SHRINK && batch.capacity() > 4 * BATCH_KEEP {
                    batch.shrink_to(BATCH_KEEP);
                }
            }
            Ok(false) => return DisconnectReason::ClientClosed,
            Err(e) => {
                tracing::warn!(error = %e, "closing connection: unreadable input");
                let _ = out.push(Refusal::unreadable(&e).into_frame(Seq::NONE));
                return DisconnectReason::Unreadable;
            }
        }
    }
}

/// The connection was closed by the broker while it waited.
struct Closed;

/// Hands a batch of commands to the router, in order.
///
/// A publish parked by a full queue with the `block` policy stops the batch:
/// this connection waits (the rest of the broker carries on), retrying whenever
/// the queue makes room, until the block timeout refuses it. Its liveness is
/// refreshed meanwhile, since not reading is the broker's choice.
async fn handle_batch(
    batch: &mut Vec<Inbound>,
    shared: &Shared,
    conn: ConnId,
    cancel: &CancellationToken,
) -> Result<(), Closed> {
    let mut commands = batch.drain(..);
    loop {
        let parked = shared.router.with(|router| {
            router.begin(conn, Instant::now());
            commands
                .by_ref()
                .find_map(|inbound| match router.apply(conn, inbound) {
                    Applied::Done => None,
                    Applied::Parked(parked) => Some(parked),
                })
        });
        match parked {
            Some(parked) => wait_for_room(parked, shared, conn, cancel).await?,
            None => return Ok(()),
        }
    }
}

/// Retries a parked publish each time a queue makes room (and at least every
/// `BLOCK_RECHECK`) until it is published or refused.
async fn wait_for_room(
    mut parked: Parked,
    shared: &Shared,
    conn: ConnId,
    cancel: &CancellationToken,
) -> Result<(), Closed> {
    let started = Instant::now();
    loop {
        let space = parked.space.clone();
        tokio::select! {
            () = cancel.cancelled() => return Err(Closed),
            () = space.notified() => {}
            () = tokio::time::sleep(BLOCK_RECHECK) => {}
        }
        let applied = shared.router.for_conn(conn, |router| {
            let now = Instant::now();
            router.begin(conn, now);
            router.retry_parked(conn, parked, now - started)
        });
        match applied.ok_or(Closed)? {
            Applied::Done => return Ok(()),
            Applied::Parked(again) => parked = again,
        }
    }
}

/// Checks the connection limit (sockets that have not said hello count)
/// and the peer's user id before any frame is read.
fn admit(peer_uid: Option<u32>, shared: &Shared) -> Result<(), HandshakeRefusal> {
    let max = shared.config.max_connections;
    if shared.sockets.load(Ordering::Relaxed) > max {
        tracing::warn!(max, "refusing connection: connection limit reached");
        return Err(HandshakeRefusal::ConnectionLimit { max });
    }
    #[cfg(unix)]
    {
        let own = crate::transport::current_uid();
        match peer_uid {
            Some(uid) if uid == own || shared.config.allowed_uids.contains(&uid) => {}
            other => {
                tracing::warn!(peer_uid = ?other, "refusing connection from another user");
                return Err(HandshakeRefusal::PermissionDenied { uid: other });
            }
        }
    }
    #[cfg(not(unix))]
    let _ = peer_uid;
    Ok(())
}

/// Tells the peer why it is refused, then closes.
async fn refuse(stream: SharedStream, codec: FrameCodec, refusal: Refusal) {
    let out = Outbound::new(OutboundLimits {
        max_len: 1,
        max_bytes: usize::MAX,
        policy: OverflowPolicy::DropIncoming,
        hard_cap: 2,
        hard_cap_bytes: usize::MAX,
    });
    let _ = out.push(refusal.into_frame(Seq::NONE));
    out.close();
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, write_loop(out, stream, codec)).await;
}
