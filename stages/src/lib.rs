//! The recommender stage kinds of dagrun: plain functions over Arrow/Parquet files.
//!
//! The engine knows each kind only through its [`KindSpec`]: its name, its declared
//! inputs and outputs, how to check its params, a code fingerprint and a `run`
//! function. Nothing here knows about caching, the store or the DAG.

pub mod clicks;
mod delta;
pub mod fxhash;
pub mod kinds;
pub mod metrics;
mod pages;
pub mod params;
pub mod rng;
pub mod table;
pub mod youtube_dnn;

mod fingerprints {
    include!(concat!(env!("OUT_DIR"), "/fingerprints.rs"));
}

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use params::ParamError;

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
    pub outputs: &'static [OutputSpec],
    /// blake3 of the kind's own source files, the shared modules and the versions
    /// of the libraries that write its outputs (computed by build.rs).
    pub fingerprint: &'static str,
    /// Checks params against the kind's param struct and fills in the defaults.
    pub params: fn(serde_json::Value) -> Result<serde_json::Value, ParamError>,
    pub run: fn(&StageCtx) -> Result<Report, StageError>,
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
    /// The data the user gave is wrong: names the file, the place and the fix.
    #[error("{0}")]
    BadInput(String),
    /// The stage could not finish.
    #[error("{0}")]
    Failed(String),
}

impl From<std::io::Error> for StageError {
    fn from(e: std::io::Error) -> Self {
        StageError::Failed(format!("i/o error: {e}"))
    }
}

/// All kinds this crate provides, in the order `dagrun` lists them.
pub fn catalog() -> &'static [KindSpec] {
    static CATALOG: [KindSpec; 9] = [
        kinds::synth::SPEC,
        kinds::ingest::SPEC,
        kinds::split_last_click::SPEC,
        kinds::encode::SPEC,
        kinds::sample::SPEC,
        kinds::youtube_dnn::SPEC,
        kinds::export::SPEC,
        kinds::evaluate::SPEC,
        kinds::popularity::SPEC,
    ];
    &CATALOG
}

/// The kind called `name`, if this crate has it.
pub fn kind(name: &str) -> Option<&'static KindSpec> {
    catalog().iter().find(|k| k.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_build_time_fingerprint() {
        let mut seen = std::collections::HashSet::new();
        for k in catalog() {
            assert_eq!(k.fingerprint.len(), 64, "{}: {:?}", k.name, k.fingerprint);
            assert!(k.fingerprint.chars().all(|c| c.is_ascii_hexdigit()));
            assert!(seen.insert(k.fingerprint), "{} shares its fingerprint", k.name);
            assert_eq!(kind(k.name).map(|x| x.name), Some(k.name));
        }
        assert!(kind("cmd").is_none(), "cmd belongs to the engine");
    }

    #[test]
    fn every_kind_fills_its_defaults() {
        for k in catalog() {
            let filled = (k.params)(serde_json::json!({})).unwrap();
            assert!(filled.is_object(), "{}", k.name);
            assert_eq!((k.params)(filled.clone()).unwrap(), filled, "{}: defaults are a fixed point", k.name);
        }
    }
}
