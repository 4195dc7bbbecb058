//! The engine end to end: the real binary on `cmd` pipelines in temp directories.

mod common;

use common::Project;

/// A `cmd` stage that copies its input (if any), appends its param `v`, and logs
/// that it ran into `ran.log`, so tests can count executions.
fn stage(name: &str, input: Option<&str>, v: &str) -> String {
    let (inputs, copy) = match input {
        Some(src) => (format!("    inputs: {{in: {src}}}\n"), "cat \"$DAGRUN_INPUT_IN\" > \"$DAGRUN_OUTPUT_OUT\"; "),
        None => (String::new(), ""),
    };
    format!(
        "  {name}:\n    kind: cmd\n{inputs}    run: '{copy}echo \"$DAGRUN_PARAM_V\" >> \"$DAGRUN_OUTPUT_OUT\"; echo {name} >> ran.log'\n    outputs: [out.txt]\n    params: {{v: {v}}}\n"
    )
}

/// a -> b -> c -> d -> e -> f; `c` also has a param its command ignores.
fn chain(c_v: &str, c_unused: &str) -> String {
    let mut s = String::from("stages:\n");
    s += &stage("a", None, "1");
    s += &stage("b", Some("a.out"), "1");
    s += &stage("c", Some("b.out"), c_v).replace("params: {v:", &format!("params: {{unused: {c_unused}, v:"));
    s += &stage("d", Some("c.out"), "1");
    s += &stage("e", Some("d.out"), "1");
    s += &stage("f", Some("e.out"), "1");
    s
}

fn ran_log(p: &Project) -> Vec<String> {
    let log = p.read("ran.log").lines().map(str::to_string).collect();
    std::fs::remove_file(p.path().join("ran.log")).ok();
    log
}

#[test]
fn middle_param_change_reruns_that_stage_and_below_only() {
    let p = Project::new(&chain("1", "0"));
    let r = p.dagrun(&["run", "-j", "1"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(ran_log(&p), ["a", "b", "c", "d", "e", "f"]);

    let r = p.dagrun(&["run"]);
    assert_eq!(r.code, 0);
    assert!(ran_log(&p).is_empty(), "a no-op run runs nothing");
    assert_eq!(r.stages("cached"), ["a", "b", "c", "d", "e", "f"]);

    std::fs::write(p.path().join("pipeline.yaml"), chain("2", "0")).unwrap();
    let st = p.dagrun(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    let states: Vec<&str> = json.as_array().unwrap().iter().map(|s| s["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["fresh", "fresh", "stale", "stale", "stale", "stale"]);
    assert_eq!(json[2]["reasons"], serde_json::json!(["param v: 1 -> 2"]));
    assert_eq!(json[3]["reasons"], serde_json::json!(["upstream c is stale"]));
    assert!(json[0]["last_duration_s"].is_number());

    let r = p.dagrun(&["run"]);
    assert_eq!(r.code, 0);
    assert_eq!(ran_log(&p), ["c", "d", "e", "f"]);
}

#[test]
fn unchanged_output_stops_the_wave() {
    let p = Project::new(&chain("1", "0"));
    assert_eq!(p.dagrun(&["run"]).code, 0);
    ran_log(&p);
    std::fs::write(p.path().join("pipeline.yaml"), chain("1", "7")).unwrap();
    let r = p.dagrun(&["run"]);
    assert_eq!(r.code, 0);
    assert_eq!(ran_log(&p), ["c"], "c reruns, its output is byte-identical, d..f are hits");
    assert_eq!(r.stages("cached"), ["a", "b", "d", "e", "f"]);
}

#[test]
fn param_set_back_hits_the_earlier_record() {
    let p = Project::new(&chain("1", "0"));
    assert_eq!(p.dagrun(&["run"]).code, 0);
    assert_eq!(p.dagrun(&["run", "-P", "c.v=2"]).code, 0);
    ran_log(&p);
    let r = p.dagrun(&["run"]);
    assert_eq!(r.code, 0);
    assert!(ran_log(&p).is_empty(), "switching back is an instant hit");
    assert_eq!(p.read("artifacts/latest/f/out.txt"), "1\n1\n1\n1\n1\n1\n");
}

#[test]
fn override_flags_type_params_and_explain_staleness() {
    let p = Project::new(&chain("1", "0"));
    assert_eq!(p.dagrun(&["run"]).code, 0);
    let st = p.dagrun(&["status", "-P", "c.v=5"]);
    assert_eq!(st.code, 0);
    assert!(st.stdout.contains("c  stale  param v: 1 -> 5"), "{}", st.stdout);
    assert!(st.stdout.contains("d  stale  upstream c is stale"), "{}", st.stdout);
    let dry = p.dagrun(&["run", "--dry-run", "-P", "c.v=5"]);
    assert!(dry.stdout.contains("skip  a"), "{}", dry.stdout);
    assert!(dry.stdout.contains("run   c                    param v: 1 -> 5"), "{}", dry.stdout);
    assert!(ran_log(&p).len() == 6, "a dry run runs nothing");
}

#[test]
fn force_and_targets() {
    let p = Project::new(&chain("1", "0"));
    let r = p.dagrun(&["run", "--target", "c"]);
    assert_eq!(r.code, 0);
    assert_eq!(ran_log(&p), ["a", "b", "c"], "only what c needs");
    let r = p.dagrun(&["run", "--force", "b", "-t", "d"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(ran_log(&p), ["b", "d"], "b forced; its output is identical, so c is a hit");
}

#[test]
fn failing_stage_stops_descendants_but_not_independent_branches() {
    let p = Project::new(
        "stages:\n  bad:\n    kind: cmd\n    run: 'echo doomed >&2; exit 3'\n    outputs: [x.txt]\n  below:\n    kind: cmd\n    inputs: {in: bad.x}\n    run: 'cp \"$DAGRUN_INPUT_IN\" \"$DAGRUN_OUTPUT_Y\"'\n    outputs: [y.txt]\n  other:\n    kind: cmd\n    run: 'sleep 0.3; echo ok > \"$DAGRUN_OUTPUT_Z\"'\n    outputs: [z.txt]\n",
    );
    let r = p.dagrun(&["run", "-j", "2"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.outcome("bad").as_deref(), Some("failed"));
    assert_eq!(r.outcome("below").as_deref(), Some("skipped"));
    assert_eq!(r.outcome("other").as_deref(), Some("ran"));
    assert!(r.stdout.contains("exited with status 3"), "{}", r.stdout);
    assert!(r.stdout.contains("doomed"), "stderr of the command is shown: {}", r.stdout);
    assert_eq!(p.read("artifacts/latest/other/z.txt"), "ok\n");
    assert!(!p.store().join("latest/bad").exists(), "nothing half-written for the failed stage");
    let tmp = p.store().join("tmp");
    assert!(!tmp.exists() || std::fs::read_dir(&tmp).unwrap().next().is_none());
}

#[test]
fn missing_declared_output_is_a_stage_failure() {
    let p = Project::new("stages:\n  lazy:\n    kind: cmd\n    run: 'true'\n    outputs: [x.parquet]\n");
    let r = p.dagrun(&["run"]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("did not write its output `x.parquet`"), "{}", r.stdout);
}

#[test]
fn file_inputs_are_hashed_by_content() {
    let p = Project::new(
        "stages:\n  count:\n    kind: cmd\n    inputs: {data: data/clicks.csv}\n    run: 'wc -l < \"$DAGRUN_INPUT_DATA\" > \"$DAGRUN_OUTPUT_N\"'\n    outputs: [n.txt]\n",
    );
    p.write("data/clicks.csv", "a\nb\n");
    assert_eq!(p.dagrun(&["run"]).code, 0);
    // Same bytes, new mtime: still fresh.
    p.write("data/clicks.csv", "a\nb\n");
    let st = p.dagrun(&["status"]);
    assert!(st.stdout.contains("count  fresh"), "{}", st.stdout);
    p.write("data/clicks.csv", "a\nb\nc\n");
    let st = p.dagrun(&["status"]);
    assert!(st.stdout.contains("stale  input"), "{}", st.stdout);
    assert!(st.stdout.contains("clicks.csv changed"), "{}", st.stdout);
    assert_eq!(p.dagrun(&["run"]).code, 0);
    assert_eq!(p.read("artifacts/latest/count/n.txt").trim(), "3");
    // -I points the input elsewhere.
    p.write("other.csv", "x\n");
    assert_eq!(p.dagrun(&["run", "-I", "count.data=other.csv"]).code, 0);
    assert_eq!(p.read("artifacts/latest/count/n.txt").trim(), "1");
}

#[test]
fn directory_inputs_cover_every_file() {
    let p = Project::new(
        "stages:\n  ls:\n    kind: cmd\n    inputs: {dir: ./data}\n    run: 'cat \"$DAGRUN_INPUT_DIR\"/* > \"$DAGRUN_OUTPUT_ALL\"'\n    outputs: [all.txt]\n",
    );
    p.write("data/one.txt", "1\n");
    assert_eq!(p.dagrun(&["run"]).code, 0);
    p.write("data/two.txt", "2\n");
    assert!(p.dagrun(&["status"]).stdout.contains("stale"));
    assert_eq!(p.dagrun(&["run"]).code, 0);
    assert_eq!(p.read("artifacts/latest/ls/all.txt"), "1\n2\n");
}

/// A `cmd` stage that marks its start in `dir`, then waits (up to 30 s, then fails)
/// until `other` has marked its own: it can only finish if both run at once.
fn rendezvous(name: &str, other: &str, dir: &std::path::Path) -> String {
    let d = dir.display();
    format!(
        "  {name}:\n    kind: cmd\n    run: 'touch {d}/{name}.started; n=0; \
         while [ ! -e {d}/{other}.started ]; do n=$((n+1)); [ $n -gt 3000 ] && exit 1; sleep 0.01; done; \
         echo {name} > \"$DAGRUN_OUTPUT_O\"'\n    outputs: [o.txt]\n"
    )
}

/// Regression: a directory input with a link back to its parent recursed until the
/// OS gave up (`Too many levels of symbolic links`, exit 1).
#[test]
fn a_directory_input_with_a_symlink_loop_is_exit_2_naming_it() {
    let p = Project::new(
        "stages:\n  ls:\n    kind: cmd\n    inputs: {d: ./data}\n    run: 'ls \"$DAGRUN_INPUT_D\" > \"$DAGRUN_OUTPUT_ALL\"'\n    outputs: [all.txt]\n",
    );
    p.write("data/a.txt", "1\n");
    std::os::unix::fs::symlink(p.path().join("data"), p.path().join("data/again")).unwrap();
    for cmd in ["status", "run"] {
        let r = p.dagrun(&[cmd]);
        assert_eq!(r.code, 2, "{cmd}: {}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains("/data: the directory loops back on itself"), "{}", r.stderr);
        assert!(r.stderr.contains("data/again leads to"), "{}", r.stderr);
    }
}

#[test]
fn parallel_branches_run_at_the_same_time() {
    let marks = tempfile::tempdir().unwrap();
    let p =
        Project::new(&format!("stages:\n{}{}", rendezvous("x", "y", marks.path()), rendezvous("y", "x", marks.path())));
    let r = p.dagrun(&["run", "-j", "2"]);
    assert_eq!(r.code, 0, "each stage saw the other one start: {}{}", r.stdout, r.stderr);
    assert_eq!(r.stages("ran").len(), 2);
}

#[test]
fn cmd_metrics_land_in_the_record() {
    let p = Project::new(
        "stages:\n  m:\n    kind: cmd\n    run: 'echo 1 > \"$DAGRUN_OUTPUT_O\"; echo \"{\\\"auc\\\": 0.75}\" > \"$DAGRUN_METRICS\"'\n    outputs: [o.txt]\n",
    );
    let r = p.dagrun(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let rec: serde_json::Value = serde_json::from_str(&p.read("artifacts/latest/m/.record.json")).unwrap();
    assert_eq!(rec["metrics"]["auc"], 0.75);
}

#[test]
fn gc_keeps_what_is_current_and_drops_the_rest() {
    let p = Project::new(&chain("1", "0"));
    assert_eq!(p.dagrun(&["run"]).code, 0);
    for v in 2..=4 {
        assert_eq!(p.dagrun(&["run", "-P", &format!("c.v={v}")]).code, 0);
    }
    let r = p.dagrun(&["gc", "--keep-runs", "1", "--dry-run"]);
    assert!(r.stdout.starts_with("would remove 12 record(s)"), "{}", r.stdout);
    let r = p.dagrun(&["gc", "--keep-runs", "1"]);
    assert!(r.stdout.starts_with("removed 12 record(s)"), "{}", r.stdout);
    ran_log(&p);
    // What the newest run used is intact.
    let r = p.dagrun(&["run", "-P", "c.v=4"]);
    assert_eq!(r.code, 0);
    assert!(ran_log(&p).is_empty());
}

#[test]
fn verify_quarantines_corrupt_objects_and_the_next_run_rebuilds() {
    let p = Project::new(&chain("1", "0"));
    assert_eq!(p.dagrun(&["run"]).code, 0);
    let r = p.dagrun(&["verify"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("checked 6 object(s), 0 corrupt"), "{}", r.stdout);
    // Corrupt d's output through its latest link.
    let target = std::fs::canonicalize(p.store().join("latest/d/out.txt")).unwrap();
    std::fs::write(&target, "garbage\n").unwrap();
    let r = p.dagrun(&["verify"]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("1 corrupt"), "{}", r.stdout);
    ran_log(&p);
    let r = p.dagrun(&["run"]);
    assert_eq!(r.code, 0);
    assert_eq!(ran_log(&p), ["d"], "d is rebuilt; its output is the same again, so e and f stay hits");
    assert_eq!(p.dagrun(&["verify"]).code, 0);
}

/// Waits until `path` exists: the stage that creates it has started.
fn wait_for(path: &std::path::Path) {
    for _ in 0..30_000 {
        if path.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("{} never appeared", path.display());
}

#[test]
fn a_second_run_waits_for_the_key_the_first_computes_and_gc_waits_for_both() {
    // The first run's stage says it has started, then holds on until the test lets it go.
    let marks = tempfile::tempdir().unwrap();
    let (started, release) = (marks.path().join("started"), marks.path().join("release"));
    let p = Project::new(&format!(
        "stages:\n  slow:\n    kind: cmd\n    run: 'touch {}; while [ ! -e {} ]; do sleep 0.01; done; echo 1 > \"$DAGRUN_OUTPUT_O\"'\n    outputs: [o.txt]\n",
        started.display(),
        release.display()
    ));
    let mut first = p.command(&["run"]).stdout(std::process::Stdio::null()).spawn().unwrap();
    wait_for(&started);
    let gc = p.dagrun(&["gc"]);
    assert_eq!(gc.code, 2, "gc takes the whole store: {}", gc.stderr);
    assert!(gc.stderr.contains("is locked by pid") && gc.stderr.contains("`dagrun run`"), "{}", gc.stderr);
    assert_eq!(p.dagrun(&["status"]).code, 0, "read-only commands take no lock");
    // A second run proceeds, and waits for the key the first is computing.
    let mut second = p.command(&["run"]);
    let waiting = std::thread::spawn(move || common::ran(second.output().unwrap()));
    std::fs::write(&release, "").unwrap();
    assert!(first.wait().unwrap().success());
    let second = waiting.join().unwrap();
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(second.outcome("slow").as_deref(), Some("cached"), "{}", second.stdout);
    assert_eq!(p.dagrun(&["verify"]).code, 0);
}

#[test]
fn kill_at_random_points_never_corrupts_the_store() {
    // Stages that write in several steps, so a kill lands mid-write as well as between stages.
    let mut yaml = String::from("stages:\n");
    for i in 0..6 {
        let input = if i == 0 { String::new() } else { format!("    inputs: {{in: s{}.o}}\n", i - 1) };
        yaml += &format!(
            "  s{i}:\n    kind: cmd\n{input}    run: 'for k in 1 2 3 4 5; do echo $k-$DAGRUN_PARAM_V >> \"$DAGRUN_OUTPUT_O\"; sleep 0.01; done'\n    outputs: [o.txt]\n    params: {{v: 0}}\n"
        );
    }
    let p = Project::new(&yaml);
    let mut seed = 0x9e3779b97f4a7c15u64;
    for round in 0..20 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = seed % 400;
        let v = format!("s{}.v={round}", seed % 6);
        let mut child = p.command(&["run", "-P", &v]).stdout(std::process::Stdio::null()).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let verify = p.dagrun(&["verify"]);
        assert_eq!(verify.code, 0, "round {round}: {}{}", verify.stdout, verify.stderr);
    }
    let r = p.dagrun(&["run"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let again = p.dagrun(&["run"]);
    assert_eq!(again.stages("cached").len(), 6, "{}", again.stdout);
    // Regression: temp files were made beside the records, so a kill between create
    // and rename left an empty `.<key>.json.<pid>-<n>.tmp` in `records/` for good.
    let mut dirs = vec![p.store().join("records"), p.store().join("runs")];
    dirs.extend(std::fs::read_dir(p.store().join("latest")).unwrap().map(|e| e.unwrap().path()));
    for dir in dirs {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.ends_with(".tmp"), "a killed write's temp file in {}: {name}", dir.display());
        }
    }
    // Every record points at objects that exist and hash to their names.
    for entry in std::fs::read_dir(p.store().join("records")).unwrap() {
        let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
        for (_, o) in rec["outputs"].as_object().unwrap() {
            let hash = o["hash"].as_str().unwrap();
            let path = p.store().join(format!("objects/{}/{hash}.{}", &hash[..2], o["ext"].as_str().unwrap()));
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(blake3::hash(&bytes).to_hex().as_str(), hash);
        }
    }
}

#[test]
fn dag_renders_text_mermaid_and_dot() {
    let p = Project::new(&chain("1", "0"));
    let text = p.dagrun(&["dag"]);
    insta::assert_snapshot!("dag_text", text.stdout);
    let mermaid = p.dagrun(&["dag", "--format", "mermaid"]);
    insta::assert_snapshot!("dag_mermaid", mermaid.stdout);
    let dot = p.dagrun(&["dag", "--format", "dot"]);
    assert!(dot.stdout.starts_with("digraph pipeline {"));
    assert!(dot.stdout.contains("\"b\" -> \"c\" [label=\"out as in\"];"), "{}", dot.stdout);
}

#[test]
fn store_flag_and_env_choose_the_store() {
    let p = Project::new(&chain("1", "0"));
    assert_eq!(p.dagrun(&["--store", "elsewhere", "run"]).code, 0);
    assert!(p.path().join("elsewhere/latest/f/out.txt").exists());
    assert!(!p.store().exists());
    let r = ran_cmd(p.command(&["status"]).env("DAGRUN_STORE", "elsewhere"));
    assert!(r.stdout.contains("f  fresh"), "{}", r.stdout);
}

fn ran_cmd(c: &mut std::process::Command) -> common::Ran {
    common::ran(c.output().unwrap())
}

#[test]
fn cmd_stages_find_their_paths_when_run_from_another_directory() {
    // Regression: relative store and input paths were handed to commands that run in
    // the pipeline's directory, so `dagrun run sub/pipeline.yaml` broke them.
    let p = Project::new("");
    p.write(
        "sub/pipeline.yaml",
        "stages:\n  a:\n    kind: cmd\n    inputs: {data: data.txt}\n    run: 'cp \"$DAGRUN_INPUT_DATA\" \"$DAGRUN_OUTPUT_O\"'\n    outputs: [o.txt]\n  b:\n    kind: cmd\n    inputs: {in: a.o}\n    run: 'cat \"$DAGRUN_INPUT_IN\" \"$DAGRUN_INPUT_IN\" > \"$DAGRUN_OUTPUT_O\"'\n    outputs: [o.txt]\n",
    );
    p.write("sub/data.txt", "x\n");
    let r = p.dagrun(&["run", "sub/pipeline.yaml"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(p.read("sub/artifacts/latest/b/o.txt"), "x\nx\n");
}
