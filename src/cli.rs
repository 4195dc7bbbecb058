//! Command-line arguments (clap) and their dispatch to the library; the binary's only module.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};
use dagrun::dag::DagFormat;
use dagrun::pipeline::{self, Overrides, Pipeline};
use dagrun::run::RunOptions;
use dagrun::store::Store;
use dagrun::{Error, status};

#[derive(Parser)]
#[command(name = "dagrun", version, about = "Runs a YAML-declared DAG of stages over content-hashed artifacts")]
struct Cli {
    /// The artifact store [default: artifacts/ beside the pipeline file]
    #[arg(long, global = true, env = "DAGRUN_STORE")]
    store: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct PipelineArgs {
    /// The pipeline file
    #[arg(default_value = "pipeline.yaml")]
    pipeline: PathBuf,
    /// Override a param: -P stage.param=value (typed as in YAML)
    #[arg(short = 'P', value_name = "STAGE.PARAM=VALUE")]
    params: Vec<String>,
    /// Override an input path: -I stage.input=PATH
    #[arg(short = 'I', value_name = "STAGE.INPUT=PATH")]
    inputs: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run what is stale (all stages, or the targets and what they need)
    Run {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// Run only these stages and what they need
        #[arg(long = "target", short = 't', value_name = "STAGE")]
        targets: Vec<String>,
        /// Stages run at the same time [default: number of CPUs]
        #[arg(short = 'j', long)]
        jobs: Option<usize>,
        /// Run this stage even when it is fresh (repeatable)
        #[arg(long, value_name = "STAGE")]
        force: Vec<String>,
        /// Print what would run and why; run nothing
        #[arg(long)]
        dry_run: bool,
        /// Wait for another run's lock instead of failing
        #[arg(long)]
        wait: bool,
    },
    /// Show every stage: fresh, stale (and why) or new
    Status {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// Print a JSON array
        #[arg(long)]
        json: bool,
    },
    /// Print the graph
    Dag {
        #[command(flatten)]
        pipeline: PipelineArgs,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Describe the newest output(s) of a stage: path, schema, rows
    Show {
        /// STAGE or STAGE.OUTPUT
        target: String,
        /// The pipeline whose store to read
        #[arg(long, default_value = "pipeline.yaml")]
        pipeline: PathBuf,
        /// How many rows to print
        #[arg(short = 'n', long, default_value_t = 5)]
        rows: usize,
    },
    /// Remove records and objects no recent run or current stage refers to
    Gc {
        #[arg(long, default_value = "pipeline.yaml")]
        pipeline: PathBuf,
        /// Keep what the last N runs used
        #[arg(long, default_value_t = 5)]
        keep_runs: usize,
        #[arg(long)]
        dry_run: bool,
    },
    /// The metrics of the newest execution of every stage
    Metrics {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// One JSON object: {"<stage>.<metric>": number}
        #[arg(long)]
        json: bool,
        /// Compare with a run id or a JSON file of the same shape
        #[arg(long, value_name = "REF")]
        diff: Option<String>,
        /// Exit with code 3 when a check of the pipeline fails
        #[arg(long)]
        check: bool,
    },
    /// Query the newest Parquet artifacts with SQL (tables `<stage>_<output>`)
    Sql {
        query: String,
        #[arg(long, default_value = "pipeline.yaml")]
        pipeline: PathBuf,
        #[arg(long, value_enum, default_value_t = SqlOut::Table)]
        format: SqlOut,
    },
    /// Re-hash every object; quarantine corrupt ones so the next run rebuilds them
    Verify {
        #[arg(long, default_value = "pipeline.yaml")]
        pipeline: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum SqlOut {
    Table,
    Csv,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Mermaid,
    Dot,
}

/// Parses the command line, runs the command, returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match dispatch(&cli) {
        Ok(()) => 0,
        Err(e) => {
            let _ = std::io::stdout().flush();
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn store_for(cli: &Cli, pipeline_file: &Path) -> Store {
    let root = cli.store.clone().unwrap_or_else(|| pipeline_file.parent().unwrap_or(Path::new("")).join("artifacts"));
    // Absolute, so that paths handed to `cmd` stages (run in the pipeline's directory)
    // and printed by `show` hold wherever they are used.
    Store::new(std::path::absolute(&root).unwrap_or(root))
}

fn load(args: &PipelineArgs) -> Result<Pipeline, Error> {
    load_with(args, false)
}

/// `allow_missing_paths` for commands that look at the graph and the store but never read inputs.
fn load_with(args: &PipelineArgs, allow_missing_paths: bool) -> Result<Pipeline, Error> {
    let overrides = Overrides { params: args.params.clone(), inputs: args.inputs.clone(), allow_missing_paths };
    Ok(pipeline::load(&args.pipeline, &overrides)?)
}

fn dispatch(cli: &Cli) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    match &cli.command {
        Command::Run { pipeline, targets, jobs, force, dry_run, wait } => {
            let p = load(pipeline)?;
            let store = store_for(cli, &pipeline.pipeline);
            let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
            let opts = RunOptions {
                jobs,
                force: force.clone(),
                targets: targets.clone(),
                wait: *wait,
                progress: std::io::stderr().is_terminal(),
            };
            if *dry_run {
                dagrun::run::dry_run(&p, &store, &opts, &mut stdout)?;
            } else {
                dagrun::run::run(&p, &store, &opts, &mut stdout)?;
            }
        }
        Command::Status { pipeline, json } => {
            let p = load(pipeline)?;
            let store = store_for(cli, &pipeline.pipeline);
            let mut index = dagrun::hash::InputIndex::load(store.input_index());
            let statuses = status::compute(&p, &store, &mut index, &vec![false; p.stages.len()])?;
            if *json {
                let text = serde_json::to_string_pretty(&statuses).unwrap_or_default();
                let _ = writeln!(stdout, "{text}");
            } else {
                let width = p.stages.iter().map(|s| s.name.len()).max().unwrap_or(0);
                for s in &statuses {
                    let line = format!("{:<width$}  {:<5}  {}", s.stage, s.state.to_string(), s.reasons.join("; "));
                    let _ = writeln!(stdout, "{}", line.trim_end());
                }
            }
        }
        Command::Dag { pipeline, format } => {
            let p = load_with(pipeline, true)?;
            let format = match format {
                Format::Text => DagFormat::Text,
                Format::Mermaid => DagFormat::Mermaid,
                Format::Dot => DagFormat::Dot,
            };
            let _ = write!(stdout, "{}", dagrun::dag::render(&p, format));
        }
        Command::Show { target, pipeline, rows } => {
            let store = store_for(cli, pipeline);
            let _ = write!(stdout, "{}", dagrun::show::show(&store, target, *rows)?);
        }
        Command::Gc { pipeline, keep_runs, dry_run } => {
            let store = store_for(cli, pipeline);
            let r = dagrun::gc::gc(&store, *keep_runs, *dry_run)?;
            let verb = if *dry_run { "would remove" } else { "removed" };
            let _ = writeln!(stdout, "{verb} {} record(s) and {} object(s), {} bytes", r.records, r.objects, r.bytes);
        }
        Command::Metrics { pipeline, json, diff, check } => {
            let p = load_with(pipeline, true)?;
            let store = store_for(cli, &pipeline.pipeline);
            let now = dagrun::metrics::current(&p, &store);
            let before = diff.as_deref().map(|r| dagrun::metrics::reference(&store, r)).transpose()?;
            if *json {
                let _ = writeln!(stdout, "{}", serde_json::to_string_pretty(&now).unwrap_or_default());
            } else {
                let _ = write!(stdout, "{}", dagrun::metrics::table(&now, before.as_ref()));
            }
            if *check {
                let failures = dagrun::checks::failures(&p.checks, &now);
                if !failures.is_empty() {
                    return Err(Error::ChecksFailed(failures));
                }
            }
        }
        Command::Sql { query, pipeline, format } => {
            let store = store_for(cli, pipeline);
            let format = match format {
                SqlOut::Table => dagrun::sql::SqlFormat::Table,
                SqlOut::Csv => dagrun::sql::SqlFormat::Csv,
                SqlOut::Json => dagrun::sql::SqlFormat::Json,
            };
            let _ = write!(stdout, "{}", dagrun::sql::run(&store, query, format)?);
        }
        Command::Verify { pipeline } => {
            let store = store_for(cli, pipeline);
            let (checked, corrupt) = dagrun::verify::verify(&store)?;
            for c in &corrupt {
                let _ = writeln!(
                    stdout,
                    "corrupt {} (content hashes to {}): quarantined, {} record(s) dropped",
                    c.object, c.actual, c.records_dropped
                );
            }
            let _ = writeln!(stdout, "checked {checked} object(s), {} corrupt", corrupt.len());
            if !corrupt.is_empty() {
                return Err(Error::Corrupt(corrupt.len()));
            }
        }
    }
    Ok(())
}
