//! Command-line arguments (clap) and their dispatch to the engine, one function per
//! command in `commands`.

mod commands;

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "dagrun", version, about = "Runs a YAML-declared DAG of stages over content-hashed artifacts")]
pub(crate) struct Cli {
    /// The artifact store [default: artifacts/ beside the pipeline file]
    #[arg(long, global = true, env = "DAGRUN_STORE")]
    pub store: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args)]
pub(crate) struct PipelineArgs {
    /// The pipeline file
    #[arg(default_value = "pipeline.yaml")]
    pub pipeline: PathBuf,
    /// Override a param: -P stage.param=value (typed as in YAML)
    #[arg(short = 'P', value_name = "STAGE.PARAM=VALUE")]
    pub params: Vec<String>,
    /// Override an input path: -I stage.input=PATH
    #[arg(short = 'I', value_name = "STAGE.INPUT=PATH")]
    pub inputs: Vec<String>,
}

/// Where the shared cache is.
#[derive(clap::Args)]
pub(crate) struct RemoteArgs {
    /// A shared store: s3://bucket/prefix, gs://…, az://container/prefix or file:///path;
    /// credentials come from the AWS_* / GOOGLE_* / AZURE_* variables
    #[arg(long, value_name = "URL", env = "DAGRUN_REMOTE", hide_env_values = true)]
    pub remote: Option<String>,
}

/// The pipeline of `push` and `pull`, whose stage names are the positional arguments.
#[derive(clap::Args)]
pub(crate) struct NamedPipelineArgs {
    /// The pipeline file
    #[arg(long, default_value = "pipeline.yaml")]
    pub pipeline: PathBuf,
    /// Override a param: -P stage.param=value (typed as in YAML)
    #[arg(short = 'P', value_name = "STAGE.PARAM=VALUE")]
    pub params: Vec<String>,
    /// Override an input path: -I stage.input=PATH
    #[arg(short = 'I', value_name = "STAGE.INPUT=PATH")]
    pub inputs: Vec<String>,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run what is stale (all stages, or the targets and what they need)
    Run {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// Run only these stages and what they need
        #[arg(long = "target", short = 't', value_name = "STAGE")]
        targets: Vec<String>,
        /// Stages run at the same time [default: number of CPUs]
        #[arg(short = 'j', long, value_parser = at_least_one)]
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
        /// Sweep a param: -S stage.param=v1,v2,… (repeatable: several make a grid);
        /// each point is a run of its own, sharing every stage whose key is the same
        #[arg(short = 'S', value_name = "STAGE.PARAM=V1,V2,…")]
        sweeps: Vec<String>,
        #[command(flatten)]
        remote: RemoteArgs,
        /// With a remote: look stages up there, but upload nothing
        #[arg(long)]
        no_push: bool,
        /// With a remote: stop with exit 2 when it cannot be used, instead of going on locally
        #[arg(long)]
        remote_required: bool,
    },
    /// Upload the current records of these stages (default: all) and their objects to the remote
    Push {
        #[command(flatten)]
        pipeline: NamedPipelineArgs,
        stages: Vec<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Download these stages (default: all) and what they need from the remote; computes nothing
    Pull {
        #[command(flatten)]
        pipeline: NamedPipelineArgs,
        stages: Vec<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Show every stage: fresh, stale (and why) or new
    Status {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// Print a JSON array
        #[arg(long)]
        json: bool,
        /// Also say which stages the remote has (this URL, or DAGRUN_REMOTE's)
        #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "")]
        remote: Option<String>,
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
        /// A GitHub-flavoured table, for a pull-request comment
        #[arg(long, conflicts_with = "json")]
        markdown: bool,
    },
    /// The last runs side by side: differing params, checked metrics, seconds
    Exp {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// How many runs, newest first
        #[arg(short = 'n', default_value_t = 10, value_parser = at_least_one)]
        last: usize,
        /// Also show this metric (repeatable): --metric stage.metric
        #[arg(long = "metric", value_name = "STAGE.METRIC")]
        metrics: Vec<String>,
        /// An array of {"run", "params", "metrics"} objects
        #[arg(long, conflicts_with = "markdown")]
        json: bool,
        /// A GitHub-flavoured table, for a pull-request comment
        #[arg(long)]
        markdown: bool,
    },
    /// One self-contained HTML page: the DAG, training loss, metrics against K, the runs
    Report {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// How many runs, newest first
        #[arg(short = 'n', default_value_t = 10, value_parser = at_least_one)]
        last: usize,
        /// Where to write it
        #[arg(short = 'o', long = "output", default_value = "report.html")]
        output: PathBuf,
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
pub(crate) enum SqlOut {
    Table,
    Csv,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    Text,
    Mermaid,
    Dot,
}

/// A count of at least 1 (`-j`, `-n` of runs): 0 would do nothing, or was taken as 1.
fn at_least_one(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        parsed => parsed.map_err(|e| e.to_string()),
    }
}

/// Parses the command line, runs the command, returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match commands::dispatch(&cli) {
        Ok(()) => 0,
        Err(e) => {
            let _ = std::io::stdout().flush();
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}
