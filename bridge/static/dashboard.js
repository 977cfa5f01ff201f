// ami-bridge console: webhook health, failed deliveries (resend), charts (uPlot, served by the
// bridge itself), the calls in progress and the latest events (server-sent events).
// It talks to nothing but /dashboard/* on its own origin. Data is put in the page with
// textContent only, never as HTML; actions send the session's CSRF token.
"use strict";

(function () {
  var MAX_EVENTS = 100;
  var activeBody = document.getElementById("active");
  var eventsList = document.getElementById("events");
  var conn = document.getElementById("conn");
  var activeCount = document.getElementById("active-count");
  var noCalls = document.getElementById("no-calls");
  var calls = new Map(); // CallID -> call as in EventHub.active_calls()

  function setConn(state) {
    conn.textContent = state;
    conn.className = "conn " + state;
    conn.setAttribute("data-state", state);
  }

  function pad(n, width) {
    var s = String(n);
    while (s.length < width) s = "0" + s;
    return s;
  }

  // EventTime is microseconds since the epoch; shown as local time of day (with the date if not today).
  function localTime(us) {
    if (typeof us !== "number") return "";
    var d = new Date(Math.floor(us / 1000));
    var t = pad(d.getHours(), 2) + ":" + pad(d.getMinutes(), 2) + ":" + pad(d.getSeconds(), 2) +
      "." + pad(d.getMilliseconds(), 3);
    if (d.toDateString() !== new Date().toDateString()) {
      t = d.getFullYear() + "-" + pad(d.getMonth() + 1, 2) + "-" + pad(d.getDate(), 2) + " " + t;
    }
    return t;
  }

  function text(v) {
    return v === null || v === undefined ? "" : String(v);
  }

  function cell(tr, value, cls) {
    var td = document.createElement("td");
    td.textContent = value;
    if (cls) td.className = cls;
    tr.appendChild(td);
  }

  function renderCalls() {
    var rows = document.createDocumentFragment();
    calls.forEach(function (c) {
      var tr = document.createElement("tr");
      tr.className = "call";
      tr.setAttribute("data-call-id", text(c.CallID));
      cell(tr, text(c.CallID), "callid");
      cell(tr, localTime(c.EventTime), "time");
      cell(tr, text(c.CallerIDNum));
      cell(tr, text(c.CalledNumber));
      cell(tr, (c.extensions || []).join(", "));
      cell(tr, c.answered ? "yes" : "no", c.answered ? "yes" : "no");
      rows.appendChild(tr);
    });
    activeBody.replaceChildren(rows);
    activeCount.textContent = String(calls.size);
    noCalls.hidden = calls.size > 0;
  }

  function eventRow(item) {
    var e = item.event || {};
    var li = document.createElement("li");
    li.className = "event";
    li.setAttribute("data-event-type", text(e.EventType));
    var parts = [
      ["time", localTime(e.EventTime)],
      ["ext", text(item.extension_id)],
      ["type", text(e.EventType)],
      ["flow", text(e.CallFlow)],
      ["status", text(e.CallStatus)],
      ["parties", text(e.CallerIDNum) + " -> " + text(e.CalledNumber)]
    ];
    parts.forEach(function (p) {
      var span = document.createElement("span");
      span.className = p[0];
      span.textContent = p[1];
      li.appendChild(span);
    });
    return li;
  }

  function addEvent(item) {
    eventsList.insertBefore(eventRow(item), eventsList.firstChild);
    while (eventsList.children.length > MAX_EVENTS) eventsList.removeChild(eventsList.lastChild);
  }

  // The whole state: {"active_calls": [...], "recent": [...]} (recent is oldest first).
  function applyState(state) {
    calls = new Map();
    (state.active_calls || []).forEach(function (c) { calls.set(c.CallID, c); });
    renderCalls();
    eventsList.replaceChildren();
    (state.recent || []).slice(-MAX_EVENTS).forEach(addEvent);
  }

  // One event: {"extension_id", "event", "active_call"}; active_call is the event's call now, or null.
  function applyCall(item) {
    addEvent(item);
    var id = item.event ? item.event.CallID : undefined;
    if (id === undefined || id === null) return;
    if (item.active_call) calls.set(id, item.active_call);
    else calls.delete(id);
    renderCalls();
  }

  var streamed = false; // once the stream has sent its state, the fetched one is older
  fetch("/dashboard/state", { cache: "no-store" })
    .then(function (r) { return r.json(); })
    .then(function (state) { if (!streamed) applyState(state); })
    .catch(function () { /* the stream sends the state too */ });

  var source = new EventSource("/dashboard/stream");
  source.onopen = function () { setConn("connected"); };
  source.onerror = function () { setConn("reconnecting"); };
  source.addEventListener("state", function (m) {
    streamed = true;
    setConn("connected");
    applyState(JSON.parse(m.data));
  });
  source.addEventListener("call", function (m) { applyCall(JSON.parse(m.data)); });

  // ---- who, and the CSRF token of actions ---------------------------------------------
  var csrf = "";
  var logout = document.getElementById("logout");
  fetch("/dashboard/me", { cache: "no-store", credentials: "same-origin" })
    .then(function (r) { return r.json(); })
    .then(function (me) {
      csrf = me.csrf || "";
      document.getElementById("who").textContent = me.client_id +
        (me.extensions ? " (extensions " + me.extensions.join(", ") + ")" : "");
      logout.hidden = !me.login;
    });
  logout.addEventListener("click", function () {
    post("/dashboard/logout").then(function () { window.location.replace("/dashboard"); });
  });

  function post(url) {
    return fetch(url, { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf } });
  }

  function ago(t, now) {
    if (typeof t !== "number") return "";
    var s = Math.max(0, Math.round(now - t));
    var rel = s < 90 ? s + " s" : s < 5400 ? Math.round(s / 60) + " min" : Math.round(s / 3600) + " h";
    return localTime(t * 1e6) + " (" + rel + " ago)";
  }

  function ms(v) { return typeof v === "number" ? Math.round(v * 1000) + " ms" : "-"; }

  // ---- webhook health and failed deliveries ------------------------------------------
  var subsBody = document.getElementById("subs");
  var failedBody = document.getElementById("failed");

  function renderHealth(data) {
    var rows = document.createDocumentFragment();
    var failing = 0;
    data.subscriptions.forEach(function (s) {
      var tr = document.createElement("tr");
      tr.className = "sub " + s.state;
      tr.setAttribute("data-sub-id", String(s.id));
      tr.setAttribute("data-state", s.state);
      if (s.state === "failing" || s.state === "disabled") failing += 1;
      cell(tr, s.state + (s.state === "disabled" && s.disabled_reason ? ": " + s.disabled_reason : ""), "state");
      cell(tr, text(s.extension_id));
      cell(tr, text(s.event_type));
      cell(tr, s.method + " " + s.url, "url");
      cell(tr, s.success_rate === null ? "-" : (s.success_rate * 100).toFixed(1) + "% of " + s.attempts, "rate");
      cell(tr, ms(s.latency_p50) + " / " + ms(s.latency_p95));
      cell(tr, String(s.pending));
      cell(tr, String(s.failed));
      cell(tr, s.last_error ? s.last_error + " at " + ago(s.last_error_at, data.now) : "", "error");
      cell(tr, s.failing_since ? ago(s.failing_since, data.now) : "", "since");
      rows.appendChild(tr);
    });
    subsBody.replaceChildren(rows);
    document.getElementById("sub-count").textContent = String(data.subscriptions.length);
    var fc = document.getElementById("failing-count");
    fc.textContent = failing + " failing or disabled";
    fc.hidden = failing === 0;
    document.getElementById("no-subs").hidden = data.subscriptions.length > 0;

    var frows = document.createDocumentFragment();
    data.failed.forEach(function (d) {
      var tr = document.createElement("tr");
      tr.className = "failed-delivery";
      tr.setAttribute("data-delivery-id", String(d.id));
      cell(tr, String(d.id));
      cell(tr, text(d.extension_id));
      cell(tr, text(d.event_type));
      cell(tr, text(d.call_id), "callid");
      cell(tr, d.method + " " + d.url, "url");
      cell(tr, String(d.attempts));
      var answer = text(d.last_error);
      if (d.last_status && answer.indexOf("HTTP " + d.last_status) !== 0 && answer.indexOf(String(d.last_status)) !== 0) {
        answer = "HTTP " + d.last_status + " " + answer;
      }
      cell(tr, answer, "error");
      var td = document.createElement("td");
      var b = document.createElement("button");
      b.type = "button";
      b.className = "resend";
      b.textContent = "Resend";
      b.addEventListener("click", function () {
        b.disabled = true;
        post("/dashboard/deliveries/" + d.id + "/resend").then(refresh);
      });
      td.appendChild(b);
      tr.appendChild(td);
      frows.appendChild(tr);
    });
    failedBody.replaceChildren(frows);
    document.getElementById("failed-count").textContent = String(data.failed.length);
    document.getElementById("no-failed").hidden = data.failed.length > 0;
  }

  // ---- charts -------------------------------------------------------------------------
  var charts = {};
  var COLORS = ["#1f6feb", "#1f7a3a", "#a15c00", "#8a1f1f", "#4a3a99", "#0e7c86", "#6b7480", "#b0307a"];

  function chart(id, data, series, opts) {
    var el = document.getElementById(id);
    var width = Math.max(300, el.clientWidth || 500);
    var key = id + ":" + series.map(function (s) { return s.label; }).join(",");
    if (charts[id] && charts[id].key === key) {
      charts[id].plot.setData(data);
      return;
    }
    if (charts[id]) charts[id].plot.destroy();
    var o = Object.assign({ width: width, height: 180, series: [{}].concat(series),
                            legend: { show: true }, cursor: { drag: { x: false, y: false } } }, opts || {});
    charts[id] = { key: key, plot: new uPlot(o, data, el) };
  }

  function line(label, i, extra) {
    return Object.assign({ label: label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false,
                           points: { show: true, size: 3 } }, extra || {});
  }

  function renderCharts(d) {
    if (typeof uPlot === "undefined") {
      document.getElementById("charts-section").setAttribute("data-missing", "uPlot");
      return;
    }
    var t = d.t;
    ["chart-events", "chart-latency", "chart-deliveries"].forEach(function (id) {
      document.getElementById(id).parentNode.hidden = !d.calls; // the operator's charts only
    });
    if (d.calls) {
      var types = Object.keys(d.events || {});
      chart("chart-events", [t, d.calls].concat(types.map(function (k) { return d.events[k]; })),
            [line("calls", 0, { width: 2.5 })].concat(types.map(function (k, i) { return line(k, i + 1); })));
      chart("chart-latency", [t, d.latency_p50, d.latency_p95], [line("p50", 0), line("p95", 2)]);
      chart("chart-deliveries", [t, d.delivered, d.failed], [line("delivered", 1), line("failed", 3)]);
    }
    chart("chart-ami", [t, d.ami_up, d.reconnects], [line("AMI up", 1), line("reconnects", 3)]);
  }

  var minutes = document.getElementById("minutes");
  function refresh() {
    var health = fetch("/dashboard/deliveries", { cache: "no-store", credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(renderHealth);
    var series = fetch("/dashboard/series?minutes=" + minutes.value, { cache: "no-store", credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(renderCharts);
    return Promise.all([health, series]).then(function () {
      document.body.setAttribute("data-refreshed", String(Date.now()));
    }).catch(function () { setConn("reconnecting"); });
  }
  minutes.addEventListener("change", refresh);
  refresh();
  setInterval(refresh, 5000);
})();
