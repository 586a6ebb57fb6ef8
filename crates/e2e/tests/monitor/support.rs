//! What the monitor tests share: a cluster whose broker serves `--http` on
//! a port of its own, a minimal HTTP/1.1 client (GET, one request per
//! connection) and a subscriber that stops reading.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use e2e::{BrokerBuilder, Cluster, DEADLINE};
use eventbus::codec::FrameCodec;
use eventbus::proto::{self, Frame, frame::Kind};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UnixStream};

/// A free loopback port: bound, read and released, so the broker can bind
/// it again after a restart (the same URL across restarts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A cluster whose broker serves the monitor on `127.0.0.1:<port>`, with
/// `config` as its configuration file.
pub async fn cluster_with_http(config: &str) -> (Cluster, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cluster = Cluster::start_with(
        BrokerBuilder::new()
            .config_toml(config)
            .arg(format!("--http={addr}")),
    )
    .await;
    (cluster, addr)
}

/// A response: status, headers (lowercase names) and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` with extra header lines, over a new connection.
pub async fn get_with(addr: SocketAddr, path: &str, extra: &str) -> Response {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\r\n");
    raw(addr, request.as_bytes()).await
}

/// `GET path`, expecting an answer.
pub async fn get(addr: SocketAddr, path: &str) -> Response {
    get_with(addr, path, "").await
}

/// `GET path`, expecting `200` and JSON.
pub async fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let response = get(addr, path).await;
    assert_eq!(response.status, 200, "{path}: {}", response.body);
    assert_eq!(response.header("content-type"), Some("application/json"));
    response.json()
}

/// Sends `request` as given and reads the response until the server closes.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> Response {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(request).await?;
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await?;
        Ok::<_, std::io::Error>(bytes)
    };
    let bytes = tokio::time::timeout(DEADLINE, exchange)
        .await
        .expect("the monitor answers in time")
        .expect("the exchange succeeds");
    parse(&bytes)
}

fn parse(bytes: &[u8]) -> Response {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {text:?}"));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// A client that subscribes to `filter` over a raw socket and then never
/// reads again: the broker's buffer for it fills, and it becomes a slow
/// consumer. Dropping it closes the connection.
pub struct Stalled {
    _stream: UnixStream,
}

impl Stalled {
    pub async fn subscribe(socket: &std::path::Path, id: &str, filter: &str) -> Self {
        let mut stream = UnixStream::connect(socket).await.expect("connect");
        let codec = FrameCodec::default();
        let hello = Kind::Hello(proto::Hello {
            protocol_version: proto::PROTOCOL_VERSION,
            client_id: id.to_owned(),
            kind: "stalled".to_owned(),
            ..Default::default()
        });
        let subscribe = Kind::Subscribe(proto::Subscribe {
            seq: 1,
            sid: 1,
            filter: filter.to_owned(),
            ..Default::default()
        });
        let mut wire = BytesMut::new();
        for kind in [hello, subscribe] {
            codec
                .encode(&Frame { kind: Some(kind) }, &mut wire)
                .expect("encodes");
        }
        stream.write_all(&wire).await.expect("write");
        // Read until the subscription is confirmed: Welcome, then Ok.
        let mut buf = BytesMut::new();
        let confirmed = async {
            loop {
                while let Some(frame) = codec.decode(&mut buf).expect("a frame") {
                    if let Some(Kind::Ok(ok)) = frame.kind
                        && ok.seq == 1
                    {
                        return;
                    }
                }
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.expect("read");
                assert!(n > 0, "the broker closed the stalled client");
                buf.extend_from_slice(&chunk[..n]);
            }
        };
        tokio::time::timeout(Duration::from_secs(10), confirmed)
            .await
            .expect("subscribed in time");
        Self { _stream: stream }
    }
}
