//! Injected faults: which task fails, crashes the process, or freezes it.
//!
//! Tasks are numbered from 1 in the order this collector receives them (queue and
//! direct deliveries alike, bad payloads included). The decision is made when a
//! task is received, before any work on it.

use std::time::Duration;

/// The fault flags of one collector run; `None` disables a fault.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// Every Nth task gets an error reply instead of being done.
    pub fail_every: Option<u64>,
    /// On receiving its Nth task the process aborts, holding the task unsettled.
    pub crash_after: Option<u64>,
    /// On receiving its Nth task the process freezes (see [`freeze`]).
    pub hang_after: Option<u64>,
}

/// What to do with one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// Do the work and reply.
    Serve,
    /// Reply with an injected error, without doing the work.
    Fail,
    /// Abort the process now.
    Crash,
    /// Freeze the process now.
    Hang,
}

impl FaultPlan {
    /// The action for task number `n` (1-based). Crash wins over hang, which wins
    /// over fail, when several flags pick the same task.
    pub fn action(&self, n: u64) -> FaultAction {
        if self.crash_after == Some(n) {
            FaultAction::Crash
        } else if self.hang_after == Some(n) {
            FaultAction::Hang
        } else if self
            .fail_every
            .is_some_and(|every| every > 0 && n.is_multiple_of(every))
        {
            FaultAction::Fail
        } else {
            FaultAction::Serve
        }
    }
}

/// Ends the process at once with `SIGABRT`: no reply, no ack, no goodbye, like a
/// collector that crashed while holding its task.
pub fn crash(task: u64) -> ! {
    tracing::error!(
        task,
        "--crash-after reached: aborting while holding the task"
    );
    std::process::abort()
}

/// Blocks the calling thread forever, on purpose.
///
/// Called on the thread of the collector's current-thread runtime, this freezes
/// the whole runtime the way `SIGSTOP` would: no heartbeats, no deliveries, no
/// replies, while the process stays alive and its socket stays open. Only a
/// kill ends it. This is the one place the binary blocks async code, deliberately.
pub fn freeze(task: u64) -> ! {
    tracing::warn!(task, "--hang-after reached: freezing the runtime");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_every_picks_every_nth_task() {
        let plan = FaultPlan {
            fail_every: Some(2),
            ..FaultPlan::default()
        };
        let actions: Vec<_> = (1..=4).map(|n| plan.action(n)).collect();
        use FaultAction::*;
        assert_eq!(actions, [Serve, Fail, Serve, Fail]);
    }

    #[test]
    fn crash_and_hang_pick_exactly_their_task_and_win_over_fail() {
        let plan = FaultPlan {
            fail_every: Some(1),
            crash_after: Some(3),
            hang_after: Some(5),
        };
        assert_eq!(plan.action(1), FaultAction::Fail);
        assert_eq!(plan.action(3), FaultAction::Crash);
        assert_eq!(plan.action(5), FaultAction::Hang);
        assert_eq!(FaultPlan::default().action(1), FaultAction::Serve);
    }
}
