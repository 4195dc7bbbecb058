//! The engine's own stage kind `cmd`: an external program with declared inputs and
//! outputs, so Python, SQL or shell steps sit in the same DAG as the built-in kinds.
//!
//! The command runs under `sh -c` in the pipeline's directory and learns where
//! things are from its environment:
//!
//! | variable | value |
//! |---|---|
//! | `DAGRUN_INPUT_<NAME>` | path of input `name` |
//! | `DAGRUN_OUTPUT_<NAME>` | path output `name` must be written to |
//! | `DAGRUN_OUT_DIR` | the directory those outputs live in |
//! | `DAGRUN_PARAMS` | a JSON file with all params |
//! | `DAGRUN_PARAM_<NAME>` | each param: strings as they are, other values as JSON |
//! | `DAGRUN_METRICS` | where the command may write a JSON object of numeric metrics |
//! | `DAGRUN_STAGE` | the stage's name |

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use dagrun_kind::{Report, StageError};

use crate::pipeline::Stage;

/// `name` as an environment variable suffix: upper case, `-` as `_`.
fn env_name(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

/// Runs a `cmd` stage, writing its outputs into `out_dir`.
pub fn run(
    stage: &Stage,
    inputs: &BTreeMap<String, PathBuf>,
    out_dir: &Path,
    workdir: &Path,
) -> Result<Report, StageError> {
    let command = stage.command.as_deref().unwrap_or_default();
    let params_file = out_dir.join(".params.json");
    std::fs::write(&params_file, serde_json::to_vec_pretty(&stage.params).unwrap_or_default())?;
    let metrics_file = out_dir.join(".metrics.json");

    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(command).current_dir(workdir);
    cmd.env("DAGRUN_STAGE", &stage.name)
        .env("DAGRUN_OUT_DIR", out_dir)
        .env("DAGRUN_PARAMS", &params_file)
        .env("DAGRUN_METRICS", &metrics_file);
    for (name, path) in inputs {
        cmd.env(format!("DAGRUN_INPUT_{}", env_name(name)), path);
    }
    for o in &stage.outputs {
        cmd.env(format!("DAGRUN_OUTPUT_{}", env_name(&o.name)), out_dir.join(format!("{}.{}", o.name, o.ext)));
    }
    if let Some(params) = stage.params.as_object() {
        for (k, v) in params {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            cmd.env(format!("DAGRUN_PARAM_{}", env_name(k)), text);
        }
    }
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| StageError::Failed(format!("cannot start `sh -c {command}`: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(10).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let how = match output.status.code() {
            Some(code) => format!("exited with status {code}"),
            None => "was killed by a signal".to_string(),
        };
        let detail = if tail.is_empty() { String::new() } else { format!(":\n    {}", tail.join("\n    ")) };
        return Err(StageError::Failed(format!("command `{command}` {how}{detail}")));
    }
    let mut report = Report::default();
    if metrics_file.is_file() {
        let text = std::fs::read(&metrics_file)?;
        let metrics: BTreeMap<String, f64> = serde_json::from_slice(&text)
            .map_err(|e| StageError::Failed(format!("$DAGRUN_METRICS must hold a JSON object of numbers: {e}")))?;
        report.metrics = metrics;
    }
    Ok(report)
}
