//! README.md's native walk-through ("Without Docker") and its advice in
//! "Pointing nginx at it", checked against the real nginx.
//!
//! The walk-through itself uses fixed ports (8080–8082, 5514, 9514), which a
//! test must never take, so it is not run here as a whole. What is checked
//! is what can drift from the code: the environment it exports renders a
//! config that passes `nginx -t`, every listener it starts is on loopback,
//! only the package install uses `sudo`, and it ends by stopping what it
//! started and removing what it wrote. The `access_log` example is run for
//! real: a `server`-level `access_log` hides that server's requests from
//! poolwatch, and repeating the syslog line, as the README shows, brings
//! them back.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::poolwatch::Poolwatch;
use common::{DemoApp, Nginx, NginxOpts, PATIENCE, SyslogTarget, nginx_bin, nginx_dir, wait_until};

fn readme() -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md")
}

/// The text of the section under `heading` (a `#` line), up to the next
/// heading of the same or a higher level.
fn section(text: &str, heading: &str) -> String {
    let start = text
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README has no {heading:?}"));
    let level = heading.split(' ').next().expect("hashes").len();
    let body = &text[start + heading.len() + 2..];
    let end = body
        .lines()
        .scan(0, |offset, line| {
            let at = *offset;
            *offset += line.len() + 1;
            Some((at, line))
        })
        .find(|(_, line)| {
            let hashes = line.chars().take_while(|&c| c == '#').count();
            hashes > 0 && hashes <= level && line[hashes..].starts_with(' ')
        })
        .map_or(body.len(), |(at, _)| at);
    body[..end].to_string()
}

/// The fenced code blocks of `text` in the language `lang`.
fn code_blocks(text: &str, lang: &str) -> Vec<String> {
    let open = format!("```{lang}\n");
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&open) {
        let body = &rest[start + open.len()..];
        let end = body.find("```").expect("unterminated code block");
        blocks.push(body[..end].to_string());
        rest = &body[end + 3..];
    }
    blocks
}

/// Shell lines with their `\` continuations joined.
fn commands(block: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        match line.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

fn walkthrough_commands() -> Vec<String> {
    let text = section(&readme(), "### Without Docker");
    code_blocks(&text, "sh")
        .iter()
        .flat_map(|block| commands(block))
        .collect()
}

/// `NAME=VALUE` words of a command, up to its first other word (or all of
/// them after `export`).
fn assignments(command: &str) -> Vec<(String, String)> {
    command
        .split_whitespace()
        .skip_while(|w| *w == "export")
        .map_while(|w| w.split_once('='))
        .filter(|(name, _)| name.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

#[test]
fn walkthrough_uses_loopback_sudo_only_to_install_and_cleans_up() {
    let cmds = walkthrough_commands();
    assert!(!cmds.is_empty(), "no sh blocks under \"Without Docker\"");

    for cmd in cmds.iter().filter(|c| c.contains("sudo")) {
        assert!(
            cmd.trim_start().starts_with("sudo apt-get install"),
            "only the package install may need root: {cmd}"
        );
    }

    // Every program the walk-through starts listens on loopback only.
    let starts = |program: &str| {
        cmds.iter()
            .filter(|c| c.contains(program) && c.contains(" & "))
            .cloned()
            .collect::<Vec<_>>()
    };
    let apps = starts("target/release/demo-app");
    assert_eq!(apps.len(), 2, "two demo apps: {cmds:#?}");
    for app in &apps {
        let env = assignments(app);
        assert!(
            env.contains(&("BIND".into(), "127.0.0.1".into())),
            "demo-app not bound to loopback: {app}"
        );
    }
    let receivers = starts("target/release/poolwatch");
    assert_eq!(receivers.len(), 1, "{cmds:#?}");
    for name in ["UDP_LISTEN", "HTTP_LISTEN"] {
        let value = assignments(&receivers[0])
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v);
        assert!(
            value
                .as_deref()
                .is_some_and(|v| v.starts_with("127.0.0.1:")),
            "poolwatch's {name} not on loopback: {}",
            receivers[0]
        );
    }
    let export = nginx_export(&cmds);
    let listen = export.iter().find(|(n, _)| n == "LISTEN_ADDR");
    assert!(
        listen.is_some_and(|(_, v)| v.starts_with("127.0.0.1:")),
        "nginx's LISTEN_ADDR not on loopback: {export:?}"
    );

    // Everything started is recorded, and the end stops it and removes
    // what was written.
    let started = cmds.iter().filter(|c| c.contains(" & ")).count();
    let recorded = cmds
        .iter()
        .filter(|c| c.contains(" & echo $! >>target/demo/pids"))
        .count();
    assert_eq!(started, recorded, "a background process not in pids");
    let last: Vec<&String> = cmds.iter().rev().take(3).collect();
    let tail = last.iter().rev().map(|c| c.as_str()).collect::<Vec<_>>();
    assert!(
        tail[0].starts_with("kill $(cat target/demo/pids)"),
        "{tail:?}"
    );
    assert_eq!(tail[1], "rm -r target/demo", "{tail:?}");
    let unset: Vec<&str> = tail[2].split_whitespace().skip(1).collect();
    assert!(tail[2].starts_with("unset "), "{tail:?}");
    for (name, _) in &export {
        assert!(unset.contains(&name.as_str()), "{name} never unset");
    }
}

/// The variables the walk-through exports for `nginx/entrypoint.sh`.
fn nginx_export(cmds: &[String]) -> Vec<(String, String)> {
    let exports: Vec<&String> = cmds.iter().filter(|c| c.starts_with("export ")).collect();
    assert_eq!(exports.len(), 1, "one export line: {cmds:#?}");
    assignments(exports[0])
}

#[test]
fn walkthrough_nginx_environment_renders_a_config_that_passes_nginx_t() {
    let checkout = common::unique_temp_path("poolwatch-walkthrough");
    fs::create_dir_all(&checkout).expect("create stand-in checkout");
    let cmds = walkthrough_commands();
    let env: Vec<(String, String)> = nginx_export(&cmds)
        .into_iter()
        .map(|(name, value)| (name, value.replace("$PWD", &checkout.display().to_string())))
        .collect();
    let get = |name: &str| {
        env.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{name} not exported: {env:?}"))
    };
    let conf_dir = get("NGINX_CONF_DIR");
    // Paths the walk-through's clean-up removes.
    for name in [
        "NGINX_CONF_DIR",
        "NGINX_PREFIX",
        "NGINX_PID_PATH",
        "NGINX_TEMP_DIR",
        "NGINX_ERROR_LOG",
    ] {
        let value = get(name);
        assert!(
            Path::new(&value).starts_with(checkout.join("target/demo")),
            "{name}={value} outside target/demo"
        );
    }
    assert!(
        Path::new(&get("NGINX_BIN")).is_absolute(),
        "NGINX_BIN must not depend on PATH (/usr/sbin is not on a user's)"
    );

    let render = Command::new("sh")
        .arg(nginx_dir().join("render.sh"))
        .arg(&conf_dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run render.sh");
    assert!(
        render.status.success(),
        "render.sh: {}",
        String::from_utf8_lossy(&render.stderr)
    );
    let conf = fs::read_to_string(Path::new(&conf_dir).join("nginx.conf")).expect("nginx.conf");
    assert!(conf.contains("listen 127.0.0.1:8080;"), "{conf}");
    assert!(
        conf.contains("access_log syslog:server=127.0.0.1:5514,tag=nginx poolwatch;"),
        "{conf}"
    );
    // The same nginx the walk-through names, when it is installed there;
    // else the one the rest of the suite uses.
    let bin = Some(get("NGINX_BIN"))
        .filter(|b| Path::new(b).is_file())
        .map_or_else(nginx_bin, Into::into);
    let t = Command::new(bin)
        .arg("-t")
        .arg("-p")
        .arg(get("NGINX_PREFIX"))
        .arg("-c")
        .arg(Path::new(&conf_dir).join("nginx.conf"))
        .output()
        .expect("run nginx -t");
    let _ = fs::remove_dir_all(&checkout);
    assert!(
        t.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&t.stderr)
    );
}

/// The `server` block of README's `access_log` example, as lines.
fn readme_server_access_logs() -> Vec<String> {
    let text = section(&readme(), "## Pointing nginx at it");
    let block = code_blocks(&text, "nginx")
        .into_iter()
        .find(|b| b.contains("server {"))
        .expect("an nginx example with a server block");
    let server = &block[block.find("server {").expect("server")..];
    server
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("access_log "))
        .map(str::to_string)
        .collect()
}

/// nginx with `lines` added to its `server` block (the README's watcher
/// address replaced with `pw`'s, its file with one in nginx's prefix).
/// Sends `n` requests and returns how many poolwatch counted and how many
/// the file holds, once a last request logged to poolwatch by its own
/// `location` has been counted: datagrams from before it are in by then.
fn requests_seen(lines: &[String], n: usize) -> (f64, usize) {
    let pw = Poolwatch::start(&[]);
    let blue = DemoApp::start("blue", "blue-v1");
    let green = DemoApp::start("green", "green-v1");
    let watcher = pw.udp.clone();
    let file = common::unique_temp_path("poolwatch-shop-log");
    let added: Vec<String> = lines
        .iter()
        .map(|l| {
            l.replace("watcher:5514", &watcher)
                .replace("/var/log/nginx/shop.log", &file.display().to_string())
        })
        .collect();
    let marker = format!(
        "location = /marker {{ access_log syslog:server={watcher},tag=nginx poolwatch; return 204; }}"
    );
    let nginx = Nginx::start(
        NginxOpts::new(
            "blue",
            &blue.addr(),
            &green.addr(),
            SyslogTarget::Udp(watcher.clone()),
        )
        .with_edit(move |conf| {
            let at = conf.find("        location / {").expect("location /");
            let mut inserted = String::new();
            for line in &added {
                inserted.push_str("        ");
                inserted.push_str(line);
                inserted.push('\n');
            }
            inserted.push_str("        ");
            inserted.push_str(&marker);
            inserted.push('\n');
            format!("{}{inserted}{}", &conf[..at], &conf[at..])
        }),
    );
    for _ in 0..n {
        assert_eq!(nginx.get("/version").0, 200);
    }
    assert_eq!(nginx.get("/marker").0, 204);
    let mut seen = 0.0;
    assert!(
        wait_until(PATIENCE, || {
            seen = pw.metrics().sum("poolwatch_requests_total", &[]);
            seen >= 1.0
        }),
        "poolwatch never counted the marker request"
    );
    assert!(wait_until(PATIENCE, || pw.receive_queue() == 0));
    let seen = pw.metrics().sum("poolwatch_requests_total", &[]) - 1.0;
    let in_file = fs::read_to_string(&file)
        .unwrap_or_default()
        .lines()
        .count();
    let _ = fs::remove_file(&file);
    (seen, in_file)
}

#[test]
fn server_access_log_hides_requests_unless_it_repeats_the_syslog_line() {
    let lines = readme_server_access_logs();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[1].starts_with("access_log syslog:"), "{lines:?}");

    // Only the server's own file: poolwatch hears nothing of its requests.
    let (seen, in_file) = requests_seen(&lines[..1], 5);
    assert_eq!((seen, in_file), (0.0, 5));
    // With the syslog line repeated, as README shows: every request.
    let (seen, in_file) = requests_seen(&lines, 5);
    assert_eq!((seen, in_file), (5.0, 5));
}
