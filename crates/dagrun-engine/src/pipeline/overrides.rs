//! `-P stage.param=value`, a sweep point's `-S` values and `-I stage.input=PATH` from
//! the command line, checked against the pipeline's stage names and typed as YAML
//! would type them; errors name the flag the value came with.

use std::collections::HashMap;
use std::path::PathBuf;

use super::PipelineError;

/// Command-line changes applied on top of the file: `-P stage.param=value`, `-I stage.input=PATH`.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub params: Vec<String>,
    /// One point of a `-S` sweep, `stage.param=value` each (see [`sweep_points`]).
    pub sweep: Vec<String>,
    pub inputs: Vec<String>,
    /// Accept input paths that do not exist (for commands that never read them).
    pub allow_missing_paths: bool,
}

/// Per stage: (param, value, the flag it came with).
pub(crate) type ParamOverrides<'a> = HashMap<&'a str, Vec<(String, serde_json::Value, &'static str)>>;
pub(crate) type InputOverrides<'a> = HashMap<&'a str, Vec<(String, PathBuf)>>;

pub(crate) fn split_overrides<'a>(
    overrides: &Overrides,
    names: &HashMap<&'a str, usize>,
) -> Result<(ParamOverrides<'a>, InputOverrides<'a>), PipelineError> {
    let mut params: ParamOverrides = HashMap::new();
    let mut inputs: InputOverrides = HashMap::new();
    for (flag, list) in [("-P", &overrides.params), ("-S", &overrides.sweep), ("-I", &overrides.inputs)] {
        for item in list {
            let parsed = item
                .split_once('=')
                .and_then(|(lhs, rhs)| lhs.split_once('.').map(|(s, k)| (s, k, rhs)))
                .filter(|(s, k, _)| !s.is_empty() && !k.is_empty());
            let Some((stage, key, value)) = parsed else {
                return Err(PipelineError::CommandLine(format!(
                    "{flag} {item}: expected `stage.{}=value`",
                    if flag == "-I" { "input" } else { "param" }
                )));
            };
            let Some((&stage, _)) = names.get_key_value(stage) else {
                return Err(PipelineError::CommandLine(format!("{flag} {item}: no stage `{stage}` in the pipeline")));
            };
            if flag == "-I" {
                inputs.entry(stage).or_default().push((key.into(), PathBuf::from(value)));
            } else {
                // Typed as YAML would type it: `5` is a number, `[64, 32]` a list.
                let v: serde_json::Value =
                    serde_saphyr::from_str(value).unwrap_or(serde_json::Value::String(value.into()));
                params.entry(stage).or_default().push((key.into(), v, flag));
            }
        }
    }
    Ok((params, inputs))
}

/// The points of a sweep: every combination of the values of each
/// `-S stage.param=v1,v2,…`, as `-P` overrides (`stage.param=v`), first flag slowest.
/// Values split at commas outside brackets, so `[64, 32],[32]` is two lists.
pub fn sweep_points(sweeps: &[String]) -> Result<Vec<Vec<String>>, PipelineError> {
    let mut points: Vec<Vec<String>> = vec![Vec::new()];
    for item in sweeps {
        let (lhs, values) = item
            .split_once('=')
            .filter(|(lhs, _)| lhs.split_once('.').is_some_and(|(s, k)| !s.is_empty() && !k.is_empty()))
            .ok_or_else(|| PipelineError::CommandLine(format!("-S {item}: expected `stage.param=v1,v2,…`")))?;
        let values = split_top_level(values);
        if values.iter().any(|v| v.trim().is_empty()) {
            return Err(PipelineError::CommandLine(format!("-S {item}: a value is empty; list them as `v1,v2,…`")));
        }
        points = points
            .into_iter()
            .flat_map(|p| values.iter().map(move |v| [p.clone(), vec![format!("{lhs}={}", v.trim())]].concat()))
            .collect();
    }
    Ok(points)
}

/// `text` split at the commas that no bracket encloses.
fn split_top_level(text: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0, Vec::new());
    for (i, c) in text.char_indices() {
        match c {
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_make_a_grid_first_flag_slowest() {
        let points = sweep_points(&["a.x=1,2".into(), "b.y=[64, 32],[32]".into()]).unwrap();
        assert_eq!(
            points,
            [
                vec!["a.x=1", "b.y=[64, 32]"],
                vec!["a.x=1", "b.y=[32]"],
                vec!["a.x=2", "b.y=[64, 32]"],
                vec!["a.x=2", "b.y=[32]"],
            ]
        );
        assert_eq!(sweep_points(&[]).unwrap(), [Vec::<String>::new()], "no sweep: one point, the pipeline as it is");
    }

    #[test]
    fn bad_sweeps_say_what_is_wrong() {
        assert!(sweep_points(&["a.x=".into()]).unwrap_err().to_string().contains("a value is empty"));
        assert!(sweep_points(&["a.x=1,,2".into()]).unwrap_err().to_string().contains("a value is empty"));
        assert!(sweep_points(&["ax=1".into()]).unwrap_err().to_string().contains("expected `stage.param=v1,v2,…`"));
    }
}
