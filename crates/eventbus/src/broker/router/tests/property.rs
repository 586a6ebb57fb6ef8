//! Random sequences of commands from several connections, with the clock
//! moving, slow readers and blocked publishers: the router's invariants hold
//! after every step (`Bus::run` checks them), and no message is ever held
//! by two clients at once as far as the clients can tell (the rules are
//! `model.rs`'s, shared with the fuzzer). Mostly the ops a well-behaved
//! client sends, some hostile frames and bytes, and at times a graceful
//! shutdown.

use proptest::prelude::*;

use super::model::{FILTERS, GROUPS, Model, Op, PEERS, TOPICS};
use super::{hello, proto};
use crate::proto::frame::Kind;

fn op() -> impl Strategy<Value = Op> {
    let peer = 0..PEERS;
    prop_oneof![
        2 => peer.clone().prop_map(Op::Connect),
        1 => peer.clone().prop_map(Op::Disconnect),
        2 => (peer.clone(), 1..4u64, 0..FILTERS.len())
            .prop_map(|(peer, sid, filter)| Op::Subscribe { peer, sid, filter }),
        4 => (peer.clone(), 4..7u64, 0..FILTERS.len(), 0..GROUPS.len(), 0..3u32)
            .prop_map(|(peer, sid, filter, group, prefetch)| Op::Join { peer, sid, filter, group, prefetch }),
        1 => (peer.clone(), 1..7u64).prop_map(|(peer, sid)| Op::Unsubscribe { peer, sid }),
        8 => (peer.clone(), 0..TOPICS.len(), 0..5i32, proptest::option::weighted(0.15, 0..PEERS))
            .prop_map(|(peer, topic, mode, direct)| Op::Publish { peer, topic, mode, direct }),
        5 => (peer.clone(), 0..4usize, 0..4u8).prop_map(|(peer, pick, how)| Op::Settle { peer, pick, how }),
        2 => (peer.clone(), 0..4usize).prop_map(|(peer, pick)| Op::Reply { peer, pick }),
        1 => (peer.clone(), 0..8usize).prop_map(|(peer, pick)| Op::Cancel { peer, pick }),
        1 => (peer.clone(), 0..8usize, 0..400u32)
            .prop_map(|(peer, pick, wait_ms)| Op::Result { peer, pick, wait_ms }),
        2 => (0..700u64).prop_map(Op::Advance),
        2 => peer.clone().prop_map(Op::Heartbeat),
        1 => peer.clone().prop_map(Op::Stall),
        1 => peer.clone().prop_map(Op::Stats),
        1 => any::<bool>().prop_map(Op::Memory),
        1 => (peer.clone(), 0..PEERS, any::<bool>()).prop_map(|(peer, id, resume)| Op::Hello {
            peer,
            hello: Box::new(hello(&format!("c{id}"))),
            resume,
        }),
        1 => (peer.clone(), attack()).prop_map(|(peer, kind)| Op::Frame { peer, kind }),
        1 => (peer, proptest::collection::vec(any::<u8>(), 0..24))
            .prop_map(|(peer, body)| Op::Body { peer, body: body.into() }),
    ]
}

/// Frames a hostile client sends: guessed correlation ids and message ids,
/// the broker's topics and headers, a request's fields on a plain publish.
fn attack() -> impl Strategy<Value = Kind> {
    let envelope = |topic: &str| proto::Envelope {
        topic: topic.into(),
        ..Default::default()
    };
    let publish = move |message: proto::Envelope| {
        Kind::Publish(proto::Publish {
            message: Some(Box::new(message)),
            ..Default::default()
        })
    };
    prop_oneof![
        any::<u64>().prop_map(|correlation_id| Kind::Reply(proto::Reply {
            correlation_id,
            message: Some(Box::default()),
            ..Default::default()
        })),
        (1..40u64).prop_map(|message_id| Kind::Cancel(proto::Cancel { seq: 6, message_id })),
        Just(publish(envelope("_sys.slow-consumer"))),
        Just(publish(proto::Envelope {
            headers: [("x-dead-letter-reason".to_owned(), "forged".to_owned())].into(),
            ..envelope("q.a")
        })),
        (1..40u64).prop_map(move |correlation_id| publish(proto::Envelope {
            correlation_id,
            reply_to: "c0".into(),
            ..envelope("e.x")
        })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_commands_from_several_connections_keep_every_invariant(
        ops in proptest::collection::vec(op(), 1..80),
        drain_at in proptest::option::of(0..80usize),
    ) {
        let mut model = Model::new();
        for (i, op) in ops.into_iter().enumerate() {
            if drain_at == Some(i) {
                model.step(Op::Drain);
            }
            model.step(op);
        }
        // Everyone leaves: everything in flight goes back to its queue.
        model.finish();
    }
}
