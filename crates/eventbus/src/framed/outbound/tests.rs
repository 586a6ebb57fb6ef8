use bytes::Bytes;

use super::*;
use crate::framed::FrameReader;
use crate::proto::{self, frame::Kind};

fn hb(nonce: u64) -> Frame {
    Frame {
        kind: Some(Kind::Heartbeat(proto::Heartbeat { nonce })),
    }
}

fn nonces(out: &Outbound) -> Vec<u64> {
    out.lock()
        .frames
        .iter()
        .map(|e| match &e.item {
            Outgoing::Frame(Frame {
                kind: Some(Kind::Heartbeat(h)),
            }) => h.nonce,
            _ => unreachable!("tests queue heartbeats only"),
        })
        .collect()
}

fn limits(policy: OverflowPolicy) -> OutboundLimits {
    OutboundLimits {
        max_len: 2,
        max_bytes: usize::MAX,
        policy,
        hard_cap: 4,
        hard_cap_bytes: usize::MAX,
    }
}

#[test]
fn drop_oldest_keeps_the_newest() {
    let out = Outbound::new(limits(OverflowPolicy::DropOldest));
    assert_eq!(out.push_droppable(hb(1)), Ok(Pushed::Queued));
    assert_eq!(out.push_droppable(hb(2)), Ok(Pushed::Queued));
    assert_eq!(out.push_droppable(hb(3)), Ok(Pushed::EvictedOldest));
    assert_eq!(nonces(&out), [2, 3]);
}

#[test]
fn drop_oldest_never_evicts_control_frames() {
    let out = Outbound::new(limits(OverflowPolicy::DropOldest));
    out.push(hb(0)).unwrap();
    out.push_droppable(hb(1)).unwrap();
    out.push_droppable(hb(2)).unwrap();
    out.push_droppable(hb(3)).unwrap();
    assert_eq!(nonces(&out), [0, 2, 3]);
}

#[test]
fn drop_incoming_keeps_the_oldest() {
    let out = Outbound::new(limits(OverflowPolicy::DropIncoming));
    out.push_droppable(hb(1)).unwrap();
    out.push_droppable(hb(2)).unwrap();
    assert_eq!(out.push_droppable(hb(3)), Ok(Pushed::DroppedIncoming));
    assert_eq!(nonces(&out), [1, 2]);
}

#[test]
fn reject_says_which_bound() {
    let out = Outbound::new(limits(OverflowPolicy::Reject));
    out.push_droppable(hb(1)).unwrap();
    out.push_droppable(hb(2)).unwrap();
    assert_eq!(
        out.push_droppable(hb(3)),
        Err(PushError::Full { max_len: 2 })
    );
}

#[test]
fn hard_cap_bounds_everything_and_closed_refuses() {
    let out = Outbound::new(limits(OverflowPolicy::DropOldest));
    for n in 0..4 {
        out.push(hb(n)).unwrap();
    }
    assert_eq!(out.push(hb(9)), Err(PushError::TooSlow { hard_cap: 4 }));
    out.close();
    assert_eq!(out.push(hb(9)), Err(PushError::Closed));
    assert_eq!(out.depth(), 4);
}

#[tokio::test]
async fn writer_flushes_everything_then_stops_on_close() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let out = Outbound::new(limits(OverflowPolicy::DropOldest));
    for n in 0..3 {
        out.push(hb(n)).unwrap();
    }
    out.close();
    write_loop(out, a, FrameCodec::default()).await.unwrap();
    let mut reader = FrameReader::new(b, FrameCodec::default());
    let mut frames = Vec::new();
    while reader.read_batch(&mut frames).await.unwrap() {}
    assert_eq!(frames, vec![hb(0), hb(1), hb(2)]);
}

#[test]
fn publishes_are_encoded_as_frames_and_checked_against_the_limit() {
    use crate::codec::raw::RawPublishOut;
    use crate::topic::Topic;
    let codec = FrameCodec::new(crate::codec::MIN_MAX_FRAME_BYTES);
    let publish = |payload: Vec<u8>| {
        Outgoing::Publish(RawPublishOut {
            topic: Topic::new("proc.start").unwrap(),
            payload: Bytes::from(payload),
            request: None,
        })
    };
    let small = publish(b"pid=1".to_vec());
    let mut dst = BytesMut::new();
    small.encode(&codec, &mut dst).unwrap();
    assert_eq!(small.weight(), dst.len());
    let frame = codec.decode(&mut dst.clone()).unwrap().unwrap();
    let Some(Kind::Publish(p)) = frame.kind else {
        panic!("not a publish: {frame:?}")
    };
    assert_eq!(p.message.unwrap().payload, Bytes::from_static(b"pid=1"));
    let huge = publish(vec![0u8; crate::codec::MIN_MAX_FRAME_BYTES]);
    let before = dst.clone();
    assert!(matches!(
        huge.encode(&codec, &mut dst),
        Err(FrameError::TooLarge { .. })
    ));
    assert_eq!(dst, before, "a refused frame leaves the buffer as it was");
}

#[test]
fn a_delivery_waiting_behind_others_stops_sharing_its_read_buffer() {
    use crate::codec::raw::{ReplyStamp, StampedDeliver};
    let read_buffer = Bytes::from(vec![7u8; 64 * 1024]);
    let out = Outbound::new(OutboundLimits {
        max_len: 1000,
        max_bytes: usize::MAX,
        policy: OverflowPolicy::DropOldest,
        hard_cap: 1000,
        hard_cap_bytes: usize::MAX,
    });
    let deliver = |n: usize| StampedDeliver {
        sid: 1,
        delivery_id: 0,
        envelope: read_buffer.slice(n * 10..n * 10 + 10),
        id: n as u64,
        source: crate::names::ClientId::new("p").unwrap(),
        timestamp_us: 0,
        attempt: 1,
        reply: ReplyStamp::None,
    };
    for n in 0..DETACH_AFTER + 2 {
        out.push_droppable(Outgoing::Deliver(deliver(n))).unwrap();
    }
    let inside = |b: &Bytes| read_buffer.as_ptr_range().contains(&b.as_ptr());
    let queued = out.take_queued();
    let shares: Vec<bool> = queued
        .iter()
        .map(|item| match item {
            Outgoing::Deliver(d) => inside(&d.envelope),
            _ => unreachable!(),
        })
        .collect();
    assert!(
        shares[..DETACH_AFTER].iter().all(|&s| s),
        "a short queue copies nothing"
    );
    assert!(
        shares[DETACH_AFTER..].iter().all(|&s| !s),
        "behind the others: own copies"
    );
    assert!(
        queued.iter().enumerate().all(|(n, item)| matches!(
            item,
            Outgoing::Deliver(d) if d.envelope == read_buffer.slice(n * 10..n * 10 + 10)
        )),
        "the same bytes"
    );
}

#[test]
fn a_frame_weighs_its_whole_encoding() {
    let frame = Frame {
        kind: Some(Kind::Deliver(proto::Deliver {
            sid: 1,
            delivery_id: 2,
            message: Some(Box::new(proto::Envelope {
                topic: "a.b".into(),
                payload: Bytes::from_static(b"payload"),
                headers: [("k".repeat(100), "v".repeat(1000))].into(),
                ..Default::default()
            })),
        })),
    };
    let mut wire = BytesMut::new();
    FrameCodec::default().encode(&frame, &mut wire).unwrap();
    assert_eq!(frame_weight(&frame), wire.len(), "headers count");
}

/// An inline sink that takes everything and remembers each write's size.
#[derive(Default)]
struct Writes(Mutex<Vec<usize>>);

impl InlineSink for Writes {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().push(buf.len());
        Ok(buf.len())
    }
}

fn inline_outbound() -> (Arc<Outbound>, Arc<Writes>) {
    let out = Outbound::new(limits(OverflowPolicy::Reject));
    let writes = Arc::new(Writes::default());
    out.attach_inline(writes.clone(), FrameCodec::default());
    (out, writes)
}

/// Queues a heartbeat as a call does: quietly, then an inline flush.
fn answer(out: &Outbound, nonce: u64) {
    out.push_quiet(hb(nonce)).unwrap();
    out.try_flush();
}

#[test]
fn frames_queued_one_at_a_time_are_each_written_at_once() {
    let (out, writes) = inline_outbound();
    for n in 1..=3 {
        answer(&out, n);
    }
    assert_eq!(writes.0.lock().unwrap().len(), 3);
}

#[test]
fn the_answers_to_a_burst_go_out_in_one_write() {
    let (out, writes) = inline_outbound();
    out.expect_burst(3);
    answer(&out, 1);
    answer(&out, 2);
    assert!(writes.0.lock().unwrap().is_empty(), "waiting for the last");
    assert_eq!(nonces(&out), [1, 2]);
    answer(&out, 3);
    let sizes = writes.0.lock().unwrap().clone();
    assert_eq!(sizes.len(), 1, "one write: {sizes:?}");
    assert!(out.lock().frames.is_empty());
    // The burst is over: the next frame is written at once.
    answer(&out, 4);
    assert_eq!(writes.0.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_burst_that_is_not_all_answered_is_written_by_the_writer() {
    let (out, writes) = inline_outbound();
    out.expect_burst(10);
    answer(&out, 1);
    answer(&out, 2);
    assert!(writes.0.lock().unwrap().is_empty());
    // The writer task, woken by the first, takes what the burst queued and
    // closes it.
    let mut bufs = WriterBufs::default();
    assert!(out.take(&mut bufs).await);
    assert_eq!(bufs.batch.len(), 2);
    out.put_down();
    answer(&out, 3);
    assert_eq!(writes.0.lock().unwrap().len(), 1, "written at once");
}
