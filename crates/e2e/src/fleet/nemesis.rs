//! Faults across nodes: a seeded [`FleetSchedule`] of partitions, degraded
//! links, `nats-server` kills and pauses and whole-node kills, carried out on
//! time on a [`Fleet`] by [`run`], which logs what it did like the chaos
//! suite's nemesis ([`Applied`], [`log_lines`]).

use std::time::Duration;

use tokio::time::Instant;

use eventbus_harness::Netem;
use eventbus_harness::rng::Rng;

pub use crate::chaos::nemesis::{Applied, log_lines};

use super::Fleet;

/// A fault across nodes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FleetFault {
    /// Node `i` cut off the NATS cluster (and every other node).
    Partition(usize),
    /// Node `i`'s link degraded.
    Netem {
        /// The node.
        node: usize,
        /// How.
        netem: Netem,
    },
    /// NATS server `i` killed; healed by restarting it.
    KillNats(usize),
    /// NATS server `i` frozen (SIGSTOP); healed by SIGCONT.
    PauseNats(usize),
    /// Every process of node `i` killed; healed by starting them again.
    KillNode(usize),
}

/// Inject a fault, or heal it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// Start the fault.
    Inject(FleetFault),
    /// End it.
    Heal(FleetFault),
}

/// An action at a time since the start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// When.
    pub at: Duration,
    /// What.
    pub action: Action,
}

/// The faults of one run, in time order, and the seed they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSchedule {
    /// Replays the random choices (`$EVENTBUS_CHAOS_SEED`).
    pub seed: u64,
    /// In time order.
    pub steps: Vec<Step>,
}

impl FleetSchedule {
    /// No faults yet.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            steps: Vec::new(),
        }
    }

    /// `fault` from `at` for `hold`, then healed.
    pub fn fault(mut self, at: Duration, hold: Duration, fault: FleetFault) -> Self {
        self.steps.push(Step {
            at,
            action: Action::Inject(fault),
        });
        self.steps.push(Step {
            at: at + hold,
            action: Action::Heal(fault),
        });
        self.steps.sort_by_key(|s| s.at);
        self
    }

    /// Progressive failures: from `first`, every `every` one more node of
    /// `nodes` (in a seeded order) is partitioned and stays so; all are
    /// healed at `heal_at`.
    pub fn progressive(
        seed: u64,
        nodes: usize,
        first: Duration,
        every: Duration,
        heal_at: Duration,
    ) -> Self {
        let mut rng = Rng::new(seed);
        let mut order: Vec<usize> = (0..nodes).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut schedule = Self::new(seed);
        for (k, node) in order.into_iter().enumerate() {
            let at = first + every * k as u32;
            if at >= heal_at {
                break;
            }
            schedule = schedule.fault(at, heal_at - at, FleetFault::Partition(node));
        }
        schedule
    }

    /// One fault of a seeded kind on a seeded target every `every` from
    /// `first` until `end`, each held for `hold`: partitions and node kills
    /// over `nodes` nodes, kills and pauses of one of `servers` NATS servers
    /// at a time (never two at once, so the cluster keeps its quorum).
    pub fn random(
        seed: u64,
        nodes: usize,
        servers: usize,
        first: Duration,
        every: Duration,
        hold: Duration,
        end: Duration,
    ) -> Self {
        let mut rng = Rng::new(seed);
        let mut schedule = Self::new(seed);
        let mut at = first;
        while at + hold <= end {
            let fault = match rng.below(5) {
                0 | 1 => FleetFault::Partition(rng.below(nodes as u64) as usize),
                2 => FleetFault::KillNats(rng.below(servers as u64) as usize),
                3 => FleetFault::PauseNats(rng.below(servers as u64) as usize),
                _ => FleetFault::Netem {
                    node: rng.below(nodes as u64) as usize,
                    netem: Netem {
                        delay: Duration::from_millis(5 + rng.below(45)),
                        jitter: Duration::from_millis(rng.below(10)),
                        loss_percent: rng.below(10) as f64,
                        reorder_percent: rng.below(25) as f64,
                    },
                },
            };
            schedule = schedule.fault(at, hold, fault);
            at += every.max(hold);
        }
        schedule
    }
}

/// Carries out `schedule` on `fleet` from `start`, waiting for each step's
/// time; returns what was done (a fault that could not be applied is logged
/// as FAILED, never skipped silently).
pub async fn run(schedule: &FleetSchedule, start: Instant, fleet: &mut Fleet) -> Vec<Applied> {
    let mut log = Vec::with_capacity(schedule.steps.len());
    for step in &schedule.steps {
        tokio::time::sleep_until(start + step.at).await;
        let what = match step.action {
            Action::Inject(fault) => inject(fleet, fault).await,
            Action::Heal(fault) => heal(fleet, fault).await,
        };
        log.push(Applied {
            planned: step.at,
            done: start.elapsed(),
            what,
        });
    }
    log
}

fn outcome(what: String, result: Result<(), eventbus_harness::NetnsError>) -> String {
    match result {
        Ok(()) => what,
        Err(e) => format!("FAILED {what}: {e}"),
    }
}

async fn inject(fleet: &mut Fleet, fault: FleetFault) -> String {
    match fault {
        FleetFault::Partition(n) => {
            let node = fleet.node(n);
            outcome(format!("partitioned {}", node.name()), node.partition())
        }
        FleetFault::Netem { node, netem } => {
            let node = fleet.node(node);
            outcome(
                format!("{netem:?} on {}", node.name()),
                node.set_netem(netem),
            )
        }
        FleetFault::KillNats(i) => {
            let server = fleet.nats_mut().server_mut(i);
            server.kill();
            format!("killed nats-server {}", server.name())
        }
        FleetFault::PauseNats(i) => {
            let server = &fleet.nats().servers()[i];
            server.pause();
            format!("paused nats-server {}", server.name())
        }
        FleetFault::KillNode(n) => {
            let node = fleet.node_mut(n);
            node.kill();
            format!("killed every process of {}", node.name())
        }
    }
}

async fn heal(fleet: &mut Fleet, fault: FleetFault) -> String {
    match fault {
        FleetFault::Partition(n) => {
            let node = fleet.node(n);
            outcome(format!("healed {}", node.name()), node.heal())
        }
        FleetFault::Netem { node, .. } => {
            let node = fleet.node(node);
            outcome(
                format!("cleared the netem of {}", node.name()),
                node.clear_netem(),
            )
        }
        FleetFault::KillNats(i) => {
            let server = fleet.nats_mut().server_mut(i);
            server.restart().await;
            format!(
                "restarted nats-server {} (pid {})",
                server.name(),
                server.process().pid()
            )
        }
        FleetFault::PauseNats(i) => {
            let server = &fleet.nats().servers()[i];
            server.resume();
            format!("resumed nats-server {}", server.name())
        }
        FleetFault::KillNode(n) => {
            let node = fleet.node_mut(n);
            node.restart().await;
            format!("started every process of {} again", node.name())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn progressive_partitions_every_node_once_in_a_seeded_order_and_heals_all() {
        let a = FleetSchedule::progressive(7, 3, S, 2 * S, 10 * S);
        assert_eq!(a, FleetSchedule::progressive(7, 3, S, 2 * S, 10 * S));
        let injected: Vec<usize> = a
            .steps
            .iter()
            .filter_map(|s| match s.action {
                Action::Inject(FleetFault::Partition(n)) => Some(n),
                _ => None,
            })
            .collect();
        let mut sorted = injected.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 1, 2]);
        let heals = a
            .steps
            .iter()
            .filter(|s| matches!(s.action, Action::Heal(_)));
        assert!(heals.clone().all(|s| s.at == 10 * S));
        assert_eq!(heals.count(), 3);
        assert!(a.steps.windows(2).all(|w| w[0].at <= w[1].at));
    }

    #[test]
    fn random_faults_never_overlap_and_replay_from_the_seed() {
        let a = FleetSchedule::random(3, 3, 3, S, 3 * S, 2 * S, 30 * S);
        assert_eq!(a, FleetSchedule::random(3, 3, 3, S, 3 * S, 2 * S, 30 * S));
        assert_ne!(a, FleetSchedule::random(4, 3, 3, S, 3 * S, 2 * S, 30 * S));
        // Inject, heal, inject, heal...: one fault at a time.
        for (k, step) in a.steps.iter().enumerate() {
            assert_eq!(
                matches!(step.action, Action::Inject(_)),
                k % 2 == 0,
                "{a:?}"
            );
        }
        assert!(a.steps.last().unwrap().at <= 30 * S);
        assert!(a.steps.len() >= 10);
    }
}
