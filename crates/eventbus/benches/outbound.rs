//! Micro-benchmarks of [`Outbound`], the per-connection queue every delivery
//! passes through: queueing fan-out deliveries with `push_droppable` and
//! writing them from the calling task with `try_flush` into an inline sink
//! that takes every byte (so the figure is the queue and the encoding, not a
//! socket).
//!
//! This is the last step of every delivery, from the frame to the bytes handed
//! to the socket; `dispatch.rs` measures queue-group dispatch end to end.

use std::hint::black_box;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eventbus::OverflowPolicy;
use eventbus::codec::FrameCodec;
use eventbus::framed::{InlineSink, Outbound, OutboundLimits};
use eventbus::proto::{Deliver, Envelope, Frame, frame::Kind};

/// A socket that is never full and throws the bytes away.
struct Discard;

impl InlineSink for Discard {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        Ok(black_box(buf).len())
    }
}

/// A fan-out delivery of a 64-byte payload.
fn deliver() -> Frame {
    Frame {
        kind: Some(Kind::Deliver(Deliver {
            sid: 3,
            delivery_id: 0,
            message: Some(Box::new(Envelope {
                id: 1_234_567,
                topic: "events.orders.created".to_owned(),
                payload: Bytes::from(vec![0xA5; 64]),
                source: "publisher-1".to_owned(),
                timestamp_us: 1_795_000_000_000_000,
                attempt: 1,
                ..Envelope::default()
            })),
        })),
    }
}

/// An open queue with room for every batch, writing inline to [`Discard`].
fn outbound() -> Arc<Outbound> {
    let out = Outbound::new(OutboundLimits {
        max_len: 4_096,
        max_bytes: 16 << 20,
        policy: OverflowPolicy::DropOldest,
        hard_cap: 8_192,
        hard_cap_bytes: 32 << 20,
    });
    out.attach_inline(Arc::new(Discard), FrameCodec::default());
    out
}

/// Push then flush, one delivery at a time and in batches of 64. Each push
/// takes a clone of the frame, as the router's fan-out does.
fn push_flush(c: &mut Criterion) {
    let frame = deliver();
    let mut group = c.benchmark_group("outbound");
    for batch in [1u64, 64] {
        let out = outbound();
        group.throughput(Throughput::Elements(batch));
        group.bench_function(format!("push_flush/{batch}"), |b| {
            b.iter(|| {
                for _ in 0..batch {
                    out.push_droppable(frame.clone()).unwrap();
                }
                out.try_flush();
            });
        });
        assert_eq!(out.depth(), 0, "every frame was written inline");
    }
    group.finish();
}

/// Short runs: the whole suite of micro-benchmarks stays under two minutes.
fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
}

criterion_group! {
    name = benches;
    config = config();
    targets = push_flush
}
criterion_main!(benches);
