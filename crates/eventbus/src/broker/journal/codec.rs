//! The record frame on disk and the body of each kind.
//!
//! ```text
//! offset 0   len    u32 LE  bytes after the crc field (lsn + kind + body)
//! offset 4   crc    u32 LE  CRC32C of the len field, then of those `len` bytes
//! offset 8   lsn    u64 LE
//! offset 16  kind   u8
//! offset 17  body   fixed-width little-endian fields, then at most one
//!                   variable-length field that runs to the end of the body
//! ```
//!
//! A frame is trusted only when its length is within the limit, the bytes are
//! all there, and the checksum matches; anything else is the end of the
//! readable log ([`FrameRead::Torn`]). A frame whose checksum matches but whose
//! body does not decode is a [`BodyError`]: skipped, not trusted.

use super::record::{Counter, Counters, Lsn, MessageId, Outcome, QueueRef, Record};

/// Bytes before the LSN: the length and the checksum.
pub(crate) const FRAME_PREFIX: usize = 8;
/// Bytes of a frame before its body.
pub(crate) const FRAME_HEADER: usize = FRAME_PREFIX + 8 + 1;

const KIND_QUEUE_DEF: u8 = 1;
const KIND_ACCEPTED: u8 = 2;
const KIND_DELIVERED: u8 = 3;
const KIND_REQUEUED: u8 = 4;
const KIND_SETTLED: u8 = 5;
const KIND_RESULT_KEPT: u8 = 6;
const KIND_RESULT_REMOVED: u8 = 7;
const KIND_COUNTED: u8 = 8;
const KIND_ID_FLOOR: u8 = 9;
const KIND_CHECKPOINT: u8 = 10;

/// A frame's content: a domain record, or one the journal writes for itself.
/// In a decoded record, a [`QueueRef`] is the number the segment's own
/// [`Entry::QueueDef`] gave the queue, not yet the open journal's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry<'a> {
    /// A domain record.
    Record(Record<'a>),
    /// Names queue number `queue` for the rest of this segment: written
    /// before a segment's first record about the queue.
    QueueDef {
        queue: u32,
        filter: &'a str,
        group: &'a str,
    },
    /// Every queue's counters and the id floor as of LSN `as_of`, written by
    /// compaction: counters of records up to `as_of` are in it.
    Checkpoint {
        as_of: Lsn,
        id_floor: MessageId,
        counters: Vec<(u32, Counters)>,
    },
}

/// Why a frame whose checksum matched could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BodyError {
    /// The kind byte names no record kind.
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    /// The body is shorter than its kind's fixed fields.
    #[error("record of kind {0} is too short")]
    Short(u8),
    /// A field holds a value its kind does not allow.
    #[error("record of kind {kind} has an invalid {field}")]
    Invalid { kind: u8, field: &'static str },
}

/// The outcome of reading one frame at the start of a buffer.
#[derive(Debug)]
pub(crate) enum FrameRead<'a> {
    /// A whole frame with a matching checksum, `len` bytes long in all.
    Frame {
        lsn: Lsn,
        kind: u8,
        body: &'a [u8],
        len: usize,
    },
    /// The buffer ends here cleanly.
    End,
    /// What follows is not a trusted frame (cut short, too long, or a bad
    /// checksum): the readable log ends before it.
    Torn(TornReason),
}

/// Why the readable log ends where it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TornReason {
    /// Fewer bytes than the frame's header or its length says.
    Short,
    /// A length below the minimum or over the limit.
    BadLength,
    /// The checksum does not match.
    BadChecksum,
}

/// Reads the frame at the start of `buf`, trusting no length over
/// `max_frame_bytes`. Nothing but zeros from here on is the end: the writer
/// extends its segment ahead of what it wrote, and a crash leaves that tail
/// (a frame never has a zero length, so a torn or damaged frame is never
/// all zeros to the end).
pub(crate) fn read_frame(buf: &[u8], max_frame_bytes: usize) -> FrameRead<'_> {
    if buf.is_empty() || (buf[0] == 0 && is_zeros(buf)) {
        return FrameRead::End;
    }
    if buf.len() < FRAME_PREFIX {
        return FrameRead::Torn(TornReason::Short);
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    if len < FRAME_HEADER - FRAME_PREFIX || len + FRAME_PREFIX > max_frame_bytes {
        return FrameRead::Torn(TornReason::BadLength);
    }
    let Some(rest) = buf.get(FRAME_PREFIX..FRAME_PREFIX + len) else {
        return FrameRead::Torn(TornReason::Short);
    };
    let stored = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    if crc32c::crc32c_append(crc32c::crc32c(&buf[0..4]), rest) != stored {
        return FrameRead::Torn(TornReason::BadChecksum);
    }
    FrameRead::Frame {
        lsn: Lsn::new(u64::from_le_bytes(rest[0..8].try_into().expect("8 bytes"))),
        kind: rest[8],
        body: &rest[9..],
        len: FRAME_PREFIX + len,
    }
}

/// Whether `buf` holds only zeros.
fn is_zeros(buf: &[u8]) -> bool {
    buf.chunks(4096).all(|c| c.iter().all(|&b| b == 0))
}

/// The length of a frame whose body is `body_len` bytes.
pub(crate) const fn frame_len(body_len: usize) -> usize {
    FRAME_HEADER + body_len
}

/// The length of the frame [`encode`] writes for `record`.
pub(crate) fn encoded_len(record: &Record<'_>) -> usize {
    frame_len(match record {
        Record::Accepted { envelope, .. } => 16 + envelope.len(),
        Record::Delivered { .. } => 16,
        Record::Requeued { .. } => 17,
        Record::Settled { .. } => 13,
        Record::ResultKept { reply, .. } => 16 + reply.len(),
        Record::ResultRemoved { .. } | Record::IdFloor { .. } => 8,
        Record::Counted { .. } => 13,
    })
}

/// Appends the frame of `entry` at `lsn` to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, lsn: Lsn, entry: &Entry<'_>) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_PREFIX]);
    out.extend_from_slice(&lsn.get().to_le_bytes());
    match entry {
        Entry::Record(record) => encode_record(out, record),
        Entry::QueueDef {
            queue,
            filter,
            group,
        } => {
            out.push(KIND_QUEUE_DEF);
            out.extend_from_slice(&queue.to_le_bytes());
            let filter_len = u16::try_from(filter.len()).expect("a filter is at most 255 bytes");
            out.extend_from_slice(&filter_len.to_le_bytes());
            out.extend_from_slice(filter.as_bytes());
            out.extend_from_slice(group.as_bytes());
        }
        Entry::Checkpoint {
            as_of,
            id_floor,
            counters,
        } => {
            out.push(KIND_CHECKPOINT);
            out.extend_from_slice(&as_of.get().to_le_bytes());
            out.extend_from_slice(&id_floor.get().to_le_bytes());
            let n = u32::try_from(counters.len()).expect("fewer than 2^32 queues");
            out.extend_from_slice(&n.to_le_bytes());
            for (queue, c) in counters {
                out.extend_from_slice(&queue.to_le_bytes());
                for counter in Counter::ALL {
                    out.extend_from_slice(&c.get(counter).to_le_bytes());
                }
            }
        }
    }
    seal(out, start);
}

/// Appends a frame of any `kind` and `body` at `lsn`, sealed with a good
/// checksum: a frame no broker writes, for the `journal` fuzz target.
#[cfg(fuzzing)]
pub(crate) fn encode_raw(out: &mut Vec<u8>, lsn: Lsn, kind: u8, body: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_PREFIX]);
    out.extend_from_slice(&lsn.get().to_le_bytes());
    out.push(kind);
    out.extend_from_slice(body);
    seal(out, start);
}

/// Fills in the length and checksum of the frame that starts at `start`.
fn seal(out: &mut [u8], start: usize) {
    let len = u32::try_from(out.len() - start - FRAME_PREFIX).expect("a frame under 4 GiB");
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&out[start..start + 4]),
        &out[start + FRAME_PREFIX..],
    );
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn encode_record(out: &mut Vec<u8>, record: &Record<'_>) {
    let message = |out: &mut Vec<u8>, kind: u8, queue: QueueRef, id: MessageId| {
        out.push(kind);
        out.extend_from_slice(&queue.0.to_le_bytes());
        out.extend_from_slice(&id.get().to_le_bytes());
    };
    match *record {
        Record::Accepted {
            queue,
            id,
            attempt,
            envelope,
        } => {
            message(out, KIND_ACCEPTED, queue, id);
            out.extend_from_slice(&attempt.to_le_bytes());
            out.extend_from_slice(envelope);
        }
        Record::Delivered { queue, id, attempt } => {
            message(out, KIND_DELIVERED, queue, id);
            out.extend_from_slice(&attempt.to_le_bytes());
        }
        Record::Requeued {
            queue,
            id,
            attempt,
            nacked,
        } => {
            message(out, KIND_REQUEUED, queue, id);
            out.extend_from_slice(&attempt.to_le_bytes());
            out.push(u8::from(nacked));
        }
        Record::Settled { queue, id, outcome } => {
            message(out, KIND_SETTLED, queue, id);
            out.push(outcome_code(outcome));
        }
        Record::ResultKept {
            id,
            expires_at_ms,
            reply,
        } => {
            out.push(KIND_RESULT_KEPT);
            out.extend_from_slice(&id.get().to_le_bytes());
            out.extend_from_slice(&expires_at_ms.to_le_bytes());
            out.extend_from_slice(reply);
        }
        Record::ResultRemoved { id } => {
            out.push(KIND_RESULT_REMOVED);
            out.extend_from_slice(&id.get().to_le_bytes());
        }
        Record::Counted { queue, counter, by } => {
            out.push(KIND_COUNTED);
            out.extend_from_slice(&queue.0.to_le_bytes());
            out.push(counter_code(counter));
            out.extend_from_slice(&by.to_le_bytes());
        }
        Record::IdFloor { id } => {
            out.push(KIND_ID_FLOOR);
            out.extend_from_slice(&id.get().to_le_bytes());
        }
    }
}

fn outcome_code(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Acked => 1,
        Outcome::DeadLettered => 2,
        Outcome::Cancelled => 3,
        Outcome::Expired => 4,
        Outcome::Evicted => 5,
    }
}

fn outcome_from(code: u8) -> Option<Outcome> {
    Some(match code {
        1 => Outcome::Acked,
        2 => Outcome::DeadLettered,
        3 => Outcome::Cancelled,
        4 => Outcome::Expired,
        5 => Outcome::Evicted,
        _ => return None,
    })
}

fn counter_code(counter: Counter) -> u8 {
    let index = Counter::ALL
        .iter()
        .position(|c| *c == counter)
        .expect("every counter is in ALL");
    u8::try_from(index + 1).expect("few counters")
}

fn counter_from(code: u8) -> Option<Counter> {
    Counter::ALL.get(usize::from(code).checked_sub(1)?).copied()
}

/// A cursor over a body's fields.
struct Fields<'a> {
    kind: u8,
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BodyError> {
        if self.rest.len() < n {
            return Err(BodyError::Short(self.kind));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, BodyError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, BodyError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }

    fn u32(&mut self) -> Result<u32, BodyError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }

    fn u64(&mut self) -> Result<u64, BodyError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }

    fn queue_and_id(&mut self) -> Result<(QueueRef, MessageId), BodyError> {
        Ok((QueueRef(self.u32()?), self.id()?))
    }

    /// A message id a broker could have issued (`1..=MessageId::MAX`).
    fn id(&mut self) -> Result<MessageId, BodyError> {
        match self.u64()? {
            id @ 1.. if id <= MessageId::MAX.get() => Ok(MessageId::new(id)),
            _ => Err(self.invalid("id")),
        }
    }

    /// An id floor: an id, or 0 before any was issued.
    fn id_floor(&mut self) -> Result<MessageId, BodyError> {
        match self.u64()? {
            floor if floor <= MessageId::MAX.get() => Ok(MessageId::new(floor)),
            _ => Err(self.invalid("id floor")),
        }
    }

    fn invalid(&self, field: &'static str) -> BodyError {
        BodyError::Invalid {
            kind: self.kind,
            field,
        }
    }

    /// The fixed fields must have used up the body.
    fn done<T>(&self, value: T) -> Result<T, BodyError> {
        if self.rest.is_empty() {
            Ok(value)
        } else {
            Err(self.invalid("length"))
        }
    }
}

/// Decodes the body of a frame of `kind`.
pub(crate) fn decode(kind: u8, body: &[u8]) -> Result<Entry<'_>, BodyError> {
    let mut f = Fields { kind, rest: body };
    let record = match kind {
        KIND_QUEUE_DEF => {
            let queue = f.u32()?;
            let filter_len = usize::from(f.u16()?);
            let filter = std::str::from_utf8(f.take(filter_len)?);
            let group = std::str::from_utf8(f.rest);
            return match (filter, group) {
                (Ok(filter), Ok(group)) => Ok(Entry::QueueDef {
                    queue,
                    filter,
                    group,
                }),
                _ => Err(f.invalid("name")),
            };
        }
        KIND_CHECKPOINT => {
            let as_of = Lsn::new(f.u64()?);
            let id_floor = f.id_floor()?;
            let n = f.u32()? as usize;
            if f.rest.len() != n * (4 + 8 * Counter::ALL.len()) {
                return Err(f.invalid("length"));
            }
            let mut counters = Vec::with_capacity(n);
            for _ in 0..n {
                let queue = f.u32()?;
                let mut c = Counters::default();
                for counter in Counter::ALL {
                    c.add(counter, f.u64()?);
                }
                counters.push((queue, c));
            }
            return Ok(Entry::Checkpoint {
                as_of,
                id_floor,
                counters,
            });
        }
        KIND_ACCEPTED => {
            let (queue, id) = f.queue_and_id()?;
            let attempt = f.u32()?;
            Record::Accepted {
                queue,
                id,
                attempt,
                envelope: f.rest,
            }
        }
        KIND_DELIVERED => {
            let (queue, id) = f.queue_and_id()?;
            let attempt = f.u32()?;
            f.done(Record::Delivered { queue, id, attempt })?
        }
        KIND_REQUEUED => {
            let (queue, id) = f.queue_and_id()?;
            let attempt = f.u32()?;
            let nacked = match f.u8()? {
                0 => false,
                1 => true,
                _ => return Err(f.invalid("nacked")),
            };
            f.done(Record::Requeued {
                queue,
                id,
                attempt,
                nacked,
            })?
        }
        KIND_SETTLED => {
            let (queue, id) = f.queue_and_id()?;
            let outcome = outcome_from(f.u8()?).ok_or_else(|| f.invalid("outcome"))?;
            f.done(Record::Settled { queue, id, outcome })?
        }
        KIND_RESULT_KEPT => {
            let id = f.id()?;
            let expires_at_ms = f.u64()?;
            Record::ResultKept {
                id,
                expires_at_ms,
                reply: f.rest,
            }
        }
        KIND_RESULT_REMOVED => {
            let id = f.id()?;
            f.done(Record::ResultRemoved { id })?
        }
        KIND_COUNTED => {
            let queue = QueueRef(f.u32()?);
            let counter = counter_from(f.u8()?).ok_or_else(|| f.invalid("counter"))?;
            let by = f.u64()?;
            f.done(Record::Counted { queue, counter, by })?
        }
        KIND_ID_FLOOR => {
            let id = f.id_floor()?;
            f.done(Record::IdFloor { id })?
        }
        other => return Err(BodyError::UnknownKind(other)),
    };
    Ok(Entry::Record(record))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::journal::record::Counter;

    fn entries() -> Vec<Entry<'static>> {
        let (queue, id) = (QueueRef(3), MessageId::MAX);
        let mut counters = Counters::default();
        for (i, counter) in Counter::ALL.into_iter().enumerate() {
            counters.add(counter, i as u64 * 1000 + 1);
        }
        let records = [
            Record::Accepted {
                queue,
                id,
                attempt: 7,
                envelope: b"envelope bytes",
            },
            Record::Accepted {
                queue,
                id,
                attempt: 1,
                envelope: b"",
            },
            Record::Delivered {
                queue,
                id,
                attempt: u32::MAX,
            },
            Record::Requeued {
                queue,
                id,
                attempt: 2,
                nacked: true,
            },
            Record::Requeued {
                queue,
                id,
                attempt: 2,
                nacked: false,
            },
            Record::ResultKept {
                id,
                expires_at_ms: 99,
                reply: b"reply",
            },
            Record::ResultRemoved { id },
            Record::IdFloor { id },
        ];
        let mut out: Vec<Entry<'static>> = records.into_iter().map(Entry::Record).collect();
        for outcome in [
            Outcome::Acked,
            Outcome::DeadLettered,
            Outcome::Cancelled,
            Outcome::Expired,
            Outcome::Evicted,
        ] {
            out.push(Entry::Record(Record::Settled { queue, id, outcome }));
        }
        for counter in Counter::ALL {
            out.push(Entry::Record(Record::Counted {
                queue,
                counter,
                by: 5,
            }));
        }
        out.push(Entry::QueueDef {
            queue: 3,
            filter: "task.+.#",
            group: "workers",
        });
        out.push(Entry::Checkpoint {
            as_of: Lsn::new(12),
            id_floor: id,
            counters: vec![(0, Counters::default()), (3, counters)],
        });
        out
    }

    #[test]
    fn every_entry_round_trips_and_its_length_is_known() {
        for entry in entries() {
            let mut buf = Vec::new();
            encode(&mut buf, Lsn::new(42), &entry);
            if let Entry::Record(record) = &entry {
                assert_eq!(encoded_len(record), buf.len(), "{entry:?}");
            }
            let FrameRead::Frame {
                lsn,
                kind,
                body,
                len,
            } = read_frame(&buf, 1 << 20)
            else {
                panic!("not read back: {entry:?}");
            };
            assert_eq!((lsn, len), (Lsn::new(42), buf.len()));
            assert_eq!(decode(kind, body).unwrap(), entry);
            // Every shorter prefix is torn, never a frame.
            for cut in 0..buf.len() {
                let read = read_frame(&buf[..cut], 1 << 20);
                assert!(
                    matches!(read, FrameRead::End | FrameRead::Torn(_)),
                    "{cut}: {read:?}"
                );
            }
        }
    }

    #[test]
    fn a_body_that_does_not_fit_its_kind_is_an_error_not_a_panic() {
        for entry in entries() {
            let mut buf = Vec::new();
            encode(&mut buf, Lsn::new(1), &entry);
            let kind = buf[FRAME_HEADER - 1];
            let body = &buf[FRAME_HEADER..];
            for cut in 0..body.len() {
                let _ = decode(kind, &body[..cut]);
            }
            let mut longer = body.to_vec();
            longer.push(0);
            let _ = decode(kind, &longer);
        }
        assert_eq!(decode(200, b""), Err(BodyError::UnknownKind(200)));
        let mut short = vec![0; 4];
        short.extend_from_slice(&1u64.to_le_bytes());
        short.extend_from_slice(&[0; 3]);
        assert_eq!(
            decode(KIND_DELIVERED, &short),
            Err(BodyError::Short(KIND_DELIVERED))
        );
        let mut settled = vec![0; 4];
        settled.extend_from_slice(&1u64.to_le_bytes());
        settled.push(9);
        assert!(matches!(
            decode(KIND_SETTLED, &settled),
            Err(BodyError::Invalid {
                field: "outcome",
                ..
            })
        ));
    }

    #[test]
    fn an_id_no_broker_issues_is_an_error() {
        let (queue, attempt) = (QueueRef(0), 1);
        for bad in [0, MessageId::MAX.get() + 1, u64::MAX] {
            let id = MessageId::new(bad);
            for record in [
                Record::Delivered { queue, id, attempt },
                Record::ResultRemoved { id },
            ] {
                let mut buf = Vec::new();
                encode(&mut buf, Lsn::new(1), &Entry::Record(record));
                assert_eq!(
                    decode(buf[FRAME_HEADER - 1], &buf[FRAME_HEADER..]),
                    Err(BodyError::Invalid {
                        kind: buf[FRAME_HEADER - 1],
                        field: "id"
                    }),
                    "{record:?}"
                );
            }
        }
        // An id floor of 0 is a journal before any id; above MAX is damage.
        for (floor, ok) in [(0, true), (MessageId::MAX.get(), true), (u64::MAX, false)] {
            let record = Record::IdFloor {
                id: MessageId::new(floor),
            };
            let mut buf = Vec::new();
            encode(&mut buf, Lsn::new(1), &Entry::Record(record));
            let decoded = decode(KIND_ID_FLOOR, &buf[FRAME_HEADER..]);
            assert_eq!(decoded.is_ok(), ok, "{floor}: {decoded:?}");
        }
    }

    /// The frame of a small record.
    fn small_frame() -> Vec<u8> {
        let mut buf = Vec::new();
        encode(
            &mut buf,
            Lsn::new(1),
            &Entry::Record(Record::IdFloor {
                id: MessageId::new(1),
            }),
        );
        buf
    }

    #[test]
    fn a_length_over_the_limit_is_not_trusted() {
        let mut buf = small_frame();
        assert!(matches!(
            read_frame(&buf, buf.len() - 1),
            FrameRead::Torn(TornReason::BadLength)
        ));
        buf[0..4].copy_from_slice(&3u32.to_le_bytes());
        assert!(matches!(
            read_frame(&buf, 1 << 20),
            FrameRead::Torn(TornReason::BadLength)
        ));
    }

    #[test]
    fn zeros_to_the_end_are_the_end_and_zeros_before_anything_else_are_damage() {
        for len in [1, 3, 7, 8, 100, 5000] {
            assert!(matches!(read_frame(&vec![0; len], 1 << 20), FrameRead::End));
        }
        // A frame, then the zeros of an extended segment.
        let mut buf = small_frame();
        let frame = buf.len();
        buf.resize(frame + 4096, 0);
        assert!(matches!(read_frame(&buf, 1 << 20), FrameRead::Frame { .. }));
        assert!(matches!(read_frame(&buf[frame..], 1 << 20), FrameRead::End));
        // Zeros, then bytes: not the end, whatever the zeros' length.
        for zeros in [1, 4, 8, 4096] {
            let mut torn = vec![0; zeros];
            torn.push(1);
            assert!(
                matches!(read_frame(&torn, 1 << 20), FrameRead::Torn(_)),
                "{zeros}"
            );
        }
    }
}
