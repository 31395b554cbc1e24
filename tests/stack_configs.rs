//! The Docker stack's configuration, checked without Docker: the nginx
//! template renders and passes `nginx -t`, Prometheus's config, rules and
//! rule tests pass `promtool`, `docker-compose config` accepts the compose
//! file, the Grafana dashboard and the alert rules only query metrics that
//! poolwatch exports, the Grafana files match Grafana's published schema,
//! and `.env.example` and `docker-compose.yml` carry every poolwatch
//! setting with its default.
//!
//! Needs nginx, `promtool` (Debian's `prometheus` package),
//! `docker-compose` (Debian's `docker-compose` package) and Node.js with
//! `grafana/schema-check`'s packages; `scripts/test` installs them. The
//! stack itself runs in `tests/stack_docker.rs`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::dashboard;
use common::poolwatch::{Poolwatch, poolwatch_bin};
use common::{free_port_tcp, nginx_bin, unique_temp_path};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// `name` on `PATH`, or a failure that says which package provides it.
fn tool(name: &str, package: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "`{name}` not found on PATH: install Debian's `{package}` package \
                 (scripts/test does)"
            )
        })
}

/// `program`, to run in the repository with only `PATH` and `HOME` from
/// the environment, so that no local setting leaks in.
fn command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(repo())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(
            "HOME",
            std::env::var_os("HOME").unwrap_or_else(|| std::env::temp_dir().into()),
        )
        .stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"))
}

fn describe(out: &Output) -> String {
    format!(
        "exit {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?} failed: {}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---- nginx ----------------------------------------------------------------

/// Renders `nginx/` with `render.sh` into a new directory laid out like the
/// test harness's nginx prefix; returns the directory and render's output.
fn render_nginx(active_pool: &str, extra: &[(&str, String)]) -> (PathBuf, Output) {
    let dir = unique_temp_path("poolwatch-stack-nginx");
    fs::create_dir_all(&dir).expect("create temp dir");
    let d = dir.display();
    let mut cmd = command("sh");
    cmd.arg(repo().join("nginx/render.sh")).arg(&dir);
    let out = run(cmd
        .env("ACTIVE_POOL", active_pool)
        .env("LISTEN_ADDR", format!("127.0.0.1:{}", free_port_tcp()))
        .env("NGINX_PID_PATH", format!("{d}/nginx.pid"))
        .env("NGINX_ERROR_LOG", format!("{d}/error.log"))
        .env("NGINX_TEMP_DIR", format!("{d}/tmp"))
        .envs(extra.iter().map(|(k, v)| (k, v))));
    (dir, out)
}

/// The `server` lines of the rendered `upstream backend` block, in order.
fn upstream_servers(conf: &str) -> Vec<String> {
    let block = conf
        .split("upstream backend {")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .expect("rendered config has an upstream backend block");
    block
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("server "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn nginx_config_renders_and_passes_nginx_t_for_blue_and_green() {
    let bin = nginx_bin();
    assert!(
        bin.is_file(),
        "nginx not found at {} (set NGINX_BIN or install nginx-light)",
        bin.display()
    );
    let blue = format!("127.0.0.1:{}", free_port_tcp());
    let green = format!("127.0.0.1:{}", free_port_tcp());
    for (pool, primary, backup) in [("blue", &blue, &green), ("green", &green, &blue)] {
        let (dir, out) = render_nginx(
            pool,
            &[
                ("BLUE_UPSTREAM", blue.clone()),
                ("GREEN_UPSTREAM", green.clone()),
                ("WATCHER_HOST", "127.0.0.1".into()),
                ("WATCHER_PORT", "5514".into()),
            ],
        );
        assert!(out.status.success(), "render {pool}: {}", describe(&out));
        let conf_path = dir.join("nginx.conf");
        let conf = fs::read_to_string(&conf_path).expect("rendered nginx.conf");
        let servers = upstream_servers(&conf);
        assert_eq!(servers.len(), 2, "{servers:?}");
        assert!(
            servers[0].starts_with(&format!("server {primary} ")) && !servers[0].contains("backup"),
            "{pool}: primary should be {primary}: {servers:?}"
        );
        assert!(
            servers[1].starts_with(&format!("server {backup} ")) && servers[1].contains("backup"),
            "{pool}: backup should be {backup}: {servers:?}"
        );
        assert!(
            conf.contains("access_log syslog:server=127.0.0.1:5514,tag=nginx poolwatch;"),
            "{conf}"
        );
        let mut t = command(&bin);
        let t = run(t.arg("-t").arg("-p").arg(&dir).arg("-c").arg(&conf_path));
        assert!(t.status.success(), "nginx -t ({pool}): {}", describe(&t));
        let _ = fs::remove_dir_all(&dir);
    }
}

#[test]
fn nginx_render_rejects_an_unknown_active_pool() {
    let (dir, out) = render_nginx("red", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "ACTIVE_POOL=red rendered: {}",
        describe(&out)
    );
    assert!(
        stderr.contains("ACTIVE_POOL") && stderr.contains("red"),
        "the error should name ACTIVE_POOL and the value: {stderr}"
    );
    assert!(
        !dir.join("nginx.conf").exists(),
        "no config should be written"
    );
    let _ = fs::remove_dir_all(&dir);
}

/// nginx in the compose file, rendered with the compose file's own
/// environment: the primary is the ACTIVE_POOL's app service, the backup the
/// other one, and access lines go to the watcher service's syslog port.
#[test]
fn compose_nginx_environment_renders_the_stack() {
    let compose = read("docker-compose.yml");
    let services = yaml_block(&compose, &["services"]).expect("services:");
    let nginx_env = env_map(&yaml_block(&services, &["nginx", "environment"]).expect("nginx env"));
    for name in [
        "BLUE_UPSTREAM",
        "GREEN_UPSTREAM",
        "WATCHER_HOST",
        "WATCHER_PORT",
    ] {
        assert!(
            nginx_env.contains_key(name),
            "nginx environment lacks {name}"
        );
    }
    // Every host nginx names is a service of the stack, on the port it
    // listens on.
    let service_names = child_keys(&services);
    for (var, service) in [
        ("BLUE_UPSTREAM", "app_blue"),
        ("GREEN_UPSTREAM", "app_green"),
    ] {
        assert_eq!(nginx_env[var], format!("{service}:3000"), "{var}");
        let env = env_map(&yaml_block(&services, &[service, "environment"]).unwrap());
        assert_eq!(
            env.get("PORT").map(String::as_str),
            Some("3000"),
            "{service} PORT"
        );
    }
    assert!(
        service_names.contains(&nginx_env["WATCHER_HOST"]),
        "WATCHER_HOST"
    );
    let env = env_example();
    let udp_listen = env.value("UDP_LISTEN").expect("UDP_LISTEN in .env.example");
    assert!(
        udp_listen.ends_with(&format!(":{}", nginx_env["WATCHER_PORT"])),
        "nginx sends to port {} but UDP_LISTEN is {udp_listen}",
        nginx_env["WATCHER_PORT"]
    );

    for pool in ["blue", "green"] {
        let extra: Vec<(&str, String)> = [
            "BLUE_UPSTREAM",
            "GREEN_UPSTREAM",
            "WATCHER_HOST",
            "WATCHER_PORT",
        ]
        .iter()
        .map(|k| (*k, nginx_env[*k].clone()))
        .collect();
        let (dir, out) = render_nginx(pool, &extra);
        assert!(out.status.success(), "render {pool}: {}", describe(&out));
        let conf = fs::read_to_string(dir.join("nginx.conf")).unwrap();
        let servers = upstream_servers(&conf);
        let (primary, backup) = if pool == "blue" {
            ("app_blue:3000", "app_green:3000")
        } else {
            ("app_green:3000", "app_blue:3000")
        };
        assert!(
            servers[0].starts_with(&format!("server {primary} ")),
            "{servers:?}"
        );
        assert!(
            servers[1].starts_with(&format!("server {backup} backup")),
            "{servers:?}"
        );
        assert!(
            conf.contains("access_log syslog:server=watcher:5514,tag=nginx poolwatch;"),
            "{conf}"
        );
        let _ = fs::remove_dir_all(&dir);
    }
}

// ---- Prometheus -----------------------------------------------------------

#[test]
fn prometheus_config_rules_and_rule_tests_pass_promtool() {
    let promtool = tool("promtool", "prometheus");
    for args in [
        ["check", "config", "prometheus/prometheus.yml"],
        ["check", "rules", "prometheus/alerts.yml"],
        ["test", "rules", "prometheus/alerts_test.yml"],
    ] {
        run_ok(command(&promtool).args(args));
    }
}

/// Every rule in alerts.yml is tested, and links to a section that exists.
#[test]
fn alert_rules_are_tested_and_link_to_runbook_sections() {
    let rules = read("prometheus/alerts.yml");
    let tests = read("prometheus/alerts_test.yml");
    let names: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(str::trim)
        .collect();
    assert!(names.len() >= 5, "{names:?}");
    for name in &names {
        assert!(
            tests.contains(&format!("alertname: {name}\n")),
            "alert {name} has no test in alerts_test.yml"
        );
    }

    let runbook = read("RUNBOOK.md");
    let anchors: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## ").or_else(|| l.strip_prefix("# ")))
        .map(common::markdown_anchor)
        .collect();
    let links: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("runbook_url:"))
        .map(|v| v.trim().trim_matches('"'))
        .collect();
    assert_eq!(
        links.len(),
        names.len(),
        "one runbook_url per rule: {links:?}"
    );
    for link in links {
        let (_, fragment) = link
            .split_once("RUNBOOK.md#")
            .unwrap_or_else(|| panic!("runbook_url {link} does not point into RUNBOOK.md"));
        assert!(
            anchors.contains(fragment),
            "runbook_url {link}: no such section; sections: {anchors:?}"
        );
    }
}

// ---- docker-compose -------------------------------------------------------

#[test]
fn compose_file_is_valid_with_env_example_and_without_env() {
    let compose = tool("docker-compose", "docker-compose");
    run_ok(command(&compose).args([
        "-f",
        "docker-compose.yml",
        "--env-file",
        ".env.example",
        "config",
        "-q",
    ]));
    // No .env at all: every variable has a default in the compose file.
    let empty = unique_temp_path("poolwatch-empty-env");
    fs::write(&empty, "").unwrap();
    let resolved = run_ok(
        command(&compose)
            .args(["-f", "docker-compose.yml", "--env-file"])
            .arg(&empty)
            .arg("config"),
    );
    let _ = fs::remove_file(&empty);

    // nginx resolves the watcher and both apps when it loads its config:
    // it must start after them.
    let services = yaml_block(&resolved, &["services"]).expect("services in config output");
    for dep in ["watcher", "app_blue", "app_green"] {
        let block = yaml_block(&services, &["nginx", "depends_on", dep])
            .unwrap_or_else(|| panic!("nginx does not depend on {dep}:\n{resolved}"));
        assert!(
            block.contains("condition: service_healthy"),
            "nginx should wait for {dep} to be healthy: {block}"
        );
        assert!(
            yaml_block(&services, &[dep, "healthcheck"]).is_some(),
            "{dep} has no healthcheck"
        );
    }
    for service in ["nginx", "watcher", "app_blue", "app_green"] {
        assert!(
            yaml_block(&services, &[service, "healthcheck"]).is_some(),
            "{service} has no healthcheck"
        );
    }
}

/// `docker-compose config` with `.env.example` and `vars` set in its
/// environment (which wins over the file, as for a user's shell).
fn compose_config(vars: &[(&str, &str)]) -> String {
    let compose = tool("docker-compose", "docker-compose");
    run_ok(
        command(&compose)
            .args([
                "-f",
                "docker-compose.yml",
                "--env-file",
                ".env.example",
                "config",
            ])
            .envs(vars.iter().copied()),
    )
}

/// `key: value` directly under the block at `path` of `yaml`.
fn yaml_value(yaml: &str, path: &[&str], key: &str) -> Option<String> {
    let block = yaml_block(yaml, path)?;
    let level = block.lines().filter(|l| is_content(l)).map(indent).min()?;
    block.lines().find_map(|l| {
        (indent(l) == level)
            .then(|| l.trim().strip_prefix(&format!("{key}: ")))
            .flatten()
            .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_owned())
    })
}

/// The pools run BLUE_IMAGE and GREEN_IMAGE as they are: only the watcher
/// builds, and it tags its build `poolwatch:local`, so `up --build` can
/// never overwrite a release image. The watcher comes first, so that
/// docker-compose v1 (which goes through services in file order) has
/// built `poolwatch:local` before the pools look for it.
#[test]
fn compose_builds_only_the_watcher_and_runs_release_images_as_they_are() {
    let release = "registry.example.com/shop/app:2.4.1";
    for (blue, green) in [("poolwatch:local", "poolwatch:local"), (release, release)] {
        let resolved = compose_config(&[("BLUE_IMAGE", blue), ("GREEN_IMAGE", green)]);
        let services = yaml_block(&resolved, &["services"]).expect("services");
        for (service, image) in [("app_blue", blue), ("app_green", green)] {
            assert_eq!(
                yaml_value(&services, &[service], "image").as_deref(),
                Some(image),
                "{service}"
            );
            assert!(
                yaml_block(&services, &[service, "build"]).is_none(),
                "{service} has a build section: a build would be tagged {image}"
            );
        }
        assert_eq!(
            yaml_value(&services, &["watcher"], "image").as_deref(),
            Some("poolwatch:local")
        );
        assert!(yaml_block(&services, &["watcher", "build"]).is_some());
    }
    let compose = tool("docker-compose", "docker-compose");
    let order = run_ok(command(&compose).args([
        "-f",
        "docker-compose.yml",
        "--env-file",
        ".env.example",
        "config",
        "--services",
    ]));
    let order: Vec<&str> = order.lines().collect();
    let pos = |s: &str| order.iter().position(|o| *o == s).unwrap();
    assert!(
        pos("watcher") < pos("app_blue") && pos("watcher") < pos("app_green"),
        "{order:?}"
    );
}

/// Every image is a setting with today's image as its default, and the
/// Dockerfile's base images are build arguments whose defaults are the
/// official images, passed from the same settings.
#[test]
fn images_are_settings_defaulting_to_the_official_images() {
    let env = env_example();
    let defaults = [
        ("NGINX_IMAGE", "nginx", "nginx:1.27"),
        ("PROMETHEUS_IMAGE", "prometheus", "prom/prometheus:v2.53.0"),
        ("GRAFANA_IMAGE", "grafana", "grafana/grafana:11.2.0"),
    ];
    let resolved = compose_config(&[]);
    let default_services = yaml_block(&resolved, &["services"]).expect("services");
    let services = &default_services;
    for (var, service, image) in defaults {
        assert_eq!(env.value(var), Some(image), ".env.example {var}");
        assert_eq!(
            yaml_value(services, &[service], "image").as_deref(),
            Some(image)
        );
    }
    let local = [
        ("NGINX_IMAGE", "poolwatch-local/nginx:bookworm"),
        ("PROMETHEUS_IMAGE", "poolwatch-local/prometheus:bookworm"),
        (
            "GRAFANA_IMAGE",
            "poolwatch-local/grafana-placeholder:bookworm",
        ),
        ("RUST_IMAGE", "poolwatch-local/rust:1.95.0-bookworm"),
        ("RUNTIME_IMAGE", "poolwatch-local/debian:bookworm-slim"),
    ];
    let resolved = compose_config(&local);
    let services = yaml_block(&resolved, &["services"]).expect("services");
    for ((_, image), service) in local.iter().zip(["nginx", "prometheus", "grafana"]) {
        assert_eq!(
            yaml_value(&services, &[service], "image").as_deref(),
            Some(*image)
        );
    }

    let dockerfile = read("Dockerfile");
    for (arg, image) in [
        ("RUST_IMAGE", "rust:1-bookworm"),
        ("RUNTIME_IMAGE", "debian:bookworm-slim"),
    ] {
        assert!(
            dockerfile.contains(&format!("\nARG {arg}={image}\n")),
            "Dockerfile: ARG {arg}={image}"
        );
        assert!(
            dockerfile.contains(&format!("\nFROM ${{{arg}}}")),
            "Dockerfile: FROM ${{{arg}}}"
        );
        assert_eq!(env.value(arg), Some(image), ".env.example {arg}");
        assert_eq!(
            yaml_value(&default_services, &["watcher", "build", "args"], arg).as_deref(),
            Some(image),
            "compose passes {arg}"
        );
        let overridden = yaml_block(&resolved, &["services"]).unwrap();
        let want = local.iter().find(|(v, _)| *v == arg).unwrap().1;
        assert_eq!(
            yaml_value(&overridden, &["watcher", "build", "args"], arg).as_deref(),
            Some(want),
            "compose passes {arg} from the environment"
        );
    }
}

/// What the Dockerfile copies is in the build context, and it holds the
/// file of every target the manifest declares: cargo refuses a manifest
/// whose targets are missing (the image once failed for two benches).
#[test]
fn docker_build_context_holds_every_target_the_manifest_declares() {
    let ignore = read(".dockerignore");
    let allowed: Vec<&str> = ignore
        .lines()
        .filter_map(|l| l.trim().strip_prefix('!'))
        .collect();
    assert!(
        ignore.lines().any(|l| l.trim() == "*"),
        ".dockerignore should exclude everything it does not list"
    );
    let in_context = |path: &str| {
        allowed
            .iter()
            .any(|a| path == *a || path.starts_with(&format!("{a}/")))
    };
    let dockerfile = read("Dockerfile");
    let copied: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .filter(|l| !l.starts_with("--from"))
        .flat_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words[..words.len() - 1].to_vec()
        })
        .collect();
    assert!(copied.contains(&"src"), "{copied:?}");
    for path in &copied {
        assert!(
            in_context(path),
            "the Dockerfile copies {path}, which .dockerignore leaves out"
        );
        assert!(
            repo().join(path).exists(),
            "the Dockerfile copies {path}, which does not exist"
        );
    }
    let out = run_ok(
        command(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args([
            "metadata",
            "--no-deps",
            "--offline",
            "--format-version",
            "1",
        ]),
    );
    let meta: serde_json::Value = serde_json::from_str(&out).unwrap();
    let targets = meta["packages"][0]["targets"].as_array().unwrap();
    let root = repo().canonicalize().unwrap();
    for t in targets {
        let kinds = t["kind"].to_string();
        if kinds.contains("test") || kinds.contains("example") {
            // Found by directory, only when present; never required.
            continue;
        }
        let src = Path::new(t["src_path"].as_str().unwrap());
        let rel = src
            .strip_prefix(&root)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            copied
                .iter()
                .any(|c| rel == *c || rel.starts_with(&format!("{c}/"))),
            "target {} ({rel}) is not copied into the build",
            t["name"]
        );
        assert!(
            in_context(&rel),
            "target {} ({rel}) is not in the build context",
            t["name"]
        );
    }
}

/// The watcher gets the whole receive buffer it asks for: SO_RCVBUFFORCE
/// needs CAP_NET_ADMIN, which Docker grants to root only; nothing else.
#[test]
fn compose_watcher_may_force_its_receive_buffer_and_nothing_more() {
    let compose = read("docker-compose.yml");
    let services = yaml_block(&compose, &["services"]).unwrap();
    let watcher = yaml_block(&services, &["watcher"]).unwrap();
    for line in [
        "user: root",
        "cap_drop: [ALL]",
        "cap_add: [NET_ADMIN]",
        "read_only: true",
    ] {
        assert!(
            watcher.lines().any(|l| l.trim() == line),
            "watcher lacks `{line}`"
        );
    }
    assert!(watcher.contains("no-new-privileges:true"), "{watcher}");
    for service in ["app_blue", "app_green", "nginx", "prometheus", "grafana"] {
        let block = yaml_block(&services, &[service]).unwrap();
        assert!(!block.contains("cap_add"), "{service} adds capabilities");
    }
}

/// Bind mounts name files of the repository, never generated or ignored
/// ones: the stack runs from a fresh clone.
#[test]
fn compose_bind_mounts_are_repository_files() {
    let compose = read("docker-compose.yml");
    let mut sources = Vec::new();
    for line in compose.lines() {
        let Some(item) = line.trim().strip_prefix("- ") else {
            continue;
        };
        let item = item.trim_matches('"');
        if let Some(source) = item.split(':').next().filter(|s| s.starts_with("./")) {
            sources.push(source.to_owned());
        }
    }
    assert!(!sources.is_empty(), "no bind mounts found");
    for source in sources {
        let path = repo().join(&source);
        assert!(path.exists(), "bind mount source {source} does not exist");
        assert!(
            !source.starts_with("./target") && !source.starts_with("./.env"),
            "bind mount of a generated or local file: {source}"
        );
    }
}

// ---- Grafana --------------------------------------------------------------

#[test]
fn dashboard_panels_have_a_datasource_and_runnable_queries() {
    let provisioned = read("grafana/provisioning/datasources/prometheus.yml");
    let uid = provisioned
        .lines()
        .find_map(|l| l.trim().strip_prefix("uid:"))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .expect("the provisioned datasource has a uid");

    let panels = dashboard::panels();
    assert!(panels.len() >= 10, "only {} panels", panels.len());
    for p in &panels {
        let title = p["title"].as_str().unwrap_or("(untitled)");
        assert_eq!(
            p["datasource"]["uid"].as_str(),
            Some(uid.as_str()),
            "panel {title:?} must use the provisioned datasource"
        );
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        assert!(!targets.is_empty(), "panel {title:?} has no targets");
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or("").trim();
            assert!(
                !expr.is_empty(),
                "panel {title:?} has a target without expr"
            );
            // Plain PromQL, runnable against Prometheus's API once the
            // one variable, the instance filter, is replaced.
            assert!(
                !expr.replace("$instance", ".+").contains('$'),
                "panel {title:?}: {expr} uses a Grafana variable other than $instance"
            );
            if let Some(ds) = t["datasource"]["uid"].as_str() {
                assert_eq!(ds, uid, "panel {title:?}: target datasource");
            }
        }
    }

    let provider = read("grafana/provisioning/dashboards/poolwatch.yml");
    let path = provider
        .lines()
        .find_map(|l| l.trim().strip_prefix("path:"))
        .map(str::trim)
        .expect("the dashboard provider has a path");
    assert!(
        read("docker-compose.yml").contains(&format!("./grafana/dashboards:{path}")),
        "docker-compose.yml should mount grafana/dashboards at {path}"
    );
}

/// `node grafana/schema-check/check.mjs` on `grafana_dir` (a copy of
/// grafana/), or on the repository's own files.
fn grafana_schema_check(grafana_dir: Option<&Path>) -> Output {
    let modules = repo().join("grafana/schema-check/node_modules");
    assert!(
        modules.is_dir(),
        "{} is missing: run `npm ci --prefix grafana/schema-check` (scripts/test does)",
        modules.display()
    );
    let node = tool("node", "nodejs");
    let mut cmd = command(node);
    cmd.arg("grafana/schema-check/check.mjs");
    if let Some(dir) = grafana_dir {
        cmd.env("GRAFANA_DIR", dir);
    }
    run(&mut cmd)
}

/// The dashboard against Grafana's published schema (@grafana/schema at
/// the stack's Grafana version) and the provisioning files against the
/// fields Grafana documents; see grafana/schema-check/check.mjs.
#[test]
fn grafana_files_match_grafanas_published_schema() {
    let out = grafana_schema_check(None);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("match @grafana/schema"),
        "{}",
        describe(&out)
    );
}

/// The same check fails on a dashboard and a data source with the kinds
/// of mistake it exists to catch, naming each.
#[test]
fn grafana_schema_check_rejects_broken_files() {
    let dir = unique_temp_path("poolwatch-grafana-broken");
    for sub in [
        "dashboards",
        "provisioning/datasources",
        "provisioning/dashboards",
    ] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let mut dash = dashboard::dashboard();
    let panels = dash["panels"].as_array_mut().expect("panels");
    let stat = panels
        .iter_mut()
        .find(|p| p["type"] == "stat")
        .expect("a stat panel");
    // A value outside the plugin's enum.
    stat["options"]["colorMode"] = "purple".into();
    // A misspelt panel field (on another panel: the compiler reports one
    // mistake per object).
    let timeline = panels
        .iter_mut()
        .find(|p| p["type"] == "state-timeline")
        .expect("a state-timeline panel");
    timeline["gridpos"] = timeline["gridPos"].clone();
    let series = panels
        .iter_mut()
        .find(|p| p["type"] == "timeseries")
        .expect("a timeseries panel");
    // A query without its refId, and a number where the schema has a string.
    series["targets"][0]
        .as_object_mut()
        .unwrap()
        .remove("refId");
    dash["refresh"] = 10.into();
    fs::write(
        dir.join("dashboards/poolwatch.json"),
        serde_json::to_string_pretty(&dash).unwrap(),
    )
    .unwrap();
    fs::write(
        dir.join("provisioning/datasources/prometheus.yml"),
        read("grafana/provisioning/datasources/prometheus.yml")
            .replace("access: proxy", "access: proxied"),
    )
    .unwrap();
    fs::write(
        dir.join("provisioning/dashboards/poolwatch.yml"),
        read("grafana/provisioning/dashboards/poolwatch.yml"),
    )
    .unwrap();

    let out = grafana_schema_check(Some(&dir));
    let _ = fs::remove_dir_all(&dir);
    let text = describe(&out);
    assert!(!out.status.success(), "broken files passed: {text}");
    for needle in [
        "\"purple\"",
        "'\"gridpos\"' does not exist",
        "'refId' is missing",
        "Type 'number' is not assignable to type 'string'",
        "\"proxied\"",
    ] {
        assert!(text.contains(needle), "no error about {needle}: {text}");
    }
}

/// `poolwatch_…` names in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(off) = text[i..].find("poolwatch_") {
        let start = i + off;
        let mut end = start + "poolwatch_".len();
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if boundary {
            out.insert(text[start..end].to_owned());
        }
        i = end;
    }
    out
}

#[test]
fn dashboard_and_alert_rules_use_only_metrics_poolwatch_exports() {
    let pw = Poolwatch::start(&[]);
    let exported: BTreeSet<String> = pw
        .metrics_text()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    assert!(
        exported.contains("poolwatch_requests_total"),
        "{exported:?}"
    );

    let exprs: Vec<String> = dashboard::queries().into_iter().map(|q| q.expr).collect();
    let used_by_dashboard = metric_names(&exprs.join("\n"));
    let used_by_rules = metric_names(&read("prometheus/alerts.yml"));
    for (what, used) in [
        ("grafana/dashboards/poolwatch.json", &used_by_dashboard),
        ("prometheus/alerts.yml", &used_by_rules),
    ] {
        let unknown: Vec<_> = used.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{what} uses metrics poolwatch does not export: {unknown:?}"
        );
    }
}

// ---- Settings -------------------------------------------------------------

/// Each setting poolwatch reads from the environment, with its default
/// when it has one, from `poolwatch --help`.
fn poolwatch_settings() -> BTreeMap<String, Option<String>> {
    let out = Command::new(poolwatch_bin())
        .arg("--help")
        .current_dir(std::env::temp_dir())
        .env_clear()
        .output()
        .expect("run poolwatch --help");
    assert!(out.status.success(), "{}", describe(&out));
    let help = String::from_utf8_lossy(&out.stdout);
    // clap prints `[env: NAME=]` (or `[env: NAME]` for secrets), then
    // `[default: VALUE]` on the next line when there is one.
    let lines: Vec<&str> = help.lines().map(str::trim).collect();
    let mut settings = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.strip_prefix("[env: ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        let default = lines
            .get(i + 1)
            .and_then(|l| l.strip_prefix("[default: "))
            .and_then(|l| l.strip_suffix(']'))
            .map(str::to_owned);
        settings.insert(name, default);
    }
    assert!(
        settings.len() >= 20,
        "parsed from --help: {settings:?}\n{help}"
    );
    settings
}

/// `.env.example`: settings set (`NAME=value`) and commented out
/// (`# NAME=value`), in order.
struct EnvExample {
    set: Vec<(String, String)>,
    commented: Vec<(String, String)>,
}

impl EnvExample {
    fn value(&self, name: &str) -> Option<&str> {
        self.set
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn names(&self) -> BTreeSet<&str> {
        self.set
            .iter()
            .chain(&self.commented)
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

fn setting_line(line: &str) -> Option<(String, String)> {
    let (name, value) = line.split_once('=')?;
    let valid = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    valid.then(|| (name.to_owned(), value.to_owned()))
}

fn env_example() -> EnvExample {
    let mut env = EnvExample {
        set: Vec::new(),
        commented: Vec::new(),
    };
    for line in read(".env.example").lines() {
        if let Some(comment) = line.strip_prefix('#') {
            if let Some(pair) = setting_line(comment.trim_start()) {
                env.commented.push(pair);
            }
        } else if let Some(pair) = setting_line(line.trim()) {
            env.set.push(pair);
        } else {
            assert!(
                line.trim().is_empty(),
                ".env.example: unexpected line {line:?}"
            );
        }
    }
    env
}

/// Both spell the same value: equal text, or equal numbers (`2` and `2.0`).
fn same_value(a: &str, b: &str) -> bool {
    a == b || matches!((a.parse::<f64>(), b.parse::<f64>()), (Ok(x), Ok(y)) if x == y)
}

#[test]
fn env_example_lists_every_setting_with_its_default() {
    let settings = poolwatch_settings();
    let env = env_example();
    let names = env.names();
    for (name, default) in &settings {
        assert!(
            names.contains(name.as_str()),
            ".env.example does not mention {name}"
        );
        match (default, env.value(name)) {
            (Some(default), Some(value)) => assert!(
                same_value(default, value),
                ".env.example sets {name}={value}, but the default is {default}"
            ),
            (Some(default), None) => {
                panic!(".env.example should set {name}={default}, its default")
            }
            // Without a default, an empty value is still a value: such
            // settings are commented out.
            (None, Some(value)) => panic!(
                ".env.example sets {name}={value:?}; settings without a default must be \
                 commented out"
            ),
            (None, None) => {}
        }
    }
    for (name, value) in &env.set {
        assert!(
            !value.is_empty(),
            ".env.example sets {name} to nothing; comment it out instead"
        );
    }
    let mut seen = BTreeSet::new();
    for (name, _) in env.set.iter().chain(&env.commented) {
        assert!(seen.insert(name), ".env.example mentions {name} twice");
    }
}

#[test]
fn compose_passes_every_watcher_setting_and_documents_its_variables() {
    let compose = read("docker-compose.yml");
    let services = yaml_block(&compose, &["services"]).expect("services:");
    let watcher = yaml_block(&services, &["watcher", "environment"]).expect("watcher environment");
    let passed: BTreeSet<String> = env_map(&watcher).into_keys().collect();
    let settings = poolwatch_settings();
    let env = env_example();
    for name in env.names() {
        if settings.contains_key(name) {
            assert!(
                passed.contains(name),
                "{name} is a poolwatch setting in .env.example but not passed to the watcher"
            );
        }
    }
    // Every variable the compose file reads is documented.
    let documented = env.names();
    for var in compose_variables(&compose) {
        assert!(
            documented.contains(var.as_str()),
            "docker-compose.yml reads ${{{var}}}, which .env.example does not document"
        );
    }
}

/// `.env.example` as it is, in poolwatch's environment: it starts.
#[test]
fn env_example_values_start_poolwatch() {
    let env = env_example();
    let vars: Vec<(&str, &str)> = env
        .set
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    // Poolwatch::start_with_env gives loopback addresses on the command line,
    // which win over UDP_LISTEN and HTTP_LISTEN; it fails unless /healthz
    // answers.
    let pw = Poolwatch::start_with_env(&[], &vars);
    let state = pw.state();
    assert!(state.is_object(), "{state}");
}

// ---- Minimal YAML reading ---------------------------------------------------
//
// Enough for docker-compose.yml and `docker-compose config` output: block
// mappings with `key:` lines, found by indentation.

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// The lines under the key path `keys`, each key looked up among the
/// direct children of the previous one.
fn yaml_block(text: &str, keys: &[&str]) -> Option<String> {
    let mut lines: Vec<&str> = text.lines().collect();
    for key in keys {
        let level = lines
            .iter()
            .filter(|l| is_content(l))
            .map(|l| indent(l))
            .min()?;
        let start = lines.iter().position(|l| {
            is_content(l) && indent(l) == level && {
                let t = l.trim();
                t == format!("{key}:") || t.starts_with(&format!("{key}: "))
            }
        })?;
        let own = indent(lines[start]);
        let end = lines[start + 1..]
            .iter()
            .position(|l| is_content(l) && indent(l) <= own)
            .map_or(lines.len(), |p| start + 1 + p);
        lines = lines[start + 1..end].to_vec();
    }
    Some(lines.join("\n"))
}

/// Keys of the direct children of a block.
fn child_keys(block: &str) -> BTreeSet<String> {
    let Some(level) = block.lines().filter(|l| is_content(l)).map(indent).min() else {
        return BTreeSet::new();
    };
    block
        .lines()
        .filter(|l| is_content(l) && indent(l) == level)
        .filter_map(|l| l.trim().split_once(':').map(|(k, _)| k.to_owned()))
        .collect()
}

/// An `environment:` block, as a list (`- NAME`, `- NAME=value`) or a
/// mapping (`NAME: value`).
fn env_map(block: &str) -> BTreeMap<String, String> {
    block
        .lines()
        .filter(|l| is_content(l))
        .filter_map(|l| {
            let t = l.trim();
            let (name, value) = match t.strip_prefix("- ") {
                Some(item) => item.split_once('=').unwrap_or((item, "")),
                None => t.split_once(':')?,
            };
            Some((
                name.trim().to_owned(),
                value.trim().trim_matches('"').trim_matches('\'').to_owned(),
            ))
        })
        .collect()
}

/// Names in `${NAME}`, `${NAME:-default}`...; `$$` is an escaped dollar.
fn compose_variables(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'$' && b[i + 1] == b'$' {
            i += 2;
            continue;
        }
        if b[i] == b'$' && b[i + 1] == b'{' {
            let name: String = text[i + 2..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
        i += 1;
    }
    out
}
