//! Helpers shared by the integration tests: a temp project and the real `dagrun` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary directory holding a pipeline; `dagrun` runs with it as working directory.
pub struct Project {
    pub dir: tempfile::TempDir,
}

/// What one `dagrun` invocation did.
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// The outcome word (`ran`, `cached`, `failed`, `skipped`) printed for `stage`.
    pub fn outcome(&self, stage: &str) -> Option<String> {
        self.stdout.lines().find_map(|l| {
            let mut words = l.split_whitespace();
            let outcome = words.next()?;
            (words.next()? == stage).then(|| outcome.to_string())
        })
    }

    /// Stages with outcome `word`, in the order printed.
    pub fn stages(&self, word: &str) -> Vec<String> {
        self.stdout
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                (words.next()? == word).then(|| words.next().map(str::to_string))?
            })
            .collect()
    }
}

impl Project {
    pub fn new(pipeline: &str) -> Project {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("pipeline.yaml"), pipeline).expect("write pipeline");
        Project { dir }
    }

    /// A project holding a copy of a pipeline shipped in this repository.
    pub fn shipped(rel: &str) -> Project {
        Project::new(&shipped_text(rel))
    }

    /// The newest record of `stage` in the default store, as JSON.
    pub fn record(&self, stage: &str) -> serde_json::Value {
        serde_json::from_str(&self.read(&format!("artifacts/latest/{stage}/.record.json"))).expect("a record")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap_or_default()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dagrun"));
        c.args(args).current_dir(self.path()).env_remove("DAGRUN_STORE").env_remove("DAGRUN_REMOTE");
        c
    }

    pub fn dagrun(&self, args: &[&str]) -> Ran {
        ran(self.command(args).output().expect("run dagrun"))
    }

    pub fn store(&self) -> PathBuf {
        self.path().join("artifacts")
    }
}

/// The text of a pipeline shipped in this repository.
pub fn shipped_text(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).expect("shipped pipeline")
}

pub fn ran(out: Output) -> Ran {
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The MovieLens-100k folder beside the checkout. Tests that need it are `#[ignore]`d,
/// so they count as skipped where it is absent; run with `--include-ignored` they
/// fail here, loudly, if it is still absent.
pub fn movielens() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/ml-100k");
    assert!(dir.join("ml-100k.inter").is_file(), "{} is absent: this test needs MovieLens-100k", dir.display());
    dir.canonicalize().unwrap()
}
