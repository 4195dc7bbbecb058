//! One function per command: load what it needs, call the engine, print the result.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use dagrun_engine::exec::freshness;
use dagrun_engine::exec::{RemoteUse, RunOptions, SweepPoint};
use dagrun_engine::pipeline::{self, Overrides, Pipeline};
use dagrun_engine::query::dag::DagFormat;
use dagrun_engine::query::sql::SqlFormat;
use dagrun_engine::remote::Remote;
use dagrun_engine::store::Store;
use dagrun_engine::store::content::InputIndex;
use dagrun_engine::{Error, query, store};

use super::{Cli, Command, Format, NamedPipelineArgs, PipelineArgs, RemoteArgs, SqlOut};

pub(super) fn dispatch(cli: &Cli) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match &cli.command {
        Command::Run { pipeline, targets, jobs, force, dry_run, wait, sweeps, remote, no_push, remote_required } => {
            let opts = RunOptions {
                jobs: jobs.unwrap_or_else(default_jobs),
                force: force.clone(),
                targets: targets.clone(),
                wait: *wait,
                progress: std::io::stderr().is_terminal(),
                overrides: Vec::new(),
                remote: remote_use(remote, !*no_push, *remote_required)?,
                pull_only: false,
            };
            run(cli, pipeline, sweeps, opts, *dry_run, &mut out)
        }
        Command::Push { pipeline, stages, remote } => {
            let args = pipeline_args(pipeline);
            let remote = required_remote(remote.remote.as_deref())?;
            let p = load(&args, false)?;
            dagrun_engine::exec::push(&p, &store_for(cli, &args.pipeline), &remote, stages, &mut out)
        }
        Command::Pull { pipeline, stages, remote } => {
            let args = pipeline_args(pipeline);
            let remote = required_remote(remote.remote.as_deref())?;
            let opts = RunOptions {
                jobs: default_jobs(),
                targets: stages.clone(),
                progress: std::io::stderr().is_terminal(),
                remote: Some(RemoteUse { remote: Arc::new(remote), push: false, required: true }),
                pull_only: true,
                ..RunOptions::default()
            };
            run(cli, &args, &[], opts, false, &mut out)
        }
        Command::Status { pipeline, json, remote } => status(cli, pipeline, *json, remote.as_deref(), &mut out),
        Command::Dag { pipeline, format } => {
            let format = match format {
                Format::Text => DagFormat::Text,
                Format::Mermaid => DagFormat::Mermaid,
                Format::Dot => DagFormat::Dot,
            };
            let _ = write!(out, "{}", query::dag::render(&load(pipeline, true)?, format));
            Ok(())
        }
        Command::Show { target, pipeline, rows } => {
            let _ = write!(out, "{}", query::show::show(&store_for(cli, pipeline), target, *rows)?);
            Ok(())
        }
        Command::Gc { pipeline, keep_runs, dry_run } => {
            let r = store::gc::gc(&store_for(cli, pipeline), *keep_runs, *dry_run)?;
            let verb = if *dry_run { "would remove" } else { "removed" };
            let _ = writeln!(out, "{verb} {} record(s) and {} object(s), {} bytes", r.records, r.objects, r.bytes);
            Ok(())
        }
        Command::Exp { pipeline, last, metrics, json, markdown } => {
            exp(cli, pipeline, (*last, metrics), (*json, *markdown), &mut out)
        }
        Command::Report { pipeline, last, output } => report(cli, pipeline, *last, output, &mut out),
        Command::Metrics { pipeline, json, diff, check, markdown } => {
            let format = match (*json, *markdown) {
                (true, _) => MetricsFormat::Json,
                (_, true) => MetricsFormat::Markdown,
                _ => MetricsFormat::Table,
            };
            metrics(cli, pipeline, format, diff.as_deref(), *check, &mut out)
        }
        Command::Sql { query, pipeline, format } => {
            let format = match format {
                SqlOut::Table => SqlFormat::Table,
                SqlOut::Csv => SqlFormat::Csv,
                SqlOut::Json => SqlFormat::Json,
            };
            let _ = write!(out, "{}", query::sql::run(&store_for(cli, pipeline), query, format)?);
            Ok(())
        }
        Command::Verify { pipeline } => verify(&store_for(cli, pipeline), &mut out),
    }
}

fn default_jobs() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The remote a run uses, if one is named.
fn remote_use(args: &RemoteArgs, push: bool, required: bool) -> Result<Option<RemoteUse>, Error> {
    match &args.remote {
        None if required => Err(Error::Usage("--remote-required needs --remote URL or DAGRUN_REMOTE".into())),
        None => Ok(None),
        Some(url) => Ok(Some(RemoteUse { remote: Arc::new(Remote::open(url)?), push, required })),
    }
}

/// The remote of a command that needs one.
fn required_remote(url: Option<&str>) -> Result<Remote, Error> {
    let url = url.filter(|u| !u.is_empty()).map(str::to_string).or_else(|| std::env::var("DAGRUN_REMOTE").ok());
    match url {
        Some(url) => Ok(Remote::open(&url)?),
        None => Err(Error::Usage("no remote: pass --remote URL or set DAGRUN_REMOTE".into())),
    }
}

fn pipeline_args(named: &NamedPipelineArgs) -> PipelineArgs {
    PipelineArgs { pipeline: named.pipeline.clone(), params: named.params.clone(), inputs: named.inputs.clone() }
}

fn store_for(cli: &Cli, pipeline_file: &Path) -> Store {
    let root = cli.store.clone().unwrap_or_else(|| pipeline_file.parent().unwrap_or(Path::new("")).join("artifacts"));
    // Absolute, so that paths handed to `cmd` stages (run in the pipeline's directory)
    // and printed by `show` hold wherever they are used.
    Store::new(std::path::absolute(&root).unwrap_or(root))
}

/// `allow_missing_paths` for commands that look at the graph and the store but never read inputs.
fn load(args: &PipelineArgs, allow_missing_paths: bool) -> Result<Pipeline, Error> {
    let overrides = Overrides {
        params: args.params.clone(),
        inputs: args.inputs.clone(),
        allow_missing_paths,
        ..Overrides::default()
    };
    Ok(pipeline::load(&args.pipeline, &overrides, crate::catalog())?)
}

/// `dagrun run`, once, or once per point of a sweep: every point is loaded and checked
/// before the first one runs, so a bad value stops the sweep before anything runs.
fn run(
    cli: &Cli,
    args: &PipelineArgs,
    sweeps: &[String],
    opts: RunOptions,
    dry_run: bool,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let points = pipeline::overrides::sweep_points(sweeps)?;
    let mut loaded = Vec::with_capacity(points.len());
    for point in &points {
        let overrides = Overrides {
            params: args.params.clone(),
            sweep: point.clone(),
            inputs: args.inputs.clone(),
            allow_missing_paths: false,
        };
        let p = pipeline::load(&args.pipeline, &overrides, crate::catalog())?;
        // The run log records every override, the point's last (it wins over -P).
        loaded.push((p, args.params.iter().chain(point).cloned().collect::<Vec<_>>()));
    }
    let store = store_for(cli, &args.pipeline);
    if !dry_run {
        let points: Vec<SweepPoint> = loaded
            .iter()
            .zip(&points)
            .map(|((p, overrides), point)| SweepPoint {
                pipeline: p,
                overrides: overrides.clone(),
                name: point.join(" "),
            })
            .collect();
        return dagrun_engine::exec::run_sweep(&points, &store, &opts, out).map(|_| ());
    }
    for (k, ((p, params), point)) in loaded.iter().zip(&points).enumerate() {
        if !sweeps.is_empty() {
            let _ = writeln!(out, "== point {}/{}: {}", k + 1, points.len(), point.join(" "));
        }
        dagrun_engine::exec::dry_run(p, &store, &RunOptions { overrides: params.clone(), ..opts.clone() }, out)?;
    }
    Ok(())
}

/// `dagrun status`: local unless `--remote` is given, then each stage whose key is
/// known also says whether the remote has it.
fn status(cli: &Cli, args: &PipelineArgs, json: bool, remote: Option<&str>, out: &mut dyn Write) -> Result<(), Error> {
    let p = load(args, false)?;
    let store = store_for(cli, &args.pipeline);
    let mut index = InputIndex::load(store.input_index());
    let mut statuses = freshness::compute(&p, &store, &mut index, &vec![false; p.stages.len()])?;
    if let Some(url) = remote {
        let remote = required_remote(Some(url))?;
        for s in &mut statuses {
            if let Some(key) = &s.key {
                let has = remote.has_record(key)?;
                s.reasons.push(if has { "on the remote" } else { "not on the remote" }.to_string());
            }
        }
    }
    if json {
        let _ = writeln!(out, "{}", serde_json::to_string_pretty(&statuses).unwrap_or_default());
        return Ok(());
    }
    let width = p.stages.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for s in &statuses {
        let line = format!("{:<width$}  {:<5}  {}", s.stage, s.state.to_string(), s.reasons.join("; "));
        let _ = writeln!(out, "{}", line.trim_end());
    }
    Ok(())
}

/// `dagrun exp`: the last `n` runs with the `extra` metrics, as JSON, Markdown or text.
fn exp(
    cli: &Cli,
    args: &PipelineArgs,
    (n, extra): (usize, &[String]),
    (json, markdown): (bool, bool),
    out: &mut dyn Write,
) -> Result<(), Error> {
    let (p, store) = (load(args, true)?, store_for(cli, &args.pipeline));
    query::exp::check_asked(&p, extra)?;
    let rows = query::exp::rows(&p, &store, &query::exp::last_runs(&p, &store, n)?, extra);
    for m in extra.iter().filter(|m| rows.iter().all(|r| !r.metrics.contains_key(*m))) {
        eprintln!("note: no run shown has metric `{m}`");
    }
    let text = if json {
        format!("{}\n", serde_json::to_string_pretty(&rows).unwrap_or_default())
    } else {
        query::exp::table(&rows, markdown)
    };
    let _ = write!(out, "{text}");
    Ok(())
}

/// `dagrun report`: writes the page whole (never a half-written file) and says where.
fn report(cli: &Cli, args: &PipelineArgs, n: usize, output: &Path, out: &mut dyn Write) -> Result<(), Error> {
    let html = dagrun_report::render(&load(args, false)?, &store_for(cli, &args.pipeline), n)?;
    store::write_atomic(output, &html.into_bytes()).map_err(Error::io(output))?;
    let _ = writeln!(out, "wrote {}", output.display());
    Ok(())
}

/// How `dagrun metrics` prints.
enum MetricsFormat {
    Table,
    Json,
    Markdown,
}

fn metrics(
    cli: &Cli,
    args: &PipelineArgs,
    format: MetricsFormat,
    diff: Option<&str>,
    check: bool,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let p = load(args, true)?;
    let store = store_for(cli, &args.pipeline);
    let now = query::metrics::current(&p, &store);
    let before = diff.map(|r| query::metrics::reference(&store, r)).transpose()?;
    let text = match format {
        MetricsFormat::Json => format!("{}\n", serde_json::to_string_pretty(&now).unwrap_or_default()),
        MetricsFormat::Markdown => query::metrics::markdown(&now, before.as_ref()),
        MetricsFormat::Table => query::metrics::table(&now, before.as_ref()),
    };
    let _ = write!(out, "{text}");
    let failures = if check { pipeline::checks::failures(&p.checks, &now) } else { Vec::new() };
    if failures.is_empty() { Ok(()) } else { Err(Error::ChecksFailed(failures)) }
}

fn verify(store: &Store, out: &mut dyn Write) -> Result<(), Error> {
    let (checked, corrupt) = store::verify::verify(store)?;
    for c in &corrupt {
        let _ = writeln!(
            out,
            "corrupt {} (content hashes to {}): quarantined, {} record(s) dropped",
            c.object, c.actual, c.records_dropped
        );
    }
    let _ = writeln!(out, "checked {checked} object(s), {} corrupt", corrupt.len());
    if corrupt.is_empty() { Ok(()) } else { Err(Error::Corrupt(corrupt.len())) }
}
