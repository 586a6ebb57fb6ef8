//! The nemesis: carries out a [`Schedule`] on a cluster's processes and links,
//! on time, and keeps a log of what it did.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use tokio::time::Instant;

use super::metrics::PidCell;
use super::schedule::{Action, Fault, Schedule};
use crate::collector::{CollectorProcess, MemorySqueeze};
use eventbus_harness::Cluster;
use eventbus_harness::{Direction, FaultProxy};

/// What the nemesis may act on.
#[derive(Debug)]
pub struct Targets<'a> {
    /// The cluster, for its broker.
    pub cluster: &'a mut Cluster,
    /// Collectors, indexed as in the schedule.
    pub collectors: &'a mut [CollectorProcess],
    /// Links (the fault proxies collectors sit behind), indexed as in the schedule.
    pub links: &'a [FaultProxy],
    /// Updated with the broker's pid after a restart, for the RSS sampler.
    pub broker_pid: &'a PidCell,
}

/// One action carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// When it was planned, since the start.
    pub planned: Duration,
    /// When it was done, since the start.
    pub done: Duration,
    /// What was done, or why it could not be.
    pub what: String,
}

/// The nemesis's log, as report notes.
pub fn log_lines(log: &[Applied]) -> Vec<String> {
    log.iter()
        .map(|a| {
            let mut line = format!("{:>6.2}s {}", a.done.as_secs_f64(), a.what);
            if a.done > a.planned + Duration::from_millis(100) {
                let _ = write!(line, " (planned at {:.2}s)", a.planned.as_secs_f64());
            }
            line
        })
        .collect()
}

/// Carries out `schedule` from `start`, waiting for each step's time.
pub async fn run(schedule: &Schedule, start: Instant, targets: Targets<'_>) -> Vec<Applied> {
    // Idle sizes, before the load: a squeeze leaves its headroom over these.
    let baselines = targets
        .collectors
        .iter()
        .map(|c| c.vm_size().ok())
        .collect();
    let mut nemesis = Nemesis {
        targets,
        baselines,
        squeezes: HashMap::new(),
    };
    let mut log = Vec::with_capacity(schedule.steps.len());
    for step in &schedule.steps {
        tokio::time::sleep_until(start + step.at).await;
        let what = nemesis.apply(step.action).await;
        log.push(Applied {
            planned: step.at,
            done: start.elapsed(),
            what,
        });
    }
    log
}

struct Nemesis<'a> {
    targets: Targets<'a>,
    /// Each collector's `VmSize` when the run started, if it could be read.
    baselines: Vec<Option<u64>>,
    squeezes: HashMap<usize, MemorySqueeze>,
}

impl Nemesis<'_> {
    fn collector(&mut self, n: usize) -> &mut CollectorProcess {
        &mut self.targets.collectors[n]
    }

    fn link(&self, n: usize) -> &FaultProxy {
        &self.targets.links[n]
    }

    async fn apply(&mut self, action: Action) -> String {
        match action {
            Action::Inject(fault) => self.inject(fault).await,
            Action::Heal(fault) => self.heal(fault).await,
        }
    }

    async fn inject(&mut self, fault: Fault) -> String {
        match fault {
            Fault::KillCollector(n) => {
                let c = self.collector(n);
                c.kill();
                format!("killed {}", c.id())
            }
            Fault::PauseCollector(n) => {
                let c = self.collector(n);
                c.pause();
                format!("paused {}", c.id())
            }
            Fault::RestartCollector(n) => {
                let c = self.collector(n);
                c.restart().await;
                format!("restarted {} (now pid {})", c.id(), c.pid())
            }
            Fault::RestartBroker => {
                let broker = self.targets.cluster.broker_mut();
                broker.kill();
                broker.restart().await;
                let pid = broker.pid();
                self.targets.broker_pid.set(pid);
                format!("killed the broker and started it again (now pid {pid})")
            }
            Fault::Partition(n) => {
                self.link(n).partition();
                format!("partitioned link {n}")
            }
            Fault::Latency { link, base, jitter } => {
                self.link(link).set_latency(Direction::Both, base, jitter);
                format!("latency {base:?} + up to {jitter:?} each way on link {link}")
            }
            Fault::SqueezeMemory {
                collector,
                headroom,
            } => {
                let c = &self.targets.collectors[collector];
                let squeezed = match self.baselines[collector] {
                    Some(idle) => c.squeeze_memory_to(idle + headroom),
                    None => c.squeeze_memory(headroom),
                };
                match squeezed {
                    Ok(squeeze) => {
                        let what = format!(
                            "squeezed {} to an address-space limit of {} MiB ({} MiB over its idle size; {} MiB mapped now)",
                            c.id(),
                            squeeze.limit >> 20,
                            headroom >> 20,
                            squeeze.vm_size >> 20
                        );
                        self.squeezes.insert(collector, squeeze);
                        what
                    }
                    Err(e) => format!("SKIPPED squeezing {}: {e}", c.id()),
                }
            }
        }
    }

    async fn heal(&mut self, fault: Fault) -> String {
        match fault {
            Fault::KillCollector(n) => {
                let c = self.collector(n);
                c.restart().await;
                format!("started {} again (pid {})", c.id(), c.pid())
            }
            Fault::PauseCollector(n) => {
                let c = self.collector(n);
                c.resume();
                format!("resumed {}", c.id())
            }
            Fault::Partition(n) => {
                self.link(n).heal();
                format!("healed link {n}")
            }
            Fault::Latency { link, .. } => {
                self.link(link)
                    .set_latency(Direction::Both, Duration::ZERO, Duration::ZERO);
                format!("removed the latency on link {link}")
            }
            Fault::SqueezeMemory { collector, .. } => {
                let Some(squeeze) = self.squeezes.remove(&collector) else {
                    return format!("nothing to relieve on collector {collector}");
                };
                let c = &self.targets.collectors[collector];
                match c.relieve_memory(squeeze) {
                    Ok(()) => format!("relieved {}", c.id()),
                    Err(e) => format!("could not relieve {}: {e}", c.id()),
                }
            }
            Fault::RestartCollector(_) | Fault::RestartBroker => String::from("nothing to heal"),
        }
    }
}
