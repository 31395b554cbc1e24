//! Datagrams (framing → access record → pipeline), several per input
//! separated by `0x1e`; see `fuzz/harness.rs` for what is checked.

#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::datagram(data));
