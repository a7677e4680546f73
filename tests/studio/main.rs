//! `dfl studio` through the real binary: its guard (session token, state-changing requests,
//! foreign hosts, paths kept inside the workspace) over raw HTTP, and its pages in a real
//! headless Chromium driven through chromedriver.

use std::path::PathBuf;
use std::process::Stdio;

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/studio.rs"]
mod studio_support;

mod faces;
mod labeller;
mod tuner;

use common::{TINY, dfl_cmd};
use studio_support::{Browser, KillOnDrop, Studio, http, screenshot_dir};

/// A workspace whose facesets are extracted from the bundled portraits.
fn workspace() -> (tempfile::TempDir, PathBuf) {
    common::extracted_workspace(&["obama.jpg", "obama2.jpg"], &["biden.jpg"])
}

fn status_of(studio: &Studio, method: &str, path: &str, headers: &[(&str, &str)]) -> u16 {
    http(&studio.base, method, path, headers, "").0
}

#[test]
fn requests_without_the_token_are_refused_and_paths_stay_inside_the_workspace() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(ws.join("model/m1")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(ws.join("model/m1/preview.png"), b"\x89PNG inside").unwrap();
    std::fs::write(outside.join("preview.png"), b"\x89PNG outside").unwrap();
    std::os::unix::fs::symlink(&outside, ws.join("model/linked")).unwrap();
    let studio = Studio::start(&ws);
    let token = studio.token.clone();
    let cookie = format!("dfl_studio_{}={token}", studio.base.rsplit(':').next().unwrap());

    for path in ["/", "/api/status", "/api/models", "/assets/app.js", "/api/events"] {
        assert_eq!(status_of(&studio, "GET", path, &[]), 401, "{path} without the token");
    }
    assert_eq!(status_of(&studio, "GET", "/?token=0123", &[]), 401);
    // The URL's token sets the cookie and leaves the URL.
    let (code, headers, _) = http(&studio.base, "GET", &format!("/?token={token}"), &[], "");
    assert_eq!(code, 303);
    let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(get("location").as_deref(), Some("/"));
    let set_cookie = get("set-cookie").unwrap();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    assert_eq!(status_of(&studio, "GET", "/api/status", &[("Cookie", &cookie)]), 200);
    assert_eq!(status_of(&studio, "GET", "/api/status", &[("X-DFL-Token", &token)]), 200);
    // A cookie is what a cross-site form would send: not enough to change anything.
    let control = "/api/models/model/m1/control";
    assert_eq!(status_of(&studio, "POST", control, &[("Cookie", &cookie)]), 403);
    assert_eq!(status_of(&studio, "POST", control, &[]), 401);
    // DNS rebinding: a page of another site resolving to 127.0.0.1.
    let evil = [("Host", "evil.example"), ("X-DFL-Token", token.as_str())];
    assert_eq!(status_of(&studio, "GET", "/api/status", &evil), 403);

    let auth = [("X-DFL-Token", token.as_str())];
    let (code, _, body) = http(&studio.base, "GET", "/api/models/model/m1/preview.png", &auth, "");
    assert_eq!((code, body.as_slice()), (200, &b"\x89PNG inside"[..]));
    for path in [
        "/api/models/model/linked/preview.png",
        "/api/models/model/..%2F..%2Foutside/preview.png",
        "/api/models/model/%2Fetc/preview.png",
        "/api/models/model/../../outside/preview.png",
        "/api/models/model/.hidden/preview.png",
        "/api/models/model/m1/previews/..%2F..%2F..%2Foutside%2Fpreview.png",
    ] {
        let (code, _, body) = http(&studio.base, "GET", path, &auth, "");
        assert!((400..=404).contains(&code), "{path}: {code}");
        assert!(!body.windows(11).any(|w| w == b"PNG outside"), "{path} reached outside");
    }
    // Every answer carries the page's protections.
    let (_, headers, _) = http(&studio.base, "GET", "/", &auth, "");
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-security-policy" && v.contains("default-src 'self'"))
    );
    assert!(headers.iter().any(|(k, v)| k == "cache-control" && v == "no-store"));
    // Watching and browsing need no network: libtorch's CUDA backend (about 270 MB) stays out
    // of the process until the merge tuner asks for a device.
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", studio.pid())).unwrap();
    assert!(maps.contains("libtorch_cpu.so"), "the studio maps libtorch");
    assert!(!maps.contains("libtorch_cuda.so"), "the studio loaded the CUDA backend");
}

#[test]
fn the_overview_and_the_monitor_follow_a_running_dfl_train() {
    let (_tmp, ws) = workspace();
    let studio = Studio::start(&ws);
    let browser = Browser::start();
    browser.run(browser.client.goto(&studio.url)).unwrap();
    browser.wait_until(20, "the live feed", "return document.querySelector('#live.on') !== null");
    browser.wait_until(
        20,
        "the overview's faces",
        "return document.querySelector('#sides').textContent.includes('src')",
    );
    let faces = browser.eval(
        "return [...document.querySelectorAll('#sides tr')].slice(1).map(r => r.children[2].textContent)",
    );
    assert_eq!(faces, serde_json::json!(["2", "1"]), "faces per side on the overview");
    let shots = screenshot_dir();
    browser.screenshot(&shots.join("overview.png"));

    // A tiny run that keeps going until told to stop.
    let mut train = KillOnDrop(
        dfl_cmd(
            &ws,
            &[
                &["-q", "train", "--name", "m"],
                &TINY[..],
                &["--preview-every", "5", "--preview-history", "true"],
            ]
            .concat(),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    browser.wait_until(
        120,
        "the model in the overview",
        "return document.querySelector('#model-list').textContent.includes('SAEHD')",
    );
    browser.eval("document.querySelector('button[data-tab=training]').click(); return true");
    let iteration = |b: &Browser| -> u64 {
        let text = b.eval("return document.querySelector('#stats .stat b')?.textContent ?? ''");
        text.as_str()
            .unwrap_or("")
            .chars()
            .filter(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or(0)
    };
    common::wait_for(120, "a first iteration on the monitor", || iteration(&browser) > 0);
    let first = iteration(&browser);
    common::wait_for(60, "the monitor's iteration to move on", || iteration(&browser) > first);
    browser.wait_until(120, "a loss curve with points", "return window.dflCharts.loss.series.length === 2 && window.dflCharts.loss.series[0].points.length >= 2");
    browser.wait_until(
        120,
        "the preview",
        "const i = document.querySelector('#preview'); return i.complete && i.naturalWidth > 0",
    );
    browser.wait_until(
        30,
        "the stop button",
        "return !document.querySelector('#stop-now').disabled",
    );
    browser.screenshot(&shots.join("monitor.png"));

    // "Stop after this step": the run saves and ends; the page says it is not running.
    browser.eval("document.querySelector('#stop-now').click(); return true");
    common::wait_for(60, "dfl train to stop", || train.0.try_wait().unwrap().is_some());
    let saved =
        dfl::model::folder::ModelFolder::new(ws.join("model/m")).latest_state().unwrap().unwrap();
    browser.wait_until(
        30,
        "the run shown as stopped",
        "return document.querySelector('#stats').textContent.includes('not running')",
    );
    assert_eq!(iteration(&browser), saved.iteration, "the page shows the saved iteration");
    browser.screenshot(&shots.join("monitor-stopped.png"));
}

/// Not a test: screenshots of every page over an existing workspace, for a person to look at.
/// `DFL_STUDIO_WS=/path/to/ws cargo test --release --test studio screenshots -- --ignored`
#[test]
#[ignore = "a tool: needs DFL_STUDIO_WS"]
fn screenshots() {
    let ws = PathBuf::from(std::env::var("DFL_STUDIO_WS").expect("DFL_STUDIO_WS"));
    let studio = Studio::start(&ws);
    let browser = Browser::start();
    browser.run(browser.client.goto(&studio.url)).unwrap();
    browser.wait_until(20, "the live feed", "return document.querySelector('#live.on') !== null");
    for tab in ["overview", "training"] {
        browser.eval(&format!(
            "document.querySelector('button[data-tab={tab}]').click(); return true"
        ));
        std::thread::sleep(std::time::Duration::from_secs(3));
        let path = screenshot_dir().join(format!("ws-{tab}.png"));
        browser.screenshot(&path);
        eprintln!("{}", path.display());
    }
}

/// Not a test: how long after a trainer writes `live.json` the monitor shows the new
/// iteration (the poller's period, the event, the page's fetch and redraw), 20 times.
/// `cargo test --release --test studio monitor_latency -- --ignored --nocapture`
#[test]
#[ignore = "a measurement for docs/performance.md"]
fn monitor_latency() {
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let dir = ws.join("model/m");
    std::fs::create_dir_all(&dir).unwrap();
    let mut live = dfl::model::folder::LiveWriter::new(&dir);
    live.write(true, 1, 0, &[]);
    let studio = Studio::start(&ws);
    let browser = Browser::start();
    browser.run(browser.client.goto(&format!("{}#training", studio.url))).unwrap();
    browser.wait_until(
        20,
        "the model on the monitor",
        "return document.querySelector('#stats .stat b')?.textContent === '1'",
    );
    let mut latencies = Vec::new();
    for k in 2..=21u64 {
        std::thread::sleep(Duration::from_millis(137 * (k % 5)));
        let start = Instant::now();
        live.write(true, k, 0, &[]);
        let shown =
            format!("return document.querySelector('#stats .stat b').textContent === '{k}'");
        browser.wait_until(10, "the new iteration", &shown);
        latencies.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    eprintln!(
        "monitor latency over {} writes: median {:.0} ms, max {:.0} ms (live.json written → iteration shown)",
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
}

/// The face files of `dir` (no temporary files).
fn face_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg" || e == "png"))
        .collect();
    out.sort();
    out
}

/// Every `.jpg` under `dir`, recursively.
fn jpegs_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for path in entries.flatten().map(|e| e.path()) {
        if path.is_dir() {
            out.extend(jpegs_under(&path));
        } else if path.extension().is_some_and(|e| e == "jpg") {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_studio_killed_while_it_writes_leaves_no_partial_file() {
    use opencv::core::{Mat, MatTraitConst, Vector};
    let (_tmp, ws) = workspace();
    let aligned = ws.join("data_src/aligned");
    // 300 faces, each its own content (its frame name changed in its metadata), so each needs
    // its own thumbnail: the background build is still writing when the kill comes.
    let originals = face_files(&aligned);
    for i in 0..300 {
        let copy = aligned.join(format!("copy{i:04}.jpg"));
        std::fs::copy(&originals[i % originals.len()], &copy).unwrap();
        dfl::face::metadata::rewrite_metadata(&copy, |m| {
            m.source_filename = format!("{}_c{i}", m.source_filename);
        })
        .unwrap();
    }
    let labelled = face_files(&aligned)[0].file_name().unwrap().to_str().unwrap().to_owned();
    for round in 0..4u64 {
        let studio = Studio::start(&ws);
        let token = studio.token.clone();
        let auth = [("X-DFL-Token", token.as_str()), ("Content-Type", "application/json")];
        // Opening the side starts the thumbnail build.
        assert_eq!(http(&studio.base, "GET", "/api/faces/src?limit=50", &auth, "").0, 200);
        // Label saves, one after another, until the server is gone.
        let base = studio.base.clone();
        let name = labelled.clone();
        let saver = std::thread::spawn(move || {
            let auth = [("X-DFL-Token", token.as_str()), ("Content-Type", "application/json")];
            let path = format!("/api/faces/src/{name}/labels");
            for k in 0.. {
                let (code, _, body) = http(&base, "GET", &path, &auth, "");
                assert_eq!(code, 200);
                let face: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let x = 10.0 + f64::from(k % 40);
                let save = serde_json::json!({
                    "version": face["version"],
                    "seg_ie_polys": [{"kind": "include",
                        "points": [[x, 10.0], [80.0, 12.0], [70.0, 80.0], [12.0, 70.0]]}],
                });
                http(&base, "PUT", &path, &auth, &save.to_string());
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(40 + 60 * round));
        drop(studio); // SIGKILL
        let _ = saver.join(); // ends when the server is gone
        // Every face file reads whole, with its labels or without.
        for face in face_files(&aligned) {
            dfl::face::metadata::read_metadata(&face)
                .unwrap_or_else(|e| panic!("round {round}: {} is damaged: {e}", face.display()));
        }
        // Every thumbnail written decodes; the index, when there is one, parses.
        let thumbs = ws.join("data_src/thumbs");
        for thumb in jpegs_under(&thumbs) {
            let bytes = std::fs::read(&thumb).unwrap();
            assert!(bytes.ends_with(&[0xFF, 0xD9]), "round {round}: {} is cut", thumb.display());
            let image =
                opencv::imgcodecs::imdecode(&Vector::from_slice(&bytes), 1).unwrap_or_default();
            assert!(!Mat::empty(&image), "round {round}: {} is damaged", thumb.display());
        }
        let index = thumbs.join("aligned.index.json");
        if index.exists() {
            serde_json::from_slice::<serde_json::Value>(&std::fs::read(&index).unwrap())
                .unwrap_or_else(|e| panic!("round {round}: the thumbnail index is damaged: {e}"));
        }
    }
    // A new studio takes over: every face listed, every thumbnail made.
    let studio = Studio::start(&ws);
    let auth = [("X-DFL-Token", studio.token.as_str())];
    let (code, _, body) = http(&studio.base, "GET", "/api/faces/src?limit=1000", &auth, "");
    assert_eq!(code, 200);
    let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(page["total"], 302, "{page}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, _, body) = http(&studio.base, "GET", "/api/faces/src/build", &auth, "");
        let build: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if build["running"] == false && build["last"].is_object() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the build did not finish: {build}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (_, _, body) = http(&studio.base, "GET", "/api/faces/src?limit=1000", &auth, "");
    let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let faces = page["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 302);
    assert!(faces.iter().all(|f| f["has_thumb"] == true), "{page}");
}
