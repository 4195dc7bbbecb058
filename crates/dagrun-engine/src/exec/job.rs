//! One stage execution on a worker thread: the kind runs in its own `tmp/` directory,
//! its outputs move into `objects/` by content hash, and its record is committed last.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::Instant;

use dagrun_kind::{Progress, Report, StageCtx, StageError};
use indicatif::ProgressBar;

use super::freshness;
use crate::cache::Fingerprint;
use crate::pipeline::{Kind, Stage};
use crate::store::{Record, Store};

/// One stage execution, moved onto a worker thread.
pub(super) struct Job<'a> {
    pub stage: &'a Stage,
    pub store: &'a Store,
    pub workdir: PathBuf,
    pub inputs: BTreeMap<String, PathBuf>,
    pub fp: Fingerprint,
    pub key: String,
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
    /// Runs the stage in its own tmp directory, stores its outputs, commits its record.
    pub fn execute(self, bar: &ProgressBar) -> Result<Record, StageError> {
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
            fingerprint: self.fp,
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
