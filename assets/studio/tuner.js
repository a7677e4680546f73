// dfl studio: the merge tuner. A dst frame merged with the settings on the page, redrawn as a
// control changes (debounced; the last request wins), the dst frame while Space or the
// "original" button is held, the grid of alternatives `dfl merge --preview` draws, and the
// merge config file (data_dst/merge.config.json) that `dfl merge` uses: the default settings
// and scenes, frame ranges merged with settings of their own. The controls edit the scene the
// frame scrubber is in, else the default.
"use strict";

(() => {
  const { api, el, TOKEN } = window.dfl;
  const root = document.getElementById("tuner");

  // Milliseconds a control or the scrubber must rest before the frame is merged again.
  const DEBOUNCE_MS = 70;
  // The widest merged frame asked for unless "full size" is on (CSS px × devicePixelRatio).
  const MAX_WIDTH_PX = 1600;
  // Modes that use the hist-match settings.
  const HIST_MODES = ["hist-match", "seamless-hist-match"];

  const S = {
    started: false, schema: [], models: [], xsegModels: [], model: null, xseg: "",
    session: null, frame: 1, frames: 0,
    settings: { default: {}, scenes: [] }, saved: null, exists: false, configPath: "data_dst/merge.config.json",
    pendingStart: null, editing: -1,
    seq: 0, abort: null, timer: null, renders: 0, last: null,
    mergedUrl: null, originalUrl: null, originalFrame: null, originalHash: null, showOriginal: false,
    stale: false, error: null,
  };
  window.dflTuner = S;

  // ---------- the page's parts ----------

  const modelSelect = el("select", { id: "tuner-model", title: "the trained model to merge with" });
  const xsegSelect = el("select", { id: "tuner-xseg", title: "the XSeg model of the xseg mask modes" });
  const sessionText = el("span", { id: "tuner-session", class: "tuner-dim" });
  const toolbar = el("div", { class: "toolbar tuner-toolbar" },
    el("label", {}, "Model ", modelSelect), el("label", {}, "XSeg ", xsegSelect), sessionText);

  const image = el("img", { id: "tuner-image", alt: "the merged frame" });
  const viewBadge = el("span", { id: "tuner-view", class: "tuner-badge" }, "merged");
  const stage = el("div", { class: "tuner-stage" }, image, viewBadge);
  const frameInfo = el("span", { id: "tuner-frame-info" });
  const timing = el("span", { id: "tuner-timing", class: "tuner-dim" });
  const originalButton = el("button", { id: "tuner-original", title: "hold to see the dst frame (or hold Space)" }, "Hold: original");
  const fullSize = el("input", { type: "checkbox", id: "tuner-full" });
  const infoRow = el("div", { class: "tuner-row" }, frameInfo, timing, el("span", { class: "tuner-grow" }),
    originalButton, el("label", { title: "merge at full size instead of the page's width" }, fullSize, " full size"));
  const slider = el("input", { type: "range", id: "tuner-scrub", min: "1", max: "1", value: "1" });
  const frameNumber = el("input", { type: "number", id: "tuner-frame", min: "1", max: "1", value: "1", title: "frame number" });
  const sceneBar = el("div", { id: "tuner-scene-bar", class: "tuner-scene-bar" });
  const scrubber = el("div", { class: "tuner-scrubber" }, el("div", { class: "tuner-track" }, slider, sceneBar), frameNumber);
  const hint = el("p", { class: "hint" }, "←/→: previous/next frame (Shift: 10) · hold Space or the button: the dst frame · the controls edit the scene under the scrubber, else the default");
  const error = el("div", { id: "tuner-error", class: "tuner-error" });
  const viewer = el("div", { class: "card tuner-viewer" }, stage, infoRow, scrubber, hint, error);

  const editingText = el("div", { id: "tuner-editing", class: "tuner-editing" });
  const controls = el("div", { id: "tuner-controls", class: "tuner-controls" });
  const saveButton = el("button", { id: "tuner-save", title: "write the default settings and the scenes to the merge config file" }, "Save settings");
  const saveState = el("span", { id: "tuner-save-state", class: "tuner-save-state" });
  const resetButton = el("button", { id: "tuner-reset", title: "the settings edited now back to dfl's defaults" }, "Defaults");
  const savePath = el("div", { id: "tuner-config-path", class: "hint" });
  const settingsCard = el("div", { class: "card tuner-settings" },
    el("h2", {}, "Settings"), editingText, controls,
    el("div", { class: "tuner-row" }, saveButton, resetButton, saveState), savePath);

  const startButton = el("button", { id: "tuner-scene-start", title: "a new scene starts at this frame" }, "Scene starts here");
  const endButton = el("button", { id: "tuner-scene-end", title: "the new scene ends at this frame", disabled: "" }, "Scene ends here");
  const sceneNote = el("span", { id: "tuner-scene-note", class: "tuner-dim" });
  const sceneTable = el("table", { id: "tuner-scenes", class: "tuner-scenes" });
  const scenesCard = el("div", { class: "card tuner-scenes-card" },
    el("h2", {}, "Scenes"),
    el("p", { class: "hint" }, "frame ranges merged with settings of their own; every other frame takes the default"),
    el("div", { class: "tuner-row" }, startButton, endButton, sceneNote), sceneTable);

  const gridButton = el("button", { id: "tuner-grid-button", title: "the face region under other masks, colour transfers and modes" }, "Show alternatives");
  const gridNote = el("span", { id: "tuner-grid-note", class: "tuner-dim" });
  const gridImage = el("img", { id: "tuner-grid", alt: "the grid of alternatives", hidden: "" });
  const gridCard = el("div", { class: "card tuner-grid-card" },
    el("div", { class: "tuner-row" }, el("h2", {}, "Alternatives"), gridButton, gridNote), gridImage);

  const side = el("div", { class: "tuner-side" }, settingsCard, scenesCard);
  root.append(toolbar, el("div", { class: "tuner-layout" }, el("div", { class: "tuner-main" }, viewer, gridCard), side));

  // ---------- small helpers ----------

  const clone = o => JSON.parse(JSON.stringify(o));
  const isActive = () => root.classList.contains("active");
  const optionLabel = v => String(v);

  function showError(message) {
    S.error = message || null;
    error.textContent = message || "";
    error.hidden = !message;
  }

  // A frame range's text as the file writes it: "A..B", or "N" for one frame.
  const rangeText = (a, b) => (a === b ? `${a}` : `${a}..${b}`);
  // [first, last] of a scene (1-based; open ends clamp to the clip).
  function sceneBounds(scene) {
    const text = String(scene.frames);
    const [a, b] = text.includes("..") ? text.split("..") : [text, text];
    const first = a === "" ? 1 : parseInt(a, 10);
    const last = b === "" ? Math.max(S.frames, first) : parseInt(b.replace("=", ""), 10);
    return [first, last];
  }
  function sceneAt(frame) {
    return S.settings.scenes.findIndex(s => { const [a, b] = sceneBounds(s); return frame >= a && frame <= b; });
  }
  function edited() {
    return S.editing >= 0 ? S.settings.scenes[S.editing].settings : S.settings.default;
  }
  const isDirty = () => S.saved !== null && JSON.stringify(S.settings) !== S.saved;

  async function fetchImage(url, signal) {
    const response = await fetch(url, { credentials: "same-origin", signal, headers: { "X-DFL-Token": TOKEN } });
    if (!response.ok) {
      let message = response.statusText;
      try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
      const e = new Error(`${response.status}: ${message}`); e.status = response.status; throw e;
    }
    return { blob: await response.blob(), headers: response.headers };
  }

  // FNV-1a of the image bytes: what the page (and its test) compares renders by.
  async function hashOf(blob) {
    const bytes = new Uint8Array(await blob.arrayBuffer());
    let h = 0x811c9dc5;
    for (let i = 0; i < bytes.length; i++) { h ^= bytes[i]; h = Math.imul(h, 0x01000193) >>> 0; }
    return h.toString(16).padStart(8, "0");
  }

  function query(extra) {
    const q = new URLSearchParams({ model: S.model || "", xseg: S.xseg || "", frame: String(S.frame), ...extra });
    return q.toString();
  }

  function wantedWidth() {
    if (fullSize.checked) return 0;
    const css = stage.clientWidth || 960;
    return Math.min(MAX_WIDTH_PX, Math.round(css * (window.devicePixelRatio || 1)));
  }

  // ---------- controls ----------

  const inputs = {};

  function buildControls() {
    controls.replaceChildren();
    for (const f of S.schema) {
      const row = el("div", { class: "tuner-control", "data-field": f.name, title: f.help });
      const label = el("label", { for: `tuner-${f.name}` }, f.label);
      if (f.kind === "enum") {
        const select = el("select", { id: `tuner-${f.name}`, "data-field": f.name });
        for (const o of f.options) select.append(el("option", { value: o }, optionLabel(o)));
        select.addEventListener("change", () => setValue(f.name, select.value));
        inputs[f.name] = { set: v => { select.value = v; } };
        row.append(label, select);
      } else if (f.kind === "int") {
        const range = el("input", { type: "range", id: `tuner-${f.name}`, min: f.min, max: f.max, step: "1", "data-field": f.name });
        const number = el("input", { type: "number", id: `tuner-${f.name}-number`, min: f.min, max: f.max, step: "1", class: "tuner-number" });
        range.addEventListener("input", () => { number.value = range.value; setValue(f.name, parseInt(range.value, 10)); });
        number.addEventListener("change", () => {
          const v = Math.max(f.min, Math.min(f.max, parseInt(number.value, 10) || 0));
          number.value = v; range.value = v; setValue(f.name, v);
        });
        inputs[f.name] = { set: v => { range.value = v; number.value = v; } };
        row.append(label, range, number);
      } else {
        const box = el("input", { type: "checkbox", id: `tuner-${f.name}`, "data-field": f.name });
        box.addEventListener("change", () => setValue(f.name, box.checked));
        inputs[f.name] = { set: v => { box.checked = !!v; } };
        row.append(label, box);
      }
      controls.append(row);
    }
  }

  // Shows the edited settings in the controls.
  function fillControls() {
    const s = edited();
    for (const f of S.schema) if (inputs[f.name]) inputs[f.name].set(s[f.name] ?? f.default);
    const hist = HIST_MODES.includes(s.mode);
    for (const name of ["hist_match_threshold", "masked_hist_match"]) {
      const row = controls.querySelector(`[data-field="${name}"]`);
      if (row) row.classList.toggle("tuner-unused", !hist);
    }
    if (S.editing >= 0) {
      const [a, b] = sceneBounds(S.settings.scenes[S.editing]);
      editingText.textContent = `Editing scene ${S.editing + 1} (frames ${rangeText(a, b)})`;
      editingText.className = "tuner-editing tuner-editing-scene";
    } else {
      editingText.textContent = "Editing the default settings (frames outside every scene)";
      editingText.className = "tuner-editing";
    }
  }

  function setValue(name, value) {
    edited()[name] = value;
    fillControls();
    if (S.editing >= 0) drawScenes();
    updateSaveState();
    scheduleRender();
  }

  resetButton.addEventListener("click", () => {
    const s = edited();
    for (const f of S.schema) s[f.name] = clone(f.default);
    fillControls(); updateSaveState(); scheduleRender();
  });

  // ---------- the frame ----------

  function setFrame(frame, { render = true } = {}) {
    const n = Math.max(1, Math.min(S.frames || 1, Math.round(frame) || 1));
    S.frame = n;
    slider.value = n; frameNumber.value = n;
    const editing = sceneAt(n);
    if (editing !== S.editing) { S.editing = editing; }
    fillControls();
    drawScenes();
    endButton.disabled = S.pendingStart === null;
    if (render) scheduleRender();
  }

  slider.addEventListener("input", () => setFrame(parseInt(slider.value, 10)));
  frameNumber.addEventListener("change", () => setFrame(parseInt(frameNumber.value, 10)));
  fullSize.addEventListener("change", () => scheduleRender());

  function scheduleRender() {
    clearTimeout(S.timer);
    S.timer = setTimeout(renderNow, DEBOUNCE_MS);
  }

  // Merges the frame with the edited settings; a newer call aborts this one.
  async function renderNow() {
    if (!S.model || !S.frames) return;
    const seq = ++S.seq;
    if (S.abort) S.abort.abort();
    const abort = new AbortController(); S.abort = abort;
    const settings = JSON.stringify(edited());
    const frame = S.frame;
    const started = performance.now();
    timing.textContent = "merging…";
    try {
      const { blob, headers } = await fetchImage(`/api/tuner/render?${query({ settings, width: String(wantedWidth()) })}`, abort.signal);
      if (seq !== S.seq) return;
      const hash = await hashOf(blob);
      const ms = Math.round(performance.now() - started);
      if (S.mergedUrl) URL.revokeObjectURL(S.mergedUrl);
      S.mergedUrl = URL.createObjectURL(blob);
      S.renders += 1;
      S.last = { frame, settings, hash, bytes: blob.size, ms, serverMs: +headers.get("x-dfl-render-ms"), name: headers.get("x-dfl-frame"), faces: +headers.get("x-dfl-faces") };
      showView();
      const faces = S.last.faces === 1 ? "1 face" : `${S.last.faces} faces`;
      frameInfo.textContent = `frame ${frame} / ${S.frames} (${S.last.name}) · ${faces}`;
      timing.textContent = `merged in ${ms} ms (server ${S.last.serverMs} ms)`;
      showError(null);
      prefetchOriginal(frame);
    } catch (e) {
      if (e.name === "AbortError" || seq !== S.seq) return;
      // Another page's request overtook this one in the server: ask again.
      if (e.status === 409 && /newer render/.test(e.message)) { scheduleRender(); return; }
      timing.textContent = "";
      showError(`cannot merge frame ${frame}: ${e.message}`);
    }
  }

  // The dst frame, fetched once per frame so holding the key shows it at once.
  async function prefetchOriginal(frame) {
    if (S.originalFrame === frame) return;
    try {
      const { blob } = await fetchImage(`/api/tuner/render?${query({ view: "original", frame: String(frame), width: String(wantedWidth()) })}`);
      if (frame !== S.frame) return;
      const hash = await hashOf(blob);
      if (S.originalUrl) URL.revokeObjectURL(S.originalUrl);
      S.originalUrl = URL.createObjectURL(blob);
      S.originalFrame = frame;
      S.originalHash = hash;
      showView();
    } catch (_) { /* the merged frame still shows */ }
  }

  function showView() {
    const original = S.showOriginal && S.originalUrl && S.originalFrame === S.frame;
    const url = original ? S.originalUrl : S.mergedUrl;
    if (url && image.src !== url) image.src = url;
    viewBadge.textContent = original ? "original (dst)" : "merged";
    viewBadge.classList.toggle("tuner-badge-original", !!original);
    originalButton.classList.toggle("active", S.showOriginal);
  }

  function holdOriginal(on) {
    if (S.showOriginal === on) return;
    S.showOriginal = on;
    if (on) prefetchOriginal(S.frame);
    showView();
  }
  originalButton.addEventListener("mousedown", e => { e.preventDefault(); holdOriginal(true); });
  originalButton.addEventListener("touchstart", e => { e.preventDefault(); holdOriginal(true); }, { passive: false });
  window.addEventListener("mouseup", () => holdOriginal(false));
  window.addEventListener("touchend", () => holdOriginal(false));
  window.addEventListener("blur", () => holdOriginal(false));

  // Keys act unless the focus is in a field that uses them itself.
  function keyTarget(e) {
    const t = e.target;
    if (!t || !t.tagName) return true;
    if (t === slider) return true;
    if (t.tagName === "SELECT" || t.tagName === "TEXTAREA") return false;
    if (t.tagName === "INPUT" && t.type !== "checkbox") return false;
    return true;
  }
  document.addEventListener("keydown", e => {
    if (!isActive() || !keyTarget(e) || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
      e.preventDefault();
      const step = (e.shiftKey ? 10 : 1) * (e.key === "ArrowLeft" ? -1 : 1);
      setFrame(S.frame + step);
    } else if (e.key === " ") {
      e.preventDefault();
      holdOriginal(true);
    }
  });
  document.addEventListener("keyup", e => {
    if (e.key !== " ") return;
    if (isActive() && keyTarget(e)) e.preventDefault();
    holdOriginal(false);
  });

  // ---------- scenes ----------

  function drawScenes() {
    sceneBar.replaceChildren();
    const n = Math.max(1, S.frames);
    S.settings.scenes.forEach((s, i) => {
      const [a, b] = sceneBounds(s);
      const seg = el("div", { class: `tuner-scene-seg${i === S.editing ? " tuner-scene-current" : ""}`, title: `scene ${i + 1}: frames ${rangeText(a, b)}` });
      seg.style.left = `${((a - 1) / n) * 100}%`;
      seg.style.width = `${Math.max(0.5, ((b - a + 1) / n) * 100)}%`;
      seg.addEventListener("click", () => setFrame(a));
      sceneBar.append(seg);
    });
    if (S.pendingStart !== null) {
      const mark = el("div", { class: "tuner-scene-mark", title: `new scene from frame ${S.pendingStart}` });
      mark.style.left = `${((S.pendingStart - 1) / n) * 100}%`;
      sceneBar.append(mark);
    }
    sceneTable.replaceChildren(el("tr", {}, el("th", {}, "#"), el("th", {}, "frames"), el("th", {}, "differs from the default"), el("th", {}, "")));
    if (!S.settings.scenes.length) {
      sceneTable.append(el("tr", {}, el("td", { colspan: "4", class: "empty" }, "no scenes: every frame takes the default")));
    }
    S.settings.scenes.forEach((s, i) => {
      const [a, b] = sceneBounds(s);
      const diff = S.schema.filter(f => JSON.stringify(s.settings[f.name]) !== JSON.stringify(S.settings.default[f.name]))
        .map(f => `${f.name} ${s.settings[f.name]}`).join(", ") || "nothing yet";
      const go = el("button", { class: "tuner-small", title: "go to its first frame" }, "Go");
      go.addEventListener("click", () => setFrame(a));
      const del = el("button", { class: "tuner-small tuner-delete", title: "delete this scene (its frames take the default)" }, "Delete");
      del.addEventListener("click", () => {
        S.settings.scenes.splice(i, 1);
        S.editing = sceneAt(S.frame);
        drawScenes(); fillControls(); updateSaveState(); scheduleRender();
      });
      sceneTable.append(el("tr", { class: i === S.editing ? "tuner-scene-row-current" : "" },
        el("td", {}, `${i + 1}`), el("td", {}, rangeText(a, b)), el("td", { class: "tuner-diff" }, diff), el("td", {}, go, " ", del)));
    });
  }

  startButton.addEventListener("click", () => {
    S.pendingStart = S.frame;
    sceneNote.textContent = `a scene starts at frame ${S.frame}: move to its last frame and press "Scene ends here"`;
    endButton.disabled = false;
    drawScenes();
  });
  endButton.addEventListener("click", () => {
    if (S.pendingStart === null) return;
    const a = Math.min(S.pendingStart, S.frame), b = Math.max(S.pendingStart, S.frame);
    const clash = S.settings.scenes.findIndex(s => { const [x, y] = sceneBounds(s); return Math.max(a, x) <= Math.min(b, y); });
    if (clash >= 0) {
      sceneNote.textContent = `frames ${rangeText(a, b)} overlap scene ${clash + 1}; a frame belongs to one scene at most`;
      return;
    }
    // The new scene starts from the settings shown now.
    S.settings.scenes.push({ frames: rangeText(a, b), settings: clone(edited()) });
    S.settings.scenes.sort((x, y) => sceneBounds(x)[0] - sceneBounds(y)[0]);
    S.pendingStart = null;
    sceneNote.textContent = `scene of frames ${rangeText(a, b)} added: the controls edit it while the scrubber is inside it`;
    setFrame(S.frame, { render: false });
    updateSaveState();
  });

  // ---------- saving ----------

  function updateSaveState() {
    const dirty = isDirty();
    saveState.textContent = S.saved === null ? "" : dirty ? "● unsaved changes" : S.exists ? "✓ saved" : "not saved yet";
    saveState.classList.toggle("tuner-unsaved", dirty || !S.exists);
    saveButton.disabled = S.saved !== null && !dirty && S.exists;
  }

  saveButton.addEventListener("click", async () => {
    saveButton.disabled = true;
    try {
      const answer = await api("/api/tuner/config", { method: "PUT", body: JSON.stringify(S.settings) });
      takeConfig(answer);
      showError(null);
      sceneNote.textContent = "";
    } catch (e) {
      showError(`not saved: ${e.message}`);
      updateSaveState();
    }
  });

  function takeConfig(answer) {
    S.settings = answer.settings;
    S.saved = JSON.stringify(S.settings);
    S.configPath = answer.path;
    S.exists = answer.exists;
    savePath.replaceChildren(...(answer.exists
      ? ["in ", el("code", {}, answer.path), ": ", el("code", {}, "dfl merge"), " uses it unless --config is given"]
      : ["Save writes ", el("code", {}, answer.path), ", which ", el("code", {}, "dfl merge"), " then uses"]));
    if (answer.problem) showError(`${answer.path} is unusable (${answer.problem}); Save replaces it`);
    S.editing = sceneAt(S.frame);
    fillControls(); drawScenes(); updateSaveState();
  }

  window.addEventListener("beforeunload", e => { if (isDirty()) { e.preventDefault(); e.returnValue = ""; } });

  // ---------- grid ----------

  gridButton.addEventListener("click", async () => {
    if (!S.model) return;
    gridNote.textContent = "merging the alternatives…";
    const started = performance.now();
    try {
      const { blob } = await fetchImage(`/api/tuner/grid?${query({ settings: JSON.stringify(edited()) })}`);
      if (gridImage.src.startsWith("blob:")) URL.revokeObjectURL(gridImage.src);
      gridImage.src = URL.createObjectURL(blob);
      gridImage.hidden = false;
      gridNote.textContent = `frame ${S.frame}, ${Math.round(performance.now() - started)} ms: rows are masks, colour transfers and modes around the settings edited now`;
    } catch (e) {
      gridNote.textContent = `no grid: ${e.message}`;
    }
  });

  // ---------- models and the session ----------

  async function refreshModels() {
    const m = await api("/api/tuner/models");
    S.models = m.models; S.xsegModels = m.xseg;
    const keep = S.models.find(x => x.name === S.model) ? S.model : (S.models[0] && S.models[0].name) || null;
    modelSelect.replaceChildren(...S.models.map(x => el("option", { value: x.name }, `${x.name} (iteration ${x.iteration.toLocaleString()})`)));
    xsegSelect.replaceChildren(el("option", { value: "" }, "none"), ...S.xsegModels.map(x => el("option", { value: x.name }, `${x.name} (${x.iteration.toLocaleString()})`)));
    if (!S.xsegModels.find(x => x.name === S.xseg)) S.xseg = "";
    xsegSelect.value = S.xseg;
    if (!keep) {
      S.model = null;
      sessionText.textContent = "no trained model yet: train one with `dfl train --name NAME`";
      return false;
    }
    modelSelect.value = keep;
    const entry = S.models.find(x => x.name === keep);
    const changed = keep !== S.model || !S.session || (entry && entry.iteration !== S.session.iteration);
    S.model = keep;
    return changed;
  }

  async function openSession() {
    if (!S.model) return;
    sessionText.textContent = `loading ${S.model}…`;
    try {
      S.session = await api(`/api/tuner/session?${new URLSearchParams({ model: S.model, xseg: S.xseg })}`);
    } catch (e) {
      S.session = null;
      sessionText.textContent = "";
      showError(`cannot load ${S.model}: ${e.message}`);
      return;
    }
    const s = S.session;
    S.frames = s.frames;
    slider.max = Math.max(1, s.frames); frameNumber.max = Math.max(1, s.frames);
    sessionText.textContent = `${s.model} at iteration ${s.iteration.toLocaleString()} · ${s.frames} frames of ${s.input} · ${s.faces} dst faces · ${s.device}`;
    S.originalFrame = null;
    setFrame(Math.min(S.frame, s.frames));
  }

  modelSelect.addEventListener("change", async () => { S.model = modelSelect.value; S.session = null; await openSession(); });
  xsegSelect.addEventListener("change", async () => { S.xseg = xsegSelect.value; S.session = null; await openSession(); });

  async function start() {
    S.started = true;
    try {
      const [schema, config] = await Promise.all([api("/api/tuner/schema"), api("/api/tuner/config")]);
      S.schema = schema.fields;
      buildControls();
      takeConfig(config);
      if (await refreshModels()) await openSession();
    } catch (e) {
      showError(`cannot start the tuner: ${e.message}`);
    }
  }

  // Something changed on disk: a newer checkpoint reloads the model, other dst faces merge again.
  async function onFiles(topics) {
    if (!S.started) return;
    if (!isActive()) { S.stale = true; return; }
    // Checkpoints (model/<name>, xseg/<name>) and dst faces; not "status", which a running
    // merge changes with every frame.
    const relevant = topics === null || topics.some(t => t === "faces/dst" || t.startsWith("model/") || t.startsWith("xseg/"));
    if (!relevant) return;
    try {
      if (await refreshModels()) await openSession();
      else if (topics === null || topics.includes("faces/dst")) { S.originalFrame = null; scheduleRender(); }
    } catch (_) { /* the next change retries */ }
  }

  window.dfl.onTab("tuner", () => {
    if (!S.started) { start(); return; }
    if (S.stale) { S.stale = false; onFiles(null); }
  });
  window.dfl.onChange(topics => { onFiles(topics); });
  showError(null);
})();
