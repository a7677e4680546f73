// The XSeg labeller: include/exclude polygons drawn on the aligned faces of a side, saved into
// each face file's own metadata (seg_ie_polys, in the face's pixels) through
// PUT /api/faces/<side>/<name>/labels. Keyboard driven like DFL's XSeg editor.
"use strict";
(() => {
  const { api, el, onTab, onChange } = window.dfl;
  const section = document.getElementById("labeller");

  const ROW = 26;        // height of a row of the face list, CSS px
  const HANDLE = 4.5;    // radius of a point's handle, CSS px
  const HIT = 9;         // how close the pointer must be to grab a point, CSS px
  const MARGIN = 0.05;   // room around the face for points past its edge, share of the box
  const COLORS = { include: { line: "#5fd068" }, exclude: { line: "#ff5c5c" } };
  const FILL_ALPHA = 0.3; // opacity of the polygons' fill over the face
  const KEYS = [
    [["click"], "add a point (starts a polygon)"],
    [["click 1st point", "Enter"], "close the polygon"],
    [["drag a point"], "move it"],
    [["right-click", "Alt-click"], "delete a point"],
    [["Esc"], "cancel the polygon being drawn"],
    [["1", "I"], "include mode"],
    [["2", "E"], "exclude mode"],
    [["D", "→"], "next face"],
    [["A", "←"], "previous face"],
    [["U", "N"], "next unlabelled face"],
    [["M"], "applied XSeg mask overlay"],
    [["Ctrl+Z"], "undo"],
    [["Ctrl+Shift+Z", "Ctrl+Y"], "redo"],
    [["Ctrl+S"], "save (also done on leaving a face)"],
    [["R"], "reload the face from its file"],
  ];

  // ---------- the page ----------

  const sideButton = side => el("button", { "data-side": side, class: "lb-sidebtn" },
    el("b", {}, side), " ", el("span", { class: "lb-count", id: `lb-count-${side}` }, "…"));
  const modeButton = (mode, label) => el("button", { "data-mode": mode, class: `lb-mode lb-${mode}` }, label);
  const sides = el("div", { class: "lb-group" }, sideButton("src"), sideButton("dst"));
  const modes = el("div", { class: "lb-group" }, modeButton("include", "Include (1)"), modeButton("exclude", "Exclude (2)"));
  const maskButton = el("button", { id: "lb-mask" }, "Mask overlay (M)");
  const undoButton = el("button", { id: "lb-undo", title: "Ctrl+Z" }, "Undo");
  const redoButton = el("button", { id: "lb-redo", title: "Ctrl+Shift+Z" }, "Redo");
  const saveButton = el("button", { id: "lb-save", title: "Ctrl+S" }, "Save");
  const statusLine = el("span", { id: "lb-status", class: "lb-status" }, "");
  const listOuter = el("div", { class: "lb-list" });
  const listInner = el("div", { class: "lb-list-inner" });
  listOuter.append(listInner);
  const face = el("img", { class: "lb-face", alt: "the aligned face", draggable: "false" });
  const canvas = el("canvas", { class: "lb-canvas" });
  const layer = document.createElement("canvas"); // the fills, composed before they are shown
  const empty = el("div", { class: "lb-empty" }, "");
  const box = el("div", { class: "lb-box" }, face, canvas);
  const stage = el("div", { class: "lb-stage" }, box, empty);
  const info = el("div", { class: "lb-info" });
  const keyTable = el("table", { class: "lb-keys" },
    ...KEYS.map(([ks, what]) => el("tr", {}, el("td", {}, ...ks.map(k => el("kbd", {}, k))), el("td", {}, what))));
  section.append(
    el("div", { class: "toolbar lb-toolbar" }, sides, modes, maskButton, undoButton, redoButton, saveButton, statusLine),
    el("div", { class: "lb-main" }, listOuter, stage,
      el("aside", { class: "lb-aside" }, el("div", { class: "card" }, el("h2", {}, "Face"), info),
        el("div", { class: "card" }, el("h2", {}, "Keys"), keyTable))));

  // ---------- state ----------

  const S = {
    started: false,
    side: "src",
    counts: { src: null, dst: null },
    faces: [],                     // the side's faces: {name, include, exclude, mask, version}
    index: -1,                     // the shown face's place in `faces`
    last: { src: null, dst: null },// the face last shown on each side
    face: null,                    // the shown face, see open()
    histories: new Map(),          // "side/name" → {undo: [], redo: []} of snapshots
    mode: "include",
    showMask: false,
    drag: null,                    // {poly, point, moved}: poly -1 is the one being drawn
    hover: null,                   // {poly, point} under the pointer
    pointer: null,                 // the pointer in face pixels
    view: null,                    // {box, margin, size}: the box and the face in it, CSS px
    loading: 0,                    // the latest open() call
    saving: Promise.resolve(true), // saves run one after the other
    leaveRefused: null,            // the face whose failed save refused a navigation once
    moving: false,                 // between leaving a face and showing the next
  };

  const enc = encodeURIComponent;
  const faceUrl = (side, name, what) => `/api/faces/${side}/${enc(name)}/${what}`;
  const keyOf = f => `${f.side}/${f.name}`;
  const labelled = entry => entry.include + entry.exclude > 0;

  function setStatus(state, text) {
    statusLine.dataset.state = state;
    statusLine.textContent = text;
  }

  function history(f) {
    let h = S.histories.get(keyOf(f));
    // A history belongs to one state of the file: when another program changed the file
    // since, it starts over.
    if (!h || h.version !== f.version) {
      h = { undo: [], redo: [], version: f.version };
      S.histories.set(keyOf(f), h);
    }
    return h;
  }

  const snapshot = f => JSON.stringify({ polys: f.polys, drawing: f.drawing });
  const isDirty = f => !!f && (JSON.stringify(f.polys) !== f.savedJSON || (f.drawing && f.drawing.points.length > 0));

  function showDirty() {
    const f = S.face;
    if (!f) return;
    if (isDirty(f)) setStatus("unsaved", f.drawing ? "drawing a polygon (unsaved)" : "unsaved changes");
    else if (statusLine.dataset.state !== "error") setStatus("saved", "saved");
    const h = history(f);
    undoButton.disabled = h.undo.length === 0;
    redoButton.disabled = h.redo.length === 0;
    showInfo();
  }

  // Every change to the labels goes through here, so it can be undone. While a face is being
  // left only the closing of its polygon (`always`) gets through.
  function change(mutate, always = false) {
    const f = S.face;
    if (!f || (S.moving && !always)) return;
    const h = history(f), before = snapshot(f);
    mutate(f);
    if (snapshot(f) === before) return;
    h.undo.push(before);
    h.redo.length = 0;
    S.leaveRefused = null;
    if (statusLine.dataset.state === "error") setStatus("unsaved", "");
    showDirty();
    draw();
  }

  function restore(from, to) {
    const f = S.face;
    if (!f || !from.length) return;
    to.push(snapshot(f));
    const s = JSON.parse(from.pop());
    f.polys = s.polys; f.drawing = s.drawing;
    S.drag = null; S.hover = null;
    if (statusLine.dataset.state === "error") setStatus("unsaved", "");
    showDirty();
    draw();
  }
  const undo = () => S.face && restore(history(S.face).undo, history(S.face).redo);
  const redo = () => S.face && restore(history(S.face).redo, history(S.face).undo);

  // ---------- the polygons ----------

  // Points are kept to 1/100 of a face pixel, within the room validate() allows.
  function facePoint(x, y) {
    const n = S.face.size, r = v => Math.round(Math.min(2 * n, Math.max(-n, v)) * 100) / 100;
    return [r(x), r(y)];
  }

  function startOrExtend(p) {
    change(f => {
      if (!f.drawing) f.drawing = { kind: S.mode, points: [] };
      f.drawing.points.push(p);
    });
  }

  // Closes the polygon being drawn: kept with 3 points or more, dropped with fewer.
  function closeDrawing() {
    change(f => {
      if (f.drawing && f.drawing.points.length >= 3) f.polys.push(f.drawing);
      f.drawing = null;
    }, true);
  }

  const cancelDrawing = () => change(f => { f.drawing = null; });

  function deletePoint(hit) {
    if (!hit) return;
    change(f => {
      if (hit.poly < 0) {
        f.drawing.points.splice(hit.point, 1);
        if (!f.drawing.points.length) f.drawing = null;
      } else {
        f.polys[hit.poly].points.splice(hit.point, 1);
        // A polygon with fewer than 3 points encloses nothing: it goes.
        if (f.polys[hit.poly].points.length < 3) f.polys.splice(hit.poly, 1);
      }
    });
    S.hover = null;
  }

  function setMode(mode) {
    S.mode = mode;
    modes.querySelectorAll("button").forEach(b => b.classList.toggle("active", b.dataset.mode === mode));
    // The polygon being drawn takes the new kind.
    if (S.face && S.face.drawing && S.face.drawing.kind !== mode) change(f => { f.drawing.kind = mode; });
    draw();
  }

  // ---------- geometry ----------

  // Sizes the box to the room left under the toolbar (the face as large as fits), with the
  // canvas at device pixels so lines stay sharp on HiDPI screens.
  function layout() {
    if (!section.classList.contains("active")) return false;
    const top = stage.getBoundingClientRect().top;
    const height = Math.max(240, window.innerHeight - top - 16);
    const side = Math.floor(Math.max(200, Math.min(stage.clientWidth, height)));
    const margin = Math.round(side * MARGIN), size = side - 2 * margin;
    for (const node of [box, listOuter]) node.style.height = `${side}px`;
    box.style.width = `${side}px`;
    Object.assign(face.style, { left: `${margin}px`, top: `${margin}px`, width: `${size}px`, height: `${size}px` });
    const dpr = window.devicePixelRatio || 1;
    canvas.style.width = `${side}px`; canvas.style.height = `${side}px`;
    if (canvas.width !== Math.round(side * dpr)) { canvas.width = Math.round(side * dpr); canvas.height = Math.round(side * dpr); }
    S.view = { box: side, margin, size, dpr };
    renderList();
    return true;
  }

  // Face pixels → box CSS px, and back (from a mouse event: where on the face image it is).
  const toBox = p => {
    const v = S.view, k = v.size / S.face.size;
    return [v.margin + p[0] * k, v.margin + p[1] * k];
  };
  function eventFacePoint(e) {
    const r = face.getBoundingClientRect(), n = S.face.size;
    return [(e.clientX - r.left) * n / r.width, (e.clientY - r.top) * n / r.height];
  }

  // The point under `p` (face px) within HIT CSS px: the polygon being drawn first, then the
  // polygons from the top (last drawn) down.
  function hitTest(p) {
    const f = S.face;
    if (!f || !S.view) return null;
    const reach = HIT * f.size / S.view.size;
    let best = null, bestD = reach * reach;
    const look = (points, poly) => points.forEach((q, point) => {
      const d = (q[0] - p[0]) ** 2 + (q[1] - p[1]) ** 2;
      if (d <= bestD) { bestD = d; best = { poly, point }; }
    });
    if (f.drawing) look(f.drawing.points, -1);
    if (best) return best;
    for (let i = f.polys.length - 1; i >= 0 && !best; i--) look(f.polys[i].points, i);
    return best;
  }

  const pointAt = hit => (hit.poly < 0 ? S.face.drawing : S.face.polys[hit.poly]).points[hit.point];

  // ---------- drawing ----------

  function draw() {
    if (!S.view) return;
    const ctx = canvas.getContext("2d"), v = S.view, f = S.face;
    ctx.setTransform(v.dpr, 0, 0, v.dpr, 0, 0);
    ctx.clearRect(0, 0, v.box, v.box);
    if (!f) return;
    ctx.strokeStyle = "#3a3f46"; ctx.lineWidth = 1;
    ctx.strokeRect(v.margin - 0.5, v.margin - 0.5, v.size + 1, v.size + 1);
    if (S.showMask && f.overlay) {
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(f.overlay, v.margin, v.margin, v.size, v.size);
    }
    const trace = (points, close) => {
      ctx.beginPath();
      points.forEach((p, i) => { const [x, y] = toBox(p); if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y); });
      if (close) ctx.closePath();
    };
    // The fills are painted opaque in order on a layer, then laid over the face translucent:
    // each pixel shows the kind of the last polygon over it, as the mask will be.
    const lctx = layer.getContext("2d");
    if (layer.width !== canvas.width || layer.height !== canvas.height) { layer.width = canvas.width; layer.height = canvas.height; }
    lctx.setTransform(v.dpr, 0, 0, v.dpr, 0, 0);
    lctx.clearRect(0, 0, v.box, v.box);
    for (const poly of f.polys) {
      lctx.beginPath();
      poly.points.forEach((p, i) => { const [x, y] = toBox(p); if (i) lctx.lineTo(x, y); else lctx.moveTo(x, y); });
      lctx.closePath();
      lctx.fillStyle = COLORS[poly.kind].line; lctx.fill();
    }
    ctx.save();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.globalAlpha = FILL_ALPHA;
    ctx.drawImage(layer, 0, 0);
    ctx.restore();
    for (const poly of f.polys) {
      trace(poly.points, true);
      ctx.strokeStyle = COLORS[poly.kind].line; ctx.lineWidth = 1.5; ctx.stroke();
    }
    if (f.drawing && f.drawing.points.length) {
      const c = COLORS[f.drawing.kind];
      trace(f.drawing.points, false);
      ctx.strokeStyle = c.line; ctx.lineWidth = 1.5; ctx.setLineDash([]); ctx.stroke();
      if (S.pointer && !S.drag) {
        const [x0, y0] = toBox(f.drawing.points[f.drawing.points.length - 1]), [x1, y1] = toBox(S.pointer);
        ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x1, y1);
        ctx.setLineDash([5, 4]); ctx.stroke(); ctx.setLineDash([]);
      }
    }
    const handle = (p, kind, hot, ring) => {
      const [x, y] = toBox(p);
      ctx.beginPath(); ctx.arc(x, y, hot ? HANDLE + 2 : HANDLE, 0, 2 * Math.PI);
      ctx.fillStyle = hot ? "#ffffff" : COLORS[kind].line; ctx.fill();
      ctx.lineWidth = 1.5; ctx.strokeStyle = "#0e0f11"; ctx.stroke();
      if (ring) { ctx.beginPath(); ctx.arc(x, y, HANDLE + 5, 0, 2 * Math.PI); ctx.strokeStyle = COLORS[kind].line; ctx.stroke(); }
    };
    const hot = (poly, point) => !!S.hover && S.hover.poly === poly && S.hover.point === point;
    f.polys.forEach((poly, i) => poly.points.forEach((p, j) => handle(p, poly.kind, hot(i, j), false)));
    if (f.drawing) {
      const closable = f.drawing.points.length >= 3;
      f.drawing.points.forEach((p, j) => handle(p, f.drawing.kind, hot(-1, j), j === 0 && closable));
    }
  }

  // The applied mask as an overlay: what it leaves out darkened, what it keeps clear.
  async function maskOverlay(url) {
    const img = new Image();
    img.src = url;
    await img.decode();
    return window.dfl.maskCanvas(img, [20, 40, 110], v => (v >= 128 ? 0 : 175));
  }

  function showInfo() {
    const f = S.face;
    if (!f) { info.replaceChildren(el("span", { class: "empty" }, "no face")); return; }
    const include = f.polys.filter(p => p.kind === "include").length;
    const points = f.polys.reduce((n, p) => n + p.points.length, 0);
    const row = (k, v) => el("tr", {}, el("th", {}, k), el("td", {}, v));
    info.replaceChildren(el("table", {},
      row("file", f.name),
      row("face", `${S.index + 1} of ${S.faces.length} (${f.side})`),
      row("size", `${f.size} × ${f.size} px`),
      row("polygons", `${include} include, ${f.polys.length - include} exclude, ${points} points`),
      row("applied mask", f.mask ? `${f.mask[0]} at ${f.mask[1].toLocaleString()} it.` : "none"),
      row("overlay", S.showMask ? (f.overlay ? "shown (M)" : "on, but this face has no applied mask") : "off (M)")));
  }

  // ---------- the face list ----------

  function renderList() {
    listInner.style.height = `${S.faces.length * ROW}px`;
    const top = listOuter.scrollTop, height = listOuter.clientHeight || 400;
    const first = Math.max(0, Math.floor(top / ROW) - 4), last = Math.min(S.faces.length, Math.ceil((top + height) / ROW) + 4);
    const rows = [];
    for (let i = first; i < last; i++) {
      const e = S.faces[i];
      const row = el("div", { class: `lb-row${i === S.index ? " current" : ""}${labelled(e) ? " labelled" : ""}`, "data-index": i, title: e.name },
        el("span", { class: "lb-mark" }, labelled(e) ? "●" : "○"),
        el("span", { class: "lb-name" }, e.name),
        el("span", { class: "lb-n" }, labelled(e) ? `+${e.include} −${e.exclude}` : ""),
        el("span", { class: "lb-m" }, e.mask ? "mask" : ""));
      row.style.top = `${i * ROW}px`;
      rows.push(row);
    }
    listInner.replaceChildren(...rows);
  }
  listOuter.addEventListener("scroll", renderList);
  listInner.addEventListener("click", e => {
    const row = e.target.closest(".lb-row");
    if (row) go(+row.dataset.index);
  });

  function scrollToCurrent() {
    const y = S.index * ROW, h = listOuter.clientHeight;
    if (y < listOuter.scrollTop || y + ROW > listOuter.scrollTop + h) listOuter.scrollTop = Math.max(0, y - h / 2);
    renderList();
  }

  function showCounts() {
    for (const side of ["src", "dst"]) {
      const c = S.counts[side];
      document.getElementById(`lb-count-${side}`).textContent =
        c ? `${c.labelled} of ${c.total} faces labelled` : "…";
    }
    sides.querySelectorAll("button").forEach(b => b.classList.toggle("active", b.dataset.side === S.side));
  }

  async function refreshCounts() {
    try {
      const c = await api("/api/labeller");
      S.counts.src = c.src; S.counts.dst = c.dst;
    } catch (e) { setStatus("error", `cannot count the labels: ${e.message}`); }
    showCounts();
  }

  // Reads the side's list again and finds the shown face in it: by name, or by its version
  // when a sort renamed it.
  async function refreshList() {
    const side = S.side;
    let r;
    try { r = await api(`/api/labeller/${side}`); } catch (e) { setStatus("error", `cannot list the ${side} faces: ${e.message}`); return; }
    if (side !== S.side) return;
    S.faces = r.faces;
    S.counts[side] = { labelled: r.labelled, total: r.total };
    showCounts();
    const f = S.face;
    if (!f || f.side !== side) { renderList(); return; }
    let i = S.faces.findIndex(e => e.name === f.name);
    if (i < 0) {
      i = S.faces.findIndex(e => e.version === f.version);
      if (i >= 0) {
        // Renamed (a sort): the face, its history and its edits follow it.
        const h = S.histories.get(keyOf(f));
        S.histories.delete(keyOf(f));
        f.name = S.faces[i].name;
        if (h) S.histories.set(keyOf(f), h);
        S.last[side] = f.name;
        section.dataset.face = f.name;
      }
    }
    if (i < 0) {
      if (isDirty(f)) { setStatus("error", `${f.name} is no longer in the faceset; your edits cannot be saved`); renderList(); return; }
      S.face = null;
      if (S.faces.length) await open(Math.min(S.index, S.faces.length - 1)); else showEmpty();
      return;
    }
    S.index = i;
    // Changed on disk by another program (a mask applied, labels imported): shown again as
    // it is now, unless there are edits here that a save would then refuse.
    if (S.faces[i].version !== f.version && !S.drag) {
      if (!isDirty(f)) await open(i, true);
      else setStatus("error", `${f.name} changed on disk; saving will be refused: R reloads it (your edits can be undone back)`);
    }
    showInfo();
    scrollToCurrent();
  }

  function showEmpty() {
    S.face = null; S.index = -1;
    face.removeAttribute("src"); face.hidden = true;
    empty.textContent = `No faces in data_${S.side}/aligned: run dfl extract ${S.side} first.`;
    empty.hidden = false;
    delete section.dataset.face;
    renderList(); showInfo(); draw();
  }

  // ---------- opening, saving and leaving faces ----------

  // Shows face `index` of the list; `keepHistory` when the same face is read again.
  async function open(index, keepHistory = false) {
    const entry = S.faces[index];
    if (!entry) return;
    const side = S.side, seq = ++S.loading;
    S.index = index;
    scrollToCurrent();
    let data, overlay = null;
    try {
      data = await api(faceUrl(side, entry.name, "labels"));
      const img = new Image();
      img.src = `${faceUrl(side, data.name, "image")}?v=${data.version}`;
      await img.decode();
      if (data.xseg_mask) overlay = await maskOverlay(`${faceUrl(side, data.name, "xseg_mask.png")}?v=${data.version}`).catch(() => null);
      if (seq !== S.loading) return;
      face.src = img.src;
      await face.decode();
    } catch (e) {
      if (seq === S.loading) setStatus("error", `cannot open ${entry.name}: ${e.message}`);
      return;
    }
    if (seq !== S.loading) return;
    const previous = S.face;
    S.face = {
      side, name: data.name, size: data.size_px, version: data.version,
      polys: data.seg_ie_polys, savedJSON: JSON.stringify(data.seg_ie_polys), drawing: null,
      mask: data.xseg_mask, overlay,
    };
    if (keepHistory && previous && keyOf(previous) === keyOf(S.face)) {
      const h = S.histories.get(keyOf(S.face));
      if (h) h.version = data.version;
    }
    S.faces[index] = { ...entry, version: data.version };
    S.last[side] = data.name;
    S.drag = null; S.hover = null; S.leaveRefused = null;
    face.hidden = false; empty.hidden = true;
    section.dataset.face = data.name;
    setStatus("saved", "saved");
    showDirty();
    draw();
  }

  // Saves the shown face's labels (a polygon being drawn is closed first); resolves to whether
  // they are on disk.
  function save() {
    S.saving = S.saving.then(async () => {
      const f = S.face;
      if (!f) return true;
      if (f.drawing) closeDrawing();
      const json = JSON.stringify(f.polys);
      if (json === f.savedJSON) { showDirty(); return true; }
      setStatus("saving", "saving…");
      try {
        const body = JSON.stringify({ version: f.version, seg_ie_polys: f.polys });
        // keepalive lets a save started as the page closes finish (for bodies under 64 KiB).
        const r = await api(faceUrl(f.side, f.name, "labels"), { method: "PUT", body, keepalive: body.length < 60000 });
        const h = history(f);
        f.version = r.version; f.savedJSON = json; h.version = r.version;
        const entry = S.faces.find(e => e.name === f.name);
        if (entry && f.side === S.side) {
          const include = r.seg_ie_polys.filter(p => p.kind === "include").length;
          Object.assign(entry, { include, exclude: r.seg_ie_polys.length - include, version: r.version });
          renderList();
        }
        setStatus("saved", "saved");
        showDirty();
        refreshCounts();
        return true;
      } catch (e) {
        setStatus("error", `not saved: ${e.message}`);
        return false;
      }
    });
    return S.saving;
  }

  // Saves before leaving the shown face; a failed save keeps the face, once.
  async function leave() {
    const f = S.face;
    if (!f) return true;
    if (f.drawing) closeDrawing();
    if (!isDirty(f)) return true;
    if (await save()) return true;
    if (S.leaveRefused === keyOf(f)) { S.leaveRefused = null; return true; }
    S.leaveRefused = keyOf(f);
    statusLine.textContent += " — go again to leave the face without saving";
    return false;
  }

  async function go(index) {
    if (S.moving || index < 0 || index >= S.faces.length || (index === S.index && S.face)) return;
    // No edits while the face is being left: they would land on the face going away.
    S.moving = true;
    try {
      if (await leave()) await open(index);
    } finally {
      S.moving = false;
    }
  }

  function nextUnlabelled() {
    const n = S.faces.length;
    for (let k = 1; k <= n; k++) {
      const i = (S.index + k) % n;
      if (!labelled(S.faces[i]) && i !== S.index) return go(i);
    }
    setStatus(statusLine.dataset.state, `every other ${S.side} face is labelled`);
  }

  async function switchSide(side) {
    if (side === S.side) return;
    if (!(await leave())) return;
    S.side = side; S.face = null; S.faces = []; S.index = -1;
    showCounts();
    await refreshList();
    if (!S.faces.length) { showEmpty(); return; }
    const last = S.faces.findIndex(e => e.name === S.last[side]);
    await open(last >= 0 ? last : 0);
  }

  // Reads the shown face from its file again; the edits it drops stay one undo away.
  async function reload() {
    const f = S.face;
    if (!f) return;
    const h = history(f), before = snapshot(f);
    await open(S.index, true);
    if (S.face && keyOf(S.face) === keyOf(f) && before !== snapshot(S.face)) {
      h.undo.push(before); h.redo.length = 0;
      showDirty();
    }
  }

  function toggleMask() {
    S.showMask = !S.showMask;
    maskButton.classList.toggle("active", S.showMask);
    section.classList.toggle("lb-mask-on", S.showMask);
    showInfo();
    draw();
  }

  // ---------- mouse ----------

  canvas.addEventListener("mousedown", e => {
    const f = S.face;
    if (!f || e.button !== 0 || S.moving) return;
    e.preventDefault();
    const p = eventFacePoint(e), hit = hitTest(p);
    if (e.altKey) { deletePoint(hit); draw(); return; }
    if (f.drawing && hit && hit.poly === -1 && hit.point === 0 && f.drawing.points.length >= 3) { closeDrawing(); return; }
    if (hit) { S.drag = { ...hit, moved: false }; return; }
    startOrExtend(facePoint(p[0], p[1]));
  });
  canvas.addEventListener("contextmenu", e => {
    e.preventDefault();
    if (!S.face) return;
    deletePoint(hitTest(eventFacePoint(e)));
    draw();
  });
  window.addEventListener("mousemove", e => {
    const f = S.face;
    if (!f || !S.view || !section.classList.contains("active")) return;
    const p = eventFacePoint(e);
    S.pointer = p;
    if (S.drag) {
      const q = facePoint(p[0], p[1]), d = S.drag;
      if (!d.moved) {
        // One undo step per drag: the snapshot before it starts.
        const h = history(f);
        h.undo.push(snapshot(f)); h.redo.length = 0;
        d.moved = true;
      }
      const point = pointAt(d);
      point[0] = q[0]; point[1] = q[1];
      showDirty();
    } else {
      S.hover = e.target === canvas ? hitTest(p) : null;
      canvas.classList.toggle("lb-over-point", !!S.hover);
    }
    draw();
  });
  window.addEventListener("mouseup", () => {
    if (S.drag) { S.drag = null; showDirty(); draw(); }
  });

  // ---------- keyboard ----------

  document.addEventListener("keydown", e => {
    if (!section.classList.contains("active") || e.target.closest("input, select, textarea")) return;
    const k = e.key.length === 1 ? e.key.toLowerCase() : e.key, ctrl = e.ctrlKey || e.metaKey;
    if (ctrl) {
      if (k === "z" && e.shiftKey) redo();
      else if (k === "z") undo();
      else if (k === "y") redo();
      else if (k === "s") save();
      else return;
    } else if (e.altKey) {
      return;
    } else {
      switch (k) {
        case "d": case "ArrowRight": go(S.index + 1); break;
        case "a": case "ArrowLeft": go(S.index - 1); break;
        case "u": case "n": nextUnlabelled(); break;
        case "m": toggleMask(); break;
        case "1": case "i": setMode("include"); break;
        case "2": case "e": setMode("exclude"); break;
        case "Enter": if (S.face && S.face.drawing) closeDrawing(); break;
        case "Escape": if (S.face && S.face.drawing) cancelDrawing(); break;
        case "Delete": case "Backspace": deletePoint(S.hover); draw(); break;
        case "r": reload(); break;
        default: return;
      }
    }
    e.preventDefault();
  });

  // ---------- buttons, tab, changes ----------

  const press = (button, f) => button.addEventListener("click", () => { button.blur(); f(); });
  sides.querySelectorAll("button").forEach(b => press(b, () => switchSide(b.dataset.side)));
  modes.querySelectorAll("button").forEach(b => press(b, () => setMode(b.dataset.mode)));
  press(maskButton, toggleMask);
  press(undoButton, undo);
  press(redoButton, redo);
  press(saveButton, save);

  async function start() {
    S.started = true;
    setMode(S.mode);
    showCounts();
    await Promise.all([refreshCounts(), refreshList()]);
    if (!S.faces.length) showEmpty();
    else if (!S.face) {
      const first = S.faces.findIndex(e => !labelled(e));
      await open(first >= 0 ? first : 0);
    }
  }

  onTab("labeller", () => {
    layout();
    if (!S.started) start(); else { draw(); scrollToCurrent(); }
  });
  // The editor's column changes width with the window and the panels beside it.
  new ResizeObserver(() => { if (layout()) draw(); }).observe(stage);
  window.addEventListener("resize", () => { if (layout()) draw(); });
  onChange(topics => {
    if (!S.started) return;
    if (!topics || topics.some(t => t.startsWith("faces/"))) refreshCounts();
    if (!topics || topics.includes(`faces/${S.side}`)) refreshList();
  });
  // Leaving the tab or the page saves, like leaving a face.
  new MutationObserver(() => { if (!section.classList.contains("active") && isDirty(S.face)) save(); })
    .observe(section, { attributes: true, attributeFilter: ["class"] });
  document.addEventListener("visibilitychange", () => { if (document.hidden && isDirty(S.face)) save(); });
})();
