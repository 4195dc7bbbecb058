//! `dagrun run`: executes stale stages in topological order, independent ones in
//! parallel, with early cutoff (recompute, then compare: a stage whose outputs come
//! out byte-identical leaves everything below it a cache hit).

use std::collections::BTreeMap;
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dagrun_stages::{Progress, Report, StageCtx, StageError};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::Error;
use crate::hash::InputIndex;
use crate::kind::Kind;
use crate::pipeline::{Pipeline, Source, Stage};
use crate::status::{self, State};
use crate::store::{Record, RunEntry, RunLog, Store};

/// What the user asked `dagrun run` for.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stages run at the same time (at least 1).
    pub jobs: usize,
    /// Stages to run even when fresh.
    pub force: Vec<String>,
    /// Run only these stages and what they need; empty means all.
    pub targets: Vec<String>,
    /// Wait for another run's lock instead of failing.
    pub wait: bool,
    /// Draw progress bars (on a terminal).
    pub progress: bool,
}

/// How each stage of a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ran,
    Cached,
    Failed,
    Skipped,
}

impl Outcome {
    fn word(self) -> &'static str {
        match self {
            Outcome::Ran => "ran",
            Outcome::Cached => "cached",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }
}

/// Turns stage names from the command line into indices.
pub fn stage_indices(p: &Pipeline, names: &[String], what: &str) -> Result<Vec<usize>, Error> {
    names
        .iter()
        .map(|n| {
            p.index_of(n).ok_or_else(|| {
                let known: Vec<&str> = p.stages.iter().map(|s| s.name.as_str()).collect();
                Error::Usage(format!("{what} `{n}`: no such stage; stages: {}", known.join(", ")))
            })
        })
        .collect()
}

/// Which stages the run covers (targets and what they need) and which are forced.
fn selection(p: &Pipeline, opts: &RunOptions) -> Result<(Vec<bool>, Vec<bool>), Error> {
    let targets = stage_indices(p, &opts.targets, "target")?;
    let needed = if targets.is_empty() { vec![true; p.stages.len()] } else { p.needed_by(&targets) };
    let mut forced = vec![false; p.stages.len()];
    for i in stage_indices(p, &opts.force, "--force")? {
        forced[i] = true;
    }
    Ok((needed, forced))
}

/// Runs the pipeline; writes one line per stage to `out` and returns the run log.
pub fn run(p: &Pipeline, store: &Store, opts: &RunOptions, out: &mut dyn Write) -> Result<RunLog, Error> {
    let (needed, forced) = selection(p, opts)?;
    let _lock = crate::lock::acquire(&store.root, "run", opts.wait)?;
    // Anything in tmp/ is left over from a killed run: never a result, safe to drop.
    let _ = std::fs::remove_dir_all(store.tmp());
    let started = Instant::now();
    let started_unix = crate::now_secs();
    let mut index = InputIndex::load(store.input_index());
    let mut ex = Executor::new(p, store, opts, &needed, &forced);
    let result = ex.drive(&mut index, out);
    index.save().map_err(Error::io(&store.input_index()))?;
    result?;

    let log = RunLog {
        id: run_id(),
        pipeline: p.file.display().to_string(),
        started: started_unix,
        duration_s: started.elapsed().as_secs_f64(),
        stages: ex.entries.iter().flatten().cloned().collect(),
    };
    store.write_run(&log).map_err(Error::io(&store.runs()))?;
    let count = |o: Outcome| ex.outcomes.iter().filter(|x| **x == Some(o)).count();
    let _ = writeln!(
        out,
        "{} stage(s): {} ran, {} cached, {} failed, {} skipped in {:.2}s (run {})",
        ex.outcomes.iter().flatten().count(),
        count(Outcome::Ran),
        count(Outcome::Cached),
        count(Outcome::Failed),
        count(Outcome::Skipped),
        log.duration_s,
        log.id
    );
    let failed = count(Outcome::Failed);
    if failed > 0 {
        return Err(Error::StagesFailed { count: failed, bad_input: ex.bad_input });
    }
    // Checks whose metrics all come from stages this run covered.
    let covered = |c: &crate::checks::Check| {
        [&c.lhs, &c.rhs].into_iter().all(|o| match o {
            crate::checks::Operand::Metric(m) => {
                m.split_once('.').and_then(|(s, _)| p.index_of(s)).is_some_and(|i| needed[i])
            }
            crate::checks::Operand::Number(_) => true,
        })
    };
    let metrics = crate::metrics::current(p, store);
    let mut failures = Vec::new();
    for c in p.checks.iter().filter(|c| covered(c)) {
        match c.holds(&metrics) {
            Ok(()) => writeln!(out, "check ok     {c}"),
            Err(why) => {
                let line = writeln!(out, "check FAILED {why}");
                failures.push(why);
                line
            }
        }
        .ok();
    }
    if !failures.is_empty() {
        return Err(Error::ChecksFailed(failures));
    }
    Ok(log)
}

/// Sortable and unique per process: milliseconds since the epoch, then the pid.
fn run_id() -> String {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    format!("{ms:013}-{}", std::process::id())
}

/// Prints what `run` would do and why; runs nothing, takes no lock.
pub fn dry_run(p: &Pipeline, store: &Store, opts: &RunOptions, out: &mut dyn Write) -> Result<(), Error> {
    let (needed, forced) = selection(p, opts)?;
    let mut index = InputIndex::load(store.input_index());
    let statuses = status::compute(p, store, &mut index, &forced)?;
    for (s, st) in statuses.iter().enumerate().filter(|(i, _)| needed[*i]).map(|(i, st)| (&p.stages[i], st)) {
        let verb = match st.state {
            State::Fresh => "skip",
            State::Stale | State::New => "run",
        };
        let why = match (st.state, st.reasons.is_empty()) {
            (State::Fresh, _) => "fresh".to_string(),
            (State::New, true) => "never run".to_string(),
            _ => st.reasons.join("; "),
        };
        let _ = writeln!(out, "{verb:<5} {:<20} {why}", s.name);
    }
    Ok(())
}

/// A stage execution finished on a worker thread.
struct Done {
    index: usize,
    result: Result<Record, StageError>,
}

struct Executor<'a> {
    p: &'a Pipeline,
    store: &'a Store,
    jobs: usize,
    needed: &'a [bool],
    forced: &'a [bool],
    progress: MultiProgress,
    /// The record each finished stage produced or reused.
    records: BTreeMap<String, Record>,
    outcomes: Vec<Option<Outcome>>,
    entries: Vec<Option<RunEntry>>,
    bad_input: bool,
}

impl<'a> Executor<'a> {
    fn new(p: &'a Pipeline, store: &'a Store, opts: &RunOptions, needed: &'a [bool], forced: &'a [bool]) -> Self {
        let target = if opts.progress { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        Executor {
            p,
            store,
            jobs: opts.jobs.max(1),
            needed,
            forced,
            progress: MultiProgress::with_draw_target(target),
            records: BTreeMap::new(),
            outcomes: vec![None; p.stages.len()],
            entries: vec![None; p.stages.len()],
            bad_input: false,
        }
    }

    fn drive(&mut self, index: &mut InputIndex, out: &mut dyn Write) -> Result<(), Error> {
        let (p, store) = (self.p, self.store);
        let (tx, rx) = mpsc::channel::<Done>();
        let mut running = 0usize;
        let mut dispatched = vec![false; self.p.stages.len()];
        std::thread::scope(|scope| -> Result<(), Error> {
            loop {
                // Settle every stage whose upstream is settled: skip, hit the cache, or start it.
                let mut progressed = true;
                while progressed {
                    progressed = false;
                    for (i, stage) in p.stages.iter().enumerate() {
                        if !self.needed[i] || dispatched[i] || self.outcomes[i].is_some() {
                            continue;
                        }
                        if let Some(&u) = stage
                            .upstream
                            .iter()
                            .find(|&&u| matches!(self.outcomes[u], Some(Outcome::Failed | Outcome::Skipped)))
                        {
                            let why = format!(
                                "upstream {} {}",
                                self.p.stages[u].name,
                                self.outcomes[u].map(Outcome::word).unwrap_or("")
                            );
                            self.finish(i, Outcome::Skipped, None, Some(why), out);
                            progressed = true;
                            continue;
                        }
                        if !stage.upstream.iter().all(|&u| self.outcomes[u].is_some()) {
                            continue;
                        }
                        if running >= self.jobs {
                            continue;
                        }
                        let hashes = match status::input_hashes(stage, &self.records, index)? {
                            Ok(h) => h,
                            Err(_) => {
                                unreachable!("every upstream stage has settled with a record")
                            }
                        };
                        let fp = status::fingerprint_of(stage, hashes);
                        let key = fp.key();
                        if !self.forced[i]
                            && let Some(record) = self.store.read_record(&key).filter(|r| self.store.has_outputs(r))
                        {
                            let mut record = record;
                            record.stage = stage.name.clone();
                            self.store.point_latest(&record).map_err(Error::io(&self.store.latest()))?;
                            self.finish(i, Outcome::Cached, Some(record), None, out);
                            progressed = true;
                            continue;
                        }
                        let inputs = self.input_paths(stage);
                        let bar = self.bar(&stage.name);
                        let job = Job { stage, store, workdir: p.dir().to_path_buf(), inputs, fp, key };
                        let tx = tx.clone();
                        dispatched[i] = true;
                        running += 1;
                        scope.spawn(move || {
                            let result = job.execute(&bar);
                            bar.finish_and_clear();
                            let _ = tx.send(Done { index: i, result });
                        });
                    }
                }
                if running == 0 {
                    return Ok(());
                }
                let done = rx.recv().expect("a worker always reports before it ends");
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
            (Some(r), None) if outcome == Outcome::Ran => {
                let rows: Vec<String> =
                    r.outputs.iter().filter_map(|(n, o)| o.rows.map(|rows| format!("{n}={rows}"))).collect();
                let mut d = format!("{:.2}s", r.duration_s);
                if !rows.is_empty() {
                    d.push_str(&format!("  rows {}", rows.join(" ")));
                }
                for note in &r.notes {
                    d.push_str(&format!("  ({note})"));
                }
                d
            }
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

/// One stage execution, moved onto a worker thread.
struct Job<'a> {
    stage: &'a Stage,
    store: &'a Store,
    workdir: PathBuf,
    inputs: BTreeMap<String, PathBuf>,
    fp: crate::fingerprint::Fingerprint,
    key: String,
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
    fn execute(self, bar: &ProgressBar) -> Result<Record, StageError> {
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
            sources: status::sources_of(self.stage),
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

    fn call(&self, tmp: &std::path::Path, bar: &ProgressBar) -> Result<Report, StageError> {
        match self.stage.kind {
            Kind::Cmd => crate::cmd::run(self.stage, &self.inputs, tmp, &self.workdir),
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
