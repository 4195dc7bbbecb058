//! A pipeline: `pipeline.yaml` read, checked and ordered. Every mistake is reported
//! with the file, line and column it comes from; the checked [`Pipeline`] is what
//! every command works on.
//!
//! `yaml` is the file's shape, `load` the passes that check it, `overrides` the
//! command line's changes, `graph` the order, `kind` the kinds a stage can have,
//! `checks` the metric gates.

pub mod checks;
mod graph;
pub mod kind;
mod load;
pub mod overrides;
mod yaml;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use kind::{Catalog, Kind};
pub use load::{load, parse};
pub use overrides::Overrides;

/// A user mistake in the pipeline or in a command-line override (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("cannot read {file}: {source}")]
    Read { file: String, source: std::io::Error },
    /// A mistake at a place in the pipeline file.
    #[error("{file}:{line}:{column}: {message}")]
    At { file: String, line: u64, column: u64, message: String },
    /// A mistake in a `-P`/`-I` override or a target on the command line.
    #[error("{0}")]
    CommandLine(String),
}

/// Where a stage reads one of its inputs from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An output of another stage of the pipeline.
    Stage { stage: String, output: String },
    /// A file or directory outside the store, hashed by content.
    Path(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Stage { stage, output } => write!(f, "{stage}.{output}"),
            Source::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// One output a stage writes: `<name>.<ext>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub name: String,
    pub ext: String,
}

/// One checked stage.
#[derive(Clone)]
pub struct Stage {
    pub name: String,
    pub kind: Kind,
    pub description: Option<String>,
    /// Input name → where it comes from, sorted by input name.
    pub inputs: BTreeMap<String, Source>,
    /// Params with every default filled in (a JSON object).
    pub params: serde_json::Value,
    pub outputs: Vec<Output>,
    /// The shell command of a `cmd` stage.
    pub command: Option<String>,
    /// Indices of the stages this one reads from.
    pub upstream: Vec<usize>,
}

/// A checked pipeline: stages in topological order (upstream before downstream).
pub struct Pipeline {
    pub file: PathBuf,
    pub stages: Vec<Stage>,
    /// Metric thresholds such as `evaluate.hr@50 >= 0.33`.
    pub checks: Vec<checks::Check>,
}

impl Pipeline {
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }

    /// The directory relative paths in the pipeline are resolved against.
    pub fn dir(&self) -> &Path {
        match self.file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }

    /// Indices of the stages that read (directly or not) from stage `i`.
    pub fn descendants(&self, i: usize) -> Vec<usize> {
        let mut marked = vec![false; self.stages.len()];
        marked[i] = true;
        let mut out = Vec::new();
        // Topological order: one forward sweep reaches every descendant.
        for (j, s) in self.stages.iter().enumerate().skip(i + 1) {
            if s.upstream.iter().any(|&u| marked[u]) {
                marked[j] = true;
                out.push(j);
            }
        }
        out
    }

    /// `targets` and everything they need, as a mask over the stages.
    pub fn needed_by(&self, targets: &[usize]) -> Vec<bool> {
        let mut needed = vec![false; self.stages.len()];
        for &t in targets {
            needed[t] = true;
        }
        for j in (0..self.stages.len()).rev() {
            if needed[j] {
                for &u in &self.stages[j].upstream {
                    needed[u] = true;
                }
            }
        }
        needed
    }
}
