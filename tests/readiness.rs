//! Port 0 and the ready file: the receiver binds what the kernel picks and
//! says where, in one log line and in `READY_FILE`, so that whoever starts
//! it never has to pick a port first.

mod common;

use std::process::Command;

use common::poolwatch::{Poolwatch, poolwatch_bin};
use common::{PATIENCE, try_http_request, wait_until};

#[test]
fn port_zero_is_reported_in_the_log_and_the_ready_file() {
    let unix = common::unique_temp_path("poolwatch-unix");
    // The harness asks for 127.0.0.1:0 twice and reads the ready file.
    let mut pw = Poolwatch::start(&["--unix-listen", unix.to_str().unwrap()]);
    for addr in [&pw.udp, &pw.http] {
        let port = addr.rsplit_once(':').unwrap().1;
        assert_ne!(port, "0", "{addr}");
    }
    assert_eq!(pw.unix.as_deref(), unix.to_str());
    // The addresses are the ones in use: HTTP answers, a datagram counts.
    let (status, _, _) =
        try_http_request("GET", &pw.http, "/healthz", b"", PATIENCE).expect("GET /healthz");
    assert_eq!(status, 200);
    pw.send(&[b"<190>Nov  5 09:07:03 web nginx: {\"status\":200}".to_vec()]);
    pw.wait_for_datagrams(1);
    // One line names every address.
    let log = pw.log();
    let line = log
        .lines()
        .find(|l| l.contains("ready: listening"))
        .unwrap_or_else(|| panic!("no ready line in:\n{log}"));
    for want in [&pw.udp, &pw.http, &unix.display().to_string()] {
        assert!(line.contains(want.as_str()), "{want} not in {line:?}");
    }
    // Gone once shutdown begins.
    assert!(pw.ready_file_exists());
    assert_eq!(pw.stop(), Some(0));
    assert!(!pw.ready_file_exists(), "ready file left behind");
}

/// A ready file from an earlier run is removed once the ports are bound,
/// so nobody reads stale addresses, and a start that fails after that
/// leaves neither it nor a temporary file behind. A start that cannot bind
/// its ports (another instance has them) leaves that instance's file be.
#[test]
fn a_stale_ready_file_is_removed_and_a_failed_start_leaves_none() {
    let dir = common::unique_temp_path("poolwatch-ready-dir");
    std::fs::create_dir_all(&dir).unwrap();
    let ready = dir.join("ready.json");
    let stale = r#"{"udp":"127.0.0.1:1","unix":null,"http":"127.0.0.1:2"}"#;
    let start = |udp: &str, extra: &[&str]| {
        Command::new(poolwatch_bin())
            .args(["--udp-listen", udp, "--http-listen", "127.0.0.1:0"])
            .args(extra)
            .arg("--ready-file")
            .arg(&ready)
            .env_clear()
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap()
    };
    let files = || -> Vec<_> {
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect()
    };

    // A UDP address this test holds: binding it fails first.
    std::fs::write(&ready, stale).unwrap();
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let out = start(&taken_addr, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("UDP_LISTEN"), "{err}");
    assert_eq!(std::fs::read_to_string(&ready).unwrap(), stale);
    assert_eq!(files().len(), 1, "{:?}", files());
    drop(taken);

    // Ports bound, then the unix path is a plain file: too late for the
    // stale file, and nothing of this start is left.
    let not_a_socket = dir.join("not-a-socket");
    std::fs::write(&not_a_socket, "x").unwrap();
    let out = start(
        "127.0.0.1:0",
        &["--unix-listen", not_a_socket.to_str().unwrap()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("UNIX_LISTEN"), "{err}");
    assert_eq!(files(), [not_a_socket.file_name().unwrap()], "left behind");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unwritable_ready_file_stops_start_up_naming_it() {
    let missing = common::unique_temp_path("poolwatch-no-such-dir").join("ready.json");
    let out = Command::new(poolwatch_bin())
        .args([
            "--udp-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .env_clear()
        .env("READY_FILE", &missing)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("READY_FILE") && err.contains("writable directory"),
        "{err}"
    );
}

/// The file is written whole or not at all: a reader polling for it never
/// sees a partial document.
#[test]
fn the_ready_file_appears_complete() {
    let dir = common::unique_temp_path("poolwatch-ready-poll");
    std::fs::create_dir_all(&dir).unwrap();
    let ready = dir.join("ready.json");
    let mut child = Command::new(poolwatch_bin())
        .args([
            "--udp-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .arg("--ready-file")
        .arg(&ready)
        .env_clear()
        .current_dir(std::env::temp_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Read as fast as possible while it starts: whenever the file exists,
    // it parses.
    let mut reads = 0;
    let appeared = wait_until(PATIENCE, || {
        for _ in 0..1000 {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                reads += 1;
                let v: serde_json::Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("partial ready file {text:?}: {e}"));
                assert!(v["udp"].is_string() && v["http"].is_string(), "{v}");
                return true;
            }
        }
        false
    });
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(appeared && reads > 0);
    assert!(status.success(), "{status}");
    std::fs::remove_dir_all(&dir).unwrap();
}
