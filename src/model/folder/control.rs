//! Requests to a running training through `control.json` in its model folder: another process
//! (the studio) asks `dfl train` or `dfl xseg train` to save now or to stop after the current
//! step, without sharing memory with it, so either side can die without harming the other.
//!
//! The file holds two request counters, `{"save": 3, "stop": 1}`. A writer ([`request`]) reads
//! them, adds one to the counter of its request and writes the file atomically (temp file +
//! rename), taking the lock `control.lock` for that moment so two writers never lose each
//! other's request; nobody deletes the file. The trainer never writes it: a [`ControlWatch`]
//! reads the counters once when the run starts (requests made before are stale), then looks at
//! the file between steps (its length, time and inode, at most every [`POLL_INTERVAL`]; its
//! content only when they changed) and acts on each counter that went up.
//!
//! A missing, unreadable, oversized or malformed file is ignored (logged once). When the file
//! was recreated (it went missing, or a counter went down), its counters count from 0 again, so
//! a request written into a new file is still seen.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::ModelFolder;
use crate::atomic::write_json_atomic;

/// The request file in a model folder.
pub const CONTROL_FILE: &str = "control.json";
/// The lock writers of [`CONTROL_FILE`] take in turn (the file itself is replaced by each write,
/// so it cannot carry the lock).
pub const CONTROL_LOCK_FILE: &str = "control.lock";
/// The largest control file read; a valid one is a few dozen bytes, a bigger one is not ours.
pub const MAX_CONTROL_BYTES: u64 = 4096;
/// The least time between two looks at the file during training.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How long after its last change a file's length and time are not trusted to reveal the next
/// change (coarse file-system timestamps): until then it is read at every poll.
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// A request to a running training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Write a checkpoint set at the next step boundary (as the periodic save does), then go on.
    Save,
    /// Stop after the current step, save and exit, as Ctrl-C does.
    Stop,
}

/// The content of `control.json`: how many requests of each kind were ever made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Counters {
    /// Save requests.
    pub save: u64,
    /// Stop requests.
    pub stop: u64,
}

/// Errors of making a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The model folder does not exist.
    #[error("{}: no such model folder; check the model's name", .dir.display())]
    NoModel {
        /// The folder.
        dir: PathBuf,
    },
    /// The control file or its lock cannot be read or written.
    #[error("{}: {source}; check the model folder's permissions and free space", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Asks the training of `folder` for `what`: adds one to that counter of `control.json`
/// (atomically, one writer at a time) and returns the counters written.
///
/// Only a training that is running when the file changes acts on it; the next run ignores
/// requests made before it started. A file that is not a valid control file is started over.
///
/// # Errors
/// `NoModel` when the folder does not exist (no file is made then); `Io` when the file or its
/// lock cannot be read or written (the file is then unchanged).
pub fn request(folder: &ModelFolder, what: Request) -> Result<Counters, ControlError> {
    let dir = folder.dir();
    if !dir.is_dir() {
        return Err(ControlError::NoModel { dir: dir.to_owned() });
    }
    let _lock = lock_writers(dir)?;
    let path = folder.control_path();
    let mut counters = match read_counters(&path) {
        Ok(counters) => counters,
        Err(Unreadable::Missing) => Counters::default(),
        Err(Unreadable::Io(source)) => return Err(ControlError::Io { path, source }),
        Err(bad) => {
            log::warn!("{}: {bad}; starting its counters over", path.display());
            Counters::default()
        }
    };
    let counter = match what {
        Request::Save => &mut counters.save,
        Request::Stop => &mut counters.stop,
    };
    *counter = counter.saturating_add(1);
    write_json_atomic(&path, &counters).map_err(|source| ControlError::Io { path, source })?;
    Ok(counters)
}

/// Waits for and takes the writers' lock of the folder `dir` (held while the returned file is
/// open; a writer holds it for a read and a write only).
fn lock_writers(dir: &Path) -> Result<File, ControlError> {
    let path = dir.join(CONTROL_LOCK_FILE);
    let io = |source| ControlError::Io { path: path.clone(), source };
    let file =
        OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io)?;
    file.lock().map_err(io)?;
    Ok(file)
}

/// Why the counters of a control file could not be had.
#[derive(Debug, thiserror::Error)]
enum Unreadable {
    #[error("no such file")]
    Missing,
    #[error("{0}")]
    Io(std::io::Error),
    #[error("larger than {MAX_CONTROL_BYTES} bytes, so not a control file")]
    TooBig,
    #[error("not a control file ({0}); its format is {{\"save\": N, \"stop\": N}}")]
    Malformed(serde_json::Error),
}

/// Reads the counters of the control file at `path`, reading at most [`MAX_CONTROL_BYTES`].
fn read_counters(path: &Path) -> Result<Counters, Unreadable> {
    let file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Unreadable::Missing,
        _ => Unreadable::Io(e),
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_CONTROL_BYTES + 1).read_to_end(&mut bytes).map_err(Unreadable::Io)?;
    if bytes.len() as u64 > MAX_CONTROL_BYTES {
        return Err(Unreadable::TooBig);
    }
    // An object only: serde would also take `[1, 2]` for the struct.
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes).map_err(Unreadable::Malformed)?;
    serde_json::from_value(object.into()).map_err(Unreadable::Malformed)
}

/// What a poll found asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requested {
    /// A save was asked for.
    pub save: bool,
    /// A stop was asked for.
    pub stop: bool,
}

/// What a file looked like from outside: a change of content changes one of these (the inode
/// with every rename, the time unless it comes within the file system's time granularity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl Stamp {
    /// The stamp of the file at `path`, or `None` when it cannot be looked at (missing).
    fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Some(Self { len: meta.len(), modified: meta.modified().ok(), inode })
    }

    /// Whether the file changed so shortly before `now` that a next change might keep this
    /// stamp (or its time is unknown or in the future).
    fn is_racy(&self, now: SystemTime) -> bool {
        self.modified.is_none_or(|m| now.duration_since(m).is_ok_and(|age| age < RACY_WINDOW))
            || self.modified.is_some_and(|m| m > now)
    }
}

/// A training's watch on `control.json`: the counters it last saw, and how the file looked.
#[derive(Debug)]
pub struct ControlWatch {
    path: PathBuf,
    /// The counters last read (the baseline at the start).
    seen: Counters,
    /// How the file looked when last read (`None`: missing).
    stamp: Option<Stamp>,
    /// Read again at the next poll even if the stamp did not change.
    is_racy: bool,
    /// When the file was last looked at.
    last_poll: Instant,
    /// The file went missing since the last read: a new one counts from 0.
    went_missing: bool,
    /// The last problem logged, so each is logged once.
    problem: Option<String>,
}

impl ControlWatch {
    /// Starts watching `folder`'s control file, taking its current counters as the baseline:
    /// requests made before are stale and ignored.
    pub fn start(folder: &ModelFolder) -> Self {
        let mut watch = Self {
            path: folder.control_path(),
            seen: Counters::default(),
            stamp: None,
            is_racy: true,
            last_poll: Instant::now(),
            went_missing: false,
            problem: None,
        };
        let _stale = watch.check();
        watch.went_missing = false;
        if watch.seen != Counters::default() {
            log::debug!(
                "{}: {:?} before this run started; only requests from now on count",
                watch.path.display(),
                watch.seen
            );
        }
        watch
    }

    /// Looks at the file if [`POLL_INTERVAL`] has passed since the last look; returns what was
    /// asked for since.
    pub fn poll(&mut self) -> Requested {
        if self.last_poll.elapsed() < POLL_INTERVAL {
            return Requested::default();
        }
        self.last_poll = Instant::now();
        self.check()
    }

    /// Polls at a step boundary and heeds a stop at once: it sets `stop`, the flag Ctrl-C sets,
    /// so the run ends after this step exactly as on Ctrl-C. Returns whether to save now (a
    /// save asked for without a stop, whose final save covers it).
    pub fn heed(&mut self, stop: &AtomicBool, iteration: u64) -> bool {
        let asked = self.poll();
        if asked.stop {
            log::info!("stopping after iteration {iteration} (asked through {CONTROL_FILE})");
            stop.store(true, Ordering::Relaxed);
        }
        asked.save && !asked.stop
    }

    /// Looks at the file now: reads it when its stamp changed (or may hide a change).
    fn check(&mut self) -> Requested {
        let stamp = Stamp::of(&self.path);
        if stamp == self.stamp && !self.is_racy {
            return Requested::default();
        }
        let now = SystemTime::now();
        let read = read_counters(&self.path);
        // Taken before the read: a write in between changes it again, so it is read again.
        self.stamp = stamp;
        self.is_racy = stamp.is_some_and(|s| s.is_racy(now));
        match read {
            Ok(counters) => self.take(counters),
            Err(why) => {
                self.went_missing |= matches!(why, Unreadable::Missing);
                self.note(&why);
                Requested::default()
            }
        }
    }

    /// Compares new counters with the last seen: what went up was asked for. A recreated file
    /// (it went missing, or a counter went down) counts from 0.
    fn take(&mut self, counters: Counters) -> Requested {
        let recreated =
            self.went_missing || counters.save < self.seen.save || counters.stop < self.seen.stop;
        if recreated {
            log::debug!("{}: recreated; its counters count from 0", self.path.display());
        }
        let base = if recreated { Counters::default() } else { self.seen };
        let asked = Requested { save: counters.save > base.save, stop: counters.stop > base.stop };
        (self.seen, self.went_missing, self.problem) = (counters, false, None);
        asked
    }

    /// Logs a problem with the file once (a missing file, the usual case, at debug level).
    fn note(&mut self, why: &Unreadable) {
        let text = why.to_string();
        if self.problem.as_ref() == Some(&text) {
            return;
        }
        match why {
            Unreadable::Missing => log::debug!("{}: {text}; no requests", self.path.display()),
            _ => log::warn!("{}: {text}; ignored until it changes", self.path.display()),
        }
        self.problem = Some(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder() -> (tempfile::TempDir, ModelFolder) {
        let tmp = tempfile::tempdir().unwrap();
        let folder = ModelFolder::new(tmp.path().join("m"));
        std::fs::create_dir_all(folder.dir()).unwrap();
        (tmp, folder)
    }

    fn write(folder: &ModelFolder, text: &str) {
        crate::atomic::write_atomic(&folder.control_path(), text.as_bytes()).unwrap();
    }

    const NOTHING: Requested = Requested { save: false, stop: false };
    const SAVE: Requested = Requested { save: true, stop: false };
    const STOP: Requested = Requested { save: false, stop: true };

    #[test]
    fn requests_made_before_the_start_are_stale() {
        let (_tmp, folder) = folder();
        write(&folder, r#"{"save": 3, "stop": 2}"#);
        let mut watch = ControlWatch::start(&folder);
        assert_eq!(watch.check(), NOTHING, "stale requests");
        assert_eq!(request(&folder, Request::Save).unwrap(), Counters { save: 4, stop: 2 });
        assert_eq!(watch.check(), SAVE);
        assert_eq!(watch.check(), NOTHING, "each request is acted on once");
        request(&folder, Request::Stop).unwrap();
        assert_eq!(watch.check(), STOP);
    }

    #[test]
    fn a_request_into_a_missing_file_is_seen() {
        let (_tmp, folder) = folder();
        let mut watch = ControlWatch::start(&folder);
        assert_eq!(watch.check(), NOTHING);
        request(&folder, Request::Stop).unwrap();
        assert_eq!(watch.check(), STOP);
    }

    #[test]
    fn a_poll_looks_at_most_every_interval() {
        let (_tmp, folder) = folder();
        let mut watch = ControlWatch::start(&folder);
        request(&folder, Request::Save).unwrap();
        assert_eq!(watch.poll(), NOTHING, "too soon after the start");
        std::thread::sleep(POLL_INTERVAL);
        assert_eq!(watch.poll(), SAVE);
    }

    #[test]
    fn a_malformed_oversized_or_unreadable_file_is_ignored() {
        let (_tmp, folder) = folder();
        request(&folder, Request::Save).unwrap();
        let mut watch = ControlWatch::start(&folder);
        // Valid counters, but too big to be read.
        let huge = format!(r#"{{"save": 9, "stop": 9}}{}"#, " ".repeat(10_000));
        let bad =
            ["", "{\"save\": 1", "[1, 2]", r#"{"save": -1}"#, r#"{"sav": 5}"#, "\u{0}\u{1}", &huge];
        for text in bad {
            write(&folder, text);
            assert_eq!(watch.check(), NOTHING, "{text:.40}");
        }
        // A folder where the file should be.
        std::fs::remove_file(folder.control_path()).unwrap();
        std::fs::create_dir(folder.control_path()).unwrap();
        assert_eq!(watch.check(), NOTHING);
        assert!(matches!(request(&folder, Request::Save), Err(ControlError::Io { .. })));
        std::fs::remove_dir(folder.control_path()).unwrap();
        // The writer starts a malformed file over; the watch sees a request in the new file.
        write(&folder, "garbage");
        assert_eq!(watch.check(), NOTHING);
        assert_eq!(request(&folder, Request::Stop).unwrap(), Counters { save: 0, stop: 1 });
        assert_eq!(watch.check(), STOP);
    }

    #[test]
    fn a_recreated_file_counts_from_zero() {
        let (_tmp, folder) = folder();
        for _ in 0..3 {
            request(&folder, Request::Save).unwrap();
        }
        let mut watch = ControlWatch::start(&folder);
        // Deleted by hand, then a new request: the same save count as before, but new.
        std::fs::remove_file(folder.control_path()).unwrap();
        assert_eq!(watch.check(), NOTHING);
        write(&folder, r#"{"save": 3, "stop": 0}"#);
        assert_eq!(watch.check(), SAVE);
        // A counter that went down: the file was made anew.
        write(&folder, r#"{"save": 0, "stop": 1}"#);
        assert_eq!(watch.check(), STOP);
        // Missing keys count 0.
        write(&folder, r#"{"save": 1}"#);
        assert_eq!(watch.check(), SAVE);
    }

    #[test]
    fn an_unchanged_file_is_not_read_again() {
        let (_tmp, folder) = folder();
        let path = folder.control_path();
        let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
        write(&folder, r#"{"save": 1, "stop": 0}"#);
        File::options().write(true).open(&path).unwrap().set_modified(an_hour_ago).unwrap();
        let mut watch = ControlWatch::start(&folder);
        // Changed in place with the same length and time: the stamp hides it, so it is not read.
        std::fs::write(&path, r#"{"save": 2, "stop": 0}"#).unwrap();
        File::options().write(true).open(&path).unwrap().set_modified(an_hour_ago).unwrap();
        assert_eq!(watch.check(), NOTHING);
        // A request renames a new file into place: a new stamp.
        assert_eq!(request(&folder, Request::Save).unwrap(), Counters { save: 3, stop: 0 });
        assert_eq!(watch.check(), SAVE);
    }

    #[test]
    fn request_increments_atomically_under_concurrent_writers() {
        let (_tmp, folder) = folder();
        const WRITERS: u64 = 4;
        const EACH: u64 = 25;
        std::thread::scope(|s| {
            for w in 0..WRITERS {
                let folder = folder.clone();
                s.spawn(move || {
                    let what = if w % 2 == 0 { Request::Save } else { Request::Stop };
                    for _ in 0..EACH {
                        request(&folder, what).unwrap();
                    }
                });
            }
        });
        let counters = read_counters(&folder.control_path()).unwrap();
        assert_eq!(counters, Counters { save: WRITERS / 2 * EACH, stop: WRITERS / 2 * EACH });
        assert!(!crate::atomic::tmp_path(&folder.control_path()).exists());
    }

    #[test]
    fn a_request_to_a_missing_model_makes_no_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let folder = ModelFolder::new(tmp.path().join("nope"));
        let err = request(&folder, Request::Save).unwrap_err();
        assert!(matches!(err, ControlError::NoModel { .. }), "{err}");
        assert!(!folder.dir().exists());
    }

    #[test]
    fn heed_sets_the_stop_flag_and_asks_no_separate_save_with_it() {
        let (_tmp, folder) = folder();
        let mut watch = ControlWatch::start(&folder);
        let stop = AtomicBool::new(false);
        request(&folder, Request::Save).unwrap();
        std::thread::sleep(POLL_INTERVAL);
        assert!(watch.heed(&stop, 7), "a save");
        assert!(!stop.load(Ordering::Relaxed));
        request(&folder, Request::Save).unwrap();
        request(&folder, Request::Stop).unwrap();
        std::thread::sleep(POLL_INTERVAL);
        assert!(!watch.heed(&stop, 8), "the stop's final save covers the save");
        assert!(stop.load(Ordering::Relaxed));
    }

    #[test]
    fn the_file_format_is_two_counters() {
        let (_tmp, folder) = folder();
        request(&folder, Request::Stop).unwrap();
        let text = std::fs::read_to_string(folder.control_path()).unwrap();
        assert_eq!(text, "{\n  \"save\": 0,\n  \"stop\": 1\n}\n");
    }
}
