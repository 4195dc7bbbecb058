//! Content hashes of files and directories, with a (size, mtime, inode) index so
//! that files which have not changed are not read again.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// blake3 of a file's bytes, hex.
pub fn hash_file(path: &Path) -> io::Result<String> {
    let mut h = blake3::Hasher::new();
    h.update_reader(fs::File::open(path)?)?;
    Ok(h.finalize().to_hex().to_string())
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
struct Stamp {
    size: u64,
    mtime_ns: i128,
    inode: u64,
    hash: String,
}

impl Stamp {
    fn matches(&self, m: &fs::Metadata) -> bool {
        self.size == m.len() && self.mtime_ns == mtime_ns(m) && self.inode == m.ino()
    }
}

fn mtime_ns(m: &fs::Metadata) -> i128 {
    m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128
}

/// Why an input could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The user's directory loops back on itself (exit 2).
    #[error(
        "{dir}: the directory loops back on itself ({link} leads to {ancestor}); remove the link, or point the input at a directory without one"
    )]
    Loop { dir: String, link: String, ancestor: String },
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
}

/// Remembers the hash of every input file by absolute path and stamp.
#[derive(Default)]
pub struct InputIndex {
    file: Option<PathBuf>,
    entries: BTreeMap<String, Stamp>,
    changed: bool,
}

impl InputIndex {
    /// Loads the index kept at `file`; a missing or unreadable index is an empty one.
    pub fn load(file: PathBuf) -> InputIndex {
        let entries = fs::read(&file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        InputIndex { file: Some(file), entries, changed: false }
    }

    /// Writes the index back if it learned anything (atomically: temp file, then
    /// rename). Runs on one store save at the same time, so the file is re-read under
    /// a short lock and this run's stamps are laid over it: none of the others' is lost.
    pub fn save(&self) -> io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if !self.changed {
            return Ok(());
        }
        let _lock = super::lock::hold_whole(&file.with_file_name("inputs.lock"))?;
        let mut merged = InputIndex::load(file.clone()).entries;
        merged.extend(self.entries.iter().map(|(k, v)| (k.clone(), v.clone())));
        super::write_atomic(file, &serde_json::to_vec(&merged)?)
    }

    /// The content hash of a file, or of a directory: the relative path and hash of
    /// every file under it, in sorted order.
    pub fn hash_path(&mut self, path: &Path) -> Result<String, HashError> {
        let meta = fs::metadata(path).map_err(io_at(path))?;
        if !meta.is_dir() {
            return self.hash_one(path, &meta).map_err(io_at(path));
        }
        let mut h = blake3::Hasher::new();
        h.update(b"dir\0");
        for rel in collect_files(path)? {
            let full = path.join(&rel);
            let file_hash = fs::metadata(&full).and_then(|m| self.hash_one(&full, &m)).map_err(io_at(&full))?;
            h.update(rel.as_bytes());
            h.update(b"\0");
            h.update(file_hash.as_bytes());
            h.update(b"\n");
        }
        Ok(h.finalize().to_hex().to_string())
    }

    fn hash_one(&mut self, path: &Path, meta: &fs::Metadata) -> io::Result<String> {
        let key = fs::canonicalize(path)?.to_string_lossy().into_owned();
        if let Some(stamp) = self.entries.get(&key)
            && stamp.matches(meta)
        {
            return Ok(stamp.hash.clone());
        }
        let hash = hash_file(path)?;
        let stamp = Stamp { size: meta.len(), mtime_ns: mtime_ns(meta), inode: meta.ino(), hash: hash.clone() };
        self.entries.insert(key, stamp);
        self.changed = true;
        Ok(hash)
    }
}

/// For `map_err`: an i/o error at `path`.
fn io_at(path: &Path) -> impl FnOnce(io::Error) -> HashError + '_ {
    move |source| HashError::Io { path: path.display().to_string(), source }
}

/// Relative paths (with `/`) of every file below `root`, following links (walkdir
/// notices a link that leads back to a folder above it), sorted as strings.
fn collect_files(root: &Path) -> Result<Vec<String>, HashError> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(root).follow_links(true) {
        let entry = entry.map_err(|e| walk_error(root, e))?;
        if !entry.file_type().is_dir() {
            let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    out.sort();
    Ok(out)
}

fn walk_error(root: &Path, e: walkdir::Error) -> HashError {
    match (e.loop_ancestor(), e.path()) {
        (Some(ancestor), Some(link)) => HashError::Loop {
            dir: root.display().to_string(),
            link: link.display().to_string(),
            ancestor: ancestor.display().to_string(),
        },
        _ => {
            let path = e.path().unwrap_or(root).display().to_string();
            HashError::Io { path, source: e.into_io_error().unwrap_or_else(|| io::Error::other("cannot walk")) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_hash_covers_names_and_bytes() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("sub")).unwrap();
        fs::write(d.path().join("a.txt"), "one").unwrap();
        fs::write(d.path().join("sub/b.txt"), "two").unwrap();
        let mut idx = InputIndex::default();
        let h1 = idx.hash_path(d.path()).unwrap();
        assert_eq!(h1, InputIndex::default().hash_path(d.path()).unwrap(), "same tree, same hash");
        fs::rename(d.path().join("sub/b.txt"), d.path().join("sub/c.txt")).unwrap();
        let h2 = InputIndex::default().hash_path(d.path()).unwrap();
        assert_ne!(h1, h2, "a rename changes the hash");
        fs::write(d.path().join("sub/c.txt"), "TWO").unwrap();
        assert_ne!(h2, InputIndex::default().hash_path(d.path()).unwrap(), "new bytes change the hash");
    }

    /// Regression: a link back to a parent folder recursed until the OS gave up
    /// ("Too many levels of symbolic links", exit 1).
    #[test]
    fn a_symlink_loop_is_named() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("sub")).unwrap();
        fs::write(d.path().join("sub/a.txt"), "one").unwrap();
        std::os::unix::fs::symlink(d.path(), d.path().join("sub/back")).unwrap();
        match InputIndex::default().hash_path(d.path()) {
            Err(HashError::Loop { dir, link, .. }) => {
                assert_eq!(dir, d.path().display().to_string());
                assert!(link.ends_with("sub/back"), "{link}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unchanged_stamp_is_not_reread() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x");
        fs::write(&f, "abc").unwrap();
        let mut idx = InputIndex::default();
        let h = idx.hash_path(&f).unwrap();
        assert_eq!(h, hash_file(&f).unwrap());
        // Poison the remembered hash: if the index is consulted, the poison comes back.
        let key = fs::canonicalize(&f).unwrap().to_string_lossy().into_owned();
        idx.entries.get_mut(&key).unwrap().hash = "remembered".into();
        assert_eq!(idx.hash_path(&f).unwrap(), "remembered");
        // A changed size invalidates the stamp.
        fs::write(&f, "abcd").unwrap();
        assert_eq!(idx.hash_path(&f).unwrap(), hash_file(&f).unwrap());
    }
}
