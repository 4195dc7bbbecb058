//! Bad pipelines and bad command lines: exit code 2, one message with file:line:column,
//! never a panic. The messages are snapshots (insta).

mod common;

use common::Project;

/// Runs `dagrun status` on `yaml` and returns stderr, asserting exit code 2.
fn rejected(yaml: &str, extra: &[&str]) -> String {
    let p = Project::new(yaml);
    let mut args = vec!["status"];
    args.extend_from_slice(extra);
    let r = p.dagrun(&args);
    assert_eq!(r.code, 2, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert!(r.stderr.starts_with("error: "), "{}", r.stderr);
    r.stderr
}

const OK_STAGE: &str = "  a:\n    kind: cmd\n    run: 'echo 1 > \"$DAGRUN_OUTPUT_O\"'\n    outputs: [o.txt]\n";

#[test]
fn unknown_top_level_key() {
    insta::assert_snapshot!(rejected(&format!("stages:\n{OK_STAGE}stagse: {{}}\n"), &[]));
}

#[test]
fn unknown_stage_key() {
    insta::assert_snapshot!(rejected(&format!("stages:\n{OK_STAGE}    param: {{x: 1}}\n"), &[]));
}

#[test]
fn duplicate_stage_names() {
    insta::assert_snapshot!(rejected(&format!("stages:\n{OK_STAGE}{OK_STAGE}"), &[]));
}

#[test]
fn unknown_kind() {
    insta::assert_snapshot!(rejected("stages:\n  a:\n    kind: sampel\n", &[]));
}

#[test]
fn reference_to_a_missing_stage() {
    insta::assert_snapshot!(rejected(
        &format!(
            "stages:\n{OK_STAGE}  b:\n    kind: cmd\n    inputs: {{x: nope.o}}\n    run: 'true'\n    outputs: [p.txt]\n"
        ),
        &[]
    ));
}

#[test]
fn reference_to_a_missing_output() {
    insta::assert_snapshot!(rejected(
        &format!(
            "stages:\n{OK_STAGE}  b:\n    kind: cmd\n    inputs: {{x: a.oops}}\n    run: 'true'\n    outputs: [p.txt]\n"
        ),
        &[]
    ));
}

#[test]
fn missing_input_path() {
    insta::assert_snapshot!(rejected(
        "stages:\n  a:\n    kind: cmd\n    inputs: {data: ./data/missing.csv}\n    run: 'true'\n    outputs: [o.txt]\n",
        &[]
    ));
}

#[test]
fn cycle_is_named() {
    let yaml = "stages:\n  a:\n    kind: cmd\n    inputs: {x: c.o}\n    run: 'true'\n    outputs: [o.txt]\n  b:\n    kind: cmd\n    inputs: {x: a.o}\n    run: 'true'\n    outputs: [o.txt]\n  c:\n    kind: cmd\n    inputs: {x: b.o}\n    run: 'true'\n    outputs: [o.txt]\n";
    let e = rejected(yaml, &[]);
    assert!(e.contains("a -> b -> c -> a"), "{e}");
    insta::assert_snapshot!(e);
}

#[test]
fn cmd_without_outputs() {
    insta::assert_snapshot!(rejected("stages:\n  a:\n    kind: cmd\n    run: 'true'\n", &[]));
}

#[test]
fn bad_output_name() {
    insta::assert_snapshot!(rejected("stages:\n  a:\n    kind: cmd\n    run: 'true'\n    outputs: [noext]\n", &[]));
}

#[test]
fn yaml_syntax_error() {
    insta::assert_snapshot!(rejected("stages:\n  a:\n    kind: [cmd\n", &[]));
}

#[test]
fn empty_stages() {
    insta::assert_snapshot!(rejected("stages: {}\n", &[]));
}

#[test]
fn override_of_a_missing_stage() {
    insta::assert_snapshot!(rejected(&format!("stages:\n{OK_STAGE}"), &["-P", "zz.v=1"]));
}

#[test]
fn malformed_override() {
    insta::assert_snapshot!(rejected(&format!("stages:\n{OK_STAGE}"), &["-P", "justtext"]));
}

#[test]
fn missing_pipeline_file() {
    let p = Project::new("stages: {}\n");
    let r = p.dagrun(&["status", "nothere.yaml"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("cannot read nothere.yaml"), "{}", r.stderr);
}

#[test]
fn unknown_target_and_force() {
    let p = Project::new(&format!("stages:\n{OK_STAGE}"));
    let r = p.dagrun(&["run", "--target", "zz"]);
    assert_eq!(r.code, 2);
    insta::assert_snapshot!(r.stderr);
}

/// A param that asks for an optional input the stage is not given is refused when the
/// pipeline loads, at the stage, before anything runs.
#[test]
fn a_param_that_needs_an_input_the_stage_lacks() {
    let yaml = "stages:\n  clicks:\n    kind: synth\n  train:\n    kind: youtube_dnn\n    inputs: {samples: clicks.clicks, users: clicks.users, vocab: clicks.users}\n    params: {genres: true}\n";
    insta::assert_snapshot!(rejected(yaml, &[]));
}

/// An input that a param's value leaves unread (an ensemble's third member with
/// `members: 2`) used to be refused only when the stage ran, after its upstream stages;
/// it is refused when the pipeline loads, at the input.
#[test]
fn an_input_a_param_leaves_unread() {
    let inputs = "{users_1: c.users, items_1: c.users, users_2: c.users, items_2: c.users, users_3: c.users}";
    let yaml = format!("stages:\n  c:\n    kind: synth\n  pair:\n    kind: ensemble\n    inputs: {inputs}\n");
    let p = Project::new(&yaml);
    let r = p.dagrun(&["run"]);
    assert_eq!(r.code, 2, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    assert!(!r.stdout.contains("ran"), "nothing runs: {}", r.stdout);
    insta::assert_snapshot!(r.stderr);
    insta::assert_snapshot!("an_input_a_param_leaves_unread_members_3", rejected(&yaml, &["-P", "pair.members=3"]));
}

/// Regression: `exp --metric` with a misspelt stage showed no column and said nothing,
/// `-j 0` ran as `-j 1`, and `exp -n 0` said there was no run.
#[test]
fn counts_and_metric_names_on_the_command_line_are_checked() {
    let p = Project::new(&format!("stages:\n{OK_STAGE}"));
    let cases: [(&str, &[&str]); 4] = [
        ("metric_of_no_stage", &["exp", "--metric", "zz.hr@50"]),
        ("metric_without_stage", &["exp", "--metric", "hr@50"]),
        ("zero_jobs", &["run", "-j", "0"]),
        ("zero_runs", &["exp", "-n", "0"]),
    ];
    for (name, args) in cases {
        let r = p.dagrun(args);
        assert_eq!(r.code, 2, "{args:?}: {}{}", r.stdout, r.stderr);
        insta::assert_snapshot!(name, r.stderr);
    }
    assert!(!p.store().exists(), "nothing ran");
}

/// An input given to a kind that takes none says so (it listed nothing after "its
/// inputs:").
#[test]
fn an_input_for_a_kind_that_takes_none() {
    insta::assert_snapshot!(rejected("stages:\n  c:\n    kind: synth\n", &["-I", "c.data=x"]));
}
