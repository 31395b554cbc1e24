//! The blue/green traffic the Alertmanager targets send: healthy requests
//! to one pool, and a failover (blue fails a request that green rescues,
//! then green serves) that stays open until blue serves again.
//!
//! Include it with `mod common;` and
//! `#[path = "common/failover.rs"] mod failover;`.

#![allow(dead_code)]

use crate::common::poolwatch::Poolwatch;

pub const BLUE: &str = "127.0.0.1:3001";
pub const GREEN: &str = "127.0.0.1:3002";

fn line(status: u16, ups: &str, addrs: &str, pool: &str) -> Vec<u8> {
    format!(
        r#"<190>Nov  5 09:07:03 web nginx: {{"status":{status},"request_time":0.004,"upstream_status":"{ups}","upstream_addr":"{addrs}","pool":"{pool}","release":"{pool}-1"}}"#
    )
    .into_bytes()
}

/// Thirty requests `pool` serves well.
pub fn healthy(pw: &Poolwatch, pool: &str) {
    let addr = if pool == "blue" { BLUE } else { GREEN };
    pw.send(&vec![line(200, "200", addr, pool); 30]);
}

/// Blue fails a request that green rescues, then green serves.
pub fn failover(pw: &Poolwatch) {
    pw.send(&[line(200, "500, 200", &format!("{BLUE}, {GREEN}"), "green")]);
    healthy(pw, "green");
}
