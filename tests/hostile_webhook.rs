//! A webhook that works against poolwatch, driven against the real binary:
//! it echoes its secret URL in an error page so that the secret straddles
//! the 300-byte cut of the logged excerpt, redirects, serves TLS with a
//! certificate nobody signed, or holds one kind of notification open while
//! a critical one must still go through.
//!
//! Secrets must not appear even in part; configuration errors (a redirect,
//! a rejected certificate) fail at once with a reason naming the host,
//! never the path; and no notification waits for another incident's.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::poolwatch::{Poolwatch, poolwatch_bin};
use common::wait_until;
use common::webhook::{Mode, Webhook};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The webhook's secret: the last segment of its path.
const TOKEN: &str = "T0K3NqZ8rW4vB7nY2mLs9PdE";
const PATH: &str = "/services/T000/B000/T0K3NqZ8rW4vB7nY2mLs9PdE";

const BLUE: &str = "127.0.0.1:3001";
const GREEN: &str = "127.0.0.1:3002";

/// Generous bounds on waiting for something that must happen; they only
/// bound a failure.
const WAIT: Duration = Duration::from_secs(30);

fn line(status: u16, ups: &str, addrs: &str, pool: &str) -> Vec<u8> {
    format!(
        r#"<190>Nov  5 09:07:03 web nginx: {{"status":{status},"request_time":0.004,"upstream_status":"{ups}","upstream_addr":"{addrs}","pool":"{pool}","release":"{pool}-1"}}"#
    )
    .into_bytes()
}

fn healthy_then_failover(pw: &Poolwatch) {
    pw.send(&vec![line(200, "200", BLUE, "blue"); 30]);
    pw.send(&[line(200, "500, 200", &format!("{BLUE}, {GREEN}"), "green")]);
}

fn start(url: &str, extra: &[(&str, &str)]) -> Poolwatch {
    let mut env = vec![
        ("SLACK_WEBHOOK_URL", url),
        ("POOL_ADDRS", "blue=127.0.0.1:3001,green=127.0.0.1:3002"),
        ("ERROR_RATE_MIN_REQUESTS", "100000"),
    ];
    env.extend_from_slice(extra);
    Poolwatch::start_with_env(&[], &env)
}

/// Run `poolwatch alert-test` against `url`, expect it to fail, and return
/// what it printed on stderr.
fn failed_alert_test(url: &str) -> String {
    let out = Command::new(poolwatch_bin())
        .arg("alert-test")
        .env_clear()
        .env("SLACK_WEBHOOK_URL", url)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every part of the token of five characters or more that `text` holds.
fn token_parts(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for n in 5..=TOKEN.len() {
        for start in 0..=TOKEN.len() - n {
            let part = &TOKEN[start..start + n];
            if text.contains(part) {
                found.push(part.to_string());
            }
        }
    }
    found
}

fn failed(pw: &Poolwatch) -> f64 {
    pw.metrics().sum(
        "poolwatch_alerts_total",
        &["sink=\"slack\"", "kind=\"failover\"", "outcome=\"failed\""],
    )
}

/// Makes a failover whose notification the webhook fails for good, and
/// returns poolwatch's log and the line that says why.
fn failover_fails(pw: &Poolwatch) -> (String, String) {
    healthy_then_failover(pw);
    assert!(wait_until(WAIT, || failed(pw) == 1.0), "{}", pw.log());
    let log = pw.log();
    let reason = log
        .lines()
        .find(|l| l.contains("alert not delivered"))
        .unwrap_or_else(|| panic!("no reason logged:\n{log}"))
        .to_string();
    (log, reason)
}

#[test]
fn an_echoed_secret_never_appears_even_in_part() {
    for pad in [270, 285, 299] {
        let hook = Webhook::start_at(PATH);
        // The token starts before the 300-byte cut and ends after it.
        hook.set_mode(Mode::Echo { status: 404, pad });
        let url = hook.url();
        let pw = start(&url, &[]);
        let (log, reason) = failover_fails(&pw);
        assert!(reason.contains("Slack answered 404"), "{reason}");
        assert_eq!(token_parts(&log), Vec::<String>::new(), "{log}");
        assert!(!log.contains("/services/T000"), "{log}");

        // `alert-test` prints its reason on stderr.
        let err = failed_alert_test(&url);
        assert!(err.contains("Slack answered 404"), "{err}");
        assert_eq!(token_parts(&err), Vec::<String>::new(), "{err}");
    }
}

#[test]
fn a_redirect_is_a_configuration_error_named_by_host() {
    let hook = Webhook::start_at(PATH);
    hook.set_mode(Mode::Redirect {
        status: 302,
        location: "https://elsewhere.test/services/T000/B000/T0K3NqZ8rW4vB7nY2mLs9PdE",
    });
    let pw = start(&hook.url(), &[]);
    let (log, reason) = failover_fails(&pw);
    for want in [
        "configuration error",
        "302",
        "redirect",
        "elsewhere.test",
        "127.0.0.1",
    ] {
        assert!(reason.contains(want), "{want} missing: {reason}");
    }
    assert_eq!(token_parts(&log), Vec::<String>::new(), "{log}");
    assert!(!log.contains("/services/"), "{log}");
    // Failed at once: one request, no retry.
    assert_eq!(hook.received().len(), 1, "{:?}", hook.received());
    assert!(!log.contains("retrying"), "{log}");
}

/// A TLS server with the self-signed certificate in tests/fixtures/tls,
/// counting the connections it was offered.
struct SelfSignedTls {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl SelfSignedTls {
    fn start() -> SelfSignedTls {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(format!("{dir}/cert.pem"))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_file(format!("{dir}/key.pem")).unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                counted.fetch_add(1, Ordering::SeqCst);
                let config = config.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                    let mut conn = rustls::ServerConnection::new(config).unwrap();
                    // The client gives up during the handshake; whatever
                    // it sent is answered, then the stream is dropped.
                    while conn.complete_io(&mut stream).is_ok() {
                        if !conn.is_handshaking() {
                            let mut buf = [0u8; 1024];
                            let _ = conn.reader().read(&mut buf);
                            let _ = conn.writer().write_all(b"HTTP/1.1 200 OK\r\n\r\n");
                            let _ = conn.complete_io(&mut stream);
                            return;
                        }
                    }
                });
            }
        });
        SelfSignedTls { port, connections }
    }
}

#[test]
fn an_untrusted_certificate_fails_at_once_with_its_host() {
    let tls = SelfSignedTls::start();
    let url = format!("https://127.0.0.1:{}{PATH}", tls.port);
    // The default retry budget is ten minutes: a retried failure would
    // still be retrying when this test gives up.
    let pw = start(&url, &[]);
    let (log, reason) = failover_fails(&pw);
    for want in [
        "configuration error",
        "TLS certificate",
        "127.0.0.1",
        "rejected",
    ] {
        assert!(reason.contains(want), "{want} missing: {reason}");
    }
    assert!(!log.contains("retrying"), "{log}");
    assert_eq!(tls.connections.load(Ordering::SeqCst), 1);
    assert_eq!(token_parts(&log), Vec::<String>::new(), "{log}");

    // `alert-test` says so too, at once.
    let err = failed_alert_test(&url);
    assert!(err.contains("TLS certificate"), "{err}");
    assert_eq!(tls.connections.load(Ordering::SeqCst), 2);
}

#[test]
fn a_hung_notification_never_delays_a_critical_one() {
    let hook = Webhook::start_at(PATH);
    // Every failover notification is held open; the rest are answered.
    hook.hang_when(Some("Failover"));
    // Each attempt at the failover ends after 2 s; its retries go on far
    // longer than this test waits (ALERT_RETRY_FOR_SEC's default, 600 s).
    let pw = start(&hook.url(), &[("ALERT_TIMEOUT_SEC", "2")]);
    healthy_then_failover(&pw);
    hook.wait_for(1, WAIT);
    // Now users see errors: nginx found no live upstream.
    pw.send(&[line(502, "502", "backend", "")]);
    let got = hook.wait_for_accepted(1, WAIT);
    let accepted: Vec<&serde_json::Value> = got
        .iter()
        .filter(|r| r.answered == 200)
        .map(|r| &r.body)
        .collect();
    let text = accepted[0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("Users are seeing errors"), "{text}");
    // Delivered while the failover was still outstanding: none of its
    // attempts answered, and it is neither sent nor given up.
    let failovers: Vec<_> = got.iter().filter(|r| r.raw.contains("Failover")).collect();
    assert!(!failovers.is_empty(), "{got:?}");
    assert!(failovers.iter().all(|r| r.answered == 0), "{got:?}");
    let m = pw.metrics();
    for outcome in ["sent", "failed"] {
        assert_eq!(
            m.sum(
                "poolwatch_alerts_total",
                &[
                    "sink=\"slack\"",
                    "kind=\"failover\"",
                    &format!("outcome=\"{outcome}\""),
                ],
            ),
            0.0,
            "{m:?}"
        );
    }
    hook.hang_when(None);
}
