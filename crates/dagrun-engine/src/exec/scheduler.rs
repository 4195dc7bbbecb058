//! The scheduler of a run, or of every point of a sweep at once: settles each stage
//! whose upstream has settled (skip, cache hit, or start it on a worker thread, at
//! most `jobs` at once over all points) and prints one line per stage as it ends.
//!
//! Points share stages by key: a stage whose key another point is computing waits
//! for it and is then a cache hit, so what sits above a swept param runs once.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::Scope;
use std::time::Duration;

use dagrun_kind::StageError;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::job::{Job, JobEnd, Settled};
use super::{Outcome, RemoteUse, RunOptions, freshness};
use crate::Error;
use crate::cache::Fingerprint;
use crate::pipeline::{Pipeline, Source, Stage};
use crate::store::content::InputIndex;
use crate::store::{Record, RunEntry, Store};

/// A stage execution finished on a worker thread.
struct Done {
    point: usize,
    index: usize,
    key: String,
    end: JobEnd,
}

/// One pipeline of the run (a sweep has one per point) and how far it has got.
pub(super) struct Point<'a> {
    /// Its place in the sweep.
    pub number: usize,
    pub p: &'a Pipeline,
    pub needed: Vec<bool>,
    forced: Vec<bool>,
    /// `k/n` in a sweep: the prefix of its progress bars.
    label: Option<String>,
    /// The record each finished stage produced or reused.
    records: BTreeMap<String, Record>,
    dispatched: Vec<bool>,
    /// Each stage's fingerprint and key, computed once its upstream has settled (they
    /// cannot change after), so a stage waiting for a worker is not hashed again on
    /// every pass.
    keys: Vec<Option<(Fingerprint, String)>>,
    pub outcomes: Vec<Option<Outcome>>,
    pub entries: Vec<Option<RunEntry>>,
    /// A stage failed on bad input (exit 2 rather than 1).
    pub bad_input: bool,
    /// In a sweep, the point's lines wait here until it ends, so points never interleave.
    pub lines: Vec<u8>,
    reported: bool,
}

impl<'a> Point<'a> {
    pub fn new(
        number: usize,
        p: &'a Pipeline,
        (needed, forced): (Vec<bool>, Vec<bool>),
        label: Option<String>,
    ) -> Self {
        let n = p.stages.len();
        Point {
            number,
            p,
            needed,
            forced,
            label,
            records: BTreeMap::new(),
            dispatched: vec![false; n],
            keys: (0..n).map(|_| None).collect(),
            outcomes: vec![None; n],
            entries: vec![None; n],
            bad_input: false,
            lines: Vec::new(),
            reported: false,
        }
    }

    /// The record of each stage that ran or was reused.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.records.values()
    }

    fn settled(&self) -> bool {
        (0..self.p.stages.len()).all(|i| !self.needed[i] || self.outcomes[i].is_some())
    }

    /// Why stage `i` cannot run: an upstream stage failed or was skipped.
    fn broken_upstream(&self, i: usize) -> Option<String> {
        self.p.stages[i].upstream.iter().find_map(|&u| match self.outcomes[u] {
            Some(o @ (Outcome::Failed | Outcome::Skipped)) => {
                Some(format!("upstream {} {}", self.p.stages[u].name, o.word()))
            }
            _ => None,
        })
    }

    /// Records stage `i`'s outcome and adds its line to `lines`.
    fn finish(&mut self, i: usize, (outcome, record, error): (Outcome, Option<Record>, Option<String>)) {
        let stage = &self.p.stages[i];
        let detail = match (&record, &error) {
            (_, Some(e)) => e.clone(),
            (Some(r), None) if outcome == Outcome::Ran => ran_detail(r),
            _ => String::new(),
        };
        let line = format!("{:<8} {:<20} {}", outcome.word(), stage.name, detail);
        let _ = writeln!(self.lines, "{}", line.trim_end());
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

    fn input_paths(&self, stage: &Stage, store: &Store) -> BTreeMap<String, PathBuf> {
        stage
            .inputs
            .iter()
            .map(|(name, source)| {
                let path = match source {
                    Source::Path(p) => p.clone(),
                    Source::Stage { stage: up, output } => {
                        let o = &self.records[up].outputs[output];
                        store.object_path(&o.hash, &o.ext)
                    }
                };
                (name.clone(), path)
            })
            .collect()
    }
}

pub(super) struct Executor<'a> {
    store: &'a Store,
    jobs: usize,
    progress: MultiProgress,
    pub points: Vec<Point<'a>>,
    /// Keys a worker is computing now.
    running: BTreeSet<String>,
    /// Keys computed by this invocation: a forced stage of a later point reuses them.
    computed: BTreeSet<String>,
    /// Keys that failed in this invocation, with the error (and whether it was bad
    /// input): another point needing one fails the same way instead of running it again.
    failed: BTreeMap<String, (String, bool)>,
    remote: Option<&'a RemoteUse>,
    pull_only: bool,
    /// `--remote-required`: the remote answered once, before the first job started.
    remote_checked: bool,
}

impl<'a> Executor<'a> {
    pub fn new(store: &'a Store, opts: &'a RunOptions, points: Vec<Point<'a>>) -> Self {
        let target = if opts.progress { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        Executor {
            store,
            jobs: opts.jobs.max(1),
            progress: MultiProgress::with_draw_target(target),
            points,
            running: BTreeSet::new(),
            computed: BTreeSet::new(),
            failed: BTreeMap::new(),
            remote: opts.remote.as_ref(),
            pull_only: opts.pull_only,
            remote_checked: false,
        }
    }

    /// Runs every needed stage of every point to an outcome. With one point its lines
    /// go to `out` as they happen; `ended` is called once per point as it settles.
    pub fn drive(
        &mut self,
        index: &mut InputIndex,
        out: &mut dyn Write,
        ended: &mut dyn FnMut(&mut Point, &mut dyn Write),
    ) -> Result<(), Error> {
        let (tx, rx) = mpsc::channel::<Done>();
        let stream = self.points.len() == 1;
        std::thread::scope(|scope| -> Result<(), Error> {
            loop {
                while self.settle_pass(scope, &tx, index)? {
                    self.flush(stream, out);
                }
                for point in self.points.iter_mut().filter(|pt| !pt.reported && pt.settled()) {
                    point.reported = true;
                    self.progress.suspend(|| ended(point, out));
                }
                if self.running.is_empty() {
                    return Ok(());
                }
                let done = rx.recv().map_err(|_| Error::Internal("a stage worker ended without a report".into()))?;
                self.running.remove(&done.key);
                let point = &mut self.points[done.point];
                for w in &done.end.warnings {
                    let _ = writeln!(point.lines, "warning: {w}");
                }
                match done.end.settled {
                    Ok(Settled::Ran(record)) => {
                        self.computed.insert(done.key);
                        point.finish(done.index, (Outcome::Ran, Some(record), None))
                    }
                    Ok(Settled::Pulled(record)) => point.finish(done.index, (Outcome::Pulled, Some(record), None)),
                    Ok(Settled::Reused(record)) => point.finish(done.index, (Outcome::Cached, Some(record), None)),
                    Ok(Settled::Missing) => {
                        let why = "not on the remote".to_string();
                        point.finish(done.index, (Outcome::Skipped, None, Some(why)))
                    }
                    Err(e) => {
                        let bad_input = matches!(e, StageError::BadInput(_));
                        point.bad_input |= bad_input;
                        self.failed.insert(done.key, (e.to_string(), bad_input));
                        point.finish(done.index, (Outcome::Failed, None, Some(e.to_string())))
                    }
                }
                self.flush(stream, out);
            }
        })
    }

    /// One sweep over the points and their stages in order; true when any stage
    /// settled or started.
    fn settle_pass<'s>(
        &mut self,
        scope: &'s Scope<'s, '_>,
        tx: &mpsc::Sender<Done>,
        index: &mut InputIndex,
    ) -> Result<bool, Error>
    where
        'a: 's,
    {
        let mut progressed = false;
        for k in 0..self.points.len() {
            for i in 0..self.points[k].p.stages.len() {
                progressed |= self.settle(scope, tx, (k, i), index)?;
            }
        }
        Ok(progressed)
    }

    /// Settles or starts stage `i` of point `k` if it can; true when it did.
    fn settle<'s>(
        &mut self,
        scope: &'s Scope<'s, '_>,
        tx: &mpsc::Sender<Done>,
        (k, i): (usize, usize),
        index: &mut InputIndex,
    ) -> Result<bool, Error>
    where
        'a: 's,
    {
        let point = &self.points[k];
        if !point.needed[i] || point.dispatched[i] || point.outcomes[i].is_some() {
            return Ok(false);
        }
        if let Some(why) = point.broken_upstream(i) {
            self.points[k].finish(i, (Outcome::Skipped, None, Some(why)));
            return Ok(true);
        }
        let p = point.p;
        let stage = &p.stages[i];
        if !stage.upstream.iter().all(|&u| point.outcomes[u].is_some()) {
            return Ok(false);
        }
        let key = match &point.keys[i] {
            Some((_, key)) => key.clone(),
            None => {
                let fp = Fingerprint::of(stage, freshness::input_hashes(stage, &point.records, index)?);
                let key = fp.key();
                self.points[k].keys[i] = Some((fp, key.clone()));
                key
            }
        };
        if self.running.contains(&key) {
            // Another point is computing the same key: this one reuses it when it ends.
            return Ok(false);
        }
        if let Some((error, bad_input)) = self.failed.get(&key).cloned() {
            let point = &mut self.points[k];
            point.bad_input |= bad_input;
            point.finish(i, (Outcome::Failed, None, Some(error)));
            return Ok(true);
        }
        if let Some(record) = self.cached(k, i, &key) {
            self.store.point_latest(&record).map_err(Error::io(&self.store.latest()))?;
            self.points[k].finish(i, (Outcome::Cached, Some(record), None));
            return Ok(true);
        }
        if self.running.len() >= self.jobs {
            return Ok(false);
        }
        self.check_remote()?;
        let (fp, key) =
            self.points[k].keys[i].take().ok_or_else(|| Error::Internal(format!("stage `{}`: no key", stage.name)))?;
        self.start(scope, tx, (k, i), fp, key);
        Ok(true)
    }

    /// With `--remote-required`, one request before the first job starts: a remote
    /// that cannot be used stops the run before anything runs (exit 2). A run with
    /// nothing to compute makes no request.
    fn check_remote(&mut self) -> Result<(), Error> {
        match self.remote {
            Some(ru) if ru.required && !self.remote_checked => {
                ru.remote.check()?;
                self.remote_checked = true;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The stored record of `key` for stage `i` of point `k`, unless the stage is
    /// forced and this invocation has not computed it yet.
    fn cached(&self, k: usize, i: usize, key: &str) -> Option<Record> {
        let point = &self.points[k];
        if point.forced[i] && !self.computed.contains(key) {
            return None;
        }
        let mut record = self.store.read_record(key).filter(|r| self.store.has_outputs(r))?;
        record.stage = point.p.stages[i].name.clone();
        Some(record)
    }

    /// Starts stage `i` of point `k` on a worker thread of `scope`.
    fn start<'s>(
        &mut self,
        scope: &'s Scope<'s, '_>,
        tx: &mpsc::Sender<Done>,
        (k, i): (usize, usize),
        fp: Fingerprint,
        key: String,
    ) where
        'a: 's,
    {
        let store = self.store;
        let point = &self.points[k];
        let stage = &point.p.stages[i];
        let inputs = point.input_paths(stage, store);
        let job = Job {
            stage,
            store,
            workdir: point.p.dir().to_path_buf(),
            inputs,
            fp,
            key: key.clone(),
            forced: point.forced[i],
            remote: self.remote,
            pull_only: self.pull_only,
        };
        let prefix = match &point.label {
            Some(l) => format!("{l} {}", stage.name),
            None => stage.name.clone(),
        };
        let bar = self.bar(prefix);
        let tx = tx.clone();
        self.points[k].dispatched[i] = true;
        self.running.insert(key.clone());
        scope.spawn(move || {
            let end = job.execute(&bar);
            bar.finish_and_clear();
            let _ = tx.send(Done { point: k, index: i, key, end });
        });
    }

    /// With one point, prints the lines of the stages that just ended (a sweep's
    /// points print theirs whole when they end).
    fn flush(&mut self, stream: bool, out: &mut dyn Write) {
        if !stream {
            return;
        }
        let lines = std::mem::take(&mut self.points[0].lines);
        self.progress.suspend(|| {
            let _ = out.write_all(&lines).and_then(|_| out.flush());
        });
    }

    fn bar(&self, prefix: String) -> ProgressBar {
        let bar = self.progress.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix:<16} {elapsed:>4} {wide_bar} {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(prefix);
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
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
