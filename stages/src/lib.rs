//! The recommender stage kinds of dagrun: plain functions over Arrow/Parquet files.
//!
//! The engine knows each kind only through its [`KindSpec`] (the contract crate
//! `dagrun-kind`). Two layers: shared modules (`schema` of the tables kinds exchange,
//! `table` and its page writers for Parquet, `model` for YouTubeDNN, `ranking` for
//! HR/NDCG, `rng`, `hashing`) and `kinds`, one module per kind. A kind uses shared
//! modules only, never another kind, so its code fingerprint (build.rs) is its own
//! files plus every shared module; `tests::kinds_never_import_kinds` holds it to that.

pub mod hashing;
pub mod kinds;
pub mod model;
mod pages;
pub mod ranking;
pub mod rng;
pub mod schema;
pub mod table;

mod fingerprints {
    include!(concat!(env!("OUT_DIR"), "/fingerprints.rs"));
}

use dagrun_kind::KindSpec;

/// All kinds this crate provides, in the order `dagrun` lists them.
pub fn catalog() -> &'static [KindSpec] {
    static CATALOG: [KindSpec; 10] = [
        kinds::synth::SPEC,
        kinds::ingest::SPEC,
        kinds::split_last_click::SPEC,
        kinds::encode::SPEC,
        kinds::sample::SPEC,
        kinds::youtube_dnn::SPEC,
        kinds::export::SPEC,
        kinds::ensemble::SPEC,
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

    /// The layer rule the fingerprints rest on: a kind's code reaches only its own
    /// files and the shared modules, so no file of a kind may name another kind.
    #[test]
    fn kinds_never_import_kinds() {
        let kinds_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/kinds");
        let names: Vec<String> = std::fs::read_dir(&kinds_dir)
            .unwrap()
            .flatten()
            .filter_map(|e| e.path().file_stem().map(|s| s.to_string_lossy().into_owned()))
            .filter(|n| n != "mod")
            .collect();
        assert!(names.len() >= catalog().len(), "{names:?}");
        let mut offences = Vec::new();
        for entry in std::fs::read_dir(&kinds_dir).unwrap().flatten() {
            let own = entry.path().file_stem().unwrap().to_string_lossy().into_owned();
            for file in rust_files(&entry.path()) {
                let text = std::fs::read_to_string(&file).unwrap();
                for other in names.iter().filter(|n| **n != own) {
                    for pattern in [format!("kinds::{other}"), format!("super::{other}::")] {
                        if text.contains(&pattern) {
                            offences.push(format!("{} names `{pattern}`", file.display()));
                        }
                    }
                }
            }
        }
        assert!(offences.is_empty(), "a kind imports another kind: {offences:#?}");
    }

    fn rust_files(path: &std::path::Path) -> Vec<std::path::PathBuf> {
        if path.is_file() {
            return vec![path.to_path_buf()];
        }
        std::fs::read_dir(path).unwrap().flatten().flat_map(|e| rust_files(&e.path())).collect()
    }
}
