//! The stage contract of dagrun: what the engine knows of a stage kind and what a
//! kind gets from the engine. Nothing here knows about caching, the store, the DAG
//! or recommenders; the engine and the stage crates both depend on it, never on
//! each other.

pub mod params;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use params::{ParamError, Params};

/// The file format of one output; the engine names stored objects with its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Parquet,
    Safetensors,
    Usearch,
    Json,
}

impl Format {
    pub fn ext(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Safetensors => "safetensors",
            Format::Usearch => "usearch",
            Format::Json => "json",
        }
    }
}

/// One declared output of a kind: the stage writes `<out_dir>/<name>.<ext>`.
#[derive(Debug, Clone, Copy)]
pub struct OutputSpec {
    pub name: &'static str,
    pub format: Format,
}

/// Everything the engine needs to know about a stage kind.
pub struct KindSpec {
    pub name: &'static str,
    pub summary: &'static str,
    /// Input names; every one must be given by the pipeline.
    pub inputs: &'static [&'static str],
    /// Inputs a pipeline may give or leave out (e.g. a validation table).
    pub optional_inputs: &'static [&'static str],
    pub outputs: &'static [OutputSpec],
    /// blake3 of every source file the kind's code can reach and of the versions of
    /// the libraries that shape its outputs (computed at build time).
    pub fingerprint: &'static str,
    /// Checks params against the kind's param struct, validates their values and
    /// fills in the defaults; called when the pipeline loads, before anything runs.
    pub params: fn(serde_json::Value) -> Result<serde_json::Value, ParamError>,
    /// The optional inputs that the checked params ask for or rule out, each with the
    /// param that decides; the pipeline is refused when it loads if one asked for is
    /// not given, or one ruled out is.
    pub needs: fn(&serde_json::Value) -> Vec<Need>,
    pub run: fn(&StageCtx) -> Result<Report, StageError>,
}

/// An optional input that a param's value asks for, or rules out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    pub param: &'static str,
    pub input: &'static str,
    pub wants: Wants,
}

/// What a param's value wants of an optional input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wants {
    /// The input must be given (e.g. `genres: true` reads the item genres).
    Given,
    /// The input must be left out, because the value makes the stage ignore it (e.g.
    /// an ensemble's third member when `members` is 2): given, it would be a silent
    /// mistake.
    LeftOut,
}

impl Need {
    pub fn given(param: &'static str, input: &'static str) -> Need {
        Need { param, input, wants: Wants::Given }
    }

    pub fn left_out(param: &'static str, input: &'static str) -> Need {
        Need { param, input, wants: Wants::LeftOut }
    }
}

/// `needs` of a kind whose params never ask for an input or rule one out.
pub fn needs_nothing(_: &serde_json::Value) -> Vec<Need> {
    Vec::new()
}

/// Progress reporting from a running stage; the engine draws it.
pub trait Progress: Sync {
    fn set_length(&self, total: u64);
    fn set_position(&self, done: u64);
    fn set_message(&self, message: &str);
}

/// A progress handle that shows nothing (tests, benchmarks).
pub struct NoProgress;

impl Progress for NoProgress {
    fn set_length(&self, _: u64) {}
    fn set_position(&self, _: u64) {}
    fn set_message(&self, _: &str) {}
}

/// What a stage gets: input paths by name, its checked params, a directory to write into.
pub struct StageCtx<'a> {
    pub inputs: &'a BTreeMap<String, PathBuf>,
    pub params: &'a serde_json::Value,
    pub out_dir: &'a Path,
    pub progress: &'a dyn Progress,
}

impl StageCtx<'_> {
    /// The path of a declared input; the engine guarantees every declared input is present.
    pub fn input(&self, name: &str) -> Result<&Path, StageError> {
        self.inputs
            .get(name)
            .map(PathBuf::as_path)
            .ok_or_else(|| StageError::Failed(format!("input `{name}` was not given")))
    }

    /// The path of an optional input, None when the pipeline left it out.
    pub fn optional_input(&self, name: &str) -> Option<&Path> {
        self.inputs.get(name).map(PathBuf::as_path)
    }

    /// Where to write output `name`.
    pub fn output(&self, spec: &OutputSpec) -> PathBuf {
        self.out_dir.join(format!("{}.{}", spec.name, spec.format.ext()))
    }
}

/// A small report of what a stage did; it ends up in the stage's record.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    /// Rows written per output.
    pub rows: BTreeMap<String, u64>,
    pub metrics: BTreeMap<String, f64>,
    /// One-line remarks for the user (dropped users, fallbacks taken).
    pub notes: Vec<String>,
}

/// Why a stage did not produce its outputs.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The data the user gave is wrong: names the file, the place and the fix (exit 2).
    #[error("{0}")]
    BadInput(String),
    /// The stage could not finish (exit 1).
    #[error("{0}")]
    Failed(String),
}

impl StageError {
    /// Bad data at `row` (0-based, as DuckDB's `rowid`) of `column` in the table at `file`.
    pub fn bad_value(file: &Path, column: &str, row: usize, problem: impl std::fmt::Display) -> StageError {
        StageError::BadInput(format!("{}: column `{column}`, row {row}: {problem}", file.display()))
    }
}

impl From<std::io::Error> for StageError {
    fn from(e: std::io::Error) -> Self {
        StageError::Failed(format!("i/o error: {e}"))
    }
}
