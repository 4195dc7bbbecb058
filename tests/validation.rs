//! Bad params and checks are found when the pipeline loads: exit 2 with
//! `file:line:column`, before any stage runs and before the store is touched.

mod common;

use common::Project;

/// The shipped pipeline with `from` replaced by `to` (which must occur once).
fn shipped_with(from: &str, to: &str) -> (Project, String) {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipeline.yaml")).unwrap();
    assert_eq!(text.matches(from).count(), 1, "`{from}` occurs once in pipeline.yaml");
    let text = text.replacen(from, to, 1);
    (Project::new(&text), text)
}

/// `pipeline.yaml:LINE:COLUMN` of the first occurrence of `needle` in `text`.
fn place(text: &str, needle: &str) -> String {
    let (n, line) = text.lines().enumerate().find(|(_, l)| l.contains(needle)).expect("needle in text");
    format!("pipeline.yaml:{}:{}", n + 1, line.find(needle).unwrap() + 1)
}

/// Runs `dagrun run`, asserting exit 2, nothing run and no store; returns stderr.
fn refused(p: &Project) -> String {
    let r = p.dagrun(&["run"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.is_empty(), "nothing ran: {}", r.stdout);
    assert!(!p.store().exists(), "the store was not touched");
    let status = p.dagrun(&["status"]);
    assert_eq!(status.code, 2, "status refuses it too: {}", status.stdout);
    r.stderr
}

#[test]
fn bad_param_values_are_found_at_load_with_their_place() {
    let train = "params: {emb_dim: 32, epochs: 2, num_sampled: 64, seed: 0}";
    let cases = [
        (
            train,
            "params: {emb_dim: 32, epochs: 2, num_sampled: 64, seed: 0, lr: -0.1}",
            "lr:",
            "stage `train`: param `lr` of kind `youtube_dnn`: must be a number above 0, not -0.1",
        ),
        (
            train,
            "params: {emb_dim: 32, epochs: 2, num_sampled: 64, seed: 0, batch_size: 0}",
            "batch_size:",
            "param `batch_size` of kind `youtube_dnn`: must be at least 1, not 0",
        ),
        (
            train,
            "params: {emb_dim: 0, epochs: 2, num_sampled: 64, seed: 0}",
            "emb_dim:",
            "param `emb_dim` of kind `youtube_dnn`: must be at least 1, not 0",
        ),
        (
            train,
            "params: {emb_dim: 32, epochs: 2, num_sampled: 64, seed: 0, temperature: 0}",
            "temperature:",
            "param `temperature` of kind `youtube_dnn`: must be a number above 0, not 0",
        ),
        (
            train,
            "params: {emb_dim: 32, epochs: 2, num_sampled: 64, seed: 0, init_std: 0}",
            "init_std:",
            "param `init_std` of kind `youtube_dnn`: must be a number above 0, not 0",
        ),
        (
            train,
            "params: {emb_dim: 32, epochs: 2, num_sampled: 64, seed: 0, device: 'tpu:7'}",
            "device:",
            "param `device` of kind `youtube_dnn`: `tpu:7` is not a device: expected cpu, cuda, cuda:N or auto",
        ),
        (
            train,
            "params: {emb_dim: 32, epochs: 2, num_sampled: 64, seed: 0, hidden_units: [64, 16]}",
            "hidden_units:",
            "param `hidden_units` of kind `youtube_dnn`: [64, 16]: sizes are at least 1, and the last is the user vector, so it must equal emb_dim 32",
        ),
        (
            train,
            "params: {emb_dim: 32, epochs: 2, num_sampled: 100000, seed: 0}",
            "num_sampled:",
            "param `num_sampled` of kind `youtube_dnn`: must be at most 65536, not 100000",
        ),
        (
            train,
            "params: {emb_dim: 32, epochs: 2, num_sampled: 64, seed: 0, recent: 65}",
            "recent:",
            "param `recent` of kind `youtube_dnn`: must be at most 64, not 65",
        ),
        (
            "neg_ratio: 0,",
            "neg_ratio: 1001,",
            "neg_ratio:",
            "stage `sample`: param `neg_ratio` of kind `sample`: must be at most 1000, not 1001",
        ),
        (
            "users: 2000,",
            "users: 2000, topics: 5000,",
            "topics:",
            "stage `clicks`: param `topics` of kind `synth`: must be at most items (1000), not 5000",
        ),
        (
            "users: 2000,",
            "users: 0,",
            "users:",
            "stage `clicks`: param `users` of kind `synth`: must be at least 1, not 0",
        ),
        (
            "inputs: {users: export.users",
            "params: {ks: [0]}\n    inputs: {users: export.users",
            "ks: [0]",
            "stage `evaluate`: param `ks` of kind `evaluate`: cut-off 0 must lie in 1..=100000",
        ),
        (
            "inputs: {users: export.users",
            "params: {ks: []}\n    inputs: {users: export.users",
            "ks: []",
            "param `ks` of kind `evaluate`: must list at least one cut-off",
        ),
    ];
    for (from, to, key, message) in cases {
        let (p, text) = shipped_with(from, to);
        let err = refused(&p);
        let expected = format!("error: {}: ", place(&text, key));
        assert!(err.starts_with(&expected), "{to}: expected `{expected}…`, got {err}");
        assert!(err.contains(message), "{to}: expected `{message}`, got {err}");
    }
}

#[test]
fn overrides_go_through_the_same_validation() {
    let p = Project::shipped("pipeline.yaml");
    let r = p.dagrun(&["run", "-P", "train.lr=-0.1"]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(r.stderr.contains("-P train.lr: must be a number above 0, not -0.1"), "{}", r.stderr);
    assert!(!p.store().exists());
}

#[test]
fn a_check_on_a_stage_that_does_not_exist_is_an_error_at_load() {
    let (p, text) = shipped_with(
        "  - evaluate.index_recall@50 >= 0.99",
        "  - evaluate.index_recall@50 >= 0.99\n  - nosuch.hr@50 >= 0.1",
    );
    let err = refused(&p);
    assert!(
        err.starts_with(&format!("error: {}: check `nosuch.hr@50 >= 0.1`: no stage `nosuch`", place(&text, "nosuch"))),
        "{err}"
    );
}

#[test]
fn a_check_on_a_metric_the_stage_did_not_produce_fails_the_run() {
    let p = Project::new(
        "stages:\n  m:\n    kind: cmd\n    run: 'echo 1 > \"$DAGRUN_OUTPUT_O\"; echo \"{\\\"auc\\\": 0.75}\" > \"$DAGRUN_METRICS\"'\n    outputs: [o.txt]\nchecks:\n  - m.auc >= 0.5\n  - m.acu >= 0.5\n",
    );
    let r = p.dagrun(&["run"]);
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("check ok     m.auc >= 0.5"), "{}", r.stdout);
    assert!(r.stdout.contains("check FAILED m.acu >= 0.5: no metric `m.acu`"), "{}", r.stdout);
    let r = p.dagrun(&["metrics", "--check"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
}

#[test]
fn a_file_named_like_a_stage_output_says_how_to_read_the_file() {
    let p = Project::new(
        "stages:\n  clicks:\n    kind: cmd\n    inputs: {data: clicks.parquet}\n    run: 'cp \"$DAGRUN_INPUT_DATA\" \"$DAGRUN_OUTPUT_O\"'\n    outputs: [o.txt]\n",
    );
    p.write("clicks.parquet", "not really parquet\n");
    let r = p.dagrun(&["status"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("stage `clicks` cannot read its own output `clicks.parquet` (`clicks.parquet` names stage `clicks`; to read the file `clicks.parquet`, write `./clicks.parquet`)"),
        "{}",
        r.stderr
    );
    let fixed = p.read("pipeline.yaml").replace("{data: clicks.parquet}", "{data: ./clicks.parquet}");
    p.write("pipeline.yaml", &fixed);
    let r = p.dagrun(&["run"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(p.read("artifacts/latest/clicks/o.txt"), "not really parquet\n");
}
