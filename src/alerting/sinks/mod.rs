//! Sinks: a notification rendered for each receiver.

pub mod slack;
pub mod stdout;
