//! [`Headers`]: named string values a sender attaches to a message, next to
//! its payload (trace ids, content types, the reason of a dead letter).

use std::collections::HashMap;
use std::fmt;
use std::ops::Index;

/// The longest header name, in bytes.
pub const MAX_HEADER_NAME_BYTES: usize = 64;

/// A message's headers: names mapped to string values, at most one value per
/// name, iterated in name order.
///
/// Names set through this type are validated: one to
/// [`MAX_HEADER_NAME_BYTES`] bytes of `a`–`z`, `0`–`9`, `-`, `_` and `.`
/// (lower case only, so `Trace-Id` and `trace-id` can never be two
/// headers). Values are any UTF-8 text; together with the payload they must
/// fit in one frame.
///
/// Names starting with `x-` are the broker's: it stamps them on dead letters
/// (`x-dead-letter-reason`, `x-attempts`, `x-original-topic`, `x-group`),
/// and refuses a message or reply that sets one (`PermissionDenied`; a
/// fire-and-forget publish is dropped and counted).
///
/// Headers of a received message are kept as the broker sent them, so
/// [`Message::headers`](super::Message::headers) may hold names another
/// client library wrote without these rules.
///
/// A message without headers costs nothing: an empty `Headers` owns no
/// memory, and a publish without headers takes the broker's fast path.
///
/// ```
/// use eventbus::Headers;
/// let mut headers = Headers::new().with("trace-id", "7f3a")?;
/// headers.insert("content-type", "application/json")?;
/// assert_eq!(headers.get("trace-id"), Some("7f3a"));
/// assert_eq!(headers.iter().map(|(name, _)| name).collect::<Vec<_>>(), ["content-type", "trace-id"]);
/// assert!(headers.insert("Trace-Id", "x").is_err());
/// # Ok::<(), eventbus::HeaderError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Headers {
    /// Sorted by name, names unique: lookups are a binary search, iteration
    /// order is stable, and an empty list allocates nothing.
    entries: Vec<(String, String)>,
}

/// Why a header name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The name is the empty string.
    #[error("header name is empty")]
    EmptyName,
    /// The name is longer than [`MAX_HEADER_NAME_BYTES`].
    #[error("header name {name:?} is {len} bytes long; the maximum is {max}")]
    NameTooLong {
        /// The rejected name.
        name: String,
        /// Its length in bytes.
        len: usize,
        /// The limit, [`MAX_HEADER_NAME_BYTES`].
        max: usize,
    },
    /// The name holds a character outside `[a-z0-9._-]`.
    #[error(
        "header name {name:?} has invalid character {ch:?}; \
         names may only contain a-z, 0-9, '-', '_' and '.'"
    )]
    InvalidChar {
        /// The rejected name.
        name: String,
        /// The first offending character.
        ch: char,
    },
}

/// The one place a header name is checked.
fn check_name(name: &str) -> Result<(), HeaderError> {
    if name.is_empty() {
        return Err(HeaderError::EmptyName);
    }
    if name.len() > MAX_HEADER_NAME_BYTES {
        return Err(HeaderError::NameTooLong {
            name: name.to_owned(),
            len: name.len(),
            max: MAX_HEADER_NAME_BYTES,
        });
    }
    if let Some(ch) = name
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-' | '_' | '.'))
    {
        return Err(HeaderError::InvalidChar {
            name: name.to_owned(),
            ch,
        });
    }
    Ok(())
}

impl Headers {
    /// No headers.
    pub const fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// Headers from `(name, value)` pairs; a later value for the same name
    /// replaces an earlier one.
    pub fn from_pairs<N, V>(pairs: impl IntoIterator<Item = (N, V)>) -> Result<Self, HeaderError>
    where
        N: Into<String>,
        V: Into<String>,
    {
        let mut headers = Self::new();
        for (name, value) in pairs {
            headers.insert(name, value)?;
        }
        Ok(headers)
    }

    /// Sets `name` to `value`, returning the value it replaces.
    pub fn insert(
        &mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Option<String>, HeaderError> {
        let name = name.into();
        check_name(&name)?;
        Ok(self.set(name, value.into()))
    }

    /// [`insert`](Self::insert) for a builder chain.
    pub fn with(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, HeaderError> {
        self.insert(name, value)?;
        Ok(self)
    }

    fn set(&mut self, name: String, value: String) -> Option<String> {
        match self.position(&name) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (name, value));
                None
            }
        }
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(n, _)| n.as_str().cmp(name))
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.position(name).ok().map(|i| self.entries[i].1.as_str())
    }

    /// Whether `name` is set.
    pub fn contains(&self, name: &str) -> bool {
        self.position(name).is_ok()
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.position(name).ok().map(|i| self.entries.remove(i).1)
    }

    /// How many headers there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `(name, value)` pairs in name order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Bytes the headers add to an encoded message, at most (for the frame
    /// size check before sending).
    pub(crate) fn encoded_len_bound(&self) -> usize {
        // Per entry: the map entry's key and length (up to 1 + 5 bytes), the
        // two fields' keys and lengths (up to 2 × 6), then the text.
        self.entries
            .iter()
            .map(|(n, v)| 18 + n.len() + v.len())
            .sum()
    }

    /// The headers as the wire's map.
    pub(crate) fn into_wire(self) -> HashMap<String, String> {
        self.entries.into_iter().collect()
    }

    /// Headers as the broker sent them, names unchecked.
    pub(crate) fn from_wire(map: HashMap<String, String>) -> Self {
        let mut entries: Vec<(String, String)> = map.into_iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Self { entries }
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// `headers["name"]`: the value, panicking when the name is not set (like a
/// map's index); [`get`](Headers::get) is the non-panicking way.
impl Index<&str> for Headers {
    type Output = String;

    fn index(&self, name: &str) -> &String {
        match self.position(name) {
            Ok(i) => &self.entries[i].1,
            Err(_) => panic!("no header {name:?}"),
        }
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = (&'a str, &'a str);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, String)>,
        fn(&'a (String, String)) -> (&'a str, &'a str),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated_and_kept_in_order() {
        let headers = Headers::from_pairs([("b", "2"), ("a", "1"), ("b", "3")]).unwrap();
        assert_eq!(headers.iter().collect::<Vec<_>>(), [("a", "1"), ("b", "3")]);
        assert_eq!(headers["b"], "3");
        assert_eq!(headers.len(), 2);
        assert!(matches!(
            Headers::new().with("", "x"),
            Err(HeaderError::EmptyName)
        ));
        assert!(matches!(
            Headers::new().with("Trace-Id", "x"),
            Err(HeaderError::InvalidChar { ch: 'T', .. })
        ));
        assert!(matches!(
            Headers::new().with("a b", "x"),
            Err(HeaderError::InvalidChar { ch: ' ', .. })
        ));
        let long = "a".repeat(MAX_HEADER_NAME_BYTES + 1);
        assert!(matches!(
            Headers::new().with(long, "x"),
            Err(HeaderError::NameTooLong { len: 65, .. })
        ));
        assert!(Headers::new().with("a".repeat(64), "").is_ok());
    }

    #[test]
    fn insert_replaces_and_remove_takes() {
        let mut headers = Headers::new();
        assert_eq!(headers.insert("k", "1").unwrap(), None);
        assert_eq!(headers.insert("k", "2").unwrap().as_deref(), Some("1"));
        assert!(headers.contains("k"));
        assert_eq!(headers.remove("k").as_deref(), Some("2"));
        assert!(headers.is_empty());
        assert_eq!(headers.remove("k"), None);
    }

    #[test]
    fn the_wire_map_round_trips_and_unchecked_names_are_kept() {
        let map: HashMap<String, String> = [("Odd Name", "v"), ("a", "1")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let headers = Headers::from_wire(map.clone());
        assert_eq!(headers.get("Odd Name"), Some("v"));
        assert_eq!(headers.iter().next(), Some(("Odd Name", "v")));
        assert_eq!(headers.into_wire(), map);
        assert_eq!(format!("{:?}", Headers::new()), "{}");
    }
}
