//! Debian's real headless Chromium, driven over the DevTools protocol: load
//! a page, wait until its scripts rendered something, click like a user
//! (mouse events at an element's place), take screenshots, and record
//! every request the page makes.
//!
//! Chromium is started with `--remote-debugging-port=0` and a new, empty
//! user data directory; it writes the port it bound to `DevToolsActivePort`
//! there, so no port is picked before it is bound. The protocol is JSON
//! over one WebSocket (tungstenite, blocking), in "flat" mode: one
//! connection to the browser, commands for the page carry its session id.
//!
//! The binary is `CHROMIUM_BIN`, else `/usr/bin/chromium` (Debian's
//! `chromium` package, which `scripts/test` installs).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

use super::{PATIENCE, unique_temp_path, wait_until};

/// Path of the Chromium binary.
pub fn chromium_bin() -> PathBuf {
    std::env::var_os("CHROMIUM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// A headless Chromium with one page open, killed on drop.
pub struct Chromium {
    child: Child,
    dir: PathBuf,
    log: PathBuf,
    ws: WebSocket<TcpStream>,
    session: String,
    next_id: u64,
    /// URLs of every request the page made (`Network.requestWillBeSent`).
    pub requests: Vec<String>,
    /// Uncaught exceptions and console errors the page reported.
    pub errors: Vec<String>,
}

impl Chromium {
    /// Starts Chromium and opens `url` in a page of `width`×`height`.
    pub fn open(url: &str, width: u32, height: u32) -> Chromium {
        let dir = unique_temp_path("chromium-profile");
        std::fs::create_dir_all(&dir).expect("create the user data directory");
        let log = unique_temp_path("chromium-log");
        let child = Command::new(chromium_bin())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", dir.display()))
            .arg(format!("--window-size={width},{height}"))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the Chromium log"))
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", chromium_bin().display()));
        let port_file = dir.join("DevToolsActivePort");
        let mut ports = String::new();
        let ready = wait_until(PATIENCE, || {
            ports = std::fs::read_to_string(&port_file).unwrap_or_default();
            ports.lines().count() >= 2
        });
        let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            ready,
            "Chromium wrote no DevToolsActivePort within {PATIENCE:?}:\n{}",
            log_text()
        );
        let mut lines = ports.lines();
        let port = lines.next().unwrap_or_default().trim().to_string();
        let path = lines.next().unwrap_or_default().trim().to_string();
        let stream = TcpStream::connect(format!("127.0.0.1:{port}")).expect("connect to DevTools");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let (ws, _) = tungstenite::client(format!("ws://127.0.0.1:{port}{path}"), stream)
            .unwrap_or_else(|e| panic!("DevTools handshake: {e}"));
        let mut c = Chromium {
            child,
            dir,
            log,
            ws,
            session: String::new(),
            next_id: 0,
            requests: Vec::new(),
            errors: Vec::new(),
        };
        let target = c.call("Target.createTarget", json!({ "url": "about:blank" }));
        let target_id = target["targetId"].as_str().expect("target id").to_string();
        let attached = c.call(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        c.session = attached["sessionId"]
            .as_str()
            .expect("session id")
            .to_string();
        c.call("Page.enable", json!({}));
        c.call("Network.enable", json!({}));
        c.call("Runtime.enable", json!({}));
        c.resize(width, height);
        c.call("Page.navigate", json!({ "url": url }));
        c
    }

    /// What Chromium logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends one command (to the page once attached) and returns its
    /// result; events that arrive meanwhile are recorded.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .unwrap_or_else(|e| panic!("DevTools {method}: {e}"));
        let deadline = Instant::now() + PATIENCE;
        loop {
            assert!(
                Instant::now() < deadline,
                "no answer to {method} within {PATIENCE:?}"
            );
            let m = self
                .ws
                .read()
                .unwrap_or_else(|e| panic!("DevTools {method}: {e}\n{}", self.log()));
            let Ok(text) = m.to_text() else { continue };
            let v: Value = match serde_json::from_str(text) {
                Ok(v) => v,
                Err(_) => continue,
            };
            if v["id"].as_u64() == Some(id) {
                if let Some(err) = v.get("error") {
                    panic!("DevTools {method} failed: {err}");
                }
                return v["result"].clone();
            }
            self.note_event(&v);
        }
    }

    fn note_event(&mut self, v: &Value) {
        match v["method"].as_str() {
            Some("Network.requestWillBeSent") => {
                if let Some(url) = v["params"]["request"]["url"].as_str() {
                    self.requests.push(url.to_string());
                }
            }
            Some("Runtime.exceptionThrown") => {
                self.errors
                    .push(v["params"]["exceptionDetails"].to_string());
            }
            Some("Runtime.consoleAPICalled") if v["params"]["type"] == "error" => {
                self.errors.push(v["params"]["args"].to_string());
            }
            _ => {}
        }
    }

    /// Evaluates `expr` in the page (awaiting a promise) and returns its
    /// value.
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expr} threw: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Waits until `expr` is truthy in the page; false after [`PATIENCE`].
    pub fn wait_for(&mut self, expr: &str) -> bool {
        let wrapped =
            format!("(() => {{ try {{ return !!({expr}); }} catch (e) {{ return false; }} }})()");
        wait_until(PATIENCE, || self.eval(&wrapped) == Value::Bool(true))
    }

    /// The text of the element `selector` shows (`innerText`), or "".
    pub fn text(&mut self, selector: &str) -> String {
        let expr = format!(
            "(document.querySelector({}) || {{}}).innerText || ''",
            json!(selector)
        );
        self.eval(&expr).as_str().unwrap_or_default().to_string()
    }

    /// Clicks the middle of the element `selector` with the mouse, as a
    /// user would: the event goes to whatever is on top there.
    pub fn click(&mut self, selector: &str) {
        let expr = format!(
            "(() => {{ const e = document.querySelector({}); if (!e) return null; \
             e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
             return [r.left + r.width / 2, r.top + r.height / 2]; }})()",
            json!(selector)
        );
        let at = self.eval(&expr);
        let (x, y) = match (at[0].as_f64(), at[1].as_f64()) {
            (Some(x), Some(y)) => (x, y),
            _ => panic!("nothing to click at {selector}"),
        };
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
            );
        }
    }

    /// Types `text` into the focused element, as keyboard input.
    pub fn type_text(&mut self, text: &str) {
        self.call("Input.insertText", json!({ "text": text }));
    }

    /// Sets the viewport to `width`×`height` CSS pixels (a phone below
    /// 500 px wide).
    pub fn resize(&mut self, width: u32, height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({
                "width": width,
                "height": height,
                "deviceScaleFactor": 1,
                "mobile": width < 500,
            }),
        );
    }

    /// A PNG of the viewport at `width`×`height`, taken once the page has
    /// laid out and painted at that size.
    pub fn screenshot(&mut self, width: u32, height: u32) -> Vec<u8> {
        use base64::Engine;
        self.resize(width, height);
        // Two animation frames: the resize is laid out and painted.
        self.eval(
            "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))",
        );
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("screenshot is base64")
    }

    /// Loads `url` in the page (and waits for its load event).
    pub fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }));
        let ok = self.wait_for("document.readyState === 'complete'");
        assert!(ok, "{url} did not load");
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.ws.close(None);
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Whether `png` holds more than `blank` does at the same size: a page
/// with text and charts compresses far worse than an empty one.
pub fn looks_rendered(png: &[u8], blank: &[u8]) -> bool {
    png.starts_with(b"\x89PNG") && png.len() > blank.len() * 4
}

/// Where screenshots for inspection go: Cargo's temporary directory for
/// integration tests, under `target/`.
pub fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    std::fs::create_dir_all(&dir).expect("create the screenshot directory");
    dir
}
