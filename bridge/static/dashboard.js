// ami-bridge live dashboard: the calls in progress and the latest events, over server-sent events.
// It talks to nothing but /dashboard/state and /dashboard/stream (same origin, no library).
// Event data is put in the page with textContent only, never as HTML.
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
})();
