// poolwatch status page: renders the figures /events streams once a second.
// Every string shown may have come from a request (pool labels, release
// ids): it is only ever set as text, never parsed as HTML.
"use strict";
(function () {
  var $ = function (id) { return document.getElementById(id); };
  var last = null;
  // The admin token lives in this variable only: never in storage.
  var token = "";

  function el(tag, attrs) {
    var e = document.createElement(tag);
    var k;
    for (k in attrs || {}) {
      if (k === "text") e.textContent = attrs[k];
      else e.setAttribute(k, attrs[k]);
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined || c === false) continue;
      e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return e;
  }
  function svg(tag, attrs) {
    var e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }
  function fill(node, children) {
    while (node.firstChild) node.removeChild(node.firstChild);
    children.forEach(function (c) { if (c) node.appendChild(c); });
  }
  function kv(pairs) {
    var out = [];
    pairs.forEach(function (p) {
      out.push(el("dt", { text: p[0] }));
      out.push(typeof p[1] === "string" ? el("dd", { text: p[1] }) : el("dd", null, p[1]));
    });
    return out;
  }
  function num(x, digits) {
    if (x === null || x === undefined || isNaN(x)) return "–";
    return x.toFixed(digits === undefined ? 1 : digits);
  }
  function ratio(r, bad, total, what) {
    if (r === null || r === undefined) return "no traffic";
    return (r * 100).toFixed(r > 0 && r < 0.01 ? 2 : 1) + " % (" + bad + " " + what.replace("N", total) + ")";
  }
  function ms(s) {
    if (s === null || s === undefined) return "–";
    return s < 1 ? (s * 1000).toFixed(s < 0.01 ? 1 : 0) + " ms" : s.toFixed(2) + " s";
  }
  function age(secs) {
    secs = Math.max(0, Math.round(secs));
    if (secs < 60) return secs + " s";
    var m = Math.floor(secs / 60);
    if (m < 60) return m + " min " + (secs % 60) + " s";
    var h = Math.floor(m / 60);
    return h + " h " + (m % 60) + " min";
  }
  var KIND = {
    failover: "Failover", pool_switch: "Pool switch", recovery: "Recovery",
    error_rate: "High error rate", users_seeing_errors: "Users seeing errors",
    maintenance: "Maintenance", test: "Test"
  };
  var OUTCOME = {
    sent: "sent", failed: "failed (every sink gave up)", dropped: "dropped (queue full)",
    suppressed_cooldown: "held back (cooldown)",
    suppressed_maintenance: "held back (maintenance)"
  };

  function chart(p, seconds) {
    var w = 300, h = 80, n = Math.max(p.requests.length, 2);
    // The last second is still filling: drawn, but not counted for scale.
    var peak = 1;
    for (var i = 0; i < p.requests.length; i++) {
      peak = Math.max(peak, p.requests[i], p.failures[i]);
    }
    var s = svg("svg", {
      "class": "chart", viewBox: "0 0 " + w + " " + h, preserveAspectRatio: "none",
      role: "img",
      "aria-label": p.pool + ": requests and failures per second over the last " + seconds + " s, peak " + peak + "/s"
    });
    [0.5, 1].forEach(function (f) {
      var y = (h - 2) * (1 - f) + 1;
      s.appendChild(svg("line", { "class": "grid", x1: 0, x2: w, y1: y, y2: y }));
    });
    function line(values, cls) {
      var pts = values.map(function (v, i) {
        return (i * w / (n - 1)).toFixed(1) + "," + ((h - 2) * (1 - v / peak) + 1).toFixed(1);
      });
      s.appendChild(svg("polyline", { "class": cls, points: pts.join(" ") }));
    }
    line(p.requests, "req");
    line(p.failures, "fail");
    return [s, el("p", { "class": "legend" },
      el("span", { "class": "req", text: "── requests/s" }), "  ",
      el("span", { "class": "fail", text: "- - failures/s" }),
      " · last " + seconds + " s, peak " + peak + "/s")];
  }

  function failingPools(d) {
    var out = {};
    d.open_incidents.forEach(function (i) { if (i.pool) out[i.pool] = true; });
    return out;
  }

  function renderPools(d) {
    var failing = failingPools(d);
    var cards = d.pools.map(function (p) {
      var tags = [];
      if (p.pool === d.primary) tags.push(el("span", { "class": "tag primary", text: "primary" }));
      if (p.pool === d.serving_pool) tags.push(el("span", { "class": "tag serving", text: "serving" }));
      if (p.idle) tags.push(el("span", { "class": "tag idle", text: "idle" }));
      if (failing[p.pool]) tags.push(el("span", { "class": "tag failing", text: "failing" }));
      else if (!p.idle && p.known) tags.push(el("span", { "class": "tag ok", text: "healthy" }));
      var c = p.count_window, t = p.time_window;
      var reqs = p.requests.length > 1 ? p.requests[p.requests.length - 2] : 0;
      var fails = p.failures.length > 1 ? p.failures[p.failures.length - 2] : 0;
      var lat = t.latency_seconds || c.latency_seconds;
      var head = el("h3", null, el("span", { text: p.pool }));
      tags.forEach(function (t) { head.appendChild(t); });
      var card = el("article", {
        "class": "pool", "data-pool": p.pool,
        "data-failing": failing[p.pool] ? "true" : "false"
      }, head,
        el("dl", { "class": "kv" }, ...kv([
          ["Requests/s", reqs + (fails ? " (" + fails + " failed attempts)" : "")],
          ["Upstream errors", ratio(c.upstream_error_ratio, c.failures, c.attempts, "of the last N attempts")],
          ["", ratio(t.upstream_error_ratio, t.failures, t.attempts, "of N attempts in " + d.window_seconds + " s")],
          ["Client errors", ratio(c.client_error_ratio, c.client_5xx, c.requests, "of the last N requests")],
          ["", ratio(t.client_error_ratio, t.client_5xx, t.requests, "of N requests in " + d.window_seconds + " s")],
          ["p50 / p95 / p99", lat ? ms(lat[0]) + " / " + ms(lat[1]) + " / " + ms(lat[2]) : "–"],
          ["Last attempt", p.last_attempt_seconds_ago === null ? "never" : age(p.last_attempt_seconds_ago) + " ago"]
        ])));
      chart(p, d.window_seconds).forEach(function (n) { card.appendChild(n); });
      return card;
    });
    fill($("pools"), cards);
    var s = "Serving: " + (d.serving_pool || "none yet") + " · primary: " + d.primary;
    s += d.open_incidents.length ? " · " + d.open_incidents.length + " open incident" + (d.open_incidents.length > 1 ? "s" : "") : " · no open incidents";
    $("summary").textContent = s;
  }

  function evidenceFor(d, inc) {
    for (var i = d.recent.length - 1; i >= 0; i--) {
      var r = d.recent[i];
      if (r.kind === inc.kind && (r.pool || null) === (inc.pool || null)) return r;
    }
    return null;
  }

  function renderIncidents(d) {
    var box = $("incidents");
    if (!d.open_incidents.length) {
      var lastResolved = null;
      for (var i = d.recent.length - 1; i >= 0; i--) {
        if (d.recent[i].resolved) { lastResolved = d.recent[i]; break; }
      }
      fill(box, [el("p", { "class": "good", id: "no-incidents", text: "No open incidents." }),
        lastResolved && el("p", { "class": "muted", text: "Last ended: " + lastResolved.title + " (" + lastResolved.at + ")" })]);
      return;
    }
    fill(box, d.open_incidents.map(function (inc) {
      var ev = evidenceFor(d, inc);
      var opened = Date.parse(inc.opened_at) / 1000;
      var sev = ev ? ev.severity : "warning";
      var node = el("article", { "class": "incident", "data-kind": inc.kind, "data-severity": sev },
        el("h3", null, el("span", { text: (KIND[inc.kind] || inc.kind) + (inc.pool ? ": " + inc.pool : "") }),
          el("span", { "class": "tag " + sev, text: sev }), el("span", { "class": "tag", text: "open" })),
        el("p", { text: "Open for " + (isNaN(opened) ? "?" : age(d.now - opened)) + ", since " + inc.opened_at }));
      if (ev) {
        node.appendChild(el("p", null, el("strong", { text: ev.title })));
        if (ev.summary) node.appendChild(el("p", { text: ev.summary }));
        if (ev.fields && ev.fields.length) node.appendChild(el("dl", { "class": "kv" }, ...kv(ev.fields)));
      } else {
        node.appendChild(el("p", { "class": "muted", text: "No notification about it among the last ones." }));
      }
      return node;
    }));
  }

  function renderRetries(d) {
    var pairs = d.retries.map(function (r) {
      return [r.from + " → " + r.to, num(r.per_second) + "/s (" + r.total + " since start)"];
    });
    fill($("retries"), pairs.length ? kv(pairs) : [el("dd", { text: "One pool only: nothing to retry on." })]);
  }

  function renderIngest(d) {
    var g = d.ingest;
    var reasons = function (m) {
      var ks = Object.keys(m);
      return ks.length ? ks.map(function (k) { return k + " " + m[k]; }).join(", ") : "none";
    };
    fill($("ingest"), kv([
      ["Datagrams/s", num(g.datagrams_per_second)],
      ["Datagrams", String(g.datagrams)],
      ["Malformed", reasons(g.malformed)],
      ["Rejected", reasons(g.rejected)],
      ["Kernel drops", g.kernel_drops === null ? "unknown" : String(g.kernel_drops)]
    ]));
  }

  function renderMaintenance(m) {
    var st = $("maint-state");
    st.setAttribute("data-on", m.on ? "true" : "false");
    var s = m.on ? "On" : "Off";
    if (m.on) {
      s += " since " + m.since + (m.until ? ", until " + m.until : ", until turned off");
      if (m.reason) s += " — " + m.reason;
      if (m.by) s += " (by " + m.by + ")";
      var held = Object.keys(m.suppressed || {}).map(function (k) { return k + " " + m.suppressed[k]; });
      if (held.length) s += ". Held back: " + held.join(", ");
      if (m.source === "file" || m.source === "setting") s += ". Set by the " + (m.source === "file" ? "flag file" : "MAINTENANCE_MODE setting") + ".";
    }
    st.textContent = s;
    var b = $("maint-toggle");
    b.disabled = busy;
    b.textContent = m.on ? "Turn maintenance off" : "Turn maintenance on";
    b.setAttribute("data-action", m.on ? "off" : "on");
    $("reason-row").hidden = m.on;
    $("for-row").hidden = m.on;
  }

  function renderRecent(d) {
    var items = d.recent.slice().reverse().map(function (r) {
      var outcome = r.outcome;
      if (outcome === "sent" && r.delivered === false) outcome = "failed";
      var out = OUTCOME[outcome] || outcome;
      if (outcome === "sent") out = r.delivered ? "sent, delivered" : "sent, delivering…";
      var cls = outcome === "sent" ? "good" : outcome === "failed" || outcome === "dropped" ? "bad" : "warn";
      return el("li", { "data-outcome": outcome },
        el("time", { text: r.at }), el("span", { "class": "title", text: r.title }),
        el("span", { "class": cls, text: out }));
    });
    fill($("recent"), items.length ? items : [el("li", { "class": "muted", text: "Nothing yet." })]);
  }

  function render(d) {
    last = d;
    $("token-row").hidden = !d.admin_token_required || token !== "" && !tokenWanted;
    renderPools(d);
    renderIncidents(d);
    renderRetries(d);
    renderIngest(d);
    renderMaintenance(d.maintenance);
    renderRecent(d);
    var c = $("conn");
    c.setAttribute("data-state", "live");
    c.textContent = "Live · updated " + new Date(d.now * 1000).toISOString().slice(11, 19) + " UTC";
    $("foot").textContent = "poolwatch · up " + age(d.uptime_seconds) + " · updates every second";
    document.title = (d.open_incidents.length ? "⚠ " + d.open_incidents.length + " open · " : "") + "poolwatch";
  }

  var busy = false, tokenWanted = false;
  $("maint-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    if (!last || busy) return;
    var on = !last.maintenance.on;
    var typed = $("maint-token").value;
    if (typed) token = typed;
    if (last.admin_token_required && !token) {
      tokenWanted = true;
      $("token-row").hidden = false;
      $("maint-token").focus();
      $("maint-msg").textContent = "This poolwatch needs its admin token to change maintenance.";
      return;
    }
    var body = { on: on, by: "status page" };
    if (on) {
      var reason = $("maint-reason").value.trim();
      if (reason) body.reason = reason;
      if ($("maint-for").value) body["for"] = $("maint-for").value;
    }
    var headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    busy = true;
    $("maint-toggle").disabled = true;
    $("maint-msg").textContent = "Sending…";
    fetch("maintenance", { method: "POST", headers: headers, body: JSON.stringify(body), cache: "no-store" })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (j) { return [r.status, j]; });
      })
      .then(function (res) {
        busy = false;
        if (res[0] === 200) {
          tokenWanted = false;
          $("maint-token").value = "";
          last.maintenance = res[1];
          renderMaintenance(res[1]);
          $("maint-msg").textContent = "Maintenance turned " + (res[1].on ? "on." : "off.");
          return;
        }
        if (res[0] === 401) {
          token = "";
          $("maint-token").value = "";
          tokenWanted = true;
          $("token-row").hidden = false;
        }
        $("maint-msg").textContent = "Refused (" + res[0] + "): " + (res[1].error || "no reason given");
        renderMaintenance(last.maintenance);
      })
      .catch(function (e) {
        busy = false;
        $("maint-msg").textContent = "Could not reach poolwatch: " + e;
        renderMaintenance(last.maintenance);
      });
  });

  var src = new EventSource("events");
  src.onmessage = function (ev) {
    try { render(JSON.parse(ev.data)); } catch (e) { $("conn").textContent = "Bad data: " + e; }
  };
  src.onerror = function () {
    var c = $("conn");
    c.setAttribute("data-state", "lost");
    c.textContent = "Connection lost, reconnecting…" + (last ? " (figures below are from " + new Date(last.now * 1000).toISOString().slice(11, 19) + " UTC)" : "");
  };
})();
