//! DeepFaceLab's packed faceset, `faceset.pak`: the face files of a folder in one file.
//!
//! Layout, integers little-endian u64: the version (1); the length `L` of a pickled list of
//! sample configs; those `L` bytes; a table of `N + 1` offsets; then the face files' bytes
//! back to back. Entry `i` spans `offsets[i]..offsets[i + 1]` counted from the end of the
//! table, except that the last offset DeepFaceLab writes is counted from the start of the file,
//! so the last entry ends at the end of the file. Each config names its face file
//! (`filename`); the face's full metadata is in the face file itself.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::dfl_format::pickle::{self, Value};

/// The only version DeepFaceLab writes.
const VERSION: u64 = 1;
/// The most faces a pack may hold (a bound on the offset table, not a practical limit).
const MAX_ENTRIES: u64 = 10_000_000;
/// The longest config list read into memory.
const MAX_CONFIG_BYTES: u64 = 1 << 30;
/// The largest face file in a pack.
const MAX_ENTRY_BYTES: u64 = 64 << 20;

/// Why a `faceset.pak` cannot be read. The caller names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PakError {
    /// Reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The header, config list or offset table breaks the format.
    #[error("not a DeepFaceLab faceset.pak: {0}")]
    Malformed(String),
    /// The config list is not a pickle the reader accepts.
    #[error("its sample list is unreadable: {0}")]
    Configs(#[from] pickle::PickleError),
}

/// One face file in a pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    /// The face file's name, as its config gives it (a person's subfolder, if any, before it).
    pub name: String,
    /// Where its bytes start in the pack.
    pub offset: u64,
    /// How many bytes it has.
    pub len: u64,
}

/// An open `faceset.pak`.
#[derive(Debug)]
pub(super) struct Pak {
    file: File,
    /// Its face files, in the pack's order.
    pub entries: Vec<Entry>,
}

impl Pak {
    /// Opens `path` and reads its configs and offset table (not the faces).
    ///
    /// # Errors
    /// `Io`, `Malformed` or `Configs`.
    pub fn open(path: &Path) -> Result<Pak, PakError> {
        let file = File::open(path)?;
        let file_len = file.metadata()?.len();
        let bad = |why: String| PakError::Malformed(why);
        let u64_at = |at: u64| -> Result<u64, PakError> {
            let mut word = [0; 8];
            file.read_exact_at(&mut word, at)
                .map_err(|_| bad(format!("cut short at byte {at}")))?;
            Ok(u64::from_le_bytes(word))
        };
        let version = u64_at(0)?;
        if version != VERSION {
            return Err(bad(format!("version {version}, expected {VERSION}")));
        }
        let config_len = u64_at(8)?;
        if config_len > MAX_CONFIG_BYTES || 16 + config_len > file_len {
            return Err(bad(format!(
                "a sample list of {config_len} bytes in a {file_len}-byte file"
            )));
        }
        let mut configs = vec![0; config_len as usize];
        file.read_exact_at(&mut configs, 16)?;
        let configs = pickle::loads(&configs)?;
        let list = configs.as_seq().ok_or_else(|| bad("the sample list is not a list".into()))?;
        let n = list.len() as u64;
        let table = 16 + config_len;
        if n > MAX_ENTRIES || table + 8 * (n + 1) > file_len {
            return Err(bad(format!("{n} samples do not fit in the file")));
        }
        let data_start = table + 8 * (n + 1);
        let offsets = (0..=n).map(|i| u64_at(table + 8 * i)).collect::<Result<Vec<_>, _>>()?;
        let mut entries = Vec::with_capacity(list.len());
        for (i, config) in list.iter().enumerate() {
            let name =
                entry_name(config).ok_or_else(|| bad(format!("sample {i} has no filename")))?;
            let start = data_start.checked_add(offsets[i]);
            let end = if i + 1 == list.len() {
                Some(file_len)
            } else {
                data_start.checked_add(offsets[i + 1])
            };
            let (Some(start), Some(end)) = (start, end) else {
                return Err(bad(format!("sample {i}'s offsets overflow")));
            };
            if start > end || end > file_len || end - start > MAX_ENTRY_BYTES {
                return Err(bad(format!("sample {i} ({name}) spans bytes {start}..{end}")));
            }
            entries.push(Entry { name, offset: start, len: end - start });
        }
        Ok(Pak { file, entries })
    }

    /// Reads one face file's bytes.
    ///
    /// # Errors
    /// The OS error.
    pub fn read(&self, entry: &Entry) -> std::io::Result<Vec<u8>> {
        let mut bytes = vec![0; entry.len as usize];
        self.file.read_exact_at(&mut bytes, entry.offset)?;
        Ok(bytes)
    }
}

/// A config's face file name: `filename`, under `person_name` when the pack was made per
/// person. Names with a path in them are refused.
fn entry_name(config: &Value) -> Option<String> {
    let plain = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .filter(|s| !s.is_empty() && !s.contains(['/', '\\', '\0']) && *s != ".." && *s != ".")
            .map(str::to_owned)
    };
    let file = plain(config.get("filename"))?;
    Some(match plain(config.get("person_name")) {
        Some(person) => format!("{person}_{file}"),
        None => file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pack as DeepFaceLab writes it (the last offset counted from the file's start).
    pub(in super::super) fn pack(configs_pickle: &[u8], files: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(VERSION.to_le_bytes());
        out.extend((configs_pickle.len() as u64).to_le_bytes());
        out.extend(configs_pickle);
        let data_start = (out.len() + 8 * (files.len() + 1)) as u64;
        let mut offsets = vec![0u64];
        for f in files {
            offsets.push(offsets.last().copied().unwrap_or(0) + f.len() as u64);
        }
        *offsets.last_mut().expect("one offset at least") += data_start;
        for o in offsets {
            out.extend(o.to_le_bytes());
        }
        for f in files {
            out.extend(*f);
        }
        out
    }

    fn fixture(name: &str) -> Vec<u8> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dfl");
        std::fs::read(dir.join(name)).expect("fixture")
    }

    fn open(bytes: &[u8]) -> Result<Pak, PakError> {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("faceset.pak");
        std::fs::write(&path, bytes).expect("write");
        Pak::open(&path)
    }

    #[test]
    fn entries_span_their_files_the_last_one_to_the_end() {
        let configs = fixture("pak_configs_p4.pickle");
        let pak = open(&pack(&configs, &[b"first-file", b"second"])).expect("a pack");
        let names: Vec<_> = pak.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["00017_0.jpg", "00018_0.jpg"]);
        assert_eq!(pak.read(&pak.entries[0]).expect("read"), b"first-file");
        assert_eq!(pak.read(&pak.entries[1]).expect("read"), b"second");
    }

    #[test]
    fn mutated_packs_never_panic() {
        let configs = fixture("pak_configs_p4.pickle");
        let good = pack(&configs, &[b"first-file", b"second"]);
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("faceset.pak");
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut opened, rounds) = (0, 3000);
        for _ in 0..rounds {
            let mut bytes = good.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % bytes.len() as u64) as usize;
                bytes[at] = next() as u8;
            }
            std::fs::write(&path, &bytes).expect("write");
            if let Ok(pak) = Pak::open(&path) {
                opened += 1;
                for entry in &pak.entries {
                    let _ = pak.read(entry);
                }
            }
        }
        assert!(opened > 0 && opened < rounds, "{opened} of {rounds} mutants opened");
    }

    #[test]
    fn damaged_packs_are_refused_without_panicking() {
        let configs = fixture("pak_configs_p4.pickle");
        let good = pack(&configs, &[b"first-file", b"second"]);
        for len in 0..good.len() - b"second".len() {
            assert!(open(&good[..len]).is_err(), "cut to {len} bytes was accepted");
        }
        let mut bad_version = good.clone();
        bad_version[0] = 2;
        assert!(open(&bad_version).expect_err("v2").to_string().contains("version 2"));
        let mut huge = good.clone();
        huge[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(open(&huge).is_err());
        let table = 16 + configs.len();
        let mut backwards = good;
        backwards[table + 8..table + 16].copy_from_slice(&1000u64.to_le_bytes());
        assert!(open(&backwards).expect_err("offsets").to_string().contains("spans"));
    }
}
