//! The device path of the trainer: everything on one candle device, for GPUs.
//!
//! The host path (the parent module) gathers, pools and updates the tables on the
//! CPU and hands candle only the tower; on a GPU that is ~17 synchronous copies and
//! ~100 tiny launches a step. Here the tables are `Var`s on the device, the examples
//! are uploaded once (histories padded to the longest, lengths, feature codes, the
//! dense tail of each input, targets), each epoch uploads its order and its sampled
//! negatives in one tensor each, and a step only slices them: gather, masked mean
//! pooling, log-Q, the accidental-hit mask, the loss and Adam stay on the device. The
//! loss is read back once an epoch.
//!
//! It is plain candle ops, so it runs (and is tested) on `Device::Cpu` too. Its Adam
//! is candle's dense one over whole tables, where the host path's is lazy (row-sparse):
//! the same gradients, a different optimiser, so models differ in their bytes.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

use dagrun_kind::StageError;

use super::{BETA1, BETA2, LogRow, Loss, Steps, TrainParams, Trainer, epochs, finite};
use crate::model::{EmbeddingTable, GenreLists, Genres, Model, ModelConfig, Users};
use crate::schema::examples::Examples;

type Result<T> = candle_core::Result<T>;

/// The training examples as device tensors, uploaded once.
pub(super) struct Uploaded {
    /// [examples, longest history] item rows, padded with row 0.
    hist: Tensor,
    /// [examples] history lengths.
    lens: Tensor,
    /// Per user feature, [examples] rows of its table.
    codes: Vec<Tensor>,
    /// [examples, the input's non-embedding width]: age features and dense values.
    tail: Tensor,
    targets: Tensor,
    /// [1, longest history] 0, 1, 2, …: with `lens`, the pooling mask.
    positions: Tensor,
}

impl Uploaded {
    pub(super) fn new(tr: &Trainer, ex: &Examples, users: &Users) -> Result<Uploaded> {
        let dev = &tr.device;
        let (n, width) = (ex.len(), tr.config.input_dim());
        let longest = (0..n).map(|i| ex.hist_of(i).len()).max().unwrap_or(0).max(1);
        let mut hist = vec![0u32; n * longest];
        let mut lens = Vec::with_capacity(n);
        for i in 0..n {
            let h = ex.hist_of(i);
            for (slot, &item) in hist[i * longest..].iter_mut().zip(h) {
                *slot = item as u32;
            }
            lens.push(h.len() as u32);
        }
        let k = tr.features.len();
        let codes = (0..k)
            .map(|f| {
                let rows: Vec<u32> = ex.user.iter().map(|&u| users.code(f, u, tr.features[f].rows) as u32).collect();
                Tensor::from_vec(rows, n, dev)
            })
            .collect::<Result<Vec<_>>>()?;
        // The tail is what `user_input` writes after the embeddings; take it from there.
        let skip = tr.config.feature_at(k);
        let mut tail = Vec::with_capacity(n * (width - skip));
        let mut row = vec![0f32; width];
        for i in 0..n {
            let items = crate::model::ItemRows { table: &tr.items, genres: None };
            crate::model::user_input(&tr.config, items, &tr.features, users, ex.user[i], &[], ex.age[i], &mut row);
            tail.extend_from_slice(&row[skip..]);
        }
        let targets: Vec<u32> = ex.item.iter().map(|&t| t as u32).collect();
        Ok(Uploaded {
            hist: Tensor::from_vec(hist, (n, longest), dev)?,
            lens: Tensor::from_vec(lens, n, dev)?,
            codes,
            tail: Tensor::from_vec(tail, (n, width - skip), dev)?,
            targets: Tensor::from_vec(targets, n, dev)?,
            positions: Tensor::arange(0f32, longest as f32, dev)?.unsqueeze(0)?,
        })
    }
}

/// The tables, the tower and Adam, all on the device.
pub(super) struct DeviceTrainer {
    p: TrainParams,
    device: Device,
    dim: usize,
    short_hist: usize,
    recent: usize,
    pub(super) items: Var,
    /// The genre table and each item's genres, with `genres`.
    pub(super) genres: Option<DeviceGenres>,
    pub(super) features: Vec<Var>,
    tower: Vec<(Var, Var)>,
    /// ln Q of each item, -inf replaced by 0 as on the host, for sampled softmax;
    /// ln of each item's share of targets for in-batch.
    log_q: Tensor,
    log_freq: Tensor,
    /// [1, items]: -1e9 on the padding row 0, which full softmax must never pick.
    padding: Tensor,
    /// Pool histories through a [batch, items] matrix (`A @ items`, whose backward is
    /// a GEMM) instead of gathering rows (whose backward is candle's `index_add`,
    /// serial over ids on CUDA): on a GPU, while that matrix stays small. On the CPU
    /// gathering wins (MovieLens-100k, batch 256: 11 s against 32 s a run).
    pub(super) pool_by_matrix: bool,
    opt: AdamW,
}

/// The most floats the pooling matrix may hold (256 MiB).
const POOL_MATRIX_MAX: usize = 1 << 26;

/// The genres on the device: the genre table, and how a step gets each item's mean
/// of its genre rows (see [`GenreMeans`]).
pub(super) struct DeviceGenres {
    pub(super) table: Var,
    pub(super) means: GenreMeans,
    lists: GenreLists,
}

/// Each item's genre mean as weights (1 / the item's count), one of two ways; only
/// the one a run uses is uploaded.
pub(super) enum GenreMeans {
    /// [items, genres] the weight of each item's genres, while that matrix stays
    /// small: the whole catalogue's means are one product with the table (a GEMM each
    /// way, as `pool_by_matrix`'s).
    Matrix(Tensor),
    /// Otherwise gathered for just the items a step reads (whose backward is candle's
    /// `index_add`).
    Gathered(GatheredGenres),
}

/// [items, widest] genre codes padded with 0, and [items, widest, 1] the weight of
/// each (0 on padding).
pub(super) struct GatheredGenres {
    codes: Tensor,
    weights: Tensor,
}

impl GatheredGenres {
    /// [n, dim]: the mean of `table`'s genre rows for each item of `ids` ([n] u32).
    fn mean(&self, table: &Tensor, ids: &Tensor) -> Result<Tensor> {
        let (n, widest) = (ids.dim(0)?, self.codes.dim(1)?);
        let codes = self.codes.index_select(ids, 0)?.flatten_all()?;
        let rows = table.index_select(&codes, 0)?.reshape((n, widest, ()))?;
        rows.broadcast_mul(&self.weights.index_select(ids, 0)?)?.sum(1)
    }
}

impl GenreMeans {
    /// The matrix where `items × genres` fits [`POOL_MATRIX_MAX`] and `matrix` asks for it.
    pub(super) fn new(
        lists: &GenreLists,
        items: usize,
        genres: usize,
        matrix: bool,
        dev: &Device,
    ) -> Result<GenreMeans> {
        if matrix && items.saturating_mul(genres) <= POOL_MATRIX_MAX {
            let mut dense = vec![0f32; items * genres];
            for i in 0..items {
                let of = lists.of(i);
                of.iter().for_each(|&code| dense[i * genres + code as usize] += 1.0 / of.len() as f32);
            }
            return Ok(GenreMeans::Matrix(Tensor::from_vec(dense, (items, genres), dev)?));
        }
        let widest = (0..items).map(|i| lists.of(i).len()).max().unwrap_or(0).max(1);
        let mut codes = vec![0u32; items * widest];
        let mut weights = vec![0f32; items * widest];
        for i in 0..items {
            let of = lists.of(i);
            for (k, &code) in of.iter().enumerate() {
                codes[i * widest + k] = code;
                weights[i * widest + k] = 1.0 / of.len() as f32;
            }
        }
        Ok(GenreMeans::Gathered(GatheredGenres {
            codes: Tensor::from_vec(codes, (items, widest), dev)?,
            weights: Tensor::from_vec(weights, (items, widest, 1), dev)?,
        }))
    }
}

impl DeviceGenres {
    fn new(g: &Genres, items: usize, dev: &Device) -> Result<DeviceGenres> {
        Ok(DeviceGenres {
            table: Var::from_tensor(&host_table(&g.table, dev)?)?,
            means: GenreMeans::new(&g.lists, items, g.table.rows, true, dev)?,
            lists: g.lists.clone(),
        })
    }
}

impl DeviceTrainer {
    /// Takes the host trainer's starting tables and tower, so both paths start alike.
    pub(super) fn from_host(tr: &Trainer) -> Result<DeviceTrainer> {
        let dev = tr.device.clone();
        let items = Var::from_tensor(&host_table(&tr.items, &dev)?)?;
        let genres = tr.genres.as_ref().map(|g| DeviceGenres::new(&g.genres, tr.config.items, &dev)).transpose()?;
        let features =
            tr.features.iter().map(|t| Var::from_tensor(&host_table(t, &dev)?)).collect::<Result<Vec<_>>>()?;
        let mut vars = vec![items.clone()];
        vars.extend(genres.as_ref().map(|g| g.table.clone()));
        vars.extend(features.iter().cloned());
        for (w, b) in &tr.tower {
            vars.extend([w.clone(), b.clone()]);
        }
        let opt = AdamW::new(
            vars,
            ParamsAdamW {
                lr: tr.p.lr,
                beta1: f64::from(BETA1),
                beta2: f64::from(BETA2),
                eps: 1e-8,
                weight_decay: if tr.p.optimizer == super::Optim::Adamw { tr.p.weight_decay } else { 0.0 },
            },
        )?;
        let log_q = Tensor::from_vec(finite(tr.sampler.log_q.clone()), tr.sampler.log_q.len(), &dev)?;
        let log_freq = Tensor::from_vec(tr.log_freq.clone(), tr.log_freq.len(), &dev)?;
        let n = tr.config.items;
        let padding = Tensor::from_vec((0..n).map(|i| if i == 0 { -1e9f32 } else { 0.0 }).collect(), (1, n), &dev)?;
        Ok(DeviceTrainer {
            padding,
            pool_by_matrix: dev.is_cuda() && tr.p.batch_size.saturating_mul(n) <= POOL_MATRIX_MAX,
            p: tr.p.clone(),
            device: dev,
            dim: tr.config.emb_dim,
            short_hist: tr.config.short_hist,
            recent: tr.config.recent,
            items,
            genres,
            features,
            tower: tr.tower.clone(),
            log_q,
            log_freq,
            opt,
        })
    }

    /// The loss of the examples `batch` ([B] u32) against `sampled` ([S] u32, empty
    /// for in-batch), as a scalar tensor still on the device.
    pub(super) fn loss(&self, data: &Uploaded, batch: &Tensor, sampled: &Tensor) -> Result<Tensor> {
        let v = self.vectors()?;
        let u = crate::model::normalize(&crate::model::tower_forward(&self.layers(), &self.input(data, batch, &v)?)?)?;
        let targets = data.targets.index_select(batch, 0)?;
        let b = targets.dim(0)?;
        let vt = crate::model::normalize(&v.rows(&targets)?)?;
        let inv_t = 1.0 / self.p.temperature;
        let (logits, labels) = match self.p.loss {
            Loss::SampledSoftmax => {
                let s = sampled.dim(0)?;
                let vs = crate::model::normalize(&v.rows(sampled)?)?;
                let ln_s = f64::from((s as f32).ln());
                let q_t = self.log_q.index_select(&targets, 0)?.affine(1.0, ln_s)?.unsqueeze(1)?;
                let q_s = self.log_q.index_select(sampled, 0)?.affine(1.0, ln_s)?.unsqueeze(0)?;
                let true_logit = (u.mul(&vt)?.sum_keepdim(1)?.affine(inv_t, 0.0)? - q_t)?;
                let hits = targets.unsqueeze(1)?.broadcast_eq(&sampled.unsqueeze(0)?)?.to_dtype(DType::F32)?;
                let samp = (u.matmul(&vs.t()?)?.affine(inv_t, 0.0)?.broadcast_sub(&q_s)? + hits.affine(-1e9, 0.0)?)?;
                (Tensor::cat(&[&true_logit, &samp], 1)?, Tensor::zeros(b, DType::U32, &self.device)?)
            }
            Loss::InBatch => {
                let q = self.log_freq.index_select(&targets, 0)?.unsqueeze(0)?;
                // Duplicates of a row's target among the batch's other targets, not the row's own.
                let same = targets.unsqueeze(1)?.broadcast_eq(&targets.unsqueeze(0)?)?.to_dtype(DType::F32)?;
                let hits = (same - Tensor::eye(b, DType::F32, &self.device)?)?;
                let inb = (u.matmul(&vt.t()?)?.affine(inv_t, 0.0)?.broadcast_sub(&q)? + hits.affine(-1e9, 0.0)?)?;
                (inb, Tensor::arange(0u32, b as u32, &self.device)?)
            }
            Loss::Full => {
                let all = crate::model::normalize(&v.all()?)?;
                let logits = u.matmul(&all.t()?)?.affine(inv_t, 0.0)?.broadcast_add(&self.padding)?;
                (logits, targets)
            }
            Loss::Mixed => candle_core::bail!("loss mixed runs on the host path only (path: host)"),
        };
        candle_nn::loss::cross_entropy(&logits, &labels)
    }

    /// One step: the loss (left on the device) after Adam at `lr`.
    pub(super) fn step(&mut self, data: &Uploaded, batch: &Tensor, sampled: &Tensor, lr: f64) -> Result<Tensor> {
        let loss = self.loss(data, batch, sampled)?;
        self.opt.set_learning_rate(lr);
        self.opt.backward_step(&loss)?;
        Ok(loss.detach())
    }

    /// Tower inputs of `batch`: the mean of each history's rows (and of its
    /// `short_hist` most recent ones), the `recent` most recent rows one by one, the
    /// feature rows, the tail.
    fn input(&self, data: &Uploaded, batch: &Tensor, v: &ItemVectors) -> Result<Tensor> {
        let hist = data.hist.index_select(batch, 0)?;
        let lens = data.lens.index_select(batch, 0)?.to_dtype(DType::F32)?;
        let mut parts = vec![self.pool(data, &hist, &lens, v)?];
        if self.short_hist > 0 {
            parts.push(self.pool(data, &hist, &lens.clamp(0f32, self.short_hist as f32)?, v)?);
        }
        let (b, longest) = hist.dims2()?;
        for j in 0..self.recent {
            if j >= longest {
                parts.push(Tensor::zeros((b, self.dim), DType::F32, &self.device)?);
                continue;
            }
            let rows = v.rows(&hist.narrow(1, j, 1)?.squeeze(1)?)?;
            // 1 where the history has a j-th item, 0 where that slot is padding.
            let present = lens.affine(1.0, -(j as f64))?.clamp(0f32, 1f32)?.unsqueeze(1)?;
            parts.push(rows.broadcast_mul(&present)?);
        }
        for (table, codes) in self.features.iter().zip(&data.codes) {
            parts.push(table.as_tensor().index_select(&codes.index_select(batch, 0)?, 0)?);
        }
        parts.push(data.tail.index_select(batch, 0)?);
        Tensor::cat(&parts, 1)
    }

    /// The mean of the first `lens` ([B] f32) items of each of `hist`'s padded rows.
    fn pool(&self, data: &Uploaded, hist: &Tensor, lens: &Tensor, v: &ItemVectors) -> Result<Tensor> {
        let (b, longest) = hist.dims2()?;
        let mask = data.positions.broadcast_lt(&lens.unsqueeze(1)?)?.to_dtype(DType::F32)?;
        // An empty history pools to zeros, as on the host (its length counts as 1).
        let weights = mask.broadcast_mul(&lens.clamp(1f32, f32::MAX)?.recip()?.unsqueeze(1)?)?;
        if self.pool_by_matrix {
            let n = self.items.dim(0)?;
            let a = Tensor::zeros((b, n), DType::F32, &self.device)?.scatter_add(hist, &weights, 1)?;
            a.matmul(&v.all()?)
        } else {
            let rows = v.rows(&hist.flatten_all()?)?.reshape((b, longest, self.dim))?;
            rows.broadcast_mul(&weights.unsqueeze(2)?)?.sum(1)
        }
    }

    /// The item vectors of one step: the item table, with genres their means added
    /// to the whole table at once while the genre matrix fits, else row by row.
    fn vectors(&self) -> Result<ItemVectors<'_>> {
        let items = self.items.as_tensor();
        Ok(match &self.genres {
            None => ItemVectors { table: items.clone(), gathered: None },
            Some(g) => match &g.means {
                GenreMeans::Matrix(m) => {
                    ItemVectors { table: (items + m.matmul(g.table.as_tensor())?)?, gathered: None }
                }
                GenreMeans::Gathered(gathered) => {
                    ItemVectors { table: items.clone(), gathered: Some((gathered, g.table.as_tensor())) }
                }
            },
        })
    }

    fn layers(&self) -> Vec<(&Tensor, &Tensor)> {
        self.tower.iter().map(|(w, b)| (w.as_tensor(), b.as_tensor())).collect()
    }

    /// The trained model, its tables brought back to the host.
    pub(super) fn into_model(self, config: ModelConfig) -> std::result::Result<Model, StageError> {
        let cpu = |v: &Var| v.as_tensor().to_device(&Device::Cpu).map_err(crate::table::failed);
        let items = EmbeddingTable::from_tensor(&cpu(&self.items)?)?;
        let features = self
            .features
            .iter()
            .map(|v| EmbeddingTable::from_tensor(&cpu(v)?))
            .collect::<std::result::Result<_, _>>()?;
        let genres = match self.genres {
            Some(g) => Some(Genres { table: EmbeddingTable::from_tensor(&cpu(&g.table)?)?, lists: g.lists }),
            None => None,
        };
        let tower = self.tower.into_iter().map(|(w, b)| (w.as_tensor().clone(), b.as_tensor().clone())).collect();
        Ok(Model { config, items, out_items: None, genres, features, tower })
    }
}

/// Where a step reads item vectors from: `table`, plus the means of `gathered`'s codes
/// over its genre table when they are not in it.
struct ItemVectors<'a> {
    table: Tensor,
    gathered: Option<(&'a GatheredGenres, &'a Tensor)>,
}

impl ItemVectors<'_> {
    /// [n, dim]: the vectors of items `ids` ([n] u32).
    fn rows(&self, ids: &Tensor) -> Result<Tensor> {
        let rows = self.table.index_select(ids, 0)?;
        match self.gathered {
            Some((g, genres)) => rows + g.mean(genres, ids)?,
            None => Ok(rows),
        }
    }

    /// [items, dim]: every item's vector.
    fn all(&self) -> Result<Tensor> {
        match self.gathered {
            Some((g, genres)) => {
                let n = self.table.dim(0)? as u32;
                &self.table + g.mean(genres, &Tensor::arange(0u32, n, self.table.device())?)?
            }
            None => Ok(self.table.clone()),
        }
    }
}

/// The device path's side of the epoch loop: each epoch's order and sampled negatives
/// go up as one tensor each (the same negatives the host path would draw), a step
/// slices them, and the loss stays on the device until the epoch ends.
struct DeviceSteps {
    tr: Trainer,
    dt: DeviceTrainer,
    data: Uploaded,
    /// Sampled negatives a step (0 for in-batch and full softmax).
    per_step: usize,
    order: Tensor,
    sampled: Tensor,
    loss_sum: Tensor,
}

impl Steps for DeviceSteps {
    fn begin_epoch(&mut self, order: &[u32]) -> std::result::Result<(), StageError> {
        let tr = &mut self.tr;
        let count = order.len().div_ceil(tr.p.batch_size) * self.per_step;
        let sampled: Vec<u32> = (0..count).map(|_| tr.sampler.draw(&mut tr.rng) as u32).collect();
        self.order = Tensor::from_slice(order, order.len(), &tr.device).map_err(on_device)?;
        self.sampled = Tensor::from_vec(sampled, count, &tr.device).map_err(on_device)?;
        self.loss_sum = Tensor::zeros((), DType::F32, &tr.device).map_err(on_device)?;
        Ok(())
    }

    fn step(&mut self, s: usize, batch: &[u32], lr: f64) -> std::result::Result<(), StageError> {
        let rows = self.order.narrow(0, s * self.tr.p.batch_size, batch.len()).map_err(on_device)?;
        let negatives = self.sampled.narrow(0, s * self.per_step, self.per_step).map_err(on_device)?;
        let loss = self.dt.step(&self.data, &rows, &negatives, lr).map_err(on_device)?;
        self.loss_sum = (&self.loss_sum + loss).map_err(on_device)?;
        Ok(())
    }

    fn end_epoch(&mut self) -> std::result::Result<f64, StageError> {
        Ok(f64::from(self.loss_sum.to_scalar::<f32>().map_err(on_device)?))
    }
}

/// The epochs of the device path; the loss is read back once an epoch.
pub(super) fn train(
    tr: Trainer,
    ex: &Examples,
    users: &Users,
    progress: &dyn dagrun_kind::Progress,
) -> std::result::Result<(Model, Vec<LogRow>), StageError> {
    let data = Uploaded::new(&tr, ex, users).map_err(on_device)?;
    let dt = DeviceTrainer::from_host(&tr).map_err(on_device)?;
    let p = tr.p.clone();
    let per_step = if p.loss == Loss::SampledSoftmax { p.num_sampled } else { 0 };
    let empty = Tensor::zeros(0, DType::U32, &tr.device).map_err(on_device)?;
    let mut steps =
        DeviceSteps { tr, dt, data, per_step, order: empty.clone(), sampled: empty.clone(), loss_sum: empty };
    let log = epochs(&mut steps, &p, ex.len(), progress)?;
    Ok((steps.dt.into_model(steps.tr.config)?, log))
}

/// A candle error of the device path, as the stage reports it.
fn on_device(e: candle_core::Error) -> StageError {
    StageError::Failed(format!("youtube_dnn (device path): {e}"))
}

fn host_table(t: &EmbeddingTable, dev: &Device) -> Result<Tensor> {
    Tensor::from_slice(&t.data, (t.rows, t.dim), dev)
}
