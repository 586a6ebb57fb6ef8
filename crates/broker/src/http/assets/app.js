// The eventbus dashboard: plain JavaScript, no library, no network but this
// listener. It opens /api/v1/live (a WebSocket), draws the `hello` (the
// history ring, so the charts start with the last minutes), then redraws on
// every `snapshot` (once a second) and adds `event`s to the feed as they
// come. A lost connection is retried with backoff, without a reload.
"use strict";

const MAX_POINTS = 900; // 15 minutes of 1-second samples.
const MAX_EVENTS = 100;
const samples = [];
let deadLetters = 0;
let retry = 1000;

const $ = (id) => document.getElementById(id);

function fmt(n, digits = 0) {
  if (n === null || n === undefined) return "–";
  if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return Number(n).toFixed(digits);
}
function rate(n) { return fmt(n, n > 0 && n < 10 ? 1 : 0); }
function bytes(n) {
  if (!n) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + units[i];
}
function micros(us) {
  if (us === null || us === undefined) return "–";
  if (us >= 1e6) return (us / 1e6).toFixed(2) + " s";
  if (us >= 1e3) return (us / 1e3).toFixed(1) + " ms";
  return us + " µs";
}
function age(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms >= 60000) return (ms / 60000).toFixed(1) + " min";
  return (ms / 1000).toFixed(1) + " s";
}
function clock(ms) { return new Date(ms).toLocaleTimeString(); }
function since(ms) {
  if (!ms) return "–";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 120) return s + " s ago";
  if (s < 7200) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}

// Builds table rows with text content only: names come from clients.
function fill(tableId, rows, key, cells) {
  const body = $(tableId).tBodies[0];
  body.replaceChildren();
  if (rows.length === 0) {
    const tr = body.insertRow();
    const td = tr.insertCell();
    td.colSpan = $(tableId).tHead.rows[0].cells.length;
    td.className = "empty";
    td.textContent = "none";
    return;
  }
  for (const row of rows) {
    const tr = body.insertRow();
    tr.dataset.key = key(row);
    for (const cell of cells(row)) {
      const td = tr.insertCell();
      if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell;
    }
  }
}

function scoreBar(score) {
  const wrap = document.createElement("span");
  const bar = document.createElement("span");
  bar.className = "score" + (score < 50 ? " low" : score < 80 ? " mid" : "");
  const fillEl = document.createElement("i");
  fillEl.style.width = score + "%";
  bar.appendChild(fillEl);
  wrap.appendChild(bar);
  wrap.appendChild(document.createTextNode(String(score)));
  return wrap;
}

function drawChart(canvasId, series) {
  const canvas = $(canvasId);
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight || 150;
  canvas.width = width * ratio; canvas.height = height * ratio;
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.clearRect(0, 0, width, height);
  const left = 44, bottom = 18, top = 6, right = 6;
  const w = width - left - right, h = height - top - bottom;
  let max = 1;
  for (const s of series) for (const p of samples) max = Math.max(max, s.value(p));
  const style = getComputedStyle(document.documentElement);
  ctx.strokeStyle = style.getPropertyValue("--line"); ctx.fillStyle = style.getPropertyValue("--muted");
  ctx.font = "11px system-ui, sans-serif"; ctx.lineWidth = 1;
  for (let i = 0; i <= 2; i++) {
    const y = top + h - (h * i) / 2;
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + w, y); ctx.stroke();
    ctx.fillText(fmt((max * i) / 2), 4, y + 4);
  }
  if (samples.length > 1) {
    const span = samples[samples.length - 1].at_ms - samples[0].at_ms;
    ctx.fillText("−" + Math.round(span / 1000) + " s", left, height - 4);
    ctx.fillText("now", left + w - 22, height - 4);
  }
  const n = samples.length;
  for (const s of series) {
    ctx.strokeStyle = style.getPropertyValue(s.color); ctx.lineWidth = 1.6; ctx.beginPath();
    samples.forEach((p, i) => {
      const x = left + (n <= 1 ? w : (w * i) / (n - 1));
      const y = top + h - (h * s.value(p)) / max;
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
}

function drawCharts() {
  drawChart("chart-messages", [
    { color: "--c1", value: (p) => p.publish_rate },
    { color: "--c2", value: (p) => p.deliver_rate },
  ]);
  drawChart("chart-tasks", [
    { color: "--c1", value: (p) => p.ack_rate },
    { color: "--c3", value: (p) => p.dead_letter_rate },
  ]);
  drawChart("chart-depth", [
    { color: "--c1", value: (p) => p.depth },
    { color: "--c2", value: (p) => p.in_flight },
  ]);
}

function addSample(sample) {
  if (!sample) return;
  const last = samples[samples.length - 1];
  if (last && last.at_ms >= sample.at_ms) return;
  samples.push(sample);
  while (samples.length > MAX_POINTS) samples.shift();
}

function showSnapshot(snap) {
  const o = snap.overview;
  addSample(o.last);
  const last = o.last || {};
  $("publish-rate").textContent = rate(last.publish_rate || 0);
  $("deliver-rate").textContent = rate(last.deliver_rate || 0);
  $("ack-rate").textContent = rate(last.ack_rate || 0);
  $("drop-rate").textContent = rate(last.drop_rate || 0);
  deadLetters = Math.max(deadLetters, last.dead_lettered || 0);
  $("dead-letters").textContent = fmt(deadLetters);
  $("depth").textContent = fmt(o.depth);
  $("in-flight").textContent = fmt(o.in_flight);
  $("connections").textContent = fmt(o.connections);
  $("rss").textContent = bytes(last.rss_bytes);
  $("uptime").textContent = "up " + Math.round(o.uptime_ms / 1000) + " s · v" + o.version;
  fill("queues", snap.queues, (q) => q.filter + "/" + q.group, (q) => [
    q.filter, q.group, fmt(q.depth), fmt(q.in_flight), age(q.oldest_age_ms),
    rate(q.enqueue_rate), rate(q.deliver_rate), rate(q.ack_rate),
    fmt(q.redelivered), fmt(q.dead_lettered), String(q.members.length),
  ]);
  fill("workers", snap.workers, (w) => w.client_id, (w) => [
    w.client_id, w.kind, rate(w.tasks_per_s), micros(w.latency_p50_us), micros(w.latency_p99_us),
    fmt(w.ok), fmt(w.failed), fmt(w.in_flight), scoreBar(w.score),
  ]);
  fill("clients", snap.clients, (c) => c.id, (c) => [
    c.id, c.identity, c.kind, c.pid ? String(c.pid) : "–", since(c.connected_at_ms),
    rate(c.in_rate), rate(c.out_rate), fmt(c.unsettled), fmt(c.outbound_depth), fmt(c.dropped),
  ]);
  fill("bridges", snap.bridges || [], (b) => b.name, (b) => {
    const s = b.status || {};
    const n = (v) => (v === undefined ? "–" : fmt(v));
    return [
      b.name, b.client_id, b.connected ? "up" : "gone", s.nats || "–",
      n(s.exported), n(s.imported), n(s.buffered), n(s.dropped), n(s.reconnects), age(b.age_ms),
    ];
  });
  drawCharts();
}

function listItem(listId, cls, atMs, text) {
  const list = $(listId);
  const li = document.createElement("li");
  li.className = cls;
  const time = document.createElement("time");
  time.textContent = clock(atMs);
  li.appendChild(time);
  li.appendChild(document.createTextNode(text));
  list.prepend(li);
  while (list.children.length > MAX_EVENTS) list.lastChild.remove();
}

function deadLetterText(topic, group, reason, attempts) {
  return topic + " in " + group + ": " + reason + " (" + attempts + " attempts)";
}

function showEvent(e) {
  switch (e.event) {
    case "connected":
      listItem("events", "connected", e.at_ms, e.client.id + " (" + e.client.kind + ", " + e.client.identity + ")");
      break;
    case "disconnected":
      listItem("events", "disconnected", e.at_ms, e.client_id + ": " + e.reason);
      break;
    case "slow_consumer":
      listItem("events", "slow-consumer", e.at_ms, e.client_id + " is slow: " + e.dropped + " dropped, " + e.outbound_depth + " buffered");
      break;
    case "dead_letter":
      deadLetters += 1;
      $("dead-letters").textContent = fmt(deadLetters);
      listItem("events", "dead-letter", e.at_ms, "dead letter " + e.message_id + " on " + e.topic);
      listItem("dead", "dead-letter", e.at_ms, deadLetterText(e.topic, e.group, e.reason, e.attempts));
      break;
  }
}

function setStatus(text, cls) {
  const el = $("status");
  el.textContent = text;
  el.className = "badge " + cls;
}

async function pollHealth() {
  try {
    const response = await fetch("/healthz", { cache: "no-store" });
    const health = await response.json();
    const el = $("health");
    el.textContent = health.status;
    el.className = "badge " + health.status;
    $("reasons").textContent = health.reasons.join("; ");
  } catch (_) {
    $("health").textContent = "unreachable";
    $("health").className = "badge off";
  }
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const socket = new WebSocket(scheme + location.host + "/api/v1/live");
  socket.onopen = () => { setStatus("live", "live"); retry = 1000; pollHealth(); };
  socket.onmessage = (message) => {
    const data = JSON.parse(message.data);
    if (data.type === "hello") {
      samples.length = 0;
      for (const s of data.history) addSample(s);
      $("dead").replaceChildren();
      for (const t of data.dead_letters.slice().reverse()) {
        listItem("dead", "dead-letter", t.queued_at_ms, deadLetterText(t.topic, t.group || "direct", t.reason || "", t.deliveries));
      }
      showSnapshot(data.snapshot);
    } else if (data.type === "snapshot") {
      showSnapshot(data);
    } else if (data.type === "event") {
      showEvent(data.event);
    } else if (data.type === "lagged") {
      listItem("events", "slow-consumer", Date.now(), "this page missed " + data.missed + " events");
    }
  };
  socket.onclose = () => {
    setStatus("reconnecting", "off");
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 5000);
  };
}

connect();
setInterval(pollHealth, 5000);
window.addEventListener("resize", drawCharts);
