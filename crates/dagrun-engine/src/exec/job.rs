//! One stage execution on a worker thread: under the lock of its key, it reuses a
//! record another run committed meanwhile, or pulls the key from the remote, or runs
//! the kind in its own `tmp/` directory, moves the outputs into `objects/` by content
//! hash, commits the record last, and pushes it.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::Instant;

use dagrun_kind::{Progress, Report, StageCtx, StageError};
use indicatif::ProgressBar;

use super::{RemoteUse, freshness};
use crate::cache::Fingerprint;
use crate::pipeline::{Kind, Stage};
use crate::remote::{Published, RemoteError};
use crate::store::lock::KeyLock;
use crate::store::{Record, Store};

/// One stage execution, moved onto a worker thread.
pub(super) struct Job<'a> {
    pub stage: &'a Stage,
    pub store: &'a Store,
    pub workdir: PathBuf,
    pub inputs: BTreeMap<String, PathBuf>,
    pub fp: Fingerprint,
    pub key: String,
    /// Computed even when a record of the key exists (`--force`).
    pub forced: bool,
    pub remote: Option<&'a RemoteUse>,
    /// `dagrun pull`: take the key from the remote or leave it, never compute it.
    pub pull_only: bool,
}

/// How a job settled its key.
pub(super) enum Settled {
    Ran(Record),
    Pulled(Record),
    /// Another run committed the key while this one waited for its lock.
    Reused(Record),
    /// `dagrun pull`, and the remote has no record of the key.
    Missing,
}

/// A job's result and the warnings to print above its line.
pub(super) struct JobEnd {
    pub settled: Result<Settled, StageError>,
    pub warnings: Vec<String>,
}

struct BarProgress<'b>(&'b ProgressBar);

impl Progress for BarProgress<'_> {
    fn set_length(&self, total: u64) {
        self.0.set_length(total);
    }
    fn set_position(&self, done: u64) {
        self.0.set_position(done);
    }
    fn set_message(&self, message: &str) {
        self.0.set_message(message.to_string());
    }
}

impl Job<'_> {
    pub fn execute(self, bar: &ProgressBar) -> JobEnd {
        let mut warnings = Vec::new();
        let settled = self.settle(bar, &mut warnings);
        JobEnd { settled, warnings }
    }

    fn settle(&self, bar: &ProgressBar, warnings: &mut Vec<String>) -> Result<Settled, StageError> {
        let _lock = KeyLock::acquire(self.store, &self.key)?;
        if !self.forced
            && let Some(mut record) = self.store.read_record(&self.key).filter(|r| self.store.has_outputs(r))
        {
            record.stage = self.stage.name.clone();
            return Ok(Settled::Reused(record));
        }
        let remote = self.remote.filter(|r| r.remote.usable());
        if let Some(ru) = remote.filter(|_| !self.forced) {
            match self.pull(ru) {
                Ok(Some(record)) => return Ok(Settled::Pulled(record)),
                Ok(None) => {}
                Err(e) => self.remote_trouble(ru, e, warnings)?,
            }
        }
        if self.pull_only {
            return Ok(Settled::Missing);
        }
        let record = self.compute(bar)?;
        if let Some(ru) = remote.filter(|ru| ru.push && ru.remote.usable()) {
            match ru.remote.publish(&record, self.store) {
                Ok(Published::Differs(outputs)) => warnings.push(format!(
                    "{} has another record of this key, whose {} differ: stage {} is not deterministic; the remote keeps the first",
                    ru.remote.url(),
                    outputs.join(", "),
                    self.stage.name
                )),
                Ok(Published::New | Published::Same) => {}
                Err(e) => self.remote_trouble(ru, e, warnings)?,
            }
        }
        Ok(Settled::Ran(record))
    }

    /// The remote's record of the key, its objects downloaded and checked, committed locally.
    fn pull(&self, ru: &RemoteUse) -> Result<Option<Record>, RemoteError> {
        let Some(mut record) = ru.remote.record(&self.key)? else {
            return Ok(None);
        };
        ru.remote.fetch(&record, self.store)?;
        record.stage = self.stage.name.clone();
        self.store.commit(&record).map_err(|e| RemoteError::Failed {
            url: ru.remote.url().to_string(),
            op: format!("storing the record of {}", self.stage.name),
            message: e.to_string(),
        })?;
        Ok(Some(record))
    }

    /// A remote that failed: a warning and the run goes on locally, or (with
    /// `--remote-required`) the stage fails as bad input (exit 2). A corrupt object
    /// is never fatal: the stage is computed instead.
    fn remote_trouble(&self, ru: &RemoteUse, e: RemoteError, warnings: &mut Vec<String>) -> Result<(), StageError> {
        match e {
            RemoteError::Corrupt { .. } => {
                warnings.push(format!("{e}; computing {} instead", self.stage.name));
                Ok(())
            }
            _ if ru.required => Err(StageError::BadInput(e.to_string())),
            _ => {
                warnings.push(format!("{e}; going on without the remote (--remote-required stops instead)"));
                Ok(())
            }
        }
    }

    /// Runs the stage in its own tmp directory, stores its outputs, commits its record.
    fn compute(&self, bar: &ProgressBar) -> Result<Record, StageError> {
        let started = Instant::now();
        let started_unix = crate::now_secs();
        let tmp = self.store.tmp().join(format!("{}-{}", self.stage.name, &self.key[..16]));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        let report = self.call(&tmp, bar);
        let report = match report {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let mut outputs = BTreeMap::new();
        for o in &self.stage.outputs {
            let file = tmp.join(format!("{}.{}", o.name, o.ext));
            if !file.is_file() {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(StageError::Failed(format!("the stage did not write its output `{}.{}`", o.name, o.ext)));
            }
            let mut stored = self.store.put_object(&file, &o.ext)?;
            stored.rows = report.rows.get(&o.name).copied();
            outputs.insert(o.name.clone(), stored);
        }
        let record = Record {
            key: self.key.clone(),
            stage: self.stage.name.clone(),
            fingerprint: self.fp.clone(),
            sources: freshness::sources_of(self.stage),
            outputs,
            metrics: report.metrics,
            notes: report.notes,
            started: started_unix,
            duration_s: started.elapsed().as_secs_f64(),
            dagrun_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        self.store.commit(&record)?;
        let _ = std::fs::remove_dir_all(&tmp);
        Ok(record)
    }

    fn call(&self, tmp: &Path, bar: &ProgressBar) -> Result<Report, StageError> {
        match self.stage.kind {
            Kind::Cmd => super::cmd_kind::run(self.stage, &self.inputs, tmp, &self.workdir),
            Kind::Builtin(spec) => {
                let progress = BarProgress(bar);
                let ctx =
                    StageCtx { inputs: &self.inputs, params: &self.stage.params, out_dir: tmp, progress: &progress };
                // A panic in a stage is a bug; it must still not take the other branches down.
                std::panic::catch_unwind(AssertUnwindSafe(|| (spec.run)(&ctx))).unwrap_or_else(|panic| {
                    let msg = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    Err(StageError::Failed(format!("internal error: the stage panicked ({msg}); please report it")))
                })
            }
        }
    }
}
