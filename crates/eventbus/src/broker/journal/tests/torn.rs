//! Damage: a torn or corrupt tail, a damaged header, a newer format, an
//! unsafe or busy directory.

use std::fs;
use std::path::Path;

use super::support::*;
use crate::broker::journal::segment::{FORMAT_VERSION, HEADER_LEN, Header, SegmentKind};
use crate::broker::journal::{DamageReason, Journal, JournalConfig, Lsn, OpenError, Recovered};

/// A journal of `n` messages in queue `a`/`g`, closed; returns its last
/// segment and where that segment's last record starts.
fn journal_of(config: &JournalConfig, n: u64) -> (std::path::PathBuf, u64) {
    let (journal, _, _) = open(config);
    let q = journal.queue(&key("a", "g"));
    let mut last = Lsn::ZERO;
    for id in 1..n {
        last = journal
            .append(accepted(q, id, b"payload of a task"))
            .unwrap();
    }
    wait_durable(&journal, last);
    let segment = segments(&config.dir).pop().unwrap();
    let record = accepted(q, n, b"the last record, torn");
    let len = crate::broker::journal::codec::encoded_len(&record) as u64;
    let last = journal.append(record).unwrap();
    wait_durable(&journal, last);
    // Closed: the segment is cut back to what was written (it is extended
    // ahead while open), so the last record ends the file.
    journal.close().unwrap();
    assert_eq!(segments(&config.dir).pop().unwrap(), segment);
    let start = fs::metadata(&segment).unwrap().len() - len;
    (segment, start)
}

/// A copy of `from`'s data dir in a new temp dir, with its config.
fn copy(from: &JournalConfig) -> (tempfile::TempDir, JournalConfig) {
    let dir = temp_dir();
    let mut config = from.clone();
    config.dir = dir.path().join("data");
    fs::create_dir(&config.dir).unwrap();
    for entry in fs::read_dir(&from.dir).unwrap() {
        let path = entry.unwrap().path();
        fs::copy(&path, config.dir.join(path.file_name().unwrap())).unwrap();
    }
    (dir, config)
}

fn in_copy(config: &JournalConfig, segment: &Path) -> std::path::PathBuf {
    config.dir.join(segment.file_name().unwrap())
}

fn assert_all_but_last(recovered: &Recovered, n: u64) {
    let want: Vec<u64> = (1..n).collect();
    assert_eq!(ids(queue(recovered, &key("a", "g"))), want);
}

#[test]
fn a_tail_cut_at_every_byte_of_the_last_record_loses_only_that_record() {
    let dir = temp_dir();
    let config = config(dir.path());
    let n = 20;
    let (segment, start) = journal_of(&config, n);
    let end = fs::metadata(&segment).unwrap().len();
    for cut in start..end {
        let (_keep, copy) = copy(&config);
        let file = in_copy(&copy, &segment);
        fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let recovered = reopen(&copy);
        assert_all_but_last(&recovered, n);
        assert_eq!(recovered.loss.bytes, cut - start, "cut at {cut}");
        if cut > start {
            assert_eq!(recovered.loss.damage.len(), 1);
            assert_eq!(recovered.loss.damage[0].offset, start);
        }
        assert_eq!(fs::metadata(&file).unwrap().len(), start, "tail truncated");
        // Repaired: a second open finds nothing wrong.
        let again = reopen(&copy);
        assert!(again.loss.is_empty(), "{:?}", again.loss);
        assert_all_but_last(&again, n);
    }
}

#[test]
fn a_flipped_byte_anywhere_in_the_last_record_is_caught() {
    let dir = temp_dir();
    let config = config(dir.path());
    let n = 10;
    let (segment, start) = journal_of(&config, n);
    let end = fs::metadata(&segment).unwrap().len();
    for at in start..end {
        let (_keep, copy) = copy(&config);
        let file = in_copy(&copy, &segment);
        let mut data = fs::read(&file).unwrap();
        data[at as usize] ^= 0x5a;
        fs::write(&file, &data).unwrap();
        let recovered = reopen(&copy);
        assert_all_but_last(&recovered, n);
        assert_eq!(recovered.loss.bytes, end - start, "flip at {at}");
        let reason = recovered.loss.damage[0].reason;
        assert!(
            matches!(reason, DamageReason::Corrupt | DamageReason::Torn),
            "{reason:?}"
        );
    }
}

#[test]
fn damage_in_an_older_segment_keeps_the_segments_after_it() {
    let dir = temp_dir();
    let config = config(dir.path());
    let (journal, _, _) = open(&config);
    let q = journal.queue(&key("a", "g"));
    let mut last = Lsn::ZERO;
    for id in 1..=200 {
        last = journal.append(accepted(q, id, &[1; 60])).unwrap();
    }
    wait_durable(&journal, last);
    journal.close().unwrap();
    let all = segments(&config.dir);
    assert!(all.len() >= 4);
    // Garbage over the middle of the second segment.
    let victim = &all[1];
    let mut data = fs::read(victim).unwrap();
    let mid = data.len() / 2;
    data[mid..mid + 8].fill(0xee);
    fs::write(victim, &data).unwrap();
    let recovered = reopen(&config);
    let got = ids(queue(&recovered, &key("a", "g")));
    assert_eq!(recovered.loss.damage.len(), 1);
    assert_eq!(&recovered.loss.damage[0].path, victim);
    assert!(got.len() < 200 && got.len() > 150, "{}", got.len());
    assert_eq!(*got.last().unwrap(), 200, "later segments still read");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "order kept");
}

fn write_header(path: &Path, version: u16) {
    let mut header = Header {
        kind: SegmentKind::Log,
        base: Lsn::new(1),
    }
    .encode();
    header[8..10].copy_from_slice(&version.to_le_bytes());
    fs::write(path, header).unwrap();
}

#[test]
fn a_journal_written_by_a_newer_format_is_refused() {
    let dir = temp_dir();
    let config = config(dir.path());
    reopen(&config);
    let newer = config.dir.join("00000000000000ff.seg");
    write_header(&newer, FORMAT_VERSION + 1);
    let error = Journal::open(config.clone(), |_| {}).unwrap_err();
    match error {
        OpenError::NewerFormat {
            path,
            found,
            supported,
        } => {
            assert_eq!(
                (path, found, supported),
                (newer.clone(), FORMAT_VERSION + 1, FORMAT_VERSION)
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(newer.exists(), "a newer journal is left alone");
}

#[test]
fn a_bad_header_is_set_aside_and_a_half_created_segment_removed() {
    let dir = temp_dir();
    let config = config(dir.path());
    let (_, start) = journal_of(&config, 3);
    assert!(start > HEADER_LEN as u64);
    let bad = config.dir.join("0000000000000100.seg");
    fs::write(&bad, [0x42; 100]).unwrap();
    let half = config.dir.join("0000000000000101.seg");
    fs::write(&half, &[0x45, 0x56, 0x42][..]).unwrap();
    let recovered = reopen(&config);
    assert_eq!(ids(queue(&recovered, &key("a", "g"))), [1, 2, 3]);
    let reasons: Vec<_> = recovered.loss.damage.iter().map(|d| d.reason).collect();
    assert_eq!(reasons, [DamageReason::BadHeader, DamageReason::TornHeader]);
    assert_eq!(recovered.loss.bytes, 103);
    assert!(!bad.exists() && bad.with_extension("corrupt").exists());
    assert!(!half.exists());
}

#[test]
fn a_directory_in_use_is_refused() {
    let dir = temp_dir();
    let config = config(dir.path());
    let (journal, _, _) = open(&config);
    let error = Journal::open(config.clone(), |_| {}).unwrap_err();
    assert!(matches!(error, OpenError::Locked { .. }), "{error:?}");
    journal.close().unwrap();
    reopen(&config);
}

#[cfg(unix)]
#[test]
fn the_directory_is_created_private_and_a_shared_one_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir();
    let config = config(dir.path());
    reopen(&config);
    let mode = fs::metadata(&config.dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    fs::set_permissions(&config.dir, fs::Permissions::from_mode(0o777)).unwrap();
    let error = Journal::open(config.clone(), |_| {}).unwrap_err();
    assert!(
        matches!(error, OpenError::UnsafeDir { mode: 0o777, .. }),
        "{error:?}"
    );
    let file = dir.path().join("file");
    fs::write(&file, b"").unwrap();
    let mut on_file = config.clone();
    on_file.dir = file;
    let error = Journal::open(on_file, |_| {}).unwrap_err();
    assert!(
        matches!(error, OpenError::NotADirectory { .. }),
        "{error:?}"
    );
}

#[test]
fn bad_config_values_are_refused() {
    let dir = temp_dir();
    let mut bad = config(dir.path());
    bad.segment_bytes = 100;
    let error = Journal::open(bad, |_| {}).unwrap_err();
    assert!(
        matches!(
            error,
            OpenError::Config {
                field: "segment_bytes",
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn the_zeros_a_crash_leaves_after_the_extended_segment_are_its_end_not_a_loss() {
    let dir = temp_dir();
    let config = config(dir.path());
    let (journal, _, _) = open(&config);
    let q = journal.queue(&key("a", "g"));
    let mut last = Lsn::ZERO;
    for id in 1..=5 {
        last = journal.append(accepted(q, id, b"a task")).unwrap();
    }
    wait_durable(&journal, last);
    let segment = segments(&config.dir).pop().unwrap();
    journal.crash();
    let data = fs::read(&segment).unwrap();
    let written = data.iter().rposition(|&b| b != 0).unwrap() + 1;
    assert!(
        data.len() > written + 1024,
        "extended ahead of what was written"
    );

    let recovered = reopen(&config);
    assert!(recovered.loss.is_empty(), "{:?}", recovered.loss);
    assert_eq!(ids(queue(&recovered, &key("a", "g"))), [1, 2, 3, 4, 5]);
    assert_eq!(
        fs::metadata(&segment).unwrap().len(),
        written as u64,
        "cut back to what was written"
    );
}
