//! The scheduler of one run: settles every stage whose upstream has settled (skip,
//! cache hit, or start it on a worker thread, at most `jobs` at once) and prints
//! one line per stage as it ends.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::Scope;
use std::time::Duration;

use dagrun_kind::StageError;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::job::Job;
use super::{Outcome, RunOptions, freshness};
use crate::Error;
use crate::cache::Fingerprint;
use crate::pipeline::{Pipeline, Source, Stage};
use crate::store::content::InputIndex;
use crate::store::{Record, RunEntry, Store};

/// A stage execution finished on a worker thread.
struct Done {
    index: usize,
    result: Result<Record, StageError>,
}

pub(super) struct Executor<'a> {
    p: &'a Pipeline,
    store: &'a Store,
    jobs: usize,
    needed: &'a [bool],
    forced: &'a [bool],
    progress: MultiProgress,
    /// The record each finished stage produced or reused.
    records: BTreeMap<String, Record>,
    dispatched: Vec<bool>,
    pub outcomes: Vec<Option<Outcome>>,
    pub entries: Vec<Option<RunEntry>>,
    /// A stage failed on bad input (exit 2 rather than 1).
    pub bad_input: bool,
}

impl<'a> Executor<'a> {
    pub fn new(p: &'a Pipeline, store: &'a Store, opts: &RunOptions, needed: &'a [bool], forced: &'a [bool]) -> Self {
        let target = if opts.progress { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        Executor {
            p,
            store,
            jobs: opts.jobs.max(1),
            needed,
            forced,
            progress: MultiProgress::with_draw_target(target),
            records: BTreeMap::new(),
            dispatched: vec![false; p.stages.len()],
            outcomes: vec![None; p.stages.len()],
            entries: vec![None; p.stages.len()],
            bad_input: false,
        }
    }

    /// Runs every needed stage to an outcome.
    pub fn drive(&mut self, index: &mut InputIndex, out: &mut dyn Write) -> Result<(), Error> {
        let (tx, rx) = mpsc::channel::<Done>();
        std::thread::scope(|scope| -> Result<(), Error> {
            let mut running = 0usize;
            loop {
                while self.settle_pass(scope, &tx, &mut running, index, out)? {}
                if running == 0 {
                    return Ok(());
                }
                let done = rx.recv().map_err(|_| Error::Internal("a stage worker ended without a report".into()))?;
                running -= 1;
                match done.result {
                    Ok(record) => self.finish(done.index, Outcome::Ran, Some(record), None, out),
                    Err(e) => {
                        self.bad_input |= matches!(e, StageError::BadInput(_));
                        self.finish(done.index, Outcome::Failed, None, Some(e.to_string()), out)
                    }
                }
            }
        })
    }

    /// One sweep over the stages in order; true when any stage settled or started.
    fn settle_pass<'s>(
        &mut self,
        scope: &'s Scope<'s, '_>,
        tx: &mpsc::Sender<Done>,
        running: &mut usize,
        index: &mut InputIndex,
        out: &mut dyn Write,
    ) -> Result<bool, Error>
    where
        'a: 's,
    {
        let mut progressed = false;
        for i in 0..self.p.stages.len() {
            if !self.needed[i] || self.dispatched[i] || self.outcomes[i].is_some() {
                continue;
            }
            if let Some(why) = self.broken_upstream(i) {
                self.finish(i, Outcome::Skipped, None, Some(why), out);
                progressed = true;
                continue;
            }
            let stage = &self.p.stages[i];
            if *running >= self.jobs || !stage.upstream.iter().all(|&u| self.outcomes[u].is_some()) {
                continue;
            }
            let fp = Fingerprint::of(stage, freshness::input_hashes(stage, &self.records, index)?);
            let key = fp.key();
            if let Some(record) = self.cached(i, &key) {
                self.store.point_latest(&record).map_err(Error::io(&self.store.latest()))?;
                self.finish(i, Outcome::Cached, Some(record), None, out);
            } else {
                self.start(scope, tx, i, fp, key);
                *running += 1;
            }
            progressed = true;
        }
        Ok(progressed)
    }

    /// Why stage `i` cannot run: an upstream stage failed or was skipped.
    fn broken_upstream(&self, i: usize) -> Option<String> {
        let p = self.p;
        p.stages[i].upstream.iter().find_map(|&u| match self.outcomes[u] {
            Some(o @ (Outcome::Failed | Outcome::Skipped)) => {
                Some(format!("upstream {} {}", p.stages[u].name, o.word()))
            }
            _ => None,
        })
    }

    /// The stored record of `key` for stage `i`, unless the stage is forced.
    fn cached(&self, i: usize, key: &str) -> Option<Record> {
        if self.forced[i] {
            return None;
        }
        let mut record = self.store.read_record(key).filter(|r| self.store.has_outputs(r))?;
        record.stage = self.p.stages[i].name.clone();
        Some(record)
    }

    /// Starts stage `i` on a worker thread of `scope`.
    fn start<'s>(&mut self, scope: &'s Scope<'s, '_>, tx: &mpsc::Sender<Done>, i: usize, fp: Fingerprint, key: String)
    where
        'a: 's,
    {
        let (p, store) = (self.p, self.store);
        let stage = &p.stages[i];
        let job = Job { stage, store, workdir: p.dir().to_path_buf(), inputs: self.input_paths(stage), fp, key };
        let bar = self.bar(&stage.name);
        let tx = tx.clone();
        self.dispatched[i] = true;
        scope.spawn(move || {
            let result = job.execute(&bar);
            bar.finish_and_clear();
            let _ = tx.send(Done { index: i, result });
        });
    }

    fn input_paths(&self, stage: &Stage) -> BTreeMap<String, PathBuf> {
        stage
            .inputs
            .iter()
            .map(|(name, source)| {
                let path = match source {
                    Source::Path(p) => p.clone(),
                    Source::Stage { stage: up, output } => {
                        let o = &self.records[up].outputs[output];
                        self.store.object_path(&o.hash, &o.ext)
                    }
                };
                (name.clone(), path)
            })
            .collect()
    }

    fn bar(&self, stage: &str) -> ProgressBar {
        let bar = self.progress.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix:<16} {elapsed:>4} {wide_bar} {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(stage.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }

    /// Records stage `i`'s outcome and prints its line.
    fn finish(
        &mut self,
        i: usize,
        outcome: Outcome,
        record: Option<Record>,
        error: Option<String>,
        out: &mut dyn Write,
    ) {
        let stage = &self.p.stages[i];
        let detail = match (&record, &error) {
            (_, Some(e)) => e.clone(),
            (Some(r), None) if outcome == Outcome::Ran => ran_detail(r),
            _ => String::new(),
        };
        self.progress.suspend(|| {
            let line = format!("{:<8} {:<20} {}", outcome.word(), stage.name, detail);
            let _ = writeln!(out, "{}", line.trim_end()).map(|_| out.flush());
        });
        self.entries[i] = Some(RunEntry {
            stage: stage.name.clone(),
            outcome: outcome.word().to_string(),
            key: record.as_ref().map(|r| r.key.clone()),
            error,
        });
        if let Some(r) = record {
            self.records.insert(stage.name.clone(), r);
        }
        self.outcomes[i] = Some(outcome);
    }
}

/// `0.02s  rows a=1 b=2  (note)` for a stage that ran.
fn ran_detail(r: &Record) -> String {
    let rows: Vec<String> = r.outputs.iter().filter_map(|(n, o)| o.rows.map(|rows| format!("{n}={rows}"))).collect();
    let mut d = format!("{:.2}s", r.duration_s);
    if !rows.is_empty() {
        d.push_str(&format!("  rows {}", rows.join(" ")));
    }
    for note in &r.notes {
        d.push_str(&format!("  ({note})"));
    }
    d
}
