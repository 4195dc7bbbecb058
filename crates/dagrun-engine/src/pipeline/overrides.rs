//! `-P stage.param=value` and `-I stage.input=PATH` from the command line, checked
//! against the pipeline's stage names and typed as YAML would type them.

use std::collections::HashMap;
use std::path::PathBuf;

use super::PipelineError;

/// Command-line changes applied on top of the file: `-P stage.param=value`, `-I stage.input=PATH`.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub params: Vec<String>,
    pub inputs: Vec<String>,
    /// Accept input paths that do not exist (for commands that never read them).
    pub allow_missing_paths: bool,
}

pub(crate) type ParamOverrides<'a> = HashMap<&'a str, Vec<(String, serde_json::Value)>>;
pub(crate) type InputOverrides<'a> = HashMap<&'a str, Vec<(String, PathBuf)>>;

pub(crate) fn split_overrides<'a>(
    overrides: &Overrides,
    names: &HashMap<&'a str, usize>,
) -> Result<(ParamOverrides<'a>, InputOverrides<'a>), PipelineError> {
    let mut params: ParamOverrides = HashMap::new();
    let mut inputs: InputOverrides = HashMap::new();
    for (flag, list) in [("-P", &overrides.params), ("-I", &overrides.inputs)] {
        for item in list {
            let parsed = item
                .split_once('=')
                .and_then(|(lhs, rhs)| lhs.split_once('.').map(|(s, k)| (s, k, rhs)))
                .filter(|(s, k, _)| !s.is_empty() && !k.is_empty());
            let Some((stage, key, value)) = parsed else {
                return Err(PipelineError::CommandLine(format!(
                    "{flag} {item}: expected `stage.{}=value`",
                    if flag == "-P" { "param" } else { "input" }
                )));
            };
            let Some((&stage, _)) = names.get_key_value(stage) else {
                return Err(PipelineError::CommandLine(format!("{flag} {item}: no stage `{stage}` in the pipeline")));
            };
            if flag == "-P" {
                // Typed as YAML would type it: `5` is a number, `[64, 32]` a list.
                let v: serde_json::Value =
                    serde_saphyr::from_str(value).unwrap_or(serde_json::Value::String(value.into()));
                params.entry(stage).or_default().push((key.into(), v));
            } else {
                inputs.entry(stage).or_default().push((key.into(), PathBuf::from(value)));
            }
        }
    }
    Ok((params, inputs))
}
