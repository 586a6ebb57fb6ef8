//! Waiting for conditions with a deadline, never a bare sleep.
//!
//! The deadlines are generous on purpose: a loaded machine must make the
//! scenarios slower, not make them fail.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// The deadline for any single wait in a scenario: a process becoming ready,
/// exiting, or a condition coming true.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// How often [`wait_until`] checks its condition. The only sleep in the harness.
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
/// # async fn demo(driver: e2e::Driver) {
/// use e2e::{DEADLINE, wait_until};
/// wait_until("two collectors joined", DEADLINE, || async {
///     driver.stats().await.connections.len() >= 3
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
