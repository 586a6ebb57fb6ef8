//! The physical floor: a byte-forwarding relay and an echo server, with no
//! framing, routing or protocol, over the same Unix sockets the bus uses.
#![forbid(unsafe_code)]

use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use crate::roles::{Recorder, RttArgs, ready};

/// Accepts clients on `listen`; each gets its own connection to `upstream`.
pub async fn relay(listen: &Path, upstream: &Path) -> anyhow::Result<()> {
    let listener = UnixListener::bind(listen)?;
    ready();
    loop {
        let (mut client, _) = listener.accept().await?;
        let mut server = UnixStream::connect(upstream).await?;
        tokio::spawn(async move {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        });
    }
}

/// Writes every byte back to where it came from.
pub async fn echo(listen: &Path) -> anyhow::Result<()> {
    let listener = UnixListener::bind(listen)?;
    ready();
    loop {
        let (mut conn, _) = listener.accept().await?;
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = conn.read(&mut buf).await {
                if n == 0 || conn.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// Sequential round trips of `size` bytes: write, then read the same count back.
pub async fn raw_rtt(args: &RttArgs) -> anyhow::Result<()> {
    raw_fanout(args, 1).await
}

/// Accepts clients on `listen`; each gets a connection to every one of
/// `upstreams`: what the client writes goes to all of them, and what any of
/// them writes back goes to the client — the physical floor of a gather
/// through a middle process.
pub async fn fanout_relay(listen: &Path, upstreams: &[std::path::PathBuf]) -> anyhow::Result<()> {
    let listener = UnixListener::bind(listen)?;
    ready();
    loop {
        let (client, _) = listener.accept().await?;
        let (mut from_client, mut to_client) = client.into_split();
        let mut writers = Vec::with_capacity(upstreams.len());
        // Bounded: each upstream echoes at most what the client wrote.
        let (back_tx, mut back_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1024);
        for upstream in upstreams {
            let (mut from_up, to_up) = UnixStream::connect(upstream).await?.into_split();
            writers.push(to_up);
            let back = back_tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = from_up.read(&mut buf).await {
                    if n == 0 || back.send(buf[..n].to_vec()).await.is_err() {
                        break;
                    }
                }
            });
        }
        drop(back_tx);
        tokio::spawn(async move {
            while let Some(bytes) = back_rx.recv().await {
                if to_client.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = from_client.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                for w in &mut writers {
                    if w.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
}

/// Sequential rounds through a relay: write `size` bytes, read `size ×
/// replies` back (1 through [`relay`] to one echo process, N through a
/// [`fanout_relay`] to N).
pub async fn raw_fanout(args: &RttArgs, replies: usize) -> anyhow::Result<()> {
    let mut conn = UnixStream::connect(&args.socket).await?;
    let payload = vec![7u8; args.size];
    let mut back = vec![0u8; args.size * replies];
    let mut recorder = Recorder::new(args.count, args.samples);
    for i in 0..args.warmup + args.count {
        let start = std::time::Instant::now();
        conn.write_all(&payload).await?;
        conn.read_exact(&mut back).await?;
        if i >= args.warmup {
            recorder.record(start.elapsed())?;
        }
    }
    recorder.report();
    Ok(())
}
