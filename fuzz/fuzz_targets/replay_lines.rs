//! `poolwatch replay` input: lines through the pipeline and the rules; see
//! `fuzz/harness.rs` for what is checked.

#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::replay_lines(data));
