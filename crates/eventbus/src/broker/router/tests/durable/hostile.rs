//! A journal whose every frame passes its checksum but says anything: what
//! a bug, a broker of another version or a hand could leave in the data
//! directory. Records about queues never defined or defined twice, settles
//! and deliveries of messages never accepted, ids and attempts at their
//! limits, envelopes and kept replies that do not decode, counters near
//! overflow, checkpoints from the future, LSNs out of order or past any a
//! journal gives, compacted segments covering anything. The broker opens
//! it, serves what it can, keeps its invariants (`Bus::run` checks them
//! after each step), never issues an id twice, and opens again what it
//! wrote after it. Nothing panics.

use proptest::prelude::*;
use prost::Message as _;

use super::*;
use crate::broker::journal::tests::support::{RawEntry, write_segment};
use crate::broker::journal::{Counter, Counters, MessageId, Outcome, QueueRef, Record};

const FILTERS: [&str; 5] = [TASKS, "task.#", "task.+", "", "a.#.b"];
const GROUPS: [&str; 3] = ["workers", "other", "no spaces"];
/// The pairs of `FILTERS` and `GROUPS` a client can join.
const JOINABLE: [(&str, &str); 6] = [
    (TASKS, "workers"),
    (TASKS, "other"),
    ("task.#", "workers"),
    ("task.#", "other"),
    ("task.+", "workers"),
    ("task.+", "other"),
];

fn id() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => 1..6u64,
        1 => Just(0),
        1 => Just(u64::MAX),
        1 => Just(u64::MAX - 1),
        1 => Just(1 << 63),
    ]
}

fn attempt() -> impl Strategy<Value = u32> {
    prop_oneof![6 => 0..4u32, 1 => Just(u32::MAX), 1 => Just(u32::MAX - 1)]
}

fn big() -> impl Strategy<Value = u64> {
    prop_oneof![3 => 0..5u64, 1 => Just(u64::MAX), 1 => Just(u64::MAX - 1)]
}

/// An envelope as the journal keeps it, or something that is not one.
fn envelope(pick: u8) -> Vec<u8> {
    let e = |topic: &str, source: &str, reply_to: &str, correlation_id: u64| {
        proto::Envelope {
            topic: topic.into(),
            payload: bytes::Bytes::from_static(b"m"),
            source: source.into(),
            reply_to: reply_to.into(),
            correlation_id,
            attempt: 7,
            ..Default::default()
        }
        .encode_to_vec()
    };
    match pick {
        0 => e(TASKS, "p", "", 0),
        1 => e(TASKS, "p", "req", 9),
        2 => e("task.other", "p", "", 0),
        3 => e("elsewhere", "p", "", 0),
        4 => e(TASKS, "", "", 0),
        5 => e("", "p", "", 0),
        6 => e(TASKS, "p", "req", 0),
        7 => vec![0xff, 0xff, 0xff],
        _ => Vec::new(),
    }
}

/// A kept reply, or something that is not one.
fn reply(pick: u8) -> Vec<u8> {
    let part = |out: &mut Vec<u8>, s: &[u8]| {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s);
    };
    let mut out = 5u64.to_le_bytes().to_vec();
    match pick {
        0 => {
            part(&mut out, b"answer");
            part(&mut out, b"w");
            part(&mut out, b"req");
        }
        1 => {
            part(&mut out, b"answer");
            part(&mut out, b"");
            part(&mut out, b"req");
        }
        2 => out.extend_from_slice(&u32::MAX.to_le_bytes()),
        _ => out.truncate(3),
    }
    out
}

/// One frame, before its owned bytes are borrowed.
#[derive(Debug, Clone)]
enum Step {
    Def(u32, usize, usize),
    Accepted(u32, u64, u32, u8),
    Delivered(u32, u64, u32),
    Requeued(u32, u64, u32, bool),
    Settled(u32, u64, u8),
    Kept(u64, u64, u8),
    Removed(u64),
    Counted(u32, usize, u64),
    IdFloor(u64),
    Checkpoint(u64, u64, Vec<(u32, u64)>),
}

fn step() -> impl Strategy<Value = Step> {
    let queue = prop_oneof![8 => 0..4u32, 1 => Just(u32::MAX)];
    prop_oneof![
        3 => (queue.clone(), 0..FILTERS.len(), 0..GROUPS.len())
            .prop_map(|(q, f, g)| Step::Def(q, f, g)),
        6 => (queue.clone(), id(), attempt(), 0..9u8)
            .prop_map(|(q, id, a, e)| Step::Accepted(q, id, a, e)),
        3 => (queue.clone(), id(), attempt()).prop_map(|(q, id, a)| Step::Delivered(q, id, a)),
        2 => (queue.clone(), id(), attempt(), any::<bool>())
            .prop_map(|(q, id, a, n)| Step::Requeued(q, id, a, n)),
        2 => (queue.clone(), id(), 0..5u8).prop_map(|(q, id, o)| Step::Settled(q, id, o)),
        2 => (id(), prop_oneof![Just(0), Just(u64::MAX), Just(u64::MAX / 2)], 0..4u8)
            .prop_map(|(id, exp, r)| Step::Kept(id, exp, r)),
        1 => id().prop_map(Step::Removed),
        1 => (queue.clone(), 0..Counter::ALL.len(), big())
            .prop_map(|(q, c, by)| Step::Counted(q, c, by)),
        1 => id().prop_map(Step::IdFloor),
        1 => (big(), id(), proptest::collection::vec((queue, big()), 0..3))
            .prop_map(|(as_of, floor, c)| Step::Checkpoint(as_of, floor, c)),
    ]
}

/// A frame's LSN against the one before.
#[derive(Debug, Clone, Copy)]
enum LsnStep {
    Next,
    Same,
    Back,
    /// Near `u64::MAX`, past any a journal gives.
    Huge,
}

impl LsnStep {
    fn from(self, lsn: u64) -> u64 {
        match self {
            Self::Next => lsn.saturating_add(1),
            Self::Same => lsn,
            Self::Back => lsn.saturating_sub(3).max(1),
            Self::Huge => u64::MAX - 1,
        }
    }
}

fn lsns() -> impl Strategy<Value = LsnStep> {
    prop_oneof![
        16 => Just(LsnStep::Next),
        2 => Just(LsnStep::Same),
        2 => Just(LsnStep::Back),
        1 => Just(LsnStep::Huge),
    ]
}

#[derive(Debug, Clone)]
struct Segment {
    /// Its header's base: its first frame's LSN, or off by this much.
    base_skew: i8,
    /// Written by compaction, covering segments based up to its base + this.
    covers: Option<u8>,
    frames: Vec<(LsnStep, Step)>,
}

fn segment() -> impl Strategy<Value = Segment> {
    (
        prop_oneof![4 => Just(0i8), 1 => -2..3i8],
        proptest::option::weighted(0.2, 0..8u8),
        proptest::collection::vec((lsns(), step()), 0..24),
    )
        .prop_map(|(base_skew, covers, frames)| Segment {
            base_skew,
            covers,
            frames,
        })
}

fn outcome(pick: u8) -> Outcome {
    [
        Outcome::Acked,
        Outcome::DeadLettered,
        Outcome::Cancelled,
        Outcome::Expired,
        Outcome::Evicted,
    ][usize::from(pick) % 5]
}

/// Writes `segments` into the journal directory `dir`.
fn write(dir: &Path, segments: &[Segment]) {
    let mut lsn: u64 = 1;
    for (no, s) in (1..).zip(segments) {
        let base = lsn.saturating_add_signed(i64::from(s.base_skew)).max(1);
        let envelopes: Vec<Vec<u8>> = s
            .frames
            .iter()
            .map(|(_, step)| match step {
                Step::Accepted(_, _, _, e) => envelope(*e),
                Step::Kept(_, _, r) => reply(*r),
                _ => Vec::new(),
            })
            .collect();
        let mut frames = Vec::new();
        for ((at, step), bytes) in s.frames.iter().zip(&envelopes) {
            lsn = at.from(lsn);
            let q = |q: &u32| QueueRef(*q);
            let m = MessageId::new;
            let raw = match step {
                Step::Def(queue, f, g) => RawEntry::Def {
                    queue: *queue,
                    filter: FILTERS[*f],
                    group: GROUPS[*g],
                },
                Step::Accepted(queue, id, attempt, _) => RawEntry::Record(Record::Accepted {
                    queue: q(queue),
                    id: m(*id),
                    attempt: *attempt,
                    envelope: bytes,
                }),
                Step::Delivered(queue, id, attempt) => RawEntry::Record(Record::Delivered {
                    queue: q(queue),
                    id: m(*id),
                    attempt: *attempt,
                }),
                Step::Requeued(queue, id, attempt, nacked) => RawEntry::Record(Record::Requeued {
                    queue: q(queue),
                    id: m(*id),
                    attempt: *attempt,
                    nacked: *nacked,
                }),
                Step::Settled(queue, id, o) => RawEntry::Record(Record::Settled {
                    queue: q(queue),
                    id: m(*id),
                    outcome: outcome(*o),
                }),
                Step::Kept(id, expires_at_ms, _) => RawEntry::Record(Record::ResultKept {
                    id: m(*id),
                    expires_at_ms: *expires_at_ms,
                    reply: bytes,
                }),
                Step::Removed(id) => RawEntry::Record(Record::ResultRemoved { id: m(*id) }),
                Step::Counted(queue, c, by) => RawEntry::Record(Record::Counted {
                    queue: q(queue),
                    counter: Counter::ALL[*c],
                    by: *by,
                }),
                Step::IdFloor(id) => RawEntry::Record(Record::IdFloor { id: m(*id) }),
                Step::Checkpoint(as_of, id_floor, counters) => RawEntry::Checkpoint {
                    as_of: *as_of,
                    id_floor: *id_floor,
                    counters: counters
                        .iter()
                        .map(|&(queue, n)| {
                            let mut c = Counters::default();
                            for counter in Counter::ALL {
                                c.add(counter, n);
                            }
                            (queue, c)
                        })
                        .collect(),
                },
            };
            frames.push((lsn, raw));
        }
        let covers = s.covers.map(|c| base.saturating_add(u64::from(c)));
        write_segment(dir, no, base, covers, &frames);
    }
}

/// Opens the bus on what `segments` say; a worker joins every queue a
/// client can join, takes what it is given and settles it; a publisher
/// publishes, confirmed; the bus crashes and opens again.
fn run(segments: &[Segment], max_attempts: u32) {
    let dir = temp_dir();
    let configure = move |c: &mut BrokerConfig| c.queue.max_attempts = max_attempts;
    // The first open makes the data directory as the broker wants it.
    let (bus, _) = open(dir.path(), configure);
    crash(bus);
    let data = dir.path().join("data");
    for entry in std::fs::read_dir(&data).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "seg") {
            std::fs::remove_file(path).expect("removed");
        }
    }
    write(&data, segments);

    let (mut bus, recovered) = open(dir.path(), configure);
    let recovered_ids: Vec<u64> = recovered
        .queues
        .iter()
        .flat_map(|q| q.messages.iter().map(|m| m.id.get()))
        .chain(recovered.results.iter().map(|r| r.id.get()))
        .collect();
    let w = bus.connect("w");
    let got = join_all(&mut bus, &w);
    for (i, (delivery, _, attempt, _)) in tasks(&got).into_iter().enumerate() {
        assert!(attempt >= 1, "a delivery's attempt is at least 1: {got:?}");
        if i % 2 == 0 {
            bus.ack(&w, delivery, 0);
        } else {
            bus.nack(&w, delivery, true, 0);
        }
    }
    let p = bus.connect("p");
    match confirmed(&mut bus, &p, 1, "fresh") {
        Ok(id) => assert!(
            !recovered_ids.contains(&id) && id > recovered.id_floor.get(),
            "a fresh message gets an id never issued before: {id}, floor {}",
            recovered.id_floor
        ),
        Err(code) => panic!("a confirmed publish after recovery was refused: {code:?}"),
    }
    // Kept replies are asked for by their requester (`req`), and by
    // another client.
    let req = bus.connect("req");
    for (seq, r) in (10..).zip(&recovered.results) {
        for asker in [&req, &p] {
            bus.send_done(
                asker,
                Kind::ResultRequest(proto::ResultRequest {
                    seq,
                    message_id: r.id.get(),
                    timeout_ms: 0,
                }),
            );
        }
    }
    let _ = bus.stats(&p);
    synced(&bus);
    crash(bus);
    // What the broker wrote after the hostile journal opens too.
    let (mut bus, _) = open(dir.path(), configure);
    let w = bus.connect("w2");
    join_all(&mut bus, &w);
}

/// `peer` joins every queue of [`JOINABLE`]; returns what it was sent once
/// the journal caught up (each join's `Ok` among it, checked and taken
/// out: a delivery of an earlier queue may come before a later one's).
fn join_all(bus: &mut Bus, peer: &Peer) -> Vec<Got> {
    for (sid, (filter, group)) in (1..).zip(JOINABLE) {
        bus.send_done(peer, super::super::join(sid, filter, group, 1000));
    }
    let mut got = settle(bus, peer);
    for sid in (1..).take(JOINABLE.len()) {
        let at = got.iter().position(|g| *g == ok(sid));
        assert!(at.is_some(), "joined {sid}: {got:?}");
        got.remove(at.unwrap_or_default());
    }
    got
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn a_journal_of_well_checksummed_nonsense_never_brings_the_broker_down(
        segments in proptest::collection::vec(segment(), 1..5),
        max_attempts in prop_oneof![Just(0u32), Just(2)],
    ) {
        run(&segments, max_attempts);
    }
}
