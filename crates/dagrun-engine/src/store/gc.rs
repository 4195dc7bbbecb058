//! `dagrun gc`: drops records and objects that neither a recent run nor a current
//! stage refers to.

use std::collections::BTreeSet;
use std::fs;

use super::Store;
use crate::Error;

/// What `gc` removed (or would remove, with `dry_run`).
#[derive(Debug, Default)]
pub struct GcReport {
    pub records: usize,
    pub objects: usize,
    pub bytes: u64,
}

/// Keeps the records of the last `keep_runs` runs and the newest record of every
/// stage in `latest/`, and every object they name; removes the rest.
pub fn gc(store: &Store, keep_runs: usize, dry_run: bool) -> Result<GcReport, Error> {
    let _lock =
        if dry_run { None } else { Some(super::lock::acquire(&store.root, "gc", super::lock::Hold::Whole, false)?) };
    let runs = store.list_runs();
    let mut keep_keys: BTreeSet<String> =
        runs.iter().rev().take(keep_runs).flat_map(|r| r.stages.iter().filter_map(|e| e.key.clone())).collect();
    if let Ok(dir) = fs::read_dir(store.latest()) {
        for entry in dir.flatten() {
            let stage = entry.file_name().to_string_lossy().into_owned();
            if let Some(r) = store.latest_record(&stage) {
                keep_keys.insert(r.key);
            }
        }
    }
    let mut report = GcReport::default();
    let mut keep_objects: BTreeSet<String> = BTreeSet::new();
    for (path, record) in store.list_records() {
        match record {
            Some(r) if keep_keys.contains(&r.key) => {
                keep_objects.extend(r.outputs.values().map(|o| o.hash.clone()));
            }
            _ => {
                report.records += 1;
                if !dry_run {
                    fs::remove_file(&path).map_err(Error::io(&path))?;
                }
            }
        }
    }
    for (path, hash, _) in store.list_objects() {
        if !keep_objects.contains(&hash) {
            report.objects += 1;
            report.bytes += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if !dry_run {
                fs::remove_file(&path).map_err(Error::io(&path))?;
            }
        }
    }
    if !dry_run {
        // No run holds the store now: nothing is in progress, no key is being computed.
        let _ = fs::remove_dir_all(store.tmp());
        let _ = fs::remove_dir_all(store.locks());
    }
    Ok(report)
}
