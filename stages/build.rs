//! Computes each stage kind's code fingerprint from its own source files, the shared
//! modules of this crate and the versions of the libraries that shape its outputs,
//! so that editing one kind invalidates that kind and nothing else.

use std::fs;
use std::path::{Path, PathBuf};

/// Libraries whose version changes the bytes a stage writes (zstd-sys: the C library
/// that compresses every Parquet page).
const LIBRARIES: &[&str] = &["arrow", "parquet", "datafusion", "candle-core", "candle-nn", "usearch", "zstd-sys"];

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let src = root.join("src");
    let kinds = src.join("kinds");
    println!("cargo:rerun-if-changed=src");
    let lock = root.join("../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());

    // Shared: everything in src/ outside src/kinds/, plus library versions.
    let mut shared = blake3::Hasher::new();
    for file in files_under(&src) {
        if !file.starts_with(&kinds) {
            hash_file(&mut shared, &src, &file);
        }
    }
    let lock_text = fs::read_to_string(&lock).unwrap_or_default();
    for lib in LIBRARIES {
        shared.update(format!("{lib}={}\n", locked_version(&lock_text, lib)).as_bytes());
    }
    let shared = shared.finalize();

    // One fingerprint per entry of src/kinds/: a file `x.rs` or a directory `x/`.
    let mut out = String::from("// Code fingerprints of the stage kinds, one constant per module of src/kinds/.\n");
    let mut entries: Vec<PathBuf> =
        fs::read_dir(&kinds).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    entries.sort();
    for entry in entries {
        let Some(stem) = entry.file_stem().and_then(|s| s.to_str()).map(str::to_string) else {
            continue;
        };
        if stem == "mod" {
            continue;
        }
        let mut h = blake3::Hasher::new();
        h.update(shared.as_bytes());
        for file in files_under(&entry) {
            hash_file(&mut h, &src, &file);
        }
        out.push_str(&format!(
            "pub(crate) const {}: &str = {:?};\n",
            stem.to_uppercase(),
            h.finalize().to_hex().to_string()
        ));
    }
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("fingerprints.rs");
    fs::write(dest, out).unwrap();
}

fn files_under(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut files = Vec::new();
    if let Ok(dir) = fs::read_dir(path) {
        for e in dir.flatten() {
            files.extend(files_under(&e.path()));
        }
    }
    files.sort();
    files
}

fn hash_file(h: &mut blake3::Hasher, base: &Path, file: &Path) {
    let rel = file.strip_prefix(base).unwrap_or(file).to_string_lossy().replace('\\', "/");
    h.update(rel.as_bytes());
    h.update(&[0]);
    h.update(&fs::read(file).unwrap_or_default());
    h.update(&[0]);
}

/// The version Cargo.lock pins for `name`, or "" when it is not locked.
fn locked_version(lock: &str, name: &str) -> String {
    let needle = format!("name = \"{name}\"\n");
    lock.split("[[package]]")
        .find(|block| block.trim_start().starts_with(needle.trim_end()) || block.contains(&format!("\n{needle}")))
        .and_then(|block| block.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_default()
}
