//! The code fingerprints build.rs computes, on source trees of the tests' own: what
//! stales which kind, and pinned values for a fixed tree.

#[path = "../build/fingerprints.rs"]
mod fingerprints;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use fingerprints::{Sources, kind_fingerprints, locked_versions};

const LOCK: &str = r#"
version = 4

[[package]]
name = "arrow"
version = "59.3.2"

[[package]]
name = "arrow"
version = "58.0.0"

[[package]]
name = "parquet"
version = "59.3.2"

[[package]]
name = "serde"
version = "1.0.228"
"#;

const LIBRARIES: &[&str] = &["arrow", "parquet"];

/// A stage crate with a shared module, a one-file kind and a folder kind, and a contract crate.
fn tree(root: &Path) {
    let files = [
        ("src/lib.rs", "pub mod kinds;\npub mod shared;\n"),
        ("src/shared.rs", "pub fn helper() -> u32 { 1 }\n"),
        ("src/kinds/mod.rs", "pub mod alpha;\npub mod beta;\n"),
        ("src/kinds/alpha.rs", "pub fn run() -> u32 { crate::shared::helper() }\n"),
        ("src/kinds/beta/mod.rs", "mod inner;\npub fn run() -> u32 { inner::two() }\n"),
        ("src/kinds/beta/inner.rs", "pub fn two() -> u32 { 2 }\n"),
        ("contract/lib.rs", "pub struct KindSpec;\n"),
    ];
    for (path, text) in files {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
}

fn prints(root: &Path, lock: &str) -> BTreeMap<String, String> {
    let contract = root.join("contract");
    kind_fingerprints(&Sources { src: &root.join("src"), shared: &[&contract] }, lock, LIBRARIES).unwrap()
}

fn append(root: &Path, file: &str, text: &str) {
    let path = root.join(file);
    let mut old = fs::read_to_string(&path).unwrap();
    old.push_str(text);
    fs::write(path, old).unwrap();
}

/// Which kinds' fingerprints differ between `a` and `b`.
fn changed(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    a.keys().filter(|k| a[*k] != b[*k]).cloned().collect()
}

#[test]
fn a_fixed_tree_has_pinned_fingerprints() {
    let d = tempfile::tempdir().unwrap();
    tree(d.path());
    let p = prints(d.path(), LOCK);
    assert_eq!(p.keys().collect::<Vec<_>>(), ["alpha", "beta"]);
    assert_eq!(p["alpha"], "32ebae7ec8084db8c5dd9b772129b8217b847e85c22dae9457401b2e60b55bf4");
    assert_eq!(p["beta"], "bc70364c50714da6d931442a6f1a299dd91c5a41c088d936c3dca7f81ac49a9a");
}

#[test]
fn editing_a_shared_module_stales_every_kind() {
    let d = tempfile::tempdir().unwrap();
    tree(d.path());
    let before = prints(d.path(), LOCK);
    append(d.path(), "src/shared.rs", "// a comment\n");
    assert_eq!(changed(&before, &prints(d.path(), LOCK)), ["alpha", "beta"]);
}

#[test]
fn editing_the_contract_stales_every_kind() {
    let d = tempfile::tempdir().unwrap();
    tree(d.path());
    let before = prints(d.path(), LOCK);
    append(d.path(), "contract/lib.rs", "// a comment\n");
    assert_eq!(changed(&before, &prints(d.path(), LOCK)), ["alpha", "beta"]);
}

#[test]
fn editing_a_kind_stales_that_kind_only() {
    let d = tempfile::tempdir().unwrap();
    tree(d.path());
    let before = prints(d.path(), LOCK);
    append(d.path(), "src/kinds/alpha.rs", "// a comment\n");
    let after_alpha = prints(d.path(), LOCK);
    assert_eq!(changed(&before, &after_alpha), ["alpha"]);
    append(d.path(), "src/kinds/beta/inner.rs", "// a comment\n");
    assert_eq!(
        changed(&after_alpha, &prints(d.path(), LOCK)),
        ["beta"],
        "a file deep in a kind's folder is the kind's"
    );
}

#[test]
fn a_library_version_stales_every_kind_and_other_crates_none() {
    let d = tempfile::tempdir().unwrap();
    tree(d.path());
    let before = prints(d.path(), LOCK);
    let other = LOCK.replace("1.0.228", "1.0.229");
    assert!(changed(&before, &prints(d.path(), &other)).is_empty(), "serde is not a library that shapes bytes");
    let older = LOCK.replace("58.0.0", "57.0.0");
    assert_eq!(changed(&before, &prints(d.path(), &older)), ["alpha", "beta"], "the second arrow counts too");
}

#[test]
fn two_locked_versions_of_one_crate_are_both_kept() {
    let v = locked_versions(LOCK).unwrap();
    assert_eq!(v["arrow"], ["58.0.0", "59.3.2"]);
    assert_eq!(v["parquet"], ["59.3.2"]);
    assert!(locked_versions("[[package]\nname = ").is_err(), "a broken lock is an error, not an empty list");
}
