//! Micro-benchmarks of [`FrameCodec`]: encoding and decoding the two frames on
//! the hot path (a 64-byte `Publish` from a client, the `Deliver` the broker
//! makes of it), and decoding a read buffer that holds 1,000 frames.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use eventbus::codec::FrameCodec;
use eventbus::proto::{Deliver, Envelope, Frame, Publish, frame::Kind};

/// Frames in the buffer of the `decode_buffer` benchmark.
const FRAMES_PER_BUFFER: usize = 1_000;

/// An envelope as publishers send them: a three-segment topic, 64 payload bytes.
fn envelope() -> Envelope {
    Envelope {
        topic: "events.orders.created".to_owned(),
        payload: Bytes::from(vec![0xA5; 64]),
        ..Envelope::default()
    }
}

/// A fire-and-forget publish of a 64-byte payload.
fn publish() -> Frame {
    Frame {
        kind: Some(Kind::Publish(Publish {
            seq: 41,
            message: Some(Box::new(envelope())),
            ..Publish::default()
        })),
    }
}

/// The delivery of that publish, with the fields the broker stamps.
fn deliver() -> Frame {
    Frame {
        kind: Some(Kind::Deliver(Deliver {
            sid: 3,
            delivery_id: 0,
            message: Some(Box::new(Envelope {
                id: 1_234_567,
                source: "publisher-1".to_owned(),
                timestamp_us: 1_795_000_000_000_000,
                attempt: 1,
                ..envelope()
            })),
        })),
    }
}

/// Encodes `frames` back to back into one buffer.
fn encoded(codec: &FrameCodec, frames: &[Frame]) -> BytesMut {
    let mut buf = BytesMut::new();
    for frame in frames {
        codec.encode(frame, &mut buf).expect("a 64-byte frame fits");
    }
    buf
}

/// Encode and decode of one frame of each kind.
fn single_frames(c: &mut Criterion) {
    let codec = FrameCodec::default();
    let mut group = c.benchmark_group("codec");
    for (name, frame) in [("publish_64B", publish()), ("deliver_64B", deliver())] {
        let mut buf = BytesMut::with_capacity(256);
        group.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| {
                buf.clear();
                codec.encode(black_box(&frame), &mut buf).unwrap();
            });
        });
        let bytes = encoded(&codec, std::slice::from_ref(&frame));
        group.bench_function(format!("decode/{name}"), |b| {
            b.iter_batched_ref(
                || bytes.clone(),
                |src| codec.decode(src).unwrap(),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

/// Decode of a buffer holding 1,000 frames, alternating publish and deliver,
/// as a reader finds it after one large read.
fn decode_buffer(c: &mut Criterion) {
    let codec = FrameCodec::default();
    let frames: Vec<Frame> = (0..FRAMES_PER_BUFFER)
        .map(|i| if i % 2 == 0 { publish() } else { deliver() })
        .collect();
    let bytes = encoded(&codec, &frames);
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(FRAMES_PER_BUFFER as u64));
    group.bench_function("decode_buffer/1000_frames", |b| {
        b.iter_batched_ref(
            || bytes.clone(),
            |src| {
                let mut n = 0;
                while let Some(frame) = codec.decode(src).unwrap() {
                    black_box(frame);
                    n += 1;
                }
                assert_eq!(n, FRAMES_PER_BUFFER);
            },
            BatchSize::SmallInput,
        );
    });
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
    targets = single_frames, decode_buffer
}
criterion_main!(benches);
