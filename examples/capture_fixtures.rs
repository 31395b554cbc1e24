//! Captures real nginx syslog datagrams into `tests/fixtures/nginx/` for the
//! parser tests.
//!
//! Run from the repository root:
//!
//! ```text
//! cargo build --bin demo-app && cargo run --example capture_fixtures
//! ```
//!
//! It starts two `demo-app`s (blue and green) and, per case, a fresh nginx
//! rendered from the shipped `nginx/` template (some cases edit the rendered
//! text), sends requests through it, and writes every fixture datagram
//! byte for byte as `<case>.dgram`, plus a `README.md` describing them. A
//! fresh nginx per case keeps one case's failed-upstream state (`max_fails`)
//! out of the next. Needs nginx (see `NGINX_BIN`) and loopback only; the
//! `single_digit_day_tz` case also needs libfaketime (Debian package
//! `faketime`) and is skipped without it. With `--release`, build the
//! release `demo-app` instead (or point `DEMO_APP_BIN` at one).
//!
//! Fixtures carry this machine's hostname, time and random ports; rerunning
//! changes them, so only rerun when nginx's output itself should be
//! re-captured.

#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    DemoApp, HTTP_TIMEOUT, Nginx, NginxOpts, SyslogTarget, UdpCapture, connect, free_port_tcp,
    raw_request, unique_temp_path,
};

/// Longer than `proxy_read_timeout 2s`, so that nginx gives up first, and
/// short enough to keep the run quick.
const CHAOS_TIMEOUT_SEC: &str = "4";

/// Where Debian installs libfaketime.
const FAKETIME_LIBS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
];

/// Quiet time after which a case's datagrams are taken to be complete.
const SETTLE: Duration = Duration::from_millis(400);

struct Fixture {
    name: String,
    request: String,
    config: String,
    len: usize,
    summary: String,
}

struct Capturer {
    blue: DemoApp,
    green: DemoApp,
    capture: UdpCapture,
    out_dir: PathBuf,
    fixtures: Vec<Fixture>,
}

fn main() {
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nginx");
    fs::create_dir_all(&out_dir).expect("create fixture directory");
    let env = [("CHAOS_TIMEOUT_SEC", CHAOS_TIMEOUT_SEC)];
    let mut c = Capturer {
        blue: DemoApp::start_with_env("blue", "blue-v1", &env),
        green: DemoApp::start_with_env("green", "green-v1", &env),
        capture: UdpCapture::bind(),
        out_dir,
        fixtures: Vec::new(),
    };

    c.ok_blue();
    c.retry_500();
    c.retry_timeout();
    c.retry_refused();
    c.both_fail_and_no_live_upstream();
    c.nginx_404();
    c.app_404();
    c.internal_redirect();
    c.client_abort_499();
    c.uri_invalid_utf8();
    c.uri_414();
    c.bad_request_400();
    c.nohostname();
    c.escape_default();
    c.error_log();
    c.unix_socket();
    c.long_line();
    c.single_digit_day_tz();

    c.write_readme();
    println!(
        "wrote {} fixtures to {}",
        c.fixtures.len(),
        c.out_dir.display()
    );
}

impl Capturer {
    /// Resets chaos and starts a fresh nginx, blue active.
    fn nginx(&self, edit: Option<fn(&str) -> String>) -> Nginx {
        self.nginx_with(self.blue.addr(), edit)
    }

    fn nginx_with(&self, blue_addr: String, edit: Option<fn(&str) -> String>) -> Nginx {
        self.blue.chaos(None);
        self.green.chaos(None);
        let mut opts = NginxOpts::new(
            "blue",
            &blue_addr,
            &self.green.addr(),
            SyslogTarget::Udp(self.capture.addr()),
        );
        if let Some(edit) = edit {
            opts = opts.with_edit(edit);
        }
        let nginx = Nginx::start(opts);
        self.drain();
        nginx
    }

    fn drain(&self) {
        let stale = self.capture.recv_all(Duration::from_millis(100));
        if !stale.is_empty() {
            println!("  (dropped {} stray datagram(s))", stale.len());
        }
    }

    /// Waits for exactly one datagram (up to `wait`), then for quiet.
    fn one(&self, case: &str, wait: Duration) -> Vec<u8> {
        let first = self
            .capture
            .recv_one(wait)
            .unwrap_or_else(|| panic!("{case}: no datagram within {wait:?}"));
        let more = self.capture.recv_all(SETTLE);
        assert!(
            more.is_empty(),
            "{case}: expected one datagram, got {} more: {:?}",
            more.len(),
            more.iter()
                .map(|d| String::from_utf8_lossy(d))
                .collect::<Vec<_>>()
        );
        first
    }

    fn save(&mut self, name: &str, dgram: &[u8], request: &str, config: &str) {
        fs::write(self.out_dir.join(format!("{name}.dgram")), dgram).expect("write fixture");
        let summary = summarize(dgram);
        println!("{name}: {} bytes, {summary}", dgram.len());
        println!("  {}", escape_bytes(&dgram[..dgram.len().min(400)]));
        self.fixtures.push(Fixture {
            name: name.to_owned(),
            request: request.to_owned(),
            config: config.to_owned(),
            len: dgram.len(),
            summary,
        });
    }

    fn ok_blue(&mut self) {
        let nginx = self.nginx(None);
        let (status, _, _) = nginx.get("/version");
        assert_eq!(status, 200);
        let d = self.one("ok_blue", SETTLE);
        self.save(
            "ok_blue",
            &d,
            "`GET /version`, blue healthy",
            "shipped config",
        );
    }

    fn retry_500(&mut self) {
        let nginx = self.nginx(None);
        self.blue.chaos(Some("error"));
        let (status, _, _) = nginx.get("/version");
        assert_eq!(status, 200);
        let d = self.one("retry_500", SETTLE);
        self.save(
            "retry_500",
            &d,
            "`GET /version`, blue in chaos `error` (500), retried on green",
            "shipped config",
        );
    }

    fn retry_timeout(&mut self) {
        let nginx = self.nginx(None);
        self.blue.chaos(Some("timeout"));
        let (status, _, _) = nginx.get("/version");
        assert_eq!(status, 200);
        let d = self.one("retry_timeout", Duration::from_secs(5));
        self.save(
            "retry_timeout",
            &d,
            &format!(
                "`GET /version`, blue in chaos `timeout` ({CHAOS_TIMEOUT_SEC} s > proxy_read_timeout 2s), retried on green"
            ),
            "shipped config",
        );
    }

    fn retry_refused(&mut self) {
        let closed = format!("127.0.0.1:{}", free_port_tcp());
        let nginx = self.nginx_with(closed, None);
        let (status, _, _) = nginx.get("/version");
        assert_eq!(status, 200);
        let d = self.one("retry_refused", SETTLE);
        self.save(
            "retry_refused",
            &d,
            "`GET /version`, blue upstream is a closed port (connection refused), retried on green",
            "shipped config; BLUE_UPSTREAM = a port nothing listens on",
        );
    }

    fn both_fail_and_no_live_upstream(&mut self) {
        let nginx = self.nginx(None);
        self.blue.chaos(Some("error"));
        self.green.chaos(Some("error"));
        let (status, _, _) = nginx.get("/version");
        assert_eq!(status, 500);
        let d = self.one("both_fail", SETTLE);
        self.save(
            "both_fail",
            &d,
            "`GET /version`, blue and green in chaos `error`",
            "shipped config",
        );

        // Right after, within fail_timeout=5s: only blue is marked failed,
        // because nginx does not count an error status from the last
        // attempt (green) as a failure; green is tried again, and this time
        // it is not the last attempt.
        let (status, _, _) = nginx.get("/version");
        assert_eq!(status, 502);
        let d = self.one("no_live_upstream_after_retry", SETTLE);
        self.save(
            "no_live_upstream_after_retry",
            &d,
            "`GET /version` right after `both_fail` on the same nginx, both apps still in chaos `error`",
            "shipped config",
        );

        // Now both are marked failed: nginx tries no server at all.
        let (status, _, _) = nginx.get("/version");
        assert_eq!(status, 502);
        let d = self.one("no_live_upstream", SETTLE);
        self.save(
            "no_live_upstream",
            &d,
            "a third `GET /version` after `both_fail` and `no_live_upstream_after_retry` on the same nginx",
            "shipped config",
        );
    }

    fn nginx_404(&mut self) {
        let nginx = self.nginx(Some(|conf| {
            insert_in_server(conf, "location = /missing { return 404; }")
        }));
        let (status, _, _) = nginx.get("/missing");
        assert_eq!(status, 404);
        let d = self.one("nginx_404", SETTLE);
        self.save(
            "nginx_404",
            &d,
            "`GET /missing`, answered by nginx itself",
            "adds `location = /missing { return 404; }` to the server",
        );
    }

    fn app_404(&mut self) {
        let nginx = self.nginx(None);
        let (status, _, _) = nginx.get("/status/404");
        assert_eq!(status, 404);
        let d = self.one("app_404", SETTLE);
        self.save(
            "app_404",
            &d,
            "`GET /status/404`, blue answers 404 (not a retry condition)",
            "shipped config",
        );
    }

    fn internal_redirect(&mut self) {
        let nginx = self.nginx(Some(|conf| {
            let conf = conf.replace(
                "proxy_pass_request_headers on;",
                "proxy_pass_request_headers on;\n            proxy_intercept_errors on;\n            error_page 404 = /fallback-version;",
            );
            // The fallback goes to the backup pool's /version so that the
            // second pass succeeds; proxy_pass with a URI is not allowed in
            // a named location, hence an internal exact location.
            let green = backup_addr(&conf);
            insert_in_server(
                &conf,
                &format!(
                    "location = /fallback-version {{ internal; proxy_pass http://{green}/version; }}"
                ),
            )
        }));
        let (status, _, _) = nginx.get("/status/404");
        assert_eq!(status, 200);
        let d = self.one("internal_redirect", SETTLE);
        self.save(
            "internal_redirect",
            &d,
            "`GET /status/404`: blue's 404 is intercepted and redirected internally to green's `/version`",
            "adds `proxy_intercept_errors on; error_page 404 = /fallback-version;` to `location /` and \
             `location = /fallback-version { internal; proxy_pass http://GREEN/version; }`",
        );
    }

    fn client_abort_499(&mut self) {
        let nginx = self.nginx(None);
        self.blue.chaos(Some("timeout"));
        let started = Instant::now();
        {
            let mut stream = connect(&nginx.addr(), HTTP_TIMEOUT).expect("connect to nginx");
            stream
                .write_all(b"GET /version HTTP/1.1\r\nHost: localhost\r\nUser-Agent: poolwatch-abort\r\n\r\n")
                .expect("send request");
            thread::sleep(Duration::from_millis(200));
        }
        // nginx may only notice the abort when the upstream attempt ends.
        let d = self.one("client_abort_499", Duration::from_secs(10));
        println!("  499 logged {:?} after the request", started.elapsed());
        self.save(
            "client_abort_499",
            &d,
            "`GET /version` to blue in chaos `timeout`; the client closes the socket after 200 ms",
            "shipped config",
        );
    }

    fn uri_invalid_utf8(&mut self) {
        let nginx = self.nginx(None);
        let (status, _, _) = nginx.get("/%FF%FE/abc?q=%C3%28");
        println!("  percent-encoded: {status}");
        let d = self.one("uri_percent_encoded", SETTLE);
        self.save(
            "uri_percent_encoded",
            &d,
            "`GET /%FF%FE/abc?q=%C3%28` (invalid UTF-8, but percent-encoded, so the line stays ASCII)",
            "shipped config",
        );

        let raw = raw_request(
            &nginx.addr(),
            b"GET /raw/\xFF\xFE/abc?q=\xC3\x28 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: agent-\xC3\x28-\xFF\r\nConnection: close\r\n\r\n",
            HTTP_TIMEOUT,
        )
        .expect("raw request");
        println!("  raw bytes: {}", status_line(&raw));
        let d = self.one("uri_invalid_utf8", SETTLE);
        self.save(
            "uri_invalid_utf8",
            &d,
            "raw request line `GET /raw/\\xFF\\xFE/abc?q=\\xC3\\x28 HTTP/1.1` with \
             `User-Agent: agent-\\xC3\\x28-\\xFF` (bytes sent unencoded)",
            "shipped config",
        );
    }

    fn uri_414(&mut self) {
        let nginx = self.nginx(None);
        let request = format!(
            "GET /long/{} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            "a".repeat(9000)
        );
        let raw = raw_request(&nginx.addr(), request.as_bytes(), HTTP_TIMEOUT).expect("send");
        println!("  {}", status_line(&raw));
        let d = self.one("uri_414", SETTLE);
        self.save(
            "uri_414",
            &d,
            "`GET /long/aaaa…` with a 9,000-byte path (over large_client_header_buffers' 8k)",
            "shipped config",
        );
    }

    fn bad_request_400(&mut self) {
        let nginx = self.nginx(None);
        let raw =
            raw_request(&nginx.addr(), b"this is not http\r\n\r\n", HTTP_TIMEOUT).expect("send");
        println!("  {}", status_line(&raw));
        let d = self.one("bad_request_400", SETTLE);
        self.save(
            "bad_request_400",
            &d,
            "request line `this is not http`",
            "shipped config",
        );

        // A TLS ClientHello sent to the plain-HTTP port: control bytes and
        // bytes over 0x7F in the logged request line.
        let hello = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\x5e\x8f\xc2\xff\r\n\r\n";
        let raw = raw_request(&nginx.addr(), hello, HTTP_TIMEOUT).expect("send");
        println!("  {}", status_line(&raw));
        let d = self.one("bad_request_binary", SETTLE);
        self.save(
            "bad_request_binary",
            &d,
            "the first bytes of a TLS ClientHello `\\x16\\x03\\x01\\x00\\xa5…` sent to the HTTP port",
            "shipped config",
        );
    }

    fn nohostname(&mut self) {
        let nginx = self.nginx(Some(|conf| {
            replace_once(
                conf,
                ",tag=nginx poolwatch;",
                ",tag=nginx,nohostname poolwatch;",
            )
        }));
        let (status, _, _) = nginx.get("/version");
        assert_eq!(status, 200);
        let d = self.one("nohostname", SETTLE);
        self.save(
            "nohostname",
            &d,
            "`GET /version`",
            "access_log `syslog:server=…,tag=nginx,nohostname`",
        );
    }

    fn escape_default(&mut self) {
        let nginx = self.nginx(Some(|conf| {
            let format = fs::read_to_string(common::nginx_dir().join("poolwatch-log-format.conf"))
                .expect("read log format");
            let directive = format
                .lines()
                .find(|l| l.starts_with("log_format"))
                .expect("log_format line")
                .replace("escape=json", "escape=default");
            let conf = replace_once(conf, "include poolwatch-log-format.conf;", &directive);
            insert_in_server(&conf, "location = /missing { return 404; }")
        }));
        let raw = raw_request(
            &nginx.addr(),
            b"GET /version HTTP/1.1\r\nHost: localhost\r\nUser-Agent: say \"hi\" \\ caf\xC3\xA9\r\nConnection: close\r\n\r\n",
            HTTP_TIMEOUT,
        )
        .expect("send");
        println!("  {}", status_line(&raw));
        let d = self.one("escape_default", SETTLE);
        self.save(
            "escape_default",
            &d,
            "`GET /version` with `User-Agent: say \"hi\" \\ caf\\xC3\\xA9`",
            "the same log_format with `escape=default` instead of `escape=json`",
        );

        let (status, _, _) = nginx.get("/missing");
        assert_eq!(status, 404);
        let d = self.one("escape_default_empty", SETTLE);
        self.save(
            "escape_default_empty",
            &d,
            "`GET /missing`, answered by nginx itself, so every upstream variable is empty",
            "as `escape_default`, plus `location = /missing { return 404; }`",
        );
    }

    fn error_log(&mut self) {
        let errors = UdpCapture::bind();
        let target = errors.addr();
        let closed = format!("127.0.0.1:{}", free_port_tcp());
        self.blue.chaos(None);
        self.green.chaos(None);
        let opts = NginxOpts::new(
            "blue",
            &closed,
            &self.green.addr(),
            SyslogTarget::Udp(self.capture.addr()),
        )
        .with_edit(move |conf| {
            replace_once(
                conf,
                "include poolwatch-log-format.conf;",
                &format!(
                    "include poolwatch-log-format.conf;\n    error_log syslog:server={target},tag=nginx warn;"
                ),
            )
        });
        let nginx = Nginx::start(opts);
        self.drain();
        let (status, _, _) = nginx.get("/version");
        assert_eq!(status, 200);
        // Error lines go to their own socket; the access line still arrives
        // alone on the usual one.
        self.one("error_log (access line)", SETTLE);
        let lines = errors.recv_all(SETTLE);
        println!("  {} error datagram(s)", lines.len());
        for l in &lines {
            println!("    {}", escape_bytes(l));
        }
        let connect_failed = lines
            .iter()
            .find(|l| contains(l, b"connect() failed"))
            .expect("a connect() failed error datagram");
        self.save(
            "error_log",
            connect_failed,
            "`GET /version` with blue a closed port (the first error_log datagram, `connect() failed`)",
            "adds `error_log syslog:server=127.0.0.1:PORT,tag=nginx warn;` in `http`; BLUE_UPSTREAM = a closed port",
        );
        if let Some(disabled) = lines.iter().find(|l| !contains(l, b"connect() failed")) {
            self.save(
                "error_log_warn",
                disabled,
                "the next error_log datagram of the same request",
                "as `error_log`",
            );
        }
    }

    fn unix_socket(&mut self) {
        let dir = unique_temp_path("poolwatch-unix");
        fs::create_dir_all(&dir).expect("create socket dir");
        let path = dir.join("syslog.sock");
        let socket = UnixDatagram::bind(&path).expect("bind unix datagram socket");
        // Workers run as nobody when nginx is started by root.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o777)).expect("chmod socket");
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("set timeout");
        self.blue.chaos(None);
        self.green.chaos(None);
        let nginx = Nginx::start(NginxOpts::new(
            "blue",
            &self.blue.addr(),
            &self.green.addr(),
            SyslogTarget::Unix(path.clone()),
        ));
        let (status, _, _) = nginx.get("/version");
        assert_eq!(status, 200);
        let mut buf = vec![0u8; 65536];
        let n = socket.recv(&mut buf).expect("datagram on the unix socket");
        buf.truncate(n);
        drop(nginx);
        let _ = fs::remove_dir_all(&dir);
        self.save(
            "unix_socket",
            &buf,
            "`GET /version`",
            "WATCHER_UNIX set: access_log `syslog:server=unix:/PATH,tag=nginx`",
        );
    }

    fn long_line(&mut self) {
        let nginx = self.nginx(None);
        let query = "q".repeat(7000);
        let attempt = |ua_len: usize| -> (u16, Vec<u8>) {
            let request = format!(
                "GET /long?{query} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: {}\r\nConnection: close\r\n\r\n",
                "u".repeat(ua_len)
            );
            let raw = raw_request(&nginx.addr(), request.as_bytes(), HTTP_TIMEOUT).expect("send");
            let status = status_line(&raw)
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            (status, raw)
        };
        // Longest User-Agent nginx accepts: one header line must fit one
        // large_client_header_buffers buffer (8k).
        let (mut lo, mut hi) = (1000usize, 8192usize);
        while lo + 1 < hi {
            let mid = (lo + hi) / 2;
            let (status, _) = attempt(mid);
            self.capture.recv_all(Duration::from_millis(50));
            if status == 200 { lo = mid } else { hi = mid }
        }
        self.drain();
        let (status, _) = attempt(lo);
        assert_eq!(status, 200);
        let d = self.one("long_line", SETTLE);
        println!("  longest accepted User-Agent: {lo} bytes");
        self.save(
            "long_line",
            &d,
            &format!(
                "`GET /long?qqq…` with a 7,000-byte query and a User-Agent of {lo} bytes (the longest accepted)"
            ),
            "shipped config",
        );
    }

    /// The RFC 3164 timestamp pads a one-digit day with a space; a real
    /// clock only shows that on days 1-9, so the date is faked with
    /// libfaketime when it is installed (Debian package `faketime`).
    fn single_digit_day_tz(&mut self) {
        let Some(lib) = FAKETIME_LIBS.iter().find(|p| Path::new(p).is_file()) else {
            println!("single_digit_day_tz: skipped, libfaketime not installed");
            return;
        };
        self.blue.chaos(None);
        self.green.chaos(None);
        let opts = NginxOpts::new(
            "blue",
            &self.blue.addr(),
            &self.green.addr(),
            SyslogTarget::Udp(self.capture.addr()),
        )
        .with_env("LD_PRELOAD", lib)
        .with_env("FAKETIME", "@2026-03-05 07:08:09")
        // nginx's timers use the monotonic clock; leave it alone.
        .with_env("DONT_FAKE_MONOTONIC", "1")
        .with_env("TZ", "Asia/Kolkata");
        let nginx = Nginx::start(opts);
        self.drain();
        let (status, _, _) = nginx.get("/version");
        assert_eq!(status, 200);
        let d = self.one("single_digit_day_tz", SETTLE);
        self.save(
            "single_digit_day_tz",
            &d,
            "`GET /version` with nginx's clock at 2026-03-05 07:08 in Asia/Kolkata (+05:30)",
            "shipped config; nginx run with libfaketime (`FAKETIME=@2026-03-05 07:08:09`) and `TZ=Asia/Kolkata`",
        );
    }

    fn write_readme(&self) {
        let mut table = String::new();
        for f in &self.fixtures {
            let _ = writeln!(
                table,
                "| `{}.dgram` | {} | {} | {} | {} |",
                f.name, f.request, f.config, f.len, f.summary
            );
        }
        let readme = README_TEMPLATE.replace("{{TABLE}}", table.trim_end());
        fs::write(self.out_dir.join("README.md"), readme).expect("write README");
    }
}

/// The rendered upstream's backup server (green when blue is active).
fn backup_addr(conf: &str) -> String {
    conf.lines()
        .find_map(|l| {
            let l = l.trim();
            l.strip_prefix("server ")
                .filter(|rest| rest.contains(" backup "))
                .and_then(|rest| rest.split_whitespace().next())
        })
        .expect("backup server line in rendered config")
        .to_owned()
}

fn insert_in_server(conf: &str, block: &str) -> String {
    replace_once(
        conf,
        "location = /nginx-health {",
        &format!("{block}\n\n        location = /nginx-health {{"),
    )
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "expected exactly one {from:?} in the rendered config"
    );
    text.replacen(from, to, 1)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn status_line(raw: &[u8]) -> String {
    let end = raw
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// Shows bytes as text, with `\xNN` for anything but printable ASCII.
fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02X}");
            }
        }
    }
    out
}

/// `status / upstream_status / upstream_addr / pool` as logged, for the
/// README table.
fn summarize(dgram: &[u8]) -> String {
    let text = String::from_utf8_lossy(dgram);
    let field = |key: &str| -> String {
        let marker = format!("\"{key}\":");
        let Some(start) = text.find(&marker) else {
            return "?".to_owned();
        };
        let rest = &text[start + marker.len()..];
        let (value, quote) = match rest.strip_prefix('"') {
            Some(quoted) => (quoted.split('"').next().unwrap_or(""), "\""),
            None => (rest.split(',').next().unwrap_or(""), ""),
        };
        let shown = if value.chars().count() > 40 {
            format!("{}…", value.chars().take(40).collect::<String>())
        } else {
            value.to_owned()
        };
        format!("`{quote}{}{quote}`", shown.replace('|', "\\|"))
    };
    if !text.contains("\"status\":") {
        return "(error_log line)".to_owned();
    }
    format!(
        "{} / {} / {} / {}",
        field("status"),
        field("upstream_status"),
        field("upstream_addr"),
        field("pool")
    )
}

/// The notes describe what nginx 1.22.1 (Debian) did; re-check them when
/// re-capturing with another nginx.
const README_TEMPLATE: &str = r#"# nginx syslog fixtures

Datagrams captured from a real nginx 1.22.1 (Debian) running the shipped
`nginx/` config in front of two `demo-app`s, written byte for byte as
received (one datagram per `.dgram` file, nothing added). Regenerate with

```text
cargo build --bin demo-app && cargo run --example capture_fixtures
```

which rewrites every file here, this README included (edit the template in
`examples/capture_fixtures.rs`). Each case runs against a fresh nginx with
blue active (`ACTIVE_POOL=blue`), `CHAOS_TIMEOUT_SEC=4` on both apps, and
the access log sent over UDP unless noted. Host name (`vm`), times, ports and
request ids are those of the capture run.

The last column is `status` / `upstream_status` / `upstream_addr` / `pool`
as logged, strings in quotes (long values cut for the table).

| fixture | request | config vs. shipped | bytes | logged |
| --- | --- | --- | ---: | --- |
{{TABLE}}

## Datagram format

- One access-log line per datagram, RFC 3164 (BSD) style, with **no trailing
  newline** and no octet count:
  `<190>Nov 26 10:29:11 vm nginx: {"time":...}`, i.e.
  `<PRI>` + `Mmm dd hh:mm:ss` + ` ` + host name + ` ` + tag + `: ` + message.
- `PRI` 190 = facility local7 (23) × 8 + severity info (6), nginx's defaults
  for access logs. error_log datagrams carry the level's severity instead:
  `<187>` for `[error]`, `<188>` for `[warn]`.
- The day of month is padded with a space, not a zero: `Mar  5 07:08:09`
  (`single_digit_day_tz`). The header time is nginx's local time, without
  year or zone; only `$time_iso8601` in the message carries the offset
  (`2026-03-05T07:08:09+05:30` under `TZ=Asia/Kolkata`).
- With `,nohostname` the host name and its space are simply absent:
  `<190>Nov 26 10:30:11 nginx: {...}`.
- Through a unix datagram socket (`syslog:server=unix:/path`) the bytes are
  the same as over UDP.

## Things a parser must cope with

- **Not always UTF-8.** `escape=json` escapes only `"`, `\` and control
  characters (as `\u00XX`); bytes 0x80-0xFF are copied raw. Raw bytes in the
  request line or a header therefore reach the datagram unchanged
  (`uri_invalid_utf8`: `\xFF\xFE` in `request`, `uri`; `\xC3(` and `\xFF` in
  `http_user_agent`; `bad_request_binary`: `\u0016` escapes mixed with raw
  `\xA5`, `\x8F`...). nginx accepted the raw-byte request line; it was the
  demo app's HTTP server (hyper) that answered 400, before any app code ran,
  so that line has `upstream_status` `400` but an empty `pool`.
  Percent-encoded input stays ASCII: `$request_uri` is logged undecoded
  (`uri_percent_encoded`).
- **Several attempts in one field.** Retries within one pass are joined with
  `", "` (`"500, 200"`, `"504, 200"`, `"502, 200"`, `"500, 500"`); an internal
  redirect starts a new pass joined with `" : "` (`"404 : 200"`, and the same
  separators in `upstream_addr` and `upstream_response_time`).
- **No live upstream.** When every server is marked failed nginx tries none:
  `upstream_addr` is the upstream *group name* `backend`, `upstream_status`
  `502`, `upstream_response_time` `0.000`, empty `pool` (`no_live_upstream`).
- **nginx does not mark the last attempt failed for an HTTP status.** After
  `both_fail` (`"500, 500"`) only blue was marked down; the next request
  tried green again, got 500, and then found no live server:
  `"500, 502"` / `"127.0.0.1:…, backend"`, status 502 — yet `pool` is
  `green`, because `$upstream_http_x_app_pool` keeps the headers of the last
  response that arrived (`no_live_upstream_after_retry`). Only the third
  request was a pure `backend` line. Timeouts and refused connections, by
  contrast, always count as failures.
- **499.** With blue hanging (chaos `timeout`) and the client closing after
  200 ms, nginx logged at once (it did *not* wait for the upstream or for
  `proxy_read_timeout`): `status` 499, `body_bytes_sent` 0, `request_time`
  ≈0.2, `upstream_status` is the literal `"-"`, `upstream_addr` is blue's
  address, `upstream_response_time` `"0.200"`, `pool` empty.
- **Empty vs. `-`.** With `escape=json` missing values are empty strings
  (`nginx_404`, `bad_request_400`: `upstream_*`, `pool`, `release` all `""`),
  except the 499 `upstream_status` above.
- **Requests nginx rejects** (400, 414) have empty `method` and `uri`;
  `request` holds what was read: the garbage line (`bad_request_400`), or for
  414 the first 8,192 bytes of the request line, cut mid-URI with no
  ` HTTP/1.1` (`uri_414`).
- **Long lines are not truncated.** The syslog buffer is sized from the
  line: `long_line` is one 22,582-byte datagram (a 7,000-byte query logged
  twice, in `request` and `uri`, plus an 8,178-byte User-Agent, the longest
  one 8k header buffer accepts: 8,192 − `User-Agent: ` − CRLF). Since the
  request line and each header are capped at 8k, a line stays around 25 KB
  at most with this format, but a receiver should read with a 64 KiB buffer.
- **Types.** `status`, `body_bytes_sent` and `request_time` (three decimals)
  are bare numbers; every `upstream_*` field is a string, even with one value.
- **error_log lines** (`error_log`, `error_log_warn`) share the tag `nginx`
  but are plain text with nginx's own time stamp:
  `2026/11/26 10:30:13 [error] PID#TID: *CONN connect() failed (111: …`.
  Tell them apart by severity or by the message not starting with `{`.
- **`escape=default` is not JSON** (`escape_default`): `"` becomes `\x22`,
  `\` becomes `\x5C` and bytes over 0x7F become `\xC3\xA9`; numbers are as in
  the format; empty values are logged as `-` inside the quotes
  (`escape_default_empty`).
"#;
