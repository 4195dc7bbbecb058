//! Files written whole: readers see the old file or the complete new one, never a part.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A name in `dir` for a file about to be renamed over `name`, unique to this write:
/// the pid keeps processes apart, the counter threads (a sweep's points commit the
/// same `latest/` paths at once).
pub fn tmp_path(dir: &Path, name: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    dir.join(format!(".{name}.{}-{}.tmp", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)))
}

/// Writes `bytes` to `path` so that readers see the old file or the whole new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_via(path.parent().expect("written paths have a parent"), path, bytes)
}

/// [`write_atomic`] with the temp file in `tmp_dir` (on `path`'s file system). The
/// store passes its `tmp/`: a process killed before the rename leaves its temp file
/// there, which the next lone run clears, not beside the records.
pub fn write_atomic_via(tmp_dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    fs::create_dir_all(tmp_dir)?;
    fs::create_dir_all(path.parent().expect("written paths have a parent"))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = tmp_path(tmp_dir, &name);
    let mut f = fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}
