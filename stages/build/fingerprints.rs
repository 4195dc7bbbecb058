//! The code fingerprint of each stage kind: blake3 over every source file the kind's
//! code can reach and the locked versions of the libraries that shape its bytes.
//!
//! What a kind can reach follows from the layout, which a test holds the crate to:
//! its own entry of `src/kinds/` (a file `x.rs` or a folder `x/`), every shared
//! module (all of `src/` outside `kinds/`), and the contract crate's sources. Used by
//! build.rs, and by this crate's tests on trees of their own.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Where the sources a fingerprint covers live.
pub struct Sources<'a> {
    /// The stage crate's `src/`.
    pub src: &'a Path,
    /// Other source folders every kind reaches (the contract crate's `src/`).
    pub shared: &'a [&'a Path],
}

/// Kind module name (the entry of `src/kinds/`) → fingerprint, hex.
pub fn kind_fingerprints(sources: &Sources, lock: &str, libraries: &[&str]) -> io::Result<BTreeMap<String, String>> {
    let kinds = sources.src.join("kinds");
    let mut shared = blake3::Hasher::new();
    for file in files_under(sources.src)?.into_iter().filter(|f| !f.starts_with(&kinds)) {
        hash_file(&mut shared, sources.src, &file)?;
    }
    for dir in sources.shared {
        shared.update(b"shared\0");
        for file in files_under(dir)? {
            hash_file(&mut shared, dir, &file)?;
        }
    }
    let versions = locked_versions(lock).map_err(io::Error::other)?;
    for lib in libraries {
        let v = versions.get(*lib).map(|v| v.join(",")).unwrap_or_default();
        shared.update(format!("{lib}={v}\n").as_bytes());
    }
    let shared = shared.finalize();
    let mut out = BTreeMap::new();
    for entry in files_in(&kinds)? {
        let Some(stem) = entry.file_stem().and_then(|s| s.to_str()).map(str::to_string) else {
            continue;
        };
        if stem == "mod" {
            continue;
        }
        let mut h = blake3::Hasher::new();
        h.update(shared.as_bytes());
        for file in files_under(&entry)? {
            hash_file(&mut h, sources.src, &file)?;
        }
        out.insert(stem, h.finalize().to_hex().to_string());
    }
    Ok(out)
}

/// Package name → every version Cargo.lock pins for it, sorted (a lock may hold two
/// versions of one crate; both can reach a kind).
pub fn locked_versions(lock: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    let doc: toml::Table = lock.parse().map_err(|e| format!("Cargo.lock: {e}"))?;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for package in doc.get("package").and_then(|p| p.as_array()).into_iter().flatten() {
        let field = |k: &str| package.get(k).and_then(|v| v.as_str()).map(str::to_string);
        if let (Some(name), Some(version)) = (field("name"), field("version")) {
            out.entry(name).or_default().push(version);
        }
    }
    for versions in out.values_mut() {
        versions.sort();
    }
    Ok(out)
}

/// Files and folders directly in `dir`, sorted; none when it does not exist.
fn files_in(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = match fs::read_dir(dir) {
        Ok(d) => d.map(|e| e.map(|e| e.path())).collect::<io::Result<Vec<_>>>()?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    out.sort();
    Ok(out)
}

/// Every file below `path` (or `path` itself), sorted by path.
fn files_under(path: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(path) {
        let entry = entry.map_err(io::Error::from)?;
        if entry.file_type().is_file() {
            files.push(entry.into_path());
        }
    }
    files.sort();
    Ok(files)
}

fn hash_file(h: &mut blake3::Hasher, base: &Path, file: &Path) -> io::Result<()> {
    let rel = file.strip_prefix(base).unwrap_or(file).to_string_lossy().replace('\\', "/");
    h.update(rel.as_bytes());
    h.update(&[0]);
    h.update(&fs::read(file)?);
    h.update(&[0]);
    Ok(())
}
