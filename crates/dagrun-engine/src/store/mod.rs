//! The artifact store: write-once objects by content hash, one record per stage
//! execution by cache key, run logs, and stable `latest/` paths.
//!
//! Order of writes makes a crash harmless: outputs are written in `tmp/`, hashed
//! and renamed into `objects/`; the record is written last, atomically; `latest/`
//! follows the record. A record therefore never points at a missing or partial object.
//! Records, `latest/` and run logs are staged in `tmp/` too, so a process killed
//! mid-write leaves nothing beside them.
//!
//! `atomic` writes files whole, `content` hashes files and directories (with the
//! stamp index of external inputs), `lock` the store lock (shared by runs, whole
//! for `gc` and `verify`) and the lock of each key being computed, `gc` and `verify`
//! the commands that take the whole store.

mod atomic;
pub mod content;
pub mod gc;
pub mod lock;
pub mod verify;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub(crate) use atomic::tmp_path;
pub use atomic::write_atomic;

use crate::cache::Fingerprint;

/// A problem with the store that the user can act on (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store {store} is locked by {holder}; wait for it, or pass --wait")]
    Locked { store: String, holder: String },
    #[error("no stage `{0}` has a record in the store yet; run the pipeline first")]
    NeverRun(String),
    #[error("{0}")]
    NotFound(String),
}

/// One stored output of a stage execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredOutput {
    pub hash: String,
    pub ext: String,
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

/// What one stage execution used and produced; `records/<key>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub key: String,
    pub stage: String,
    pub fingerprint: Fingerprint,
    /// Where each input came from (`stage.output` or a path), for `status` reasons.
    pub sources: BTreeMap<String, String>,
    pub outputs: BTreeMap<String, StoredOutput>,
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    #[serde(default)]
    pub notes: Vec<String>,
    /// Unix seconds at the start of the execution.
    pub started: u64,
    pub duration_s: f64,
    pub dagrun_version: String,
}

/// One stage's line in a run log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunEntry {
    pub stage: String,
    /// `ran`, `cached`, `failed` or `skipped`.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `runs/<id>.json`: which keys one `dagrun run` used, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunLog {
    pub id: String,
    pub pipeline: String,
    /// The `-P` overrides the run was made with (a sweep's point among them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<String>,
    pub started: u64,
    pub duration_s: f64,
    pub stages: Vec<RunEntry>,
}

/// Paths of the store's parts.
#[derive(Clone)]
pub struct Store {
    pub root: PathBuf,
}

impl Store {
    pub fn new(root: PathBuf) -> Store {
        Store { root }
    }

    pub fn objects(&self) -> PathBuf {
        self.root.join("objects")
    }
    pub fn records(&self) -> PathBuf {
        self.root.join("records")
    }
    pub fn runs(&self) -> PathBuf {
        self.root.join("runs")
    }
    pub fn latest(&self) -> PathBuf {
        self.root.join("latest")
    }
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }
    pub fn quarantine(&self) -> PathBuf {
        self.root.join("quarantine")
    }
    /// One lock file per cache key being computed (see `lock::KeyLock`).
    pub fn locks(&self) -> PathBuf {
        self.root.join("locks")
    }
    pub fn input_index(&self) -> PathBuf {
        self.root.join("cache").join("inputs.json")
    }

    pub fn object_path(&self, hash: &str, ext: &str) -> PathBuf {
        self.objects().join(&hash[..2]).join(format!("{hash}.{ext}"))
    }

    pub fn record_path(&self, key: &str) -> PathBuf {
        self.records().join(format!("{key}.json"))
    }

    /// The stable path of a stage's newest output, for DuckDB and people.
    pub fn latest_output(&self, stage: &str, name: &str, ext: &str) -> PathBuf {
        self.latest().join(stage).join(format!("{name}.{ext}"))
    }

    /// A copy of the newest record of a stage; `status` reads it to explain staleness.
    fn latest_record_path(&self, stage: &str) -> PathBuf {
        self.latest().join(stage).join(".record.json")
    }

    pub fn read_record(&self, key: &str) -> Option<Record> {
        read_json(&self.record_path(key))
    }

    pub fn latest_record(&self, stage: &str) -> Option<Record> {
        read_json(&self.latest_record_path(stage))
    }

    /// True when every object the record names is present.
    pub fn has_outputs(&self, record: &Record) -> bool {
        record.outputs.values().all(|o| self.object_path(&o.hash, &o.ext).is_file())
    }

    /// Moves a finished output file into `objects/` under its content hash.
    pub fn put_object(&self, file: &Path, ext: &str) -> io::Result<StoredOutput> {
        let hash = content::hash_file(file)?;
        let bytes = fs::metadata(file)?.len();
        self.adopt_object(file, &hash, ext)?;
        Ok(StoredOutput { hash, ext: ext.to_string(), bytes, rows: None })
    }

    /// Moves `file`, whose content hash the caller has checked to be `hash`, into `objects/`.
    pub fn adopt_object(&self, file: &Path, hash: &str, ext: &str) -> io::Result<()> {
        let dest = self.object_path(hash, ext);
        if dest.is_file() {
            // Write-once: identical content is already there.
            return fs::remove_file(file);
        }
        fs::create_dir_all(dest.parent().expect("object paths have a parent"))?;
        fs::File::open(file)?.sync_all()?;
        fs::rename(file, &dest)
    }

    /// Writes the record (the commit point of an execution), then points `latest/` at it.
    pub fn commit(&self, record: &Record) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(record)?;
        self.write_file(&self.record_path(&record.key), &json)?;
        self.write_latest(record)
    }

    /// Makes `latest/<stage>/` show a reused record, unless it already does.
    pub fn point_latest(&self, record: &Record) -> io::Result<()> {
        if self.latest_record(&record.stage).is_some_and(|r| r.key == record.key && self.latest_links_ok(&r)) {
            return Ok(());
        }
        self.write_latest(record)
    }

    /// Points `latest/<stage>/` at `record`'s outputs (relative symlinks) and copies the record.
    fn write_latest(&self, record: &Record) -> io::Result<()> {
        let dir = self.latest().join(&record.stage);
        fs::create_dir_all(&dir)?;
        for (name, out) in &record.outputs {
            let link = dir.join(format!("{name}.{}", out.ext));
            let target = Path::new("../../objects").join(&out.hash[..2]).join(format!("{}.{}", out.hash, out.ext));
            fs::create_dir_all(self.tmp())?;
            let tmp = atomic::tmp_path(&self.tmp(), &format!("{name}.{}", out.ext));
            std::os::unix::fs::symlink(&target, &tmp)?;
            fs::rename(&tmp, &link)?;
        }
        let json = serde_json::to_vec_pretty(record)?;
        self.write_file(&self.latest_record_path(&record.stage), &json)
    }

    /// Writes a file of the store whole, through a temp file in `tmp/`.
    fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        atomic::write_atomic_via(&self.tmp(), path, bytes)
    }

    fn latest_links_ok(&self, record: &Record) -> bool {
        record.outputs.iter().all(|(name, o)| self.latest_output(&record.stage, name, &o.ext).is_file())
    }

    pub fn write_run(&self, run: &RunLog) -> io::Result<()> {
        self.write_file(&self.runs().join(format!("{}.json", run.id)), &serde_json::to_vec_pretty(run)?)
    }

    /// Run logs, oldest first (ids sort by time).
    pub fn list_runs(&self) -> Vec<RunLog> {
        let mut runs: Vec<RunLog> = list_dir(&self.runs()).into_iter().filter_map(|p| read_json(&p)).collect();
        runs.sort_by(|a, b| a.id.cmp(&b.id));
        runs
    }

    /// Every record file in the store.
    pub fn list_records(&self) -> Vec<(PathBuf, Option<Record>)> {
        list_dir(&self.records())
            .into_iter()
            .map(|p| {
                let r = read_json(&p);
                (p, r)
            })
            .collect()
    }

    /// Every object file as (path, hash, ext).
    pub fn list_objects(&self) -> Vec<(PathBuf, String, String)> {
        let mut out = Vec::new();
        for shard in list_dir(&self.objects()) {
            for p in list_dir(&shard) {
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                if let Some((hash, ext)) = name.split_once('.') {
                    out.push((p.clone(), hash.to_string(), ext.to_string()));
                }
            }
        }
        out.sort();
        out
    }
}

fn list_dir(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> =
        fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    out.sort();
    out
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the temp files of records and run logs were made beside them, so a
    /// run killed between create and rename left `.<name>.<pid>-<n>.tmp` in `records/`
    /// for good. They are made in `tmp/` now: with `tmp` a plain file, a write fails
    /// before anything appears beside the run logs.
    #[test]
    fn store_files_are_staged_in_tmp() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::new(d.path().to_path_buf());
        let log = RunLog {
            id: "1-2".into(),
            pipeline: "p.yaml".into(),
            overrides: vec![],
            started: 0,
            duration_s: 0.0,
            stages: vec![],
        };
        store.write_run(&log).unwrap();
        let names = |dir: PathBuf| -> Vec<String> {
            let mut n: Vec<String> =
                list_dir(&dir).iter().map(|p| p.file_name().unwrap().to_string_lossy().into()).collect();
            n.sort();
            n
        };
        assert_eq!(names(store.runs()), ["1-2.json"]);
        assert!(store.tmp().is_dir(), "the temp file was made in tmp/");

        fs::remove_dir_all(store.tmp()).unwrap();
        fs::write(store.tmp(), "").unwrap();
        let log = RunLog { id: "3-4".into(), ..log };
        assert!(store.write_run(&log).is_err());
        assert_eq!(names(store.runs()), ["1-2.json"], "nothing beside the run logs");
    }
}
