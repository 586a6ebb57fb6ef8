use std::collections::HashSet;

use proptest::prelude::*;

use super::*;

fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s).unwrap_or_else(|e| panic!("{s:?} rejected: {e}"))
}

fn topic(s: &str) -> Topic {
    Topic::new(s).unwrap_or_else(|e| panic!("{s:?} rejected: {e}"))
}

fn sorted_matches<T: Clone + Ord>(index: &SubscriptionIndex<T>, t: &str) -> Vec<T> {
    let mut hits = index.matches(&topic(t));
    hits.sort();
    hits
}

/// The answer `for_each_match` must give: every stored pair whose filter
/// matches, found by asking each filter.
fn brute_force<T: Clone + Ord>(pairs: &[(TopicFilter, T)], t: &Topic) -> Vec<T> {
    let mut hits: Vec<T> = pairs
        .iter()
        .filter(|(f, _)| f.matches(t))
        .map(|(_, v)| v.clone())
        .collect();
    hits.sort();
    hits
}

/// The nodes a minimal trie holds for these filters: the root and one node
/// per distinct prefix that does not end in `#`.
fn expected_nodes<'a>(filters: impl IntoIterator<Item = &'a TopicFilter>) -> usize {
    let mut prefixes = HashSet::new();
    for f in filters {
        let segments: Vec<&str> = f.segments().take_while(|s| *s != "#").collect();
        for end in 1..=segments.len() {
            prefixes.insert(segments[..end].join("."));
        }
    }
    1 + prefixes.len()
}

#[test]
fn empty_index_matches_nothing() {
    let index = SubscriptionIndex::<u32>::new();
    assert!(index.is_empty());
    assert_eq!(index.len(), 0);
    assert!(index.matches(&topic("a")).is_empty());
    assert_eq!(index.node_count(), 1);
}

#[test]
fn finds_literal_plus_and_hash_subscriptions() {
    let mut index = SubscriptionIndex::new();
    let subscriptions = [
        ("a", 1),
        ("a.b", 2),
        ("a.+", 3),
        ("a.#", 4),
        ("#", 5),
        ("+", 6),
        ("+.b", 7),
        ("a.b.#", 8),
        ("b.+.c", 9),
    ];
    for (f, v) in subscriptions {
        index.insert(&filter(f), v);
    }
    assert_eq!(index.len(), subscriptions.len());

    let cases: &[(&str, &[i32])] = &[
        ("a", &[1, 4, 5, 6]),
        ("a.b", &[2, 3, 4, 5, 7, 8]),
        ("a.c", &[3, 4, 5]),
        ("a.b.c", &[4, 5, 8]),
        ("b", &[5, 6]),
        ("b.b", &[5, 7]),
        ("b.x.c", &[5, 9]),
        ("b.x.c.d", &[5]),
        ("c.d.e", &[5]),
    ];
    for &(t, expected) in cases {
        assert_eq!(sorted_matches(&index, t), expected, "topic {t:?}");
    }
}

#[test]
fn duplicates_are_visited_and_removed_one_at_a_time() {
    let mut index = SubscriptionIndex::new();
    let f = filter("a.+");
    index.insert(&f, 'x');
    index.insert(&f, 'x');
    index.insert(&f, 'y');
    assert_eq!(sorted_matches(&index, "a.b"), ['x', 'x', 'y']);

    assert!(index.remove(&f, &'x'));
    assert_eq!(sorted_matches(&index, "a.b"), ['x', 'y']);
    assert!(index.remove(&f, &'x'));
    assert!(!index.remove(&f, &'x'));
    assert_eq!(index.len(), 1);
    assert!(index.remove(&f, &'y'));
    assert!(index.is_empty());
    assert_eq!(index.node_count(), 1);
}

#[test]
fn remove_needs_the_exact_filter() {
    let mut index = SubscriptionIndex::new();
    index.insert(&filter("a.#"), 1);
    index.insert(&filter("a.b"), 2);
    assert!(!index.remove(&filter("a.b"), &1), "value stored elsewhere");
    assert!(
        !index.remove(&filter("a.+"), &2),
        "wildcard is not a lookup"
    );
    assert!(!index.remove(&filter("a.b.c"), &2), "no such node");
    assert!(!index.remove(&filter("#"), &1));
    assert_eq!(index.len(), 2);
    assert_eq!(index.node_count(), 3);
}

#[test]
fn remove_prunes_only_emptied_nodes() {
    let mut index = SubscriptionIndex::new();
    index.insert(&filter("a.b.c.d"), 1);
    index.insert(&filter("a.b"), 2);
    index.insert(&filter("a.+.#"), 3);
    assert_eq!(index.node_count(), 6); // root, a, a.b, a.b.c, a.b.c.d, a.+

    assert!(index.remove(&filter("a.b.c.d"), &1));
    assert_eq!(index.node_count(), 4); // a.b stays: it holds value 2
    assert_eq!(sorted_matches(&index, "a.b"), [2, 3]);

    assert!(index.remove(&filter("a.+.#"), &3));
    assert_eq!(index.node_count(), 3);
    assert!(index.remove(&filter("a.b"), &2));
    assert_eq!(index.node_count(), 1);
    assert!(index.is_empty());
}

#[test]
fn for_each_match_lends_references_into_the_index() {
    let mut index = SubscriptionIndex::new();
    index.insert(&filter("a.#"), String::from("first"));
    index.insert(&filter("+"), String::from("second"));
    let mut seen: Vec<&String> = Vec::new();
    index.for_each_match(&topic("a"), |v| seen.push(v));
    seen.sort();
    assert_eq!(seen, ["first", "second"]);

    let mut buffer = vec![String::from("kept")];
    index.extend_matches(&topic("a.b"), &mut buffer);
    assert_eq!(buffer, ["kept", "first"]);
}

#[test]
fn clear_resets_everything() {
    let mut index = SubscriptionIndex::new();
    index.insert(&filter("a.b.c"), ());
    index.clear();
    assert!(index.is_empty());
    assert_eq!(index.node_count(), 1);
    assert!(index.matches(&topic("a.b.c")).is_empty());
}

/// Filters of 1 to 5 segments over a small alphabet, so they collide and
/// overlap; `#` is cut to be the last segment.
fn small_filter() -> impl Strategy<Value = TopicFilter> {
    prop::collection::vec(prop::sample::select(&["a", "b", "c", "+", "#"][..]), 1..=5).prop_map(
        |mut segments| {
            if let Some(hash) = segments.iter().position(|s| *s == "#") {
                segments.truncate(hash + 1);
            }
            filter(&segments.join("."))
        },
    )
}

fn small_topic() -> impl Strategy<Value = Topic> {
    prop::collection::vec(prop::sample::select(&["a", "b", "c"][..]), 1..=5)
        .prop_map(|segments| topic(&segments.join(".")))
}

/// Pairs with small values, so the same pair is sometimes stored twice.
fn pairs() -> impl Strategy<Value = Vec<(TopicFilter, u8)>> {
    prop::collection::vec((small_filter(), 0u8..4), 0..40)
}

proptest! {
    #[test]
    fn index_agrees_with_brute_force(
        pairs in pairs(),
        topics in prop::collection::vec(small_topic(), 1..20),
    ) {
        let mut index = SubscriptionIndex::new();
        for (f, v) in &pairs {
            index.insert(f, *v);
        }
        prop_assert_eq!(index.len(), pairs.len());
        prop_assert_eq!(index.node_count(), expected_nodes(pairs.iter().map(|(f, _)| f)));
        for t in &topics {
            let mut hits = Vec::new();
            index.for_each_match(t, |v| hits.push(*v));
            hits.sort_unstable();
            prop_assert_eq!(hits, brute_force(&pairs, t), "topic {}", t);
        }
    }

    #[test]
    fn churn_leaves_a_minimal_trie(
        (pairs, order, keep) in pairs().prop_flat_map(|pairs| {
            let n = pairs.len();
            (
                Just(pairs),
                Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
                prop::collection::vec(any::<bool>(), n),
            )
        }),
        topics in prop::collection::vec(small_topic(), 1..10),
    ) {
        let mut index = SubscriptionIndex::new();
        for (f, v) in &pairs {
            index.insert(f, *v);
        }

        // Remove a random part in random order; the rest must still match.
        let mut remaining = pairs.clone();
        for &i in &order {
            if keep[i] {
                continue;
            }
            let (f, v) = &pairs[i];
            prop_assert!(index.remove(f, v), "stored pair ({}, {}) not found", f, v);
            let at = remaining.iter().position(|p| p == &pairs[i]).unwrap();
            remaining.swap_remove(at);
        }
        prop_assert_eq!(index.len(), remaining.len());
        prop_assert_eq!(index.node_count(), expected_nodes(remaining.iter().map(|(f, _)| f)));
        for t in &topics {
            prop_assert_eq!(sorted_matches(&index, t.as_str()), brute_force(&remaining, t));
        }

        // Removing everything else leaves only the root.
        for (f, v) in &remaining {
            prop_assert!(index.remove(f, v));
        }
        prop_assert!(index.is_empty());
        prop_assert_eq!(index.node_count(), 1);
        for (f, v) in &pairs {
            prop_assert!(!index.remove(f, v));
        }
    }
}

#[test]
fn the_generation_changes_with_every_change_and_only_then() {
    let mut index = SubscriptionIndex::new();
    let filter = TopicFilter::new("a.+").unwrap();
    let g0 = index.generation();
    index.insert(&filter, 1);
    let g1 = index.generation();
    assert_ne!(g0, g1);
    let _ = index.matches(&Topic::new("a.b").unwrap());
    assert!(!index.remove(&filter, &2), "nothing removed");
    assert_eq!(index.generation(), g1, "reads and no-op removals keep it");
    assert!(index.remove(&filter, &1));
    let g2 = index.generation();
    assert_ne!(g1, g2);
    index.clear();
    assert_ne!(index.generation(), g2);
}
