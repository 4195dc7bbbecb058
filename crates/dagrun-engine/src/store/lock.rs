//! The store's run lock: one `dagrun run` (or `gc`, `verify`) writes at a time.
//!
//! It is an OS file lock (flock), so the kernel drops it when its holder dies: a lock
//! left by a killed process is simply taken over, never needing a manual unlock.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::StoreError;

/// Held while it lives.
pub struct StoreLock {
    _file: fs::File,
}

/// Takes the store's lock; `wait` blocks until it is free, otherwise a held lock is
/// an error naming its holder.
pub fn acquire(store_root: &Path, what: &str, wait: bool) -> Result<StoreLock, crate::Error> {
    fs::create_dir_all(store_root).map_err(crate::Error::io(store_root))?;
    let path = store_root.join("lock");
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(crate::Error::io(&path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) if wait => file.lock().map_err(crate::Error::io(&path))?,
        Err(fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(StoreError::Locked {
                store: store_root.display().to_string(),
                holder: if holder.is_empty() { "another dagrun process".into() } else { holder.to_string() },
            }
            .into());
        }
        Err(fs::TryLockError::Error(e)) => return Err(crate::Error::io(&path)(e)),
    }
    // Who holds it, for the message a second `dagrun run` prints.
    let info = format!("pid {} (`dagrun {what}`, since unix time {})", std::process::id(), crate::now_secs());
    let _ = file.set_len(0);
    let _ = file.seek(SeekFrom::Start(0));
    let _ = file.write_all(info.as_bytes());
    Ok(StoreLock { _file: file })
}
