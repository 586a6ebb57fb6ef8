//! Waiting for conditions with a deadline, never a bare sleep: a condition
//! polled ([`wait_until`], [`wait_until_blocking`]), or the next item of a
//! stream ([`next`], [`next_within`], [`quiet_for`]).
//!
//! The deadlines are generous on purpose: a loaded machine must make the
//! tests slower, not make them fail.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::time::Duration;

use futures_core::Stream;
use tokio::time::Instant;

/// The deadline for any single wait in a test: a process becoming ready,
/// exiting, a message arriving, or a condition coming true.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// How often waits check their condition. The only sleep in the harness.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// A condition that did not come true in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timed out after {after:?} waiting until {what}")]
pub struct WaitTimeout {
    /// What was waited for.
    pub what: String,
    /// How long.
    pub after: Duration,
}

/// Polls `condition` every [`POLL_INTERVAL`] until it returns `true`, or fails
/// once `deadline` has passed (the condition is always checked at least once).
///
/// ```no_run
/// # async fn demo(client: eventbus::Client) {
/// use eventbus_harness::{DEADLINE, wait_until};
/// wait_until("two workers joined", DEADLINE, || async {
///     client.stats().await.is_ok_and(|s| s.connections.len() >= 3)
/// })
/// .await
/// .unwrap();
/// # }
/// ```
pub async fn wait_until<F, Fut>(
    what: &str,
    deadline: Duration,
    mut condition: F,
) -> Result<(), WaitTimeout>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    loop {
        if condition().await {
            return Ok(());
        }
        if Instant::now() >= end {
            return Err(WaitTimeout {
                what: what.to_owned(),
                after: deadline,
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// [`wait_until`] for a plain thread, with a condition that does not wait.
pub fn wait_until_blocking(
    what: &str,
    deadline: Duration,
    mut condition: impl FnMut() -> bool,
) -> Result<(), WaitTimeout> {
    let end = std::time::Instant::now() + deadline;
    loop {
        if condition() {
            return Ok(());
        }
        if std::time::Instant::now() >= end {
            return Err(WaitTimeout {
                what: what.to_owned(),
                after: deadline,
            });
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// The next item of a stream (a subscription, say); panics after [`DEADLINE`].
/// `None` when the stream ended.
pub async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    tokio::time::timeout(DEADLINE, poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)))
        .await
        .expect("a stream item within the deadline")
}

/// The next item if one arrives within `wait` (`None` also when the stream ended).
pub async fn next_within<S: Stream + Unpin>(stream: &mut S, wait: Duration) -> Option<S::Item> {
    tokio::time::timeout(wait, poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)))
        .await
        .ok()
        .flatten()
}

/// Whether a stream yields nothing within `wait`, for "must not receive"
/// checks (an item that does arrive is consumed).
pub async fn quiet_for<S: Stream + Unpin>(stream: &mut S, wait: Duration) -> bool {
    tokio::time::timeout(wait, poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)))
        .await
        .is_err()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn gives_up_at_the_deadline_and_names_the_condition() {
        let err = wait_until("never", Duration::from_millis(50), || async { false })
            .await
            .unwrap_err();
        assert_eq!(err.what, "never");
        assert!(err.to_string().contains("waiting until never"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn returns_once_the_condition_holds() {
        let mut polls = 0;
        wait_until("third poll", Duration::from_secs(1), || {
            polls += 1;
            let done = polls >= 3;
            async move { done }
        })
        .await
        .unwrap();
        assert_eq!(polls, 3);
    }
}
