//! The real binary over real UDP: every kind of datagram nginx (or a
//! hostile sender) can produce, and exact counts in `/metrics` afterwards.

mod common;

use common::poolwatch::Poolwatch;

const BLUE: &str = "127.0.0.1:3001";
const GREEN: &str = "127.0.0.1:3002";

fn nginx(json: &str) -> Vec<u8> {
    format!("<190>Nov  5 09:07:03 web-1 nginx: {json}").into_bytes()
}

fn access(status: u16, ups: &str, addrs: &str, pool: &str) -> String {
    format!(
        r#"{{"time":"2026-11-05T09:07:03+00:00","remote_addr":"10.1.2.3","request":"GET /version HTTP/1.1","method":"GET","uri":"/version","status":{status},"body_bytes_sent":57,"request_time":0.004,"upstream_status":"{ups}","upstream_addr":"{addrs}","upstream_response_time":"0.004","pool":"{pool}","release":"{pool}-1","request_id":"0123456789abcdef0123456789abcdef","http_user_agent":"curl/8.0"}}"#
    )
}

#[test]
fn every_datagram_is_counted_exactly_once() {
    let pw = Poolwatch::start(&[]);
    let mut d: Vec<Vec<u8>> = Vec::new();
    let both = format!("{BLUE}, {GREEN}");
    // Plain traffic on both pools: these also teach the address map.
    d.extend((0..50).map(|_| nginx(&access(200, "200", BLUE, "blue"))));
    d.extend((0..30).map(|_| nginx(&access(200, "200", GREEN, "green"))));
    // Failures on blue masked by a retry on green.
    d.extend((0..7).map(|_| nginx(&access(200, "500, 200", &both, "green"))));
    d.extend((0..3).map(|_| nginx(&access(200, "504, 200", &both, "green"))));
    d.extend((0..2).map(|_| nginx(&access(200, "502, 200", &both, "green"))));
    // A client-visible failure from blue.
    d.extend((0..1).map(|_| nginx(&access(503, "503", BLUE, "blue"))));
    // No live upstream, and nginx answering by itself.
    d.extend((0..2).map(|_| nginx(&access(502, "502", "backend", ""))));
    d.extend((0..4).map(|_| nginx(&access(404, "", "", ""))));
    // Pool names nobody configured.
    d.extend((0..5).map(|i| nginx(&access(200, "200", "10.9.9.9:80", &format!("evil-{i}")))));
    // Other framings of valid lines.
    d.extend((0..2).map(|_| {
        format!(
            "<190>Nov 15 09:07:03 nginx: {}",
            access(200, "200", BLUE, "blue")
        )
        .into_bytes()
    }));
    d.extend((0..2).map(|_| {
        format!(
            "<190>1 2026-11-05T09:07:03Z relay nginx - - - {}",
            access(200, "200", BLUE, "blue")
        )
        .into_bytes()
    }));
    d.extend((0..2).map(|_| access(200, "200", BLUE, "blue").into_bytes()));
    // Raw bytes >= 0x80 as escape=json passes them: still requests.
    d.extend((0..4).map(|_| {
        let mut v = nginx(&access(200, "200", BLUE, "blue"));
        let at = v.windows(8).position(|w| w == b"/version").unwrap();
        v.splice(at + 1..at + 1, [0xFF, 0xFE]);
        v
    }));
    // The largest datagram nginx sends whole: 65507 bytes.
    let mut big = nginx(&access(200, "200", GREEN, "green"));
    let pad = 65507 - big.len();
    let at = big.windows(8).position(|w| w == b"curl/8.0").unwrap();
    big.splice(at..at, std::iter::repeat_n(b'a', pad));
    assert_eq!(big.len(), 65507);
    d.push(big);
    let valid = d.len() as u64;

    // Malformed, each with its reason.
    let malformed: Vec<(&str, Vec<u8>)> = vec![
        ("invalid_json", nginx(r#"{"status":200,"pool":"blue""#)),
        ("invalid_json", nginx("{nope}")),
        ("invalid_json", nginx(r#"{"a":[1,2}"#)),
        ("missing_status", nginx(r#"{"pool":"blue"}"#)),
        ("missing_status", nginx(r#"{"status":"","pool":"blue"}"#)),
        ("bad_status", nginx(r#"{"status":"abc"}"#)),
        ("bad_status", nginx(r#"{"status":700}"#)),
        ("bad_syslog_header", b"<190>this is not syslog".to_vec()),
        ("bad_syslog_pri", b"<999>Nov  5 09:07:03 h nginx: {}".to_vec()),
        ("empty", Vec::new()),
        (
            "not_access_log",
            b"<187>Nov  5 09:07:03 web-1 nginx: 2026/11/05 09:07:03 [error] 29#29: *1 connect() failed (111: Connection refused) while connecting to upstream".to_vec(),
        ),
        (
            "not_access_log",
            b"<188>Nov  5 09:07:03 web-1 nginx: 2026/11/05 09:07:03 [warn] 29#29: *1 upstream server temporarily disabled".to_vec(),
        ),
    ];
    d.extend(malformed.iter().map(|(_, m)| m.clone()));
    pw.send(&d);
    let m = pw.wait_for_datagrams(d.len() as u64);

    assert_eq!(m.get("poolwatch_ingest_datagrams_total"), d.len() as f64);
    let bytes: usize = d.iter().map(Vec::len).sum();
    assert_eq!(m.get("poolwatch_ingest_bytes_total"), bytes as f64);
    assert_eq!(m.get("poolwatch_ingest_kernel_drops_total"), 0.0);
    for reason in [
        "invalid_json",
        "missing_status",
        "bad_status",
        "bad_syslog_header",
        "bad_syslog_pri",
        "empty",
        "not_access_log",
    ] {
        let want = malformed.iter().filter(|(r, _)| *r == reason).count();
        assert_eq!(
            m.get(&format!(
                "poolwatch_ingest_malformed_total{{reason=\"{reason}\"}}"
            )),
            want as f64,
            "reason {reason}"
        );
    }
    assert_eq!(
        m.sum("poolwatch_ingest_malformed_total", &[]),
        malformed.len() as f64
    );
    assert_eq!(m.get("poolwatch_ingest_invalid_utf8_total"), 4.0);
    assert_eq!(m.sum("poolwatch_requests_total", &[]), valid as f64);

    let req = |pool: &str, class: &str| {
        m.get(&format!(
            "poolwatch_requests_total{{pool=\"{pool}\",status_class=\"{class}\"}}"
        ))
    };
    assert_eq!(req("blue", "2xx"), (50 + 2 + 2 + 2 + 4) as f64);
    assert_eq!(req("blue", "5xx"), 1.0);
    assert_eq!(req("green", "2xx"), (30 + 7 + 3 + 2 + 1) as f64);
    assert_eq!(req("none", "5xx"), 2.0);
    assert_eq!(req("none", "4xx"), 4.0);
    assert_eq!(req("other", "2xx"), 5.0);

    let att = |pool: &str, outcome: &str| {
        m.get(&format!(
            "poolwatch_upstream_attempts_total{{pool=\"{pool}\",outcome=\"{outcome}\"}}"
        ))
    };
    assert_eq!(att("blue", "error_5xx"), 7.0 + 1.0);
    assert_eq!(att("blue", "timeout"), 3.0);
    assert_eq!(att("blue", "bad_gateway"), 2.0);
    assert_eq!(att("blue", "success"), (50 + 2 + 2 + 2 + 4) as f64);
    assert_eq!(att("green", "success"), (30 + 12 + 1) as f64);
    assert_eq!(att("other", "success"), 5.0);
    assert_eq!(
        m.sum("poolwatch_upstream_attempts_total", &["pool=\"unknown\""]),
        0.0
    );
    assert_eq!(
        m.get("poolwatch_retried_requests_total{from=\"blue\",to=\"green\"}"),
        12.0
    );
    assert_eq!(m.sum("poolwatch_retried_requests_total", &[]), 12.0);
    assert_eq!(m.get("poolwatch_no_live_upstream_total"), 2.0);
    assert_eq!(
        m.get("poolwatch_request_duration_seconds_count{pool=\"blue\"}"),
        req("blue", "2xx") + 1.0
    );

    // Blue's count window holds its masked failures.
    let state = pw.state();
    let blue = pw.pool_state("blue");
    assert_eq!(blue["count_window"]["failures"], 13);
    assert_eq!(blue["count_window"]["attempts"], 60 + 13);
    assert_eq!(state["ingest"]["datagrams"], d.len());
    let addrs = state["addresses"].as_array().unwrap();
    assert!(
        addrs
            .iter()
            .any(|a| a["addr"] == BLUE && a["pool"] == "blue")
    );
    assert!(
        addrs
            .iter()
            .any(|a| a["addr"] == GREEN && a["pool"] == "green")
    );
}

#[test]
fn sigterm_exits_zero_after_finishing_in_hand() {
    let mut pw = Poolwatch::start(&[]);
    pw.send(&[nginx(&access(200, "200", BLUE, "blue"))]);
    pw.wait_for_datagrams(1);
    assert_eq!(pw.stop(), Some(0));
    assert!(pw.log().contains("stopped"), "{}", pw.log());
}

#[test]
fn unix_socket_receives_too() {
    let path = common::unique_temp_path("poolwatch-unix");
    let pw = Poolwatch::start(&["--unix-listen", path.to_str().unwrap()]);
    let s = std::os::unix::net::UnixDatagram::unbound().unwrap();
    s.send_to(&nginx(&access(200, "200", BLUE, "blue")), &path)
        .unwrap();
    let m = pw.wait_for_datagrams(1);
    assert_eq!(
        m.get("poolwatch_requests_total{pool=\"blue\",status_class=\"2xx\"}"),
        1.0
    );
    assert!(pw.log().contains("unix://"), "{}", pw.log());
}

/// A stopped receiver with a full backlog: every batch but the last comes
/// back full, so the parse worker takes them. Nothing may be lost, and the
/// short last batch (16 successes after the failures) must not overtake
/// them: a 20-attempt window then ends on 4 failures and those 16.
///
/// 19 full batches need about 1.6 MB of receive buffer; poolwatch asks for
/// 8 MiB, which the kernel grants up to `net.core.rmem_max` without
/// CAP_NET_ADMIN. With less, the backlog shrinks to what fits (said on
/// stderr) and the same checks hold.
#[test]
fn a_backlog_drains_exactly_and_in_order() {
    backlog_drains_exactly_and_in_order("a_backlog_drains_exactly_and_in_order", &[]);
}

/// The same in 208 KiB, what an unprivileged user gets from Debian's
/// default `net.core.rmem_max`: a few full batches and the short one, on
/// every machine, root or not.
#[test]
fn a_backlog_in_a_small_receive_buffer_drains_exactly_and_in_order() {
    backlog_drains_exactly_and_in_order(
        "a_backlog_in_a_small_receive_buffer_drains_exactly_and_in_order",
        &["--recv-buffer", "208KiB"],
    );
}

fn backlog_drains_exactly_and_in_order(name: &str, args: &[&str]) {
    const BATCH: usize = 64;
    const WANTED_FULL: usize = 19;
    const TAIL: usize = 16;
    let mut all = vec!["--window-size", "20"];
    all.extend_from_slice(args);
    let pw = Poolwatch::start(&all);
    pw.send(&[nginx(&access(200, "200", BLUE, "blue"))]);
    pw.wait_for_datagrams(1);
    let fail = nginx(&access(500, "500", BLUE, "blue"));
    let success = nginx(&access(200, "200", BLUE, "blue"));
    let pid = pw.pid() as libc::pid_t;
    // SAFETY: signalling our own child, which is running.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    // kill(2) returns before every thread has stopped: a receive thread
    // still running would take part of the backlog.
    assert!(
        common::wait_until(common::PATIENCE, || all_threads_stopped(pw.pid())),
        "poolwatch did not stop"
    );

    // What the kernel charges per datagram, measured on the first one; it
    // drops beyond twice the granted size (`receive_budget`), so fill at
    // most three quarters of that.
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.connect(&pw.udp).unwrap();
    let before = pw.receive_queue();
    tx.send(&fail).unwrap();
    let mut charge = 0;
    assert!(common::wait_until(common::PATIENCE, || {
        charge = pw.receive_queue().saturating_sub(before);
        charge > 0
    }));
    let fits = pw.receive_budget() * 2 * 3 / 4 / charge;
    let full = WANTED_FULL.min(fits.saturating_sub(TAIL) / BATCH);
    assert!(
        full >= 1,
        "a receive buffer of {} bytes holds {fits} datagrams of {charge} bytes; this check \
         needs {} (one full batch and the short one): raise net.core.rmem_max",
        pw.receive_budget(),
        BATCH + TAIL
    );
    if full < WANTED_FULL {
        common::notice(&format!(
            "{name}: poolwatch's receive buffer ({} bytes granted; without CAP_NET_ADMIN \
             the kernel caps it at net.core.rmem_max) holds {fits} datagrams: the backlog is \
             {full} full batches instead of {WANTED_FULL}",
            pw.receive_budget()
        ));
    }
    for _ in 1..full * BATCH {
        tx.send(&fail).unwrap();
    }
    for _ in 0..TAIL {
        tx.send(&success).unwrap();
    }
    // SAFETY: as above; the child is stopped.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let m = pw.wait_for_datagrams((1 + full * BATCH + TAIL) as u64);
    assert_eq!(m.get("poolwatch_ingest_kernel_drops_total"), 0.0);
    assert_eq!(
        m.get("poolwatch_requests_total{pool=\"blue\",status_class=\"5xx\"}"),
        (full * BATCH) as f64
    );
    assert_eq!(
        m.get("poolwatch_requests_total{pool=\"blue\",status_class=\"2xx\"}"),
        (1 + TAIL) as f64
    );
    let blue = pw.pool_state("blue");
    assert_eq!(blue["count_window"]["requests"], 20, "{blue}");
    assert_eq!(blue["count_window"]["failures"], 4, "{blue}");
}

/// Whether every thread of process `pid` is in the stopped state (`T` in
/// `/proc/PID/task/*/stat`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            // The state follows the command name, which is in parentheses.
            stat.rfind(')')
                .and_then(|end| stat[end + 1..].split_whitespace().next())
                == Some("T")
        })
    })
}
