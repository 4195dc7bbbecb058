//! Tests of kind `encode`.

use super::*;
use crate::schema::clicks::{write_clicks, write_users};
use dagrun_kind::NoProgress;
use std::collections::BTreeMap;

#[test]
fn integer_clicks_with_text_user_ids_are_bad_input() {
    let d = tempfile::tempdir().unwrap();
    let ints = |v: Vec<i64>| Arc::new(Int64Array::from(v)) as ArrayRef;
    let inputs: BTreeMap<String, std::path::PathBuf> =
        ["train", "test", "users"].iter().map(|n| (n.to_string(), d.path().join(format!("{n}.parquet")))).collect();
    write_clicks(&inputs["train"], ints(vec![1, 2]), ints(vec![7, 8]), vec![10, 20]).unwrap();
    write_clicks(&inputs["test"], ints(vec![1, 2]), ints(vec![8, 7]), vec![30, 40]).unwrap();
    let ids = Arc::new(StringArray::from(vec!["1", "2"]));
    write_users(&inputs["users"], ids, vec![("city".into(), vec!["a".into(), "b".into()])]).unwrap();
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let params = serde_json::json!({});
    let err = run(&StageCtx { inputs: &inputs, params: &params, out_dir: &out, progress: &NoProgress }).unwrap_err();
    let StageError::BadInput(msg) = err else { panic!("not bad input: {err:?}") };
    assert!(
        msg.ends_with("users.parquet: column `user_id` is utf8 but the clicks' is int64; both must be the same type"),
        "{msg}"
    );
}

/// Encodes clicks of users 1, 2 on items "x", "y" with the items table `genres`.
fn encode_with_genres(genres: crate::schema::clicks::ItemGenres, id_type: &DataType) -> Result<Report, StageError> {
    let d = tempfile::tempdir().unwrap();
    let text = |v: Vec<&str>| Arc::new(StringArray::from(v)) as ArrayRef;
    let inputs: BTreeMap<String, std::path::PathBuf> = ["train", "test", "users", "items"]
        .iter()
        .map(|n| (n.to_string(), d.path().join(format!("{n}.parquet"))))
        .collect();
    write_clicks(&inputs["train"], text(vec!["1", "2"]), text(vec!["y", "x"]), vec![10, 20]).unwrap();
    write_clicks(&inputs["test"], text(vec!["1", "2"]), text(vec!["x", "y"]), vec![30, 40]).unwrap();
    write_users(&inputs["users"], text(vec!["1", "2"]), vec![]).unwrap();
    crate::schema::clicks::write_item_genres(&inputs["items"], genres, id_type).unwrap();
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let params = serde_json::json!({});
    let report = run(&StageCtx { inputs: &inputs, params: &params, out_dir: &out, progress: &NoProgress })?;
    let b = table::read(&out.join("items.parquet")).unwrap();
    let col = |n: &str| table::column::<Int32Array>(&b, n, Path::new("items")).unwrap().values().to_vec();
    let pairs: Vec<(i32, i32)> = col(ITEM_IDX).into_iter().zip(col(GENRE_IDX)).collect();
    let vocab = crate::schema::encoded::raw_ids(&out.join("vocab.parquet"), GENRE).unwrap();
    assert_eq!(report.rows["items"], pairs.len() as u64);
    // Pairs as raw values, to compare across vocabularies.
    let items = ["", "x", "y"];
    let named: Vec<String> = pairs.iter().map(|(i, g)| format!("{}:{}", items[*i as usize], vocab[g])).collect();
    assert_eq!(named, ["x:comedy", "x:drama", "y:drama"]);
    Ok(report)
}

#[test]
fn genres_are_encoded_sorted_once_each_and_only_for_clicked_items() {
    let mut genres = crate::schema::clicks::ItemGenres::default();
    for (item, genre) in [("y", "drama"), ("x", "drama"), ("unclicked", "war"), ("x", "comedy"), ("y", "drama")] {
        genres.push(item, genre);
    }
    let report = encode_with_genres(genres, &DataType::Utf8).unwrap();
    assert_eq!(
        report.notes,
        ["genres for 2 of 2 clicked items; 1 row(s) of the items table name an item no click has and are left out"]
    );
}

#[test]
fn genres_whose_item_ids_are_not_the_clicks_type_are_bad_input() {
    let mut genres = crate::schema::clicks::ItemGenres::default();
    genres.push("7", "drama");
    let StageError::BadInput(msg) = encode_with_genres(genres, &DataType::Int64).unwrap_err() else { panic!() };
    assert!(
        msg.ends_with("items.parquet: column `item_id` is int64 but the clicks' is utf8; both must be the same type"),
        "{msg}"
    );
}

#[test]
fn vocab_is_sorted_and_starts_at_one() {
    let long = "an id longer than fifteen bytes";
    let a = StringArray::from(vec!["b", "a", "c", "a"]);
    let b = StringArray::from(vec!["d", long, "a\0", long]);
    let (v, codes) = Vocab::fit(&[Raw::Text(&a), Raw::Text(&b)]);
    let text: Vec<String> = v.values.iter().map(Value::to_string).collect();
    assert_eq!(text, ["a", "a\0", long, "b", "c", "d"]);
    assert_eq!(codes[0].values(), &[4, 1, 5, 1]);
    assert_eq!(codes[1].values(), &[6, 3, 2, 3], "\"a\\0\" is not \"a\"");
    assert_eq!((v.code(Value::Text("c")), v.code(Value::Text(long))), (5, 3));
    assert_eq!(v.code(Value::Text("zz")), 0, "unknown is 0");
}

#[test]
fn integer_ids_sort_as_numbers() {
    let a = Int64Array::from(vec![Some(10), Some(-3), None, Some(9), Some(i64::MAX)]);
    let b = Int64Array::from(vec![9, 100]);
    let (v, codes) = Vocab::fit(&[Raw::Int(&a), Raw::Int(&b)]);
    assert!(v.index.dense.is_none(), "too wide a range to be looked up by position");
    assert_eq!(v.values, [-3, 9, 10, 100, i64::MAX].map(Value::Int));
    assert_eq!(codes[0].values(), &[3, 1, 0, 2, 5], "null is 0");
    assert_eq!(codes[1].values(), &[2, 4]);
    assert_eq!((v.code(Value::Int(100)), v.code(Value::Int(11))), (4, 0));
    assert_eq!(v.values[4].to_string(), "9223372036854775807");
}

#[test]
fn integers_in_a_narrow_range_are_fitted_by_position() {
    let a = Int64Array::from(vec![Some(1005), Some(1003), None, Some(1007), Some(1003)]);
    let b = Int64Array::from(vec![1009, 1000]);
    let (v, codes) = Vocab::fit(&[Raw::Int(&a), Raw::Int(&b)]);
    assert!(v.index.dense.is_some(), "10 values over a range of 10");
    assert_eq!(v.values, [1000, 1003, 1005, 1007, 1009].map(Value::Int));
    assert_eq!(codes[0].values(), &[3, 2, 0, 4, 2], "null is 0");
    assert_eq!(codes[1].values(), &[5, 1]);
    let code = |value| v.code(value);
    assert_eq!([1007, 1004, 999, 1010, i64::MIN, i64::MAX].map(|i| code(Value::Int(i))), [4, 0, 0, 0, 0, 0]);
    assert_eq!(code(Value::Text("1007")), 0);
}

#[test]
fn dense_transforms() {
    let cols = dense_columns("a", &[0.0, 1.0, 3.0], &[Transform::X, Transform::X2, Transform::Log]);
    assert_eq!(cols[0].0, "a_x");
    assert_eq!(cols[0].1.values(), &[0.0, 1.0 / 3.0, 1.0]);
    assert!((cols[1].1.value(1) - 1.0 / 9.0).abs() < 1e-6);
    assert!((cols[2].1.value(1) - (2f64.ln() / 4f64.ln()) as f32).abs() < 1e-6);
}
