//! Sweeps (`run -S`) and the comparison of runs (`exp`), through the real binary.

mod common;

use common::Project;

#[test]
fn a_sweep_runs_each_point_and_shares_the_stages_above_it() {
    let p = Project::shipped("pipeline.yaml");
    let r = p.dagrun(&["run", "-S", "sample.neg_ratio=0,5,10"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    for (k, v) in ["0", "5", "10"].iter().enumerate() {
        assert!(r.stdout.contains(&format!("== point {}/3: sample.neg_ratio={v}\n", k + 1)), "{}", r.stdout);
    }
    for stage in ["clicks", "split", "encode", "baseline"] {
        assert_eq!(r.stages("ran").iter().filter(|s| *s == stage).count(), 1, "{stage} ran once: {}", r.stdout);
    }
    assert_eq!(r.stages("ran").iter().filter(|s| *s == "sample").count(), 3, "{}", r.stdout);

    let exp = p.dagrun(&["exp", "--json"]);
    assert_eq!(exp.code, 0, "{}", exp.stderr);
    let rows: serde_json::Value = serde_json::from_str(&exp.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let ratios: Vec<&serde_json::Value> = rows.iter().map(|r| &r["params"]["sample.neg_ratio"]).collect();
    assert_eq!(ratios, [10, 5, 0], "newest first");
    assert!(rows.iter().all(|r| r["metrics"]["evaluate.hr@50"].as_f64().is_some()), "{rows:?}");
    let one = p.dagrun(&["exp", "--json", "-n", "1"]);
    let one: serde_json::Value = serde_json::from_str(&one.stdout).unwrap();
    assert_eq!(one[0]["params"]["sample.neg_ratio"], 10, "an override is shown even alone");

    let md = p.dagrun(&["exp", "--markdown", "--metric", "evaluate.hr@10"]);
    let lines: Vec<&str> = md.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", md.stdout);
    assert!(
        lines[0].starts_with("| run | sample.neg_ratio | baseline.hr@50 | evaluate.hr@10 | evaluate.hr@50 |"),
        "{}",
        lines[0]
    );
    assert!(lines[1].starts_with("|---|---:|"), "{}", lines[1]);

    let first = rows[2]["run"].as_str().unwrap();
    let diff = p.dagrun(&["metrics", "--markdown", "--diff", first]);
    assert_eq!(diff.code, 0, "{}", diff.stderr);
    assert!(diff.stdout.starts_with("| metric | now | reference | delta |\n|---|---:|---:|---:|\n"), "{}", diff.stdout);
    let order: Vec<&str> = diff.stdout.lines().filter(|l| l.starts_with("| evaluate.hr@")).collect();
    assert!(order[0].starts_with("| evaluate.hr@10 |") && order[1].starts_with("| evaluate.hr@50 |"), "{order:?}");
    assert!(order[2].starts_with("| evaluate.hr@100 |"), "@K in the order of K: {order:?}");
}

#[test]
fn bad_sweeps_are_exit_2_before_anything_runs() {
    let p = Project::shipped("pipeline.yaml");
    for (sweep, message) in [
        ("nosuch.x=1,2", "-S nosuch.x=1: no stage `nosuch` in the pipeline"),
        ("sample.nosuch=1,2", "-S sample.nosuch: unknown field `nosuch`"),
        ("sample.neg_ratio=1,many", "-S sample.neg_ratio: invalid type: string \"many\""),
        ("sample.neg_ratio=", "-S sample.neg_ratio=: a value is empty"),
        ("train.lr=0.1,-1", "-S train.lr: must be a number above 0, not -1"),
    ] {
        let r = p.dagrun(&["run", "-S", sweep]);
        assert_eq!(r.code, 2, "{sweep}: {}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains(message), "{sweep}: {}", r.stderr);
        assert!(r.stdout.is_empty() && !p.store().exists(), "{sweep}: nothing ran");
    }
}

#[test]
fn exp_without_runs_says_so() {
    let p = Project::shipped("pipeline.yaml");
    let r = p.dagrun(&["exp"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no run of pipeline.yaml in"), "{}", r.stderr);
}

/// A project of two `cmd` stages: `u` (which logs each run to `u.log` in the returned
/// directory, then runs `u_run`) and `w` below it with param `v` (running `w_run`).
/// `{d}` in either command is that directory.
fn u_then_w(u_run: &str, w_run: &str) -> (Project, tempfile::TempDir) {
    let marks = tempfile::tempdir().unwrap();
    let d = marks.path().display().to_string();
    let (u_run, w_run) = (u_run.replace("{d}", &d), w_run.replace("{d}", &d));
    let p = Project::new(&format!(
        "stages:\n  u:\n    kind: cmd\n    run: 'echo u >> {d}/u.log; {u_run}'\n    outputs: [o.txt]\n  \
         w:\n    kind: cmd\n    inputs: {{u: u.o}}\n    params: {{v: 1}}\n    run: '{w_run}'\n    outputs: [o.txt]\n"
    ));
    (p, marks)
}

/// The points of a sweep run at the same time (as `-j` allows), and a stage they
/// share runs once even so: here each point's `w` waits until the other's has started.
#[test]
fn sweep_points_run_in_parallel_and_share_their_upstream() {
    let (p, marks) = u_then_w(
        "echo u > \"$DAGRUN_OUTPUT_O\"",
        "v=$DAGRUN_PARAM_V; touch {d}/$v.started; n=0; \
         while [ ! -e {d}/$((3-v)).started ]; do n=$((n+1)); [ $n -gt 3000 ] && exit 1; sleep 0.01; done; \
         echo $v > \"$DAGRUN_OUTPUT_O\"",
    );
    let r = p.dagrun(&["run", "-j", "2", "-S", "w.v=1,2"]);
    assert_eq!(r.code, 0, "each point's w saw the other start: {}{}", r.stdout, r.stderr);
    let mut ran = r.stages("ran");
    ran.sort();
    assert_eq!(ran, ["u", "w", "w"], "{}", r.stdout);
    assert_eq!(std::fs::read_to_string(marks.path().join("u.log")).unwrap(), "u\n", "u ran once");
    let point2 = r.stdout.split("== point 2/2: w.v=2\n").nth(1).expect("a header per point");
    assert!(point2.starts_with("cached   u\nran      w"), "a point's lines stay together: {}", r.stdout);
}

/// Regression: a sweep point's checks read `latest/`, which by then can show another
/// point's record; here point 1's check passed on point 2's score. The stage `z`,
/// shared by both points, ends only once point 2's `m` is in `latest/`.
#[test]
fn each_sweep_point_is_checked_on_its_own_metrics() {
    let p = Project::new(
        "stages:\n  m:\n    kind: cmd\n    params: {v: 1}\n    run: 'echo $DAGRUN_PARAM_V > \"$DAGRUN_OUTPUT_O\"; \
         echo \"{\\\"score\\\": $DAGRUN_PARAM_V}\" > \"$DAGRUN_METRICS\"'\n    outputs: [o.txt]\n  \
         z:\n    kind: cmd\n    run: 'n=0; while ! grep -q \"score.: 3\" artifacts/latest/m/.record.json 2>/dev/null; \
         do n=$((n+1)); [ $n -gt 3000 ] && exit 1; sleep 0.01; done; echo z > \"$DAGRUN_OUTPUT_O\"'\n    \
         outputs: [o.txt]\nchecks:\n  - m.score >= 2\n",
    );
    let r = p.dagrun(&["run", "-j", "2", "-S", "m.v=1,3"]);
    assert_eq!(r.code, 3, "point 1 fails its check: {}{}", r.stdout, r.stderr);
    let point =
        |k: &str| r.stdout.split(&format!("== point {k}")).nth(1).unwrap_or("").split("== point").next().unwrap();
    assert!(point("1/2").contains("check FAILED m.score >= 2 (1.0000 vs 2.0000)"), "{}", r.stdout);
    assert!(point("2/2").contains("check ok     m.score >= 2"), "{}", r.stdout);
}

/// A stage shared by the points of a sweep that fails runs once: the other points
/// report the same failure, and what is below it is skipped in each.
#[test]
fn a_shared_stage_that_fails_runs_once_and_fails_every_point() {
    let (p, marks) = u_then_w("echo broken >&2; exit 1", "echo $DAGRUN_PARAM_V > \"$DAGRUN_OUTPUT_O\"");
    let r = p.dagrun(&["run", "-j", "2", "-S", "w.v=1,2,3"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert_eq!(std::fs::read_to_string(marks.path().join("u.log")).unwrap(), "u\n", "u ran once");
    assert_eq!(r.stages("failed"), ["u", "u", "u"], "{}", r.stdout);
    assert_eq!(r.stages("skipped"), ["w", "w", "w"], "{}", r.stdout);
}
