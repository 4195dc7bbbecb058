//! The passes that turn `pipeline.yaml` into a checked [`Pipeline`]: kinds, outputs
//! and params of every stage (values validated by their kind), then inputs once
//! every output is known, then the order, then the checks. Nothing runs before
//! all of them pass.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use dagrun_kind::{Need, Wants};
use serde_saphyr::{Location, Spanned};

use super::checks::{self, Check, Operand};
use super::graph::{reorder, topological_order};
use super::overrides::{InputOverrides, ParamOverrides, split_overrides};
use super::yaml::{RawPipeline, RawStage, yaml_message};
use super::{Catalog, Kind, Output, Overrides, Pipeline, PipelineError, Source, Stage};

/// Reads, checks and orders the pipeline at `file`, with `overrides` applied.
pub fn load(file: &Path, overrides: &Overrides, catalog: Catalog) -> Result<Pipeline, PipelineError> {
    let text = std::fs::read_to_string(file)
        .map_err(|source| PipelineError::Read { file: file.display().to_string(), source })?;
    parse(file, &text, overrides, catalog)
}

/// Checks pipeline `text` as if read from `file`.
pub fn parse(file: &Path, text: &str, overrides: &Overrides, catalog: Catalog) -> Result<Pipeline, PipelineError> {
    let ctx = Ctx { file: file.display().to_string() };
    let raw: RawPipeline = serde_saphyr::from_str(text).map_err(|e| {
        let loc = e.location().unwrap_or(Location::UNKNOWN);
        ctx.at(loc, yaml_message(&e.without_snippet().to_string()))
    })?;
    let raw_stages = raw.stages.value.0;
    if raw_stages.is_empty() {
        return Err(ctx.at(raw.stages.referenced, "`stages` is empty: declare at least one stage".into()));
    }
    let names: HashMap<&str, usize> = raw_stages.iter().enumerate().map(|(i, (n, _))| (n.value.as_str(), i)).collect();
    let (param_overrides, input_overrides) = split_overrides(overrides, &names)?;

    let mut stages = raw_stages
        .iter()
        .map(|(name, rs)| declare(&ctx, catalog, name, rs, &param_overrides))
        .collect::<Result<Vec<_>, _>>()?;
    let pass = InputPass {
        ctx: &ctx,
        dir: file.parent().unwrap_or(Path::new(".")),
        names: &names,
        overrides: &input_overrides,
        allow_missing: overrides.allow_missing_paths,
    };
    let mut input_locs = Vec::with_capacity(stages.len());
    for (i, (name, rs)) in raw_stages.iter().enumerate() {
        let (inputs, locs) = pass.inputs(&stages, i, name, rs)?;
        stages[i].upstream = upstream_of(&inputs, &names);
        stages[i].inputs = inputs;
        input_locs.push(locs);
    }
    let order =
        topological_order(&stages).map_err(|cycle| cycle_error(&ctx, &stages, &raw_stages, &input_locs, &cycle))?;
    let stages = reorder(stages, &order);
    let checks = raw.checks.iter().map(|c| parse_check(&ctx, &stages, c)).collect::<Result<_, _>>()?;
    Ok(Pipeline { file: file.to_path_buf(), stages, checks })
}

struct Ctx {
    file: String,
}

impl Ctx {
    fn at(&self, loc: Location, message: String) -> PipelineError {
        PipelineError::At { file: self.file.clone(), line: loc.line(), column: loc.column(), message }
    }
}

/// Pass 1: a stage's kind, outputs and checked params; its inputs come in pass 2.
fn declare(
    ctx: &Ctx,
    catalog: Catalog,
    name: &Spanned<String>,
    rs: &RawStage,
    param_overrides: &ParamOverrides,
) -> Result<Stage, PipelineError> {
    check_stage_name(ctx, name)?;
    let kind = catalog.lookup(&rs.kind.value).ok_or_else(|| {
        ctx.at(
            rs.kind.referenced,
            format!(
                "stage `{}`: unknown kind `{}`; known kinds: {}",
                name.value,
                rs.kind.value,
                catalog.names().join(", ")
            ),
        )
    })?;
    Ok(Stage {
        name: name.value.clone(),
        kind,
        description: rs.description.clone(),
        inputs: BTreeMap::new(),
        params: stage_params(ctx, &name.value, kind, rs, param_overrides.get(name.value.as_str()))?,
        outputs: stage_outputs(ctx, &name.value, kind, rs)?,
        command: rs.run.as_ref().map(|r| r.value.clone()),
        upstream: Vec::new(),
    })
}

fn check_stage_name(ctx: &Ctx, name: &Spanned<String>) -> Result<(), PipelineError> {
    let ok = !name.value.is_empty() && name.value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ctx.at(name.referenced, format!("stage name `{}`: use letters, digits, `_` and `-` only", name.value)))
    }
}

fn stage_outputs(ctx: &Ctx, stage: &str, kind: Kind, rs: &RawStage) -> Result<Vec<Output>, PipelineError> {
    match kind {
        Kind::Builtin(spec) => {
            if let Some(o) = &rs.outputs {
                return Err(ctx.at(
                    o.referenced,
                    format!("stage `{stage}`: kind `{}` declares its own outputs; remove `outputs`", spec.name),
                ));
            }
            if let Some(r) = &rs.run {
                return Err(ctx.at(r.referenced, format!("stage `{stage}`: `run` is only for kind `cmd`")));
            }
            Ok(spec
                .outputs
                .iter()
                .map(|o| Output { name: o.name.to_string(), ext: o.format.ext().to_string() })
                .collect())
        }
        Kind::Cmd => cmd_outputs(ctx, stage, rs),
    }
}

/// A `cmd` stage's `run:` and `outputs: [name.ext, …]`.
fn cmd_outputs(ctx: &Ctx, stage: &str, rs: &RawStage) -> Result<Vec<Output>, PipelineError> {
    if rs.run.as_ref().is_none_or(|r| r.value.trim().is_empty()) {
        return Err(ctx.at(rs.kind.referenced, format!("stage `{stage}`: kind `cmd` needs `run: <shell command>`")));
    }
    let Some(decl) = &rs.outputs else {
        return Err(
            ctx.at(rs.kind.referenced, format!("stage `{stage}`: kind `cmd` needs `outputs: [<name>.<ext>, …]`"))
        );
    };
    let mut outputs: Vec<Output> = Vec::new();
    for o in &decl.value {
        let parsed = o.value.split_once('.').filter(|(n, e)| {
            !n.is_empty()
                && !e.is_empty()
                && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                && e.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
        });
        let Some((name, ext)) = parsed else {
            return Err(
                ctx.at(o.referenced, format!("stage `{stage}`: output `{}` must look like `name.ext`", o.value))
            );
        };
        if outputs.iter().any(|x| x.name == name) {
            return Err(ctx.at(o.referenced, format!("stage `{stage}`: output `{name}` is declared twice")));
        }
        outputs.push(Output { name: name.into(), ext: ext.into() });
    }
    Ok(outputs)
}

/// The stage's params with `-P` overrides applied, checked and validated by its kind.
fn stage_params(
    ctx: &Ctx,
    stage: &str,
    kind: Kind,
    rs: &RawStage,
    overrides: Option<&Vec<(String, serde_json::Value, &'static str)>>,
) -> Result<serde_json::Value, PipelineError> {
    let mut map = serde_json::Map::new();
    let mut locs: HashMap<String, Location> = HashMap::new();
    for (k, v) in &rs.params.0 {
        map.insert(k.value.clone(), v.value.clone());
        locs.insert(k.value.clone(), k.referenced);
    }
    let mut flags: HashMap<&str, &str> = HashMap::new();
    for (k, v, flag) in overrides.into_iter().flatten() {
        map.insert(k.clone(), v.clone());
        flags.insert(k, flag);
    }
    let Kind::Builtin(spec) = kind else {
        // A cmd stage's params are the user's own; they only need to be plain values.
        return Ok(serde_json::Value::Object(map));
    };
    (spec.params)(serde_json::Value::Object(map)).map_err(|e| {
        let key = e.key.clone().unwrap_or_default();
        if let Some(flag) = flags.get(key.as_str()) {
            return PipelineError::CommandLine(format!("{flag} {stage}.{key}: {}", e.message));
        }
        let loc = locs.get(&key).copied().unwrap_or(rs.kind.referenced);
        let what = if key.is_empty() { "params".to_string() } else { format!("param `{key}`") };
        ctx.at(loc, format!("stage `{stage}`: {what} of kind `{}`: {}", spec.name, e.message))
    })
}

/// Pass 2: where each stage reads its inputs from.
struct InputPass<'a> {
    ctx: &'a Ctx,
    dir: &'a Path,
    names: &'a HashMap<&'a str, usize>,
    overrides: &'a InputOverrides<'a>,
    allow_missing: bool,
}

type Inputs = (BTreeMap<String, Source>, BTreeMap<String, Location>);

impl InputPass<'_> {
    /// Stage `i`'s inputs from the file, then from `-I`; every declared input present.
    fn inputs(
        &self,
        stages: &[Stage],
        i: usize,
        name: &Spanned<String>,
        rs: &RawStage,
    ) -> Result<Inputs, PipelineError> {
        let mut inputs = BTreeMap::new();
        let mut locs = BTreeMap::new();
        let cli = self.overrides.get(name.value.as_str());
        for (iname, ivalue) in &rs.inputs.0 {
            if let Some(known) = unknown_input(stages[i].kind, &iname.value) {
                return Err(self.ctx.at(iname.referenced, format!("stage `{}`: {known}", name.value)));
            }
            if cli.is_some_and(|list| list.iter().any(|(k, _)| *k == iname.value)) {
                continue;
            }
            let source =
                self.resolve(stages, &name.value, &ivalue.value).map_err(|m| self.ctx.at(ivalue.referenced, m))?;
            inputs.insert(iname.value.clone(), source);
            locs.insert(iname.value.clone(), ivalue.referenced);
        }
        for (iname, path) in cli.into_iter().flatten() {
            if let Some(known) = unknown_input(stages[i].kind, iname) {
                return Err(PipelineError::CommandLine(format!("-I {}.{iname}: {known}", name.value)));
            }
            if !path.exists() && !self.allow_missing {
                let shown = path.display();
                return Err(PipelineError::CommandLine(format!(
                    "-I {}.{iname}={shown}: no such file or directory",
                    name.value
                )));
            }
            inputs.insert(iname.clone(), Source::Path(std::path::absolute(path).unwrap_or_else(|_| path.clone())));
            locs.insert(iname.clone(), name.referenced);
        }
        if let Kind::Builtin(spec) = stages[i].kind {
            self.declared(spec, &stages[i].params, name, &locs)?;
        }
        Ok((inputs, locs))
    }

    /// A built-in stage's inputs (`given`, with where each was given) against what its
    /// kind declares and what its checked params ask for or rule out.
    fn declared(
        &self,
        spec: &dagrun_kind::KindSpec,
        params: &serde_json::Value,
        name: &Spanned<String>,
        given: &BTreeMap<String, Location>,
    ) -> Result<(), PipelineError> {
        let stage = &name.value;
        if let Some(missing) = spec.inputs.iter().find(|n| !given.contains_key(**n)) {
            let hint = format!("add `inputs: {{{missing}: <stage>.<output> or a path}}`");
            let message = format!("stage `{stage}`: kind `{}` needs input `{missing}` ({hint})", spec.name);
            return Err(self.ctx.at(name.referenced, message));
        }
        let needs = (spec.needs)(params);
        let wrong = needs.iter().find(|n| given.contains_key(n.input) != (n.wants == Wants::Given));
        let Some(&Need { param, input, wants }) = wrong else { return Ok(()) };
        Err(match wants {
            Wants::Given => self.ctx.at(
                name.referenced,
                format!(
                    "stage `{stage}`: param `{param}` of kind `{}` needs input `{input}`; add `inputs: {{{input}: <stage>.<output> or a path}}` or change `{param}`",
                    spec.name
                ),
            ),
            Wants::LeftOut => self.ctx.at(
                given[input],
                format!(
                    "stage `{stage}`: input `{input}` is given but param `{param}` of kind `{}` leaves it unread; drop the input or change `{param}`",
                    spec.name
                ),
            ),
        })
    }

    /// The one rule: a value is a `stage.output` reference when it has no `/`, does
    /// not start with `.`, and the part before its first `.` names a stage of the
    /// pipeline; anything else is a path relative to the pipeline's directory.
    fn resolve(&self, stages: &[Stage], stage: &str, value: &str) -> Result<Source, String> {
        let looks_like_path = value.contains('/') || value.starts_with('.');
        if !looks_like_path
            && let Some((s, o)) = value.split_once('.')
            && let Some(&j) = self.names.get(s)
        {
            return self.reference(&stages[j], stage, value, o);
        }
        // Absolute: a `cmd` stage runs in the pipeline's directory, not the caller's.
        let path = self.dir.join(value);
        let path = std::path::absolute(&path).unwrap_or(path);
        if !path.exists() && !self.allow_missing {
            return Err(match value.split_once('.') {
                Some((s, _)) if !looks_like_path => format!(
                    "`{value}` is neither an output of a stage (no stage `{s}`) nor an existing file or directory"
                ),
                _ => format!("input path `{value}` does not exist (relative paths start at the pipeline's directory)"),
            });
        }
        Ok(Source::Path(path))
    }

    /// `value` read as output `output` of stage `up`; when that fails and a file of
    /// that name exists, the message says how to read the file instead.
    fn reference(&self, up: &Stage, stage: &str, value: &str, output: &str) -> Result<Source, String> {
        let problem = if up.name == stage {
            Some(format!("stage `{stage}` cannot read its own output `{value}`"))
        } else if !up.outputs.iter().any(|x| x.name == output) {
            let known: Vec<_> = up.outputs.iter().map(|x| x.name.as_str()).collect();
            Some(format!("stage `{}` has no output `{output}`; its outputs: {}", up.name, known.join(", ")))
        } else {
            None
        };
        match problem {
            None => Ok(Source::Stage { stage: up.name.clone(), output: output.into() }),
            Some(p) if self.dir.join(value).exists() => {
                Err(format!("{p} (`{value}` names stage `{}`; to read the file `{value}`, write `./{value}`)", up.name))
            }
            Some(p) => Err(p),
        }
    }
}

/// The message for an input name the kind does not declare, if `name` is one.
fn unknown_input(kind: Kind, name: &str) -> Option<String> {
    match kind {
        Kind::Builtin(spec) if !spec.inputs.contains(&name) && !spec.optional_inputs.contains(&name) => {
            let optional = spec.optional_inputs.iter().map(|o| format!("{o} (optional)"));
            let known: Vec<String> = spec.inputs.iter().map(|i| i.to_string()).chain(optional).collect();
            Some(match known.is_empty() {
                true => format!("kind `{}` has no input `{name}`; it takes no inputs", spec.name),
                false => format!("kind `{}` has no input `{name}`; its inputs: {}", spec.name, known.join(", ")),
            })
        }
        _ => None,
    }
}

/// Indices of the stages that `inputs` read from, sorted, once each.
fn upstream_of(inputs: &BTreeMap<String, Source>, names: &HashMap<&str, usize>) -> Vec<usize> {
    let mut upstream: Vec<usize> = inputs
        .values()
        .filter_map(|s| match s {
            Source::Stage { stage, .. } => names.get(stage.as_str()).copied(),
            Source::Path(_) => None,
        })
        .collect();
    upstream.sort_unstable();
    upstream.dedup();
    upstream
}

/// The cycle `cycle` (file indices, closed) as an error at the input that closes it.
fn cycle_error(
    ctx: &Ctx,
    stages: &[Stage],
    raw: &[(Spanned<String>, RawStage)],
    input_locs: &[BTreeMap<String, Location>],
    cycle: &[usize],
) -> PipelineError {
    let names: Vec<&str> = cycle.iter().map(|&i| stages[i].name.as_str()).collect();
    let (first, closing) = (cycle[0], cycle[1]);
    let loc = stages[closing]
        .inputs
        .iter()
        .find(|(_, s)| matches!(s, Source::Stage { stage, .. } if *stage == stages[first].name))
        .and_then(|(k, _)| input_locs[closing].get(k).copied())
        .unwrap_or(raw[closing].0.referenced);
    ctx.at(loc, format!("the stages form a cycle: {}", names.join(" -> ")))
}

/// A check, whose metrics must name stages of the pipeline: a typo in a CI gate must
/// not switch the gate off.
fn parse_check(ctx: &Ctx, stages: &[Stage], text: &Spanned<String>) -> Result<Check, PipelineError> {
    let check = checks::parse(&text.value).map_err(|m| ctx.at(text.referenced, m))?;
    for operand in [&check.lhs, &check.rhs] {
        if let Operand::Metric(m) = operand
            && let Some((stage, _)) = m.split_once('.')
            && !stages.iter().any(|s| s.name == stage)
        {
            let known: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
            let message = format!("check `{}`: no stage `{stage}`; stages: {}", text.value, known.join(", "));
            return Err(ctx.at(text.referenced, message));
        }
    }
    Ok(check)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Pipeline, PipelineError> {
        parse(Path::new("p.yaml"), text, &Overrides::default(), Catalog::new(&[]))
    }

    /// A catalog of one kind, `scale`, whose param `factor` must be positive.
    static TINY: [dagrun_kind::KindSpec; 1] = [dagrun_kind::KindSpec {
        name: "scale",
        summary: "a kind for the loader's tests",
        inputs: &[],
        optional_inputs: &[],
        outputs: &[dagrun_kind::OutputSpec { name: "out", format: dagrun_kind::Format::Json }],
        fingerprint: "0000000000000000000000000000000000000000000000000000000000000000",
        params: scale_params,
        needs: dagrun_kind::needs_nothing,
        run: |_| Ok(dagrun_kind::Report::default()),
    }];

    fn scale_params(v: serde_json::Value) -> Result<serde_json::Value, dagrun_kind::ParamError> {
        let factor = v.get("factor").and_then(|f| f.as_f64()).unwrap_or(1.0);
        dagrun_kind::params::positive("factor", factor)?;
        Ok(serde_json::json!({ "factor": factor }))
    }

    #[test]
    fn a_kind_s_param_rule_is_reported_at_the_value_s_key() {
        let text = "stages:\n  s:\n    kind: scale\n    params:\n      factor: -2\n";
        let e = parse(Path::new("p.yaml"), text, &Overrides::default(), Catalog::new(&TINY)).err().unwrap();
        assert_eq!(
            e.to_string(),
            "p.yaml:5:7: stage `s`: param `factor` of kind `scale`: must be a number above 0, not -2"
        );
        let ok = "stages:\n  s:\n    kind: scale\n";
        let overrides = Overrides { params: vec!["s.factor=0".into()], ..Overrides::default() };
        let e = parse(Path::new("p.yaml"), ok, &overrides, Catalog::new(&TINY)).err().unwrap();
        assert_eq!(e.to_string(), "-P s.factor: must be a number above 0, not 0");
        let p = parse(Path::new("p.yaml"), ok, &Overrides::default(), Catalog::new(&TINY)).ok().unwrap();
        assert_eq!(p.stages[0].params, serde_json::json!({"factor": 1.0}), "defaults filled in");
    }

    #[test]
    fn a_built_in_kind_is_unknown_without_its_catalog() {
        let text = "stages:\n  s:\n    kind: scale\n";
        let e = load_text(text).err().unwrap().to_string();
        assert_eq!(e, "p.yaml:3:11: stage `s`: unknown kind `scale`; known kinds: cmd");
    }

    #[test]
    fn check_on_a_missing_stage_is_an_error_at_its_line() {
        let text =
            "stages:\n  a:\n    kind: cmd\n    run: 'true'\n    outputs: [x.json]\nchecks:\n  - nosuch.hr@50 >= 0.1\n";
        let e = load_text(text).err().expect("an error").to_string();
        assert!(e.starts_with("p.yaml:7:5: check `nosuch.hr@50 >= 0.1`: no stage `nosuch`"), "{e}");
    }

    #[test]
    fn check_on_a_stage_of_the_pipeline_loads() {
        let text = "stages:\n  a:\n    kind: cmd\n    run: 'true'\n    outputs: [x.json]\nchecks:\n  - a.m >= 0.1\n";
        assert_eq!(load_text(text).map(|p| p.checks.len()).ok(), Some(1));
    }
}
