//! Connecting, the handshake, and the tasks behind a [`Client`].
//!
//! A supervisor owns the connection's life: for each link it runs a writer
//! draining the outbound queue, a reader routing what arrives, and a heartbeat
//! that proves this side alive and notices a dead broker. When a link dies it
//! fails the calls waiting on it, reconnects with backoff, re-registers the same
//! client id and restores every subscription. The outbound queue, the
//! subscriptions and their streams outlive links: only closing the client ends them.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::error::{ConnectError, Refused};
use super::gather::GatherEvent;
use super::mailbox::Mailbox;
use super::subscription::Incoming;
use super::{Answer, Client, ClientOptions, ConnectionEvent, Handle, Inner, Message, lock};
use crate::codec::FrameCodec;
use crate::framed::{FrameReader, Outbound, OutboundLimits, OverflowPolicy, write_loop};
use crate::names::ClientId;
use crate::proto::{self, Frame, frame::Kind};
use crate::transport::SharedStream;

static NEXT_ANONYMOUS: AtomicU64 = AtomicU64::new(1);

/// Connection events kept for receivers that lag behind.
const EVENT_CAPACITY: usize = 64;

/// A link that completed its handshake.
struct Link {
    stream: SharedStream,
    reader: FrameReader<SharedStream>,
    welcome: proto::Welcome,
}

impl Client {
    /// Connects, says hello, and returns once the broker has welcomed the client.
    ///
    /// Without [`ClientOptions::credentials`], credentials come from the
    /// environment when it has them ([`Credentials::from_env`](super::Credentials::from_env)).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: cancelled before it returns, the half-open connection
    /// is dropped and no `Client` exists (the broker sees a client that
    /// closed its connection, if it got as far as the hello).
    pub async fn connect(mut options: ClientOptions) -> Result<Client, ConnectError> {
        if options.credentials.is_none() {
            options.credentials = super::Credentials::from_env()?;
        }
        let client_id = options.client_id.clone().unwrap_or_else(|| {
            let n = NEXT_ANONYMOUS.fetch_add(1, Ordering::Relaxed);
            ClientId::new(format!("client-{}-{n}", std::process::id()))
                .expect("valid by construction")
        });
        let link = handshake(&options, &client_id, &[]).await?;
        let out = Outbound::new(OutboundLimits {
            max_len: options.outbound_capacity,
            max_bytes: options.outbound_bytes,
            policy: OverflowPolicy::Reject,
            hard_cap: options.outbound_capacity,
            hard_cap_bytes: options.outbound_bytes,
        });
        let inner = Arc::new(Inner {
            client_id,
            max_frame_bytes: AtomicUsize::new(link.welcome.max_frame_bytes as usize),
            options,
            out,
            next_seq: AtomicU64::new(1),
            pending: Mutex::new(HashMap::default()),
            accepts: Mutex::new(HashMap::default()),
            kept: Mutex::new(HashMap::default()),
            gathers: Mutex::default(),
            cancelled: Mutex::new(Default::default()),
            session: super::session::Session::new(),
            subs: Mutex::new(HashMap::default()),
            closed: CancellationToken::new(),
            events: broadcast::channel(EVENT_CAPACITY).0,
            resume_token: Mutex::new(link.welcome.resume_token.clone()),
        });
        tokio::spawn(supervise(inner.clone(), link));
        Ok(Client {
            handle: Arc::new(Handle(inner)),
        })
    }
}

/// Connects and exchanges `Hello`/`Welcome`, within the connect timeout.
///
/// `resume` is the token of the last link's `Welcome` (empty at first): it
/// lets this link take over the client id while the broker still holds the
/// old one open.
async fn handshake(
    options: &ClientOptions,
    client_id: &ClientId,
    resume: &[u8],
) -> Result<Link, ConnectError> {
    let timeout = options.connect_timeout;
    let path = options.socket.clone();
    tokio::time::timeout(timeout, handshake_inner(options, client_id, resume))
        .await
        .unwrap_or(Err(ConnectError::Timeout {
            path,
            after: timeout,
        }))
}

async fn handshake_inner(
    options: &ClientOptions,
    client_id: &ClientId,
    resume: &[u8],
) -> Result<Link, ConnectError> {
    if let Some((dir, reason)) = crate::transport::socket_dir_problem(&options.socket) {
        return Err(ConnectError::UnsafeSocketDirectory { dir, reason });
    }
    let stream = crate::transport::connect(&options.socket)
        .await
        .map_err(|source| ConnectError::Io {
            path: options.socket.clone(),
            source,
        })?;
    check_broker_uid(&stream, options)?;
    let mut stream = SharedStream::new(stream).map_err(|source| ConnectError::Io {
        path: options.socket.clone(),
        source,
    })?;
    let codec = FrameCodec::default();
    let hello = Frame {
        kind: Some(Kind::Hello(proto::Hello {
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
            user: options
                .credentials
                .as_ref()
                .map(|c| c.user().to_owned())
                .unwrap_or_default(),
            secret: options
                .credentials
                .as_ref()
                .map(|c| bytes::Bytes::copy_from_slice(c.secret()))
                .unwrap_or_default(),
            resume_token: bytes::Bytes::copy_from_slice(resume),
        })),
    };
    let mut buf = BytesMut::new();
    codec
        .encode(&hello, &mut buf)
        .map_err(|e| ConnectError::Handshake(e.to_string()))?;
    stream
        .write_all(&buf)
        .await
        .map_err(|e| ConnectError::Handshake(e.to_string()))?;
    let mut reader = FrameReader::new(stream.clone(), codec);
    let welcome = match reader.read_one().await {
        Ok(Some(Frame {
            kind: Some(Kind::Welcome(w)),
        })) => w,
        Ok(Some(Frame {
            kind: Some(Kind::Error(e)),
        })) => return Err(ConnectError::Refused(Refused::from(e))),
        Ok(other) => {
            return Err(ConnectError::Handshake(format!(
                "expected welcome, got {other:?}"
            )));
        }
        Err(e) => return Err(ConnectError::Handshake(e.to_string())),
    };
    reader.set_codec(FrameCodec::new(welcome.max_frame_bytes as usize));
    Ok(Link {
        stream,
        reader,
        welcome,
    })
}

/// Refuses a broker whose socket peer runs as neither this process's user,
/// root, nor the configured `broker_uid`: someone else's socket in a shared
/// directory must not get this client's credentials or messages.
fn check_broker_uid(
    stream: &crate::transport::Stream,
    options: &ClientOptions,
) -> Result<(), ConnectError> {
    #[cfg(unix)]
    {
        let own = crate::transport::current_uid();
        match crate::transport::peer_uid(stream) {
            Some(uid) if uid == own || uid == 0 || Some(uid) == options.broker_uid => Ok(()),
            uid => Err(ConnectError::UntrustedBroker {
                path: options.socket.clone(),
                uid,
            }),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (stream, options);
        Ok(())
    }
}

/// Runs links one after another until the client is closed for good.
async fn supervise(inner: Arc<Inner>, first: Link) {
    let mut link = first;
    let mut reconnected = None;
    loop {
        let reason = run_link(&inner, link, reconnected.take()).await;
        // Answers to calls sent on the dead link will never come.
        lock(&inner.pending).clear();
        lock(&inner.accepts).clear();
        lock(&inner.gathers).clear();
        if inner.out.is_closed() || !inner.options.reconnect.enabled {
            break;
        }
        tracing::warn!(%reason, "lost the broker; reconnecting");
        let _ = inner.events.send(ConnectionEvent::Disconnected { reason });
        match reconnect(&inner).await {
            Some((next, attempts)) => {
                link = next;
                reconnected = Some(attempts);
            }
            None => break,
        }
    }
    shut(&inner);
}

/// Tries to connect again with exponential backoff and jitter; `None` once the
/// client is closed meanwhile.
async fn reconnect(inner: &Inner) -> Option<(Link, u32)> {
    let policy = inner.options.reconnect;
    let mut delay = policy.initial;
    let mut attempts = 0u32;
    loop {
        let jittered = delay.mul_f64(0.5 + 0.5 * random_unit());
        tokio::select! {
            () = inner.out.closed_wait() => return None,
            () = tokio::time::sleep(jittered) => {}
        }
        attempts += 1;
        let resume = lock(&inner.resume_token).clone();
        match handshake(&inner.options, &inner.client_id, &resume).await {
            Ok(link) => {
                inner
                    .max_frame_bytes
                    .store(link.welcome.max_frame_bytes as usize, Ordering::Relaxed);
                *lock(&inner.resume_token) = link.welcome.resume_token.clone();
                return Some((link, attempts));
            }
            Err(ConnectError::Refused(r)) => {
                tracing::warn!(error = %r, "broker refused the reconnection; retrying");
            }
            Err(e) => tracing::debug!(error = %e, "reconnect attempt failed"),
        }
        delay = (delay * 2).min(policy.max);
    }
}

/// A number in [0, 1) that differs between processes and calls.
fn random_unit() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let bits = RandomState::new().hash_one(n ^ u64::from(std::process::id()));
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Subscribes again to everything the client held (the broker of a new link
/// knows none of it), waits for the broker to confirm, then announces the
/// reconnection. Never completes after that: it runs beside the link's tasks.
async fn restore_subscriptions(inner: &Inner, attempts: u32) {
    let specs: Vec<proto::Subscribe> = lock(&inner.subs)
        .values()
        .filter_map(|e| e.restore.clone())
        .collect();
    let mut confirmations = Vec::with_capacity(specs.len());
    for spec in specs {
        let seq = inner.next_seq.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        lock(&inner.pending).insert(seq, tx);
        let filter = spec.filter.clone();
        let _ = inner.out.push(Frame {
            kind: Some(Kind::Subscribe(proto::Subscribe { seq, ..spec })),
        });
        confirmations.push((filter, rx));
    }
    for (filter, rx) in confirmations {
        match tokio::time::timeout(inner.options.request_timeout, rx).await {
            Ok(Ok(Answer::Ok(_))) => {}
            other => tracing::warn!(%filter, ?other, "subscription not restored"),
        }
    }
    let _ = inner.events.send(ConnectionEvent::Reconnected { attempts });
    std::future::pending::<()>().await;
}

/// Serves one link until it fails or the client closes; returns why it ended.
/// After a reconnection (`reconnected` = attempts) it also restores subscriptions.
async fn run_link(inner: &Arc<Inner>, link: Link, reconnected: Option<u32>) -> String {
    let Link {
        stream,
        reader,
        welcome,
    } = link;
    let codec = FrameCodec::new(welcome.max_frame_bytes as usize);
    inner.out.attach_inline(Arc::new(stream.clone()), codec);
    let liveness = Liveness::new();
    let interval = Duration::from_millis(u64::from(welcome.heartbeat_interval_ms.max(1)));
    let misses = welcome.heartbeat_misses.max(1);
    // Half an interval of slack over the broker's limit: ticks run a little
    // late on a busy machine, and only a real freeze should void deliveries.
    inner.session.begin(interval * misses + interval / 2);
    let reason = tokio::select! {
        result = write_loop(inner.out.clone(), stream, codec) => match result {
            Ok(()) => "client closed".to_owned(),
            Err(e) => format!("write failed: {e}"),
        },
        reason = read_loop(reader, inner, &liveness) => reason,
        reason = heartbeat_loop(inner, &liveness, interval, misses) => reason,
        () = async {
            match reconnected {
                Some(attempts) => restore_subscriptions(inner, attempts).await,
                None => std::future::pending().await,
            }
        } => unreachable!("restoring subscriptions never completes"),
    };
    // The next link brings its own stream; this one's deliveries are void.
    inner.session.end();
    inner.out.detach_inline();
    reason
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

/// Routes frames from the broker until the link ends; returns why.
async fn read_loop(
    mut reader: FrameReader<SharedStream>,
    inner: &Inner,
    liveness: &Liveness,
) -> String {
    let mut deliveries = Deliveries::default();
    let mut goodbye = None;
    loop {
        // Each frame is routed as it is cut from the read buffer; nothing
        // after the broker's goodbye counts.
        let mut frames = 0;
        let read = reader
            .read_each(|body| {
                frames += 1;
                if goodbye.is_none() {
                    goodbye = route(inner, &mut deliveries, body)?;
                }
                Ok(())
            })
            .await;
        // The tasks these frames woke answer back to back: one write for all.
        inner.out.expect_burst(frames);
        deliveries.flush();
        match read {
            Ok(true) => {
                liveness.touch();
                if let Some(goodbye) = goodbye {
                    return format!("broker said goodbye: {goodbye}");
                }
            }
            Ok(false) => return "broker closed the connection".to_owned(),
            Err(e) => return format!("read failed: {e}"),
        }
    }
}

/// Routes one frame body: deliveries, the bulk of what a subscriber reads,
/// are decoded by hand (`codec::raw::decode_deliver`) and gather into runs;
/// replies, the bulk of what a requester reads, are decoded by hand too
/// (`decode_reply`); anything else is decoded by prost. Anything but a
/// delivery first hands on the run before it.
/// Returns the reason if the frame was a `Goodbye`.
fn route(
    inner: &Inner,
    deliveries: &mut Deliveries,
    body: bytes::Bytes,
) -> Result<Option<String>, crate::codec::FrameError> {
    let body = match crate::codec::raw::decode_deliver(body) {
        Ok(d) => {
            let message = Message::from_wire(d.envelope);
            deliveries.add(inner, d.sid, d.delivery_id, message);
            return Ok(None);
        }
        Err(body) => body,
    };
    let body = match crate::codec::raw::decode_reply(body) {
        Ok(r) => {
            deliveries.flush();
            reply(inner, r.correlation_id, Message::from_wire(r.envelope));
            return Ok(None);
        }
        Err(body) => body,
    };
    match crate::codec::decode_body(body)? {
        Frame {
            kind: Some(Kind::Deliver(d)),
        } => {
            let message = Message::new(d.message.unwrap_or_default());
            deliveries.add(inner, d.sid, d.delivery_id, message);
            Ok(None)
        }
        frame => {
            deliveries.flush();
            Ok(dispatch(inner, frame))
        }
    }
}

/// Routes one frame other than a delivery (those go through
/// [`Deliveries`]); returns the reason if it was a `Goodbye`.
fn dispatch(inner: &Inner, frame: Frame) -> Option<String> {
    let answer = |seq: u64, a: Answer| answer(inner, seq, a);
    match frame.kind {
        Some(Kind::Ok(ok)) if ok.result_kept => {
            if lock(&inner.accepts).contains_key(&ok.seq) {
                answer(ok.seq, Answer::Kept(ok.message_id));
            } else {
                // A request (not submitted) entered a durable group: the id
                // to ask by if the link is lost before its reply comes. Kept
                // only while the request still waits, checked under the
                // `kept` lock: a request that ends drops its receiver before
                // it removes its entry under that lock, so none is left.
                let mut kept = lock(&inner.kept);
                let waiting = lock(&inner.pending)
                    .get(&ok.seq)
                    .is_some_and(|tx| !tx.is_closed());
                if waiting {
                    kept.insert(ok.seq, ok.message_id);
                }
            }
        }
        Some(Kind::Ok(ok)) => answer(ok.seq, Answer::Ok(ok.message_id)),
        // A gather hears its refusal or its replies under its `seq` too.
        Some(Kind::Error(e)) if e.seq != 0 => {
            let seq = e.seq;
            let rest = lock(&inner.gathers).deliver(seq, GatherEvent::Refused(e));
            if let Err(GatherEvent::Refused(e)) = rest {
                answer(seq, Answer::Error(e));
            }
        }
        Some(Kind::Error(e)) => {
            tracing::warn!(code = e.code, message = %e.message, "broker reported an error");
        }
        Some(Kind::Reply(r)) => {
            let message = Message::new(r.message.unwrap_or_default());
            reply(inner, r.correlation_id, message);
        }
        Some(Kind::GatherStarted(s)) => {
            let _ = lock(&inner.gathers).deliver(s.seq, GatherEvent::Started(s));
        }
        Some(Kind::GatherDone(d)) => {
            let _ = lock(&inner.gathers).deliver(d.seq, GatherEvent::Done(d));
        }
        Some(Kind::StatsResponse(s)) => answer(s.seq, Answer::Stats(*s)),
        Some(Kind::Goodbye(g)) => return Some(g.reason),
        Some(Kind::Cancel(c)) => {
            tracing::debug!(message_id = c.message_id, "broker cancelled a held message");
            let mut cancelled = lock(&inner.cancelled);
            if cancelled.len() >= super::CANCELLED_MEMORY {
                cancelled.pop_front();
            }
            cancelled.push_back(c.message_id);
        }
        _ => {}
    }
    None
}

/// Hands `answer` to the call waiting under `seq`, if one is.
fn answer(inner: &Inner, seq: u64, answer: Answer) {
    // A submitted request hears `Ok` on acceptance, then its reply; an error
    // before acceptance ends both waits.
    let accept = lock(&inner.accepts).remove(&seq);
    match (accept, answer) {
        (Some(tx), accepted @ (Answer::Ok(_) | Answer::Kept(_))) => {
            let _ = tx.send(accepted);
        }
        // A durable queue confirms a request once the journal has
        // synced it, and a quick responder can answer before that: the
        // reply goes to its waiter, the acceptance is still to come.
        (Some(tx), reply @ Answer::Reply(_)) => {
            lock(&inner.accepts).insert(seq, tx);
            if let Some(waiter) = lock(&inner.pending).remove(&seq) {
                let _ = waiter.send(reply);
            }
        }
        (Some(tx), other) => {
            lock(&inner.pending).remove(&seq);
            let _ = tx.send(other);
        }
        (None, other) => {
            if let Some(tx) = lock(&inner.pending).remove(&seq) {
                let _ = tx.send(other);
            }
        }
    }
}

/// Hands a reply to the gather or the request waiting under `seq`.
fn reply(inner: &Inner, seq: u64, message: Message) {
    let rest = lock(&inner.gathers).deliver(seq, GatherEvent::Reply(message));
    if let Err(GatherEvent::Reply(message)) = rest {
        answer(inner, seq, Answer::Reply(message));
    }
}

/// Deliveries read in one batch, handed to their subscription's mailbox a
/// run at a time: one lookup and one lock per run of the same subscription,
/// not per message.
#[derive(Default)]
struct Deliveries {
    sid: u64,
    mailbox: Option<Arc<Mailbox<Incoming>>>,
    run: VecDeque<Incoming>,
}

impl Deliveries {
    fn add(&mut self, inner: &Inner, sid: u64, delivery_id: u64, message: Message) {
        if self.mailbox.is_none() || self.sid != sid {
            self.flush();
            self.sid = sid;
            self.mailbox = lock(&inner.subs).get(&sid).map(|e| e.mailbox.clone());
        }
        if self.mailbox.is_none() {
            if delivery_id != 0 {
                // Nobody here takes it any more: hand it back at once.
                let _ = inner.out.push(Frame {
                    kind: Some(Kind::Nack(proto::Nack {
                        delivery_id,
                        requeue: true,
                        seq: 0,
                    })),
                });
            }
            return;
        }
        self.run.push_back(Incoming {
            delivery_id,
            epoch: inner.session.current(),
            message,
        });
    }

    /// Hands the run to its mailbox and forgets the mailbox (a subscription
    /// may go away between batches).
    fn flush(&mut self) {
        if let Some(mailbox) = self.mailbox.take() {
            mailbox.push_run(&mut self.run);
        }
    }
}

/// Closes the client for good: pending calls fail, streams end.
fn shut(inner: &Inner) {
    inner.out.close();
    lock(&inner.pending).clear();
    lock(&inner.accepts).clear();
    lock(&inner.kept).clear();
    lock(&inner.gathers).clear();
    for entry in lock(&inner.subs).values() {
        entry.mailbox.close();
    }
    inner.closed.cancel();
    let _ = inner.events.send(ConnectionEvent::Closed);
}

/// Sends heartbeats; returns why the link is dead: the broker has been silent
/// for too long, or this client has (it was frozen or starved past the
/// broker's patience, so the broker has dropped the connection).
async fn heartbeat_loop(
    inner: &Inner,
    liveness: &Liveness,
    interval: Duration,
    misses: u32,
) -> String {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if inner.session.stalled() {
            return format!(
                "this client sent no heartbeat for over {misses} × {interval:?} (it was frozen or starved)"
            );
        }
        if liveness.silent_for() > interval * misses {
            return format!("broker missed {misses} heartbeats of {interval:?}");
        }
        let _ = inner.out.push(Frame {
            kind: Some(Kind::Heartbeat(proto::Heartbeat { nonce: 0 })),
        });
        inner.session.beat();
    }
}
