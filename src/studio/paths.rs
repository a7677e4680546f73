//! Paths from requests, resolved inside the workspace or refused.
//!
//! A request names files relative to the workspace (a model, a face, a preview). Each name is
//! checked before it touches the disk: no absolute path, no `..` or `.`, no empty or hidden
//! component, and no symbolic link anywhere along the way, so a request can only reach files
//! the workspace itself holds.

use std::path::{Component, Path, PathBuf};

/// Why a requested path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathRefused {
    /// Absolute, `..`, `.`, empty, hidden or with a separator inside a name.
    #[error("{0:?} is not a plain path inside the workspace")]
    NotPlain(String),
    /// A component is a symbolic link.
    #[error("{0:?} goes through a symbolic link")]
    Symlink(String),
}

/// Resolves `rel` (components separated by `/`) under `root`; the result may not exist yet.
///
/// # Errors
/// [`PathRefused`] for anything but plain names, or when an existing component is a link.
pub fn resolve(root: &Path, rel: &str) -> Result<PathBuf, PathRefused> {
    let refuse = || PathRefused::NotPlain(rel.to_owned());
    if rel.is_empty() || rel.contains('\\') || rel.contains('\0') {
        return Err(refuse());
    }
    let mut path = root.to_owned();
    for part in rel.split('/') {
        let mut parts = Path::new(part).components();
        let plain = matches!(parts.next(), Some(Component::Normal(_))) && parts.next().is_none();
        if !plain || part.starts_with('.') {
            return Err(refuse());
        }
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(PathRefused::Symlink(rel.to_owned()));
            }
            _ => {}
        }
    }
    Ok(path)
}

/// Checks a single file or folder name (no separators at all).
///
/// # Errors
/// [`PathRefused::NotPlain`] when `name` is not one plain component.
pub fn plain_name(name: &str) -> Result<&str, PathRefused> {
    if name.contains('/') {
        return Err(PathRefused::NotPlain(name.to_owned()));
    }
    resolve(Path::new(""), name).map(|_| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_resolve_under_the_root() {
        let root = Path::new("/ws");
        assert_eq!(
            resolve(root, "model/m1/preview.png").unwrap(),
            root.join("model/m1/preview.png")
        );
        assert_eq!(plain_name("00017_0.jpg").unwrap(), "00017_0.jpg");
    }

    #[test]
    fn traversal_absolute_and_hidden_paths_are_refused() {
        let root = Path::new("/ws");
        for bad in [
            "",
            "..",
            "../etc/passwd",
            "model/../../etc/passwd",
            "/etc/passwd",
            "model//m1",
            "model/./m1",
            ".lock",
            "model/m1/..",
            "a\\..\\b",
            "a\0b",
        ] {
            assert!(resolve(root, bad).is_err(), "{bad:?} was accepted");
        }
        assert!(plain_name("model/m1").is_err());
    }

    #[test]
    fn a_symbolic_link_anywhere_on_the_way_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"x").unwrap();
        std::fs::create_dir(tmp.path().join("model")).unwrap();
        std::os::unix::fs::symlink(outside.path(), tmp.path().join("model/link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), tmp.path().join("file")).unwrap();
        assert_eq!(
            resolve(tmp.path(), "model/link/secret"),
            Err(PathRefused::Symlink("model/link/secret".into()))
        );
        assert!(matches!(resolve(tmp.path(), "file"), Err(PathRefused::Symlink(_))));
        assert!(resolve(tmp.path(), "model/real").is_ok());
    }
}
