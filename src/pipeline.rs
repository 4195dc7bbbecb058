//! Reading and checking `pipeline.yaml`: stages, their inputs and params, the DAG.
//!
//! Every mistake is reported with the file, line and column it comes from; the
//! checked [`Pipeline`] is what every command works on.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_saphyr::{Location, Spanned};

use crate::kind::Kind;
pub use crate::overrides::Overrides;
use crate::overrides::split_overrides;

/// A user mistake in the pipeline or in a command-line override (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("cannot read {file}: {source}")]
    Read { file: String, source: std::io::Error },
    /// A mistake at a place in the pipeline file.
    #[error("{file}:{line}:{column}: {message}")]
    At { file: String, line: u64, column: u64, message: String },
    /// A mistake in a `-P`/`-I` override or a target on the command line.
    #[error("{0}")]
    CommandLine(String),
}

/// Where a stage reads one of its inputs from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An output of another stage of the pipeline.
    Stage { stage: String, output: String },
    /// A file or directory outside the store, hashed by content.
    Path(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Stage { stage, output } => write!(f, "{stage}.{output}"),
            Source::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// One output a stage writes: `<name>.<ext>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub name: String,
    pub ext: String,
}

/// One checked stage.
#[derive(Clone)]
pub struct Stage {
    pub name: String,
    pub kind: Kind,
    pub description: Option<String>,
    /// Input name → where it comes from, sorted by input name.
    pub inputs: BTreeMap<String, Source>,
    /// Params with every default filled in (a JSON object).
    pub params: serde_json::Value,
    pub outputs: Vec<Output>,
    /// The shell command of a `cmd` stage.
    pub command: Option<String>,
    /// Indices of the stages this one reads from.
    pub upstream: Vec<usize>,
}

/// A checked pipeline: stages in topological order (upstream before downstream).
pub struct Pipeline {
    pub file: PathBuf,
    pub stages: Vec<Stage>,
    /// Metric thresholds such as `evaluate.hr@50 >= 0.33`.
    pub checks: Vec<crate::checks::Check>,
}

impl Pipeline {
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }

    /// The directory relative paths in the pipeline are resolved against.
    pub fn dir(&self) -> &Path {
        match self.file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }

    /// Indices of the stages that read (directly or not) from stage `i`.
    pub fn descendants(&self, i: usize) -> Vec<usize> {
        let mut marked = vec![false; self.stages.len()];
        marked[i] = true;
        let mut out = Vec::new();
        // Topological order: one forward sweep reaches every descendant.
        for (j, s) in self.stages.iter().enumerate().skip(i + 1) {
            if s.upstream.iter().any(|&u| marked[u]) {
                marked[j] = true;
                out.push(j);
            }
        }
        out
    }

    /// `targets` and everything they need, as a mask over the stages.
    pub fn needed_by(&self, targets: &[usize]) -> Vec<bool> {
        let mut needed = vec![false; self.stages.len()];
        for &t in targets {
            needed[t] = true;
        }
        for j in (0..self.stages.len()).rev() {
            if needed[j] {
                for &u in &self.stages[j].upstream {
                    needed[u] = true;
                }
            }
        }
        needed
    }
}

// ---- raw YAML shape -------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    stages: Spanned<Ordered<Spanned<String>, RawStage>>,
    #[serde(default)]
    checks: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    kind: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    inputs: Ordered<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    params: Ordered<Spanned<String>, Spanned<serde_json::Value>>,
    /// Only for `cmd`: the files it writes, e.g. `[model.json, scores.parquet]`.
    #[serde(default)]
    outputs: Option<Spanned<Vec<Spanned<String>>>>,
    /// Only for `cmd`: the shell command.
    #[serde(default)]
    run: Option<Spanned<String>>,
}

/// A YAML mapping kept in the order it was written (duplicate keys are rejected
/// by the parser before they get here).
struct Ordered<K, V>(Vec<(K, V)>);

impl<K, V> Default for Ordered<K, V> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for Ordered<K, V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<K, V>(std::marker::PhantomData<(K, V)>);
        impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for V2<K, V> {
            type Value = Ordered<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    out.push(entry);
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V2(std::marker::PhantomData))
    }
}

// ---- loading ----------------------------------------------------------------

/// Reads, checks and orders the pipeline at `file`, with `overrides` applied.
pub fn load(file: &Path, overrides: &Overrides) -> Result<Pipeline, PipelineError> {
    let text = std::fs::read_to_string(file)
        .map_err(|source| PipelineError::Read { file: file.display().to_string(), source })?;
    parse(file, &text, overrides)
}

/// Checks pipeline `text` as if read from `file`.
pub fn parse(file: &Path, text: &str, overrides: &Overrides) -> Result<Pipeline, PipelineError> {
    let ctx = Ctx { file: file.display().to_string() };
    let raw: RawPipeline = serde_saphyr::from_str(text).map_err(|e| {
        let loc = e.location().unwrap_or(Location::UNKNOWN);
        let msg = e.without_snippet().to_string();
        ctx.at(loc, yaml_message(&msg))
    })?;
    let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let stages_loc = raw.stages.referenced;
    let raw_stages = raw.stages.value.0;
    if raw_stages.is_empty() {
        return Err(ctx.at(stages_loc, "`stages` is empty: declare at least one stage".into()));
    }
    let names: HashMap<&str, usize> = raw_stages.iter().enumerate().map(|(i, (n, _))| (n.value.as_str(), i)).collect();
    let (param_overrides, input_overrides) = split_overrides(overrides, &names)?;

    // Pass 1: kinds, outputs and params of every stage.
    let mut stages = Vec::with_capacity(raw_stages.len());
    for (name, rs) in &raw_stages {
        check_stage_name(&ctx, name)?;
        let kind = Kind::lookup(&rs.kind.value).ok_or_else(|| {
            ctx.at(
                rs.kind.referenced,
                format!(
                    "stage `{}`: unknown kind `{}`; known kinds: {}",
                    name.value,
                    rs.kind.value,
                    Kind::all_names().join(", ")
                ),
            )
        })?;
        let outputs = stage_outputs(&ctx, &name.value, kind, rs)?;
        let params = stage_params(&ctx, &name.value, kind, rs, param_overrides.get(name.value.as_str()))?;
        stages.push(Stage {
            name: name.value.clone(),
            kind,
            description: rs.description.clone(),
            inputs: BTreeMap::new(),
            params,
            outputs,
            command: rs.run.as_ref().map(|r| r.value.clone()),
            upstream: Vec::new(),
        });
    }

    // Pass 2: inputs, now that every stage's outputs are known.
    let mut input_locs: Vec<BTreeMap<String, Location>> = Vec::new();
    for (i, (name, rs)) in raw_stages.iter().enumerate() {
        let mut inputs = BTreeMap::new();
        let mut locs = BTreeMap::new();
        for (iname, ivalue) in &rs.inputs.0 {
            if let Kind::Builtin(spec) = stages[i].kind
                && !spec.inputs.contains(&iname.value.as_str())
            {
                return Err(ctx.at(
                    iname.referenced,
                    format!(
                        "stage `{}`: kind `{}` has no input `{}`; its inputs: {}",
                        name.value,
                        spec.name,
                        iname.value,
                        spec.inputs.join(", ")
                    ),
                ));
            }
            let overridden = input_overrides
                .get(name.value.as_str())
                .is_some_and(|list| list.iter().any(|(k, _)| *k == iname.value));
            if overridden {
                continue;
            }
            let source =
                resolve_source(&dir, &stages, &names, &name.value, &ivalue.value, overrides.allow_missing_paths)
                    .map_err(|m| ctx.at(ivalue.referenced, m))?;
            inputs.insert(iname.value.clone(), source);
            locs.insert(iname.value.clone(), ivalue.referenced);
        }
        for (iname, path) in input_overrides.get(name.value.as_str()).into_iter().flatten() {
            if let Kind::Builtin(spec) = stages[i].kind
                && !spec.inputs.contains(&iname.as_str())
            {
                return Err(PipelineError::CommandLine(format!(
                    "-I {}.{iname}: kind `{}` has no input `{iname}`; its inputs: {}",
                    name.value,
                    spec.name,
                    spec.inputs.join(", ")
                )));
            }
            if !path.exists() && !overrides.allow_missing_paths {
                return Err(PipelineError::CommandLine(format!(
                    "-I {}.{iname}={}: no such file or directory",
                    name.value,
                    path.display()
                )));
            }
            inputs.insert(iname.clone(), Source::Path(std::path::absolute(path).unwrap_or_else(|_| path.clone())));
            locs.insert(iname.clone(), name.referenced);
        }
        if let Kind::Builtin(spec) = stages[i].kind
            && let Some(missing) = spec.inputs.iter().find(|n| !inputs.contains_key(**n))
        {
            return Err(ctx.at(
                name.referenced,
                format!(
                    "stage `{}`: kind `{}` needs input `{missing}` (add `inputs: {{{missing}: <stage>.<output> or a path}}`)",
                    name.value, spec.name
                ),
            ));
        }
        let mut upstream: Vec<usize> = inputs
            .values()
            .filter_map(|s| match s {
                Source::Stage { stage, .. } => names.get(stage.as_str()).copied(),
                Source::Path(_) => None,
            })
            .collect();
        upstream.sort_unstable();
        upstream.dedup();
        stages[i].inputs = inputs;
        stages[i].upstream = upstream;
        input_locs.push(locs);
    }

    let order = topological_order(&ctx, &stages, &raw_stages, &input_locs)?;
    let stages = reorder(stages, &order);
    let checks = raw
        .checks
        .iter()
        .map(|c| crate::checks::parse(&c.value).map_err(|m| ctx.at(c.referenced, m)))
        .collect::<Result<_, _>>()?;
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

/// serde-saphyr's messages carry their own position suffix; ours is the prefix.
fn yaml_message(msg: &str) -> String {
    let msg = msg.trim();
    if let Some(key) = msg.strip_prefix("duplicate mapping key: ") {
        let key = key.split(", set DuplicateKeyPolicy").next().unwrap_or(key);
        return format!("`{key}` appears twice in one mapping (stage names and keys must be unique)");
    }
    let msg = match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    msg.to_string()
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
        Kind::Cmd => {
            if rs.run.as_ref().is_none_or(|r| r.value.trim().is_empty()) {
                return Err(
                    ctx.at(rs.kind.referenced, format!("stage `{stage}`: kind `cmd` needs `run: <shell command>`"))
                );
            }
            let Some(decl) = &rs.outputs else {
                return Err(ctx.at(
                    rs.kind.referenced,
                    format!("stage `{stage}`: kind `cmd` needs `outputs: [<name>.<ext>, …]`"),
                ));
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
                    return Err(ctx
                        .at(o.referenced, format!("stage `{stage}`: output `{}` must look like `name.ext`", o.value)));
                };
                if outputs.iter().any(|x| x.name == name) {
                    return Err(ctx.at(o.referenced, format!("stage `{stage}`: output `{name}` is declared twice")));
                }
                outputs.push(Output { name: name.into(), ext: ext.into() });
            }
            Ok(outputs)
        }
    }
}

fn stage_params(
    ctx: &Ctx,
    stage: &str,
    kind: Kind,
    rs: &RawStage,
    overrides: Option<&Vec<(String, serde_json::Value)>>,
) -> Result<serde_json::Value, PipelineError> {
    let mut map = serde_json::Map::new();
    let mut locs: HashMap<String, Location> = HashMap::new();
    for (k, v) in &rs.params.0 {
        map.insert(k.value.clone(), v.value.clone());
        locs.insert(k.value.clone(), k.referenced);
    }
    let overridden: Vec<&str> = overrides.into_iter().flatten().map(|(k, _)| k.as_str()).collect();
    for (k, v) in overrides.into_iter().flatten() {
        map.insert(k.clone(), v.clone());
    }
    let Kind::Builtin(spec) = kind else {
        // A cmd stage's params are the user's own; they only need to be plain values.
        return Ok(serde_json::Value::Object(map));
    };
    (spec.params)(serde_json::Value::Object(map)).map_err(|e| {
        let key = e.key.clone().unwrap_or_default();
        if overridden.contains(&key.as_str()) {
            return PipelineError::CommandLine(format!("-P {stage}.{key}: {}", e.message));
        }
        let loc = locs.get(&key).copied().unwrap_or(rs.kind.referenced);
        ctx.at(loc, format!("stage `{stage}`: param `{key}` of kind `{}`: {}", spec.name, e.message))
    })
}

fn resolve_source(
    dir: &Path,
    stages: &[Stage],
    names: &HashMap<&str, usize>,
    stage: &str,
    value: &str,
    allow_missing: bool,
) -> Result<Source, String> {
    let looks_like_path = value.contains('/') || value.starts_with('.');
    if !looks_like_path && let Some((s, o)) = value.split_once('.') {
        if let Some(&j) = names.get(s) {
            if s == stage {
                return Err(format!("stage `{stage}` cannot read its own output `{value}`"));
            }
            if !stages[j].outputs.iter().any(|x| x.name == o) {
                let known: Vec<_> = stages[j].outputs.iter().map(|x| x.name.as_str()).collect();
                return Err(format!("stage `{s}` has no output `{o}`; its outputs: {}", known.join(", ")));
            }
            return Ok(Source::Stage { stage: s.into(), output: o.into() });
        }
        if !dir.join(value).exists() && !allow_missing {
            return Err(format!(
                "`{value}` is neither an output of a stage (no stage `{s}`) nor an existing file or directory"
            ));
        }
    }
    // Absolute: a `cmd` stage runs in the pipeline's directory, not the caller's.
    let path = dir.join(value);
    let path = std::path::absolute(&path).unwrap_or(path);
    if !path.exists() && !allow_missing {
        return Err(format!("input path `{value}` does not exist (relative paths start at the pipeline's directory)"));
    }
    Ok(Source::Path(path))
}

/// Orders stages upstream-first, keeping the file's order among independent stages;
/// a cycle is reported with its path (`a -> b -> a`).
fn topological_order(
    ctx: &Ctx,
    stages: &[Stage],
    raw: &[(Spanned<String>, RawStage)],
    input_locs: &[BTreeMap<String, Location>],
) -> Result<Vec<usize>, PipelineError> {
    let n = stages.len();
    let mut graph = petgraph::graph::DiGraph::<usize, ()>::with_capacity(n, n);
    let nodes: Vec<_> = (0..n).map(|i| graph.add_node(i)).collect();
    for (i, s) in stages.iter().enumerate() {
        for &u in &s.upstream {
            graph.add_edge(nodes[u], nodes[i], ());
        }
    }
    // Kahn's algorithm with the lowest file index first: deterministic and readable.
    let mut indegree: Vec<usize> = stages.iter().map(|s| s.upstream.len()).collect();
    let mut ready: std::collections::BTreeSet<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for nb in graph.neighbors(nodes[i]) {
            let j = graph[nb];
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.insert(j);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Name one cycle: among the stages left over, follow upstream edges until one repeats.
    let left: Vec<bool> = (0..n).map(|i| indegree[i] > 0).collect();
    let start = (0..n).find(|&i| left[i]).unwrap_or(0);
    let mut path = vec![start];
    let mut cur = start;
    loop {
        let next = stages[cur].upstream.iter().copied().find(|&u| left[u]).unwrap_or(start);
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut cycle: Vec<usize> = path[pos..].to_vec();
            cycle.reverse(); // upstream edges walked backwards: print in data-flow order
            // Start at the stage written first, so the message reads like the file.
            let first_pos = (0..cycle.len()).min_by_key(|&k| cycle[k]).unwrap_or(0);
            cycle.rotate_left(first_pos);
            cycle.push(cycle[0]);
            let names: Vec<&str> = cycle.iter().map(|&i| stages[i].name.as_str()).collect();
            let first = cycle[0];
            let closing = cycle[1];
            let loc = stages[closing]
                .inputs
                .iter()
                .find(|(_, s)| matches!(s, Source::Stage { stage, .. } if *stage == stages[first].name))
                .and_then(|(k, _)| input_locs[closing].get(k).copied())
                .unwrap_or(raw[closing].0.referenced);
            return Err(ctx.at(loc, format!("the stages form a cycle: {}", names.join(" -> "))));
        }
        path.push(next);
        cur = next;
    }
}

/// Puts stages into `order` and renumbers their upstream indices.
fn reorder(stages: Vec<Stage>, order: &[usize]) -> Vec<Stage> {
    let mut new_index = vec![0; order.len()];
    for (new, &old) in order.iter().enumerate() {
        new_index[old] = new;
    }
    let mut slots: Vec<Option<Stage>> = stages.into_iter().map(Some).collect();
    order
        .iter()
        .map(|&old| {
            let mut s = slots[old].take().expect("each index appears once in a topological order");
            s.upstream = s.upstream.iter().map(|&u| new_index[u]).collect();
            s.upstream.sort_unstable();
            s
        })
        .collect()
}
