//! The faceset browser: faces trashed in a real headless Chromium land in `aligned_trash/` and
//! come back, byte for byte, with the page's Undo or with `dfl sort --undo`; the trash
//! endpoint refuses names outside `aligned/` and answers 409 while another run reads the
//! faceset; pages, sort orders and thumbnails over raw HTTP. Plus the measurement of the page
//! over 10,000 faces (ignored: `scripts/bench/studio_faces.sh`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::actions::{
    InputSource, KeyAction, KeyActions, MOUSE_BUTTON_LEFT, MouseActions, PointerAction,
};
use fantoccini::key::Key;
use fantoccini::{Client, Locator};
use serde_json::Value;

use dfl::face::metadata::rewrite_metadata;
use dfl::face::seg::{PolyKind, SegPoly, XSegMask, rasterize};

use crate::common::{self, dfl, image_files as files};
use crate::studio_support::{Browser, KillOnDrop, Studio, http, screenshot_dir};

/// A workspace with three src faces and one dst face from the bundled portraits.
fn workspace() -> (tempfile::TempDir, PathBuf) {
    common::extracted_workspace(&["obama.jpg", "obama2.jpg", "obama3.jpg"], &["biden.jpg"])
}

/// Gives the face at `path` XSeg labels (its landmarks' hull included, its mouth excluded)
/// and an applied mask (the hull), as `dfl xseg` would.
fn label(path: &Path) {
    let changed = rewrite_metadata(path, |m| {
        let p = m.landmarks.points();
        let mut hull: Vec<[f32; 2]> = p[0..17].to_vec();
        hull.extend(p[17..27].iter().rev());
        let include = SegPoly { kind: PolyKind::Include, points: hull };
        let mouth = SegPoly { kind: PolyKind::Exclude, points: p[48..60].to_vec() };
        let mask = rasterize(std::slice::from_ref(&include), m.size_px, m.size_px).unwrap();
        m.xseg_mask = Some(XSegMask::encode("test-xseg", 1234, &mask).unwrap());
        m.seg_ie_polys = vec![include, mouth];
    });
    assert!(changed.unwrap());
}

/// Opens the studio's faceset page and waits for every thumbnail on screen to be loaded.
fn open_faces(browser: &Browser, studio: &Studio, faces: usize) {
    browser.run(browser.client.goto(&format!("{}#faces", studio.url))).unwrap();
    browser.wait_until(20, "the live feed", "return document.querySelector('#live.on') !== null");
    browser.wait_until(
        30,
        "the thumbnails",
        &format!(
            "const imgs = [...document.querySelectorAll('#faces .face-cell img')];
             return imgs.length === {faces} && imgs.every(i => i.complete && i.naturalWidth > 0)"
        ),
    );
}

/// The grid cell of face `name`.
fn cell(name: &str) -> String {
    format!("#faces .face-cell[data-name='{name}']")
}

/// Clicks `selector` with `modifier` (Shift, Control) held, as a person would.
fn click_with(browser: &Browser, selector: &str, modifier: Option<Key>) {
    let client: &Client = &browser.client;
    browser.run(async {
        let element = client.find(Locator::Css(selector)).await.unwrap();
        let key = modifier.map(char::from);
        let zero = Duration::ZERO;
        let keys = KeyActions::new("keyboard".into());
        let keys = match key {
            Some(value) => keys.then(KeyAction::Down { value }),
            None => keys.pause(zero),
        };
        let keys = keys.pause(zero).pause(zero);
        let keys = match key {
            Some(value) => keys.then(KeyAction::Up { value }),
            None => keys.pause(zero),
        };
        let mouse = MouseActions::new("mouse".into())
            .then(PointerAction::MoveToElement { element, duration: None, x: 0.0, y: 0.0 })
            .then(PointerAction::Down { button: MOUSE_BUTTON_LEFT })
            .then(PointerAction::Up { button: MOUSE_BUTTON_LEFT })
            .pause(zero);
        client.perform_actions(fantoccini::actions::Actions::from(keys).and(mouse)).await.unwrap();
        client.release_actions().await.unwrap();
    });
}

fn text_of(browser: &Browser, selector: &str) -> String {
    let v = browser.eval(&format!("return document.querySelector(\"{selector}\").textContent"));
    v.as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_face_trashed_in_the_browser_is_in_the_trash_and_comes_back_with_undo() {
    let (_tmp, ws) = workspace();
    let aligned = ws.join("data_src/aligned");
    let trash = ws.join("data_src/aligned_trash");
    let name = files(&aligned).keys().nth(1).unwrap().clone();
    label(&aligned.join(&name));
    let before = files(&aligned);
    assert_eq!(before.len(), 3, "three src faces");

    let studio = Studio::start(&ws);
    let browser = Browser::start();
    open_faces(&browser, &studio, 3);
    assert_eq!(text_of(&browser, "#faces-count"), "3 faces");
    let shots = screenshot_dir();
    browser.screenshot(&shots.join("faces.png"));

    // A click selects the face and shows it in the detail panel with its landmarks.
    browser
        .run(async {
            browser.client.find(Locator::Css(&format!("{} img", cell(&name)))).await?.click().await
        })
        .unwrap();
    browser.wait_until(
        10,
        "the face selected and shown",
        &format!(
            "return document.querySelector(\"{}\").classList.contains('selected')
                && document.querySelector('#faces-detail-title').textContent === '{name}'
                && document.querySelector('#faces-canvas').width > 0
                && document.querySelector('#faces-meta').textContent.includes('source frame')",
            cell(&name)
        ),
    );
    assert_eq!(text_of(&browser, "#faces-count"), "3 faces · 1 selected");
    let meta = text_of(&browser, "#faces-meta");
    assert!(meta.contains("1 include, 1 exclude") && meta.contains("test-xseg @ 1,234"), "{meta}");
    // Each overlay is drawn, and goes when its box is unticked.
    let toggled = browser.eval(
        "const c = document.querySelector('#faces-canvas'), on = c.toDataURL();
         return ['faces-show-landmarks', 'faces-show-polys', 'faces-show-mask'].map(id => {
             const box = document.getElementById(id);
             box.click(); const off = c.toDataURL(); box.click();
             return [off !== on, c.toDataURL() === on];
         })",
    );
    assert_eq!(toggled, serde_json::json!([[true, true], [true, true], [true, true]]));
    browser.screenshot(&shots.join("faces-detail.png"));

    // The Delete key trashes it.
    browser
        .run(async {
            let grid = browser.client.find(Locator::Css("#faces-grid")).await?;
            grid.send_keys(&char::from(Key::Delete).to_string()).await
        })
        .unwrap();
    common::wait_for(10, "the face in aligned_trash/", || trash.join(&name).is_file());
    assert!(!aligned.join(&name).exists(), "gone from aligned/");
    assert_eq!(std::fs::read(trash.join(&name)).unwrap(), before[&name], "moved, not rewritten");
    browser.wait_until(
        10,
        "two faces left on the page",
        &format!(
            "return document.querySelector('#faces-count').textContent === '2 faces'
            && document.querySelectorAll('#faces .face-cell img').length === 2
            && !document.querySelector(\"{}\")",
            cell(&name)
        ),
    );
    browser.wait_until(
        10,
        "the Undo button naming the trash",
        "const b = document.querySelector('#faces-undo');
         return !b.disabled && b.textContent === 'Undo trash from studio (1 face)'",
    );
    browser.screenshot(&shots.join("faces-trashed.png"));

    // Undo puts it back, byte-identical.
    browser
        .run(async { browser.client.find(Locator::Css("#faces-undo")).await?.click().await })
        .unwrap();
    common::wait_for(10, "the face back in aligned/", || aligned.join(&name).is_file());
    assert_eq!(files(&aligned), before, "every face back, byte-identical");
    assert!(files(&trash).is_empty(), "nothing left in the trash");
    browser.wait_until(
        10,
        "three faces on the page and nothing to undo",
        "return document.querySelector('#faces-count').textContent === '3 faces'
            && document.querySelector('#faces-undo').disabled",
    );

    // The other side.
    browser
        .run(async {
            browser.client.find(Locator::Css("#faces button[data-side=dst]")).await?.click().await
        })
        .unwrap();
    browser.wait_until(
        10,
        "the dst face",
        "const imgs = [...document.querySelectorAll('#faces .face-cell img')];
         return document.querySelector('#faces-count').textContent === '1 face'
             && imgs.length === 1 && imgs[0].complete && imgs[0].naturalWidth > 0",
    );
}

#[test]
fn a_trash_made_in_the_browser_is_undone_by_dfl_sort_undo() {
    let (_tmp, ws) = workspace();
    let aligned = ws.join("data_src/aligned");
    let trash = ws.join("data_src/aligned_trash");
    let before = files(&aligned);
    let names: Vec<String> = before.keys().cloned().collect();

    let studio = Studio::start(&ws);
    let browser = Browser::start();
    open_faces(&browser, &studio, 3);
    // Click the first, Shift-click the last (all three), Ctrl-click the middle one off.
    click_with(&browser, &cell(&names[0]), None);
    click_with(&browser, &cell(&names[2]), Some(Key::Shift));
    browser.wait_until(
        5,
        "a range of three",
        "return document.querySelectorAll('#faces .face-cell.selected').length === 3",
    );
    click_with(&browser, &cell(&names[1]), Some(Key::Control));
    browser.wait_until(
        5,
        "two selected",
        "return document.querySelector('#faces-count').textContent === '3 faces · 2 selected'",
    );
    browser
        .run(async { browser.client.find(Locator::Css("#faces-trash")).await?.click().await })
        .unwrap();
    common::wait_for(10, "two faces in aligned_trash/", || files(&trash).len() == 2);
    assert_eq!(files(&aligned).keys().collect::<Vec<_>>(), [&names[1]]);
    browser.wait_until(
        10,
        "one face on the page",
        "return document.querySelector('#faces-count').textContent === '1 face'",
    );

    let out = dfl(&ws, &["sort", "src", "--undo"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(files(&aligned), before, "every face back, byte-identical");
    assert!(files(&trash).is_empty());
    // The page follows what a terminal did.
    browser.wait_until(
        10,
        "the page after dfl sort --undo",
        "return document.querySelector('#faces-count').textContent === '3 faces'
            && document.querySelectorAll('#faces .face-cell img').length === 3
            && document.querySelector('#faces-undo').disabled",
    );
    // Ctrl+A selects every face.
    browser
        .run(async {
            let grid = browser.client.find(Locator::Css("#faces-grid")).await?;
            grid.send_keys(&format!("{}a", char::from(Key::Control))).await
        })
        .unwrap();
    browser.wait_until(
        5,
        "all selected",
        "return document.querySelector('#faces-count').textContent === '3 faces · 3 selected'",
    );
}

/// `(status, JSON body)` of a request with the session token.
fn call(studio: &Studio, method: &str, path: &str, body: &str) -> (u16, Value) {
    let headers = [("X-DFL-Token", studio.token.as_str()), ("Content-Type", "application/json")];
    let (code, _, bytes) = http(&studio.base, method, path, &headers, body);
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[test]
fn the_trash_refuses_names_outside_the_faceset_and_waits_for_no_reader() {
    let (_tmp, ws) = workspace();
    let aligned = ws.join("data_src/aligned");
    let trash = ws.join("data_src/aligned_trash");
    // Sorted by blur, so the score cache has a measure to order by.
    let out = dfl(&ws, &["-q", "sort", "src", "--by", "blur"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let before = files(&aligned);
    let name = before.keys().next().unwrap().clone();
    std::fs::write(ws.join("data_src/outside.jpg"), b"not in aligned/").unwrap();
    let studio = Studio::start(&ws);

    // Names with a path in them are refused before anything moves.
    for bad in ["../outside.jpg", "a/b.jpg", "..", ".hidden.jpg", "/etc/passwd", "notes.txt", ""] {
        let body = serde_json::json!({ "names": [name.clone(), bad] }).to_string();
        let (code, answer) = call(&studio, "POST", "/api/faces/src/trash", &body);
        assert_eq!(code, 400, "{bad:?}: {answer}");
        assert!(answer["error"].as_str().is_some(), "{answer}");
    }
    let (code, _) = call(&studio, "POST", "/api/faces/src/trash", r#"{"names":[]}"#);
    assert_eq!(code, 400, "an empty trash");
    let (code, _) = call(&studio, "POST", "/api/faces/nope/trash", r#"{"names":["x.jpg"]}"#);
    assert_eq!(code, 404);
    assert_eq!(files(&aligned), before, "nothing moved");
    assert!(ws.join("data_src/outside.jpg").is_file());

    // A reader (as `dfl train` is) holds the faceset: 409 naming it, nothing moves.
    let reader = dfl::lock::shared(&ws.join("data_src/faceset.lock"), "the src faceset").unwrap();
    let body = serde_json::json!({ "names": [name.clone()] }).to_string();
    let (code, answer) = call(&studio, "POST", "/api/faces/src/trash", &body);
    assert_eq!(code, 409, "{answer}");
    let message = answer["error"].as_str().unwrap();
    assert!(
        message.contains(&format!("pid {}", std::process::id())),
        "names the holder: {message}"
    );
    assert_eq!(files(&aligned), before, "nothing moved while the faceset is read");
    assert!(files(&trash).is_empty());
    drop(reader);

    let (code, answer) = call(&studio, "POST", "/api/faces/src/trash", &body);
    assert_eq!((code, answer["moved"].as_u64()), (200, Some(1)), "{answer}");
    assert!(trash.join(&name).is_file());
    let (code, answer) = call(&studio, "GET", "/api/faces/src/undo", "");
    assert_eq!(
        (code, answer["last"].as_str(), answer["moves"].as_u64()),
        (200, Some("trash from studio"), Some(1))
    );
    // A second trash of the same face finds it gone: 409, nothing moves.
    let (code, _) = call(&studio, "POST", "/api/faces/src/trash", &body);
    assert_eq!(code, 409);
    let (code, answer) = call(&studio, "POST", "/api/faces/src/undo", "{}");
    assert_eq!((code, answer["moved"].as_u64()), (200, Some(1)), "{answer}");
    assert_eq!(files(&aligned), before);
    // The blur sort is next, then nothing.
    let (code, answer) = call(&studio, "POST", "/api/faces/src/undo", "{}");
    assert_eq!((code, answer["undid"].as_str()), (200, Some("sort by blur")), "{answer}");
    let (code, _) = call(&studio, "POST", "/api/faces/src/undo", "{}");
    assert_eq!(code, 409, "nothing to undo");
}

#[test]
fn pages_come_in_name_or_score_order_with_immutable_thumbnails() {
    let (_tmp, ws) = workspace();
    let out = dfl(&ws, &["-q", "sort", "src", "--by", "blur"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let names: Vec<String> = files(&ws.join("data_src/aligned")).into_keys().collect();
    let studio = Studio::start(&ws);

    let (code, page) = call(&studio, "GET", "/api/faces/src", "");
    assert_eq!(code, 200, "{page}");
    assert_eq!(page["total"], 3);
    assert!(page["measures"].as_array().unwrap().contains(&"blur".into()), "{page}");
    let listed: Vec<&str> =
        page["faces"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(listed, names.iter().map(String::as_str).collect::<Vec<_>>(), "name order");

    let blur = |desc: bool| -> Vec<f64> {
        let (code, page) =
            call(&studio, "GET", &format!("/api/faces/src?sort=blur&desc={desc}"), "");
        assert_eq!(code, 200, "{page}");
        page["faces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["scores"]["blur"].as_f64().unwrap())
            .collect()
    };
    let (up, down) = (blur(false), blur(true));
    assert_eq!(up.len(), 3);
    assert!(up.windows(2).all(|w| w[0] <= w[1]), "ascending: {up:?}");
    assert_eq!(down, up.iter().rev().copied().collect::<Vec<_>>(), "descending");
    let (code, page) = call(&studio, "GET", "/api/faces/src?offset=1&limit=1", "");
    assert_eq!(
        (code, page["offset"].as_u64(), page["faces"].as_array().map(Vec::len)),
        (200, Some(1), Some(1))
    );
    assert_eq!(page["faces"][0]["name"], names[1]);
    let (code, _) = call(&studio, "GET", "/api/faces/src?sort=nope", "");
    assert_eq!(code, 400);

    // A thumbnail by content key: a JPEG the browser may keep for good.
    let key = page["faces"][0]["key"].as_str().unwrap().to_owned();
    let auth = [("X-DFL-Token", studio.token.as_str())];
    let (code, headers, body) =
        http(&studio.base, "GET", &format!("/api/thumbs/src/{key}"), &auth, "");
    assert_eq!(code, 200);
    assert!(body.starts_with(&[0xFF, 0xD8]) && body.ends_with(&[0xFF, 0xD9]), "a whole JPEG");
    let cache = headers.iter().find(|(k, _)| k == "cache-control").map(|(_, v)| v.as_str());
    assert_eq!(cache, Some("private, max-age=31536000, immutable"));
    assert!(ws.join(format!("data_src/thumbs/128px_q85/{key}.jpg")).is_file());
    for bad in ["../../aligned", "0123", "..%2F..%2Fsort.scores.jsonl"] {
        let (code, _, _) = http(&studio.base, "GET", &format!("/api/thumbs/src/{bad}"), &auth, "");
        assert!((400..=404).contains(&code), "{bad}: {code}");
    }
    let unknown = "0".repeat(32);
    let (code, _, _) = http(&studio.base, "GET", &format!("/api/thumbs/src/{unknown}"), &auth, "");
    assert_eq!(code, 404, "a key no face has");
}

// ---------- the measurement over 10,000 faces ----------

/// A `dfl studio` child whose process id is known (for its peak memory).
struct OwnStudio {
    child: KillOnDrop,
    url: String,
    base: String,
    token: String,
}

impl OwnStudio {
    fn start(ws: &Path) -> Self {
        let mut child = common::dfl_cmd(ws, &["studio", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_owned();
        let (base, token) = url.split_once("/?token=").unwrap();
        let (base, token) = (base.to_owned(), token.to_owned());
        Self { child: KillOnDrop(child), url, base, token }
    }

    /// A field of the studio process's `/proc/<pid>/status` in kB (`VmHWM`, `RssAnon`…), as MB.
    fn status_mb(&self, field: &str) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.0.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with(&format!("{field}:"))).unwrap();
        let kb: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb / 1024.0
    }

    /// `VmHWM` (peak resident memory) of the studio process, MB.
    fn peak_mb(&self) -> f64 {
        self.status_mb("VmHWM")
    }

    /// Resident memory now: total, anonymous (heap, stacks, libraries' static data) and
    /// file-backed (library code, shared with other processes).
    fn memory(&self) -> String {
        let mb = |f: &str| self.status_mb(f);
        format!(
            "{:.0} MB resident ({:.0} MB anonymous, {:.0} MB file-backed)",
            mb("VmRSS"),
            mb("RssAnon"),
            mb("RssFile")
        )
    }

    fn get(&self, path: &str) -> Value {
        let (code, _, body) = http(&self.base, "GET", path, &[("X-DFL-Token", &self.token)], "");
        assert_eq!(code, 200, "{path}");
        serde_json::from_slice(&body).unwrap()
    }
}

/// The first screen of thumbnails loaded (every cell in the grid's view).
const FIRST_SCREEN_LOADED: &str = "
    const grid = document.querySelector('#faces-grid');
    if (!grid) return false;
    const box = grid.getBoundingClientRect();
    const cells = [...document.querySelectorAll('#faces .face-cell')].filter(c => {
        const r = c.getBoundingClientRect();
        return r.bottom > box.top && r.top < box.bottom;
    });
    return cells.length > 0 && cells.every(c => { const i = c.querySelector('img'); return i.complete && i.naturalWidth > 0; });";

/// A workspace whose `data_src/aligned` holds `count` copies of the faces of `faceset`, each
/// copy with its frame name changed in its metadata (`<frame>_c<copy>`, the pixels as they
/// were): its own content key, so its own thumbnail and scores.
fn copied_workspace(faceset: &Path, count: usize) -> (tempfile::TempDir, PathBuf) {
    use rayon::prelude::*;
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let aligned = ws.join("data_src/aligned");
    std::fs::create_dir_all(&aligned).unwrap();
    std::fs::create_dir_all(ws.join("data_dst")).unwrap();
    let originals: Vec<PathBuf> = files(faceset).into_keys().map(|n| faceset.join(n)).collect();
    assert!(!originals.is_empty(), "no faces in {}", faceset.display());
    (0..count).into_par_iter().for_each(|n| {
        let (original, copy) = (&originals[n % originals.len()], n / originals.len());
        let stem = original.file_stem().unwrap().to_str().unwrap();
        let ext = original.extension().unwrap().to_str().unwrap();
        let out = aligned.join(format!("{stem}_c{copy:03}.{ext}"));
        std::fs::copy(original, &out).unwrap();
        let renamed = rewrite_metadata(&out, |m| {
            m.source_filename = format!("{}_c{copy:03}", m.source_filename);
        });
        assert!(renamed.unwrap(), "{}", out.display());
    });
    println!(
        "studio_faces: {count} faces copied from the {} of {}",
        originals.len(),
        faceset.display()
    );
    (tmp, ws)
}

/// Not a test: the faceset page over a big faceset: `DFL_BENCH_COUNT` (10,000) copies of the
/// faces of `DFL_BENCH_FACESET`, sorted by blur (the score cache filled); the cold build rate
/// of thumbnails, the time from navigation to an interactive page (first screen of thumbnails
/// loaded and a click selecting) with a warm cache, and the server's peak memory after
/// scrolling through every face. `scripts/bench/studio_faces.sh` runs it:
/// `DFL_BENCH_FACESET=DIR cargo test --release --test studio studio_faces_bench -- --ignored
/// --nocapture`.
#[test]
#[ignore = "a measurement for docs/performance.md; run by scripts/bench/studio_faces.sh"]
fn studio_faces_bench() {
    let env = |name: &str| std::env::var(name).ok();
    let faceset = PathBuf::from(env("DFL_BENCH_FACESET").expect("DFL_BENCH_FACESET"));
    let count: usize = env("DFL_BENCH_COUNT").and_then(|c| c.parse().ok()).unwrap_or(10_000);
    let rounds: usize = env("DFL_BENCH_ROUNDS").and_then(|r| r.parse().ok()).unwrap_or(3);
    let t = Instant::now();
    let (_tmp, ws) = copied_workspace(&faceset, count);
    println!("studio_faces: copies made in {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let out = dfl(&ws, &["-q", "sort", "src", "--by", "blur"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    println!(
        "studio_faces: dfl sort src --by blur in {:.1} s (fills the score cache)",
        t.elapsed().as_secs_f64()
    );
    let total = files(&ws.join("data_src/aligned")).len();
    assert_eq!(total, count);
    // Faces written less than 2 s ago are read every time (thumbs::RACY_SECS).
    std::thread::sleep(Duration::from_secs(3));

    // Cold: no thumbnails, no index. The page opens the side; the studio builds in the
    // background while serving the thumbnails on screen first.
    let _ = std::fs::remove_dir_all(ws.join("data_src/thumbs"));
    std::process::Command::new("sync").status().unwrap();
    let studio = OwnStudio::start(&ws);
    let browser = Browser::start();
    let t = Instant::now();
    browser.run(browser.client.goto(&format!("{}#faces", studio.url))).unwrap();
    browser.wait_until(120, "the first screen (cold)", FIRST_SCREEN_LOADED);
    let first_cold = t.elapsed().as_secs_f64();
    let status = loop {
        let s = studio.get("/api/faces/src/build");
        if !s["running"].as_bool().unwrap() && !s["last"].is_null() {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let all_cold = t.elapsed().as_secs_f64();
    let last = &status["last"];
    let (built, secs) = (last["built"].as_f64().unwrap(), last["seconds"].as_f64().unwrap());
    println!(
        "studio_faces: cold: first screen in {first_cold:.2} s; background build {built:.0} \
         thumbnails in {secs:.2} s = {:.0} faces/s; navigation to every thumbnail built \
         {all_cold:.2} s = {:.0} faces/s (listing with every face read and hashed included); \
         failed {}",
        built / secs,
        total as f64 / all_cold,
        last["failed"]
    );
    drop(browser);
    drop(studio);

    // Warm: a fresh studio and a fresh browser (empty HTTP cache) each round.
    for round in 1..=rounds {
        let studio = OwnStudio::start(&ws);
        // Up and listening, nothing asked yet: what the process costs before the page.
        studio.get("/api/status");
        println!("studio_faces: warm round {round}: idle studio {}", studio.memory());
        let browser = Browser::start();
        let t = Instant::now();
        browser.run(browser.client.goto(&format!("{}#faces", studio.url))).unwrap();
        browser.wait_until(30, "the first screen", FIRST_SCREEN_LOADED);
        let loaded = t.elapsed().as_secs_f64();
        browser
            .run(async {
                browser.client.find(Locator::Css("#faces .face-cell img")).await?.click().await
            })
            .unwrap();
        browser.wait_until(
            10,
            "a face selected",
            "return document.querySelectorAll('#faces .face-cell.selected').length === 1",
        );
        let interactive = t.elapsed().as_secs_f64();
        println!(
            "studio_faces: warm round {round}: first screen of thumbnails {loaded:.2} s, \
             interactive (a click selected) {interactive:.2} s after navigation; server peak \
             {:.0} MB",
            studio.peak_mb()
        );
        if round < rounds {
            continue;
        }
        // Scroll through every face, a screen at a time, each screen's thumbnails loaded.
        browser.eval(
            "window.__long = [];
             new PerformanceObserver(l => window.__long.push(...l.getEntries().map(e => e.duration)))
                 .observe({ entryTypes: ['longtask'] });
             return true",
        );
        let t = Instant::now();
        let mut screens = 0;
        loop {
            let at_end = browser.eval(
                "const g = document.querySelector('#faces-grid');
                 const end = g.scrollTop + g.clientHeight >= g.scrollHeight - 2;
                 g.scrollTop += g.clientHeight;
                 return end",
            );
            screens += 1;
            browser.wait_until(30, "a screen of thumbnails", FIRST_SCREEN_LOADED);
            if at_end.as_bool().unwrap() {
                break;
            }
        }
        let secs = t.elapsed().as_secs_f64();
        let last_index = browser.eval(
            "return Math.max(...[...document.querySelectorAll('#faces .face-cell')].map(c => +c.dataset.i))",
        );
        let long = browser.eval("return window.__long");
        let long: Vec<f64> = long.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let in_dom = browser.eval("return document.querySelectorAll('#faces .face-cell').length");
        println!(
            "studio_faces: scrolled {screens} screens to face {last_index} of {total} in {secs:.1} s \
             ({:.0} ms per screen, thumbnails loaded); {in_dom} cells in the page at the end; \
             long tasks (> 50 ms) on the page: {} (longest {:.0} ms)",
            secs * 1000.0 / f64::from(screens),
            long.len(),
            long.iter().copied().fold(0.0, f64::max)
        );
        println!(
            "studio_faces: server peak memory (VmHWM) after scrolling through every face: \
             {:.0} MB; now {}",
            studio.peak_mb(),
            studio.memory()
        );
        browser.screenshot(&screenshot_dir().join("faces-10k.png"));
        // The sharpest faces first, their scores under them.
        browser.eval(
            "const s = document.querySelector('#faces-sort');
             s.value = 'blur'; s.dispatchEvent(new Event('change'));
             document.querySelector('#faces-order').click();
             return true",
        );
        browser.wait_until(
            30,
            "the faces by blur",
            "const c = document.querySelector('#faces .face-cell[data-i=\"0\"] .face-caption');
             return c !== null && /^[0-9]/.test(c.textContent)",
        );
        browser.wait_until(30, "their thumbnails", FIRST_SCREEN_LOADED);
        browser.screenshot(&screenshot_dir().join("faces-10k-blur.png"));
    }
}
