//! Which stages are fresh, stale (and exactly why) or new, without running anything:
//! what `run` starts from, and what `status` and `--dry-run` print.
//!
//! Upstream outputs are known by the hashes their records hold, so nothing the store
//! already vouches for is hashed again; external inputs go through the stamp index.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::Error;
use crate::cache::Fingerprint;
use crate::pipeline::{Kind, Pipeline, Source, Stage};
use crate::store::content::InputIndex;
use crate::store::{Record, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Fresh,
    Stale,
    New,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Fresh => "fresh",
            State::Stale => "stale",
            State::New => "new",
        })
    }
}

/// One stage's line of `dagrun status`.
#[derive(Debug, Clone, Serialize)]
pub struct StageStatus {
    pub stage: String,
    pub state: State,
    pub reasons: Vec<String>,
    pub last_duration_s: Option<f64>,
    /// The record that makes the stage fresh.
    #[serde(skip)]
    pub record: Option<Record>,
    /// Its cache key now, when its inputs are known (every upstream stage fresh).
    #[serde(skip)]
    pub key: Option<String>,
}

/// The upstream stages of `stage` that have no record in `upstream_records`, once each.
pub fn missing_upstream(stage: &Stage, upstream_records: &BTreeMap<String, Record>) -> Vec<String> {
    let mut missing: Vec<String> = Vec::new();
    for source in stage.inputs.values() {
        if let Source::Stage { stage: up, .. } = source
            && !upstream_records.contains_key(up)
            && !missing.contains(up)
        {
            missing.push(up.clone());
        }
    }
    missing
}

/// Content hashes of a stage's inputs: upstream outputs as their records hold them
/// (every upstream stage must have one: see [`missing_upstream`]), files and
/// directories through the stamp index.
pub fn input_hashes(
    stage: &Stage,
    upstream_records: &BTreeMap<String, Record>,
    index: &mut InputIndex,
) -> Result<BTreeMap<String, String>, Error> {
    let mut hashes = BTreeMap::new();
    for (name, source) in &stage.inputs {
        let hash = match source {
            Source::Path(p) => index.hash_path(p)?,
            Source::Stage { stage: up, output } => upstream_records
                .get(up)
                .and_then(|r| r.outputs.get(output))
                .map(|o| o.hash.clone())
                .ok_or_else(|| Error::Internal(format!("stage `{}`: no record of `{up}.{output}`", stage.name)))?,
        };
        hashes.insert(name.clone(), hash);
    }
    Ok(hashes)
}

/// Where each input of `stage` reads from, as records keep it.
pub fn sources_of(stage: &Stage) -> BTreeMap<String, String> {
    stage.inputs.iter().map(|(k, s)| (k.clone(), s.to_string())).collect()
}

/// The status of every stage, in pipeline order. `forced` stages count as stale.
pub fn compute(
    p: &Pipeline,
    store: &Store,
    index: &mut InputIndex,
    forced: &[bool],
) -> Result<Vec<StageStatus>, Error> {
    let mut out: Vec<StageStatus> = Vec::with_capacity(p.stages.len());
    let mut fresh: BTreeMap<String, Record> = BTreeMap::new();
    for (i, stage) in p.stages.iter().enumerate() {
        let last = store.latest_record(&stage.name);
        let last_duration_s = last.as_ref().map(|r| r.duration_s);
        let missing = missing_upstream(stage, &fresh);
        let mut key = None;
        let (state, reasons, record) = if missing.is_empty() {
            let fp = Fingerprint::of(stage, input_hashes(stage, &fresh, index)?);
            judge(store, stage, (&fp, key.insert(fp.key()).as_str()), last.as_ref(), forced[i])
        } else {
            let mut reasons: Vec<String> = missing
                .iter()
                .map(|u| {
                    let st = out.iter().find(|s| &s.stage == u).map(|s| s.state).unwrap_or(State::New);
                    format!("upstream {u} is {st}")
                })
                .collect();
            // What can be told without the upstream hashes: its own code, params and sources.
            if let Some(last) = &last {
                let now = Fingerprint::of(stage, last.fingerprint.inputs.clone());
                reasons.splice(0..0, explain(&last.fingerprint, &last.sources, &now, stage));
            }
            (if last.is_some() { State::Stale } else { State::New }, reasons, None)
        };
        if let Some(r) = &record {
            fresh.insert(stage.name.clone(), r.clone());
        }
        out.push(StageStatus { stage: stage.name.clone(), state, reasons, last_duration_s, record, key });
    }
    Ok(out)
}

/// A stage whose inputs are known: fresh when a record of its key has every output,
/// otherwise stale (with the reasons) or new.
fn judge(
    store: &Store,
    stage: &Stage,
    (fp, key): (&Fingerprint, &str),
    last: Option<&Record>,
    forced: bool,
) -> (State, Vec<String>, Option<Record>) {
    let hit = match last {
        Some(r) if r.key == key => Some(r.clone()),
        _ => store.read_record(key),
    }
    .filter(|r| store.has_outputs(r));
    match (hit, last) {
        (Some(r), _) if !forced => (State::Fresh, Vec::new(), Some(r)),
        (Some(_), _) => (State::Stale, vec!["forced".to_string()], None),
        (None, None) => (State::New, Vec::new(), None),
        (None, Some(last)) => {
            let mut reasons = explain(&last.fingerprint, &last.sources, fp, stage);
            if reasons.is_empty() {
                reasons.push("outputs missing from the store".to_string());
            }
            if forced {
                reasons.insert(0, "forced".to_string());
            }
            (State::Stale, reasons, None)
        }
    }
}

/// Why `new` differs from the fingerprint of the last execution, in words.
pub fn explain(
    old: &Fingerprint,
    old_sources: &BTreeMap<String, String>,
    new: &Fingerprint,
    stage: &Stage,
) -> Vec<String> {
    let mut reasons = Vec::new();
    if old.kind != new.kind {
        reasons.push(format!("kind: {} -> {}", old.kind, new.kind));
    } else if old.code != new.code {
        reasons.push(match stage.kind {
            Kind::Cmd => "command changed".to_string(),
            Kind::Builtin(_) => format!("code of kind {} changed", new.kind),
        });
    }
    let empty = serde_json::Map::new();
    let old_params = old.params.as_object().unwrap_or(&empty);
    let new_params = new.params.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = old_params.keys().chain(new_params.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        match (old_params.get(k), new_params.get(k)) {
            (Some(a), Some(b)) if a != b => reasons.push(format!("param {k}: {a} -> {b}")),
            (Some(a), None) => reasons.push(format!("param {k} removed (was {a})")),
            (None, Some(b)) => reasons.push(format!("param {k} added: {b}")),
            _ => {}
        }
    }
    let sources = sources_of(stage);
    let mut names: Vec<&String> = old.inputs.keys().chain(new.inputs.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let now = sources.get(name).cloned().unwrap_or_default();
        match (old.inputs.get(name), new.inputs.get(name)) {
            (Some(_), None) => reasons.push(format!("input {name} removed")),
            (None, Some(_)) => reasons.push(format!("input {name} added ({now})")),
            (Some(a), Some(b)) => {
                let was = old_sources.get(name).cloned().unwrap_or_default();
                if was != now {
                    reasons.push(format!("input {name} now reads {now} (was {was})"));
                } else if a != b {
                    reasons.push(format!("input {now} changed"));
                }
            }
            (None, None) => {}
        }
    }
    if old.outputs != new.outputs {
        reasons.push(format!("outputs: {} -> {}", old.outputs.join(", "), new.outputs.join(", ")));
    }
    if old.store_format != new.store_format {
        reasons.push(format!("store format {} -> {}", old.store_format, new.store_format));
    }
    reasons
}
