//! poolwatch: watch a blue/green nginx pair through its syslog access log.
//!
//! The modules follow the data: [`ingest`] receives datagrams, [`syslog`]
//! finds the message in each, [`record`] decodes the JSON access record,
//! [`upstream`] splits it into attempts, [`pools`] says which pool each
//! attempt hit, [`window`] remembers what each pool did recently, and
//! [`pipeline`] ties those steps together. [`metrics`] and [`http`] publish
//! the result; [`receiver`] and [`replay`] are the two ways to run it.

pub mod admin_client;
pub mod alert_test;
pub mod alerting;
pub mod check_failover;
pub mod config;
mod duration;
pub mod http;
pub mod ingest;
pub mod loadgen;
pub mod logtime;
pub mod maintenance;
pub mod metrics;
pub mod pipeline;
pub mod pools;
pub mod receiver;
pub mod record;
pub mod reload;
pub mod replay;
pub mod secret;
pub mod state;
pub(crate) mod state_file;
pub mod syslog;
mod tls;
pub mod upstream;
pub mod window;
