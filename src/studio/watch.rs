//! What changed in the workspace: a poller that stats the files each page shows and announces
//! the topics whose files changed (`status`, `model/<name>`, `xseg/<name>`, `faces/<side>`,
//! and `live/model/<name>`, `live/xseg/<name>` for a running trainer's progress file).
//!
//! The studio never shares memory with the commands that write those files; it looks at them.
//! A stat of a few dozen paths every [`POLL`] is cheap and works on every file system (network
//! mounts included, where change notifications often do not arrive).

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::time::Duration;

use crate::model::folder::{LIVE_FILE, ModelFolder};
use crate::workspace::{Side, Stage, Workspace};

/// How often the workspace is looked at.
pub const POLL: Duration = Duration::from_millis(250);

/// A hash of the size and modification time of each file a topic shows, by topic.
pub type Snapshot = BTreeMap<String, u64>;

/// Stats the files behind every topic.
pub fn snapshot(ws: &Workspace) -> Snapshot {
    let mut topics = Snapshot::new();
    let mut status = DefaultHasher::new();
    for path in [ws.default_video(Side::Src), ws.default_video(Side::Dst)] {
        stamp(&path, &mut status);
    }
    for side in Side::ALL {
        let mut faces = DefaultHasher::new();
        stamp(&ws.aligned_dir(side), &mut faces);
        stamp(&ws.aligned_trash_dir(side), &mut faces);
        stamp(&ws.sort_history(side), &mut faces);
        stamp(&ws.sort_journal(side), &mut faces);
        let faces = faces.finish();
        faces.hash(&mut status);
        stamp(&ws.stage_log(Stage::Extract, side), &mut status);
        topics.insert(format!("faces/{side}"), faces);
    }
    stamp(&ws.merged_dir(), &mut status);
    stamp(&ws.result_video(), &mut status);
    for (kind, dir) in [("model", ws.models_dir()), ("xseg", ws.xseg_models_dir())] {
        stamp(&dir, &mut status);
        for (name, folder) in ModelFolder::list_in(&dir) {
            let mut model = DefaultHasher::new();
            for file in ["LATEST", "preview.png", "config.json"] {
                stamp(&folder.dir().join(file), &mut model);
            }
            let model = model.finish();
            model.hash(&mut status);
            topics.insert(format!("{kind}/{name}"), model);
            // A running trainer rewrites its live file every second: its own topic, so the
            // page fetches only that small file, not the histories and the status.
            let mut live = DefaultHasher::new();
            stamp(&folder.dir().join(LIVE_FILE), &mut live);
            topics.insert(format!("live/{kind}/{name}"), live.finish());
        }
    }
    topics.insert("status".to_owned(), status.finish());
    topics
}

/// The topics whose hash differs between two snapshots (new and gone ones included).
pub fn changed(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let mut out: Vec<String> =
        after.iter().filter(|(k, v)| before.get(*k) != Some(v)).map(|(k, _)| k.clone()).collect();
    out.extend(before.keys().filter(|k| !after.contains_key(*k)).cloned());
    out
}

fn stamp(path: &Path, hasher: &mut DefaultHasher) {
    path.hash(hasher);
    if let Ok(meta) = std::fs::metadata(path) {
        meta.len().hash(hasher);
        meta.modified().ok().hash(hasher);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_face_changes_its_side_and_the_status_only() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = Workspace::new(tmp.path());
        std::fs::create_dir_all(ws.aligned_dir(Side::Dst)).unwrap();
        std::fs::create_dir_all(ws.models_dir().join("m1")).unwrap();
        let before = snapshot(&ws);
        assert_eq!(changed(&before, &snapshot(&ws)), Vec::<String>::new());
        // Directory times have a coarse clock on some file systems.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(ws.aligned_dir(Side::Dst).join("00001_0.jpg"), b"x").unwrap();
        assert_eq!(changed(&before, &snapshot(&ws)), ["faces/dst", "status"]);
        let before = snapshot(&ws);
        std::fs::write(ws.models_dir().join("m1/live.json"), b"{}").unwrap();
        assert_eq!(changed(&before, &snapshot(&ws)), ["live/model/m1"]);
        let before = snapshot(&ws);
        std::fs::write(ws.models_dir().join("m1/LATEST"), b"000000010-0").unwrap();
        assert_eq!(changed(&before, &snapshot(&ws)), ["model/m1", "status"]);
    }
}
