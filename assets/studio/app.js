// dfl studio: one page over the workspace. Reads the studio's JSON API, listens to its change
// feed (server-sent events) and redraws what changed. Requests that change anything carry the
// session token in the X-DFL-Token header.
"use strict";

const TOKEN = document.querySelector('meta[name="dfl-token"]').content;

async function api(path, options = {}) {
  const init = { credentials: "same-origin", ...options };
  if (init.method && init.method !== "GET") {
    init.headers = { "Content-Type": "application/json", "X-DFL-Token": TOKEN, ...(init.headers || {}) };
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    let message = response.statusText;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw new Error(`${response.status}: ${message}`);
  }
  return response.json();
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

// ---------- numbers people can read ----------

function formatCount(n) {
  const a = Math.abs(n);
  if (a >= 1e6) return `${+(n / 1e6).toFixed(a >= 1e7 ? 0 : 1)}M`;
  if (a >= 1e3) return `${+(n / 1e3).toFixed(a >= 1e4 ? 0 : 1)}k`;
  return `${+n.toFixed(0)}`;
}

function formatValue(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 100) return v.toFixed(0);
  if (a >= 1) return v.toFixed(2);
  return v.toPrecision(3);
}

function formatDuration(seconds) {
  if (!isFinite(seconds) || seconds < 0) return "–";
  const d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600), m = Math.floor(seconds % 3600 / 60);
  if (d > 0) return `${d} d ${h} h`;
  if (h > 0) return `${h} h ${m} min`;
  return `${m} min ${Math.floor(seconds % 60)} s`;
}

// "Nice" ticks: 1, 2 or 5 times a power of ten, about `count` of them over [lo, hi].
function niceTicks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count, pow = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map(m => m * pow).find(s => s >= raw);
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(+t.toPrecision(12));
  return ticks;
}

function logTicks(lo, hi) {
  const ticks = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 2, 5]) {
      const t = m * Math.pow(10, e);
      if (t >= lo && t <= hi) ticks.push(t);
    }
  }
  // Within a decade or two, 1-2-5 steps are too sparse: use linear steps on the log axis.
  return ticks.length >= 3 ? ticks : niceTicks(lo, hi, 4).filter(t => t > 0);
}

// ---------- a line chart with axes, log scale, zoom and labelled latest values ----------

class Chart {
  constructor(canvas, { yLabel, logY = false }) {
    this.canvas = canvas; this.yLabel = yLabel; this.logY = logY;
    this.series = []; this.view = null; this.drag = null;
    canvas.addEventListener("wheel", e => this.onWheel(e), { passive: false });
    canvas.addEventListener("mousedown", e => { this.drag = { x: e.offsetX, view: this.currentView() }; });
    window.addEventListener("mouseup", () => { this.drag = null; });
    canvas.addEventListener("mousemove", e => this.onDrag(e));
    canvas.addEventListener("dblclick", () => { this.view = null; this.draw(); });
  }
  setSeries(series) { this.series = series.filter(s => s.points.length > 0); this.draw(); }
  extent() {
    const xs = this.series.flatMap(s => s.points.map(p => p[0]));
    return xs.length ? [Math.min(...xs), Math.max(...xs)] : [0, 1];
  }
  currentView() { return this.view || this.extent(); }
  plotBox() { return { left: 64, right: this.width - 110, top: 14, bottom: this.height - 40 }; }
  // Sizes the canvas to the pixels it covers on screen, so text stays sharp at any width.
  fit() {
    const dpr = window.devicePixelRatio || 1, w = this.canvas.clientWidth;
    if (w === 0) return false;
    this.width = w; this.height = Math.round(Math.min(420, Math.max(240, w * 0.45)));
    this.canvas.style.height = `${this.height}px`;
    if (this.canvas.width !== Math.round(w * dpr) || this.canvas.height !== Math.round(this.height * dpr)) {
      this.canvas.width = Math.round(w * dpr); this.canvas.height = Math.round(this.height * dpr);
    }
    this.canvas.getContext("2d").setTransform(dpr, 0, 0, dpr, 0, 0);
    return true;
  }
  onWheel(e) {
    if (!this.series.length) return;
    e.preventDefault();
    const [x0, x1] = this.currentView(), box = this.plotBox();
    const at = x0 + (x1 - x0) * Math.min(1, Math.max(0, (e.offsetX - box.left) / (box.right - box.left)));
    const k = e.deltaY < 0 ? 0.8 : 1.25, [a, b] = this.extent();
    let n0 = at - (at - x0) * k, n1 = at + (x1 - at) * k;
    if (n1 - n0 >= b - a) { this.view = null; } else { this.view = [Math.max(a, n0), Math.min(b, n1)]; }
    this.draw();
  }
  onDrag(e) {
    if (!this.drag || !this.view) return;
    const box = this.plotBox();
    const [x0, x1] = this.drag.view, [a, b] = this.extent();
    let shift = -(e.offsetX - this.drag.x) / (box.right - box.left) * (x1 - x0);
    shift = Math.max(a - x0, Math.min(b - x1, shift));
    this.view = [x0 + shift, x1 + shift];
    this.draw();
  }
  draw() {
    if (!this.fit()) return;
    const ctx = this.canvas.getContext("2d");
    const box = this.plotBox();
    ctx.clearRect(0, 0, this.width, this.height);
    ctx.font = "13px system-ui, sans-serif";
    if (!this.series.length) {
      ctx.fillStyle = "#9aa0a6"; ctx.fillText("no data yet", box.left + 10, box.top + 30); return;
    }
    const [x0, x1] = this.currentView();
    const visible = this.series.map(s => s.points.filter(p => p[0] >= x0 && p[0] <= x1 && isFinite(p[1]) && (!this.logY || p[1] > 0)));
    const ys = visible.flat().map(p => p[1]);
    if (!ys.length) return;
    let y0 = Math.min(...ys), y1 = Math.max(...ys);
    if (this.logY) { y0 /= 1.15; y1 *= 1.15; } else { const pad = (y1 - y0) * 0.08 || Math.abs(y1) * 0.05 || 1; y0 -= pad; y1 += pad; }
    const fy = this.logY ? (v => Math.log10(v)) : (v => v);
    const X = x => box.left + (x - x0) / ((x1 - x0) || 1) * (box.right - box.left);
    const Y = y => box.bottom - (fy(y) - fy(y0)) / ((fy(y1) - fy(y0)) || 1) * (box.bottom - box.top);
    // grid and ticks
    ctx.strokeStyle = "#2c3036"; ctx.fillStyle = "#9aa0a6"; ctx.lineWidth = 1;
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (const t of (this.logY ? logTicks(y0, y1) : niceTicks(y0, y1, 5))) {
      const y = Math.round(Y(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(box.left, y); ctx.lineTo(box.right, y); ctx.stroke();
      ctx.fillText(formatValue(t), box.left - 6, y);
    }
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    for (const t of niceTicks(x0, x1, 6)) {
      const x = Math.round(X(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, box.top); ctx.lineTo(x, box.bottom); ctx.stroke();
      ctx.fillText(formatCount(t), x, box.bottom + 5);
    }
    ctx.fillText("iteration", (box.left + box.right) / 2, box.bottom + 22);
    ctx.save(); ctx.translate(14, (box.top + box.bottom) / 2); ctx.rotate(-Math.PI / 2);
    ctx.fillText(this.yLabel + (this.logY ? " (log scale)" : ""), 0, -6); ctx.restore();
    ctx.strokeStyle = "#4a4f57"; ctx.strokeRect(box.left + 0.5, box.top + 0.5, box.right - box.left, box.bottom - box.top);
    // curves, and the latest value of each at its end
    ctx.save(); ctx.beginPath(); ctx.rect(box.left, box.top, box.right - box.left, box.bottom - box.top); ctx.clip();
    this.series.forEach((s, i) => {
      const pts = visible[i];
      ctx.strokeStyle = s.color; ctx.lineWidth = 1.5; ctx.beginPath();
      pts.forEach((p, k) => (k ? ctx.lineTo(X(p[0]), Y(p[1])) : ctx.moveTo(X(p[0]), Y(p[1]))));
      ctx.stroke();
    });
    ctx.restore();
    ctx.textAlign = "left"; ctx.textBaseline = "middle";
    const used = [];
    this.series.forEach((s, i) => {
      const last = visible[i][visible[i].length - 1];
      if (!last) return;
      let y = Y(last[1]);
      while (used.some(u => Math.abs(u - y) < 14)) y += 14;
      used.push(y);
      ctx.fillStyle = s.color;
      ctx.fillText(`${s.name} ${formatValue(last[1])}`, box.right + 6, y);
    });
  }
}

// ---------- tabs and the change feed ----------

const state = { status: null, models: [], selected: null, detail: null, previewVersion: 0 };
// What the other pages' scripts (faces.js, labeller.js, tuner.js) registered: called when their
// tab is shown, and with the changed topics (null: everything, after a reconnect).
const tabHandlers = {}, changeHandlers = [];

function showTab(name) {
  const button = document.querySelector(`#tabs button[data-tab="${name}"]`);
  if (!button) return;
  document.querySelectorAll("#tabs button").forEach(b => b.classList.toggle("active", b === button));
  document.querySelectorAll(".tab").forEach(t => t.classList.toggle("active", t.id === name));
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  if (name === "training") { lossChart.draw(); evalChart.draw(); }
  for (const f of tabHandlers[name] || []) f();
}
document.querySelectorAll("#tabs button").forEach(button => button.addEventListener("click", () => showTab(button.dataset.tab)));
window.addEventListener("hashchange", () => showTab(location.hash.slice(1)));

function listen() {
  const live = document.getElementById("live");
  const source = new EventSource("/api/events");
  source.addEventListener("hello", () => { live.textContent = "live"; live.classList.add("on"); refreshAll(); });
  source.addEventListener("change", e => {
    const topics = JSON.parse(e.data);
    if (topics.includes("status")) refreshStatus();
    if (state.selected && topics.includes(`${state.selected.kind}/${state.selected.name}`)) refreshModel();
    for (const t of topics) {
      const [head, kind, name] = t.split("/");
      if (head === "live" && name) refreshLive(kind, name);
    }
    for (const f of changeHandlers) f(topics);
  });
  source.onerror = () => { live.textContent = "reconnecting…"; live.classList.remove("on"); };
}

async function refreshAll() {
  for (const f of changeHandlers) f(null);
  await refreshStatus(); await refreshModel();
}

// ---------- overview ----------

async function refreshStatus() {
  try {
    state.status = await api("/api/status");
    state.models = await api("/api/models");
  } catch (e) { document.getElementById("next").textContent = `cannot read the workspace: ${e.message}`; return; }
  const s = state.status;
  const next = document.getElementById("next");
  next.replaceChildren(el("h2", {}, "Next"), el("code", {}, s.next_step.command), " ", el("span", { class: "empty" }, s.next_step.reason));
  const sides = document.getElementById("sides");
  sides.replaceChildren(el("tr", {}, el("th", {}, ""), el("th", {}, "frames"), el("th", {}, "faces"), el("th", {}, "trash"), el("th", {}, "sorted by")));
  for (const side of s.sides) {
    sides.append(el("tr", {}, el("td", {}, side.side), el("td", {}, side.frames_extracted), el("td", {}, side.faces), el("td", {}, side.trashed_faces),
      el("td", {}, side.sort_interrupted ? "interrupted" : (side.last_sort || "–"))));
  }
  drawModelList();
  document.getElementById("merged").textContent =
    `${s.merged_frames} merged frames; result video: ${s.result_video || "not built"}`;
  fillModelSelect();
}

function drawModelList() {
  const list = document.getElementById("model-list");
  list.replaceChildren(el("tr", {}, el("th", {}, "model"), el("th", {}, "kind"), el("th", {}, "iteration")));
  if (!state.models.length) list.append(el("tr", {}, el("td", { class: "empty" }, "none yet")));
  for (const m of state.models) {
    const iteration = m.live && m.live.iteration > (m.iteration || 0) ? m.live.iteration : m.iteration;
    list.append(el("tr", {}, el("td", {}, m.name), el("td", {}, m.kind === "xseg" ? "XSeg" : "SAEHD"), el("td", {}, iteration == null ? "–" : iteration.toLocaleString())));
  }
}

// ---------- training monitor ----------

const lossChart = new Chart(document.getElementById("loss-chart"), { yLabel: "loss", logY: true });
const evalChart = new Chart(document.getElementById("eval-chart"), { yLabel: "SSIM · identity" });
window.dflCharts = { loss: lossChart, eval: evalChart };
window.addEventListener("resize", () => { lossChart.draw(); evalChart.draw(); });

function fillModelSelect() {
  const select = document.getElementById("model-select");
  const key = m => `${m.kind}/${m.name}`;
  const current = state.selected ? key(state.selected) : null;
  select.replaceChildren(...state.models.map(m => el("option", { value: key(m) }, `${m.name} (${m.kind === "xseg" ? "XSeg" : "SAEHD"})`)));
  if (!state.models.length) { state.selected = null; return; }
  const keep = state.models.find(m => key(m) === current) || state.models[0];
  select.value = key(keep);
  if (!state.selected || key(state.selected) !== key(keep)) { state.selected = keep; refreshModel(); }
}

document.getElementById("model-select").addEventListener("change", e => {
  const [kind, name] = e.target.value.split("/");
  state.selected = { kind, name };
  lossChart.view = null; evalChart.view = null;
  refreshModel();
});

function stat(label, value) { return el("div", { class: "stat" }, el("b", {}, value), el("span", {}, label)); }

async function refreshModel() {
  const m = state.selected;
  if (!m) return;
  let d;
  try { d = await api(`/api/models/${m.kind}/${encodeURIComponent(m.name)}`); } catch (_) { return; }
  state.detail = d;
  drawProgress();
  const scrub = document.getElementById("preview-scrub");
  const atEnd = scrub.disabled || +scrub.value === +scrub.max;
  scrub.max = d.previews.length; scrub.disabled = d.previews.length === 0;
  scrub.hidden = d.previews.length === 0;
  if (atEnd) scrub.value = scrub.max;
  state.previewVersion += 1;
  showPreview();
}

// A running trainer's progress changed: only its small live file is fetched; the saved
// histories on the page stay as they are.
async function refreshLive(kind, name) {
  let live;
  try { live = await api(`/api/models/${kind}/${encodeURIComponent(name)}/live`); } catch (_) { return; }
  const entry = state.models.find(m => m.kind === kind && m.name === name);
  if (entry) { entry.live = live; drawModelList(); }
  const m = state.selected;
  if (m && m.kind === kind && m.name === name && state.detail) { state.detail.live = live; drawProgress(); }
}

// The stats and the curves of the selected model: its saved state and its live progress.
function drawProgress() {
  const m = state.selected, d = state.detail;
  if (!m || !d) return;
  const saved = d.state || { iteration: 0, loss_history: [], eval_history: [], iou_history: [] };
  const live = d.live && d.live.iteration >= saved.iteration ? d.live : null;
  const iteration = live ? live.iteration : saved.iteration;
  const msPerIt = live ? live.ms_per_iteration : (saved.iteration ? saved.elapsed_secs * 1000 / saved.iteration : NaN);
  const target = d.config && d.config.target_iter ? d.config.target_iter : 0;
  const eta = target > iteration && isFinite(msPerIt) ? formatDuration((target - iteration) * msPerIt / 1000) : (target ? "reached" : "no target");
  const running = live && live.running;
  document.getElementById("stats").replaceChildren(
    stat("iteration", iteration.toLocaleString()),
    stat("ms / iteration (moving)", isFinite(msPerIt) ? msPerIt.toFixed(0) : "–"),
    stat(target ? `ETA to ${formatCount(target)}` : "ETA", eta),
    stat("last saved", saved.iteration.toLocaleString()),
    stat("run", running ? "training" : "not running"));
  document.getElementById("save-now").disabled = !running;
  document.getElementById("stop-now").disabled = !running;
  const points = [...saved.loss_history, ...((live && live.loss_since_save) || []).filter(p => p.iteration > saved.iteration)];
  if (m.kind === "xseg") {
    lossChart.setSeries([{ name: "loss", color: "#4fa3ff", points: points.map(p => [p.iteration, p.src]) }]);
    document.getElementById("eval-title").textContent = "Held-out IoU";
    const iou = saved.iou_history || [];
    evalChart.yLabel = "IoU";
    evalChart.setSeries([
      { name: "XSeg", color: "#5fd068", points: iou.map(p => [p.iteration, p.iou]) },
      { name: "hull", color: "#9aa0a6", points: iou.map(p => [p.iteration, p.hull_iou]) }]);
  } else {
    lossChart.setSeries([
      { name: "src", color: "#4fa3ff", points: points.map(p => [p.iteration, p.src]) },
      { name: "dst", color: "#ffa64f", points: points.map(p => [p.iteration, p.dst]) }]);
    document.getElementById("eval-title").textContent = "Held-out evaluation";
    const ev = saved.eval_history || [];
    evalChart.yLabel = "SSIM · identity";
    evalChart.setSeries([
      { name: "src SSIM", color: "#4fa3ff", points: ev.map(p => [p.iteration, p.src_ssim]) },
      { name: "dst SSIM", color: "#ffa64f", points: ev.map(p => [p.iteration, p.dst_ssim]) },
      { name: "identity", color: "#5fd068", points: ev.filter(p => p.swap_identity != null).map(p => [p.iteration, p.swap_identity]) }]);
  }
}

function showPreview() {
  const d = state.detail, m = state.selected;
  if (!d || !m) return;
  const scrub = document.getElementById("preview-scrub");
  const i = +scrub.value, base = `/api/models/${m.kind}/${encodeURIComponent(m.name)}`;
  const img = document.getElementById("preview");
  if (i >= d.previews.length) {
    img.src = `${base}/preview.png?v=${state.previewVersion}`;
    document.getElementById("preview-label").textContent = "(latest)";
  } else {
    img.src = `${base}/previews/${d.previews[i]}`;
    document.getElementById("preview-label").textContent = `at iteration ${d.previews[i].toLocaleString()}`;
  }
}
document.getElementById("preview-scrub").addEventListener("input", showPreview);

async function askTrainer(action) {
  const m = state.selected, note = document.getElementById("control-note");
  if (!m) return;
  try {
    await api(`/api/models/${m.kind}/${encodeURIComponent(m.name)}/control`, { method: "POST", body: JSON.stringify({ action }) });
    note.textContent = action === "save" ? "asked to save after this step" : "asked to stop after this step";
  } catch (e) { note.textContent = `not sent: ${e.message}`; }
}
document.getElementById("save-now").addEventListener("click", () => askTrainer("save"));
document.getElementById("stop-now").addEventListener("click", () => askTrainer("stop"));

// An applied XSeg mask (an image, 255 = face) as a see-through canvas of its size: every pixel
// coloured `rgb`, with the opacity `alpha(mask value)` (both 0–255).
function maskCanvas(mask, rgb, alpha) {
  const c = document.createElement("canvas");
  c.width = mask.naturalWidth; c.height = mask.naturalHeight;
  const ctx = c.getContext("2d");
  ctx.drawImage(mask, 0, 0);
  const data = ctx.getImageData(0, 0, c.width, c.height);
  const px = data.data;
  for (let i = 0; i < px.length; i += 4) {
    const a = alpha(px[i]);
    px[i] = rgb[0]; px[i + 1] = rgb[1]; px[i + 2] = rgb[2]; px[i + 3] = a;
  }
  ctx.putImageData(data, 0, 0);
  return c;
}

// The shared helpers the other pages' scripts use.
window.dfl = {
  TOKEN, api, el, formatCount, formatValue, maskCanvas, state,
  onTab(name, f) { (tabHandlers[name] = tabHandlers[name] || []).push(f); },
  onChange(f) { changeHandlers.push(f); },
};

// The other pages' scripts are deferred too and run after this one: start once they have
// registered.
document.addEventListener("DOMContentLoaded", () => {
  listen();
  showTab(location.hash.slice(1) || "overview");
});
