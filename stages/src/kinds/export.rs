//! Kind `export`: the serving side of a trained model. The user vector of every test
//! example and the vector of every item (its genres' mean added, for a model with
//! genres), L2-normalised, with raw ids, as Parquet (`embedding` is a fixed-size list
//! of float32).

use std::sync::Arc;

use candle_core::{Device, Tensor};
use datafusion::arrow::array::{ArrayRef, Int32Array, StringArray};
use serde::{Deserialize, Serialize};

use crate::model::{Model, ModelConfig, Users, normalize};
use crate::schema::clicks::{ITEM, USER};
use crate::schema::encoded::{ITEM_IDX, USER_IDX, raw_ids, vocab_rows};
use crate::schema::examples::Examples;
use crate::schema::vectors::{EMBEDDING, embedding_column};
use crate::table;
use dagrun_kind::{Format, KindSpec, OutputSpec, Params, Report, StageCtx, StageError, params};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportParams {}

const USERS: OutputSpec = OutputSpec { name: "users", format: Format::Parquet };
const ITEMS: OutputSpec = OutputSpec { name: "items", format: Format::Parquet };

pub const SPEC: KindSpec = KindSpec {
    name: "export",
    summary: "user vectors of the test examples and all item vectors, normalised, with raw ids",
    inputs: &["model", "config", "test", "users", "vocab"],
    optional_inputs: &[],
    outputs: &[USERS, ITEMS],
    fingerprint: crate::fingerprints::EXPORT,
    params: params::check::<ExportParams>,
    needs: dagrun_kind::needs_nothing,
    run,
};

impl Params for ExportParams {}

fn run(ctx: &StageCtx) -> Result<Report, StageError> {
    let config: ModelConfig = serde_json::from_slice(&std::fs::read(ctx.input("config")?)?)
        .map_err(|e| StageError::Failed(format!("model config: {e}")))?;
    let dev = Device::Cpu;
    let model = Model::load(ctx.input("model")?, config, &dev)?;
    let cfg = &model.config;
    let users = Users::read(ctx.input("users")?, cfg.features.first().is_some_and(|f| f.name == USER_IDX))?;
    if users.features.iter().map(|f| &f.name).ne(cfg.features.iter().map(|f| &f.name)) || users.dense_names != cfg.dense
    {
        return Err(StageError::Failed(
            "export: the users table does not have the features the model was trained with".into(),
        ));
    }
    let vocab = ctx.input("vocab")?;
    let user_raw = raw_ids(vocab, USER)?;
    let item_raw = raw_ids(vocab, ITEM)?;
    let test = Examples::read(ctx.input("test")?, true, vocab_rows(vocab, ITEM)?)?;
    let d = cfg.emb_dim;
    let width = cfg.input_dim();
    let mut x = vec![0f32; test.len() * width];
    for i in 0..test.len() {
        model.user_input(&users, test.user[i], test.hist_of(i), test.age[i], &mut x[i * width..(i + 1) * width]);
    }
    let f = |e: candle_core::Error| StageError::Failed(format!("export: {e}"));
    let u = Tensor::from_vec(x, (test.len(), width), &dev).map_err(f)?;
    let u = model.user_vectors(&u).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>()).map_err(f)?;
    let ids: StringArray = test.user.iter().map(|u| Some(user_raw.get(u).map(String::as_str).unwrap_or(""))).collect();
    let mut report = Report::default();
    let rows = table::write(
        &ctx.output(&USERS),
        vec![
            (USER, Arc::new(ids) as ArrayRef),
            (USER_IDX, Arc::new(Int32Array::from(test.user.clone()))),
            (ITEM_IDX, Arc::new(Int32Array::from(test.item.clone()))),
            (EMBEDDING, Arc::new(embedding_column(u, d)?)),
        ],
    )?;
    report.rows.insert("users".into(), rows);

    let n = cfg.items;
    let mut vectors = vec![0f32; (n - 1) * d];
    let rows = model.output_items();
    for (i, out) in vectors.chunks_mut(d).enumerate() {
        rows.write(i + 1, out);
    }
    let items = Tensor::from_vec(vectors, (n - 1, d), &dev).map_err(f)?;
    let v = normalize(&items).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>()).map_err(f)?;
    let idx: Vec<i32> = (1..n as i32).collect();
    let ids: StringArray = idx.iter().map(|i| Some(item_raw.get(i).map(String::as_str).unwrap_or(""))).collect();
    let rows = table::write(
        &ctx.output(&ITEMS),
        vec![
            (ITEM, Arc::new(ids) as ArrayRef),
            (ITEM_IDX, Arc::new(Int32Array::from(idx))),
            (EMBEDDING, Arc::new(embedding_column(v, d)?)),
        ],
    )?;
    report.rows.insert("items".into(), rows);
    Ok(report)
}
