//! A hostile client: [`RawClient`] speaks the wire protocol frame by frame,
//! so a scenario can send what no `eventbus::Client` would (another client's
//! id, a forged reply, a 1 MiB `Hello.kind`, a socket that never says hello,
//! bytes that are not a frame) and see exactly what the broker answers.
//!
//! It is not a client library: it never heartbeats (its `Hello` asks for the
//! slowest heartbeat the broker grants, see [`hello`]), never reconnects and
//! answers nothing by itself. A reader task cuts every frame the broker sends
//! into a bounded channel; the calls that wait for an answer keep the frames
//! they pass over (deliveries, errors without `seq`) for
//! [`next_frame`](RawClient::next_frame) and [`take`](RawClient::take).
//! Every wait has a deadline; a broker that neither answers nor closes within
//! [`DEADLINE`] fails the scenario with what was waited for.
//!
//! [`garbage`] makes seeded nonsense to send: frames of every kind with
//! random fields, and bytes that are not frames.
//!
//! ```no_run
//! # async fn demo(socket: &std::path::Path) {
//! use e2e::hostile::{RawClient, hello};
//! use eventbus::proto::ErrorCode;
//! let refused = RawClient::connect(socket, hello("broker")).await.unwrap_err();
//! assert_eq!(refused.code(), Some(ErrorCode::InvalidClientId));
//! # }
//! ```

pub mod garbage;

use std::collections::VecDeque;
use std::io;
use std::path::Path;
use std::time::Duration;

use bytes::BytesMut;
use eventbus::codec::FrameCodec;
use eventbus::proto::{self, ErrorCode, Frame, frame::Kind};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::wait::DEADLINE;

/// Frames the reader task buffers before it stops reading the socket (and
/// the broker's outbound queue for this client grows instead).
const INCOMING_FRAMES: usize = 4096;

/// The heartbeat a [`hello`] asks for: far longer than any scenario, so a
/// raw client that sends nothing for a while is not declared dead (the
/// broker clamps it to its own maximum).
pub const RAW_HEARTBEAT_MS: u32 = 60_000;

/// A `Hello` for `client_id` with kind `hostile`, this process's pid, and
/// the slowest heartbeat the broker grants.
pub fn hello(client_id: &str) -> proto::Hello {
    proto::Hello {
        protocol_version: proto::PROTOCOL_VERSION,
        client_id: client_id.to_owned(),
        kind: "hostile".to_owned(),
        pid: std::process::id(),
        heartbeat_interval_ms: RAW_HEARTBEAT_MS,
        heartbeat_misses: 100,
        ..Default::default()
    }
}

/// An envelope on `topic` with `payload` and nothing else (boxed, as the
/// frames hold it).
pub fn message(topic: &str, payload: impl Into<bytes::Bytes>) -> Box<proto::Envelope> {
    Box::new(proto::Envelope {
        topic: topic.to_owned(),
        payload: payload.into(),
        ..Default::default()
    })
}

/// The length of `kind` as a frame on the wire (wire version byte and
/// body: what a frame limit bounds).
pub fn frame_len(kind: &Kind) -> usize {
    let mut buf = BytesMut::new();
    FrameCodec::new(u32::MAX as usize)
        .encode(
            &Frame {
                kind: Some(kind.clone()),
            },
            &mut buf,
        )
        .expect("a frame under 4 GiB encodes");
    buf.len() - 4
}

/// The largest confirmed publish on `topic` whose frame fits `limit`
/// bytes: what a client with that frame limit may send at most.
pub fn publish_filling(topic: &str, limit: usize) -> proto::Publish {
    let with = |len: usize| proto::Publish {
        seq: 1,
        mode: proto::PublishMode::Confirmed as i32,
        message: Some(message(topic, vec![b'x'; len])),
        ..Default::default()
    };
    let mut len = limit.saturating_sub(frame_len(&Kind::Publish(with(0))));
    // The payload's length prefix grows with it: step down to the exact fit.
    while len > 0 && frame_len(&Kind::Publish(with(len))) > limit {
        len -= 1;
    }
    with(len)
}

/// The typed code of an `Error` frame.
pub fn code(error: &proto::Error) -> ErrorCode {
    ErrorCode::try_from(error.code).unwrap_or(ErrorCode::Unspecified)
}

/// How the broker said no: an `Error` frame, or closing the connection
/// without one.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// An `Error` frame answering the call (or `seq` 0 for the connection).
    Error(proto::Error),
    /// The connection ended without an answer.
    Closed,
}

impl Refusal {
    /// The error code, when the broker sent one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Error(e) => Some(code(e)),
            Self::Closed => None,
        }
    }

    /// A detail of the error (`""` when absent).
    pub fn detail(&self, key: &str) -> &str {
        match self {
            Self::Error(e) => e.details.get(key).map_or("", String::as_str),
            Self::Closed => "",
        }
    }
}

/// What the broker answered to a call that succeeded.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `Ok`, with the message id of a confirmed publish (else 0).
    Ok(u64),
    /// A stats snapshot.
    Stats(Box<proto::StatsResponse>),
    /// A `Reply` whose `correlation_id` is the call's `seq`: the answer to
    /// a request (after its `Ok` when confirmed) or to a `ResultRequest`.
    Reply(proto::Reply),
}

/// What [`RawClient::next_frame`] saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// A frame from the broker.
    Frame(Frame),
    /// The broker closed the connection (or sent bytes that are not a frame).
    Closed,
    /// Nothing within the wait.
    Quiet,
}

/// One connection to the broker, driven frame by frame. Dropping it closes
/// the socket.
///
/// Cancel safety: none of its async methods is cancel safe (a call dropped
/// mid-await may lose the frames it had read, or write half a frame); a
/// scenario awaits each to completion, and every wait has its own deadline.
#[derive(Debug)]
pub struct RawClient {
    writer: OwnedWriteHalf,
    incoming: mpsc::Receiver<Frame>,
    reader: JoinHandle<()>,
    /// Frames received while waiting for something else, in order.
    held: VecDeque<Frame>,
    /// The reader task has ended: nothing more will come.
    ended: bool,
    next_seq: u64,
}

impl Drop for RawClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl RawClient {
    /// Opens a connection and sends nothing (not even `Hello`).
    pub async fn open(socket: &Path) -> io::Result<Self> {
        let stream = UnixStream::connect(socket).await?;
        let (read, writer) = stream.into_split();
        let (tx, incoming) = mpsc::channel(INCOMING_FRAMES);
        let reader = tokio::spawn(read_frames(read, tx));
        Ok(Self {
            writer,
            incoming,
            reader,
            held: VecDeque::new(),
            ended: false,
            next_seq: 1,
        })
    }

    /// Opens a connection and says `hello`; the `Welcome`, or how the
    /// broker refused. Panics if the socket cannot be opened.
    pub async fn connect(
        socket: &Path,
        hello: proto::Hello,
    ) -> Result<(Self, proto::Welcome), Refusal> {
        let mut client = Self::open(socket)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", socket.display()));
        let welcome = client.hello(hello).await?;
        Ok((client, welcome))
    }

    /// Sends `hello` and waits for the `Welcome` or the refusal.
    pub async fn hello(&mut self, hello: proto::Hello) -> Result<proto::Welcome, Refusal> {
        // A refused connection may be closed before the hello is written.
        let _ = self.send(Kind::Hello(hello)).await;
        let end = Instant::now() + DEADLINE;
        loop {
            match self.next_until(end).await {
                Next::Frame(Frame {
                    kind: Some(Kind::Welcome(welcome)),
                }) => return Ok(welcome),
                Next::Frame(Frame {
                    kind: Some(Kind::Error(e)),
                }) => return Err(Refusal::Error(e)),
                Next::Frame(other) => self.held.push_back(other),
                Next::Closed => return Err(Refusal::Closed),
                Next::Quiet => panic!("no answer to hello within {DEADLINE:?}"),
            }
        }
    }

    /// Makes the calls' `seq`s start at `seq` (they start at 1): frames
    /// sent with [`send`](Self::send) then cannot take their answers.
    pub fn set_next_seq(&mut self, seq: u64) {
        self.next_seq = seq;
    }

    /// A fresh `seq` for a call.
    pub fn next_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Writes one frame, whatever its size.
    pub async fn send(&mut self, kind: Kind) -> io::Result<()> {
        self.send_all([kind]).await
    }

    /// Writes frames back to back, in writes of up to 256 KiB.
    pub async fn send_all(&mut self, kinds: impl IntoIterator<Item = Kind>) -> io::Result<()> {
        const CHUNK: usize = 256 * 1024;
        let codec = FrameCodec::new(u32::MAX as usize);
        let mut buf = BytesMut::new();
        for kind in kinds {
            let frame = Frame { kind: Some(kind) };
            codec
                .encode(&frame, &mut buf)
                .expect("a frame under 4 GiB encodes");
            if buf.len() >= CHUNK {
                self.writer.write_all(&buf).await?;
                buf.clear();
            }
        }
        self.writer.write_all(&buf).await
    }

    /// Writes raw bytes: anything, framed or not.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes).await
    }

    /// The next frame: one held back by an earlier wait, else the next one
    /// to arrive within `within`.
    pub async fn next_frame(&mut self, within: Duration) -> Next {
        self.next_until(Instant::now() + within).await
    }

    async fn next_until(&mut self, end: Instant) -> Next {
        if let Some(frame) = self.held.pop_front() {
            return Next::Frame(frame);
        }
        if self.ended {
            return Next::Closed;
        }
        match tokio::time::timeout_at(end, self.incoming.recv()).await {
            Ok(Some(frame)) => Next::Frame(frame),
            Ok(None) => {
                self.ended = true;
                Next::Closed
            }
            Err(_) => Next::Quiet,
        }
    }

    /// Every frame held back so far for which `pick` is true, in order.
    pub fn take(&mut self, mut pick: impl FnMut(&Frame) -> bool) -> Vec<Frame> {
        let mut taken = Vec::new();
        self.held.retain(|f| {
            let picked = pick(f);
            if picked {
                taken.push(f.clone());
            }
            !picked
        });
        taken
    }

    /// Reads (and holds) everything the broker sends until it closes the
    /// connection; false if it is still open after `within`.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let end = Instant::now() + within;
        let mut seen = Vec::new();
        let closed = loop {
            match self.next_until(end).await {
                Next::Frame(frame) => seen.push(frame),
                Next::Closed => break true,
                Next::Quiet => break false,
            }
        };
        self.held.extend(seen);
        closed
    }

    /// Waits for the next answer to `seq` (`Ok`, `Error`, `StatsResponse`,
    /// or a `Reply` correlated to it), holding back every other frame.
    /// Panics after [`DEADLINE`].
    pub async fn answer(&mut self, seq: u64) -> Result<Answer, Refusal> {
        if let Some(at) = self.held.iter().position(|f| answers(f, seq)) {
            let frame = self.held.remove(at).expect("found above");
            return into_answer(frame);
        }
        let mut passed = Vec::new();
        let end = Instant::now() + DEADLINE;
        let answer = loop {
            let frame = match self.incoming_until(end).await {
                Some(Next::Frame(frame)) => frame,
                Some(Next::Closed) => break Err(Refusal::Closed),
                Some(Next::Quiet) | None => {
                    panic!("no answer to seq {seq} within {DEADLINE:?}")
                }
            };
            if answers(&frame, seq) {
                break into_answer(frame);
            }
            passed.push(frame);
        };
        self.held.extend(passed);
        answer
    }

    /// The next frame from the socket, past the held ones.
    async fn incoming_until(&mut self, end: Instant) -> Option<Next> {
        if self.ended {
            return Some(Next::Closed);
        }
        match tokio::time::timeout_at(end, self.incoming.recv()).await {
            Ok(Some(frame)) => Some(Next::Frame(frame)),
            Ok(None) => {
                self.ended = true;
                Some(Next::Closed)
            }
            Err(_) => None,
        }
    }

    /// Sends `publish` as a confirmed publish (its `seq` and mode are set
    /// here); the message id, or the refusal.
    pub async fn publish_confirmed(&mut self, mut publish: proto::Publish) -> Result<u64, Refusal> {
        let seq = self.next_seq();
        publish.seq = seq;
        publish.mode = proto::PublishMode::Confirmed as i32;
        self.send_or_closed(Kind::Publish(publish)).await?;
        self.expect_ok(seq).await
    }

    /// [`publish_confirmed`](Self::publish_confirmed) of `payload` on `topic`.
    pub async fn publish_to(
        &mut self,
        topic: &str,
        payload: impl Into<bytes::Bytes>,
    ) -> Result<u64, Refusal> {
        self.publish_confirmed(proto::Publish {
            message: Some(message(topic, payload)),
            ..Default::default()
        })
        .await
    }

    /// Subscribes with subscription id `sid` (plain when `group` is empty).
    pub async fn subscribe(
        &mut self,
        sid: u64,
        filter: &str,
        group: &str,
        prefetch: u32,
    ) -> Result<(), Refusal> {
        let seq = self.next_seq();
        self.send_or_closed(Kind::Subscribe(proto::Subscribe {
            seq,
            sid,
            filter: filter.to_owned(),
            group: group.to_owned(),
            prefetch,
            fallback: false,
        }))
        .await?;
        self.expect_ok(seq).await.map(drop)
    }

    /// Asks for a stats snapshot.
    pub async fn stats(&mut self) -> Result<proto::StatsResponse, Refusal> {
        let seq = self.next_seq();
        self.send_or_closed(Kind::StatsRequest(proto::StatsRequest { seq }))
            .await?;
        match self.answer(seq).await? {
            Answer::Stats(stats) => Ok(*stats),
            other => panic!("stats answered with {other:?}"),
        }
    }

    /// Asks for the kept reply to durable request `message_id`, waiting up
    /// to `timeout_ms` in the broker if it has not come yet; the `Reply`, or
    /// the refusal.
    pub async fn result(
        &mut self,
        message_id: u64,
        timeout_ms: u32,
    ) -> Result<proto::Reply, Refusal> {
        let seq = self.next_seq();
        let ask = Kind::ResultRequest(proto::ResultRequest {
            seq,
            message_id,
            timeout_ms,
        });
        match self.call(ask, seq).await? {
            Answer::Reply(reply) => Ok(reply),
            other => panic!("a result request answered with {other:?}"),
        }
    }

    /// Sends a frame that asks for an answer, then waits for it.
    pub async fn call(&mut self, kind: Kind, seq: u64) -> Result<Answer, Refusal> {
        self.send_or_closed(kind).await?;
        self.answer(seq).await
    }

    async fn send_or_closed(&mut self, kind: Kind) -> Result<(), Refusal> {
        self.send(kind).await.map_err(|_| Refusal::Closed)
    }

    async fn expect_ok(&mut self, seq: u64) -> Result<u64, Refusal> {
        match self.answer(seq).await? {
            Answer::Ok(id) => Ok(id),
            other => panic!("seq {seq} answered with {other:?}"),
        }
    }

    /// The next delivery (held or arriving within `within`), holding back
    /// other frames.
    pub async fn next_delivery(&mut self, within: Duration) -> Option<proto::Deliver> {
        if let Some(at) = self
            .held
            .iter()
            .position(|f| matches!(f.kind, Some(Kind::Deliver(_))))
        {
            let Some(Frame {
                kind: Some(Kind::Deliver(d)),
            }) = self.held.remove(at)
            else {
                unreachable!("found above")
            };
            return Some(d);
        }
        let end = Instant::now() + within;
        let mut passed = Vec::new();
        let found = loop {
            match self.incoming_until(end).await {
                Some(Next::Frame(Frame {
                    kind: Some(Kind::Deliver(d)),
                })) => break Some(d),
                Some(Next::Frame(other)) => passed.push(other),
                _ => break None,
            }
        };
        self.held.extend(passed);
        found
    }
}

/// Whether `frame` answers the call `seq`.
fn answers(frame: &Frame, seq: u64) -> bool {
    match &frame.kind {
        Some(Kind::Ok(ok)) => ok.seq == seq,
        Some(Kind::StatsResponse(s)) => s.seq == seq,
        Some(Kind::Error(e)) => e.seq == seq,
        Some(Kind::Reply(r)) => r.correlation_id == seq,
        _ => false,
    }
}

/// An answering frame as the call's result.
fn into_answer(frame: Frame) -> Result<Answer, Refusal> {
    match frame.kind {
        Some(Kind::Ok(ok)) => Ok(Answer::Ok(ok.message_id)),
        Some(Kind::StatsResponse(s)) => Ok(Answer::Stats(s)),
        Some(Kind::Error(e)) => Err(Refusal::Error(e)),
        Some(Kind::Reply(r)) => Ok(Answer::Reply(r)),
        other => unreachable!("not an answer: {other:?}"),
    }
}

/// Cuts frames off the socket into `tx` until the socket ends, fails, or
/// sends bytes that are not a frame.
async fn read_frames(mut read: OwnedReadHalf, tx: mpsc::Sender<Frame>) {
    let codec = FrameCodec::new(u32::MAX as usize);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    if tx.send(frame).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        match read.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// The resident set size of process `pid`, from `/proc/<pid>/status`.
/// Panics when it cannot be read (the process is gone).
pub fn rss_bytes(pid: u32) -> u64 {
    crate::chaos::metrics::rss_bytes(pid)
        .unwrap_or_else(|| panic!("cannot read the RSS of process {pid}"))
}
