//! Alerting: what poolwatch tells people, and how it reaches them.
//!
//! The alert half reads like the receive half, as the data flows:
//!
//! - [`engine`]: every 100 ms, copy the pipeline's figures, run the rules,
//!   apply cooldown and maintenance, and hand what remains to delivery;
//! - [`rules`]: failover, switch, recovery, error rate, users seeing errors;
//! - [`incident`]: one open incident per kind and pool, cooldown and
//!   maintenance decisions;
//! - [`finding`]: what the rules decided, as data: kind, pool, severity,
//!   start, figures and evidence;
//! - [`wording`]: every sentence people read, made from a finding;
//! - [`sinks`]: each receiver's rendering (Slack, stdout);
//! - [`delivery`]: a bounded queue drained by its own task, so a slow or
//!   failing receiver never touches the receive path.

// Public for the tests (fake receivers drive delivery and sinks) and the
// benchmarks; the rest is the crate's own.
pub mod delivery;
pub(crate) mod engine;
pub mod finding;
pub(crate) mod incident;
pub(crate) mod rules;
pub mod sinks;
pub(crate) mod snapshot;
pub mod wording;

pub(crate) use engine::now_unix;
pub use engine::{AlertShared, TICK};
/// The rules' settings, for `replay`'s callers (the fuzz harness).
pub use rules::RulesConfig;
