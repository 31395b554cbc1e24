//! Alerting: what poolwatch tells people, and how it reaches them.
//!
//! The alert half reads like the receive half, as the data flows: rules
//! decide, one module words, sinks deliver.
//!
//! - [`engine`]: the loop; every 100 ms while there is something to watch
//!   (else at the next batch, or after a second) it copies the pipeline's
//!   figures ([`snapshot`]), runs the rules, lets the incidents decide what
//!   is told, words it and hands it to every sink;
//! - [`rules`]: where each rule is decided, one file per rule (failover with
//!   planned switches and recovery, error rate, users seeing errors);
//! - [`finding`]: what a rule found, as data: kind, pool, severity, start,
//!   figures and evidence; rules write no text;
//! - [`incident`]: one open incident per kind and pool: open, repeat,
//!   resolve, cooldown, maintenance hold;
//! - [`wording`]: every sentence people read, made from a finding;
//! - [`sinks`]: where each sink lives and renders what its receiver needs
//!   (stdout lines, Slack blocks, Alertmanager alerts);
//! - [`delivery`]: shared by the sinks and apart from them: a queue per
//!   sink, ordered per incident, with retries, so a slow or failing
//!   receiver never delays another, nor the receive path.

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
