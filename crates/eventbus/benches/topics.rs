//! Micro-benchmarks of [`SubscriptionIndex`]: matching a published topic
//! against 10,000 filters of realistic shapes, and subscribe/unsubscribe churn
//! on an index of that size; and what a client call pays to take a topic as
//! a validated `&Topic` or as a `&str` to validate (`IntoName`); and the
//! publish permission check of an auth file's user.
//!
//! The filters follow `<domain>.<service>.<event>`: most are literal, some use
//! `+` for the service or the event, a few end in `#`. They come from a fixed
//! pseudo-random sequence, so every run measures the same index.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use eventbus::IntoName;
use eventbus::topic::{SubscriptionIndex, Topic, TopicFilter};

/// Filters in the index.
const FILTERS: usize = 10_000;
/// Distinct topics the `match` benchmark cycles through.
const TOPICS: usize = 256;

const DOMAINS: [&str; 5] = ["events", "metrics", "logs", "tasks", "alerts"];
const SERVICES: usize = 200;
const EVENTS: usize = 50;

/// A fixed linear congruential sequence (Knuth's MMIX constants).
struct Lcg(u64);

impl Lcg {
    /// The next value below `n`.
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// 10,000 filters: 70 % literal, 12 % `+` service, 8 % `+` event, 10 % `#`.
fn filters(rng: &mut Lcg) -> Vec<TopicFilter> {
    (0..FILTERS)
        .map(|_| {
            let domain = DOMAINS[rng.below(DOMAINS.len())];
            let service = rng.below(SERVICES);
            let event = rng.below(EVENTS);
            let text = match rng.below(100) {
                0..70 => format!("{domain}.svc{service}.ev{event}"),
                70..82 => format!("{domain}.+.ev{event}"),
                82..90 => format!("{domain}.svc{service}.+"),
                90..98 => format!("{domain}.svc{service}.#"),
                _ => format!("{domain}.#"),
            };
            TopicFilter::new(text).expect("a valid filter")
        })
        .collect()
}

/// Topics as publishers send them, drawn from the same names as the filters.
fn topics(rng: &mut Lcg) -> Vec<Topic> {
    (0..TOPICS)
        .map(|_| {
            let domain = DOMAINS[rng.below(DOMAINS.len())];
            let text = format!(
                "{domain}.svc{}.ev{}",
                rng.below(SERVICES),
                rng.below(EVENTS)
            );
            Topic::new(text).expect("a valid topic")
        })
        .collect()
}

/// An index of [`FILTERS`] filters, each value its position.
fn build_index(filters: &[TopicFilter]) -> SubscriptionIndex<u32> {
    let mut index = SubscriptionIndex::new();
    for (i, filter) in filters.iter().enumerate() {
        index.insert(filter, i as u32);
    }
    index
}

/// Matching: a topic that hits, one that misses, and building the index.
fn matching(c: &mut Criterion) {
    let mut rng = Lcg(0x5eed);
    let filters = filters(&mut rng);
    let topics = topics(&mut rng);
    let index = build_index(&filters);
    let mut group = c.benchmark_group("topics");

    let mut next = 0;
    group.bench_function("match_10k/hit", |b| {
        b.iter(|| {
            next = (next + 1) % topics.len();
            let mut hits = 0u32;
            index.for_each_match(black_box(&topics[next]), |_| hits += 1);
            hits
        });
    });
    let miss = Topic::new("events.svc9999.ev1").unwrap();
    group.bench_function("match_10k/miss", |b| {
        b.iter(|| {
            let mut hits = 0u32;
            index.for_each_match(black_box(&miss), |_| hits += 1);
            hits
        });
    });
    group.throughput(Throughput::Elements(FILTERS as u64));
    group.bench_function("insert_10k", |b| {
        // The index is dropped outside the timed part.
        b.iter_batched(|| (), |()| build_index(&filters), BatchSize::PerIteration);
    });
    group.finish();
}

/// Churn: one subscribe and its unsubscribe on a live index of 10,000.
fn churn(c: &mut Criterion) {
    let mut rng = Lcg(0xc0ffee);
    let mut index = build_index(&filters(&mut rng));
    // New filters, half of them sharing nodes with the index and half not.
    let fresh: Vec<TopicFilter> = (0..1_024)
        .map(|i| {
            let text = if i % 2 == 0 {
                format!("events.svc{}.fresh{i}", i % SERVICES)
            } else {
                format!("fresh{i}.+.#")
            };
            TopicFilter::new(text).unwrap()
        })
        .collect();
    let mut group = c.benchmark_group("topics");
    let mut next = 0;
    group.bench_function("churn_10k/insert_remove", |b| {
        b.iter(|| {
            next = (next + 1) % fresh.len();
            let value = FILTERS as u32 + next as u32;
            index.insert(&fresh[next], value);
            assert!(index.remove(&fresh[next], &value));
        });
    });
    group.finish();
}

/// A publish's topic argument: a validated `&Topic` (a reference-count
/// increment, as before `IntoName`) against a `&str` checked on every call.
fn into_name(c: &mut Criterion) {
    let text = "events.svc42.process-start";
    let topic = Topic::new(text).unwrap();
    let mut group = c.benchmark_group("topics");
    group.bench_function("into_name/topic_ref", |b| {
        b.iter(|| IntoName::<Topic>::into_name(black_box(&topic)).unwrap());
    });
    group.bench_function("into_name/str", |b| {
        b.iter(|| IntoName::<Topic>::into_name(black_box(text)).unwrap());
    });
    group.finish();
}

/// The publish permission check of an auth file's user
/// (`broker/auth/permissions.rs`: an allow and a deny `FilterSet`, each a
/// `SubscriptionIndex`, so one publish costs two index walks): a user with
/// all 1,000 rules of an auth file of 100 users (900 allow filters, 100 deny
/// filters, the same shapes as above), and a user with its share of 10.
fn permission_check(c: &mut Criterion) {
    let mut rng = Lcg(0xacce55);
    let all = filters(&mut rng);
    let topics = topics(&mut rng);
    let rules = |n: usize| {
        let allow: SubscriptionIndex<()> = {
            let mut i = SubscriptionIndex::new();
            for f in &all[..n * 9 / 10] {
                i.insert(f, ());
            }
            i
        };
        let deny: SubscriptionIndex<()> = {
            let mut i = SubscriptionIndex::new();
            for f in &all[n * 9 / 10..n] {
                i.insert(f, ());
            }
            i
        };
        (allow, deny)
    };
    let allowed = |(allow, deny): &(SubscriptionIndex<()>, SubscriptionIndex<()>), t: &Topic| {
        let (mut yes, mut no) = (false, false);
        allow.for_each_match(t, |()| yes = true);
        deny.for_each_match(t, |()| no = true);
        yes && !no
    };
    let mut group = c.benchmark_group("auth");
    for n in [10, 1_000] {
        let set = rules(n);
        let mut next = 0;
        group.bench_function(format!("publish_check/{n}_rules"), |b| {
            b.iter(|| {
                next = (next + 1) % topics.len();
                allowed(&set, black_box(&topics[next]))
            });
        });
    }
    group.finish();
}

/// Short runs: the whole suite of micro-benchmarks stays under two minutes.
fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
}

criterion_group! {
    name = benches;
    config = config();
    targets = matching, churn, into_name, permission_check
}
criterion_main!(benches);
