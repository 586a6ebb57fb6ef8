//! The network collector: sockets from `/proc/net/{tcp,tcp6,udp,udp6}`.
//!
//! Each data line reads `sl: local rem st ...`, where an address is `IP:PORT` in
//! hex. The port is in host order; the IP is the raw network-order bytes printed
//! as 32-bit words in *host* order (`0100007F` is 127.0.0.1 on little-endian),
//! so each word is turned back into bytes with `to_ne_bytes`. UDP uses the TCP
//! state codes too: `CLOSE` for an unconnected socket, `ESTABLISHED` for a
//! connected one.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use serde::Serialize;

use super::CollectError;

/// Most listening sockets listed in one snapshot; the rest are only counted.
pub const MAX_LISTENING: usize = 4096;

/// The socket tables read, in order.
pub const TABLES: &[&str] = &["tcp", "tcp6", "udp", "udp6"];

/// One socket line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketLine {
    /// Local address.
    pub local: (IpAddr, u16),
    /// Remote address (all zeros when unconnected).
    pub remote: (IpAddr, u16),
    /// State code (`0A` is LISTEN).
    pub state: u8,
}

/// Counts for one socket table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TableCounts {
    /// Sockets in the table.
    pub total: u64,
    /// Sockets per state name.
    pub by_state: BTreeMap<&'static str, u64>,
}

/// A socket waiting for peers: a TCP listener, or a UDP socket with no remote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listening {
    /// The table: `tcp`, `tcp6`, `udp` or `udp6`.
    pub proto: &'static str,
    /// Local IP address.
    pub address: String,
    /// Local port.
    pub port: u16,
    /// `LISTEN` for TCP, `bound` for UDP.
    pub state: &'static str,
}

/// What a network task reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NetworkSnapshot {
    /// Counts per table; a table the kernel does not provide is absent.
    pub tables: BTreeMap<&'static str, TableCounts>,
    /// Listening TCP and bound UDP sockets, at most [`MAX_LISTENING`].
    pub listening: Vec<Listening>,
    /// Whether `listening` was cut at [`MAX_LISTENING`].
    pub listening_truncated: bool,
}

/// The name of a TCP state code, per the kernel's `tcp_states.h`.
pub fn tcp_state_name(code: u8) -> &'static str {
    match code {
        0x01 => "ESTABLISHED",
        0x02 => "SYN_SENT",
        0x03 => "SYN_RECV",
        0x04 => "FIN_WAIT1",
        0x05 => "FIN_WAIT2",
        0x06 => "TIME_WAIT",
        0x07 => "CLOSE",
        0x08 => "CLOSE_WAIT",
        0x09 => "LAST_ACK",
        0x0A => "LISTEN",
        0x0B => "CLOSING",
        0x0C => "NEW_SYN_RECV",
        _ => "UNKNOWN",
    }
}

/// Decodes `IP:PORT` as printed in `/proc/net/*`: 8 hex digits for IPv4, 32 for IPv6.
pub fn decode_address(text: &str) -> Option<(IpAddr, u16)> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |hex: &str| u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes);
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(ip)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&word(ip.get(i * 8..i * 8 + 8)?)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some((ip, port))
}

/// Parses one data line; `None` for the header and malformed lines.
pub fn parse_line(line: &str) -> Option<SocketLine> {
    let mut fields = line.split_whitespace();
    fields.next()?.strip_suffix(':')?;
    let local = decode_address(fields.next()?)?;
    let remote = decode_address(fields.next()?)?;
    let state = u8::from_str_radix(fields.next()?, 16).ok()?;
    Some(SocketLine {
        local,
        remote,
        state,
    })
}

/// Adds one table's text to `snapshot`.
pub fn add_table(snapshot: &mut NetworkSnapshot, proto: &'static str, text: &str) {
    let udp = proto.starts_with("udp");
    let counts = snapshot.tables.entry(proto).or_default();
    for socket in text.lines().filter_map(parse_line) {
        counts.total += 1;
        *counts
            .by_state
            .entry(tcp_state_name(socket.state))
            .or_insert(0) += 1;
        let waiting = if udp {
            socket.remote.0.is_unspecified() && socket.remote.1 == 0
        } else {
            socket.state == 0x0A
        };
        if !waiting {
            continue;
        }
        if snapshot.listening.len() >= MAX_LISTENING {
            snapshot.listening_truncated = true;
            continue;
        }
        snapshot.listening.push(Listening {
            proto,
            address: socket.local.0.to_string(),
            port: socket.local.1,
            state: if udp { "bound" } else { "LISTEN" },
        });
    }
}

/// Reads every table under `net_dir` (normally `/proc/net`); missing tables (no
/// IPv6, say) are skipped.
pub fn snapshot(net_dir: &Path) -> Result<NetworkSnapshot, CollectError> {
    let mut snapshot = NetworkSnapshot::default();
    for &proto in TABLES {
        let path = net_dir.join(proto);
        match std::fs::read_to_string(&path) {
            Ok(text) => add_table(&mut snapshot, proto, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(CollectError::Io { path, source }),
        }
    }
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1 0 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 2 1 0 20 4 30 10 -1
   2: 0100007F:D431 0100007F:1F90 06 00000000:00000000 03:00000F2B 00000000     0        0 0 3 0
";

    const UDP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  10: 00000000000000000000000001000000:0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 3 2 0 0
";

    #[cfg(target_endian = "little")]
    #[test]
    fn decodes_hex_addresses() {
        let (ip, port) = decode_address("0100007F:1F90").unwrap();
        assert_eq!((ip.to_string(), port), ("127.0.0.1".to_owned(), 8080));
        let (ip, port) = decode_address("00000000000000000000000001000000:0035").unwrap();
        assert_eq!((ip.to_string(), port), ("::1".to_owned(), 53));
        assert_eq!(decode_address("0100007F"), None);
        assert_eq!(decode_address("01007F:0035"), None);
        assert_eq!(decode_address("0100007G:0035"), None);
    }

    #[test]
    fn counts_states_and_finds_listeners_and_bound_udp() {
        let mut s = NetworkSnapshot::default();
        add_table(&mut s, "tcp", TCP);
        add_table(&mut s, "udp6", UDP6);
        let tcp = &s.tables["tcp"];
        assert_eq!(tcp.total, 3);
        assert_eq!(tcp.by_state["LISTEN"], 1);
        assert_eq!(tcp.by_state["ESTABLISHED"], 1);
        assert_eq!(tcp.by_state["TIME_WAIT"], 1);
        assert_eq!(s.tables["udp6"].by_state["CLOSE"], 1);
        let waiting: Vec<(&str, u16, &str)> = s
            .listening
            .iter()
            .map(|l| (l.proto, l.port, l.state))
            .collect();
        assert_eq!(waiting, [("tcp", 8080, "LISTEN"), ("udp6", 53, "bound")]);
    }

    #[test]
    fn state_codes_have_names() {
        assert_eq!(tcp_state_name(0x0A), "LISTEN");
        assert_eq!(tcp_state_name(0x01), "ESTABLISHED");
        assert_eq!(tcp_state_name(0xEE), "UNKNOWN");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sees_a_listener_of_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let s = snapshot(Path::new("/proc/net")).unwrap();
        assert!(
            s.listening
                .iter()
                .any(|l| l.proto == "tcp" && l.port == port),
            "{s:?}"
        );
    }
}
