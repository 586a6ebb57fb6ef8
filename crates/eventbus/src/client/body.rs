//! [`Body`]: what a sender puts in a message: the payload and its headers.

use bytes::{Bytes, BytesMut};

use super::headers::{HeaderError, Headers};

/// What every send takes: the payload bytes and, optionally, [`Headers`].
///
/// Anything that converts into [`Bytes`] without copying (a `&'static str`
/// or `[u8]`, a `String`, a `Vec<u8>`, `Bytes`) converts into a `Body`
/// without headers, so a plain payload is passed as is. Headers are added
/// with [`header`](Self::header) or [`with_headers`](Self::with_headers):
///
/// ```no_run
/// # async fn demo(client: eventbus::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use eventbus::{Body, Topic};
/// let topic = Topic::new("events.process.start")?;
/// client.publish(&topic, "pid 42")?;
/// client.publish(&topic, Body::new("pid 42").header("trace-id", "7f3a")?)?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Body {
    pub(crate) payload: Bytes,
    pub(crate) headers: Headers,
}

impl Body {
    /// A body with this payload and no headers.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Self {
            payload: payload.into(),
            headers: Headers::new(),
        }
    }

    /// Adds (or replaces) one header.
    pub fn header(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, HeaderError> {
        self.headers.insert(name, value)?;
        Ok(self)
    }

    /// Replaces the headers.
    pub fn with_headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }

    /// The payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// A body whose payload is the JSON encoding of `value`, without headers
    /// (a `content-type` header would take every JSON message off the
    /// broker's fast path; add one if your consumers need it).
    ///
    /// ```
    /// let body = eventbus::Body::json(&serde_json::json!({"pid": 42}))?;
    /// assert_eq!(body.payload(), r#"{"pid":42}"#);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    #[cfg(feature = "serde")]
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::to_vec(value).map(Self::new)
    }
}

macro_rules! body_from {
    ($($ty:ty),* $(,)?) => {$(
        impl From<$ty> for Body {
            fn from(payload: $ty) -> Self {
                Self::new(payload)
            }
        }
    )*};
}

body_from!(
    Bytes,
    BytesMut,
    Vec<u8>,
    String,
    Box<[u8]>,
    &'static str,
    &'static [u8]
);

impl<const N: usize> From<&'static [u8; N]> for Body {
    fn from(payload: &'static [u8; N]) -> Self {
        Self::new(&payload[..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_payloads_convert_without_headers() {
        let body: Body = "x".into();
        assert_eq!(body.payload(), "x");
        assert!(body.headers().is_empty());
        let body: Body = b"xy".into();
        assert_eq!(body.payload().len(), 2);
        let body = Body::new(vec![1, 2]).header("k", "v").unwrap();
        assert_eq!(body.headers().get("k"), Some("v"));
        assert!(Body::new("").header("K", "v").is_err());
    }
}
