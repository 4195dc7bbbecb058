//! `dagrun verify`: re-hashes every object; corrupt ones are moved to `quarantine/`
//! and the records that name them dropped, so the next run rebuilds them.

use std::fs;

use super::Store;
use crate::Error;

/// One object whose bytes no longer match its name.
#[derive(Debug)]
pub struct Corrupt {
    pub object: String,
    pub actual: String,
    pub records_dropped: usize,
}

/// Checks every object; returns the corrupt ones (already quarantined).
pub fn verify(store: &Store) -> Result<(usize, Vec<Corrupt>), Error> {
    let _lock = super::lock::acquire(&store.root, "verify", super::lock::Hold::Whole, false)?;
    let objects = store.list_objects();
    let mut corrupt = Vec::new();
    for (path, hash, ext) in &objects {
        let actual = super::content::hash_file(path).map_err(Error::io(path))?;
        if &actual == hash {
            continue;
        }
        let q = store.quarantine().join(format!("{hash}.{ext}"));
        fs::create_dir_all(store.quarantine()).map_err(Error::io(&store.quarantine()))?;
        fs::rename(path, &q).map_err(Error::io(path))?;
        let mut dropped = 0;
        for (rpath, record) in store.list_records() {
            if record.is_some_and(|r| r.outputs.values().any(|o| &o.hash == hash)) {
                fs::remove_file(&rpath).map_err(Error::io(&rpath))?;
                dropped += 1;
            }
        }
        corrupt.push(Corrupt { object: format!("{hash}.{ext}"), actual, records_dropped: dropped });
    }
    Ok((objects.len(), corrupt))
}
