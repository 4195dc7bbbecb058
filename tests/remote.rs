//! The remote tier through the real binary, against real servers the tests start:
//! an S3 server in this process (s3s-fs), a shared directory (`file://`) and, where
//! it is installed, moto's S3 server. Also concurrent runs on one local store.

mod common;
#[path = "common/s3.rs"]
mod s3;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Project, Ran};
use s3::S3Server;

/// The default pipeline, small enough that a run takes about a second.
const SMALL: [&str; 6] = ["-P", "clicks.users=300", "-P", "clicks.items=200", "-P", "clicks.clicks=12000"];
const ALL: [&str; 10] = [
    "clicks",
    "split",
    "encode",
    "sample",
    "train",
    "export",
    "export_valid",
    "evaluate",
    "evaluate_valid",
    "baseline",
];
/// What a change of `sample`'s params reruns: it and everything below it.
const BELOW_SAMPLE: [&str; 6] = ["sample", "train", "export", "export_valid", "evaluate", "evaluate_valid"];

/// Where a test's remote lives and how a client reaches it.
enum Backend {
    S3 { server: S3Server, bucket: String },
    File { dir: tempfile::TempDir },
    Moto { child: std::process::Child, port: u16, bucket: String },
}

impl Backend {
    fn s3() -> Backend {
        let root = tempfile::tempdir().unwrap().keep();
        Backend::S3 { server: S3Server::start(&root, "cache"), bucket: "cache".into() }
    }

    fn file() -> Backend {
        Backend::File { dir: tempfile::tempdir().unwrap() }
    }

    /// The URL of `prefix` on this remote.
    fn url(&self, prefix: &str) -> String {
        match self {
            Backend::S3 { bucket, .. } | Backend::Moto { bucket, .. } => format!("s3://{bucket}/{prefix}"),
            Backend::File { dir } => format!("file://{}/{prefix}", dir.path().display()),
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Backend::S3 { server, .. } => server.env(),
            Backend::File { .. } => Vec::new(),
            Backend::Moto { port, .. } => vec![
                ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
                ("AWS_ALLOW_HTTP", "true".into()),
                ("AWS_ACCESS_KEY_ID", "testing".into()),
                ("AWS_SECRET_ACCESS_KEY", "testing".into()),
                ("AWS_REGION", "us-east-1".into()),
            ],
        }
    }

    /// The remote's files as they lie on disk, where the test can see them.
    fn dir(&self, prefix: &str) -> Option<PathBuf> {
        match self {
            Backend::S3 { server, bucket } => Some(server.root.join(bucket).join(prefix)),
            Backend::File { dir } => Some(dir.path().join(prefix)),
            Backend::Moto { .. } => None,
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Backend::Moto { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn remote_cmd(p: &Project, b: &Backend, prefix: &str, args: &[&str]) -> Command {
    let mut c = p.command(args);
    c.env("DAGRUN_REMOTE", b.url(prefix));
    for (k, v) in b.env() {
        c.env(k, v);
    }
    c
}

/// `dagrun ARGS` with the remote `prefix` of `b`, to its end.
fn dagrun(p: &Project, b: &Backend, prefix: &str, args: &[&str]) -> Ran {
    common::ran(remote_cmd(p, b, prefix, args).output().unwrap())
}

/// `dagrun run` of the small pipeline with `extra` arguments.
fn run(p: &Project, b: &Backend, prefix: &str, extra: &[&str]) -> Ran {
    dagrun(p, b, prefix, &with_small("run", extra))
}

/// `cmd`, the small pipeline's overrides, then `extra`.
fn with_small<'a>(cmd: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![cmd];
    args.extend_from_slice(&SMALL);
    args.extend_from_slice(extra);
    args
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn set_of(r: &Ran, word: &str) -> BTreeSet<String> {
    r.stages(word).into_iter().collect()
}

/// Every record on the remote names objects that are there and hash to their names.
fn assert_remote_consistent(dir: &Path) {
    let Ok(records) = std::fs::read_dir(dir.join("records")) else { return };
    for entry in records.flatten() {
        let record: serde_json::Value = serde_json::from_slice(&std::fs::read(entry.path()).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", entry.path().display()));
        for (name, out) in record["outputs"].as_object().unwrap() {
            let hash = out["hash"].as_str().unwrap();
            let object = dir.join("objects").join(&hash[..2]).join(format!("{hash}.{}", out["ext"].as_str().unwrap()));
            let bytes = std::fs::read(&object).unwrap_or_else(|_| {
                panic!("{} names {name} = {}, which is missing", entry.path().display(), object.display())
            });
            assert_eq!(blake3::hash(&bytes).to_hex().as_str(), hash, "{}", object.display());
        }
    }
}

/// Store A pushes; a fresh store B computes nothing; B with another `sample` computes
/// what is below `sample` (up to early cutoff); A with the same overrides then
/// computes nothing.
fn ci_scenario(b: &Backend) {
    let (a, fresh) = (Project::shipped("pipeline.yaml"), Project::shipped("pipeline.yaml"));
    let r = run(&a, b, "ci", &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(set_of(&r, "ran"), set(&ALL), "{}", r.stdout);
    assert!(!r.stdout.contains("warning"), "{}", r.stdout);

    let r = run(&fresh, b, "ci", &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(set_of(&r, "ran"), set(&[]), "a fresh store computes nothing: {}", r.stdout);
    assert_eq!(set_of(&r, "pulled"), set(&ALL), "{}", r.stdout);
    assert!(r.stdout.contains("10 pulled"), "{}", r.stdout);

    // The trainer reads positives only: more negatives give the same model, byte for
    // byte, so early cutoff stops at `train`.
    let r = run(&fresh, b, "ci", &["-P", "sample.neg_ratio=5"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(set_of(&r, "ran"), set(&["sample", "train"]), "{}", r.stdout);
    let r = run(&fresh, b, "ci", &["-P", "sample.max_hist=10"]);
    assert_eq!(set_of(&r, "ran"), set(&BELOW_SAMPLE), "{}", r.stdout);

    for change in ["sample.neg_ratio=5", "sample.max_hist=10"] {
        let r = run(&a, b, "ci", &["-P", change]);
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        assert_eq!(set_of(&r, "ran"), set(&[]), "{change}: {}", r.stdout);
        assert!(!set_of(&r, "pulled").is_empty(), "{change}: {}", r.stdout);
    }
    for p in [&a, &fresh] {
        assert_eq!(p.dagrun(&["verify"]).code, 0);
    }
    if let Some(dir) = b.dir("ci") {
        assert_remote_consistent(&dir);
        assert_eq!(std::fs::read_dir(dir.join("runs")).unwrap().count(), 6, "every run's log is pushed too");
    }
}

#[test]
fn ci_reuses_what_another_store_pushed_to_s3() {
    ci_scenario(&Backend::s3());
}

#[test]
fn ci_reuses_what_another_store_pushed_to_a_shared_directory() {
    ci_scenario(&Backend::file());
}

/// moto's S3 server, if `moto_server` is installed (`.ci/run` installs it when pip can).
fn moto() -> Backend {
    let exe = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(&exe)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{exe}: {e}: this test needs moto[server] (pip install 'moto[server]')"));
    let b = Backend::Moto { child, port, bucket: "cache".into() };
    // moto serves once its port answers; the bucket is made through its API.
    let mut made = false;
    for _ in 0..600 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            made = http_put(port, "/cache");
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(made, "moto_server did not start on port {port}");
    b
}

/// A bare HTTP PUT (moto accepts unsigned requests): creates a bucket.
fn http_put(port: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let req =
        format!("PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    s.write_all(req.as_bytes()).is_ok() && s.read_to_string(&mut answer).is_ok() && answer.starts_with("HTTP/1.1 200")
}

#[test]
#[ignore = "needs moto_server (pip install 'moto[server]'); .ci/run includes it when installed"]
fn moto_server_ci_reuses_what_another_store_pushed() {
    ci_scenario(&moto());
}

#[test]
fn a_flipped_byte_in_a_remote_object_is_detected_and_not_used() {
    let b = Backend::s3();
    let (a, fresh) = (Project::shipped("pipeline.yaml"), Project::shipped("pipeline.yaml"));
    let mut args = vec!["--target", "encode"];
    assert_eq!(run(&a, &b, "c", &args).code, 0);
    let encode = a.record("encode");
    let out = &encode["outputs"]["train"];
    let hash = out["hash"].as_str().unwrap();
    let object = b.dir("c").unwrap().join("objects").join(&hash[..2]).join(format!("{hash}.parquet"));
    let mut bytes = std::fs::read(&object).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&object, &bytes).unwrap();

    args.push("-j1");
    let r = run(&fresh, &b, "c", &args);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(&format!("{hash}.parquet is corrupt")), "{}", r.stdout);
    assert!(r.stdout.contains("computing encode instead"), "{}", r.stdout);
    assert_eq!(r.outcome("encode").as_deref(), Some("ran"), "{}", r.stdout);
    assert_eq!(fresh.record("encode")["outputs"], encode["outputs"], "computed again, byte for byte");
    assert_eq!(fresh.dagrun(&["verify"]).code, 0);
    // The push after the computation mended the remote's copy.
    assert_remote_consistent(&b.dir("c").unwrap());
}

#[test]
fn a_push_killed_at_any_point_leaves_no_record_without_its_objects() {
    let b = Backend::s3();
    let spawn = |p: &Project, prefix: &str| {
        remote_cmd(p, &b, prefix, &with_small("run", &[]))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    // How long a whole pushing run takes, so the kill points spread over one.
    let t0 = std::time::Instant::now();
    assert!(spawn(&Project::shipped("pipeline.yaml"), "whole").wait().unwrap().success());
    let whole = t0.elapsed();
    let mut interrupted = 0;
    for i in 0..20u32 {
        let p = Project::shipped("pipeline.yaml");
        let prefix = format!("kill-{i}");
        let mut child = spawn(&p, &prefix);
        // The i-th point of a low-discrepancy sequence over (0, 1) of a run.
        std::thread::sleep(whole.mul_f64((f64::from(i) * 0.618_034 + 0.05) % 1.0));
        interrupted += usize::from(child.try_wait().unwrap().is_none());
        let _ = child.kill();
        let _ = child.wait();
        assert_remote_consistent(&b.dir(&prefix).unwrap());
        // What the killed run pushed is usable: a second run completes from it.
        let r = run(&p, &b, &prefix, &[]);
        assert_eq!(r.code, 0, "after kill {i}: {}{}", r.stdout, r.stderr);
        assert_eq!(p.dagrun(&["verify"]).code, 0);
        assert_remote_consistent(&b.dir(&prefix).unwrap());
    }
    eprintln!("{interrupted} of 20 kills landed mid-run ({whole:?} per run)");
    assert!(interrupted >= 5, "only {interrupted} of 20 kills landed before the run ended ({whole:?} each)");
}

#[test]
fn push_and_pull_by_hand() {
    let b = Backend::file();
    let (a, fresh) = (Project::shipped("pipeline.yaml"), Project::shipped("pipeline.yaml"));
    let r = run(&a, &b, "hand", &["--no-push", "--target", "sample"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!b.dir("hand").unwrap().join("records").exists(), "--no-push uploads nothing");
    let status = |args: &[&str]| dagrun(&a, &b, "hand", args);
    let r = status(&with_small("status", &["--remote"]));
    assert!(r.stdout.lines().any(|l| l.starts_with("sample") && l.contains("not on the remote")), "{}", r.stdout);

    let r = status(&with_small("push", &["encode"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stages("pushed"), ["clicks", "split", "encode"], "a stage and what it needs: {}", r.stdout);
    let r = status(&with_small("push", &[]));
    assert_eq!(r.stages("present"), ["clicks", "split", "encode"], "{}", r.stdout);
    assert_eq!(r.stages("pushed"), ["sample"], "{}", r.stdout);
    assert_eq!(r.outcome("train").as_deref(), Some("skipped"), "never run: nothing to push: {}", r.stdout);
    let r = status(&with_small("status", &["--remote"]));
    assert!(r.stdout.lines().any(|l| l.starts_with("sample") && l.contains("on the remote")), "{}", r.stdout);

    let r = dagrun(&fresh, &b, "hand", &with_small("pull", &["sample"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(set_of(&r, "pulled"), set(&["clicks", "split", "encode", "sample"]), "{}", r.stdout);
    let r = dagrun(&fresh, &b, "hand", &with_small("pull", &[]));
    assert_eq!(r.code, 0, "pull computes nothing and is not an error: {}", r.stderr);
    assert_eq!(r.outcome("train").as_deref(), Some("skipped"), "{}", r.stdout);
    assert!(r.stdout.contains("not on the remote"), "{}", r.stdout);
    assert_eq!(fresh.dagrun(&["verify"]).code, 0);
}

/// A port nothing listens on.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn with_env(mut c: Command, env: &[(&str, String)]) -> Ran {
    for (k, v) in env {
        c.env(k, v);
    }
    common::ran(c.output().unwrap())
}

#[test]
fn an_unreachable_remote_warns_and_the_run_goes_on_or_stops_when_required() {
    let p = Project::shipped("pipeline.yaml");
    let env = [
        ("DAGRUN_REMOTE", "s3://cache/x".to_string()),
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", dead_port())),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", s3::ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY", s3::SECRET_KEY.into()),
        ("AWS_REGION", "us-east-1".into()),
    ];
    let mut args = vec!["run", "--target", "encode", "--remote-required"];
    args.extend_from_slice(&SMALL);
    let r = with_env(p.command(&args), &env);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("remote s3://cache/x: listing records/ failed"), "{}", r.stderr);
    assert!(r.stderr.contains("is the remote reachable"), "{}", r.stderr);
    assert!(r.stages("ran").is_empty(), "nothing runs: {}", r.stdout);

    args.retain(|a| *a != "--remote-required");
    let r = with_env(p.command(&args), &env);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.stdout.matches("warning: remote s3://cache/x").count(), 1, "one warning, then local: {}", r.stdout);
    assert!(r.stdout.contains("going on without the remote"), "{}", r.stdout);
    assert_eq!(r.stages("ran"), ["clicks", "split", "encode"], "{}", r.stdout);
    for out in [&r.stdout, &r.stderr] {
        assert!(!out.contains(s3::SECRET_KEY) && !out.contains(s3::ACCESS_KEY), "{out}");
    }
}

#[test]
fn wrong_credentials_and_a_missing_bucket_are_named_without_the_secret() {
    let b = Backend::s3();
    let p = Project::shipped("pipeline.yaml");
    let wrong_secret = "not-the-secret-8d1e77".to_string();
    let mut args = vec!["run", "--target", "clicks", "--remote-required"];
    args.extend_from_slice(&SMALL);
    let mut c = remote_cmd(&p, &b, "x", &args);
    c.env("AWS_SECRET_ACCESS_KEY", &wrong_secret);
    let r = common::ran(c.output().unwrap());
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("check the credentials"), "{}", r.stderr);
    for out in [&r.stdout, &r.stderr] {
        assert!(!out.contains(&wrong_secret) && !out.contains(s3::ACCESS_KEY), "{out}");
    }

    let mut c = remote_cmd(&p, &b, "x", &args);
    c.env("DAGRUN_REMOTE", "s3://no-such-bucket/x");
    let r = common::ran(c.output().unwrap());
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("remote s3://no-such-bucket/x: listing records/ failed"), "{}", r.stderr);
    assert!(r.stderr.contains("does the bucket exist?"), "{}", r.stderr);
}

#[test]
fn a_run_with_every_record_local_makes_no_remote_request() {
    let b = Backend::s3();
    let p = Project::shipped("pipeline.yaml");
    assert_eq!(run(&p, &b, "n", &["--target", "encode"]).code, 0);
    let env: Vec<(&str, String)> = b.env();
    drop(b);
    // The server is gone: any request would fail and warn (or, required, exit 2).
    let mut args = vec!["run", "--target", "encode", "--remote-required"];
    args.extend_from_slice(&SMALL);
    let mut c = p.command(&args);
    c.env("DAGRUN_REMOTE", "s3://cache/n");
    let r = with_env(c, &env);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.stages("cached"), ["clicks", "split", "encode"], "{}", r.stdout);
    assert!(!r.stdout.contains("warning"), "{}", r.stdout);
}

#[test]
fn two_runs_on_one_store_with_different_samples_compute_the_shared_stages_once() {
    for round in 0..10 {
        let p = Project::shipped("pipeline.yaml");
        let spawn = |neg: &str| {
            let mut args = vec!["run", "--target", "sample", "-P"];
            let param = format!("sample.neg_ratio={neg}");
            args.push(&param);
            args.extend_from_slice(&SMALL);
            p.command(&args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
        };
        let (one, two) = (spawn("1"), spawn("2"));
        let (one, two) = (common::ran(one.wait_with_output().unwrap()), common::ran(two.wait_with_output().unwrap()));
        assert_eq!(
            (one.code, two.code),
            (0, 0),
            "round {round}: {}{}{}{}",
            one.stdout,
            one.stderr,
            two.stdout,
            two.stderr
        );
        for stage in ["clicks", "split", "encode"] {
            let ran = [&one, &two].iter().filter(|r| r.outcome(stage).as_deref() == Some("ran")).count();
            assert_eq!(ran, 1, "round {round}: {stage} ran {ran} times:\n{}\n{}", one.stdout, two.stdout);
        }
        assert_eq!((one.outcome("sample").as_deref(), two.outcome("sample").as_deref()), (Some("ran"), Some("ran")));
        assert_eq!(p.dagrun(&["verify"]).code, 0, "round {round}");
    }
}

#[test]
fn a_remote_url_of_no_known_kind_is_refused_before_anything_runs() {
    let p = Project::shipped("pipeline.yaml");
    let r = p.dagrun(&["run", "--remote", "ftp://user:pw@host/cache"]);
    assert_eq!(r.code, 2);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    insta::assert_snapshot!("unknown_remote_scheme", r.stderr);
    let r = p.dagrun(&["run", "--remote-required"]);
    assert_eq!(r.code, 2);
    insta::assert_snapshot!("remote_required_without_a_remote", r.stderr);
}

/// A `cmd` pipeline of one stage, `big`, whose output is what `command` prints.
fn one_stage(command: &str) -> Project {
    Project::new(&format!(
        "stages:\n  big:\n    kind: cmd\n    run: '{command} > \"$DAGRUN_OUTPUT_O\"'\n    outputs: [o.bin]\n"
    ))
}

#[test]
fn a_large_object_goes_up_in_parts_and_comes_back_whole() {
    let b = Backend::s3();
    // 40 MiB: above the single-request limit (16 MiB), five 8 MiB parts.
    let (a, fresh) = (one_stage("yes dagrun | head -c 41943040"), one_stage("yes dagrun | head -c 41943040"));
    let r = dagrun(&a, &b, "big", &["run"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains("warning"), "{}", r.stdout);
    assert_remote_consistent(&b.dir("big").unwrap());
    let r = dagrun(&fresh, &b, "big", &["run"]);
    assert_eq!(r.outcome("big").as_deref(), Some("pulled"), "{}{}", r.stdout, r.stderr);
    assert_eq!(fresh.record("big")["outputs"]["o"]["bytes"], 41_943_040);
    assert_eq!(fresh.dagrun(&["verify"]).code, 0);
}

#[test]
fn a_second_writer_of_a_key_with_other_outputs_is_told_the_stage_is_not_deterministic() {
    first_record_wins(&Backend::file());
}

#[test]
#[ignore = "needs moto_server (pip install 'moto[server]'); .ci/run includes it when installed"]
fn moto_server_keeps_the_first_record_of_a_key() {
    first_record_wins(&moto());
}

/// A nondeterministic stage run on two stores: the remote keeps the first record.
fn first_record_wins(b: &Backend) {
    let (a, other) = (one_stage("date +%s%N"), one_stage("date +%s%N"));
    assert_eq!(dagrun(&a, b, "nd", &["run"]).code, 0);
    // --force computes the key again instead of pulling it; the remote keeps the first record.
    let r = dagrun(&other, b, "nd", &["run", "--force", "big"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.outcome("big").as_deref(), Some("ran"), "{}", r.stdout);
    assert!(r.stdout.contains("whose o differ: stage big is not deterministic"), "{}", r.stdout);
    let third = Project::new(&a.read("pipeline.yaml"));
    let r = dagrun(&third, b, "nd", &["run"]);
    assert_eq!(r.outcome("big").as_deref(), Some("pulled"), "{}", r.stdout);
    assert_eq!(third.record("big")["outputs"], a.record("big")["outputs"], "the first writer's outputs");
    if let Some(dir) = b.dir("nd") {
        assert_remote_consistent(&dir);
    }
}

#[test]
fn two_machines_computing_the_same_keys_at_once_both_succeed() {
    let b = Backend::s3();
    let (one, two) = (Project::shipped("pipeline.yaml"), Project::shipped("pipeline.yaml"));
    let spawn = |p: &Project| {
        remote_cmd(p, &b, "race", &with_small("run", &[]))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (x, y) = (spawn(&one), spawn(&two));
    for r in [common::ran(x.wait_with_output().unwrap()), common::ran(y.wait_with_output().unwrap())] {
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        // The one output allowed to differ: the training log holds wall-clock seconds.
        for w in r.stdout.lines().filter(|l| l.contains("not deterministic")) {
            assert!(w.contains("whose log differ: stage train"), "{}", r.stdout);
        }
    }
    assert_remote_consistent(&b.dir("race").unwrap());
    assert_eq!(one.record("evaluate")["outputs"], two.record("evaluate")["outputs"]);
}

#[test]
fn a_remote_record_that_does_not_parse_or_names_another_key_is_not_used_and_is_replaced() {
    let b = Backend::file();
    let a = Project::shipped("pipeline.yaml");
    assert_eq!(run(&a, &b, "r", &["--target", "split"]).code, 0);
    let records = b.dir("r").unwrap().join("records");
    let clicks = records.join(format!("{}.json", a.record("clicks")["key"].as_str().unwrap()));
    let split = records.join(format!("{}.json", a.record("split")["key"].as_str().unwrap()));
    std::fs::write(&clicks, "{ not json").unwrap();
    // split's record now claims clicks' key.
    let text = std::fs::read_to_string(&split).unwrap();
    let (clicks_key, split_key) = (a.record("clicks")["key"].clone(), a.record("split")["key"].clone());
    std::fs::write(&split, text.replace(split_key.as_str().unwrap(), clicks_key.as_str().unwrap())).unwrap();

    let fresh = Project::shipped("pipeline.yaml");
    let r = run(&fresh, &b, "r", &["--target", "split", "-j1"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.stages("ran"), ["clicks", "split"], "{}", r.stdout);
    assert_eq!(r.stdout.matches("no readable record").count(), 2, "{}", r.stdout);
    assert_eq!(fresh.record("split")["outputs"], a.record("split")["outputs"]);
    // Its push replaced the broken records: a third store pulls both.
    let third = Project::shipped("pipeline.yaml");
    let r = run(&third, &b, "r", &["--target", "split"]);
    assert_eq!(r.stages("pulled"), ["clicks", "split"], "{}{}", r.stdout, r.stderr);
    assert_remote_consistent(&b.dir("r").unwrap());
}
