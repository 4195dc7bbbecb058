//! Tables from elsewhere with indices the stages cannot use: each is exit 2 naming
//! the file, the column and the first bad row, never a panic or an allocation sized
//! by a number in the data.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::Project;
use dagrun_stages::table;
use datafusion::arrow::array::{ArrayRef, Int32Array, Int64Array, StringArray};

/// An encoded click table: user and item indices, timestamps 0, 1, 2, …
fn clicks(path: &Path, users: &[i32], items: &[i32]) {
    let n = users.len() as i64;
    table::write(
        path,
        vec![
            ("user", Arc::new(Int32Array::from(users.to_vec())) as ArrayRef),
            ("item", Arc::new(Int32Array::from(items.to_vec()))),
            ("timestamp", Arc::new(Int64Array::from_iter_values(0..n))),
        ],
    )
    .unwrap();
}

/// A vocabulary of `users` users and `items` items.
fn vocab(path: &Path, users: i32, items: i32) {
    let mut rows: Vec<(&str, i32, String)> = (1..=users).map(|i| ("user_id", i, format!("u{i}"))).collect();
    rows.extend((1..=items).map(|i| ("item_id", i, format!("i{i}"))));
    table::write(
        path,
        vec![
            ("feature", Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef),
            ("index", Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.1)))),
            ("value", Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2.as_str())))),
        ],
    )
    .unwrap();
}

/// Runs the project, asserting exit 2 and no panic; returns what it printed.
fn rejected(p: &Project) -> String {
    let r = p.dagrun(&["run"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains("panicked") && !r.stderr.contains("panicked"), "{}{}", r.stdout, r.stderr);
    r.stdout
}

const SAMPLE: &str =
    "stages:\n  sample:\n    kind: sample\n    inputs: {train: ./train.parquet, test: ./test.parquet}\n";

#[test]
fn sample_rejects_negative_past_the_end_and_huge_indices() {
    let cases: [(&[i32], &str); 3] = [
        (&[1, -5, 2, 1], "row 1: index -5 lies outside 0..65537"),
        (&[1, 2, 70_000, 1], "row 2: index 70000 lies outside 0..65537"),
        (&[1, 2, 1, 2_000_000_000], "row 3: index 2000000000 lies outside 0..65537"),
    ];
    for (items, message) in cases {
        let p = Project::new(SAMPLE);
        clicks(&p.path().join("train.parquet"), &[1, 1, 2, 2], items);
        clicks(&p.path().join("test.parquet"), &[1, 2], &[2, 1]);
        let out = rejected(&p);
        assert!(out.contains(&format!("/train.parquet: column `item`, {message}")), "{out}");
    }
}

#[test]
fn sample_rejects_a_huge_user_index() {
    let p = Project::new(SAMPLE);
    clicks(&p.path().join("train.parquet"), &[1, 1, 2, 2], &[1, 2, 1, 2]);
    clicks(&p.path().join("test.parquet"), &[1, i32::MAX], &[2, 1]);
    let out = rejected(&p);
    assert!(out.contains("test.parquet: column `user`, row 1: index 2147483647 lies outside 0..65537"), "{out}");
}

#[test]
fn popularity_rejects_an_item_past_the_vocabulary() {
    let p = Project::new(
        "stages:\n  baseline:\n    kind: popularity\n    inputs: {train: ./train.parquet, test: ./test.parquet, vocab: ./vocab.parquet}\n",
    );
    clicks(&p.path().join("train.parquet"), &[1, 1, 2, 2], &[1, 2, 7, 2]);
    clicks(&p.path().join("test.parquet"), &[1, 2], &[2, 1]);
    vocab(&p.path().join("vocab.parquet"), 2, 3);
    let out = rejected(&p);
    assert!(out.contains("train.parquet: column `item`, row 2: index 7 lies outside 0..4"), "{out}");
}
