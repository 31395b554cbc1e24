//! The status page at `/`, in Debian's real headless Chromium against the
//! real binary fed over UDP: it shows both pools and an open failover,
//! then the failover ended; its maintenance control, clicked with the
//! mouse, changes what `/maintenance` says; screenshots at a phone's and a
//! laptop's width are written under `target/tmp/status-page/` and are not
//! blank; and the page never asks any other host for anything.
//!
//! `UPDATE_SCREENSHOT=1` also writes the laptop-sized screenshot taken
//! during the failover to `docs/status-page.png`, the one README shows.

mod common;

use common::chromium::{Chromium, looks_rendered, screenshot_dir};
use common::poolwatch::Poolwatch;
use common::{PATIENCE, http_request, wait_until};

const BLUE: &str = "127.0.0.1:3001";
const GREEN: &str = "127.0.0.1:3002";

/// One access line, as nginx logs it.
fn line(status: u16, ups: &str, addrs: &str, pool: &str, ms: u32) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let time = poolwatch::logtime::format_rfc3339(now).replace('Z', "+00:00");
    let secs = f64::from(ms) / 1000.0;
    format!(
        r#"<190>Nov  5 09:07:03 web nginx: {{"time":"{time}","remote_addr":"10.0.0.9","request":"GET /version HTTP/1.1","method":"GET","uri":"/version","status":{status},"body_bytes_sent":57,"request_time":{secs},"upstream_status":"{ups}","upstream_addr":"{addrs}","upstream_response_time":"{secs}","pool":"{pool}","release":"{pool}-v1","request_id":"0123456789abcdef0123456789abcdef","http_user_agent":"curl/8.0"}}"#
    )
    .into_bytes()
}

fn ok(pool: &str, ms: u32) -> Vec<u8> {
    let addr = if pool == "blue" { BLUE } else { GREEN };
    line(200, "200", addr, pool, ms)
}

/// Blue failed, nginx retried on green, the client got a 200.
fn rescued() -> Vec<u8> {
    line(200, "500, 200", &format!("{BLUE}, {GREEN}"), "green", 40)
}

fn start(extra: &[(&'static str, &'static str)]) -> Poolwatch {
    let mut env = vec![
        ("POOL_ADDRS", "blue=127.0.0.1:3001,green=127.0.0.1:3002"),
        ("RECOVERY_CONFIRM_SEC", "1"),
        ("ERROR_RATE_MIN_REQUESTS", "100000"),
    ];
    env.extend_from_slice(extra);
    Poolwatch::start_with_env(&[], &env)
}

fn open_incidents(pw: &Poolwatch) -> Vec<serde_json::Value> {
    pw.state()["alerting"]["open_incidents"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn maintenance_on(pw: &Poolwatch) -> bool {
    let (status, _, body) = http_request("GET", &pw.http, "/maintenance", b"");
    assert_eq!(status, 200, "{body}");
    let m: serde_json::Value = serde_json::from_str(&body).unwrap();
    m["on"] == true
}

/// Every request the page made went to poolwatch itself.
fn only_own_host(c: &Chromium, origin: &str) {
    assert!(!c.requests.is_empty(), "no request recorded");
    for url in &c.requests {
        assert!(
            url.starts_with(origin) || url.starts_with("data:"),
            "the page asked another host: {url} (all: {:?})",
            c.requests
        );
    }
}

/// Waits until poolwatch's window clock has moved on by a second.
fn next_second(pw: &Poolwatch) {
    let now = pw.state()["uptime_seconds"].as_u64().unwrap();
    assert!(wait_until(PATIENCE, || pw.state()["uptime_seconds"]
        .as_u64()
        .unwrap()
        > now));
}

/// For the README's screenshot only: traffic spread over half a minute,
/// so that the charts show a history and not one spike.
fn history_for_the_screenshot(pw: &Poolwatch) {
    for s in 0..20u32 {
        let n = 25 + (s * 7) % 15;
        let lines: Vec<Vec<u8>> = (0..n).map(|i| ok("blue", 4 + (i * s) % 23)).collect();
        pw.send(&lines);
        next_second(pw);
    }
    for s in 0..8u32 {
        let mut lines = vec![rescued(); 4 + (s % 3) as usize];
        lines.extend((0..24 + s % 5).map(|i| ok("green", 9 + i % 17)));
        pw.send(&lines);
        next_second(pw);
    }
}

#[test]
fn page_shows_the_failover_then_its_end_and_toggles_maintenance() {
    let pw = start(&[]);
    let for_readme = std::env::var_os("UPDATE_SCREENSHOT").is_some();
    // Healthy blue for a while, with a few slow requests for the quantiles.
    let mut healthy: Vec<Vec<u8>> = (0..40).map(|i| ok("blue", 5 + i % 7)).collect();
    healthy.push(ok("blue", 180));
    pw.send(&healthy);
    pw.wait_judged();
    if for_readme {
        history_for_the_screenshot(&pw);
    }
    // Blue fails; nginx hides it by retrying on green, which serves.
    let mut failing = vec![rescued(); 8];
    failing.extend((0..30).map(|i| ok("green", 8 + i % 5)));
    pw.send(&failing);
    pw.wait_judged();
    assert!(
        wait_until(PATIENCE, || open_incidents(&pw)
            .iter()
            .any(|i| i["kind"] == "failover")),
        "no failover opened: {}",
        pw.state()
    );

    // A page opened mid-incident.
    let origin = format!("http://{}/", pw.http);
    let mut c = Chromium::open(&origin, 1280, 900);
    let shown = c.wait_for(
        "document.querySelector('#pools article[data-pool=\"blue\"]') && \
         document.querySelector('#pools article[data-pool=\"green\"]') && \
         document.querySelector('#incidents article[data-kind=\"failover\"]')",
    );
    assert!(
        shown,
        "page never showed both pools and the failover: {}",
        c.text("body")
    );
    let blue = c.text("#pools article[data-pool=\"blue\"]");
    let green = c.text("#pools article[data-pool=\"green\"]");
    // Markers are words, not colours alone.
    assert!(
        blue.contains("primary") && blue.contains("failing"),
        "{blue}"
    );
    assert!(
        green.contains("serving") && green.contains("healthy"),
        "{green}"
    );
    assert!(blue.contains("p50 / p95 / p99"), "{blue}");
    // The chart was drawn from the server's series: blue's requests are
    // in it although the page was not open when they came.
    let drawn = c.eval(
        "Math.max(...document.querySelector('#pools article[data-pool=\"blue\"] svg polyline.req')\
         .getAttribute('points').split(' ').map(p => 80 - parseFloat(p.split(',')[1])))",
    );
    assert!(
        drawn.as_f64().unwrap_or(0.0) > 10.0,
        "blue's chart is flat: {drawn}"
    );
    let incident = c.text("#incidents");
    assert!(incident.contains("Failover: blue"), "{incident}");
    assert!(incident.contains("Open for"), "{incident}");
    assert!(
        c.wait_for("document.querySelector('#retries').innerText.includes('blue → green')"),
        "{}",
        c.text("#retries")
    );

    // Rates need two looks at the counters: the next event has them.
    assert!(
        c.wait_for("/^[0-9.]+$/.test(document.querySelector('#ingest dd').innerText)"),
        "no datagram rate: {}",
        c.text("#ingest")
    );
    let retries = c.text("#retries");
    assert!(
        retries.contains("since start") && !retries.contains("–/s"),
        "{retries}"
    );

    // Screenshots for inspection, not blank.
    let dir = screenshot_dir();
    let mut shots = Vec::new();
    for (w, h) in [(390, 844), (1280, 900)] {
        let png = c.screenshot(w, h);
        let path = dir.join(format!("failover-{w}x{h}.png"));
        std::fs::write(&path, &png).unwrap();
        shots.push((w, h, png, path));
    }
    // At a phone's width nothing is wider than the screen.
    c.resize(390, 844);
    let overflow = c.eval("document.documentElement.scrollWidth");
    assert!(
        overflow.as_u64().unwrap_or(9999) <= 390,
        "page is {overflow} px wide at 390"
    );
    if for_readme {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join("status-page.png"), &shots[1].2).unwrap();
    }
    only_own_host(&c, &origin);
    {
        let mut blank = Chromium::open("about:blank", 1280, 900);
        for (w, h, png, path) in &shots {
            let empty = blank.screenshot(*w, *h);
            assert!(
                looks_rendered(png, &empty),
                "{} looks blank: {} bytes, an empty page {}",
                path.display(),
                png.len(),
                empty.len()
            );
        }
    }

    // Blue serves again, healthy, long enough: the failover ends.
    c.resize(1280, 900);
    assert!(
        wait_until(PATIENCE, || {
            pw.send(&vec![ok("blue", 6); 5]);
            open_incidents(&pw).is_empty()
        }),
        "the failover never ended: {}",
        pw.state()
    );
    let ended = c.wait_for(
        "document.querySelector('#no-incidents') && \
         document.querySelector('#recent').innerText.includes('Recovered: blue is serving again')",
    );
    assert!(ended, "page never showed the end: {}", c.text("body"));
    let incidents = c.text("#incidents");
    assert!(incidents.contains("No open incidents"), "{incidents}");
    // stdout took every notification at once.
    assert!(
        c.wait_for("document.querySelector('#recent').innerText.includes('sent, delivered')"),
        "{}",
        c.text("#recent")
    );
    assert!(
        incidents.contains("Last ended: Recovered: blue"),
        "{incidents}"
    );
    let png = c.screenshot(1280, 900);
    std::fs::write(dir.join("recovered-1280x900.png"), png).unwrap();

    // Maintenance, from the page's own control, clicked.
    assert!(!maintenance_on(&pw));
    assert!(c.wait_for("!document.querySelector('#maint-toggle').disabled"));
    assert_eq!(c.text("#maint-toggle"), "Turn maintenance on");
    c.click("#maint-reason");
    c.type_text("deploying v2");
    c.click("#maint-toggle");
    assert!(
        wait_until(PATIENCE, || maintenance_on(&pw)),
        "the click did not turn maintenance on: {}",
        c.text("#maint-msg")
    );
    let (_, _, body) = http_request("GET", &pw.http, "/maintenance", b"");
    let m: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(m["reason"], "deploying v2", "{m}");
    assert_eq!(m["by"], "status page", "{m}");
    assert!(m["until"].is_string(), "the default duration was sent: {m}");
    assert!(c.wait_for("document.querySelector('#maint-state').innerText.startsWith('On since')"));
    assert_eq!(c.text("#maint-toggle"), "Turn maintenance off");
    c.click("#maint-toggle");
    assert!(
        wait_until(PATIENCE, || !maintenance_on(&pw)),
        "the click did not turn maintenance off: {}",
        c.text("#maint-msg")
    );
    assert!(c.wait_for("document.querySelector('#maint-state').innerText === 'Off'"));
    only_own_host(&c, &origin);
    assert!(
        c.errors.is_empty(),
        "the page reported errors: {:?}",
        c.errors
    );
}

#[test]
fn with_an_admin_token_the_page_asks_for_it_and_keeps_it_in_memory_only() {
    let pw = start(&[("ADMIN_TOKEN", "s3cret-token")]);
    pw.send(&vec![ok("blue", 5); 10]);
    let origin = format!("http://{}/", pw.http);
    let mut c = Chromium::open(&origin, 390, 844);
    assert!(c.wait_for("!document.querySelector('#maint-toggle').disabled"));
    // The field is offered, empty; a wrong token is refused and said so.
    assert!(c.wait_for("!document.querySelector('#token-row').hidden"));
    c.click("#maint-token");
    c.type_text("wrong");
    c.click("#maint-toggle");
    assert!(c.wait_for("document.querySelector('#maint-msg').innerText.includes('401')"));
    assert!(!maintenance_on(&pw));
    c.click("#maint-token");
    c.type_text("s3cret-token");
    c.click("#maint-toggle");
    assert!(
        wait_until(PATIENCE, || maintenance_on(&pw)),
        "{}",
        c.text("#maint-msg")
    );
    // Off again with the token it remembers for this tab.
    assert!(
        c.wait_for("document.querySelector('#maint-toggle').innerText === 'Turn maintenance off'")
    );
    c.click("#maint-toggle");
    assert!(
        wait_until(PATIENCE, || !maintenance_on(&pw)),
        "{}",
        c.text("#maint-msg")
    );
    let stored = c.eval(
        "JSON.stringify(Object.assign({}, localStorage)) + JSON.stringify(Object.assign({}, sessionStorage)) + document.cookie",
    );
    assert!(
        !stored.as_str().unwrap_or_default().contains("s3cret"),
        "the token was stored: {stored}"
    );
    only_own_host(&c, &origin);
}

/// Acceptance: nothing in the served HTML points at another host.
#[test]
fn the_served_page_references_no_other_host() {
    let pw = start(&[]);
    let (status, headers, html) = http_request("GET", &pw.http, "/", b"");
    assert_eq!(status, 200);
    assert!(
        common::header(&headers, "content-type").is_some_and(|v| v.starts_with("text/html")),
        "{headers:?}"
    );
    let csp = common::header(&headers, "content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    assert!(html.len() < 64 * 1024, "the page is {} bytes", html.len());
    assert!(
        html.contains("<script>") && html.contains("<style>"),
        "inline assets"
    );
    let lower = html.to_ascii_lowercase();
    // Whatever a browser would fetch: attributes that load or submit,
    // CSS url() and @import, and the script's own fetches.
    for attr in ["src=", "href=", "action=", "srcset=", "poster=", "data="] {
        for (i, _) in lower.match_indices(attr) {
            let value = lower[i + attr.len()..].trim_start_matches(['"', '\'']);
            assert!(
                !value.starts_with("http:")
                    && !value.starts_with("https:")
                    && !value.starts_with("//"),
                "{attr} points elsewhere: {}",
                &html[i..(i + 80).min(html.len())]
            );
        }
    }
    for css in ["url(", "@import"] {
        for (i, _) in lower.match_indices(css) {
            let rest = &lower[i..(i + 60).min(lower.len())];
            assert!(
                !rest.contains("http:") && !rest.contains("https:") && !rest.contains("//"),
                "{rest}"
            );
        }
    }
    for call in [
        "fetch(",
        "eventsource(",
        "xmlhttprequest",
        "websocket(",
        "import(",
    ] {
        for (i, _) in lower.match_indices(call) {
            let rest = &lower[i..(i + 40).min(lower.len())];
            assert!(!rest.contains("http") && !rest.contains("//"), "{rest}");
        }
    }
}

#[test]
fn notifications_show_whether_they_were_delivered() {
    // A webhook nobody listens on: every attempt is refused, and delivery
    // gives up after ALERT_RETRY_FOR_SEC.
    let hook = format!("http://127.0.0.1:{}/hook", common::free_port_tcp());
    let pw = Poolwatch::start_with_env(
        &[],
        &[
            ("POOL_ADDRS", "blue=127.0.0.1:3001,green=127.0.0.1:3002"),
            ("ERROR_RATE_MIN_REQUESTS", "100000"),
            ("SLACK_WEBHOOK_URL", hook.as_str()),
            ("ALERT_RETRY_FOR_SEC", "1"),
        ],
    );
    pw.send(&vec![ok("blue", 5); 20]);
    pw.wait_judged();
    pw.send(&[rescued()]);
    let recent = |pw: &Poolwatch| pw.state()["alerting"]["recent"][0].clone();
    assert!(
        wait_until(PATIENCE, || recent(&pw)["delivered"] == false),
        "{}",
        recent(&pw)
    );
    assert_eq!(recent(&pw)["outcome"], "sent");
    let mut c = Chromium::open(&format!("http://{}/", pw.http), 1280, 900);
    assert!(
        c.wait_for("document.querySelector('#recent li[data-outcome=\"failed\"]')"),
        "{}",
        c.text("#recent")
    );
    let shown = c.text("#recent");
    assert!(
        shown.contains("Failover: blue → green") && shown.contains("failed"),
        "{shown}"
    );
}
