//! The `journal` target: a data directory of segment files of any header,
//! any frames and any tail, opened as the broker opens its journal.
//!
//! Every frame is sealed with a good checksum, so its body reaches the
//! record decoder and replay (random bytes would almost never pass the
//! CRC); the tail after them and a raw header are left as the input says,
//! for torn and corrupt ends. The checks:
//! - opening never fails but for a header of a newer format (refused, as
//!   `docs/durability.md` promises) and never panics, whatever the files;
//! - what it recovered is consistent: every message id once in its queue,
//!   within `1..=MessageId::MAX` and at most the id floor, every kept
//!   reply's id too;
//! - opening is idempotent: a second open finds no damage left (the first
//!   cut or set aside all of it) and recovers exactly the same state;
//! - a compaction of what was opened never panics or fails, and what it
//!   wrote opens again, consistent, with no damage, and with no LSN below
//!   one already given (a journal never gives an LSN twice). Its state is
//!   not compared with the one before: compaction relies on the log being
//!   one a journal wrote (its settlements follow their messages in the
//!   closed segments), which a fuzz input need not be.

use std::collections::HashSet;

use eventbus::fuzzing::journal::{self, OpenFailure, SegmentFile, SegmentHeader};

use crate::input::Reader;

/// The highest message id a broker issues (`MessageId::MAX`).
const MAX_ID: u64 = u64::MAX >> 1;

/// Reads the input as up to four segment files.
fn segments(data: &[u8]) -> Vec<SegmentFile<'_>> {
    let mut r = Reader::new(data);
    let count = usize::from(r.u8() % 4) + 1;
    let mut lsn = 1u64;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let header = match r.u8() % 8 {
            0 => {
                let len = usize::from(r.u8() % 40);
                SegmentHeader::Raw(r.bytes(len))
            }
            1 => SegmentHeader::Compacted {
                base: r.num(),
                covers: r.num(),
            },
            2 => SegmentHeader::Log { base: r.num() },
            _ => SegmentHeader::Log { base: lsn },
        };
        let frames = (0..r.u8() % 24)
            .map(|_| {
                // Mostly the next LSN; at times any.
                lsn = match r.u8() {
                    0..0xf0 => lsn.saturating_add(1),
                    _ => r.num(),
                };
                let kind = r.u8() % 12;
                let len = usize::from(r.u8());
                (lsn, kind, r.bytes(len))
            })
            .collect();
        let tail = match r.u8() % 4 {
            0 => {
                let len = usize::from(r.u8() % 64);
                r.bytes(len)
            }
            _ => &[],
        };
        out.push(SegmentFile {
            header,
            frames,
            tail,
        });
    }
    out
}

/// The `journal` target.
pub fn run(data: &[u8]) {
    let segments = segments(data);
    let dir = tempfile::Builder::new()
        .prefix("ebfuzz")
        .tempdir()
        .expect("a temp dir");
    journal::write(dir.path(), &segments).expect("segments written");
    let first = match journal::open(dir.path(), false) {
        Ok(opened) => opened,
        Err(OpenFailure::NewerFormat) => return,
        Err(OpenFailure::Other(error)) => panic!("the journal did not open: {error}"),
    };
    consistent(&first);
    let second = match journal::open(dir.path(), false) {
        Ok(opened) => opened,
        Err(failure) => panic!("the journal opened once, not twice: {failure:?}"),
    };
    assert_eq!(
        (second.lost_bytes, second.damaged),
        (0, 0),
        "damage left after the first open: {second:?}"
    );
    assert_eq!(
        (
            &second.queues,
            &second.results,
            second.id_floor,
            second.last_lsn,
            second.skipped_records
        ),
        (
            &first.queues,
            &first.results,
            first.id_floor,
            first.last_lsn,
            first.skipped_records
        ),
        "a second open recovered something else"
    );
    journal::open(dir.path(), true).expect("opened and compacted");
    let compacted = journal::open(dir.path(), false).expect("opened after its compaction");
    consistent(&compacted);
    assert_eq!(
        (compacted.lost_bytes, compacted.damaged),
        (0, 0),
        "damage after a compaction: {compacted:?}"
    );
    assert!(
        compacted.last_lsn >= second.last_lsn,
        "LSNs up to {} were given, the compacted journal goes on from {}",
        second.last_lsn,
        compacted.last_lsn
    );
}

/// Each message id once in its queue, every id one a broker issues and at
/// most the id floor.
fn consistent(opened: &journal::Opened) {
    let mut ids = HashSet::new();
    for (key, messages, _) in &opened.queues {
        for &(id, ..) in messages {
            assert!(ids.insert((key.clone(), id)), "{id} twice in {key}");
            assert!((1..=MAX_ID).contains(&id), "message id {id}");
            assert!(
                id <= opened.id_floor,
                "id {id} above the floor {}",
                opened.id_floor
            );
        }
    }
    for &(id, ..) in &opened.results {
        assert!((1..=MAX_ID).contains(&id), "kept reply id {id}");
        assert!(
            id <= opened.id_floor,
            "id {id} above the floor {}",
            opened.id_floor
        );
    }
}
