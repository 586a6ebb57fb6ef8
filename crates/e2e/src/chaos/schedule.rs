//! Fault schedules: which fault happens to which target when, and when it
//! heals, all derived from one seed.
//!
//! A schedule is plain data, generated before the run: printing the seed is
//! enough to replay a failing run exactly (`EVENTBUS_CHAOS_SEED=<seed>`). The
//! [nemesis](super::nemesis) carries it out.

use std::fmt;
use std::time::Duration;

use eventbus_harness::rng::Rng;

/// One fault, aimed at one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL collector `n`; healed by starting it again.
    KillCollector(usize),
    /// SIGSTOP collector `n` (it freezes with its socket open); healed by SIGCONT.
    PauseCollector(usize),
    /// Restart collector `n` gracefully (SIGTERM, drain, start); nothing to heal.
    RestartCollector(usize),
    /// SIGKILL the broker and start it again on the same socket; nothing to heal.
    RestartBroker,
    /// Blackhole link `n` (its fault proxy holds every frame); healed by letting them flow.
    Partition(usize),
    /// Delay every frame on link `n` both ways; healed by removing the delay.
    Latency {
        /// The link.
        link: usize,
        /// Delay of every frame.
        base: Duration,
        /// Extra delay, uniform in `[0, jitter]`.
        jitter: Duration,
    },
    /// Lower collector `n`'s address-space limit to its idle size (at the
    /// start of the run) plus `headroom` bytes; healed by restoring the limit.
    SqueezeMemory {
        /// The collector.
        collector: usize,
        /// Bytes it may still map.
        headroom: u64,
    },
}

impl Fault {
    /// Whether the fault lasts until healed (otherwise it is instantaneous).
    pub fn lasts(&self) -> bool {
        !matches!(self, Self::RestartCollector(_) | Self::RestartBroker)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KillCollector(n) => write!(f, "kill collector {n}"),
            Self::PauseCollector(n) => write!(f, "pause collector {n}"),
            Self::RestartCollector(n) => write!(f, "restart collector {n}"),
            Self::RestartBroker => f.write_str("kill and restart the broker"),
            Self::Partition(n) => write!(f, "partition link {n}"),
            Self::Latency { link, base, jitter } => {
                write!(f, "latency {base:?} + up to {jitter:?} on link {link}")
            }
            Self::SqueezeMemory {
                collector,
                headroom,
            } => write!(
                f,
                "squeeze collector {collector} to {} MiB of headroom",
                headroom >> 20
            ),
        }
    }
}

/// A kind of fault the nemesis may choose, with its weight; the target is
/// drawn when the fault is scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// [`Fault::KillCollector`].
    Kill,
    /// [`Fault::PauseCollector`].
    Pause,
    /// [`Fault::RestartCollector`].
    RestartCollector,
    /// [`Fault::RestartBroker`].
    RestartBroker,
    /// [`Fault::Partition`].
    Partition,
    /// [`Fault::Latency`] with this base delay and jitter.
    Latency(Duration, Duration),
    /// [`Fault::SqueezeMemory`] with this headroom.
    SqueezeMemory(u64),
}

impl FaultKind {
    fn aims_at_links(self) -> bool {
        matches!(self, Self::Partition | Self::Latency(..))
    }
}

/// What a schedule may do, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The first fault happens this long after the start.
    pub first_at: Duration,
    /// One more fault every `every` ("progressive failures"), while targets last.
    pub every: Duration,
    /// How many faults in all.
    pub faults: usize,
    /// Every lasting fault heals this long after the start.
    pub heal_at: Duration,
    /// The faults to choose from, with weights.
    pub menu: Vec<(FaultKind, u32)>,
    /// Collectors that may be targeted (indexes into the scenario's list).
    pub collectors: usize,
    /// Links (fault proxies) that may be targeted.
    pub links: usize,
}

/// What the nemesis does at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start a fault.
    Inject(Fault),
    /// End a lasting fault started earlier.
    Heal(Fault),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inject(fault) => write!(f, "inject: {fault}"),
            Self::Heal(fault) => write!(f, "heal: {fault}"),
        }
    }
}

/// An action at a time since the start of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// When, from the start of the run.
    pub at: Duration,
    /// What.
    pub action: Action,
}

/// A seeded, fully determined list of steps, in time order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The seed it was derived from.
    pub seed: u64,
    /// The steps, in time order.
    pub steps: Vec<Step>,
}

impl Schedule {
    /// Progressive failures: fault `k` at `first_at + k × every`, each on a
    /// target no other lasting fault holds, all lasting ones healed at
    /// `heal_at`. A fault kind with no free target left is skipped for
    /// another draw; when no kind has one, the schedule stops growing.
    pub fn progressive(seed: u64, plan: &Plan) -> Self {
        let mut rng = Rng::new(seed);
        let mut busy_collectors = vec![false; plan.collectors];
        let mut busy_links = vec![false; plan.links];
        let mut steps = Vec::new();
        let mut lasting = Vec::new();
        for k in 0..plan.faults {
            let at = plan.first_at + plan.every * u32::try_from(k).unwrap_or(u32::MAX);
            if at >= plan.heal_at {
                break;
            }
            let Some(fault) = draw(&mut rng, plan, &mut busy_collectors, &mut busy_links) else {
                break;
            };
            steps.push(Step {
                at,
                action: Action::Inject(fault),
            });
            if fault.lasts() {
                lasting.push(fault);
            }
        }
        steps.extend(lasting.into_iter().map(|fault| Step {
            at: plan.heal_at,
            action: Action::Heal(fault),
        }));
        Self { seed, steps }
    }

    /// Adds instantaneous `fault` (one that [does not last](Fault::lasts))
    /// at `at`, after any step already there: a fault a scenario wants for
    /// sure, beside the drawn ones (a broker crash in every run, say).
    ///
    /// # Panics
    ///
    /// If `fault` lasts: it would need a heal this does not schedule.
    #[must_use]
    pub fn with(mut self, at: Duration, fault: Fault) -> Self {
        assert!(!fault.lasts(), "{fault} lasts: schedule it with its heal");
        let index = self.steps.partition_point(|s| s.at <= at);
        self.steps.insert(
            index,
            Step {
                at,
                action: Action::Inject(fault),
            },
        );
        self
    }

    /// When the last lasting fault heals (or the last instantaneous one
    /// happens): the point recovery is measured from.
    pub fn last_heal(&self) -> Duration {
        self.steps.last().map_or(Duration::ZERO, |s| s.at)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "schedule (seed {}):", self.seed)?;
        for step in &self.steps {
            writeln!(f, "  {:>7.2}s  {}", step.at.as_secs_f64(), step.action)?;
        }
        Ok(())
    }
}

/// Draws a fault whose target is free, marking the target busy if the fault lasts.
fn draw(
    rng: &mut Rng,
    plan: &Plan,
    busy_collectors: &mut [bool],
    busy_links: &mut [bool],
) -> Option<Fault> {
    let mut menu: Vec<(FaultKind, u32)> =
        plan.menu.iter().copied().filter(|(_, w)| *w > 0).collect();
    while !menu.is_empty() {
        let total: u64 = menu.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut ticket = rng.below(total);
        let i = menu
            .iter()
            .position(|(_, w)| {
                let hit = ticket < u64::from(*w);
                ticket = ticket.saturating_sub(u64::from(*w));
                hit
            })
            .unwrap_or(0);
        let kind = menu[i].0;
        let busy: &mut [bool] = if kind.aims_at_links() {
            busy_links
        } else {
            busy_collectors
        };
        let free: Vec<usize> = (0..busy.len()).filter(|&t| !busy[t]).collect();
        let target = match kind {
            FaultKind::RestartBroker => Some(0),
            _ => rng.pick(&free).copied(),
        };
        let Some(target) = target else {
            menu.remove(i);
            continue;
        };
        let fault = match kind {
            FaultKind::Kill => Fault::KillCollector(target),
            FaultKind::Pause => Fault::PauseCollector(target),
            FaultKind::RestartCollector => Fault::RestartCollector(target),
            FaultKind::RestartBroker => Fault::RestartBroker,
            FaultKind::Partition => Fault::Partition(target),
            FaultKind::Latency(base, jitter) => Fault::Latency {
                link: target,
                base,
                jitter,
            },
            FaultKind::SqueezeMemory(headroom) => Fault::SqueezeMemory {
                collector: target,
                headroom,
            },
        };
        if fault.lasts() {
            busy[target] = true;
        }
        return Some(fault);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            first_at: Duration::from_secs(1),
            every: Duration::from_secs(2),
            faults: 3,
            heal_at: Duration::from_secs(8),
            menu: vec![(FaultKind::Kill, 1), (FaultKind::Pause, 1)],
            collectors: 4,
            links: 0,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        assert_eq!(
            Schedule::progressive(9, &plan()),
            Schedule::progressive(9, &plan())
        );
        let differs = (0..20).any(|s| {
            Schedule::progressive(s, &plan()).steps != Schedule::progressive(9, &plan()).steps
        });
        assert!(differs, "the seed changes the schedule");
    }

    #[test]
    fn a_fault_added_by_hand_goes_in_time_order() {
        let schedule = Schedule::progressive(1, &plan())
            .with(Duration::from_secs(3), Fault::RestartBroker)
            .with(Duration::ZERO, Fault::RestartBroker);
        let at: Vec<u64> = schedule.steps.iter().map(|s| s.at.as_secs()).collect();
        assert_eq!(at, [0, 1, 3, 3, 5, 8, 8, 8]);
        assert_eq!(
            schedule.steps[3].action,
            Action::Inject(Fault::RestartBroker),
            "after the step already at 3 s"
        );
    }

    #[test]
    fn faults_are_progressive_on_distinct_targets_and_all_heal() {
        let schedule = Schedule::progressive(1, &plan());
        let injected: Vec<Step> = schedule
            .steps
            .iter()
            .copied()
            .filter(|s| matches!(s.action, Action::Inject(_)))
            .collect();
        let at: Vec<u64> = injected.iter().map(|s| s.at.as_secs()).collect();
        assert_eq!(at, [1, 3, 5]);
        let mut targets: Vec<usize> = injected
            .iter()
            .map(|s| match s.action {
                Action::Inject(Fault::KillCollector(n) | Fault::PauseCollector(n)) => n,
                other => panic!("not on the menu: {other}"),
            })
            .collect();
        targets.sort_unstable();
        targets.dedup();
        assert_eq!(targets.len(), 3, "one target per lasting fault");
        let heals = schedule
            .steps
            .iter()
            .filter(|s| matches!(s.action, Action::Heal(_)) && s.at.as_secs() == 8)
            .count();
        assert_eq!(heals, 3);
        assert_eq!(schedule.last_heal(), Duration::from_secs(8));
    }

    #[test]
    fn the_schedule_stops_when_targets_run_out() {
        let plan = Plan {
            faults: 10,
            heal_at: Duration::from_secs(100),
            collectors: 2,
            ..plan()
        };
        let schedule = Schedule::progressive(5, &plan);
        let injected = schedule
            .steps
            .iter()
            .filter(|s| matches!(s.action, Action::Inject(_)))
            .count();
        assert_eq!(injected, 2);
    }

    #[test]
    fn link_faults_aim_at_links() {
        let plan = Plan {
            menu: vec![(FaultKind::Partition, 1)],
            collectors: 5,
            links: 1,
            ..plan()
        };
        let schedule = Schedule::progressive(2, &plan);
        assert_eq!(
            schedule.steps.first().map(|s| s.action),
            Some(Action::Inject(Fault::Partition(0)))
        );
        assert_eq!(
            schedule.steps.len(),
            2,
            "one link: one partition and its heal"
        );
    }
}
