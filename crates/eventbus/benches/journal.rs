//! The journal's figures next to the disk's floor, in one run:
//!
//! - floor: a loop of a 64 B append + `fdatasync` on the same filesystem;
//! - latency: one writer, one record in flight (append, wait until durable);
//! - throughput: 8 writers, each keeping 256 records in flight;
//! - recovery: 1,000,000 queued 64 B messages, reopened.
//!
//! `cargo bench -p eventbus --bench journal [-- --dir PATH] [--quick] [--recovery-only]`
//! (default dir: under `target/`, which is on the disk a broker would use
//! here; `--quick` runs a tenth of each load).
#![allow(missing_docs)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use eventbus::broker::journal::{
    Journal, JournalConfig, Lsn, MessageId, QueueKey, Record, Recovered,
};
use eventbus::{GroupName, TopicFilter};

const PAYLOAD: [u8; 64] = [0x5a; 64];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let base = args
        .iter()
        .position(|a| a == "--dir")
        .and_then(|i| args.get(i + 1))
        .map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/journal-bench"),
            PathBuf::from,
        );
    let scale: u64 = if quick { 10 } else { 1 };
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).expect("bench dir");
    println!(
        "journal bench in {} ({})",
        base.display(),
        if quick { "quick" } else { "full" }
    );

    if args.iter().any(|a| a == "--recovery-only") {
        recovery(&base.join("recovery"), 1_000_000 / scale);
        return;
    }
    // The floor and the journal alternate, 10 rounds each, so both see the
    // same machine (this one is shared).
    let (mut floor, mut latency) = (Vec::new(), Vec::new());
    let mut floor_file = std::fs::File::create(base.join("floor.log")).expect("floor file");
    let (journal, durable, _) = open(&base.join("latency"));
    for round in 0..10 {
        floor.extend(fsync_floor(&mut floor_file, 300 / scale));
        latency.extend(one_in_flight(&journal, &durable, round * 1000, 300 / scale));
    }
    journal.close().expect("close");
    report("fsync floor (64 B append + fdatasync)", &floor);
    report(
        "journal, 1 writer x 1 in flight (append -> durable)",
        &latency,
    );
    throughput(&base.join("throughput"), 8, 256, 400_000 / scale);
    recovery(&base.join("recovery"), 1_000_000 / scale);
    let _ = std::fs::remove_dir_all(&base);
}

fn report(what: &str, samples: &[Duration]) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    let total: Duration = samples.iter().sum();
    println!(
        "{what}: p50 {:.0} us, p99 {:.0} us, {:.0} ops/s ({} ops)",
        at(0.5),
        at(0.99),
        samples.len() as f64 / total.as_secs_f64(),
        samples.len()
    );
}

fn fsync_floor(file: &mut std::fs::File, n: u64) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let start = Instant::now();
            file.write_all(&PAYLOAD).expect("write");
            file.sync_data().expect("fdatasync");
            start.elapsed()
        })
        .collect()
}

/// The highest LSN reported, and a way to wait for it.
#[derive(Default)]
struct Durable {
    lsn: Mutex<Lsn>,
    changed: Condvar,
}

impl Durable {
    fn wait(&self, lsn: Lsn) {
        let mut durable = self.lsn.lock().unwrap();
        while *durable < lsn {
            durable = self.changed.wait(durable).unwrap();
        }
    }
}

fn open(dir: &Path) -> (Journal, Arc<Durable>, Recovered) {
    let durable = Arc::new(Durable::default());
    let sink = Arc::clone(&durable);
    let mut config = JournalConfig::new(dir);
    config.max_disk_bytes = 4 << 30;
    let started = Instant::now();
    let (journal, recovered) = Journal::open(config, move |report| {
        assert!(report.failed.is_none(), "{report:?}");
        *sink.lsn.lock().unwrap() = report.last;
        sink.changed.notify_all();
    })
    .expect("open");
    let count: usize = recovered.queues.iter().map(|q| q.messages.len()).sum();
    if count > 0 {
        println!(
            "  opened {count} messages in {:.0} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
    }
    (journal, durable, recovered)
}

fn key() -> QueueKey {
    QueueKey::new(
        TopicFilter::new("bench.task").unwrap(),
        GroupName::new("workers").unwrap(),
    )
}

fn one_in_flight(journal: &Journal, durable: &Durable, first: u64, n: u64) -> Vec<Duration> {
    let queue = journal.queue(&key());
    (first + 1..=first + n)
        .map(|id| {
            let start = Instant::now();
            let lsn = journal
                .append(Record::Accepted {
                    queue,
                    id: MessageId::new(id),
                    attempt: 1,
                    envelope: &PAYLOAD,
                })
                .expect("append");
            durable.wait(lsn);
            start.elapsed()
        })
        .collect()
}

fn throughput(dir: &Path, writers: u64, in_flight: u64, total: u64) {
    let (journal, durable, _) = open(dir);
    let queue = journal.queue(&key());
    let per_writer = total / writers;
    let start = Instant::now();
    std::thread::scope(|s| {
        for w in 0..writers {
            let (journal, durable) = (&journal, &durable);
            s.spawn(move || {
                let mut window = std::collections::VecDeque::new();
                for i in 0..per_writer {
                    if window.len() as u64 == in_flight {
                        durable.wait(window.pop_front().unwrap());
                    }
                    let id = MessageId::new(w * per_writer + i + 1);
                    let record = Record::Accepted {
                        queue,
                        id,
                        attempt: 1,
                        envelope: &PAYLOAD,
                    };
                    window.push_back(journal.append(record).expect("append"));
                }
                if let Some(&last) = window.back() {
                    durable.wait(last);
                }
            });
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let stats = journal.stats();
    println!(
        "journal, {writers} writers x {in_flight} in flight: {:.0} records/s durable, {:.0} syncs/s, {:.0} records a sync ({} records in {:.2} s)",
        stats.records as f64 / elapsed,
        stats.syncs as f64 / elapsed,
        stats.records as f64 / stats.syncs.max(1) as f64,
        stats.records,
        elapsed
    );
    journal.close().expect("close");
}

fn recovery(dir: &Path, n: u64) {
    {
        let (journal, durable, _) = open(dir);
        let queue = journal.queue(&key());
        let mut last = Lsn::ZERO;
        for id in 1..=n {
            let record = Record::Accepted {
                queue,
                id: MessageId::new(id),
                attempt: 1,
                envelope: &PAYLOAD,
            };
            loop {
                match journal.append(record) {
                    Ok(lsn) => break last = lsn,
                    // The backlog bound: wait for the writer to catch up.
                    Err(_) => durable.wait(Lsn::new(journal.durable_lsn().get() + 1)),
                }
            }
        }
        durable.wait(last);
        journal.close().expect("close");
    }
    let bytes: u64 = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let rss_before = eventbus::broker::rss_bytes();
    let cpu_before = thread_cpu();
    let started = Instant::now();
    let (journal, _, recovered) = open(dir);
    let elapsed = started.elapsed();
    let cpu = thread_cpu()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let rss_after = eventbus::broker::rss_bytes();
    assert_eq!(recovered.queues[0].messages.len() as u64, n);
    println!(
        "recovery: {n} queued 64 B messages ({:.0} MB of segments) opened in {:.0} ms ({} ms on CPU); RSS +{:.0} MB ({} -> {} MB)",
        bytes as f64 / 1e6,
        elapsed.as_secs_f64() * 1e3,
        cpu.map_or_else(
            || "?".to_owned(),
            |d| format!("{:.0}", d.as_secs_f64() * 1e3)
        ),
        (rss_after
            .unwrap_or(0)
            .saturating_sub(rss_before.unwrap_or(0))) as f64
            / 1e6,
        rss_before.unwrap_or(0) / 1_000_000,
        rss_after.unwrap_or(0) / 1_000_000,
    );
    drop(recovered);
    journal.close().expect("close");
}

/// CPU time of the calling thread (Linux), so a figure on a busy machine
/// says how much of the wall time was the work itself.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}
