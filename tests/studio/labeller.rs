//! The XSeg labeller through the real binary: polygons drawn with mouse events in a headless
//! Chromium land in the face file's metadata (read back with `dfl faceset info`) and move with
//! the face through `dfl sort`; over raw HTTP, bad labels, stale versions, a locked faceset and
//! names outside the faceset are refused and leave the file as it was.

use std::path::{Path, PathBuf};
use std::time::Instant;

use fantoccini::actions::{
    InputSource, KeyAction, KeyActions, MOUSE_BUTTON_LEFT, MOUSE_BUTTON_RIGHT, MouseActions,
    PointerAction,
};
use fantoccini::key::Key;
use serde_json::{Value, json};

use crate::common::{self, dfl, stderr};
use crate::studio_support::{Browser, Studio, http, screenshot_dir};

/// How far a saved point may be from the face pixel that was clicked: the page keeps points to
/// 1/100 of a face pixel.
const POINT_TOLERANCE: f64 = 0.011;

/// `dfl faceset info FILE`, parsed.
fn face_info(ws: &Path, file: &Path) -> Value {
    let out = dfl(ws, &["faceset", "info", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(text.lines().next().expect("a line per face")).unwrap()
}

/// The face files of a side, by name.
fn face_files(ws: &Path, side: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(ws.join(format!("data_{side}/aligned")))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    files.sort();
    files
}

/// The polygons `dfl faceset info` prints for a face: `(kind, points)`.
fn polys_of(info: &Value) -> Vec<(String, Vec<[f64; 2]>)> {
    let Some(polys) = info["seg_ie_polys"]["polys"].as_array() else { return Vec::new() };
    polys
        .iter()
        .map(|p| {
            let points = p["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|q| [q[0].as_f64().unwrap(), q[1].as_f64().unwrap()])
                .collect();
            (p["kind"].as_str().unwrap().to_owned(), points)
        })
        .collect()
}

/// The character WebDriver sends for a special key.
fn key(k: Key) -> char {
    k.chars().next().unwrap()
}

/// Presses and releases keys in order while `held` keys (Control, Shift) are down.
fn keys(browser: &Browser, held: &[Key], pressed: &[char]) {
    let mut seq = KeyActions::new("keyboard".into());
    for &k in held {
        seq = seq.then(KeyAction::Down { value: key(k) });
    }
    for &c in pressed {
        seq = seq.then(KeyAction::Down { value: c }).then(KeyAction::Up { value: c });
    }
    for &k in held.iter().rev() {
        seq = seq.then(KeyAction::Up { value: key(k) });
    }
    browser.run(browser.client.perform_actions(seq)).unwrap();
}

/// Clicks each viewport point with `button`.
fn clicks(browser: &Browser, points: &[[f64; 2]], button: u64) {
    let mut mouse = MouseActions::new("mouse".into());
    for p in points {
        mouse = mouse
            .then(PointerAction::MoveTo { duration: None, x: p[0], y: p[1] })
            .then(PointerAction::Down { button })
            .then(PointerAction::Up { button });
    }
    browser.run(browser.client.perform_actions(mouse)).unwrap();
}

/// Where the page shows the face: `[left, top, width, height]` of its image, viewport px.
fn face_rect(browser: &Browser) -> [f64; 4] {
    let r = browser.eval(
        "const r = document.querySelector('#labeller .lb-face').getBoundingClientRect(); \
         return [r.left, r.top, r.width, r.height]",
    );
    let v: Vec<f64> = r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    [v[0], v[1], v[2], v[3]]
}

/// For face pixels `targets` on a face of `size` px shown at `rect`: the whole viewport pixels
/// to click, and the face pixels those clicks are on (what the page must save).
fn aim(rect: [f64; 4], size: f64, targets: &[[f64; 2]]) -> (Vec<[f64; 2]>, Vec<[f64; 2]>) {
    let [left, top, width, height] = rect;
    let viewport: Vec<[f64; 2]> = targets
        .iter()
        .map(|t| [(left + t[0] * width / size).round(), (top + t[1] * height / size).round()])
        .collect();
    let face = viewport
        .iter()
        .map(|v| [(v[0] - left) * size / width, (v[1] - top) * size / height])
        .collect();
    (viewport, face)
}

fn assert_points(what: &str, got: &[[f64; 2]], want: &[[f64; 2]]) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        let off = (g[0] - w[0]).abs().max((g[1] - w[1]).abs());
        assert!(off <= POINT_TOLERANCE, "{what}: saved {g:?}, clicked {w:?} (off by {off})");
    }
}

fn text(browser: &Browser, selector: &str) -> String {
    let script = format!("return document.querySelector('{selector}')?.textContent ?? ''");
    browser.eval(&script).as_str().unwrap_or_default().to_owned()
}

/// The face the editor shows has loaded.
const FACE_SHOWN: &str = "const s = document.querySelector('#labeller'), i = s.querySelector('.lb-face'); \
     return !!s.dataset.face && i.complete && i.naturalWidth > 0 && !i.hidden";

#[test]
fn a_polygon_drawn_with_the_mouse_is_in_the_face_file_and_survives_a_sort() {
    let (_tmp, ws) = common::extracted_workspace(&["obama.jpg", "obama2.jpg"], &["biden.jpg"]);
    let studio = Studio::start(&ws);
    let browser = Browser::start();
    browser.run(browser.client.goto(&studio.url)).unwrap();
    browser.wait_until(20, "the live feed", "return document.querySelector('#live.on') !== null");
    browser.eval("document.querySelector('button[data-tab=labeller]').click(); return true");
    browser.wait_until(20, "a face in the editor", FACE_SHOWN);
    browser.wait_until(
        20,
        "the counters",
        "return document.querySelector('#lb-count-src').textContent === '0 of 2 faces labelled' \
         && document.querySelector('#lb-count-dst').textContent === '0 of 1 faces labelled'",
    );
    let name = browser.eval("return document.querySelector('#labeller').dataset.face");
    let name = name.as_str().unwrap().to_owned();
    let path = ws.join("data_src/aligned").join(&name);
    let before = face_info(&ws, &path);
    assert!(polys_of(&before).is_empty(), "extracted faces have no labels");
    let size = before["size_px"].as_f64().unwrap();
    let frame = before["source_filename"].as_str().unwrap().to_owned();

    let rect = face_rect(&browser);
    assert!(rect[2] >= 4.0 * size, "the face is shown large: {rect:?}");
    // An include polygon of 5 points, closed by clicking its first point again.
    let include = [[20.0, 24.0], [70.0, 18.5], [84.0, 60.0], [50.0, 88.0], [14.0, 66.0]];
    let (include_at, include_face) = aim(rect, size, &include);
    clicks(&browser, &include_at, MOUSE_BUTTON_LEFT);
    clicks(&browser, &include_at[..1], MOUSE_BUTTON_LEFT);
    // Exclude mode (2), four points, closed with Enter; then the fourth deleted by a
    // right-click, leaving a triangle.
    keys(&browser, &[], &['2']);
    let exclude = [[36.0, 40.0], [60.0, 42.0], [48.0, 62.0], [30.0, 58.0]];
    let (exclude_at, exclude_face) = aim(rect, size, &exclude);
    clicks(&browser, &exclude_at, MOUSE_BUTTON_LEFT);
    keys(&browser, &[], &[key(Key::Enter)]);
    clicks(&browser, &exclude_at[3..], MOUSE_BUTTON_RIGHT);
    // Drag the include polygon's second point away, then undo the drag.
    let away = [include_at[1][0] + 40.0, include_at[1][1] + 30.0];
    let drag = MouseActions::new("mouse".into())
        .then(PointerAction::MoveTo { duration: None, x: include_at[1][0], y: include_at[1][1] })
        .then(PointerAction::Down { button: MOUSE_BUTTON_LEFT })
        .then(PointerAction::MoveTo { duration: None, x: away[0] - 20.0, y: away[1] - 15.0 })
        .then(PointerAction::MoveTo { duration: None, x: away[0], y: away[1] })
        .then(PointerAction::Up { button: MOUSE_BUTTON_LEFT });
    browser.run(browser.client.perform_actions(drag)).unwrap();
    let moved = browser.eval("return document.querySelector('#lb-status').dataset.state");
    assert_eq!(moved, json!("unsaved"), "drawn, not saved yet");
    browser.screenshot(&screenshot_dir().join("labeller-dragged.png"));
    keys(&browser, &[Key::Control], &['z']);
    keys(&browser, &[Key::Control], &['s']);
    browser.wait_until(
        20,
        "the save",
        "return document.querySelector('#lb-status').dataset.state === 'saved' && \
         document.querySelector('#lb-count-src').textContent === '1 of 2 faces labelled'",
    );
    browser.screenshot(&screenshot_dir().join("labeller-polygons.png"));

    // In the file, as clicked.
    let saved = polys_of(&face_info(&ws, &path));
    assert_eq!(saved.len(), 2, "{saved:?}");
    assert_eq!((saved[0].0.as_str(), saved[1].0.as_str()), ("include", "exclude"));
    assert_points("include polygon", &saved[0].1, &include_face);
    assert_points("exclude polygon (4th point deleted)", &saved[1].1, &exclude_face[..3]);

    // A sort renames every face; the labels go with theirs, and the page follows it.
    let out = dfl(&ws, &["sort", "src", "--by", "brightness"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let infos: Vec<(PathBuf, Value)> =
        face_files(&ws, "src").into_iter().map(|p| (p.clone(), face_info(&ws, &p))).collect();
    let (moved_to, info) = infos
        .iter()
        .find(|(_, i)| i["source_filename"] == json!(frame))
        .expect("the labelled face is still in the faceset");
    assert!(!path.exists(), "the sort renamed {}", path.display());
    assert_eq!(polys_of(info), saved, "the labels moved with the face");
    let others = infos.iter().filter(|(p, _)| p != moved_to);
    assert!(others.into_iter().all(|(_, i)| polys_of(i).is_empty()));
    let new_name = moved_to.file_name().unwrap().to_str().unwrap().to_owned();
    browser.wait_until(
        20,
        "the editor to follow the renamed face",
        &format!("return document.querySelector('#labeller').dataset.face === '{new_name}'"),
    );
    assert_eq!(text(&browser, "#lb-count-src"), "1 of 2 faces labelled");
    let listed = browser.eval(
        "return [...document.querySelectorAll('#labeller .lb-row.labelled .lb-name')].map(e => e.textContent)",
    );
    assert_eq!(listed, json!([new_name]), "the list marks the labelled face");

    // An applied mask (a one-step XSeg model trained on this one labelled face), shown over
    // the face with M.
    let xseg = ["--device", "cpu", "xseg"];
    let started = Instant::now();
    let train = [&xseg[..], &["train", "--name", "m", "--resolution", "64"]].concat();
    let out = dfl(&ws, &[&train[..], &["--iterations", "1", "--batch-size", "2"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = dfl(&ws, &[&xseg[..], &["apply", "src", "--name", "m"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    eprintln!("xseg train (1 step) + apply: {:.1} s", started.elapsed().as_secs_f64());
    browser.wait_until(
        30,
        "the applied mask on the page",
        "return document.querySelector('#labeller .lb-info').textContent.includes('m at 1 it.')",
    );
    keys(&browser, &[], &['m']);
    browser.wait_until(
        5,
        "the mask overlay",
        "return document.querySelector('#labeller').classList.contains('lb-mask-on') && \
         document.querySelector('#labeller .lb-info').textContent.includes('shown (M)')",
    );
    assert_eq!(polys_of(&face_info(&ws, moved_to)), saved, "xseg apply keeps the labels");
    browser.screenshot(&screenshot_dir().join("labeller-mask.png"));

    // U jumps to the unlabelled face; a triangle drawn there is closed and saved on leaving
    // the face (D).
    let (other, _) = infos.iter().find(|(p, _)| p != moved_to).unwrap();
    let other_name = other.file_name().unwrap().to_str().unwrap().to_owned();
    keys(&browser, &[], &['u']);
    browser.wait_until(
        20,
        "the unlabelled face",
        &format!(
            "{FACE_SHOWN} && document.querySelector('#labeller').dataset.face === '{other_name}'"
        ),
    );
    keys(&browser, &[], &['1']);
    let triangle = [[30.0, 30.0], [66.0, 30.0], [48.0, 70.0]];
    let (triangle_at, triangle_face) = aim(face_rect(&browser), size, &triangle);
    clicks(&browser, &triangle_at, MOUSE_BUTTON_LEFT);
    // Left open: leaving the face closes it.
    keys(&browser, &[], &['d']);
    browser.wait_until(
        20,
        "the save on leaving the face",
        &format!(
            "return document.querySelector('#lb-count-src').textContent === '2 of 2 faces labelled' \
             && document.querySelector('#labeller').dataset.face === '{new_name}'"
        ),
    );
    let drawn = polys_of(&face_info(&ws, other));
    assert_eq!(drawn.len(), 1, "{drawn:?}");
    assert_eq!(drawn[0].0, "include");
    assert_points("triangle saved on leaving", &drawn[0].1, &triangle_face);

    // The other side's faces.
    browser.eval("document.querySelector('#labeller button[data-side=dst]').click(); return true");
    let dst = face_files(&ws, "dst");
    let dst_name = dst[0].file_name().unwrap().to_str().unwrap();
    browser.wait_until(
        20,
        "the dst face",
        &format!(
            "{FACE_SHOWN} && document.querySelector('#labeller').dataset.face === '{dst_name}'"
        ),
    );
    let rows = browser.eval("return document.querySelectorAll('#labeller .lb-row').length");
    assert_eq!(rows, json!(dst.len()));
}

#[test]
fn bad_labels_stale_versions_a_locked_faceset_and_bad_names_leave_the_file_as_it_was() {
    let (_tmp, ws) = common::extracted_workspace(&["obama.jpg"], &["biden.jpg"]);
    let studio = Studio::start(&ws);
    let token = studio.token.clone();
    let auth = [("X-DFL-Token", token.as_str())];
    let get = |path: &str| -> (u16, Value) {
        let (code, _, body) = http(&studio.base, "GET", path, &auth, "");
        (code, serde_json::from_slice(&body).unwrap_or(Value::Null))
    };
    let (code, list) = get("/api/labeller/src");
    assert_eq!(code, 200, "{list}");
    assert_eq!((list["labelled"].clone(), list["total"].clone()), (json!(0), json!(1)));
    let name = list["faces"][0]["name"].as_str().unwrap().to_owned();
    let path = ws.join("data_src/aligned").join(&name);
    let labels_url = format!("/api/faces/src/{name}/labels");
    let (code, face) = get(&labels_url);
    assert_eq!(code, 200, "{face}");
    assert_eq!(face["version"], list["faces"][0]["version"]);
    assert_eq!((face["size_px"].clone(), face["seg_ie_polys"].clone()), (json!(96), json!([])));
    let version = face["version"].as_str().unwrap().to_owned();
    let put = |url: &str, body: &str| -> (u16, String) {
        let headers = [auth[0], ("Content-Type", "application/json")];
        let (code, _, answer) = http(&studio.base, "PUT", url, &headers, body);
        (code, String::from_utf8_lossy(&answer).into_owned())
    };
    let body =
        |version: &str, polys: &str| format!(r#"{{"version":"{version}","seg_ie_polys":{polys}}}"#);
    let square = r#"[{"kind":"include","points":[[10,10],[80,10],[80,80],[10,80]]}]"#;
    let original = std::fs::read(&path).unwrap();
    let unchanged =
        |what: &str| assert!(std::fs::read(&path).unwrap() == original, "{what}: the file changed");

    for (polys, words) in [
        (r#"[{"kind":"include","points":[[1,1],[NaN,2],[3,4]]}]"#, "JSON"),
        (r#"[{"kind":"include","points":[[1,1],[1e39,2],[3,4]]}]"#, "not finite"),
        (r#"[{"kind":"include","points":[[1,1],[500,2],[3,4]]}]"#, "far outside"),
        (r#"[{"kind":"include","points":[[1,1],[50,2]]}]"#, "3 at least"),
        (r#"[{"kind":"maybe","points":[[1,1],[50,2],[3,40]]}]"#, "JSON"),
        (r#"{"kind":"include"}"#, "JSON"),
    ] {
        let (code, answer) = put(&labels_url, &body(&version, polys));
        assert_eq!(code, 400, "{polys}: {answer}");
        assert!(answer.contains(words) && answer.contains(&name), "{polys}: {answer}");
        unchanged(polys);
    }
    let (code, answer) = put(&labels_url, "{}");
    assert_eq!(code, 400, "{answer}");
    unchanged("no version");

    // Another writer changed the file since the page loaded it.
    let (code, answer) = put(&labels_url, &body("00112233445566778899aabbccddeeff", square));
    assert_eq!(code, 409, "{answer}");
    assert!(answer.contains("changed on disk"), "{answer}");
    unchanged("a stale version");

    // A stage that restructures the faceset (extract, sort, xseg apply) holds it exclusively.
    let lock_path = ws.join("data_src/faceset.lock");
    let held = dfl::lock::exclusive(&lock_path, "the src faceset").unwrap();
    let (code, answer) = put(&labels_url, &body(&version, square));
    assert_eq!(code, 409, "{answer}");
    let holder = format!("pid {}", std::process::id());
    assert!(answer.contains("in use by") && answer.contains(&holder), "names the holder: {answer}");
    unchanged("a locked faceset");
    drop(held);

    // A reader (a training run) does not keep the labeller out.
    let reader = dfl::lock::shared(&lock_path, "the src faceset").unwrap();
    let (code, answer) = put(&labels_url, &body(&version, square));
    assert_eq!(code, 200, "{answer}");
    drop(reader);
    let saved: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(saved["written"], json!(true));
    let new_version = saved["version"].as_str().unwrap().to_owned();
    assert_ne!(new_version, version);
    let info = face_info(&ws, &path);
    assert_eq!(
        polys_of(&info),
        [("include".to_owned(), vec![[10.0, 10.0], [80.0, 10.0], [80.0, 80.0], [10.0, 80.0]])]
    );
    let written = std::fs::read(&path).unwrap();
    // The old version is stale now; the same labels again write nothing.
    let (code, answer) = put(&labels_url, &body(&version, "[]"));
    assert_eq!(code, 409, "{answer}");
    let (code, answer) = put(&labels_url, &body(&new_version, square));
    assert_eq!(code, 200, "{answer}");
    assert!(answer.contains(r#""written":false"#), "{answer}");
    assert!(std::fs::read(&path).unwrap() == written, "an unchanged save writes nothing");
    let (code, counts) = get("/api/labeller");
    assert_eq!(code, 200);
    assert_eq!(counts["src"], json!({"labelled": 1, "total": 1, "unreadable": 0}));
    assert_eq!(counts["dst"], json!({"labelled": 0, "total": 1, "unreadable": 0}));

    // Names outside the faceset are refused, reading or writing.
    std::fs::write(ws.join("data_src/outside.jpg"), b"not to be touched").unwrap();
    for bad in ["..%2Foutside.jpg", "..", "%2Fetc%2Fpasswd", ".hidden.jpg", "a%2Fb.jpg"] {
        let url = format!("/api/faces/src/{bad}/labels");
        let (code, answer) = put(&url, &body(&new_version, square));
        assert_eq!(code, 400, "PUT {url}: {answer}");
        assert_eq!(get(&url).0, 400, "GET {url}");
    }
    assert_eq!(std::fs::read(ws.join("data_src/outside.jpg")).unwrap(), b"not to be touched");
    assert_eq!(put("/api/faces/other/x.jpg/labels", &body(&new_version, square)).0, 404);
    assert_eq!(get("/api/labeller/other").0, 404);
    assert_eq!(put("/api/faces/src/nope.jpg/labels", &body(&new_version, square)).0, 404);
    // A cookie is not enough to write.
    let (code, _, _) = http(&studio.base, "PUT", &labels_url, &[], &body(&new_version, "[]"));
    assert_eq!(code, 401);
}

/// Not a test: how long the labeller's face list takes for 10 000 faces, read the first time,
/// from the cache, after one face changed, and after a sort renamed them all.
/// `cargo test --release --test studio labeller_list_speed -- --ignored --nocapture`
#[test]
#[ignore = "a measurement for docs/performance.md"]
fn labeller_list_speed() {
    const FACES: usize = 10_000;
    let (_tmp, ws) = common::extracted_workspace(&["obama.jpg"], &["biden.jpg"]);
    let dir = ws.join("data_src/aligned");
    let one = face_files(&ws, "src").remove(0);
    for i in 1..FACES {
        std::fs::copy(&one, dir.join(format!("{i:05}_copy.jpg"))).unwrap();
    }
    let studio = Studio::start(&ws);
    let auth = [("X-DFL-Token", studio.token.as_str())];
    let list = || {
        let start = Instant::now();
        let (code, _, body) = http(&studio.base, "GET", "/api/labeller/src", &auth, "");
        assert_eq!(code, 200);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["total"], json!(FACES));
        (start.elapsed().as_secs_f64() * 1000.0, body.len())
    };
    let (first, bytes) = list();
    let (cached, _) = list();
    let name = "00017_copy.jpg";
    let (_, face) = {
        let (code, _, body) =
            http(&studio.base, "GET", &format!("/api/faces/src/{name}/labels"), &auth, "");
        assert_eq!(code, 200);
        (code, serde_json::from_slice::<Value>(&body).unwrap())
    };
    let body = format!(
        r#"{{"version":"{}","seg_ie_polys":[{{"kind":"include","points":[[1,1],[50,2],[30,40]]}}]}}"#,
        face["version"].as_str().unwrap()
    );
    let start = Instant::now();
    let headers = [auth[0], ("Content-Type", "application/json")];
    let (code, _, _) =
        http(&studio.base, "PUT", &format!("/api/faces/src/{name}/labels"), &headers, &body);
    assert_eq!(code, 200);
    let save = start.elapsed().as_secs_f64() * 1000.0;
    let (after_save, _) = list();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let renamed = dir.join(format!("r_{}", path.file_name().unwrap().to_str().unwrap()));
        std::fs::rename(&path, renamed).unwrap();
    }
    let (after_rename, _) = list();
    eprintln!(
        "labeller list of {FACES} faces ({bytes} bytes of JSON): first {first:.0} ms, cached \
         {cached:.0} ms, save {save:.0} ms, after the save {after_save:.0} ms, after renaming \
         every file {after_rename:.0} ms"
    );
}
