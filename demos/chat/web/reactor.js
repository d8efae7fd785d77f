// The reactor, live: draw one sample per second from /reactor/ws.
//
// Each message is one JSON "sample" (demos/chat/web_monitor.py says what is
// in it). The figures show the last sample; the charts keep the last
// HISTORY samples and are drawn by hand on a <canvas>: a chart is only a
// few lines from one point to the next, no library needed.

"use strict";

const $ = (id) => document.getElementById(id);
const HISTORY = 120;  // samples kept: two minutes
const samples = [];
const BLUE = "#2a7de1", ORANGE = "#e0662a";

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const socket = new WebSocket(scheme + location.host + "/reactor/ws");
  socket.onopen = () => setStatus("live");
  socket.onmessage = (message) => {
    const sample = JSON.parse(message.data);
    if (sample.type !== "sample") return;
    samples.push(sample);
    if (samples.length > HISTORY) samples.shift();
    draw(sample);
  };
  socket.onclose = (close) => setStatus(`disconnected${close.reason ? ": " + close.reason : ""} (reload to reconnect)`, true);
}

function setStatus(text, down = false) {
  $("status").textContent = text;
  $("status").classList.toggle("down", down);
}

// 1234567 -> "1.2 MB"
function bytes(n) {
  const units = ["B", "kB", "MB", "GB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(1) : String(Math.round(n))) + " " + units[i];
}

function number(n) {
  return n >= 10000 ? Math.round(n).toLocaleString("en") : String(n);
}

// -- a chart: lines over the last HISTORY samples, scaled to the largest value --------------

function chart(canvas, series, format = number) {
  // Draw at the screen's real resolution, whatever the CSS size.
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  if (canvas.width !== width * ratio) { canvas.width = width * ratio; canvas.height = height * ratio; }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);

  const top = 14, bottom = height - 4, left = 4, right = width - 4;
  let max = 0;
  for (const s of series) for (const v of s.values) max = Math.max(max, v);
  max = max > 0 ? max * 1.1 : 1;

  g.strokeStyle = "#e3e6eb";  // the baseline
  g.beginPath(); g.moveTo(left, bottom); g.lineTo(right, bottom); g.stroke();
  g.fillStyle = "#8a93a3";     // the scale: the top of the chart is worth...
  g.font = "11px system-ui, sans-serif";
  g.fillText(format(max), left, 11);

  const step = (right - left) / (HISTORY - 1);
  for (const s of series) {
    const first = HISTORY - s.values.length;  // new samples come in from the right
    g.strokeStyle = s.color;
    g.lineWidth = 1.5;
    g.beginPath();
    s.values.forEach((v, i) => {
      const x = left + (first + i) * step;
      const y = bottom - (v / max) * (bottom - top);
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  }
}

// -- one sample on the page ---------------------------------------------------------------

function draw(s) {
  $("iterations").textContent = number(s.loop.iterations_per_s);
  $("select-share").textContent = Math.round(s.loop.select_share * 100) + " %";
  $("callbacks").textContent = number(s.loop.callbacks_per_s);
  $("bytes-in").textContent = bytes(s.io.in_per_s);
  $("bytes-out").textContent = bytes(s.io.out_per_s);
  $("connections").textContent = s.connections_open;
  $("timers").textContent = s.timers.pending;
  $("users").textContent = s.chat ? s.chat.users : "–";

  const per = (f) => samples.map((x) => f(x) / x.interval);
  chart($("chart-iterations"), [{values: samples.map((x) => x.loop.iterations_per_s), color: BLUE}]);
  chart($("chart-time"), [{values: per((x) => x.loop.select_s), color: BLUE},
                          {values: per((x) => x.loop.busy_s), color: ORANGE}],
        (v) => (v * 1000).toFixed(0) + " ms/s");
  chart($("chart-bytes"), [{values: samples.map((x) => x.io.in_per_s), color: BLUE},
                           {values: samples.map((x) => x.io.out_per_s), color: ORANGE}], bytes);
  chart($("chart-open"), [{values: samples.map((x) => x.connections_open), color: BLUE},
                          {values: samples.map((x) => x.timers.pending), color: ORANGE}]);

  $("connection-rows").replaceChildren(...s.connections.map((c) => {
    const tr = document.createElement("tr");
    const cells = [c.fd, c.peer, c.kind, c.who, number(c.in), number(c.out), number(c.buffered),
                   c.closing ? "closing" : c.reading ? "reading" : "paused"];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (i >= 4 && i <= 6) td.className = "n";
      tr.append(td);
    });
    return tr;
  }));

  $("timer-note").textContent = `${s.timers.pending} pending in all; ${s.timers.scheduled_per_s}/s scheduled, ` +
    `${s.timers.fired_per_s}/s fired. The soonest of those scheduled since this page opened:`;
  $("timer-list").replaceChildren(...s.timers.soonest.map((t) => {
    const li = document.createElement("li");
    li.textContent = `in ${t.in.toFixed(3)} s: ${t.what}`;
    return li;
  }));

  $("slowest").textContent = s.loop.slowest ? `${s.loop.slowest_ms} ms: ${s.loop.slowest}` : "–";
  $("room-list").replaceChildren(...(s.chat ? s.chat.rooms : []).map((r) => {
    const li = document.createElement("li");
    li.textContent = `#${r.name}: ${r.members}`;
    return li;
  }));
}

connect();
