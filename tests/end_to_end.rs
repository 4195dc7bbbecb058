//! The whole recall pipeline through the real binary: training, export, the index
//! and its metrics, `metrics`, `sql`, `show`, and DuckDB on the artifacts.

mod common;

use common::Project;

fn metrics(p: &Project) -> serde_json::Map<String, serde_json::Value> {
    let r = p.dagrun(&["metrics", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap().as_object().unwrap().clone()
}

/// One run of the default pipeline shared by the tests below (it takes seconds).
fn default_run() -> &'static Project {
    static P: std::sync::OnceLock<Project> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let p = Project::shipped("pipeline.yaml");
        let r = p.dagrun(&["run"]);
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        assert!(r.stdout.contains("check ok     evaluate.hr@50 >= baseline.hr@50"), "{}", r.stdout);
        p
    })
}

#[test]
fn default_pipeline_beats_popularity_and_the_index_finds_what_exact_search_finds() {
    let p = default_run();
    let m = metrics(p);
    for k in [
        "evaluate.hr@50",
        "evaluate.ndcg@50",
        "evaluate.index_recall@50",
        "baseline.hr@50",
        "evaluate.mrr",
        "evaluate.coverage@10",
        "evaluate.hr_excl@50",
    ] {
        assert!(m.contains_key(k), "missing {k} in {m:?}");
    }
    let f = |k: &str| m[k].as_f64().unwrap();
    assert!(f("evaluate.hr@50") > f("baseline.hr@50"), "{m:?}");
    assert!(f("evaluate.index_recall@50") >= 0.99, "{m:?}");
    assert!(f("evaluate.hr@10") <= f("evaluate.hr@50") && f("evaluate.hr@50") <= f("evaluate.hr@200"));
    assert!(f("evaluate.coverage@50") > f("baseline.coverage@50"), "personalised lists cover more of the catalogue");
}

/// By default the metrics come from exact search and the index is checked on the
/// sample; with `ranking: index` the other way round. Where the index finds what
/// exact search finds, both agree.
#[test]
fn exact_ranking_agrees_with_the_index_where_the_index_is_exact() {
    let p = default_run();
    let r = p.dagrun(&["--store", "index", "run", "--target", "evaluate", "-P", "evaluate.ranking=index"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let index: serde_json::Value = serde_json::from_str(&p.read("index/latest/evaluate/.record.json")).unwrap();
    let exact = p.record("evaluate");
    assert!(index["notes"].to_string().contains("items by the index; exact check on"), "{}", index["notes"]);
    assert_eq!(exact["metrics"]["ranked_exactly"], 1.0);
    assert_eq!(index["metrics"]["ranked_exactly"], 0.0);
    let f = |rec: &serde_json::Value, k: &str| rec["metrics"][k].as_f64().unwrap();
    assert_eq!(f(&index, "index_recall@50"), 1.0, "the premise: the index is exact on this catalogue");
    assert_eq!(f(&exact, "index_recall@50"), 1.0);
    for k in ["hr@10", "hr@50", "ndcg@50", "hr_excl@50", "mrr"] {
        assert!((f(&exact, k) - f(&index, k)).abs() <= 0.002, "{k}: {} vs {}", f(&exact, k), f(&index, k));
    }
}

/// Test evaluation searches the index validation built over the same item vectors
/// instead of building it again; an `index` that is not one is bad input, exit 2.
#[test]
fn evaluate_reuses_the_validation_index_and_refuses_one_that_is_not() {
    let p = default_run();
    let (test, valid) = (p.record("evaluate"), p.record("evaluate_valid"));
    assert_eq!(test["outputs"]["index"]["hash"], valid["outputs"]["index"]["hash"]);
    assert!(test["notes"].to_string().contains("searched the index given as input `index`"), "{}", test["notes"]);
    assert!(!valid["notes"].to_string().contains("given as input"), "{}", valid["notes"]);
    std::fs::write(p.path().join("garbage.usearch"), b"not an index").unwrap();
    let yaml = p.read("pipeline.yaml").replace("index: evaluate_valid.index", "index: garbage.usearch");
    std::fs::write(p.path().join("garbage.yaml"), yaml).unwrap();
    let r = p.dagrun(&["--store", "garbage", "run", "garbage.yaml", "--target", "evaluate"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("garbage.usearch: input `index` is not a usearch index"), "{}", r.stdout);
}

#[test]
fn evaluate_says_what_it_ranked_and_samples_the_exact_check_with_a_seed() {
    let p = default_run();
    let users = p.record("export")["outputs"]["users"]["rows"].as_u64().unwrap();
    let items = p.record("export")["outputs"]["items"]["rows"].as_u64().unwrap();
    let notes = p.record("evaluate")["notes"].to_string();
    assert!(
        notes.contains(&format!("ranked {users} users against {items} items exactly; index checked on {users} users")),
        "{notes}"
    );
    let sampled = |store: &str, seed: &str| {
        let args = ["--store", store, "run", "--target", "evaluate", "-P", "evaluate.exact_users=100", "-P", seed];
        let r = p.dagrun(&args);
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        let rec: serde_json::Value =
            serde_json::from_str(&p.read(&format!("{store}/latest/evaluate/.record.json"))).unwrap();
        assert_eq!(rec["metrics"]["index_recall_users"], 100.0);
        assert!(rec["notes"].to_string().contains("index checked on 100 users"), "{}", rec["notes"]);
        rec["outputs"]["metrics"]["hash"].clone()
    };
    let a = sampled("sample-a", "evaluate.seed=1");
    assert_eq!(a, sampled("sample-b", "evaluate.seed=1"), "the same seed samples the same users");
}

#[test]
fn training_is_deterministic_on_the_cpu() {
    let p = default_run();
    let r = p.dagrun(&["--store", "second", "run", "--target", "evaluate"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rec = |store: &str, s: &str| -> serde_json::Value {
        serde_json::from_str(&p.read(&format!("{store}/latest/{s}/.record.json"))).unwrap()
    };
    // The model and everything computed from it are byte-identical; the training log
    // also holds wall-clock seconds, so only its losses are compared.
    for out in ["model", "config"] {
        assert_eq!(rec("artifacts", "train")["outputs"][out], rec("second", "train")["outputs"][out], "train.{out}");
    }
    for s in ["export", "evaluate"] {
        assert_eq!(rec("artifacts", s)["outputs"], rec("second", s)["outputs"], "stage {s}");
    }
    assert_eq!(rec("artifacts", "train")["metrics"]["final_loss"], rec("second", "train")["metrics"]["final_loss"]);
}

#[test]
fn checks_gate_the_exit_code() {
    let p = default_run();
    let r = p.dagrun(&["metrics", "--check"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let strict = Project::new("");
    let text = p.read("pipeline.yaml").replace("evaluate.index_recall@50 >= 0.99", "evaluate.hr@10 >= 0.999");
    std::fs::write(strict.path().join("pipeline.yaml"), text).unwrap();
    let r = strict.dagrun(&["--store", p.store().to_str().unwrap(), "metrics", "--check"]);
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("evaluate.hr@10 >= 0.999"), "{}", r.stderr);
}

#[test]
fn metrics_diff_against_a_file() {
    let p = default_run();
    let baseline = p.path().join("baseline.json");
    std::fs::write(&baseline, r#"{"evaluate.hr@50": 0.0, "old.metric": 1.0}"#).unwrap();
    let r = p.dagrun(&["metrics", "--diff", baseline.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let line = r.stdout.lines().find(|l| l.starts_with("evaluate.hr@50 ")).unwrap();
    let now = metrics(p)["evaluate.hr@50"].as_f64().unwrap();
    assert!(line.contains(&format!("{:+.6}", now)), "{line}");
    assert!(r.stdout.lines().any(|l| l.starts_with("old.metric") && l.contains(" - ")), "{}", r.stdout);
}

#[test]
fn sql_over_the_latest_artifacts() {
    let p = default_run();
    let r = p.dagrun(&["sql", "SELECT COUNT(*) AS n FROM sample_test", "--format", "csv"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let users = metrics(p)["evaluate.users"].as_f64().unwrap() as u64;
    assert_eq!(r.stdout.trim(), format!("n\n{users}"));
    let r = p.dagrun(&["sql", "SELECT max(rank) AS k FROM evaluate_topk", "--format", "json"]);
    assert_eq!(r.stdout.trim(), r#"[{"k":200}]"#);
    let r = p.dagrun(&["sql", "SELECT * FROM nope"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("nope"), "{}", r.stderr);
}

#[test]
fn show_prints_schema_rows_and_a_duckdb_line() {
    let p = default_run();
    let r = p.dagrun(&["show", "sample.train", "-n", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("    hist                 List(non-null Int32) not null\n"), "{}", r.stdout);
    let rows = p.record("sample")["outputs"]["train"]["rows"].to_string();
    assert!(r.stdout.contains(&format!("  rows    {rows}\n")), "{}", r.stdout);
    assert!(r.stdout.contains("duckdb -c \"SELECT * FROM '"), "{}", r.stdout);
    assert!(r.stdout.contains("artifacts/latest/sample/train.parquet"), "{}", r.stdout);
    let r = p.dagrun(&["show", "train.nothing"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("has no output `nothing`"), "{}", r.stderr);
}

#[test]
fn duckdb_opens_the_artifacts() {
    let p = default_run();
    let has_duckdb = |p: &Project| {
        std::process::Command::new("python3")
            .args(["-c", "import duckdb"])
            .current_dir(p.path())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has_duckdb(p) {
        let _ = std::process::Command::new("python3").args(["-m", "pip", "install", "--quiet", "duckdb"]).status();
    }
    assert!(has_duckdb(p), "python3 -m pip install duckdb failed");
    let script = r#"
import duckdb
con = duckdb.connect()
def one(q): return con.execute(q).fetchone()
n_train, = one("SELECT count(*) FROM 'artifacts/latest/sample/train.parquet'")
hist_type = con.execute("DESCRIBE SELECT hist FROM 'artifacts/latest/sample/train.parquet'").fetchone()[1]
emb_type = con.execute("DESCRIBE SELECT embedding FROM 'artifacts/latest/export/items.parquet'").fetchone()[1]
n_items, = one("SELECT count(*) FROM 'artifacts/latest/export/items.parquet'")
norm, = one("SELECT max(abs(list_dot_product(embedding::FLOAT[], embedding::FLOAT[]) - 1)) FROM 'artifacts/latest/export/users.parquet'")
k, users = one("SELECT max(rank), count(DISTINCT user_id) FROM 'artifacts/latest/evaluate/topk.parquet'")
lo, hi = one("SELECT min(len(embedding)), max(len(embedding)) FROM 'artifacts/latest/export/items.parquet'")
assert lo == hi
print(n_train, hist_type, emb_type, n_items, round(norm, 4), k, users, hi)
"#;
    let out = std::process::Command::new("python3").args(["-c", script]).current_dir(p.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = text.split_whitespace().collect();
    let rec = |s: &str| -> serde_json::Value {
        serde_json::from_str(&p.read(&format!("artifacts/latest/{s}/.record.json"))).unwrap()
    };
    assert_eq!(fields[0], rec("sample")["outputs"]["train"]["rows"].to_string());
    assert_eq!(fields[1], "INTEGER[]");
    // Parquet has no fixed-size list; DuckDB reads the column as a list, every row of 32.
    assert!(fields[2] == "FLOAT[]" || fields[2] == "FLOAT[32]", "{}", fields[2]);
    assert_eq!(fields[7], "32");
    assert_eq!(fields[3], rec("export")["outputs"]["items"]["rows"].to_string());
    assert_eq!(fields[4], "0.0", "user vectors are unit length");
    assert_eq!(fields[5], "200");
    assert_eq!(fields[6], rec("export")["outputs"]["users"]["rows"].to_string());
}

#[test]
fn the_index_is_deterministic() {
    let p = default_run();
    let r = p.dagrun(&["run", "--wait", "--force", "evaluate", "--target", "evaluate"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rec: serde_json::Value = serde_json::from_str(&p.read("artifacts/latest/evaluate/.record.json")).unwrap();
    let again = p.dagrun(&["--store", "third", "run", "--target", "evaluate"]);
    assert_eq!(again.code, 0);
    let rec2: serde_json::Value = serde_json::from_str(&p.read("third/latest/evaluate/.record.json")).unwrap();
    assert_eq!(rec["outputs"]["index"]["hash"], rec2["outputs"]["index"]["hash"]);
}

#[test]
#[ignore = "needs ../shared/data/ml-100k (.ci/run includes it when the data is there)"]
fn movielens_100k_end_to_end() {
    let data = common::movielens();
    let p = Project::shipped("examples/movielens-100k.yaml");
    let r = p.dagrun(&["run", "-I", &format!("clicks.data={}", data.display())]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let m = metrics(&p);
    let f = |k: &str| m[k].as_f64().unwrap();
    // Most-popular on MovieLens-100k, counted on the training clicks (the validation
    // click held out), leave-last-out, full ranking (one user = 0.00106).
    assert!((f("baseline.hr@10") - 0.050).abs() <= 0.003, "{}", f("baseline.hr@10"));
    assert!((f("baseline.hr@50") - 0.150).abs() <= 0.003, "{}", f("baseline.hr@50"));
    assert!((f("baseline.hr@200") - 0.404).abs() <= 0.003, "{}", f("baseline.hr@200"));
    assert!((f("baseline.ndcg@50") - 0.044).abs() <= 0.003, "{}", f("baseline.ndcg@50"));
    assert!((f("baseline.hr_excl@50") - 0.198).abs() <= 0.003, "{}", f("baseline.hr_excl@50"));
    assert!(f("evaluate.index_recall@50") >= 0.99);
    // Validation metrics come from their own stage, through the same code.
    assert!(f("evaluate_valid.hr@50") > 2.0 * f("baseline.hr@50"), "{}", f("evaluate_valid.hr@50"));
    assert_ne!(f("evaluate_valid.hr@50"), f("evaluate.hr@50"));
    // The tuned example (seed 0); benches/quality.sh reports the mean of three seeds.
    assert!(f("evaluate.hr@50") >= 0.35, "{}", f("evaluate.hr@50"));
    assert!(f("evaluate.ndcg@50") >= 0.10, "{}", f("evaluate.ndcg@50"));
    assert!(f("evaluate.hr@50") > 2.0 * f("baseline.hr@50"));
    assert!(r.stdout.contains("check ok     evaluate.hr@50 >= 0.35"), "{}", r.stdout);
}

#[test]
#[cfg(not(feature = "cuda"))]
fn cuda_without_the_feature_is_a_load_error_and_auto_falls_back() {
    let p = default_run();
    let r = p.dagrun(&["--store", "devices", "run", "--target", "train", "-P", "train.device=cuda"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("built without CUDA; rebuild with `--features cuda`"), "{}", r.stderr);
    assert!(r.stdout.is_empty(), "nothing ran: {}", r.stdout);
    let r = p.dagrun(&["--store", "devices", "run", "--target", "train", "-P", "train.device=auto"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("device auto: no CUDA GPU"), "{}", r.stdout);
}

#[test]
#[cfg(feature = "cuda")]
fn cuda_devices_load_with_the_feature() {
    let p = default_run();
    for device in ["cuda", "cuda:0", "auto"] {
        let r = p.dagrun(&["status", "-P", &format!("train.device={device}")]);
        assert_eq!(r.code, 0, "{device}: {}", r.stderr);
    }
}

#[test]
fn an_unknown_device_is_a_load_error() {
    let p = default_run();
    let r = p.dagrun(&["--store", "devices", "run", "--target", "train", "-P", "train.device=tpu"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("-P train.device: `tpu` is not a device: expected cpu, cuda, cuda:N or auto"),
        "{}",
        r.stderr
    );
    assert!(!p.path().join("devices").exists(), "nothing was written to the store");
}

/// The model options train and export a model that beats popularity, on both paths
/// for `short_hist` and `recent`; full softmax on the host path, with an untied
/// table; asking the device path for untied tables or dropout is a load error, found
/// before anything runs.
#[test]
fn model_options_run_end_to_end_and_the_device_path_refuses_host_only_options() {
    let p = default_run();
    let hr = |store: &str, opts: &[&str]| {
        let r = p.dagrun(&[&["--store", store, "run"][..], opts].concat());
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        let read = |stage: &str| -> f64 {
            let rec: serde_json::Value =
                serde_json::from_str(&p.read(&format!("{store}/latest/{stage}/.record.json"))).unwrap();
            rec["metrics"]["hr@50"].as_f64().unwrap()
        };
        let (hr, popular) = (read("evaluate"), read("baseline"));
        assert!(hr > popular, "{opts:?}: {hr} against {popular}");
        hr
    };
    let host = hr(
        "options",
        &[
            "-P",
            "train.short_hist=2",
            "-P",
            "train.recent=2",
            "-P",
            "train.tie_item_embeddings=false",
            "-P",
            "train.dropout=0.2",
        ],
    );
    assert_ne!(host, p.record("evaluate")["metrics"]["hr@50"].as_f64().unwrap(), "the options changed the model");
    hr("device", &["-P", "train.short_hist=2", "-P", "train.recent=2", "-P", "train.path=device"]);
    assert!(p.read("device/latest/train/.record.json").contains("device path"));
    // Full softmax once ran on the device path only, so `auto` took it there on a CPU.
    hr("full", &["-P", "train.loss=full", "-P", "train.tie_item_embeddings=false"]);
    assert!(!p.read("full/latest/train/.record.json").contains("device path"), "auto takes the host path on a CPU");
    let r =
        p.dagrun(&["--store", "refused", "run", "-P", "train.path=device", "-P", "train.tie_item_embeddings=false"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("train.tie_item_embeddings: false runs on the host path only"), "{}", r.stderr);
    let r = p.dagrun(&["--store", "refused", "run", "-P", "train.path=device", "-P", "train.dropout=0.2"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("train.dropout: runs on the host path only"), "{}", r.stderr);
    assert!(!p.path().join("refused").exists(), "nothing was written to the store");
}

#[test]
fn metrics_diff_against_an_earlier_run_id() {
    let p = default_run();
    let run_id = std::fs::read_dir(p.store().join("runs"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".json").map(str::to_string))
        .min()
        .unwrap();
    let r = p.dagrun(&["metrics", "--diff", &run_id]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let line = r.stdout.lines().find(|l| l.starts_with("evaluate.hr@50 ")).unwrap();
    assert!(line.trim_end().ends_with("+0.000000"), "the first run produced the current metrics: {line}");
    let r = p.dagrun(&["metrics", "--diff", "no-such-run"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("neither a file nor a run id"), "{}", r.stderr);
}

/// The validation holdout is opt-in: a pipeline written before it (no `valid` param,
/// no `valid` inputs) keeps its meaning, and an unknown input names the optional ones.
#[test]
fn a_pipeline_without_the_holdout_keeps_every_click_but_the_last_for_training() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipeline.yaml")).unwrap();
    let old = text
        .replace("    params: {valid: true}\n", "")
        .replace("valid: split.valid, ", "")
        .replace("valid: encode.valid, ", "")
        .replace(", also_seen: encode.valid", "")
        .replace(", index: evaluate_valid.index", "");
    let cut = old.find("\n  export_valid:").unwrap();
    let end = old[cut + 1..].find("\n  evaluate:").unwrap() + cut + 1;
    let cut2 = old.find("\n  evaluate_valid:").unwrap();
    let end2 = old[cut2 + 1..].find("\n  baseline:").unwrap() + cut2 + 1;
    let old = format!("{}{}{}", &old[..cut], &old[end..cut2], &old[end2..]);
    assert!(!old.contains("valid:") && !old.contains("_valid") && !old.contains(".valid"), "{old}");
    let p = Project::new(&old);
    let r = p.dagrun(&["run"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let split = p.record("split");
    assert_eq!(split["outputs"]["valid"]["rows"], 0);
    assert_eq!(split["outputs"]["train"]["rows"], 97_997, "every click but each user's last");
    assert_eq!(p.record("sample")["outputs"]["valid"]["rows"], 0);

    let bad = Project::new(&old.replace("test: split.test,", "test: split.test, vald: split.test,"));
    let r = bad.dagrun(&["status"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("has no input `vald`; its inputs: train, test, users, valid (optional)"), "{}", r.stderr);
}
