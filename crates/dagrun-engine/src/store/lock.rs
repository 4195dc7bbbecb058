//! The store's locks. Runs share the store lock, so several `dagrun run`s proceed on
//! one store at once; `gc` and `verify` take it whole. A run takes the lock of a key
//! while it computes that key, so two runs that need the same stage compute it once:
//! the second waits for the first's record and reuses it.
//!
//! They are OS file locks (flock), so the kernel drops them when their holder dies: a
//! lock left by a killed process is simply taken over, never needing a manual unlock.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::{Store, StoreError};

/// Held while it lives.
pub struct StoreLock {
    _file: fs::File,
    /// A run's shared hold on `tmp.lock` (see [`acquire`]).
    _tmp: Option<fs::File>,
}

/// How much of the store a command takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// A run: other runs may hold it too.
    Shared,
    /// `gc`, `verify`: no run at the same time.
    Whole,
}

/// Takes the store lock. `wait` blocks until it is free, otherwise a lock held the
/// other way is an error naming its holder.
///
/// A run that finds no other run in progress clears `tmp/` (what is there was left by
/// killed runs, never a result): every run holds `tmp.lock` shared, and the one that
/// gets it whole cleans, then turns its hold into a shared one. Only that moment holds
/// it whole, so a run that finds it taken just waits for it.
pub fn acquire(store_root: &Path, what: &str, hold: Hold, wait: bool) -> Result<StoreLock, crate::Error> {
    fs::create_dir_all(store_root).map_err(crate::Error::io(store_root))?;
    let path = store_root.join("lock");
    let mut file = open(&path)?;
    let tried = match hold {
        Hold::Shared => file.try_lock_shared(),
        Hold::Whole => file.try_lock(),
    };
    match tried {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) if wait => match hold {
            Hold::Shared => file.lock_shared(),
            Hold::Whole => file.lock(),
        }
        .map_err(crate::Error::io(&path))?,
        Err(fs::TryLockError::WouldBlock) => return Err(locked(store_root, &mut file)),
        Err(fs::TryLockError::Error(e)) => return Err(crate::Error::io(&path)(e)),
    }
    // Who holds it, for the message a refused command prints.
    let info = format!("pid {} (`dagrun {what}`, since unix time {})", std::process::id(), crate::now_secs());
    let _ = file.set_len(0);
    let _ = file.seek(SeekFrom::Start(0));
    let _ = file.write_all(info.as_bytes());
    let tmp = match hold {
        Hold::Shared => Some(hold_tmp(store_root)?),
        Hold::Whole => None,
    };
    Ok(StoreLock { _file: file, _tmp: tmp })
}

/// A run's shared hold on `tmp.lock`, after clearing `tmp/` if no other run holds it.
fn hold_tmp(store_root: &Path) -> Result<fs::File, crate::Error> {
    let path = store_root.join("tmp.lock");
    let file = open(&path)?;
    match file.try_lock() {
        Ok(()) => {
            let _ = fs::remove_dir_all(store_root.join("tmp"));
            file.lock_shared().map_err(crate::Error::io(&path))?;
        }
        Err(fs::TryLockError::WouldBlock) => file.lock_shared().map_err(crate::Error::io(&path))?,
        Err(fs::TryLockError::Error(e)) => return Err(crate::Error::io(&path)(e)),
    }
    Ok(file)
}

fn open(path: &Path) -> Result<fs::File, crate::Error> {
    open_lock_file(path).map_err(crate::Error::io(path))
}

/// A lock file, made if missing and never truncated (its holder's line is read back).
fn open_lock_file(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)
}

fn locked(store_root: &Path, file: &mut fs::File) -> crate::Error {
    let mut holder = String::new();
    let _ = file.read_to_string(&mut holder);
    let holder = holder.trim();
    StoreError::Locked {
        store: store_root.display().to_string(),
        holder: if holder.is_empty() { "another dagrun process".into() } else { holder.to_string() },
    }
    .into()
}

/// The lock of one cache key, held while that key is computed.
pub struct KeyLock {
    _file: fs::File,
}

impl KeyLock {
    /// Blocks while another process computes `key`. Lock files stay (removing one
    /// that another process is about to lock would let two runs in); `gc` clears them.
    pub fn acquire(store: &Store, key: &str) -> std::io::Result<KeyLock> {
        Ok(KeyLock { _file: hold_whole(&store.locks().join(format!("{key}.lock")))? })
    }
}

/// The lock file at `path` (made, with its directory, if need be), held whole: blocks
/// while another holder has it; the lock goes with the returned file.
pub(crate) fn hold_whole(path: &Path) -> std::io::Result<fs::File> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let file = open_lock_file(path)?;
    file.lock()?;
    Ok(file)
}
