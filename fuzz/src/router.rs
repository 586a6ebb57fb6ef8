//! The `router` target: command sequences from several fake connections
//! into the router, through the same edge as the broker's, with the
//! router's invariants checked after every step.
//!
//! It drives the model the router's property test drives
//! (`crates/eventbus/src/broker/router/tests/model.rs`): besides the
//! invariants, no message is held by two clients at once, an honest client
//! with a free id is always registered, and when everyone has left nothing
//! is in flight or pending. The script (`script.rs`) adds what the property
//! test does not send: any frame with any field (forged replies, cancels of
//! others' ids, the broker's topics and headers, huge headers, floods), any
//! bytes, any `Hello`.
//!
//! Input: a setup byte, then steps. The setup's bits: an auth file (1), a
//! declared `#` queue group (2), 4 KiB frames (4), tight quotas (8).

use eventbus::broker::{BrokerConfig, QueueOverride, hash_secret};
use eventbus::fuzzing::router::{Auth, Model};

use crate::input::{Reader, Writer};
use crate::script::Step;

/// The setup bits.
pub const AUTH: u8 = 1;
/// A `#` group is declared (`queue.overrides`), so anyone may join one.
pub const HASH_GROUP: u8 = 2;
/// Frames of at most 4 KiB.
pub const SMALL_FRAMES: u8 = 4;
/// Quotas and queue bounds a few messages reach.
pub const TIGHT: u8 = 8;

/// Most ops one input runs, and most bytes of frames it sends, so every
/// input runs in milliseconds.
const MAX_OPS: usize = 2000;
const MAX_FRAME_BYTES: usize = 8 << 20;

/// The auth file: `admin` (clients 0 and 1) may do everything; `limited`
/// (clients 2 and 3) may publish on `e.#` and `q.a` only, subscribe to `e.#`
/// and `q.#`, join group `g`, send direct messages to `c0` only, not read
/// stats, and has small quotas; `owner` is whoever connects from the
/// socket's uid without credentials.
fn auth_file() -> String {
    format!(
        r#"
[[user]]
name = "admin"
secret_sha256 = "{a}"
admin = true

[[user]]
name = "limited"
secret_sha256 = "{l}"
client_ids = ["c2", "c3", "l-*"]
groups = ["g"]
direct = ["c0"]
stats = false
[user.publish]
allow = ["e.#", "q.a"]
deny = ["e.y"]
[user.subscribe]
allow = ["e.#", "q.#"]
[user.quotas]
max_pending_requests = 1
max_subscriptions = 3
max_direct_unsettled = 1
max_queued_messages = 2

[[user]]
name = "owner"
uid = 1000
client_ids = ["o-*"]
"#,
        a = hash_secret(b"a"),
        l = hash_secret(b"l"),
    )
}

/// The configuration for the setup bits (over the model's own).
fn configure(setup: u8, c: &mut BrokerConfig) {
    if setup & HASH_GROUP != 0 {
        let mut o = QueueOverride::default();
        o.filter = "#".into();
        o.max_len = Some(3);
        c.queue.overrides.push(o);
    }
    if setup & SMALL_FRAMES != 0 {
        c.max_frame_bytes = 4096;
    }
    if setup & TIGHT != 0 {
        c.quotas.max_queued_messages = 3;
        c.quotas.max_queued_bytes = 2048;
        c.quotas.max_direct_unsettled = 1;
        c.quotas.max_pending_requests = 2;
        c.memory.max_queued_bytes = 4096;
        c.queue.max_bytes = 3000;
        c.subscriber.max_bytes = 2048;
    }
}

/// A script: the setup byte and the steps.
pub fn encode(setup: u8, steps: &[Step]) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(setup);
    for s in steps {
        s.write(&mut w);
    }
    w.data
}

/// Reads a script back.
pub fn decode(data: &[u8]) -> (u8, Vec<Step>) {
    let mut r = Reader::new(data);
    let setup = r.u8();
    let mut steps = Vec::new();
    while !r.is_empty() {
        steps.push(Step::read(&mut r));
    }
    (setup, steps)
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let (setup, steps) = decode(data);
    let auth = (setup & AUTH != 0).then(|| Auth {
        file: auth_file(),
        credentials: vec![
            ("admin".into(), b"a".to_vec()),
            ("admin".into(), b"a".to_vec()),
            ("limited".into(), b"l".to_vec()),
            ("limited".into(), b"l".to_vec()),
        ],
    });
    let mut model = Model::with(|c| configure(setup, c), auth);
    // `EVENTBUS_FUZZ_TRACE=1` prints the ops, to read a crash input.
    let trace = std::env::var_os("EVENTBUS_FUZZ_TRACE").is_some();
    if trace {
        eprintln!("setup {setup:#04b}");
    }
    let (mut ops, mut bytes) = (0, 0);
    'steps: for step in steps {
        for op in step.ops() {
            if let eventbus::fuzzing::router::Op::Frame { kind, .. } = &op {
                bytes += kind.encoded_len();
            }
            ops += 1;
            if ops > MAX_OPS || bytes > MAX_FRAME_BYTES {
                break 'steps;
            }
            if trace {
                eprintln!("{op:?}");
            }
            model.step(op);
        }
    }
    model.finish();
}
