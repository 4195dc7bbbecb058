//! Kind `ensemble`: the `export` vectors of several models (seeds, settings) served as
//! one model. Each row's member vectors are concatenated and the whole L2-normalised
//! again: for unit members a user-item dot product is then the mean of the members'
//! cosines, so `evaluate`, and one HNSW index over the concatenated item vectors, rank
//! as the members' summed scores do.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int32Array, StringArray};
use serde::{Deserialize, Serialize};

use crate::schema::clicks::{ITEM, USER};
use crate::schema::encoded::{ITEM_IDX, USER_IDX};
use crate::schema::vectors::{EMBEDDING, Vectors, embedding_column, read_vectors};
use crate::table;
use dagrun_kind::{Format, KindSpec, Need, OutputSpec, Params, Report, StageCtx, StageError, params};

/// The most members a pipeline can give (inputs `users_1`/`items_1` … `users_4`/`items_4`).
const MAX_MEMBERS: usize = 4;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnsembleParams {
    /// How many models: inputs `users_1`, `items_1` up to `users_<members>`, `items_<members>`.
    pub members: usize,
}

impl Default for EnsembleParams {
    fn default() -> Self {
        EnsembleParams { members: 2 }
    }
}

impl Params for EnsembleParams {
    fn validate(&self) -> Result<(), params::ParamError> {
        let m = self.members;
        params::ensure((2..=MAX_MEMBERS).contains(&m), "members", || format!("must be 2 to {MAX_MEMBERS}, not {m}"))
    }
}

const USERS: OutputSpec = OutputSpec { name: "users", format: Format::Parquet };
const ITEMS: OutputSpec = OutputSpec { name: "items", format: Format::Parquet };

/// The input names (users, items) of each member, member 1 first.
const INPUTS: [[&str; 2]; MAX_MEMBERS] =
    [["users_1", "items_1"], ["users_2", "items_2"], ["users_3", "items_3"], ["users_4", "items_4"]];

pub const SPEC: KindSpec = KindSpec {
    name: "ensemble",
    summary: "the export vectors of 2 to 4 models as one model: concatenated per row, normalised again",
    inputs: &["users_1", "items_1", "users_2", "items_2"],
    optional_inputs: &["users_3", "items_3", "users_4", "items_4"],
    outputs: &[USERS, ITEMS],
    fingerprint: crate::fingerprints::ENSEMBLE,
    params: params::check::<EnsembleParams>,
    needs,
    run,
};

/// The members' inputs are needed and the others ruled out, so a pipeline that leaves
/// out a member's table, or gives one `members` does not count, is refused when it
/// loads.
fn needs(checked: &serde_json::Value) -> Vec<Need> {
    let members = checked.get("members").and_then(serde_json::Value::as_u64).unwrap_or(2) as usize;
    let (used, unused) = INPUTS[2..].split_at(members.clamp(2, MAX_MEMBERS) - 2);
    let used = used.iter().flatten().map(|&input| Need::given("members", input));
    used.chain(unused.iter().flatten().map(|&input| Need::left_out("members", input))).collect()
}

fn run(ctx: &StageCtx) -> Result<Report, StageError> {
    let p: EnsembleParams = params::typed(ctx.params)?;
    let mut report = Report::default();
    for (side, output, id, raw) in [(0, &USERS, USER_IDX, USER), (1, &ITEMS, ITEM_IDX, ITEM)] {
        let inputs: Vec<(&str, &Path)> = INPUTS[..p.members]
            .iter()
            .map(|m| Ok((m[side], ctx.input(m[side])?)))
            .collect::<Result<_, StageError>>()?;
        let (joined, target) = join(&inputs, id, raw)?;
        let mut columns = vec![
            (raw, Arc::new(joined.raw.iter().map(|r| Some(r.as_str())).collect::<StringArray>()) as ArrayRef),
            (id, Arc::new(Int32Array::from(joined.idx))),
        ];
        if let Some(target) = target {
            columns.push((ITEM_IDX, Arc::new(Int32Array::from(target))));
        }
        columns.push((EMBEDDING, Arc::new(embedding_column(joined.data, joined.dim)?)));
        report.rows.insert(output.name.into(), table::write(&ctx.output(output), columns)?);
    }
    Ok(report)
}

/// The members' tables (input name, path) as one: the same rows (ids, and a users
/// table's targets) in the same order, each row's vectors concatenated and
/// L2-normalised.
fn join(inputs: &[(&str, &Path)], id: &str, raw: &str) -> Result<(Vectors, Option<Vec<i32>>), StageError> {
    let (first, target) = read_vectors(inputs[0].1, id, raw)?;
    let mut members = vec![first];
    for &(name, path) in &inputs[1..] {
        let (v, t) = read_vectors(path, id, raw)?;
        let differs = first_difference(&v.idx, &members[0].idx).map(|r| (id, r)).or_else(|| {
            t.as_deref().zip(target.as_deref()).and_then(|(t, first)| first_difference(t, first)).map(|r| (ITEM_IDX, r))
        });
        if let Some((column, row)) = differs {
            return Err(StageError::bad_value(
                path,
                column,
                row,
                format!(
                    "input `{name}` has other rows than `{}`; give every member the `export` output \
                     of the same examples and vocabulary",
                    inputs[0].0
                ),
            ));
        }
        members.push(v);
    }
    let dim: usize = members.iter().map(|m| m.dim).sum();
    let rows = members[0].idx.len();
    let mut data = Vec::with_capacity(rows * dim);
    for r in 0..rows {
        let start = data.len();
        for m in &members {
            data.extend_from_slice(&m.data[r * m.dim..(r + 1) * m.dim]);
        }
        let norm = data[start..].iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            data[start..].iter_mut().for_each(|x| *x /= norm);
        }
    }
    let first = members.swap_remove(0);
    Ok((Vectors { idx: first.idx, raw: first.raw, data, dim }, target))
}

/// The first row at which `a` and `b` differ, a row only one has included.
fn first_difference(a: &[i32], b: &[i32]) -> Option<usize> {
    (0..a.len().max(b.len())).find(|&r| a.get(r) != b.get(r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dagrun_kind::Wants;

    /// An export users table: (user index, target item, vector) rows.
    fn users(dir: &Path, name: &str, rows: &[(i32, i32, [f32; 2])]) -> std::path::PathBuf {
        let path = dir.join(name);
        let raw: StringArray = rows.iter().map(|r| Some(format!("u{}", r.0))).collect();
        table::write(
            &path,
            vec![
                (USER, Arc::new(raw) as ArrayRef),
                (USER_IDX, Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.0)))),
                (ITEM_IDX, Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.1)))),
                (EMBEDDING, Arc::new(embedding_column(rows.iter().flat_map(|r| r.2).collect(), 2).unwrap())),
            ],
        )
        .unwrap();
        path
    }

    #[test]
    fn rows_are_concatenated_and_normalised_so_scores_are_the_mean_cosine() {
        let d = tempfile::tempdir().unwrap();
        let a = users(d.path(), "a.parquet", &[(1, 7, [1.0, 0.0]), (2, 8, [0.0, 0.0])]);
        let b = users(d.path(), "b.parquet", &[(1, 7, [0.6, 0.8]), (2, 8, [0.0, 1.0])]);
        let (v, target) = join(&[("users_1", &a), ("users_2", &b)], USER_IDX, USER).unwrap();
        assert_eq!((v.dim, v.idx.clone(), target), (4, vec![1, 2], Some(vec![7, 8])));
        let h = std::f32::consts::FRAC_1_SQRT_2;
        let expected = [h, 0.0, 0.6 * h, 0.8 * h, 0.0, 0.0, 0.0, 1.0];
        assert!(v.data.iter().zip(expected).all(|(x, e)| (x - e).abs() < 1e-6), "{:?}", v.data);
        // Against an item whose members are (1, 0) and (0, 1): cosines 1 and 0.8, mean 0.9.
        let item = [h, 0.0, 0.0, h];
        let score: f32 = v.data[..4].iter().zip(item).map(|(x, y)| x * y).sum();
        assert!((score - 0.9).abs() < 1e-6, "{score}");
    }

    #[test]
    fn members_over_other_rows_are_refused_naming_the_row() {
        let d = tempfile::tempdir().unwrap();
        let a = users(d.path(), "a.parquet", &[(1, 7, [1.0, 0.0]), (2, 8, [1.0, 0.0])]);
        let other_user = users(d.path(), "b.parquet", &[(1, 7, [1.0, 0.0]), (3, 8, [1.0, 0.0])]);
        let other_target = users(d.path(), "c.parquet", &[(1, 7, [1.0, 0.0]), (2, 9, [1.0, 0.0])]);
        let fewer = users(d.path(), "e.parquet", &[(1, 7, [1.0, 0.0])]);
        for (b, column) in [(&other_user, USER_IDX), (&other_target, ITEM_IDX), (&fewer, USER_IDX)] {
            let e = join(&[("users_1", &a), ("users_2", b)], USER_IDX, USER).err().unwrap();
            assert!(matches!(e, StageError::BadInput(_)), "{e}");
            let e = e.to_string();
            let said =
                format!("{}: column `{column}`, row 1: input `users_2` has other rows than `users_1`", b.display());
            assert!(e.starts_with(&said), "{e}");
        }
    }

    #[test]
    fn members_need_their_inputs_and_rule_out_the_rest() {
        let wanted = |m: u64, wants: Wants| {
            let needs = needs(&serde_json::json!({ "members": m }));
            needs.iter().filter(|n| n.wants == wants).map(|n| n.input).collect::<Vec<_>>()
        };
        assert!(wanted(2, Wants::Given).is_empty());
        assert_eq!(wanted(2, Wants::LeftOut), ["users_3", "items_3", "users_4", "items_4"]);
        assert_eq!(wanted(3, Wants::Given), ["users_3", "items_3"]);
        assert_eq!(wanted(3, Wants::LeftOut), ["users_4", "items_4"]);
        assert_eq!(wanted(4, Wants::Given), ["users_3", "items_3", "users_4", "items_4"]);
        assert!(wanted(4, Wants::LeftOut).is_empty());
        assert!(EnsembleParams { members: 5 }.validate().is_err());
        assert!(EnsembleParams { members: 1 }.validate().is_err());
    }
}
