//! Limits, bad input, liveness and the socket's lifecycle, over real sockets.
#![cfg(unix)]

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

use bytes::BytesMut;
use eventbus::broker::{Broker, BrokerConfig, StartError};
use eventbus::client::{ConnectError, PublishError, SubscribeError};
use eventbus::codec::FrameCodec;
use eventbus::proto::{self, ErrorCode, Frame, frame::Kind};
use eventbus::transport::BindError;
use eventbus::{Client, Topic, TopicFilter};
use eventbus_harness::{DEADLINE, TestBroker, next};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

fn hello(id: &str, heartbeat_ms: u32, misses: u32) -> Frame {
    Frame {
        kind: Some(Kind::Hello(proto::Hello {
            protocol_version: proto::PROTOCOL_VERSION,
            client_id: id.into(),
            heartbeat_interval_ms: heartbeat_ms,
            heartbeat_misses: misses,
            ..Default::default()
        })),
    }
}

async fn send(stream: &mut UnixStream, frame: &Frame) {
    let mut buf = BytesMut::new();
    FrameCodec::default().encode(frame, &mut buf).unwrap();
    stream.write_all(&buf).await.unwrap();
}

/// Reads frames until the broker closes the connection; returns them all.
async fn read_until_closed(stream: &mut UnixStream) -> Vec<Frame> {
    let codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    loop {
        let n = tokio::time::timeout(DEADLINE, stream.read_buf(&mut buf))
            .await
            .expect("broker closes the connection in time")
            .unwrap_or(0);
        while let Ok(Some(f)) = codec.decode(&mut buf) {
            frames.push(f);
        }
        if n == 0 {
            return frames;
        }
    }
}

fn error_codes(frames: &[Frame]) -> Vec<ErrorCode> {
    frames
        .iter()
        .filter_map(|f| match &f.kind {
            Some(Kind::Error(e)) => ErrorCode::try_from(e.code).ok(),
            _ => None,
        })
        .collect()
}

async fn still_works(broker: &TestBroker, bystander: &Client) {
    let mut s = bystander
        .subscribe(&TopicFilter::new("alive").unwrap())
        .await
        .unwrap();
    let other = broker.client("other-publisher").await;
    other.publish(Topic::new("alive").unwrap(), "yes").unwrap();
    assert_eq!(&next(&mut s).await.unwrap().payload()[..], b"yes");
}

#[tokio::test]
async fn garbage_bytes_disconnect_only_the_sender() {
    let broker = TestBroker::start().await;
    let bystander = broker.client("bystander").await;
    let mut raw = UnixStream::connect(broker.socket()).await.unwrap();
    send(&mut raw, &hello("raw", 0, 0)).await;
    raw.write_all(&[0, 0, 0, 5, 1, 0xff, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    let frames = read_until_closed(&mut raw).await;
    assert_eq!(error_codes(&frames), [ErrorCode::Protocol]);
    still_works(&broker, &bystander).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn oversized_frame_disconnects_only_the_sender() {
    let broker = TestBroker::start_with(|c| c.max_frame_bytes = 4096).await;
    let bystander = broker.client("bystander").await;
    let mut raw = UnixStream::connect(broker.socket()).await.unwrap();
    send(&mut raw, &hello("raw", 0, 0)).await;
    raw.write_all(&(1u32 << 20).to_be_bytes()).await.unwrap();
    let frames = read_until_closed(&mut raw).await;
    assert_eq!(error_codes(&frames), [ErrorCode::FrameTooLarge]);
    still_works(&broker, &bystander).await;

    let err = bystander
        .publish(Topic::new("big").unwrap(), vec![0u8; 8192])
        .unwrap_err();
    assert!(
        matches!(err, PublishError::TooLarge { max: 4096, .. }),
        "{err}"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn first_frame_must_be_hello() {
    let broker = TestBroker::start().await;
    let mut raw = UnixStream::connect(broker.socket()).await.unwrap();
    send(
        &mut raw,
        &Frame {
            kind: Some(Kind::Heartbeat(proto::Heartbeat { nonce: 1 })),
        },
    )
    .await;
    assert_eq!(
        error_codes(&read_until_closed(&mut raw).await),
        [ErrorCode::Protocol]
    );
    let mut raw = UnixStream::connect(broker.socket()).await.unwrap();
    send(&mut raw, &hello("bad id!", 0, 0)).await;
    assert_eq!(
        error_codes(&read_until_closed(&mut raw).await),
        [ErrorCode::InvalidClientId]
    );
}

#[tokio::test]
async fn connection_limit_refuses_with_a_typed_error() {
    let broker = TestBroker::start_with(|c| c.max_connections = 2).await;
    let _a = broker.client("a").await;
    let _b = broker.client("b").await;
    let err = Client::connect(broker.options("c")).await.unwrap_err();
    match err {
        ConnectError::Refused(r) => assert_eq!(r.code, ErrorCode::ConnectionLimit),
        other => panic!("expected a refusal, got {other}"),
    }
}

#[tokio::test]
async fn subscription_limit_is_typed() {
    let broker = TestBroker::start_with(|c| c.max_subscriptions_per_client = 2).await;
    let c = broker.client("c").await;
    let _s1 = c.subscribe(&TopicFilter::new("a").unwrap()).await.unwrap();
    let _s2 = c.subscribe(&TopicFilter::new("b").unwrap()).await.unwrap();
    let err = c
        .subscribe(&TopicFilter::new("c").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err, SubscribeError::Limit { max: 2 });
}

#[tokio::test]
async fn broker_drops_a_client_that_stops_heartbeating() {
    let broker = TestBroker::start().await;
    let mut raw = UnixStream::connect(broker.socket()).await.unwrap();
    send(&mut raw, &hello("frozen", 20, 2)).await;
    let started = std::time::Instant::now();
    let frames = read_until_closed(&mut raw).await;
    assert!(matches!(
        frames.first().and_then(|f| f.kind.as_ref()),
        Some(Kind::Welcome(_))
    ));
    assert!(
        frames
            .iter()
            .any(|f| matches!(&f.kind, Some(Kind::Goodbye(g)) if g.reason.contains("heartbeat"))),
        "{frames:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(40));
}

#[tokio::test]
async fn client_detects_a_silent_broker() {
    let dir = eventbus_harness::embedded::short_temp_dir();
    let path = dir.path().join("fake.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let fake = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 256];
        let _ = s.read(&mut buf).await.unwrap();
        send(
            &mut s,
            &Frame {
                kind: Some(Kind::Welcome(proto::Welcome {
                    protocol_version: proto::PROTOCOL_VERSION,
                    max_frame_bytes: 65536,
                    heartbeat_interval_ms: 20,
                    heartbeat_misses: 2,
                    ..Default::default()
                })),
            },
        )
        .await;
        // Stay connected but silent, like a frozen broker, until the test ends.
        std::future::pending::<()>().await;
        drop(s);
    });
    let client = Client::connect(eventbus::ClientOptions::new(&path))
        .await
        .unwrap();
    let mut events = client.connection_events();
    let event = tokio::time::timeout(DEADLINE, events.recv())
        .await
        .expect("dead broker noticed")
        .unwrap();
    assert!(
        matches!(&event, eventbus::ConnectionEvent::Disconnected { reason } if reason.contains("heartbeats")),
        "{event:?}"
    );
    fake.abort();
    drop(client);
}

#[tokio::test]
async fn socket_is_private_and_a_live_broker_is_never_displaced() {
    let broker = TestBroker::start().await;
    let meta = std::fs::metadata(broker.socket()).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let dir = std::fs::metadata(broker.socket().parent().unwrap()).unwrap();
    assert_eq!(dir.permissions().mode() & 0o777, 0o700);

    let err = Broker::bind(BrokerConfig::new(broker.socket())).unwrap_err();
    assert!(
        matches!(err, StartError::Bind(BindError::AlreadyRunning { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("another broker is listening on"));
    // The first broker still serves.
    broker.client("still-here").await;
    let socket = broker.socket().to_owned();
    broker.shutdown().await;
    assert!(
        !socket.exists(),
        "graceful shutdown removes the socket file"
    );
}

#[tokio::test]
async fn stale_socket_file_is_replaced_and_other_files_are_not() {
    let dir = eventbus_harness::embedded::short_temp_dir();
    let path = dir.path().join("b.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists(), "a dead listener leaves its file");
    let broker = Broker::bind(BrokerConfig::new(&path)).expect("stale socket replaced");
    drop(broker);

    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "data").unwrap();
    let err = Broker::bind(BrokerConfig::new(&file)).unwrap_err();
    assert!(
        matches!(err, StartError::Bind(BindError::NotASocket { .. })),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "data");

    let mut tiny = BrokerConfig::new(dir.path().join("c.sock"));
    tiny.max_frame_bytes = 10;
    let err = Broker::bind(tiny).unwrap_err();
    assert!(matches!(err, StartError::Config(_)), "{err}");
}

#[tokio::test]
async fn shutdown_tells_clients_and_they_see_the_connection_end() {
    let broker = TestBroker::start().await;
    let client = Client::connect(
        broker
            .options("c")
            .reconnect(eventbus::ReconnectPolicy::disabled()),
    )
    .await
    .unwrap();
    let mut sub = client
        .subscribe(&TopicFilter::new("x").unwrap())
        .await
        .unwrap();
    broker.shutdown().await;
    assert!(next(&mut sub).await.is_none(), "stream ends");
    tokio::time::timeout(DEADLINE, client.closed())
        .await
        .unwrap();
    let err = client
        .publish_confirmed(&Topic::new("x").unwrap(), "late")
        .await
        .unwrap_err();
    assert_eq!(err, PublishError::Closed);
}

#[tokio::test]
async fn stats_count_traffic_per_connection_topic_and_queue() {
    let broker = TestBroker::start().await;
    let c = broker.client("counter").await;
    let mut s = c
        .subscribe(&TopicFilter::new("metrics.#").unwrap())
        .await
        .unwrap();
    for _ in 0..3 {
        c.publish_confirmed(&Topic::new("metrics.cpu").unwrap(), "1")
            .await
            .unwrap();
    }
    // Fire-and-forget publishes take the fan-out fast path, which counts on
    // its cached route: a change of topic and a stats request settle it.
    for topic in ["metrics.cpu", "metrics.cpu", "metrics.mem", "metrics.cpu"] {
        c.publish(Topic::new(topic).unwrap(), "1").unwrap();
    }
    for _ in 0..7 {
        next(&mut s).await.unwrap();
    }
    let stats = c.stats().await.unwrap();
    assert_eq!((stats.published, stats.delivered), (7, 7));
    let me = stats
        .connections
        .iter()
        .find(|x| x.id == "counter")
        .unwrap();
    assert_eq!((me.published, me.delivered), (7, 7));
    assert_eq!(me.pid, std::process::id());
    let counts = |name: &str| {
        let t = stats.topics.iter().find(|t| t.topic == name).unwrap();
        (t.published, t.delivered)
    };
    assert_eq!(counts("metrics.cpu"), (6, 6));
    assert_eq!(counts("metrics.mem"), (1, 1));
    assert!(stats.rss_bytes > 0);
}

/// A peer running as another user is refused by its credentials, not only by the
/// socket's file mode. Needs root (to run the peer as `nobody` and to open the
/// socket's permissions for the test) and python3 for the peer; says so and
/// returns otherwise.
#[tokio::test]
async fn peers_of_another_user_are_refused() {
    use std::os::unix::process::CommandExt;
    if eventbus::transport::current_uid() != 0
        || std::process::Command::new("python3")
            .arg("-V")
            .output()
            .is_err()
    {
        eprintln!("skipped: needs root and python3 to connect as another user");
        return;
    }
    let broker = TestBroker::start().await;
    let dir = broker.socket().parent().unwrap().to_owned();
    std::fs::set_permissions(
        broker.dir().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(broker.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let script = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n\
                  d=b''\nwhile True:\n  c=s.recv(4096)\n  if not c: break\n  d+=c\nsys.stdout.buffer.write(d)";
    let socket = broker.socket().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args(["-c", script])
            .arg(&socket)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut buf = BytesMut::from(&output.stdout[..]);
    let frame = FrameCodec::default()
        .decode(&mut buf)
        .unwrap()
        .expect("an error frame");
    assert_eq!(error_codes(&[frame]), [ErrorCode::PermissionDenied]);
    broker.shutdown().await;
}

/// The broker stamps id, source, timestamp and attempt: what a publisher
/// writes in those envelope fields is overwritten, on the fan-out fast path
/// (fire-and-forget, kept encoded) as on the decoding path (confirmed).
#[tokio::test]
async fn a_publisher_cannot_forge_the_fields_the_broker_stamps() {
    let broker = TestBroker::start().await;
    let watcher = broker.client("watcher").await;
    let mut sub = watcher
        .subscribe(&TopicFilter::new("forged").unwrap())
        .await
        .unwrap();
    let mut raw = UnixStream::connect(broker.socket()).await.unwrap();
    send(&mut raw, &hello("honest", 0, 0)).await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    for mode in [
        proto::PublishMode::FireAndForget,
        proto::PublishMode::Confirmed,
    ] {
        let forged = proto::Envelope {
            topic: "forged".into(),
            payload: "x".into(),
            id: 999_999,
            source: "admin".into(),
            timestamp_us: 1,
            attempt: 7,
            ..Default::default()
        };
        let publish = proto::Publish {
            seq: 1,
            mode: mode as i32,
            message: Some(Box::new(forged)),
            ..Default::default()
        };
        send(
            &mut raw,
            &Frame {
                kind: Some(Kind::Publish(publish)),
            },
        )
        .await;
        let m = next(&mut sub).await.unwrap();
        assert_eq!(m.source(), "honest", "{mode:?}");
        assert_ne!(m.id(), 999_999, "{mode:?}");
        assert_eq!(m.attempt(), 1, "{mode:?}");
        assert!(m.timestamp_us() >= before, "{mode:?}");
        assert_eq!(&m.payload()[..], b"x");
    }
    broker.shutdown().await;
}
