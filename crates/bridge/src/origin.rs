//! Loop prevention and the headers that carry it.
//!
//! On NATS a bridged message carries `x-bridge-origin` (the node it was
//! first published on) and `x-bridge-hops` (how many bridges it crossed).
//! On the local bus the same facts are `bridge-origin` and `bridge-hops`:
//! names starting with `x-` are the local broker's own (it refuses a
//! message that sets one), so the bridge drops the `x-` there.
//!
//! The rules, each a [`Skip`] reason counted in the status:
//! - never export what this bridge imported: the broker stamps every
//!   message with its publisher's client id, which no client can forge, so
//!   a local message whose source is the bridge is never exported again;
//! - never import what this node exported (origin = own name), which comes
//!   back when an import subject overlaps an export subject;
//! - never forward a message that crossed `max_hops` bridges, so a ring of
//!   bridges over several NATS systems cannot circulate it forever;
//! - a hops header that is not a number is refused, not trusted.

use std::str::FromStr;

use async_nats::{HeaderMap, HeaderName, HeaderValue};
use eventbus::{Headers, Message};

/// The NATS header naming the node a message was first published on.
pub const NATS_ORIGIN: &str = "x-bridge-origin";
/// The NATS header counting the bridges a message crossed.
pub const NATS_HOPS: &str = "x-bridge-hops";
/// The local header naming the node a message was first published on.
pub const LOCAL_ORIGIN: &str = "bridge-origin";
/// The local header counting the bridges a message crossed.
pub const LOCAL_HOPS: &str = "bridge-hops";
/// The most headers copied from one message to the other side: the rest
/// are left behind (a hostile publisher cannot make the bridge copy
/// thousands of entries).
pub const MAX_COPIED_HEADERS: usize = 32;

/// Why a message is not forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// The local message was published by this bridge (it was imported).
    Imported,
    /// The NATS message was exported by this node.
    OwnOrigin,
    /// The message crossed the most bridges it may.
    TooManyHops(u32),
    /// A bridge header holds a value that is not what a bridge writes.
    BadHeader(&'static str),
}

/// Where a forwarded message comes from: written into its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The node it was first published on.
    pub node: String,
    /// Bridges crossed, this one included.
    pub hops: u32,
}

fn parse_hops(value: Option<&str>, header: &'static str) -> Result<u32, Skip> {
    match value {
        None => Ok(0),
        Some(v) => v.trim().parse().map_err(|_| Skip::BadHeader(header)),
    }
}

fn check_node(value: &str, header: &'static str) -> Result<(), Skip> {
    if crate::config::is_plain_name(value) {
        Ok(())
    } else {
        Err(Skip::BadHeader(header))
    }
}

/// Whether a local message may be exported by the bridge `own_client` of
/// node `node`, and with which origin.
pub fn export_origin(
    message: &Message,
    own_client: &str,
    node: &str,
    max_hops: u32,
) -> Result<Origin, Skip> {
    if message.source() == own_client {
        return Err(Skip::Imported);
    }
    let headers = message.headers();
    let hops = parse_hops(headers.get(LOCAL_HOPS), LOCAL_HOPS)?;
    if hops >= max_hops {
        return Err(Skip::TooManyHops(hops));
    }
    let origin = match headers.get(LOCAL_ORIGIN) {
        Some(o) => {
            check_node(o, LOCAL_ORIGIN)?;
            o.to_owned()
        }
        None => node.to_owned(),
    };
    Ok(Origin {
        node: origin,
        hops: hops + 1,
    })
}

/// Whether a NATS message may be imported by node `node`, and with which
/// origin.
pub fn import_origin(
    headers: Option<&HeaderMap>,
    node: &str,
    max_hops: u32,
) -> Result<Origin, Skip> {
    let get = |name: &str| headers.and_then(|h| h.get(name)).map(HeaderValue::as_str);
    let origin = match get(NATS_ORIGIN) {
        Some(o) => {
            check_node(o, NATS_ORIGIN)?;
            o
        }
        // Published on NATS by a plain NATS client.
        None => "nats",
    };
    if origin == node {
        return Err(Skip::OwnOrigin);
    }
    let hops = parse_hops(get(NATS_HOPS), NATS_HOPS)?;
    if hops >= max_hops {
        return Err(Skip::TooManyHops(hops));
    }
    Ok(Origin {
        node: origin.to_owned(),
        hops: hops + 1,
    })
}

/// NATS headers for a local message: its own (those NATS accepts, at most
/// [`MAX_COPIED_HEADERS`]), then the origin.
pub fn nats_headers(local: &Headers, origin: &Origin) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in local
        .iter()
        .filter(|(n, _)| *n != LOCAL_ORIGIN && *n != LOCAL_HOPS && !n.starts_with("x-bridge-"))
        .take(MAX_COPIED_HEADERS)
    {
        if let (Ok(name), Ok(value)) = (HeaderName::from_str(name), HeaderValue::from_str(value)) {
            out.insert(name, value);
        }
    }
    out.insert(NATS_ORIGIN, origin.node.as_str());
    out.insert(NATS_HOPS, origin.hops.to_string());
    out
}

/// Local headers for a NATS message: its own that a local client may set
/// (valid names, none of the broker's `x-`, at most
/// [`MAX_COPIED_HEADERS`]), then the origin.
pub fn local_headers(nats: Option<&HeaderMap>, origin: &Origin) -> Headers {
    let mut out = Headers::new();
    let entries = nats
        .into_iter()
        .flat_map(|h| h.iter())
        .filter_map(|(name, values)| Some((AsRef::<str>::as_ref(name), values.first()?.as_str())))
        .filter(|(n, _)| !n.starts_with("x-") && *n != LOCAL_ORIGIN && *n != LOCAL_HOPS)
        .take(MAX_COPIED_HEADERS);
    for (name, value) in entries {
        // A name the local bus refuses (upper case, ...) is left behind.
        let _ = out.insert(name, value);
    }
    out.insert(LOCAL_ORIGIN, origin.node.as_str())
        .expect("a valid header name");
    out.insert(LOCAL_HOPS, origin.hops.to_string())
        .expect("a valid header name");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nats(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.insert(*n, *v);
        }
        h
    }

    #[test]
    fn imports_carry_the_origin_and_one_more_hop() {
        let h = nats(&[(NATS_ORIGIN, "node1"), (NATS_HOPS, "1")]);
        let origin = import_origin(Some(&h), "node2", 4).unwrap();
        assert_eq!(
            origin,
            Origin {
                node: "node1".into(),
                hops: 2
            }
        );
        let plain = import_origin(None, "node2", 4).unwrap();
        assert_eq!(
            plain,
            Origin {
                node: "nats".into(),
                hops: 1
            }
        );
    }

    #[test]
    fn own_exports_are_not_imported_back() {
        let h = nats(&[(NATS_ORIGIN, "node1"), (NATS_HOPS, "1")]);
        assert_eq!(import_origin(Some(&h), "node1", 4), Err(Skip::OwnOrigin));
    }

    #[test]
    fn hops_are_bounded_and_must_be_numbers() {
        let h = nats(&[(NATS_ORIGIN, "node1"), (NATS_HOPS, "4")]);
        assert_eq!(
            import_origin(Some(&h), "node2", 4),
            Err(Skip::TooManyHops(4))
        );
        for junk in ["-1", "lots", "99999999999999999999", ""] {
            let h = nats(&[(NATS_HOPS, junk)]);
            assert_eq!(
                import_origin(Some(&h), "node2", 4),
                Err(Skip::BadHeader(NATS_HOPS)),
                "{junk:?}"
            );
        }
        let h = nats(&[(NATS_ORIGIN, "Node 1/../x")]);
        assert_eq!(
            import_origin(Some(&h), "node2", 4),
            Err(Skip::BadHeader(NATS_ORIGIN))
        );
    }

    #[test]
    fn local_headers_keep_what_the_bus_accepts_and_never_the_brokers() {
        let h = nats(&[
            ("trace-id", "7f3a"),
            ("X-Upper", "dropped: upper case"),
            ("x-dead-letter-reason", "forged"),
            (LOCAL_ORIGIN, "forged"),
            (NATS_ORIGIN, "node1"),
        ]);
        let origin = Origin {
            node: "node1".into(),
            hops: 1,
        };
        let local = local_headers(Some(&h), &origin);
        let names: Vec<_> = local.iter().map(|(n, _)| n.to_owned()).collect();
        assert_eq!(names, ["bridge-hops", "bridge-origin", "trace-id"]);
        assert_eq!(local.get(LOCAL_ORIGIN), Some("node1"));
        assert_eq!(local.get(LOCAL_HOPS), Some("1"));
    }

    #[test]
    fn header_floods_are_cut() {
        let mut h = HeaderMap::new();
        for n in 0..1000 {
            h.insert(format!("h{n}").as_str(), "v");
        }
        let origin = Origin {
            node: "n".into(),
            hops: 1,
        };
        assert_eq!(
            local_headers(Some(&h), &origin).len(),
            MAX_COPIED_HEADERS + 2
        );
        let mut local = Headers::new();
        for n in 0..1000 {
            local.insert(format!("h{n}"), "v").unwrap();
        }
        assert_eq!(nats_headers(&local, &origin).len(), MAX_COPIED_HEADERS + 2);
    }

    #[test]
    fn nats_headers_replace_the_local_origin_and_drop_unsendable_values() {
        let local = Headers::from_pairs([
            ("trace-id", "ok"),
            ("evil", "line\r\nPUB x 1"),
            (LOCAL_ORIGIN, "node0"),
        ])
        .unwrap();
        let origin = Origin {
            node: "node0".into(),
            hops: 2,
        };
        let out = nats_headers(&local, &origin);
        assert_eq!(out.get("trace-id").map(HeaderValue::as_str), Some("ok"));
        assert!(out.get("evil").is_none());
        assert_eq!(out.get(NATS_ORIGIN).map(HeaderValue::as_str), Some("node0"));
        assert_eq!(out.get(NATS_HOPS).map(HeaderValue::as_str), Some("2"));
        assert!(out.get(LOCAL_ORIGIN).is_none());
    }
}
