//! The dagrun engine: runs a YAML-declared DAG of stages over content-hashed
//! artifacts, rerunning a stage only when its params, its code or the content of an
//! input changed.
//!
//! It knows stage kinds only through the contract in `dagrun-kind`; the binary hands
//! it a [`Catalog`] of built-in kinds. Layers point down: `exec` and `query` use
//! `store`, `cache` and `pipeline`; `store` uses `cache` (a record holds its
//! fingerprint); `cache` uses `pipeline`; `pipeline` uses nothing of the engine but
//! this file. `remote` mirrors the store in an object store; `exec` uses it.

pub mod cache;
pub mod exec;
pub mod pipeline;
pub mod query;
pub mod remote;
pub mod store;

use std::path::Path;

pub use pipeline::{Catalog, PipelineError};
pub use remote::RemoteError;
pub use store::StoreError;

/// Everything a dagrun command can fail with. User mistakes carry exit code 2,
/// failed stages 1, failed metric checks 3; i/o trouble is reported with its path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A remote that cannot be used where it is required.
    #[error(transparent)]
    Remote(#[from] RemoteError),
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
    /// An input file or directory that cannot be hashed.
    #[error(transparent)]
    Input(#[from] store::content::HashError),
    /// A broken invariant of the engine: a bug, not the user's doing.
    #[error("internal error: {0}; please report it")]
    Internal(String),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Pipeline(_) | Error::Store(_) | Error::Remote(_) | Error::Usage(_) => 2,
            Error::StagesFailed { bad_input: true, .. } => 2,
            Error::StagesFailed { .. } | Error::Corrupt(_) | Error::Io { .. } | Error::Internal(_) => 1,
            Error::ChecksFailed(_) => 3,
            Error::Input(store::content::HashError::Loop { .. }) => 2,
            Error::Input(store::content::HashError::Io { .. }) => 1,
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
