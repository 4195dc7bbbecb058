//! Writes each stage kind's code fingerprint (see `build/fingerprints.rs`) as a
//! constant, so that editing a kind invalidates that kind and what lies below it,
//! and editing a shared module invalidates every kind.

#[path = "build/fingerprints.rs"]
mod fingerprints;

use std::path::PathBuf;

/// Libraries whose version changes the bytes a stage writes (zstd-sys: the C library
/// that compresses every Parquet page).
const LIBRARIES: &[&str] = &["arrow", "parquet", "datafusion", "candle-core", "candle-nn", "usearch", "zstd-sys"];

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let contract = root.join("../crates/dagrun-kind/src");
    let lock = root.join("../Cargo.lock");
    for watched in [&src, &contract, &lock, &root.join("build")] {
        println!("cargo:rerun-if-changed={}", watched.display());
    }
    let lock_text = std::fs::read_to_string(&lock).unwrap_or_else(|e| panic!("{}: {e}", lock.display()));
    let sources = fingerprints::Sources { src: &src, shared: &[&contract] };
    let prints = fingerprints::kind_fingerprints(&sources, &lock_text, LIBRARIES)
        .unwrap_or_else(|e| panic!("fingerprinting {}: {e}", src.display()));
    let mut out = String::from("// Code fingerprints of the stage kinds, one constant per module of src/kinds/.\n");
    for (kind, print) in prints {
        out.push_str(&format!("pub(crate) const {}: &str = {print:?};\n", kind.to_uppercase()));
    }
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("fingerprints.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("{}: {e}", dest.display()));
}
