//! Tests of kind `sample`.

use super::*;
use dagrun_kind::NoProgress;
use datafusion::arrow::array::Array;
use std::collections::BTreeMap;

/// Encoded train/test tables from (user, item, ts) rows; test = each user's last row.
fn examples(rows: &[(i32, i32, i64)], params: serde_json::Value) -> (RecordBatch, RecordBatch) {
    let mut by_user: BTreeMap<i32, Vec<(i32, i64)>> = BTreeMap::new();
    for &(u, i, t) in rows {
        by_user.entry(u).or_default().push((i, t));
    }
    let (mut tr, mut te) = (vec![], vec![]);
    for (u, clicks) in by_user {
        let (last, rest) = clicks.split_last().unwrap();
        tr.extend(rest.iter().map(|&(i, t)| (u, i, t)));
        te.push((u, last.0, last.1));
    }
    sample(&tr, &te, params)
}

/// Runs `sample` on train and test tables with these rows, in this order.
fn sample(tr: &[(i32, i32, i64)], te: &[(i32, i32, i64)], params: serde_json::Value) -> (RecordBatch, RecordBatch) {
    let d = tempfile::tempdir().unwrap();
    for (name, rows) in [("train", tr), ("test", te)] {
        table::write(
            &d.path().join(format!("{name}.parquet")),
            vec![
                (USER_IDX, Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef),
                (ITEM_IDX, Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.1)))),
                ("timestamp", Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2)))),
            ],
        )
        .unwrap();
    }
    let inputs = BTreeMap::from([
        ("train".to_string(), d.path().join("train.parquet")),
        ("test".to_string(), d.path().join("test.parquet")),
    ]);
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let params = (SPEC.params)(params).unwrap();
    run(&StageCtx { inputs: &inputs, params: &params, out_dir: &out, progress: &NoProgress }).unwrap();
    (table::read(&out.join("train.parquet")).unwrap(), table::read(&out.join("test.parquet")).unwrap())
}

/// Runs `sample` with validation clicks `va` too; returns (valid, test) examples.
fn sample_with_valid(
    tr: &[(i32, i32, i64)],
    va: &[(i32, i32, i64)],
    te: &[(i32, i32, i64)],
) -> (RecordBatch, RecordBatch) {
    let d = tempfile::tempdir().unwrap();
    let mut inputs = BTreeMap::new();
    for (name, rows) in [("train", tr), ("valid", va), ("test", te)] {
        let path = d.path().join(format!("{name}.parquet"));
        table::write(
            &path,
            vec![
                (USER_IDX, Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef),
                (ITEM_IDX, Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.1)))),
                ("timestamp", Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2)))),
            ],
        )
        .unwrap();
        inputs.insert(name.to_string(), path);
    }
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let params = (SPEC.params)(serde_json::json!({"max_hist": 3, "neg_ratio": 2})).unwrap();
    run(&StageCtx { inputs: &inputs, params: &params, out_dir: &out, progress: &NoProgress }).unwrap();
    (table::read(&out.join("valid.parquet")).unwrap(), table::read(&out.join("test.parquet")).unwrap())
}

#[test]
fn validation_histories_stop_before_the_validation_click_and_test_histories_end_with_it() {
    // User 1: train 10, 11, 12; validation 13; test 14. User 2: no training clicks.
    let tr = [(1, 10, 1), (1, 11, 2), (1, 12, 3)];
    let (valid, test) = sample_with_valid(&tr, &[(1, 13, 4), (2, 20, 1)], &[(1, 14, 5), (2, 21, 2)]);
    assert_eq!(col_i32(&valid, ITEM_IDX), [13, 20]);
    assert_eq!(hists(&valid), [vec![12, 11, 10], vec![]], "training clicks only, most recent first");
    assert_eq!(col_i32(&test, ITEM_IDX), [14, 21]);
    assert_eq!(hists(&test), [vec![13, 12, 11], vec![20]], "the validation click first, max_hist kept");
    for (h, target) in hists(&valid).iter().zip(col_i32(&valid, ITEM_IDX)) {
        assert!(!h.contains(&target), "a validation history never holds its target");
    }
    for (h, target) in hists(&test).iter().zip(col_i32(&test, ITEM_IDX)) {
        assert!(!h.contains(&target), "a test history never holds its target");
    }
}

#[test]
fn rows_in_any_order_give_the_same_examples() {
    // Two users' clicks interleaved as a log has them, one of user 2's out of time order.
    let tr = [(2, 20, 5), (1, 10, 1), (2, 21, 1), (1, 11, 2), (2, 22, 9), (1, 12, 3)];
    let te = [(1, 13, 4), (2, 23, 10)];
    let mut grouped = tr.to_vec();
    grouped.sort_by_key(|&(u, _, t)| (u, t));
    let params = serde_json::json!({"neg_ratio": 1, "seed": 3});
    let (a, a_test) = sample(&tr, &te, params.clone());
    let (b, b_test) = sample(&grouped, &te, params);
    assert_eq!(a, b);
    assert_eq!(a_test, b_test);
    assert_eq!(col_i32(&a, USER_IDX)[..4], [1, 1, 1, 1], "grouped by user, user 1 first");
    let positives: Vec<Vec<i32>> =
        hists(&a).into_iter().zip(labels(&a)).filter(|(_, l)| *l == 1).map(|(h, _)| h).collect();
    assert_eq!(positives, [vec![10], vec![11, 10], vec![21], vec![20, 21]], "history in time order");
}

fn col_i32(b: &RecordBatch, name: &str) -> Vec<i32> {
    b.column_by_name(name).unwrap().as_any().downcast_ref::<Int32Array>().unwrap().values().to_vec()
}

fn labels(b: &RecordBatch) -> Vec<i8> {
    b.column_by_name(LABEL).unwrap().as_any().downcast_ref::<Int8Array>().unwrap().values().to_vec()
}

fn hists(b: &RecordBatch) -> Vec<Vec<i32>> {
    let l = b.column_by_name(HIST).unwrap().as_any().downcast_ref::<ListArray>().unwrap();
    (0..l.len()).map(|i| l.value(i).as_any().downcast_ref::<Int32Array>().unwrap().values().to_vec()).collect()
}

#[test]
fn grouping_by_user_matches_a_stable_sort() {
    // 3000 users, every tenth click out of time order.
    let mut rng = Rng::new(11);
    let (mut users, mut items, mut timestamps) = (vec![], vec![], vec![]);
    for k in 0..40_000 {
        users.push(rng.below(3000) as i32);
        items.push(k);
        timestamps.push(if k % 10 == 0 { rng.below(1000) as i64 } else { k as i64 / 7 });
    }
    let mut expected: Vec<(i32, i64, i32)> =
        users.iter().zip(&timestamps).zip(&items).map(|((&u, &t), &i)| (u, t, i)).collect();
    expected.sort_by_key(|&(u, t, _)| (u, t));
    let batch = table::batch(vec![
        (USER_IDX, Arc::new(Int32Array::from(users)) as ArrayRef),
        (ITEM_IDX, Arc::new(Int32Array::from(items))),
        ("timestamp", Arc::new(Int64Array::from(timestamps))),
    ])
    .unwrap();
    // In two row groups.
    let groups = [batch.slice(0, 15_000), batch.slice(15_000, 25_000)];
    let g = by_user(&click_columns(&groups, Path::new("t"), 100_000).unwrap());
    let mut got = Vec::new();
    for &(user, start, end) in &g.groups {
        assert!(start < end);
        got.extend((start..end).map(|k| (user, g.timestamps[k], g.items[k])));
    }
    assert!(g.groups.windows(2).all(|w| w[0].0 < w[1].0 && w[0].2 == w[1].1), "ascending, contiguous");
    assert_eq!(got, expected);
}

#[test]
fn sliding_windows_most_recent_first() {
    let rows = [(1, 10, 1), (1, 11, 2), (1, 12, 3), (1, 13, 4)];
    let (train, test) = examples(&rows, serde_json::json!({"max_hist": 2}));
    assert_eq!(col_i32(&train, ITEM_IDX), [11, 12]);
    assert_eq!(hists(&train), [vec![10], vec![11, 10]]);
    assert_eq!(col_i32(&train, HIST_LEN), [1, 2]);
    assert_eq!(col_i32(&test, ITEM_IDX), [13]);
    assert_eq!(hists(&test), [vec![12, 11]], "truncated to max_hist");
}

#[test]
fn history_never_holds_the_target_or_later_clicks() {
    let mut rows = Vec::new();
    for u in 1..=20 {
        for k in 0..(3 + u % 7) {
            rows.push((u, 100 * u + k, k as i64));
        }
    }
    let (train, test) = examples(&rows, serde_json::json!({"neg_ratio": 2}));
    for b in [&train, &test] {
        let items = col_i32(b, ITEM_IDX);
        let labels = labels(b);
        for ((item, hist), label) in items.iter().zip(hists(b)).zip(labels) {
            if label == 1 {
                // Items of one user increase with time: everything in the history is earlier.
                assert!(hist.iter().all(|h| h < item), "{item} {hist:?}");
            }
        }
    }
}

#[test]
fn example_age_counts_hours_back_from_the_last_training_click() {
    let rows = [(1, 10, 0), (1, 11, 3600), (1, 12, 7200), (1, 13, 99999)];
    let (train, test) = examples(&rows, serde_json::json!({}));
    let age = |b: &RecordBatch| {
        b.column_by_name(EXAMPLE_AGE).unwrap().as_any().downcast_ref::<Float32Array>().unwrap().values().to_vec()
    };
    assert_eq!(age(&train), [1.0, 0.0]);
    assert_eq!(age(&test), [0.0]);
}

#[test]
fn negatives_avoid_the_users_items_and_follow_the_seed() {
    let mut rows = Vec::new();
    for k in 0..10 {
        rows.push((1, k + 1, k as i64));
        rows.push((2, k + 11, k as i64));
    }
    let a = examples(&rows, serde_json::json!({"neg_ratio": 3, "seed": 1})).0;
    let b = examples(&rows, serde_json::json!({"neg_ratio": 3, "seed": 1})).0;
    let c = examples(&rows, serde_json::json!({"neg_ratio": 3, "seed": 2})).0;
    assert_eq!(col_i32(&a, ITEM_IDX), col_i32(&b, ITEM_IDX));
    assert_ne!(col_i32(&a, ITEM_IDX), col_i32(&c, ITEM_IDX));
    let users = col_i32(&a, USER_IDX);
    let labels = labels(&a);
    assert_eq!(labels.iter().filter(|&&l| l == 0).count(), 3 * labels.iter().filter(|&&l| l == 1).count());
    for ((u, item), l) in users.iter().zip(col_i32(&a, ITEM_IDX)).zip(labels) {
        if l == 0 {
            let own = if *u == 1 { 1..=10 } else { 11..=20 };
            assert!(!own.contains(&item), "user {u} got own item {item} as negative");
        }
    }
}

#[test]
fn popularity_negatives_prefer_hot_items() {
    let mut rows = Vec::new();
    // Item 1 is clicked by everyone, items 2..=30 once each.
    for u in 1..=30 {
        rows.push((u, 1, 0));
        rows.push((u, 1 + u, 1));
        rows.push((u, 100, 2));
    }
    rows.push((31, 50, 0));
    rows.push((31, 51, 1));
    rows.push((31, 52, 2));
    let (train, _) =
        examples(&rows, serde_json::json!({"neg_ratio": 200, "neg_method": "popularity", "max_samples_per_user": 1}));
    let items = col_i32(&train, ITEM_IDX);
    let labels = labels(&train);
    let users = col_i32(&train, USER_IDX);
    let hot = items.iter().zip(&labels).zip(&users).filter(|((i, l), u)| **l == 0 && **i == 1 && **u == 31).count();
    // For user 31, item 1 holds 30 of the 61 training clicks: about half its negatives.
    assert!(hot > 70, "item 1 drawn {hot} times of 200");
}

#[test]
fn subsampling_drops_hot_positives_and_cap_keeps_the_latest() {
    let mut rows = Vec::new();
    for u in 1..=50 {
        for k in 0..10 {
            rows.push((u, if k % 2 == 0 { 1 } else { 2 + u * 10 + k }, k as i64));
        }
    }
    let full = examples(&rows, serde_json::json!({})).0;
    let sub = examples(&rows, serde_json::json!({"subsample_t": 0.001})).0;
    let hot = |b: &RecordBatch| col_i32(b, ITEM_IDX).iter().filter(|&&i| i == 1).count();
    assert!(hot(&sub) < hot(&full) / 2, "{} vs {}", hot(&sub), hot(&full));
    let capped = examples(&rows, serde_json::json!({"max_samples_per_user": 3})).0;
    assert_eq!(capped.num_rows(), 50 * 3);
    assert_eq!(col_i32(&capped, HIST_LEN)[..3], [6, 7, 8], "the three most recent windows");
}

/// Regression: offsets were cast with `as i32`, so a batch of more than 2^31 history
/// items would have wrapped into a corrupt list column; it is an error instead.
#[test]
fn history_ends_beyond_i32_are_an_error_not_a_wrap() {
    assert_eq!(list_offsets(&[0, 3, 7]).unwrap(), [0, 3, 7]);
    let e = list_offsets(&[0, i32::MAX as usize, i32::MAX as usize + 1]).unwrap_err();
    assert!(matches!(e, StageError::BadInput(_)), "{e}");
    assert!(e.to_string().contains("lower `max_hist` or `neg_ratio`, or set `max_samples_per_user`"), "{e}");
}

/// Regression: `neg_ratio` 4294967295 was taken, and sampling was killed for memory.
#[test]
fn neg_ratio_has_a_bound() {
    assert!((SPEC.params)(serde_json::json!({"neg_ratio": 1000})).is_ok());
    let e = (SPEC.params)(serde_json::json!({"neg_ratio": 1001})).unwrap_err().to_string();
    assert!(e.contains("must be at most 1000, not 1001"), "{e}");
}
