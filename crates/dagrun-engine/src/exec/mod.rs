//! `dagrun run`: executes stale stages in topological order, independent ones in
//! parallel, with early cutoff (recompute, then compare: a stage whose outputs come
//! out byte-identical leaves everything below it a cache hit).
//!
//! `freshness` says what is stale and why, `scheduler` settles the stages of a run,
//! `job` executes one, `cmd_kind` is the engine's own kind for external programs.

pub mod cmd_kind;
pub mod freshness;
mod job;
mod scheduler;

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use crate::Error;
use crate::pipeline::Pipeline;
use crate::pipeline::checks::{Check, Operand};
use crate::query::metrics::Metrics;
use crate::remote::{Published, Remote};
use crate::store::content::InputIndex;
use crate::store::lock::Hold;
use crate::store::{RunLog, Store};
use freshness::State;
use scheduler::Executor;

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
    /// The `-P` overrides, recorded in the run log.
    pub overrides: Vec<String>,
    /// Where stale stages are looked up before they are computed, and pushed after.
    pub remote: Option<RemoteUse>,
    /// `dagrun pull`: stages come from the remote or not at all.
    pub pull_only: bool,
}

/// A remote and how a run uses it.
#[derive(Debug, Clone)]
pub struct RemoteUse {
    pub remote: Arc<Remote>,
    /// Upload what this run computes (`--no-push` turns it off).
    pub push: bool,
    /// A remote that fails stops the run with exit 2 instead of a warning.
    pub required: bool,
}

/// How each stage of a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ran,
    Pulled,
    Cached,
    Failed,
    Skipped,
}

impl Outcome {
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Ran => "ran",
            Outcome::Pulled => "pulled",
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
    let point = SweepPoint { pipeline: p, overrides: opts.overrides.clone(), name: String::new() };
    let mut logs = run_sweep(&[point], store, opts, out)?;
    logs.pop().ok_or_else(|| Error::Internal("a run without a log".into()))
}

/// One point of a sweep: the pipeline loaded with its overrides.
pub struct SweepPoint<'a> {
    pub pipeline: &'a Pipeline,
    /// Every override it was loaded with, recorded in its run log.
    pub overrides: Vec<String>,
    /// What its header line names (the swept values).
    pub name: String,
}

/// Runs every point of a sweep in one scheduler: stages with the same key run once, independent stages of all points
/// share `opts.jobs`. Each point gets its own run log, summary line and checks; in a
/// sweep its lines are printed together, under a header, when it ends. A failed point
/// does not stop the others; the first error is returned once all have ended.
pub fn run_sweep(
    points: &[SweepPoint],
    store: &Store,
    opts: &RunOptions,
    out: &mut dyn Write,
) -> Result<Vec<RunLog>, Error> {
    let sweep = points.len() > 1;
    let mut selected = Vec::with_capacity(points.len());
    for (k, point) in points.iter().enumerate() {
        let label = sweep.then(|| format!("{}/{}", k + 1, points.len()));
        selected.push(scheduler::Point::new(k, point.pipeline, selection(point.pipeline, opts)?, label));
    }
    let _lock = crate::store::lock::acquire(&store.root, "run", Hold::Shared, opts.wait)?;
    let started = Instant::now();
    let started_unix = crate::now_secs();
    // Ids are taken now, in point order, so that `exp` lists a sweep's points in order.
    let ids: Vec<String> = (0..points.len()).map(|k| run_id(sweep.then_some(k))).collect();
    let mut index = InputIndex::load(store.input_index());
    let mut ex = Executor::new(store, opts, selected);
    let mut logs: Vec<Option<RunLog>> = vec![None; points.len()];
    let mut first_error: Option<Error> = None;
    let mut ended = |point: &mut scheduler::Point, out: &mut dyn Write| {
        let k = point.number;
        if sweep {
            let _ = writeln!(out, "== point {}/{}: {}", k + 1, points.len(), points[k].name);
            let _ = out.write_all(&point.lines);
        }
        let log = RunLog {
            id: ids[k].clone(),
            pipeline: point.p.file.display().to_string(),
            overrides: points[k].overrides.clone(),
            started: started_unix,
            duration_s: started.elapsed().as_secs_f64(),
            stages: point.entries.iter().flatten().cloned().collect(),
        };
        publish_run(opts, point, &log, out);
        let result = end_point(point, store, (&log, opts.pull_only), out);
        logs[k] = Some(log);
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    };
    let result = ex.drive(&mut index, out, &mut ended);
    index.save().map_err(Error::io(&store.input_index()))?;
    result?;
    // Points end in any order; `latest/` (what `metrics` and DuckDB read) shows the last one.
    if let Some(last) = ex.points.last().filter(|_| sweep) {
        for record in last.records() {
            store.point_latest(record).map_err(Error::io(&store.latest()))?;
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(logs.into_iter().flatten().collect()),
    }
}

/// Uploads the run log of a point that computed or pulled something, so the remote
/// holds the runs as the local store does (a no-op run makes no request).
fn publish_run(opts: &RunOptions, point: &scheduler::Point, log: &RunLog, out: &mut dyn Write) {
    let Some(ru) = opts.remote.as_ref().filter(|ru| ru.push && !opts.pull_only && ru.remote.usable()) else {
        return;
    };
    if !point.outcomes.iter().any(|o| matches!(o, Some(Outcome::Ran | Outcome::Pulled))) {
        return;
    }
    if let Err(e) = ru.remote.publish_run(log) {
        let _ = writeln!(out, "warning: {e}");
    }
}

/// Writes a point's run log, prints its summary line and runs its checks. A pull is
/// no run: it writes no log and checks nothing (what it did not find has no metrics).
fn end_point(
    point: &scheduler::Point,
    store: &Store,
    (log, pull_only): (&RunLog, bool),
    out: &mut dyn Write,
) -> Result<(), Error> {
    if !pull_only {
        store.write_run(log).map_err(Error::io(&store.runs()))?;
    }
    let count = |o: Outcome| point.outcomes.iter().filter(|x| **x == Some(o)).count();
    let pulled = match count(Outcome::Pulled) {
        0 => String::new(),
        n => format!(" {n} pulled,"),
    };
    let run = if pull_only { String::new() } else { format!(" (run {})", log.id) };
    let _ = writeln!(
        out,
        "{} stage(s): {} ran,{pulled} {} cached, {} failed, {} skipped in {:.2}s{run}",
        point.outcomes.iter().flatten().count(),
        count(Outcome::Ran),
        count(Outcome::Cached),
        count(Outcome::Failed),
        count(Outcome::Skipped),
        log.duration_s,
    );
    let failed = count(Outcome::Failed);
    if failed > 0 {
        return Err(Error::StagesFailed { count: failed, bad_input: point.bad_input });
    }
    if pull_only {
        return Ok(());
    }
    // The point's own records: in a sweep, `latest/` may show another point's.
    let metrics =
        point.records().flat_map(|r| r.metrics.iter().map(|(k, v)| (format!("{}.{k}", r.stage), *v))).collect();
    run_checks(point.p, &metrics, &point.needed, out)
}

/// Prints the checks whose metrics all come from stages this run covered; a check
/// that fails, or names a metric its stage did not produce, fails the run (exit 3).
fn run_checks(p: &Pipeline, metrics: &Metrics, needed: &[bool], out: &mut dyn Write) -> Result<(), Error> {
    let covered = |c: &Check| {
        [&c.lhs, &c.rhs].into_iter().all(|o| match o {
            Operand::Metric(m) => m.split_once('.').and_then(|(s, _)| p.index_of(s)).is_some_and(|i| needed[i]),
            Operand::Number(_) => true,
        })
    };
    let mut failures = Vec::new();
    for c in p.checks.iter().filter(|c| covered(c)) {
        match c.holds(metrics) {
            Ok(()) => writeln!(out, "check ok     {c}"),
            Err(why) => {
                let line = writeln!(out, "check FAILED {why}");
                failures.push(why);
                line
            }
        }
        .ok();
    }
    if failures.is_empty() { Ok(()) } else { Err(Error::ChecksFailed(failures)) }
}

/// Sortable and unique per process: milliseconds since the epoch, then the pid, then
/// (in a sweep, whose points start in the same millisecond) the point's number.
fn run_id(point: Option<usize>) -> String {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    match point {
        Some(k) => format!("{ms:013}-{}-{:03}", std::process::id(), k + 1),
        None => format!("{ms:013}-{}", std::process::id()),
    }
}

/// `dagrun push`: uploads the current record of each selected stage (objects first),
/// one line per stage; a stage that is not fresh has nothing to push.
pub fn push(
    p: &Pipeline,
    store: &Store,
    remote: &Remote,
    targets: &[String],
    out: &mut dyn Write,
) -> Result<(), Error> {
    let (needed, forced) = selection(p, &RunOptions { targets: targets.to_vec(), ..RunOptions::default() })?;
    let mut index = InputIndex::load(store.input_index());
    let statuses = freshness::compute(p, store, &mut index, &forced)?;
    for st in statuses.iter().zip(&needed).filter(|(_, n)| **n).map(|(st, _)| st) {
        let (word, detail) = match &st.record {
            None => ("skipped", format!("{}: run it first", st.state)),
            Some(r) => match remote.publish(r, store)? {
                Published::New => ("pushed", String::new()),
                Published::Same => ("present", String::new()),
                Published::Differs(outputs) => {
                    ("differs", format!("the remote's record of this key has other {}", outputs.join(", ")))
                }
            },
        };
        let line = format!("{word:<8} {:<20} {detail}", st.stage);
        let _ = writeln!(out, "{}", line.trim_end());
    }
    Ok(())
}

/// Prints what `run` would do and why; runs nothing, takes no lock.
pub fn dry_run(p: &Pipeline, store: &Store, opts: &RunOptions, out: &mut dyn Write) -> Result<(), Error> {
    let (needed, forced) = selection(p, opts)?;
    let mut index = InputIndex::load(store.input_index());
    let statuses = freshness::compute(p, store, &mut index, &forced)?;
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
