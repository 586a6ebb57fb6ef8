//! [`SubscriptionIndex`]: which subscriptions match a published topic.

use std::collections::HashMap;

/// Children by literal segment: hashed once per segment of every routed
/// topic, so a fast (randomly seeded) hasher rather than SipHash.
type Children<T> = HashMap<Box<str>, Node<T>, foldhash::fast::RandomState>;

use super::grammar::{HASH, PLUS};
use super::{Topic, TopicFilter};

/// A trie of [`TopicFilter`]s that finds every value whose filter matches a
/// [`Topic`], for the router's publish path.
///
/// Each trie level is one filter segment. A node has a map from literal
/// segment to child, one child slot for `+`, the values of filters ending
/// with `#` right after this node (`#` is always last, so it needs no node of
/// its own), and the values of filters that end at this node.
///
/// The index is a multiset of `(filter, value)` pairs: inserting the same
/// pair twice stores it twice, [`for_each_match`](Self::for_each_match)
/// visits it twice and [`remove`](Self::remove) takes one copy away.
///
/// # Complexity
///
/// With `k` the number of segments (at most
/// [`MAX_TOPIC_SEGMENTS`](super::MAX_TOPIC_SEGMENTS) = 8):
///
/// - [`insert`](Self::insert) is `O(k)` map lookups, and allocates for new
///   nodes and the value's slot;
/// - [`remove`](Self::remove) is `O(k)` map lookups plus a linear scan of the
///   values stored under that exact filter, and frees the nodes it empties,
///   so memory follows the live subscriptions, not their history;
/// - [`for_each_match`](Self::for_each_match) follows at most a literal and a
///   `+` child per level, so it visits at most `2^k` (≤ 256) nodes, and in
///   practice only the filter prefixes that match the topic's prefix, plus
///   one call per matching value. It does not allocate; its recursion depth
///   is at most `k`.
///
/// # Examples
///
/// ```
/// use eventbus::topic::{SubscriptionIndex, Topic, TopicFilter};
///
/// let mut index = SubscriptionIndex::new();
/// index.insert(&TopicFilter::new("sensors.+.temp")?, "thermostat");
/// index.insert(&TopicFilter::new("sensors.#")?, "logger");
/// index.insert(&TopicFilter::new("alerts")?, "pager");
///
/// let mut hits = index.matches(&Topic::new("sensors.kitchen.temp")?);
/// hits.sort();
/// assert_eq!(hits, ["logger", "thermostat"]);
///
/// assert!(index.remove(&TopicFilter::new("sensors.#")?, &"logger"));
/// assert_eq!(index.len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct SubscriptionIndex<T> {
    root: Node<T>,
    len: usize,
    generation: u64,
}

#[derive(Debug, Clone)]
struct Node<T> {
    /// Values of filters that end exactly here.
    values: Vec<T>,
    /// Values of filters that end with `#` right after this node.
    hash: Vec<T>,
    /// Children for literal segments; `None` while there are none (most
    /// nodes: a node costs 64 bytes this way, and a parent's table of
    /// children holds them inline).
    literal: Option<Box<Children<T>>>,
    /// Child for a `+` segment.
    plus: Option<Box<Node<T>>>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Self {
            values: Vec::new(),
            hash: Vec::new(),
            literal: None,
            plus: None,
        }
    }
}

impl<T> Node<T> {
    /// Whether the node holds nothing and can be pruned from its parent.
    fn is_empty(&self) -> bool {
        self.values.is_empty()
            && self.hash.is_empty()
            && self.literal.is_none()
            && self.plus.is_none()
    }

    fn visit<'a, 't, F>(&'a self, mut rest: std::str::Split<'t, char>, f: &mut F)
    where
        F: FnMut(&'a T),
    {
        // A `#` here matches whatever is left of the topic, even nothing.
        self.hash.iter().for_each(&mut *f);
        match rest.next() {
            None => self.values.iter().for_each(f),
            Some(segment) => {
                if let Some(children) = &self.literal
                    && let Some(child) = children.get(segment)
                {
                    child.visit(rest.clone(), f);
                }
                if let Some(child) = &self.plus {
                    child.visit(rest, f);
                }
            }
        }
    }

    #[cfg(test)]
    fn count_nodes(&self) -> usize {
        1 + self
            .literal
            .iter()
            .flat_map(|c| c.values())
            .map(Node::count_nodes)
            .sum::<usize>()
            + self.plus.as_deref().map_or(0, Node::count_nodes)
    }
}

impl<T: PartialEq> Node<T> {
    /// Removes one `value` stored under the filter whose remaining segments
    /// are `rest`, pruning the children this empties.
    fn remove<'f>(&mut self, mut rest: impl Iterator<Item = &'f str>, value: &T) -> bool {
        match rest.next() {
            None => remove_one(&mut self.values, value),
            Some(HASH) => remove_one(&mut self.hash, value),
            Some(PLUS) => {
                let Some(child) = self.plus.as_deref_mut() else {
                    return false;
                };
                let removed = child.remove(rest, value);
                if child.is_empty() {
                    self.plus = None;
                }
                removed
            }
            Some(segment) => {
                let Some(children) = self.literal.as_deref_mut() else {
                    return false;
                };
                let Some(child) = children.get_mut(segment) else {
                    return false;
                };
                let removed = child.remove(rest, value);
                if child.is_empty() {
                    children.remove(segment);
                    if children.is_empty() {
                        // Give back the table a burst of children grew.
                        self.literal = None;
                    }
                }
                removed
            }
        }
    }
}

/// Appends `value`, allocating room for exactly one when `values` has none:
/// most filters have one subscriber (a client's own), and a first push
/// would otherwise allocate four.
fn push_one<T>(values: &mut Vec<T>, value: T) {
    if values.capacity() == 0 {
        values.reserve_exact(1);
    }
    values.push(value);
}

/// Removes one copy of `value` from `values`; order is not kept.
fn remove_one<T: PartialEq>(values: &mut Vec<T>, value: &T) -> bool {
    let Some(at) = values.iter().position(|v| v == value) else {
        return false;
    };
    values.swap_remove(at);
    if values.is_empty() {
        *values = Vec::new();
    }
    true
}

impl<T> Default for SubscriptionIndex<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> SubscriptionIndex<T> {
    /// An empty index; allocates nothing until the first insert.
    pub fn new() -> Self {
        Self {
            root: Node::default(),
            len: 0,
            generation: 0,
        }
    }

    /// Changes with every insert, removal or clear: a cached match result is
    /// current while the generation it was computed at is.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The number of `(filter, value)` pairs stored, duplicates included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no pair is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores `value` under `filter`. Storing the same pair again keeps both
    /// copies.
    pub fn insert(&mut self, filter: &TopicFilter, value: T) {
        self.generation += 1;
        let mut node = &mut self.root;
        for segment in filter.segments() {
            node = match segment {
                HASH => {
                    // Validation guarantees `#` is the last segment.
                    push_one(&mut node.hash, value);
                    self.len += 1;
                    return;
                }
                PLUS => node.plus.get_or_insert_with(Box::default),
                literal => node
                    .literal
                    .get_or_insert_with(Box::default)
                    .entry(literal.into())
                    .or_default(),
            };
        }
        push_one(&mut node.values, value);
        self.len += 1;
    }

    /// Calls `f` on every value whose filter matches `topic`, once per stored
    /// copy, in no particular order. Does not allocate.
    pub fn for_each_match<'a>(&'a self, topic: &Topic, mut f: impl FnMut(&'a T)) {
        self.root.visit(topic.as_str().split('.'), &mut f);
    }

    /// Removes every pair, keeping no nodes.
    pub fn clear(&mut self) {
        self.generation += 1;
        self.root = Node::default();
        self.len = 0;
    }

    /// The number of trie nodes, root included, to check pruning.
    #[cfg(test)]
    fn node_count(&self) -> usize {
        self.root.count_nodes()
    }
}

impl<T: PartialEq> SubscriptionIndex<T> {
    /// Whether `value` is stored under exactly `filter` (the filter string it
    /// was inserted with, not any matching one).
    pub fn contains(&self, filter: &TopicFilter, value: &T) -> bool {
        let mut node = &self.root;
        for segment in filter.segments() {
            node = match segment {
                HASH => return node.hash.contains(value),
                PLUS => match node.plus.as_deref() {
                    Some(child) => child,
                    None => return false,
                },
                literal => match node.literal.as_deref().and_then(|c| c.get(literal)) {
                    Some(child) => child,
                    None => return false,
                },
            };
        }
        node.values.contains(value)
    }

    /// Removes one copy of `value` stored under exactly `filter` (the same
    /// filter string it was inserted with, not any matching one).
    ///
    /// Returns whether a copy was found. Nodes left empty are freed.
    pub fn remove(&mut self, filter: &TopicFilter, value: &T) -> bool {
        let removed = self.root.remove(filter.segments(), value);
        if removed {
            self.generation += 1;
            self.len -= 1;
        }
        removed
    }
}

impl<T: Clone> SubscriptionIndex<T> {
    /// Clones every value whose filter matches `topic` into a new `Vec`, in
    /// no particular order. See [`for_each_match`](Self::for_each_match) to
    /// avoid the allocation, or [`extend_matches`](Self::extend_matches) to
    /// reuse a buffer.
    pub fn matches(&self, topic: &Topic) -> Vec<T> {
        let mut out = Vec::new();
        self.extend_matches(topic, &mut out);
        out
    }

    /// Appends a clone of every value whose filter matches `topic` to `out`,
    /// in no particular order.
    pub fn extend_matches(&self, topic: &Topic, out: &mut Vec<T>) {
        self.for_each_match(topic, |v| out.push(v.clone()));
    }
}

#[cfg(test)]
mod tests;
