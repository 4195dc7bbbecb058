//! The YouTubeDNN model shared by `train` and `export`: its saved config, the
//! item vectors (an item's row, plus its genres' mean when the model has them), the
//! user-side inputs (pooled history, user feature embeddings, dense features), and
//! the ReLU tower that turns them into a user vector.
//!
//! Embedding tables live outside candle as plain row-major `Vec<f32>`s, so the
//! trainer can update only the rows a batch touched; candle runs the tower.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use datafusion::arrow::array::{Array, Float32Array, Int32Array};
use serde::{Deserialize, Serialize};

use crate::schema::encoded::{GENRE_IDX, ITEM_IDX, USER_IDX, check_indices, dense_limit};
use crate::table;
use crate::table::failed;
use dagrun_kind::StageError;

/// A categorical user feature and its vocabulary size (with padding).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    pub name: String,
    pub vocab: usize,
}

/// Everything needed to rebuild the model from its tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub emb_dim: usize,
    pub hidden_units: Vec<usize>,
    pub temperature: f64,
    /// False: the candidates (and so the exported item vectors) have a table of their
    /// own, `out_items`; the history pools the input table.
    pub tie_item_embeddings: bool,
    /// With n > 0, the tower also gets the mean of the n most recent history items
    /// apart from the whole history's (short- and long-term interest, as SDM has them).
    pub short_hist: usize,
    /// With n > 0, the n most recent history items also enter the tower one by one,
    /// each in a block of its own (most recent first), so the tower sees their order.
    #[serde(default)]
    pub recent: usize,
    /// Item table rows (item indices 0..items, 0 = padding).
    pub items: usize,
    /// Genre table rows (codes 0..genres, 0 = padding); 0: the model has no genres.
    #[serde(default)]
    pub genres: usize,
    pub features: Vec<Feature>,
    /// Dense user columns of `encode.users`.
    pub dense: Vec<String>,
    /// Example age (hours) that maps to 1.0.
    pub age_max: f32,
}

impl ModelConfig {
    /// Width of the tower's input: pooled history (and recent history), one embedding
    /// per feature, the age features and the dense values.
    pub fn input_dim(&self) -> usize {
        self.emb_dim * (self.history_blocks() + self.features.len()) + AGE_FEATURES + self.dense.len()
    }

    /// History vectors at the start of the tower's input: the whole history pooled,
    /// the recent one pooled with `short_hist`, then the `recent` items one by one.
    pub fn history_blocks(&self) -> usize {
        self.pooled_blocks() + self.recent
    }

    /// The pooled history blocks: the whole history's, and the recent one's with
    /// `short_hist`.
    fn pooled_blocks(&self) -> usize {
        1 + usize::from(self.short_hist > 0)
    }

    /// Column where the `j`-th most recent item's own block starts (with `recent`).
    pub fn recent_at(&self, j: usize) -> usize {
        self.emb_dim * (self.pooled_blocks() + j)
    }

    /// Column where feature `f`'s embedding starts in the tower's input.
    pub fn feature_at(&self, f: usize) -> usize {
        self.emb_dim * (self.history_blocks() + f)
    }
}

/// x, x² and log(1+x) of the scaled example age.
pub const AGE_FEATURES: usize = 3;

pub fn age_features(age: f32, age_max: f32) -> [f32; AGE_FEATURES] {
    let x = (age / age_max.max(1e-6)).clamp(0.0, 1.0);
    [x, x * x, (1.0 + x).ln() / 2f32.ln()]
}

/// The users table of `encode`, column-wise, indexed by user index (row 0 = unknown).
pub struct Users {
    /// Per feature, the code of every user index.
    pub codes: Vec<Vec<i32>>,
    pub features: Vec<Feature>,
    /// Per dense column, the value of every user index.
    pub dense: Vec<Vec<f32>>,
    pub dense_names: Vec<String>,
}

impl Users {
    /// The row of feature `f`'s table that `user` looks up: its code, or row 0 (unknown)
    /// when the user or the code lies outside the table. Gathering and the gradient
    /// scatter both go through here, so they always touch the same row.
    pub fn code(&self, f: usize, user: i32, rows: usize) -> usize {
        let code = self.codes[f].get(user as usize).copied().unwrap_or(0) as usize;
        if code < rows { code } else { 0 }
    }

    /// Reads `encode.users`; `with_user_id` adds the user index itself as a feature.
    pub fn read(path: &Path, with_user_id: bool) -> Result<Users, StageError> {
        let b = table::read(path)?;
        let n = b.num_rows() + 1;
        let mut users = Users { codes: Vec::new(), features: Vec::new(), dense: Vec::new(), dense_names: Vec::new() };
        let ids = table::column::<Int32Array>(&b, USER_IDX, path)?;
        let mut row_of = vec![usize::MAX; n];
        for (row, u) in ids.values().iter().enumerate() {
            if (*u as usize) < n {
                row_of[*u as usize] = row;
            }
        }
        let by_user = |values: &dyn Fn(usize) -> f32| -> Vec<f32> {
            (0..n).map(|u| if row_of[u] == usize::MAX { 0.0 } else { values(row_of[u]) }).collect()
        };
        if with_user_id {
            users.codes.push((0..n as i32).collect());
            users.features.push(Feature { name: USER_IDX.into(), vocab: n });
        }
        for field in b.schema().fields().iter().filter(|f| f.name() != USER_IDX) {
            let col = b.column_by_name(field.name()).expect("field of this batch");
            if let Some(c) = col.as_any().downcast_ref::<Int32Array>() {
                // A feature's table has a row per code: codes are dense, so at most one per user.
                check_indices(path, field.name(), c.values(), dense_limit(b.num_rows()))?;
                let codes: Vec<i32> = by_user(&|r| c.value(r) as f32).into_iter().map(|x| x as i32).collect();
                let vocab = codes.iter().copied().max().unwrap_or(0) as usize + 1;
                users.codes.push(codes);
                users.features.push(Feature { name: field.name().clone(), vocab });
            } else if let Some(c) = col.as_any().downcast_ref::<Float32Array>() {
                users.dense.push(by_user(&|r| c.value(r)));
                users.dense_names.push(field.name().clone());
            }
        }
        Ok(users)
    }
}

/// Each item's genre codes, from `encode.items`: item i's are
/// `codes[offsets[i]..offsets[i + 1]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct GenreLists {
    pub offsets: Vec<u32>,
    pub codes: Vec<u32>,
}

impl GenreLists {
    /// Reads `encode.items` for an item table of `items` rows.
    pub fn read(path: &Path, items: usize) -> Result<GenreLists, StageError> {
        let b = table::read(path)?;
        let item = table::column::<Int32Array>(&b, ITEM_IDX, path)?.values();
        let genre = table::column::<Int32Array>(&b, GENRE_IDX, path)?.values();
        check_indices(path, ITEM_IDX, item, items)?;
        // A genre's code is one distinct value of the table, as an index is.
        check_indices(path, GENRE_IDX, genre, dense_limit(b.num_rows()))?;
        let mut offsets = vec![0u32; items + 1];
        for &i in item {
            offsets[i as usize + 1] += 1;
        }
        for i in 0..items {
            offsets[i + 1] += offsets[i];
        }
        let mut next = offsets.clone();
        let mut codes = vec![0u32; item.len()];
        for (&i, &g) in item.iter().zip(genre) {
            codes[next[i as usize] as usize] = g as u32;
            next[i as usize] += 1;
        }
        Ok(GenreLists { offsets, codes })
    }

    /// Item `item`'s genre codes (none for an item outside the lists, or for offsets
    /// that do not fit the codes, as a damaged model file could hold).
    pub fn of(&self, item: usize) -> &[u32] {
        match (self.offsets.get(item), self.offsets.get(item + 1)) {
            (Some(&from), Some(&to)) => self.codes.get(from as usize..to as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Rows of a table over the codes: the largest, plus row 0 (padding).
    pub fn rows(&self) -> usize {
        self.codes.iter().copied().max().unwrap_or(0) as usize + 1
    }
}

/// The genres of a model that has them: each item's codes and the genre table.
#[derive(Clone)]
pub struct Genres {
    pub lists: GenreLists,
    pub table: EmbeddingTable,
}

/// Where item vectors come from: an item's row of `table`, plus the mean of its
/// genres' rows when there are `genres` (so items that share genres start near each
/// other and a rarely clicked item borrows from its genres).
#[derive(Clone, Copy)]
pub struct ItemRows<'a> {
    pub table: &'a EmbeddingTable,
    pub genres: Option<&'a Genres>,
}

impl ItemRows<'_> {
    /// Adds item `item`'s vector to `out`.
    pub fn add_to(&self, item: usize, out: &mut [f32]) {
        for (o, v) in out.iter_mut().zip(self.table.row(item)) {
            *o += v;
        }
        self.add_genres(item, out);
    }

    /// Writes item `item`'s vector into `out`.
    pub fn write(&self, item: usize, out: &mut [f32]) {
        out.copy_from_slice(self.table.row(item));
        self.add_genres(item, out);
    }

    fn add_genres(&self, item: usize, out: &mut [f32]) {
        let Some(g) = self.genres else { return };
        let codes = g.lists.of(item);
        let scale = 1.0 / codes.len().max(1) as f32;
        for &c in codes {
            for (o, v) in out.iter_mut().zip(g.table.row(c as usize)) {
                *o += v * scale;
            }
        }
    }
}

/// A row-major embedding table.
#[derive(Clone)]
pub struct EmbeddingTable {
    pub rows: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

impl EmbeddingTable {
    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.dim..(r + 1) * self.dim]
    }

    pub fn row_mut(&mut self, r: usize) -> &mut [f32] {
        &mut self.data[r * self.dim..(r + 1) * self.dim]
    }

    pub fn to_tensor(&self, device: &Device) -> Result<Tensor, StageError> {
        Tensor::from_slice(&self.data, (self.rows, self.dim), device).map_err(failed)
    }

    pub fn from_tensor(t: &Tensor) -> Result<EmbeddingTable, StageError> {
        let (rows, dim) = t.dims2().map_err(failed)?;
        let data = t.to_dtype(DType::F32).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1()).map_err(failed)?;
        Ok(EmbeddingTable { rows, dim, data })
    }
}

/// The model's parameters: embedding tables and tower layers (weight [out, in], bias [out]).
pub struct Model {
    pub config: ModelConfig,
    pub items: EmbeddingTable,
    /// The output item table of an untied model.
    pub out_items: Option<EmbeddingTable>,
    pub genres: Option<Genres>,
    pub features: Vec<EmbeddingTable>,
    pub tower: Vec<(Tensor, Tensor)>,
}

impl Model {
    /// Writes one example's tower input into `out`; `hist` holds nonzero items.
    pub fn user_input(&self, users: &Users, user: i32, hist: &[i32], age: f32, out: &mut [f32]) {
        let items = ItemRows { table: &self.items, genres: self.genres.as_ref() };
        user_input(&self.config, items, &self.features, users, user, hist, age, out);
    }

    /// Where the item vectors come from: the output table of an untied model.
    pub fn output_items(&self) -> ItemRows<'_> {
        ItemRows { table: self.out_items.as_ref().unwrap_or(&self.items), genres: self.genres.as_ref() }
    }

    /// L2-normalised user vectors for tower inputs `x` ([n, input_dim]).
    pub fn user_vectors(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        normalize(&tower_forward(&self.tower, x)?)
    }

    pub fn save(&self, path: &Path) -> Result<(), StageError> {
        let dev = Device::Cpu;
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        tensors.insert("item_emb".into(), self.items.to_tensor(&dev)?);
        if let Some(out) = &self.out_items {
            tensors.insert("item_out_emb".into(), out.to_tensor(&dev)?);
        }
        if let Some(g) = &self.genres {
            tensors.insert("genre_emb".into(), g.table.to_tensor(&dev)?);
            let (offsets, codes) = (&g.lists.offsets, &g.lists.codes);
            tensors
                .insert("item_genre_offsets".into(), Tensor::from_slice(offsets, offsets.len(), &dev).map_err(failed)?);
            tensors.insert("item_genre_codes".into(), Tensor::from_slice(codes, codes.len(), &dev).map_err(failed)?);
        }
        for (f, t) in self.config.features.iter().zip(&self.features) {
            tensors.insert(format!("feature.{}", f.name), t.to_tensor(&dev)?);
        }
        for (k, (w, b)) in self.tower.iter().enumerate() {
            tensors.insert(format!("tower.{k}.weight"), w.to_device(&dev).map_err(failed)?);
            tensors.insert(format!("tower.{k}.bias"), b.to_device(&dev).map_err(failed)?);
        }
        candle_core::safetensors::save(&tensors, path).map_err(failed)
    }

    pub fn load(path: &Path, config: ModelConfig, device: &Device) -> Result<Model, StageError> {
        let mut t = candle_core::safetensors::load(path, &Device::Cpu).map_err(failed)?;
        let mut take = |name: &str| {
            t.remove(name).ok_or_else(|| StageError::Failed(format!("{}: no tensor `{name}`", path.display())))
        };
        let items = EmbeddingTable::from_tensor(&take("item_emb")?)?;
        let out_items = match config.tie_item_embeddings {
            true => None,
            false => Some(EmbeddingTable::from_tensor(&take("item_out_emb")?)?),
        };
        let genres = match config.genres {
            0 => None,
            _ => {
                let table = EmbeddingTable::from_tensor(&take("genre_emb")?)?;
                let u32s = |t: Tensor| t.to_vec1::<u32>().map_err(failed);
                let lists =
                    GenreLists { offsets: u32s(take("item_genre_offsets")?)?, codes: u32s(take("item_genre_codes")?)? };
                if lists.offsets.len() != config.items + 1 || lists.codes.iter().any(|&c| c as usize >= table.rows) {
                    return Err(StageError::Failed(format!(
                        "{}: the items' genre codes do not fit the model's tables; train it again",
                        path.display()
                    )));
                }
                Some(Genres { lists, table })
            }
        };
        let features = config
            .features
            .iter()
            .map(|f| EmbeddingTable::from_tensor(&take(&format!("feature.{}", f.name))?))
            .collect::<Result<_, _>>()?;
        let mut tower = Vec::new();
        for k in 0..config.hidden_units.len() {
            let w = take(&format!("tower.{k}.weight"))?.to_device(device).map_err(failed)?;
            let b = take(&format!("tower.{k}.bias"))?.to_device(device).map_err(failed)?;
            tower.push((w, b));
        }
        Ok(Model { config, items, out_items, genres, features, tower })
    }
}

/// One example's tower input: the pooled history (most recent first, so the recent
/// part is its head), one row per user feature (unknown codes fall back to row 0), then x, x², log x of the example age and the dense columns.
#[allow(clippy::too_many_arguments)]
pub fn user_input(
    config: &ModelConfig,
    items: ItemRows,
    features: &[EmbeddingTable],
    users: &Users,
    user: i32,
    hist: &[i32],
    age: f32,
    out: &mut [f32],
) {
    let d = config.emb_dim;
    pool(items, hist, &mut out[..d]);
    if config.short_hist > 0 {
        pool(items, &hist[..hist.len().min(config.short_hist)], &mut out[d..2 * d]);
    }
    for j in 0..config.recent {
        let block = &mut out[config.recent_at(j)..config.recent_at(j) + d];
        match hist.get(j) {
            Some(&h) => items.write(h as usize, block),
            None => block.fill(0.0),
        }
    }
    for (f, table) in features.iter().enumerate() {
        let at = config.feature_at(f);
        out[at..at + d].copy_from_slice(table.row(users.code(f, user, table.rows)));
    }
    let mut k = config.feature_at(features.len());
    for v in age_features(age, config.age_max) {
        out[k] = v;
        k += 1;
    }
    for col in &users.dense {
        out[k] = col.get(user as usize).copied().unwrap_or(0.0);
        k += 1;
    }
}

/// Mean of the history's item vectors into `out` (zeros for an empty history).
pub fn pool(items: ItemRows, hist: &[i32], out: &mut [f32]) {
    out.fill(0.0);
    if hist.is_empty() {
        return;
    }
    for &h in hist {
        items.add_to(h as usize, out);
    }
    let inv = 1.0 / hist.len() as f32;
    out.iter_mut().for_each(|o| *o *= inv);
}

/// ReLU between layers, none after the last: the last layer's output is the user vector.
pub fn tower_forward<T: AsRef<Tensor>>(layers: &[(T, T)], x: &Tensor) -> candle_core::Result<Tensor> {
    let mut h = x.clone();
    for (k, (w, b)) in layers.iter().enumerate() {
        h = h.matmul(&w.as_ref().t()?)?.broadcast_add(b.as_ref())?;
        if k + 1 < layers.len() {
            h = h.relu()?;
        }
    }
    Ok(h)
}

/// Rows scaled to unit length.
pub fn normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(1)?.affine(1.0, 1e-12)?.sqrt()?;
    x.broadcast_div(&norm)
}

/// A `device` param: `cpu`, `cuda`, `cuda:N` or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceName {
    Cpu,
    Auto,
    Cuda(usize),
}

impl DeviceName {
    /// Parses a device name; a CUDA device in a build without the `cuda` feature is
    /// an error too, so it is found when the pipeline loads.
    pub fn parse(name: &str) -> Result<DeviceName, String> {
        let expected = || format!("`{name}` is not a device: expected cpu, cuda, cuda:N or auto");
        let parsed = match name {
            "cpu" => DeviceName::Cpu,
            "auto" => DeviceName::Auto,
            "cuda" => DeviceName::Cuda(0),
            _ => {
                let n = name.strip_prefix("cuda:").ok_or_else(expected)?;
                DeviceName::Cuda(n.parse().map_err(|_| expected())?)
            }
        };
        if matches!(parsed, DeviceName::Cuda(_)) && !cfg!(feature = "cuda") {
            return Err(format!(
                "`{name}`: this dagrun was built without CUDA; rebuild with `--features cuda` or use cpu or auto"
            ));
        }
        Ok(parsed)
    }
}

/// The device a `device` param names; the note says what `auto` chose.
pub fn device(name: &str) -> Result<(Device, Option<String>), StageError> {
    match DeviceName::parse(name).map_err(|e| StageError::BadInput(format!("device {e}")))? {
        DeviceName::Cpu => Ok((Device::Cpu, None)),
        DeviceName::Auto if cfg!(feature = "cuda") && candle_core::utils::cuda_is_available() => {
            Ok((Device::new_cuda(0).map_err(failed)?, Some("device auto: using cuda:0".into())))
        }
        DeviceName::Auto => Ok((
            Device::Cpu,
            Some("device auto: no CUDA GPU (or built without the `cuda` feature), using the CPU".into()),
        )),
        DeviceName::Cuda(n) => {
            Ok((Device::new_cuda(n).map_err(|e| StageError::BadInput(format!("device `{name}`: {e}")))?, None))
        }
    }
}
