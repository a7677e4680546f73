// dfl studio: the faceset browser. A side's faces as a virtualised grid of thumbnails (only
// the rows on screen are in the page), sorted by name or by a cached score; selection by
// click, Ctrl/Cmd-click, Shift-click, Ctrl+A; the Delete key or the Trash button moves the
// selection to aligned_trash/ (one journal batch, undone by the Undo button or by
// `dfl sort --undo`); a detail panel shows the face under the cursor at full size with its
// landmarks, XSeg labels and applied XSeg mask drawn over it, and its metadata.
"use strict";

(() => {
  const { api, el, formatCount, formatValue } = window.dfl;
  const root = document.getElementById("faces");

  // Grid geometry, CSS px: a 128 px thumbnail with a caption, and a gap.
  const CELL_W = 140, CELL_H = 158;
  // Faces per page request; rows drawn beyond the visible ones on each side.
  const PAGE = 240, OVERSCAN_ROWS = 2;
  const MEASURE_LABELS = {
    blur: "sharpness (blur)", motion_blur: "motion blur", brightness: "brightness", hue: "hue", black: "black pixels",
  };

  const S = {
    side: "src", sort: "name", desc: false,
    version: null, total: 0, measures: null, gen: 0,
    pages: new Map(), loading: new Map(),
    selected: new Set(), anchor: null, cursor: null,
    cells: new Map(), cols: 1, rows: 0,
    detail: null, detailName: null, detailGen: 0,
    build: null, buildTimer: null,
    started: false, stale: false, error: null,
  };
  window.dflFaces = S;

  // ---------- the page's parts ----------

  const sideButtons = ["src", "dst"].map(side => el("button", { "data-side": side, class: side === S.side ? "active" : "" }, side));
  const sortSelect = el("select", { id: "faces-sort", title: "order of the faces" });
  const orderButton = el("button", { id: "faces-order", title: "ascending or descending" }, "↑ ascending");
  const countText = el("span", { id: "faces-count", class: "faces-count" });
  const buildText = el("span", { id: "faces-build", class: "faces-build" });
  const trashButton = el("button", { id: "faces-trash", title: "move the selected faces to aligned_trash/ (Delete)", disabled: "" }, "Trash");
  const undoButton = el("button", { id: "faces-undo", title: "what `dfl sort --undo` does: revert the last sort or trash (Ctrl+Z)", disabled: "" }, "Undo");
  const note = el("span", { id: "faces-note", class: "faces-note" });
  const toolbar = el("div", { class: "toolbar faces-toolbar" },
    el("div", { class: "faces-sides" }, ...sideButtons),
    el("label", {}, "Sort ", sortSelect), orderButton, countText, buildText, trashButton, undoButton, note);

  const spacer = el("div", { class: "faces-spacer" });
  const grid = el("div", { id: "faces-grid", class: "faces-grid", tabindex: "0" }, spacer);
  const message = el("div", { class: "faces-message" });

  const canvas = el("canvas", { id: "faces-canvas", class: "faces-canvas" });
  const toggles = {
    landmarks: el("input", { type: "checkbox", id: "faces-show-landmarks", checked: "" }),
    polys: el("input", { type: "checkbox", id: "faces-show-polys", checked: "" }),
    mask: el("input", { type: "checkbox", id: "faces-show-mask", checked: "" }),
  };
  const metaTable = el("table", { id: "faces-meta", class: "faces-meta" });
  const detailTitle = el("h2", { id: "faces-detail-title" }, "no face selected");
  const detail = el("aside", { id: "faces-detail", class: "card faces-detail" },
    detailTitle,
    el("div", { class: "faces-canvas-wrap" }, canvas),
    el("div", { class: "faces-toggles" },
      el("label", {}, toggles.landmarks, " landmarks"),
      el("label", {}, toggles.polys, " XSeg labels"),
      el("label", {}, toggles.mask, " XSeg mask")),
    metaTable);
  root.append(toolbar, el("div", { class: "faces-body" }, el("div", { class: "faces-main" }, message, grid), detail));

  // ---------- data: pages of the listing ----------

  function query(offset, limit) {
    const sort = encodeURIComponent(S.sort);
    return `/api/faces/${S.side}?sort=${sort}&desc=${S.desc}&offset=${offset}&limit=${limit}`;
  }

  // Forgets every page (the listing, the side or the order changed).
  function dropPages() { S.pages.clear(); S.loading.clear(); S.gen += 1; }

  // Takes an answer in: a new version drops the pages of the old one.
  function accept(data) {
    if (data.version !== S.version) {
      const first = S.version === null;
      dropPages();
      S.version = data.version;
      if (!first) clearCells();
    }
    S.total = data.total;
    setMeasures(data.measures);
    setBuild(data.thumbs);
    if (S.error) { S.error = null; message.textContent = ""; }
  }

  function loadPage(p) {
    if (S.pages.has(p)) return Promise.resolve(S.pages.get(p));
    if (S.loading.has(p)) return S.loading.get(p);
    const gen = S.gen;
    const promise = api(query(p * PAGE, PAGE)).then(data => {
      if (gen !== S.gen) return null; // the side, the order or the listing changed meanwhile
      S.loading.delete(p);
      const changed = data.version !== S.version;
      accept(data);
      S.pages.set(p, data.faces);
      if (changed) { pruneSelection(); layout(); schedule(); }
      return data.faces;
    }).catch(e => { if (gen === S.gen) { S.loading.delete(p); showError(e.message); } return null; });
    S.loading.set(p, promise);
    return promise;
  }

  function faceAt(i) {
    const page = S.pages.get(Math.floor(i / PAGE));
    return page ? page[i % PAGE] || null : null;
  }

  // Loads every page covering faces [a, b); whether any had to be asked for.
  async function ensureRange(a, b) {
    const wanted = [];
    for (let p = Math.floor(a / PAGE); p * PAGE < b; p++) if (!S.pages.has(p)) wanted.push(loadPage(p));
    await Promise.all(wanted);
    return wanted.length > 0;
  }

  // Reads the listing again from the first visible page: the faceset, side or order changed.
  async function reload() {
    const first = Math.floor(grid.scrollTop / CELL_H) * S.cols;
    const p = Math.floor(first / PAGE);
    S.pages.delete(p);
    S.gen += 1; // answers in flight belong to the listing before
    S.loading.clear();
    const gen = S.gen;
    let data;
    try { data = await api(query(p * PAGE, PAGE)); } catch (e) { showError(e.message); return; }
    if (gen !== S.gen) return;
    const changed = data.version !== S.version;
    accept(data);
    S.pages.set(p, data.faces);
    if (changed) pruneSelection();
    message.textContent = S.total ? "" : `no faces in data_${S.side}/aligned yet`;
    layout(); render(); updateCount();
  }

  function showError(text) {
    S.error = text;
    message.textContent = text;
  }

  function setMeasures(measures) {
    const key = measures.join(",");
    if (S.measures && key === S.measures.join(",")) return;
    S.measures = measures;
    const options = [el("option", { value: "name" }, "name")];
    for (const m of measures) options.push(el("option", { value: m }, MEASURE_LABELS[m] || m));
    sortSelect.replaceChildren(...options);
    if (S.sort !== "name" && !measures.includes(S.sort)) { S.sort = "name"; }
    sortSelect.value = S.sort;
  }

  // ---------- the virtualised grid ----------

  function fitHeight() {
    const top = grid.getBoundingClientRect().top;
    grid.style.height = `${Math.max(240, window.innerHeight - top - 16)}px`;
  }

  function layout() {
    if (!root.classList.contains("active")) return;
    fitHeight();
    const cols = Math.max(1, Math.floor(grid.clientWidth / CELL_W));
    if (cols !== S.cols) { S.cols = cols; clearCells(); }
    S.rows = Math.ceil(S.total / S.cols);
    spacer.style.height = `${S.rows * CELL_H}px`;
    spacer.style.width = `${S.cols * CELL_W}px`;
  }

  function clearCells() { for (const c of S.cells.values()) c.remove(); S.cells.clear(); }

  let frame = 0;
  function schedule() { if (!frame) frame = requestAnimationFrame(() => { frame = 0; render(); }); }

  // Puts the visible rows (and a few more) in the page; loads the pages they need.
  function render() {
    if (!root.classList.contains("active")) return;
    const top = grid.scrollTop, height = grid.clientHeight;
    const r0 = Math.max(0, Math.floor(top / CELL_H) - OVERSCAN_ROWS);
    const r1 = Math.min(S.rows, Math.ceil((top + height) / CELL_H) + OVERSCAN_ROWS);
    const i0 = r0 * S.cols, i1 = Math.min(S.total, r1 * S.cols);
    for (const [i, c] of S.cells) if (i < i0 || i >= i1) { c.remove(); S.cells.delete(i); }
    let missing = false;
    for (let i = i0; i < i1; i++) {
      let cell = S.cells.get(i);
      if (!cell) {
        cell = el("div", { class: "face-cell", "data-i": i },
          el("img", { alt: "", draggable: "false", decoding: "async" }), el("span", { class: "face-caption" }));
        cell.style.transform = `translate(${(i % S.cols) * CELL_W}px, ${Math.floor(i / S.cols) * CELL_H}px)`;
        S.cells.set(i, cell);
        spacer.append(cell);
      }
      const face = faceAt(i);
      if (!face) missing = true;
      fillCell(cell, face, i);
    }
    if (missing && !S.error) ensureRange(i0, i1).then(asked => { if (asked) schedule(); });
  }

  function caption(face) {
    if (S.sort === "name") return face.name;
    const v = face.scores[S.sort];
    return v === undefined ? "–" : formatValue(v);
  }

  function fillCell(cell, face, i) {
    const img = cell.firstChild, text = cell.lastChild;
    const name = face ? face.name : "";
    if (cell.dataset.name !== name) {
      cell.dataset.name = name;
      cell.title = name;
      if (face && face.key) {
        img.src = `/api/thumbs/${S.side}/${face.key}`;
      } else {
        img.removeAttribute("src");
      }
      cell.classList.toggle("unreadable", !!face && !face.key);
    }
    text.textContent = face ? caption(face) : "";
    cell.classList.toggle("selected", !!face && S.selected.has(face.name));
    cell.classList.toggle("cursor", i === S.cursor);
  }

  function refreshCells() {
    for (const [i, cell] of S.cells) fillCell(cell, faceAt(i), i);
    updateCount();
  }

  // "1 face", "3 faces".
  function count(n, word) { return `${n.toLocaleString()} ${word}${n === 1 ? "" : "s"}`; }

  function updateCount() {
    const n = S.selected.size;
    countText.textContent = count(S.total, "face") + (n ? ` · ${n.toLocaleString()} selected` : "");
    trashButton.disabled = n === 0;
    trashButton.textContent = n ? `Trash ${n.toLocaleString()}` : "Trash";
  }

  // Drops selected names the loaded pages no longer have (after the faceset changed): the
  // names of unloaded pages are kept, and a trash of a gone face is refused by the server.
  function pruneSelection() {
    if (!S.selected.size) return;
    const loaded = new Set();
    for (const page of S.pages.values()) for (const f of page) loaded.add(f.name);
    if (S.pages.size * PAGE >= S.total) {
      for (const name of [...S.selected]) if (!loaded.has(name)) S.selected.delete(name);
    }
  }

  // ---------- selection ----------

  function indexOfEvent(e) {
    const cell = e.target.closest && e.target.closest(".face-cell");
    return cell ? +cell.dataset.i : null;
  }

  async function selectRange(a, b, add) {
    const [lo, hi] = a < b ? [a, b] : [b, a];
    await ensureRange(lo, hi + 1);
    if (!add) S.selected.clear();
    for (let i = lo; i <= hi; i++) { const f = faceAt(i); if (f) S.selected.add(f.name); }
    refreshCells();
  }

  async function selectAll() {
    if (!S.total) return;
    await ensureRange(0, S.total);
    for (let i = 0; i < S.total; i++) { const f = faceAt(i); if (f) S.selected.add(f.name); }
    refreshCells();
  }

  function clickAt(i, e) {
    const face = faceAt(i);
    if (!face) return;
    const add = e.ctrlKey || e.metaKey;
    if (e.shiftKey && S.anchor !== null) {
      selectRange(S.anchor, i, add);
    } else if (add) {
      if (S.selected.has(face.name)) S.selected.delete(face.name); else S.selected.add(face.name);
      S.anchor = i;
    } else {
      S.selected = new Set([face.name]);
      S.anchor = i;
    }
    S.cursor = i;
    showDetail(face);
    refreshCells();
  }

  grid.addEventListener("click", e => {
    const i = indexOfEvent(e);
    if (i === null) return;
    grid.focus({ preventScroll: true });
    clickAt(i, e);
  });
  grid.addEventListener("mousedown", e => { if (e.shiftKey) e.preventDefault(); }); // no text selection
  grid.addEventListener("scroll", schedule, { passive: true });

  let hoverTimer = 0;
  grid.addEventListener("mouseover", e => {
    const i = indexOfEvent(e);
    if (i === null) return;
    clearTimeout(hoverTimer);
    hoverTimer = setTimeout(() => { const f = faceAt(i); if (f) showDetail(f); }, 60);
  });
  grid.addEventListener("mouseleave", () => {
    clearTimeout(hoverTimer);
    const f = S.cursor !== null ? faceAt(S.cursor) : null;
    if (f) showDetail(f);
  });

  // Moves the cursor by `step` faces; Shift extends the selection from the anchor.
  function moveCursor(step, extend) {
    if (!S.total) return;
    const from = S.cursor === null ? 0 : S.cursor;
    const i = Math.max(0, Math.min(S.total - 1, from + step));
    const rowTop = Math.floor(i / S.cols) * CELL_H;
    if (rowTop < grid.scrollTop) grid.scrollTop = rowTop;
    else if (rowTop + CELL_H > grid.scrollTop + grid.clientHeight) grid.scrollTop = rowTop + CELL_H - grid.clientHeight;
    loadPage(Math.floor(i / PAGE)).then(() => {
      if (extend && S.anchor !== null) { S.cursor = i; selectRange(S.anchor, i, false); }
      else clickAt(i, {});
      const f = faceAt(i);
      if (f) showDetail(f);
    });
  }

  document.addEventListener("keydown", e => {
    if (!root.classList.contains("active")) return;
    const tag = (e.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "select" || tag === "textarea") return;
    const mod = e.ctrlKey || e.metaKey;
    if (mod && e.key.toLowerCase() === "a") { e.preventDefault(); selectAll(); }
    else if (mod && e.key.toLowerCase() === "z") { e.preventDefault(); undo(); }
    else if (e.key === "Delete" || e.key === "Backspace") { e.preventDefault(); trash(); }
    else if (e.key === "Escape") { S.selected.clear(); refreshCells(); }
    else if (e.key === "ArrowRight") { e.preventDefault(); moveCursor(1, e.shiftKey); }
    else if (e.key === "ArrowLeft") { e.preventDefault(); moveCursor(-1, e.shiftKey); }
    else if (e.key === "ArrowDown") { e.preventDefault(); moveCursor(S.cols, e.shiftKey); }
    else if (e.key === "ArrowUp") { e.preventDefault(); moveCursor(-S.cols, e.shiftKey); }
  });

  // ---------- trash and undo ----------

  let busy = false;
  async function trash() {
    const names = [...S.selected];
    if (!names.length || busy) return;
    busy = true; trashButton.disabled = true;
    try {
      const r = await api(`/api/faces/${S.side}/trash`, { method: "POST", body: JSON.stringify({ names }) });
      note.textContent = `moved ${count(r.moved, "face")} to data_${S.side}/aligned_trash/`;
      S.selected.clear(); S.anchor = null; S.cursor = null;
      if (S.detail && names.includes(S.detail.face.name)) clearDetail(`${S.detail.face.name}: moved to aligned_trash/`);
      await reload();
    } catch (e) {
      note.textContent = `not trashed: ${e.message}`;
    } finally { busy = false; updateCount(); refreshUndo(); }
  }
  trashButton.addEventListener("click", trash);

  async function undo() {
    if (busy || undoButton.disabled) return;
    busy = true; undoButton.disabled = true;
    try {
      const r = await api(`/api/faces/${S.side}/undo`, { method: "POST", body: "{}" });
      note.textContent = `undid ${r.undid || "the interrupted undo"}: ${count(r.moved, "file")} moved back`;
      await reload();
    } catch (e) {
      note.textContent = `not undone: ${e.message}`;
    } finally { busy = false; refreshUndo(); }
  }
  undoButton.addEventListener("click", undo);

  async function refreshUndo() {
    let info;
    try { info = await api(`/api/faces/${S.side}/undo`); } catch (_) { return; }
    if (info.last) {
      const what = count(info.moves, info.last.startsWith("trash") ? "face" : "move");
      undoButton.textContent = `Undo ${info.last} (${what})`;
      undoButton.disabled = busy;
    } else {
      undoButton.textContent = "Undo";
      undoButton.disabled = true;
    }
    undoButton.title = info.interrupted
      ? `an interrupted ${info.interrupted} is finished first`
      : "what `dfl sort --undo` does: revert the last sort or trash (Ctrl+Z)";
  }

  // ---------- the background build of thumbnails ----------

  function setBuild(status) {
    S.build = status;
    if (status.running) {
      buildText.textContent = `making thumbnails ${formatCount(status.done)} / ${formatCount(status.total || S.total)}`;
      if (!S.buildTimer) S.buildTimer = setTimeout(pollBuild, 500);
    } else {
      const last = status.last;
      buildText.textContent = last && last.failed ? `${count(last.failed, "face")} without a thumbnail: ${last.first_failure}` : "";
    }
  }

  async function pollBuild() {
    S.buildTimer = null;
    try { setBuild(await api(`/api/faces/${S.side}/build`)); } catch (_) { /* the next page answer says */ }
  }

  // ---------- the detail panel ----------

  function loadImage(url) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error(`cannot load ${url}`));
      img.src = url;
    });
  }

  // The applied mask as a tinted, see-through image.
  function tintMask(mask) {
    return window.dfl.maskCanvas(mask, [79, 163, 255], v => Math.round(v * 0.42));
  }

  async function showDetail(face) {
    if (!face || S.detailName === face.name) return;
    S.detailName = face.name;
    const gen = ++S.detailGen;
    const base = `/api/faces/${S.side}/${encodeURIComponent(face.name)}`;
    let meta, img, mask = null;
    try {
      [meta, img] = await Promise.all([api(`${base}/meta`), loadImage(`${base}/image`)]);
      if (meta.xseg_mask) mask = tintMask(await loadImage(`${base}/xseg_mask.png`));
    } catch (e) {
      if (gen === S.detailGen) { detailTitle.textContent = `${face.name}: ${e.message}`; S.detail = null; metaTable.replaceChildren(); }
      return;
    }
    if (gen !== S.detailGen) return;
    S.detail = { face, meta, img, mask };
    detailTitle.textContent = face.name;
    toggles.mask.disabled = !mask;
    drawDetail();
    fillMeta();
  }

  // Jaw, brows, nose, eyes and lips of the 68 points: [first, last, closed].
  const LANDMARK_PATHS = [[0, 16, false], [17, 21, false], [22, 26, false], [27, 30, false], [31, 35, false],
    [36, 41, true], [42, 47, true], [48, 59, true], [60, 67, true]];

  function drawDetail() {
    const d = S.detail;
    if (!d) return;
    const size = d.meta.size_px || d.img.naturalWidth;
    // Full size, and small faces twice or more so the landmarks can be seen.
    const shown = size < 256 ? size * Math.ceil(256 / size) : size;
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(shown * dpr); canvas.height = Math.round(shown * dpr);
    canvas.style.width = `${shown}px`;
    const ctx = canvas.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(d.img, 0, 0, canvas.width, canvas.height);
    const k = canvas.width / size;
    if (toggles.mask.checked && d.mask) ctx.drawImage(d.mask, 0, 0, canvas.width, canvas.height);
    if (toggles.polys.checked) {
      for (const poly of d.meta.seg_ie_polys) {
        const include = poly.kind === "include";
        ctx.beginPath();
        poly.points.forEach(([x, y], j) => (j ? ctx.lineTo(x * k, y * k) : ctx.moveTo(x * k, y * k)));
        ctx.closePath();
        ctx.fillStyle = include ? "rgba(95,208,104,0.18)" : "rgba(255,107,107,0.22)";
        ctx.strokeStyle = include ? "#5fd068" : "#ff6b6b";
        ctx.lineWidth = 2 * dpr;
        ctx.fill(); ctx.stroke();
      }
    }
    if (toggles.landmarks.checked) {
      const pts = d.meta.landmarks;
      ctx.strokeStyle = "rgba(255,214,64,0.85)"; ctx.lineWidth = 1.2 * dpr;
      for (const [a, b, closed] of LANDMARK_PATHS) {
        ctx.beginPath();
        for (let j = a; j <= b; j++) (j === a ? ctx.moveTo(pts[j][0] * k, pts[j][1] * k) : ctx.lineTo(pts[j][0] * k, pts[j][1] * k));
        if (closed) ctx.closePath();
        ctx.stroke();
      }
      ctx.fillStyle = "#ffd640";
      for (const [x, y] of pts) { ctx.beginPath(); ctx.arc(x * k, y * k, 2 * dpr, 0, 2 * Math.PI); ctx.fill(); }
    }
  }

  function fillMeta() {
    const d = S.detail;
    if (!d) return;
    const m = d.meta, f = d.face;
    const includes = m.seg_ie_polys.filter(p => p.kind === "include").length;
    const row = (k, v) => el("tr", {}, el("th", {}, k), el("td", {}, v));
    const rows = [
      row("file", m.name),
      row("source frame", m.source_filename),
      row("face in frame", `#${m.face_index}`),
      row("source", m.source_path.split(/[\\/]/).pop() || "–"),
      row("face type", m.face_type.replace(/_/g, " ")),
      row("size", `${m.size_px} px`),
      row("detector score", formatValue(m.detector_score)),
      row("XSeg labels", m.seg_ie_polys.length ? `${includes} include, ${m.seg_ie_polys.length - includes} exclude` : "none"),
      row("XSeg mask", m.xseg_mask ? `${m.xseg_mask[0]} @ ${m.xseg_mask[1].toLocaleString()}` : "none applied"),
    ];
    const measures = Object.keys(f.scores);
    if (measures.length) {
      for (const k of measures) rows.push(row(MEASURE_LABELS[k] || k, formatValue(f.scores[k])));
    } else {
      rows.push(row("scores", "none cached (run dfl sort)"));
    }
    rows[0].title = m.source_path;
    metaTable.replaceChildren(...rows);
  }

  function clearDetail(title) {
    S.detailName = null; S.detail = null; S.detailGen += 1;
    detailTitle.textContent = title; metaTable.replaceChildren();
    canvas.width = 0; canvas.height = 0;
  }

  for (const t of Object.values(toggles)) t.addEventListener("change", drawDetail);

  // ---------- controls ----------

  function setSide(side) {
    if (side === S.side) return;
    S.side = side;
    for (const b of sideButtons) b.classList.toggle("active", b.dataset.side === side);
    restart();
  }
  for (const b of sideButtons) b.addEventListener("click", () => setSide(b.dataset.side));

  // Starts over for a new side or order: nothing selected, at the top.
  function restart() {
    S.version = null; S.selected.clear(); S.anchor = null; S.cursor = null;
    clearDetail("no face selected");
    dropPages(); clearCells();
    grid.scrollTop = 0;
    note.textContent = "";
    reload(); refreshUndo();
  }

  sortSelect.addEventListener("change", () => {
    S.sort = sortSelect.value;
    keepSelectionAndReorder();
  });
  orderButton.addEventListener("click", () => {
    S.desc = !S.desc;
    orderButton.textContent = S.desc ? "↓ descending" : "↑ ascending";
    keepSelectionAndReorder();
  });

  // A new order keeps the selection (names) but not the positions.
  function keepSelectionAndReorder() {
    S.version = null; S.anchor = null; S.cursor = null;
    dropPages(); clearCells();
    grid.scrollTop = 0;
    reload();
  }

  window.addEventListener("resize", () => { layout(); render(); });

  window.dfl.onTab("faces", () => {
    if (!S.started) { S.started = true; reload(); refreshUndo(); return; }
    layout(); render();
    if (S.stale) { S.stale = false; reload(); refreshUndo(); }
  });

  window.dfl.onChange(topics => {
    if (!S.started) return;
    const mine = topics === null || topics.includes(`faces/${S.side}`);
    if (!mine) return;
    if (!root.classList.contains("active")) { S.stale = true; return; }
    reload(); refreshUndo();
  });
})();
