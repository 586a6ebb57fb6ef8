use bytes::BytesMut;

use super::*;
use crate::codec::FrameCodec;
use crate::proto::ErrorCode;

/// The body of `kind`'s frame, as the reader cuts it.
fn body(kind: Kind) -> Bytes {
    let mut wire = BytesMut::new();
    FrameCodec::default()
        .encode(&Frame { kind: Some(kind) }, &mut wire)
        .unwrap();
    wire.freeze().slice(5..)
}

fn command(kind: Kind) -> Inbound {
    decode(body(kind), &mut TopicCache::default()).expect("a frame")
}

fn refusal(kind: Kind) -> (u64, ErrorCode) {
    match command(kind) {
        Err(r) => (r.seq.get(), r.refusal.code()),
        Ok(c) => panic!("accepted: {c:?}"),
    }
}

fn publish(mode: PublishMode, topic: &str) -> proto::Publish {
    proto::Publish {
        seq: 3,
        mode: mode as i32,
        message: Some(Box::new(proto::Envelope {
            topic: topic.into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[test]
fn a_publish_keeps_its_envelope_encoded() {
    let p = proto::Publish {
        seq: 0,
        ..publish(PublishMode::FireAndForget, "a.b")
    };
    let mut with_headers = p.clone();
    let envelope = with_headers.message.as_mut().unwrap();
    envelope.headers.insert("k".into(), "v".into());
    envelope.reply_to = "forged".into();
    let expected = prost::Message::encode_to_vec(&**envelope);
    let Ok(Command::Publish(got)) = command(Kind::Publish(with_headers)) else {
        panic!("a publish")
    };
    assert_eq!(&got.envelope[..], &expected[..]);
    assert!(got.reply_fields);
    assert_eq!(got.topic.as_str(), "a.b");
    let direct = proto::Publish {
        target_client: "c".into(),
        ..p
    };
    let Ok(Command::Publish(p)) = command(Kind::Publish(direct)) else {
        panic!("decoded")
    };
    assert_eq!(p.target.as_ref().map(ClientId::as_str), Some("c"));
    assert_eq!(p.mode, Mode::FireAndForget);
}

#[test]
fn publish_modes_and_request_timeouts() {
    let Ok(Command::Publish(p)) = command(Kind::Publish(publish(PublishMode::Confirmed, "a")))
    else {
        panic!()
    };
    assert_eq!((p.seq, p.mode), (Seq::new(3), Mode::Confirmed));
    assert!(p.mode.is_confirmed() && !p.mode.is_request());
    assert_eq!(p.topic.as_str(), "a");
    let Ok(Command::Publish(p)) = command(Kind::Publish(publish(PublishMode::Request, "a"))) else {
        panic!()
    };
    assert_eq!(
        p.mode,
        Mode::Request {
            confirmed: false,
            timeout: DEFAULT_REQUEST_TIMEOUT
        }
    );
    assert!(p.mode.is_request() && !p.mode.is_confirmed());
    let timed = proto::Publish {
        timeout_ms: 250,
        ..publish(PublishMode::RequestConfirmed, "a")
    };
    let Ok(Command::Publish(p)) = command(Kind::Publish(timed)) else {
        panic!()
    };
    assert_eq!(
        p.mode,
        Mode::Request {
            confirmed: true,
            timeout: Duration::from_millis(250)
        }
    );
    assert!(p.mode.is_request() && p.mode.is_confirmed());
    assert!(!Mode::FireAndForget.is_confirmed() && !Mode::FireAndForget.is_request());
}

#[test]
fn bad_publishes_are_refused_under_their_seq() {
    let unknown_mode = proto::Publish {
        mode: 9,
        ..publish(PublishMode::Confirmed, "a")
    };
    assert_eq!(
        refusal(Kind::Publish(unknown_mode)),
        (3, ErrorCode::InvalidArgument)
    );
    let empty = proto::Publish {
        message: None,
        ..publish(PublishMode::Confirmed, "a")
    };
    assert_eq!(
        refusal(Kind::Publish(empty)),
        (3, ErrorCode::InvalidArgument)
    );
    assert_eq!(
        refusal(Kind::Publish(publish(PublishMode::Confirmed, "A.B"))),
        (3, ErrorCode::InvalidTopic)
    );
    let bad_target = proto::Publish {
        target_client: "not valid!".into(),
        ..publish(PublishMode::Confirmed, "a")
    };
    assert_eq!(
        refusal(Kind::Publish(bad_target)),
        (3, ErrorCode::NoSuchClient)
    );
}

#[test]
fn subscribes_are_validated() {
    let sub = |sid: u64, filter: &str, group: &str| {
        Kind::Subscribe(proto::Subscribe {
            seq: 8,
            sid,
            filter: filter.into(),
            group: group.into(),
            prefetch: 4,
            fallback: false,
        })
    };
    let Ok(Command::Subscribe(s)) = command(sub(2, "a.+", "workers")) else {
        panic!()
    };
    assert_eq!(
        (s.seq, s.sid, s.filter.as_str()),
        (Seq::new(8), SubscriptionId::new(2), "a.+")
    );
    let (group, prefetch) = s.group.expect("a group");
    assert_eq!((group.as_str(), prefetch), ("workers", 4));
    let Ok(Command::Subscribe(s)) = command(sub(2, "a", "")) else {
        panic!()
    };
    assert!(s.group.is_none());
    assert_eq!(refusal(sub(0, "a", "")), (8, ErrorCode::InvalidArgument));
    assert_eq!(refusal(sub(1, "#.a", "")), (8, ErrorCode::InvalidFilter));
    assert_eq!(refusal(sub(1, "a", "No")), (8, ErrorCode::InvalidArgument));
}

#[test]
fn settling_frames_carry_their_ids() {
    let Ok(Command::Settle { delivery, how, seq }) = command(Kind::Ack(proto::Ack {
        delivery_id: 4,
        seq: 5,
    })) else {
        panic!()
    };
    assert_eq!((delivery.get(), how, seq.get()), (4, Settlement::Ack, 5));
    let nack = |requeue| {
        Kind::Nack(proto::Nack {
            delivery_id: 6,
            requeue,
            seq: 0,
        })
    };
    assert!(matches!(
        command(nack(true)),
        Ok(Command::Settle {
            how: Settlement::Requeue,
            ..
        })
    ));
    assert!(matches!(
        command(nack(false)),
        Ok(Command::Settle {
            how: Settlement::Reject,
            ..
        })
    ));
    let reply = |delivery_id| {
        Kind::Reply(proto::Reply {
            correlation_id: 9,
            delivery_id,
            message: None,
            seq: 1,
        })
    };
    let Ok(Command::Reply(r)) = command(reply(0)) else {
        panic!()
    };
    assert_eq!((r.correlation.get(), r.delivery, r.seq.get()), (9, None, 1));
    let Ok(Command::Reply(r)) = command(reply(7)) else {
        panic!()
    };
    assert_eq!(r.delivery, Some(DeliveryId::new(7)));
    let Ok(Command::Cancel { message, seq }) = command(Kind::Cancel(proto::Cancel {
        seq: 2,
        message_id: 11,
    })) else {
        panic!()
    };
    assert_eq!((message.get(), seq.get()), (11, 2));
    let Ok(Command::Unsubscribe { seq, sid }) =
        command(Kind::Unsubscribe(proto::Unsubscribe { seq: 3, sid: 4 }))
    else {
        panic!()
    };
    assert_eq!((seq.get(), sid.get()), (3, 4));
    assert!(matches!(
        command(Kind::StatsRequest(proto::StatsRequest { seq: 12 })),
        Ok(Command::Stats { seq }) if seq.get() == 12
    ));
    assert!(matches!(
        command(Kind::Heartbeat(proto::Heartbeat::default())),
        Ok(Command::Heartbeat)
    ));
    assert!(matches!(
        command(Kind::Goodbye(proto::Goodbye::default())),
        Ok(Command::Goodbye)
    ));
}

#[test]
fn frames_only_the_broker_sends_are_refused() {
    assert_eq!(
        refusal(Kind::Hello(proto::Hello::default())),
        (0, ErrorCode::Protocol)
    );
    for kind in [
        Kind::Welcome(proto::Welcome::default()),
        Kind::Deliver(proto::Deliver::default()),
        Kind::StatsResponse(Box::default()),
        Kind::Ok(proto::Ok::default()),
        Kind::Error(proto::Error::default()),
    ] {
        let name = kind_name(&kind);
        let Err(r) = command(kind) else { panic!() };
        assert_eq!(r.refusal.code(), ErrorCode::Protocol);
        assert_eq!(
            r.refusal.to_string(),
            format!("frame {name} is not sent by clients")
        );
    }
    assert!(matches!(
        Command::from_frame(Frame { kind: None }, 0, &mut TopicCache::default()),
        Err(Rejected { seq, .. }) if seq == Seq::NONE
    ));
}

#[test]
fn bytes_that_are_not_a_frame_are_an_error() {
    let mut topics = TopicCache::default();
    assert!(decode(Bytes::from_static(&[0xff, 0xff, 0xff]), &mut topics).is_err());
    // A well-formed protobuf with no known kind.
    assert!(decode(Bytes::new(), &mut topics).is_err());
}
