//! mock-collector: collector processes that do real, light collection work over
//! the eventbus, plus injectable faults for testing the system around them.
//!
//! Map of the crate:
//!
//! - [`registry`]: [`KNOWN_COLLECTORS`], the one list of collector types with
//!   their capability, alias, task topic and event kinds.
//! - [`cli`]: the command line and the [`CollectorConfig`] it resolves to.
//! - [`service`]: a collector's life: connect, join the queue group, print the
//!   ready line, dispatch tasks, drain on shutdown.
//! - [`handler`]: one task: parse, reserve scratch, pace (`--delay-ms`), collect,
//!   reply or ack; or shed it (requeue) when it does not fit in memory.
//! - [`task`]: task payloads and the reply format.
//! - [`collect`]: the real work: `/proc/<pid>`, `/proc/net/*`, directory walks.
//! - [`scratch`]: a task's working memory (`scratch_bytes`), reserved fallibly.
//! - [`emit`]: periodic snapshot events (`--emit-interval-ms`).
//! - [`faults`]: `--fail-every`, `--crash-after`, `--hang-after`.
//! - [`signals`]: the shutdown request on SIGTERM or SIGINT.
//! - [`status`]: the status every collector answers on
//!   `control.collector.status` (identity, uptime, task counts, resources),
//!   for a fleet-wide gather.
//!
//! The binary (`src/main.rs`) only parses the command line, sets up logging and
//! the runtime, and maps the [`Outcome`] to an exit code. See `README.md` for the
//! flags and the wire formats.
//!
//! **Invariants:** blocking reads run on tokio's blocking pool, never on the
//! runtime thread (the one deliberate exception is `--hang-after`, which freezes
//! the runtime on purpose); at most `prefetch` tasks run at once; a bad task never
//! ends the process: it gets an error reply; a task that does not fit in memory
//! never ends it either: it is shed (handed back to the queue).
#![forbid(unsafe_code)]

pub mod cli;
pub mod collect;
pub mod emit;
pub mod faults;
pub mod handler;
pub mod registry;
pub mod scratch;
pub mod service;
pub mod signals;
pub mod status;
pub mod task;

pub use cli::{Cli, CollectorConfig};
pub use registry::{CollectorType, KNOWN_COLLECTORS};
pub use service::Outcome;
