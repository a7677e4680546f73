//! The module rule of `docs/architecture.md`, checked on the source: stages use shared modules
//! only, never each other; shared modules use neither stages nor the front ends; only the CLI
//! and the binary use the CLI; the studio (the other front end) may use stages, and only the
//! CLI uses the studio. Also: every path `docs/architecture.md` names exists, and no comment
//! cites a document that is not in the repository.

use std::path::{Path, PathBuf};

/// The stage modules: one per subcommand (and `status`, which reads them all).
const STAGES: [&str; 10] =
    ["extract", "sort", "train", "merge", "eval", "synth", "status", "xseg", "occlude", "interop"];

/// Words that cite reference notes kept outside the repository (their section numbers mean
/// nothing to someone with only the repository).
const OUTSIDE_CITATIONS: [&str; 11] = [
    "anchors doc",
    "anchors-dfl",
    "anchors §",
    "appendix a #",
    "style rule",
    "design §",
    "docs/design.md",
    "docs/style.md",
    "research notes",
    "shared docs",
    "face-models.md §",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.expect("the source tree is readable").into_path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    out.sort();
    out
}

/// What a source file belongs to: `cli`, `studio`, a stage's name, or `shared`.
fn group_of(path: &Path) -> String {
    let rel = path.strip_prefix(root().join("src")).expect("a file under src/");
    let first = rel.components().next().expect("a path").as_os_str().to_string_lossy();
    let module = first.trim_end_matches(".rs").to_owned();
    match module.as_str() {
        "cli" | "main" => "cli".to_owned(),
        "studio" => "studio".to_owned(),
        m if STAGES.contains(&m) => module,
        _ => "shared".to_owned(),
    }
}

/// The top-level modules `text` names as `crate::<module>`.
fn crate_paths(text: &str) -> Vec<String> {
    text.match_indices("crate::")
        .filter(|(i, _)| {
            !text[..*i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':')
        })
        .map(|(i, m)| {
            let rest = &text[i + m.len()..];
            let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
            rest[..end].to_owned()
        })
        .collect()
}

/// The rule's verdict on a file of `group` naming `crate::<target>`, if it breaks it.
fn violation(group: &str, target: &str) -> Option<&'static str> {
    let is_stage = STAGES.contains(&target);
    match group {
        "cli" => None,
        _ if target == "cli" => Some("only the CLI and main.rs use the CLI"),
        "studio" => None,
        _ if target == "studio" => Some("only the CLI uses the studio"),
        "shared" if is_stage => Some("a shared module uses a stage"),
        g if is_stage && target != g => Some("a stage uses another stage"),
        _ => None,
    }
}

#[test]
fn stages_stand_on_shared_modules_never_on_each_other() {
    let mut broken = Vec::new();
    for path in rust_files(&root().join("src")) {
        let text = std::fs::read_to_string(&path).expect("source is UTF-8");
        let group = group_of(&path);
        for target in crate_paths(&text) {
            if let Some(why) = violation(&group, &target) {
                broken.push(format!("{}: crate::{target} ({why})", path.display()));
            }
        }
    }
    broken.dedup();
    assert!(broken.is_empty(), "imports that break docs/architecture.md:\n{}", broken.join("\n"));
}

#[test]
fn the_rule_sees_a_sideways_import() {
    assert_eq!(crate_paths("use crate::sort::Method; x::crate::no"), ["sort"]);
    assert!(violation("train", "sort").is_some());
    assert!(violation("shared", "merge").is_some());
    assert!(violation("merge", "cli").is_some());
    assert!(violation("merge", "merge").is_none() && violation("merge", "faceset").is_none());
    assert!(violation("cli", "train").is_none());
    assert!(violation("studio", "merge").is_none() && violation("studio", "cli").is_some());
    assert!(violation("merge", "studio").is_some() && violation("shared", "studio").is_some());
    let stage = root().join("src/merge/run.rs");
    assert_eq!(
        (group_of(&stage).as_str(), group_of(&root().join("src/frames.rs")).as_str()),
        ("merge", "shared")
    );
}

#[test]
fn every_path_the_architecture_page_names_exists() {
    let page = std::fs::read_to_string(root().join("docs/architecture.md")).expect("the page");
    let mut missing = Vec::new();
    let mut named = 0;
    for (i, _) in page.match_indices('`').step_by(2) {
        let rest = &page[i + 1..];
        let Some(end) = rest.find('`') else { break };
        let quoted = &rest[..end];
        let is_path = ["src/", "tests/", "docs/", "scripts/"].iter().any(|p| quoted.starts_with(p));
        // `src/face/pose.rs, src/face/sharpness.rs` style cells are split on ", ".
        for part in quoted.split(", ").filter(|_| is_path) {
            named += 1;
            if !root().join(part).exists() {
                missing.push(part.to_owned());
            }
        }
    }
    assert!(named > 40, "the page names only {named} paths");
    assert!(missing.is_empty(), "docs/architecture.md names paths that do not exist: {missing:?}");
}

#[test]
fn comments_cite_only_documents_in_the_repository() {
    let mut files = rust_files(&root().join("src"));
    files.extend(rust_files(&root().join("tests")));
    files.extend(rust_files(&root().join("examples")));
    for dir in ["scripts", "scripts/golden", "scripts/bench", ".ci"] {
        let Ok(entries) = std::fs::read_dir(root().join(dir)) else { continue };
        files.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
    }
    files.push(root().join("README.md"));
    let this_file = root().join("tests/architecture.rs");
    let mut cited = Vec::new();
    for path in files.iter().filter(|p| **p != this_file) {
        let Ok(text) = std::fs::read_to_string(path) else { continue };
        for (n, line) in text.lines().enumerate() {
            let lower = line.to_lowercase();
            if OUTSIDE_CITATIONS.iter().any(|w| lower.contains(w)) {
                cited.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        cited.is_empty(),
        "citations of documents outside the repository:\n{}",
        cited.join("\n")
    );
}
