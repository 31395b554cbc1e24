//! Realistic nginx access-log datagrams, for load runs and benchmarks.
//!
//! Each datagram is what nginx sends with the shipped `poolwatch` log format
//! (`nginx/poolwatch-log-format.conf`) and `access_log syslog:…,tag=nginx`:
//! an RFC 3164 header with a space-padded day, then the JSON object with the
//! format's fields in its order, numbers bare and times with three decimals.
//! The traffic is made up but shaped like a small web shop behind a blue/green
//! pair (routes, clients, statuses, log-normal latencies, browser user
//! agents), so that per-line costs measured on it hold for real logs: a
//! typical line is about 490 bytes.
//!
//! Everything is drawn from a seeded generator, so a seed names a data set;
//! only the timestamp (local time when the generator is made) and the
//! hostname differ between runs and machines.
//!
//! Hostile traffic (names never seen before, to show that memory does not
//! grow with them) is made from [`Template`]s: a line is rendered once with
//! fixed-width placeholders, and a sender stamps a counter into them just
//! before each send, so millions of unique lines cost no formatting.

use std::fmt::Write as _;

use fastrand::Rng;

/// Blue's server, as nginx logs it in `$upstream_addr`.
pub const BLUE_ADDR: &str = "172.18.0.3:3000";
/// Green's server (the backup).
pub const GREEN_ADDR: &str = "172.18.0.4:3000";
/// `X-Release-Id` of blue.
pub const BLUE_RELEASE: &str = "blue-2026.11.1";
/// `X-Release-Id` of green.
pub const GREEN_RELEASE: &str = "green-2026.11.2";
/// Share of a failover run served normally before blue starts failing.
pub const FAILOVER_AT: f64 = 0.1;
/// Share of requests in the errors scenario that get a 5xx from blue.
pub const ERROR_SHARE: f64 = 0.05;

/// What the pools are doing while the lines are logged.
#[derive(clap::ValueEnum, serde::Serialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Blue serves everything: some 3xx, 4xx and client aborts, no 5xx.
    #[default]
    Steady,
    /// Steady for the first 10%, then blue fails every request (500, 502 or
    /// 504) and nginx retries it on green, which answers.
    Failover,
    /// Blue serves everything and answers about 5% of requests with a 500 or
    /// 503 that nginx does not retry (they are POSTs).
    Errors,
}

impl Scenario {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Steady => "steady",
            Scenario::Failover => "failover",
            Scenario::Errors => "errors",
        }
    }
}

/// `n` datagrams telling the whole story of `scenario`, in order: for
/// failover, the first [`FAILOVER_AT`] of them are from before blue failed.
pub fn generate(scenario: Scenario, n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut g = Generator::new(scenario, seed);
    (0..n).map(|i| g.line(i as f64 / n as f64)).collect()
}

/// A seeded source of datagrams for one scenario.
pub struct Generator {
    scenario: Scenario,
    rng: Rng,
    /// `<190>Nov  5 09:07:03 HOST nginx: `
    header: String,
    /// `$time_iso8601`
    time: String,
    clients: Vec<String>,
}

impl Generator {
    /// A generator stamped with the current local time and this host's name.
    pub fn new(scenario: Scenario, seed: u64) -> Generator {
        Generator::with_clock(scenario, seed, &Clock::now(), &hostname())
    }

    /// A generator whose lines carry the given time and hostname.
    pub fn with_clock(scenario: Scenario, seed: u64, clock: &Clock, host: &str) -> Generator {
        let mut rng = Rng::with_seed(seed);
        // Documentation ranges (RFC 5737): realistic-looking, nobody's.
        let nets = ["192.0.2", "198.51.100", "203.0.113"];
        let clients = (0..512)
            .map(|_| format!("{}.{}", nets[rng.usize(..nets.len())], rng.u8(1..255)))
            .collect();
        Generator {
            scenario,
            rng,
            // Facility local7, severity info: nginx's default for access_log.
            header: format!("<190>{} {host} nginx: ", clock.bsd),
            time: clock.iso8601.clone(),
            clients,
        }
    }

    /// One datagram. `progress` is where the line falls in the scenario's
    /// story, from 0.0 (start) to 1.0 (end).
    pub fn line(&mut self, progress: f64) -> Vec<u8> {
        let r = self.request(progress);
        self.render(&r).into_bytes()
    }

    /// One datagram whose remote address, URI, user agent, pool, release,
    /// request id and upstream addresses are placeholders, made unique by
    /// [`Template::stamp`]. Pools are never `blue` or `green`.
    pub fn template(&mut self, progress: f64) -> Template {
        let mut r = self.request(progress);
        r.remote_addr = format!("2001:db8:{SLOT_V6}::1");
        r.uri = format!("/h/{SLOT}{}", r.uri);
        r.user_agent = format!("{} hostile/{SLOT}", r.user_agent);
        r.request_id.truncate(16);
        r.request_id.push_str(SLOT);
        if !r.pool.is_empty() {
            r.pool = format!("p{SLOT}");
            r.release = format!("p{SLOT}-2026.11.1");
        }
        let tries = r.upstream_addr.split(", ").count();
        r.upstream_addr = (1..=tries)
            .map(|k| format!("[2001:db8:ffff:{SLOT_V6}::{k}]:3000"))
            .collect::<Vec<_>>()
            .join(", ");
        Template::new(self.render(&r).into_bytes())
    }

    fn request(&mut self, progress: f64) -> Request {
        let rng = &mut self.rng;
        let mut r = if self.scenario == Scenario::Errors && rng.f64() < ERROR_SHARE {
            error_request(rng)
        } else {
            normal_request(rng)
        };
        r.remote_addr = self.clients[rng.usize(..self.clients.len())].clone();
        r.user_agent = pick_weighted(rng, USER_AGENTS).to_string();
        r.request_id = (0..2).map(|_| format!("{:016x}", rng.u64(..))).collect();
        if self.scenario == Scenario::Failover && progress >= FAILOVER_AT {
            fail_over(rng, &mut r);
        }
        r
    }

    fn render(&self, r: &Request) -> String {
        let mut s = String::with_capacity(640);
        s.push_str(&self.header);
        s.push_str("{\"time\":\"");
        s.push_str(&self.time);
        s.push_str("\",\"remote_addr\":");
        json_str(&mut s, &r.remote_addr);
        s.push_str(",\"request\":");
        json_str(&mut s, &format!("{} {} HTTP/1.1", r.method, r.uri));
        s.push_str(",\"method\":");
        json_str(&mut s, r.method);
        s.push_str(",\"uri\":");
        json_str(&mut s, &r.uri);
        let _ = write!(
            s,
            ",\"status\":{},\"body_bytes_sent\":{},\"request_time\":{}",
            r.status,
            r.body_bytes_sent,
            seconds(r.request_ms)
        );
        s.push_str(",\"upstream_status\":");
        json_str(&mut s, &r.upstream_status);
        s.push_str(",\"upstream_addr\":");
        json_str(&mut s, &r.upstream_addr);
        s.push_str(",\"upstream_response_time\":");
        json_str(&mut s, &r.upstream_response_time);
        s.push_str(",\"pool\":");
        json_str(&mut s, &r.pool);
        s.push_str(",\"release\":");
        json_str(&mut s, &r.release);
        s.push_str(",\"request_id\":");
        json_str(&mut s, &r.request_id);
        s.push_str(",\"http_user_agent\":");
        json_str(&mut s, &r.user_agent);
        s.push('}');
        s
    }
}

/// A line rendered once, with fixed-width slots that [`Template::stamp`]
/// fills with a counter.
#[derive(Debug, Clone)]
pub struct Template {
    bytes: Vec<u8>,
    /// Positions of the slot digits, [`SLOT_DIGITS`] per slot, most
    /// significant first.
    digits: Vec<u32>,
}

/// Hex digits in each slot: 64 bits, so a counter never wraps in practice.
pub const SLOT_DIGITS: usize = 16;

const MARK: u8 = b'@';
const SLOT: &str = "@@@@@@@@@@@@@@@@";
/// A slot spread over four IPv6 groups.
const SLOT_V6: &str = "@@@@:@@@@:@@@@:@@@@";

impl Template {
    fn new(mut bytes: Vec<u8>) -> Template {
        let digits: Vec<u32> = bytes
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == MARK)
            .map(|(i, _)| i as u32)
            .collect();
        debug_assert_eq!(digits.len() % SLOT_DIGITS, 0);
        for &i in &digits {
            bytes[i as usize] = b'0';
        }
        Template { bytes, digits }
    }

    /// The datagram as last stamped.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Write `value` as 16 hex digits into every slot: distinct values give
    /// lines that share no address, URI, agent or pool name. Costs a few
    /// hundred byte stores, no formatting or allocation.
    pub fn stamp(&mut self, value: u64) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; SLOT_DIGITS];
        for (k, h) in hex.iter_mut().enumerate() {
            *h = HEX[((value >> (4 * (SLOT_DIGITS - 1 - k))) & 0xf) as usize];
        }
        for slot in self.digits.chunks_exact(SLOT_DIGITS) {
            for (&at, &h) in slot.iter().zip(&hex) {
                self.bytes[at as usize] = h;
            }
        }
    }
}

/// Local time in the two layouts nginx logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clock {
    /// `Nov  5 09:07:03`: the syslog header.
    pub bsd: String,
    /// `2026-11-05T09:07:03+00:00`: `$time_iso8601`.
    pub iso8601: String,
}

impl Clock {
    /// The current local time.
    pub fn now() -> Clock {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()) as libc::time_t;
        // SAFETY: an all-zero tm is valid output space, and localtime_r
        // only writes into it.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are to live locals.
        if unsafe { libc::localtime_r(&now, &mut tm) }.is_null() {
            return Clock::from_parts(1970, 1, 1, 0, 0, 0, 0);
        }
        Clock::from_parts(
            tm.tm_year + 1900,
            tm.tm_mon as u32 + 1,
            tm.tm_mday as u32,
            tm.tm_hour as u32,
            tm.tm_min as u32,
            tm.tm_sec as u32,
            tm.tm_gmtoff as i32,
        )
    }

    /// A given civil time; `utc_offset` in seconds east of UTC.
    pub fn from_parts(
        year: i32,
        month: u32,
        day: u32,
        hour: u32,
        min: u32,
        sec: u32,
        utc_offset: i32,
    ) -> Clock {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let mon = MONTHS[(month.clamp(1, 12) - 1) as usize];
        let sign = if utc_offset < 0 { '-' } else { '+' };
        let off = utc_offset.unsigned_abs();
        Clock {
            bsd: format!("{mon} {day:>2} {hour:02}:{min:02}:{sec:02}"),
            iso8601: format!(
                "{year:04}-{month:02}-{day:02}T{hour:02}:{min:02}:{sec:02}{sign}{:02}:{:02}",
                off / 3600,
                off % 3600 / 60
            ),
        }
    }
}

/// This host's name as nginx puts it in the header, or `localhost`.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the length passed is the buffer's.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    // A name with a space or ": " would not frame as one header token.
    if rc != 0 || name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        "localhost".to_string()
    } else {
        name
    }
}

/// One request before rendering; times in whole milliseconds as nginx
/// resolves them.
struct Request {
    remote_addr: String,
    method: &'static str,
    uri: String,
    status: u16,
    body_bytes_sent: u64,
    request_ms: u64,
    upstream_status: String,
    upstream_addr: String,
    upstream_response_time: String,
    pool: String,
    release: String,
    request_id: String,
    user_agent: String,
}

impl Request {
    /// Blue answered `status` after `upstream_ms`.
    fn from_blue(method: &'static str, uri: String, status: u16, body: u64, ms: u64) -> Request {
        Request {
            remote_addr: String::new(),
            method,
            uri,
            status,
            body_bytes_sent: body,
            // nginx's clock adds the last bytes to the client, if anything.
            request_ms: ms,
            upstream_status: status.to_string(),
            upstream_addr: BLUE_ADDR.to_string(),
            upstream_response_time: seconds(ms.saturating_sub(1)),
            pool: "blue".to_string(),
            release: BLUE_RELEASE.to_string(),
            request_id: String::new(),
            user_agent: String::new(),
        }
    }
}

struct Route {
    weight: u32,
    method: &'static str,
    uri: fn(&mut Rng) -> String,
    status: u16,
    median_ms: f64,
    body: u64,
}

const SLUGS: &[&str] = &[
    "trail-runner-2",
    "merino-crew-sock",
    "canvas-tote",
    "insulated-bottle-750ml",
    "rain-shell-jacket",
    "wool-beanie",
    "daypack-22l",
    "camp-mug",
];
const WORDS: &[&str] = &[
    "jacket", "socks", "bottle", "tent", "boots", "gloves", "lamp", "stove",
];
const SORTS: &[&str] = &["price", "name", "rating", "new"];

const ROUTES: &[Route] = &[
    Route {
        weight: 200,
        method: "GET",
        uri: |r| {
            if r.u8(..10) < 3 {
                format!("/api/items/{}?x=1", r.u32(1..20000))
            } else {
                format!("/api/items/{}", r.u32(1..20000))
            }
        },
        status: 200,
        median_ms: 12.0,
        body: 640,
    },
    Route {
        weight: 60,
        method: "GET",
        uri: |r| {
            format!(
                "/api/items?page={}&sort={}",
                r.u32(1..40),
                SORTS[r.usize(..SORTS.len())]
            )
        },
        status: 200,
        median_ms: 25.0,
        body: 4800,
    },
    Route {
        weight: 50,
        method: "GET",
        uri: |r| format!("/api/search?q={}&limit=20", WORDS[r.usize(..WORDS.len())]),
        status: 200,
        median_ms: 45.0,
        body: 3900,
    },
    Route {
        weight: 40,
        method: "GET",
        uri: |_| "/api/cart".to_string(),
        status: 200,
        median_ms: 8.0,
        body: 380,
    },
    Route {
        weight: 30,
        method: "POST",
        uri: |_| "/api/cart/items".to_string(),
        status: 201,
        median_ms: 18.0,
        body: 420,
    },
    Route {
        weight: 8,
        method: "PUT",
        uri: |r| format!("/api/cart/items/{}", r.u32(1..20000)),
        status: 200,
        median_ms: 15.0,
        body: 410,
    },
    Route {
        weight: 8,
        method: "DELETE",
        uri: |r| format!("/api/cart/items/{}", r.u32(1..20000)),
        status: 204,
        median_ms: 10.0,
        body: 0,
    },
    Route {
        weight: 20,
        method: "POST",
        uri: |_| "/api/orders".to_string(),
        status: 201,
        median_ms: 60.0,
        body: 950,
    },
    Route {
        weight: 50,
        method: "GET",
        uri: |_| "/".to_string(),
        status: 200,
        median_ms: 6.0,
        body: 5400,
    },
    Route {
        weight: 90,
        method: "GET",
        uri: |r| format!("/products/{}", SLUGS[r.usize(..SLUGS.len())]),
        status: 200,
        median_ms: 20.0,
        body: 14200,
    },
    Route {
        weight: 14,
        method: "GET",
        uri: |r| format!("/products/{}/", SLUGS[r.usize(..SLUGS.len())]),
        status: 301,
        median_ms: 1.0,
        body: 169,
    },
    Route {
        weight: 120,
        method: "GET",
        uri: |r| {
            [
                "/static/js/main.4f9c2e1a.js",
                "/static/js/vendor.91d0b7c3.js",
            ][r.usize(..2)]
            .to_string()
        },
        status: 200,
        median_ms: 2.0,
        body: 182_000,
    },
    Route {
        weight: 40,
        method: "GET",
        uri: |_| "/static/css/main.0a7e55d2.css".to_string(),
        status: 200,
        median_ms: 1.0,
        body: 24_000,
    },
    Route {
        weight: 100,
        method: "GET",
        uri: |r| format!("/images/products/{}.webp", r.u32(1..5000)),
        status: 200,
        median_ms: 3.0,
        body: 38_000,
    },
    Route {
        weight: 14,
        method: "GET",
        uri: |r| format!("/api/items/{}", r.u32(90000..99999)),
        status: 404,
        median_ms: 4.0,
        body: 27,
    },
    Route {
        weight: 4,
        method: "GET",
        uri: |r| ["/wp-login.php", "/.env", "/admin/config.php"][r.usize(..3)].to_string(),
        status: 404,
        median_ms: 1.0,
        body: 22,
    },
];

const USER_AGENTS: &[(&str, u32)] = &[
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
        14,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
        8,
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36",
        7,
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
        5,
    ),
    (
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        4,
    ),
    ("okhttp/4.12.0", 18),
    ("ShopApp/5.2.0 (iOS 18.1; iPhone15,3)", 16),
    ("curl/8.5.0", 6),
    ("python-requests/2.32.3", 6),
    ("Go-http-client/1.1", 6),
];

fn pick_weighted<T: Copy>(rng: &mut Rng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.u32(..total);
    for &(item, w) in items {
        if x < w {
            return item;
        }
        x -= w;
    }
    items[items.len() - 1].0
}

fn pick_route(rng: &mut Rng) -> &'static Route {
    let total: u32 = ROUTES.iter().map(|r| r.weight).sum();
    let mut x = rng.u32(..total);
    for route in ROUTES {
        if x < route.weight {
            return route;
        }
        x -= route.weight;
    }
    &ROUTES[0]
}

/// A request as blue serves it on a good day.
fn normal_request(rng: &mut Rng) -> Request {
    let route = pick_route(rng);
    let uri = (route.uri)(rng);
    let ms = latency_ms(rng, route.median_ms);
    let mut status = route.status;
    let mut body = if route.body == 0 {
        0
    } else {
        (route.body as f64 * (0.8 + 0.4 * rng.f64())) as u64
    };
    // Browsers revalidate cached assets.
    if uri.starts_with("/static/") && rng.u8(..100) < 20 {
        status = 304;
        body = 0;
    }
    let mut r = Request::from_blue(route.method, uri, status, body, ms);
    if rng.u16(..1000) < 5 {
        // The client gave up first: no response, so no pool header either.
        let waited = rng.u64(200..8000);
        r.status = 499;
        r.body_bytes_sent = 0;
        r.request_ms = waited;
        r.upstream_status = "-".to_string();
        r.upstream_response_time = seconds(waited);
        r.pool.clear();
        r.release.clear();
    }
    r
}

/// A write that blue fails. nginx does not retry non-idempotent methods, so
/// the client sees blue's 5xx.
fn error_request(rng: &mut Rng) -> Request {
    let uri = ["/api/orders", "/api/cart/items"][rng.usize(..2)].to_string();
    let (status, body, ms) = if rng.u8(..10) < 7 {
        (500, 61, latency_ms(rng, 30.0))
    } else {
        // Overloaded: rejected before any work.
        (503, 53, latency_ms(rng, 1.5))
    };
    Request::from_blue("POST", uri, status, body, ms)
}

/// Blue fails the first try, green answers the retry.
fn fail_over(rng: &mut Rng, r: &mut Request) {
    if r.status == 499 {
        r.status = 200;
    }
    let green_ms = r.request_ms.saturating_sub(1);
    let (fail, fail_ms) = match rng.u8(..10) {
        // The app errors quickly.
        0..=4 => (500, latency_ms(rng, 3.0)),
        // Nothing listens: refused at once.
        5..=7 => (502, 0),
        // Hung: proxy_read_timeout (2s in the shipped config).
        _ => (504, 2000 + rng.u64(0..4)),
    };
    r.upstream_status = format!("{fail}, {}", r.status);
    r.upstream_addr = format!("{BLUE_ADDR}, {GREEN_ADDR}");
    r.upstream_response_time = format!("{}, {}", seconds(fail_ms), seconds(green_ms));
    r.request_ms = fail_ms + green_ms + rng.u64(0..2);
    r.pool = "green".to_string();
    r.release = GREEN_RELEASE.to_string();
}

/// Log-normal around `median` with a heavier tail for the odd slow request.
fn latency_ms(rng: &mut Rng, median: f64) -> u64 {
    // Box-Muller: one standard normal from two uniforms.
    let z = (-2.0 * (1.0 - rng.f64()).ln()).sqrt() * (std::f64::consts::TAU * rng.f64()).cos();
    let tail = if rng.u8(..100) == 0 { 8.0 } else { 1.0 };
    (median * (0.6 * z).exp() * tail).round() as u64
}

/// Milliseconds as nginx prints `$request_time`: `0.012`.
fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Append `v` as a JSON string, escaped as nginx's `escape=json` does.
fn json_str(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{AccessRecord, Decoder, INPUT_PADDING};
    use crate::syslog;
    use crate::upstream::{self, Outcome};

    /// Frame and decode one datagram the way the receiver does, into a
    /// leaked padded buffer so the record can outlive the call.
    fn decode(d: &[u8]) -> AccessRecord<'static> {
        let frame = syslog::parse(d).expect("frames");
        assert_eq!(frame.severity, 6);
        let msg = &d[frame.msg];
        let mut v = msg.to_vec();
        v.resize(msg.len() + INPUT_PADDING, 0);
        let buf: &'static mut [u8] = Box::leak(v.into_boxed_slice());
        Decoder::new().decode(buf, msg.len()).expect("decodes")
    }

    #[test]
    fn header_and_field_order_are_nginx_s() {
        let clock = Clock::from_parts(2026, 11, 5, 9, 7, 3, 3600);
        assert_eq!(clock.bsd, "Nov  5 09:07:03");
        assert_eq!(clock.iso8601, "2026-11-05T09:07:03+01:00");
        let line = Generator::with_clock(Scenario::Steady, 7, &clock, "web-1").line(0.0);
        let s = String::from_utf8(line).unwrap();
        assert!(
            s.starts_with("<190>Nov  5 09:07:03 web-1 nginx: {\"time\":\"2026-11-05T09:07:03+01:00\",\"remote_addr\":\""),
            "{s}"
        );
        let keys = [
            "time",
            "remote_addr",
            "request",
            "method",
            "uri",
            "status",
            "body_bytes_sent",
            "request_time",
            "upstream_status",
            "upstream_addr",
            "upstream_response_time",
            "pool",
            "release",
            "request_id",
            "http_user_agent",
        ];
        let at: Vec<usize> = keys
            .iter()
            .map(|k| s.find(&format!("\"{k}\":")).expect(k))
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{s}");
        let west = Clock::from_parts(2026, 1, 15, 23, 0, 0, -5 * 3600 - 1800);
        assert_eq!(west.bsd, "Jan 15 23:00:00");
        assert!(west.iso8601.ends_with("-05:30"));
    }

    #[test]
    fn steady_lines_decode_as_blue() {
        let lines = generate(Scenario::Steady, 2000, 1);
        let mut sizes: Vec<usize> = lines.iter().map(Vec::len).collect();
        sizes.sort_unstable();
        let median = sizes[sizes.len() / 2];
        assert!((420..=560).contains(&median), "median size {median}");
        let mut statuses = std::collections::BTreeMap::new();
        for d in &lines {
            let r = decode(d);
            *statuses.entry(r.status).or_insert(0) += 1;
            assert!(r.status < 500, "{}", String::from_utf8_lossy(d));
            assert_eq!(r.request_id.len(), 32);
            if r.status == 499 {
                assert_eq!((r.pool, r.upstream_status), ("", "-"));
            } else {
                assert_eq!((r.pool, r.release), ("blue", BLUE_RELEASE));
                assert_eq!(r.upstream_addr, BLUE_ADDR);
                assert_eq!(r.upstream_status, r.status.to_string());
            }
            assert!(r.request_time.is_some());
        }
        let share = |s: u16| statuses.get(&s).copied().unwrap_or(0) as f64 / 2000.0;
        assert!(share(200) > 0.6, "{statuses:?}");
        for s in [301, 404, 304] {
            assert!(share(s) > 0.0, "no {s}: {statuses:?}");
        }
    }

    #[test]
    fn failover_retries_on_green_after_the_first_tenth() {
        let n = 1000;
        let lines = generate(Scenario::Failover, n, 2);
        let mut retries = 0;
        let mut first_fail = std::collections::BTreeSet::new();
        for (i, d) in lines.iter().enumerate() {
            let r = decode(d);
            let tries: Vec<_> =
                upstream::attempts(r.upstream_status, r.upstream_addr, r.upstream_response_time)
                    .collect();
            if i < n / 10 {
                assert!(tries.len() <= 1);
                continue;
            }
            assert_eq!(tries.len(), 2, "{}", String::from_utf8_lossy(d));
            assert_eq!(tries[0].addr, BLUE_ADDR);
            assert!(tries[0].outcome.is_failure());
            first_fail.insert(tries[0].status);
            assert_eq!(tries[1].addr, GREEN_ADDR);
            assert_eq!(tries[1].outcome, Outcome::Success);
            assert_eq!((r.pool, r.release), ("green", GREEN_RELEASE));
            assert!(r.status < 500);
            retries += 1;
        }
        assert_eq!(retries, n - n / 10);
        let want: std::collections::BTreeSet<_> = [Some(500), Some(502), Some(504)].into();
        assert_eq!(first_fail, want);
    }

    #[test]
    fn errors_are_unretried_5xx_from_blue() {
        let lines = generate(Scenario::Errors, 4000, 3);
        let mut errors = 0;
        for d in &lines {
            let r = decode(d);
            if r.status >= 500 {
                errors += 1;
                assert_eq!(r.method, "POST");
                assert_eq!(r.upstream_status, r.status.to_string());
                assert_eq!(r.pool, "blue");
            }
        }
        let share = errors as f64 / lines.len() as f64;
        assert!((0.03..0.07).contains(&share), "5xx share {share}");
    }

    #[test]
    fn same_seed_same_lines() {
        let clock = Clock::from_parts(2026, 11, 5, 9, 7, 3, 0);
        let a: Vec<_> = (0..50)
            .map({
                let mut g = Generator::with_clock(Scenario::Failover, 9, &clock, "h");
                move |i| g.line(i as f64 / 50.0)
            })
            .collect();
        let mut g = Generator::with_clock(Scenario::Failover, 9, &clock, "h");
        let b: Vec<_> = (0..50).map(|i| g.line(i as f64 / 50.0)).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn stamped_templates_are_unique_and_decode() {
        let mut g = Generator::new(Scenario::Failover, 4);
        let mut t = g.template(0.5);
        let mut seen = std::collections::HashSet::new();
        for v in [0, 1, 0xdead_beef, u64::MAX] {
            t.stamp(v);
            let r = decode(t.bytes());
            assert_eq!(r.status, 200);
            assert!(r.pool.starts_with('p') && r.pool.len() == 17, "{}", r.pool);
            let hex = format!("{v:016x}");
            assert!(r.uri.contains(&hex) && r.http_user_agent.ends_with(&hex));
            assert!(r.request_id.ends_with(&hex));
            assert!(r.remote_addr.contains(&hex[12..]));
            let tries: Vec<_> = upstream::attempts(r.upstream_status, r.upstream_addr, "")
                .map(|a| a.addr.to_string())
                .collect();
            assert_eq!(tries.len(), 2);
            assert!(tries[0].contains(&hex[..4]) && tries[0] != tries[1]);
            for s in [r.remote_addr, r.uri, r.http_user_agent, r.pool]
                .into_iter()
                .chain(tries.iter().map(String::as_str))
            {
                assert!(seen.insert(s.to_string()), "{s} repeated");
            }
        }
    }
}
