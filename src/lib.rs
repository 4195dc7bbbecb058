//! dagrun: runs a YAML-declared DAG of stages over content-hashed artifacts, rerunning
//! a stage only when its params, its code or the content of an input changed.
//!
//! The command line (`main.rs`) is a thin layer over the functions of these modules.

pub mod checks;
pub mod cmd;
pub mod dag;
pub mod fingerprint;
pub mod gc;
pub mod hash;
pub mod kind;
pub mod lock;
pub mod metrics;
pub mod overrides;
pub mod pipeline;
pub mod run;
pub mod show;
pub mod sql;
pub mod status;
pub mod store;
pub mod verify;

use std::path::Path;

pub use pipeline::PipelineError;
pub use store::StoreError;

/// Everything a dagrun command can fail with. User mistakes carry exit code 2,
/// failed stages 1, failed metric checks 3; i/o trouble is reported with its path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A wrong argument on the command line that is not about the pipeline.
    #[error("{0}")]
    Usage(String),
    #[error("{count} stage(s) failed")]
    StagesFailed { count: usize, bad_input: bool },
    #[error("{} check(s) failed: {}", .0.len(), .0.join("; "))]
    ChecksFailed(Vec<String>),
    #[error("{0} corrupt object(s) quarantined; the next run rebuilds them")]
    Corrupt(usize),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Pipeline(_) | Error::Store(_) | Error::Usage(_) => 2,
            Error::StagesFailed { bad_input: true, .. } => 2,
            Error::StagesFailed { .. } | Error::Corrupt(_) | Error::Io { .. } => 1,
            Error::ChecksFailed(_) => 3,
        }
    }

    /// For `map_err`: an i/o error at `path`.
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io { path: path.display().to_string(), source }
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
