//! The host path of `youtube_dnn`: the embedding tables as plain row-major
//! `Vec<f32>`s, gathered and pooled by hand; candle runs the tower and the loss on
//! small leaf tensors, and the leaves' gradients are scattered back into a lazy
//! (row-sparse) Adam update of the rows the batch touched.

use candle_core::{DType, Device, Tensor, Var};

use super::sampler::CandidateSampler;
use super::sparse::{BETA1, BETA2, LazyAdam, SparseGrad};
use super::{LogRow, Loss, Optim, Sampler, Steps, TrainParams, epochs};
use crate::model::{
    EmbeddingTable, GenreLists, Genres, ItemRows, Model, ModelConfig, Users, normalize, tower_forward, user_input,
};
use crate::rng::Rng;
use crate::schema::examples::Examples;
use crate::table::failed;
use dagrun_kind::StageError;

/// The host path's side of the epoch loop.
struct HostSteps<'e> {
    trainer: Trainer,
    examples: &'e Examples,
    users: &'e Users,
    loss_sum: f64,
}

impl Steps for HostSteps<'_> {
    fn begin_epoch(&mut self, _order: &[u32]) -> Result<(), StageError> {
        self.loss_sum = 0.0;
        Ok(())
    }
    fn step(&mut self, _s: usize, batch: &[u32], lr: f64) -> Result<(), StageError> {
        self.loss_sum += self.trainer.step(self.examples, self.users, batch, lr)?;
        Ok(())
    }
    fn end_epoch(&mut self) -> Result<f64, StageError> {
        Ok(self.loss_sum)
    }
}

/// The epochs of the host path.
pub(super) fn host_epochs(
    trainer: Trainer,
    examples: &Examples,
    users: &Users,
    progress: &dyn dagrun_kind::Progress,
) -> Result<(Model, Vec<LogRow>), StageError> {
    let p = trainer.p.clone();
    let mut steps = HostSteps { trainer, examples, users, loss_sum: 0.0 };
    let log = epochs(&mut steps, &p, examples.len(), progress)?;
    Ok((steps.trainer.into_model()?, log))
}

pub(super) struct Trainer {
    pub(super) p: TrainParams,
    pub(super) config: ModelConfig,
    pub(super) device: Device,
    pub(super) items: EmbeddingTable,
    pub(super) features: Vec<EmbeddingTable>,
    pub(super) item_adam: LazyAdam,
    pub(super) feature_adam: Vec<LazyAdam>,
    pub(super) tower: Vec<(Var, Var)>,
    /// Host copies of the tower's weights and biases with their Adam moments; a few
    /// thousand floats updated in one loop beat candle's optimiser's dozens of tiny ops.
    pub(super) tower_host: Vec<(EmbeddingTable, LazyAdam)>,
    pub(super) sampler: CandidateSampler,
    /// ln of each item's share of training targets (in-batch log-Q correction).
    pub(super) log_freq: Vec<f32>,
    pub(super) uniform: CandidateSampler,
    pub(super) rng: Rng,
    pub(super) step: u64,
    pub(super) item_grad: SparseGrad,
    pub(super) feature_grad: Vec<SparseGrad>,
    /// The candidates' own table, without `tie_item_embeddings`.
    pub(super) out: Option<OutputTable>,
    /// The genre table and each item's genres, with `genres`.
    pub(super) genres: Option<GenreTable>,
}

/// The genres of a model trained with them, with the genre table's optimiser state.
pub(super) struct GenreTable {
    pub(super) genres: Genres,
    adam: LazyAdam,
    grad: SparseGrad,
}

/// The output item table of an untied model, with its optimiser state.
pub(super) struct OutputTable {
    pub(super) table: EmbeddingTable,
    adam: LazyAdam,
    grad: SparseGrad,
}

impl GenreTable {
    /// Each item's genres, and the gradient rows of the genre table.
    fn grads(&mut self) -> (&GenreLists, &mut SparseGrad) {
        (&self.genres.lists, &mut self.grad)
    }
}

impl Trainer {
    pub(super) fn new(
        p: &TrainParams,
        config: ModelConfig,
        ex: &Examples,
        genres: Option<GenreLists>,
        device: Device,
    ) -> Result<Trainer, StageError> {
        let mut rng = Rng::new(p.seed);
        let d = config.emb_dim;
        let table = |rows: usize, std: f32, rng: &mut Rng| EmbeddingTable {
            rows,
            dim: d,
            data: (0..rows * d).map(|i| if i < d { 0.0 } else { rng.normal() as f32 * std }).collect(),
        };
        let std = p.init_std as f32;
        let items = table(config.items, std, &mut rng);
        let features: Vec<EmbeddingTable> = config.features.iter().map(|f| table(f.vocab, std, &mut rng)).collect();
        let mut tower = Vec::new();
        let mut fan_in = config.input_dim();
        for &out in &config.hidden_units {
            let bound = (6.0 / (fan_in + out) as f64).sqrt();
            let w: Vec<f32> = (0..out * fan_in).map(|_| ((rng.f64() * 2.0 - 1.0) * bound) as f32).collect();
            let w = Var::from_tensor(&Tensor::from_vec(w, (out, fan_in), &device).map_err(failed)?).map_err(failed)?;
            let b = Var::zeros(out, DType::F32, &device).map_err(failed)?;
            tower.push((w, b));
            fan_in = out;
        }
        let mut tower_host = Vec::new();
        for (w, b) in &tower {
            for v in [w, b] {
                let data = v.as_tensor().flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(failed)?;
                tower_host.push((EmbeddingTable { rows: 1, dim: data.len(), data }, LazyAdam::new(v.elem_count())));
            }
        }
        let mut counts = vec![0f64; config.items];
        for &i in &ex.item {
            counts[i as usize] += 1.0;
        }
        let total = ex.item.len() as f64;
        let log_freq = counts.iter().map(|&c| ((c + 1.0) / (total + 1.0)).ln() as f32).collect();
        let sampler = CandidateSampler::new(p.sampler, &counts, p.distortion);
        let uniform = CandidateSampler::new(Sampler::Uniform, &counts, 1.0);
        // Drawn last, so that a tied model's tables and tower start as they always did.
        let out = (!p.tie_item_embeddings).then(|| {
            let table = table(config.items, std, &mut rng);
            OutputTable { adam: LazyAdam::new(table.data.len()), grad: SparseGrad::new(config.items, d), table }
        });
        let genres = genres.map(|lists| {
            let table = table(lists.rows(), std, &mut rng);
            let (adam, grad) = (LazyAdam::new(table.data.len()), SparseGrad::new(table.rows, d));
            GenreTable { genres: Genres { lists, table }, adam, grad }
        });
        Ok(Trainer {
            out,
            genres,
            item_adam: LazyAdam::new(items.data.len()),
            feature_adam: features.iter().map(|t| LazyAdam::new(t.data.len())).collect(),
            item_grad: SparseGrad::new(config.items, d),
            feature_grad: features.iter().map(|t| SparseGrad::new(t.rows, d)).collect(),
            p: p.clone(),
            config,
            device,
            items,
            features,
            tower,
            tower_host,
            sampler,
            log_freq,
            uniform,
            rng: Rng::fork(p.seed, 0xca7d),
            step: 0,
        })
    }

    /// One optimisation step over the examples `batch`; returns the loss.
    pub(super) fn step(&mut self, ex: &Examples, users: &Users, batch: &[u32], lr: f64) -> Result<f64, StageError> {
        let (b, d) = (batch.len(), self.config.emb_dim);
        // Gather each example's tower input: pooled history, feature rows, dense values.
        let width = self.config.input_dim();
        let mut input = vec![0f32; b * width];
        let genres = self.genres.as_ref().map(|g| &g.genres);
        let hist_rows = ItemRows { table: &self.items, genres };
        for (r, &i) in batch.iter().enumerate() {
            let i = i as usize;
            let out = &mut input[r * width..(r + 1) * width];
            user_input(&self.config, hist_rows, &self.features, users, ex.user[i], ex.hist_of(i), ex.age[i], out);
        }
        // Candidates: the batch's targets, then the sampled negatives.
        let targets: Vec<i32> = batch.iter().map(|&i| ex.item[i as usize]).collect();
        let sampled: Vec<i32> = match self.p.loss {
            Loss::InBatch => Vec::new(),
            // Every item but the padding row, so that each has a slot (see `loss`).
            Loss::Full => (1..self.config.items as i32).collect(),
            Loss::SampledSoftmax => (0..self.p.num_sampled).map(|_| self.sampler.draw(&mut self.rng)).collect(),
            Loss::Mixed => (0..self.p.num_sampled).map(|_| self.uniform.draw(&mut self.rng)).collect(),
        };
        let (cand_table, cand_grad) = match &mut self.out {
            Some(o) => (&o.table, &mut o.grad),
            None => (&self.items, &mut self.item_grad),
        };
        let t_slots: Vec<u32> = targets.iter().map(|&t| cand_grad.slot_of(t as usize) as u32).collect();
        let s_slots: Vec<u32> = sampled.iter().map(|&s| cand_grad.slot_of(s as usize) as u32).collect();
        let n_cand = cand_grad.rows.len();
        let mut cand = vec![0f32; n_cand * d];
        let cand_rows = ItemRows { table: cand_table, genres };
        for (&r, out) in cand_grad.rows.iter().zip(cand.chunks_mut(d)) {
            cand_rows.write(r as usize, out);
        }

        let dev = &self.device;
        let f = |e: candle_core::Error| StageError::Failed(format!("youtube_dnn: {e}"));
        let width = self.config.input_dim();
        let x = Var::from_tensor(&Tensor::from_vec(input, (b, width), dev).map_err(f)?).map_err(f)?;
        let cand_v = Var::from_tensor(&Tensor::from_vec(cand, (n_cand, d), dev).map_err(f)?).map_err(f)?;
        let x_in = dropped(&mut self.rng, self.p.dropout, x.as_tensor()).map_err(f)?;
        let loss_t = self.loss(&x_in, cand_v.as_tensor(), &targets, &sampled, &t_slots, &s_slots).map_err(f)?;
        let loss = loss_t.to_scalar::<f32>().map_err(f)? as f64;
        let grads = loss_t.backward().map_err(f)?;

        self.step += 1;
        let t = self.step as i32;
        let lr_t = (lr * (1.0 - (BETA2 as f64).powi(t)).sqrt() / (1.0 - (BETA1 as f64).powi(t))) as f32;
        let decay = if self.p.optimizer == Optim::Adamw { (lr * self.p.weight_decay) as f32 } else { 0.0 };
        let grad_of = |v: &Var| -> Result<Vec<f32>, StageError> {
            match grads.get(v) {
                Some(g) => g.flatten_all().and_then(|g| g.to_vec1::<f32>()).map_err(f),
                None => Ok(vec![0.0; v.elem_count()]),
            }
        };
        // Tower: dense Adam on the host copies, written back into the vars.
        let vars: Vec<&Var> = self.tower.iter().flat_map(|(w, b)| [w, b]).collect();
        for (v, (host, adam)) in vars.into_iter().zip(&mut self.tower_host) {
            adam.update(host, 0, &grad_of(v)?, lr_t, decay);
            v.set(&Tensor::from_slice(&host.data, v.shape(), dev).map_err(f)?).map_err(f)?;
        }
        // Tables: scatter the input's gradient back onto the rows it came from, lazy Adam.
        let g_x = grad_of(&x)?;
        let g_cand = grad_of(&cand_v)?;
        match &mut self.out {
            Some(o) => {
                add_candidate_grads(&mut o.grad, &g_cand, self.genres.as_mut().map(GenreTable::grads));
                o.grad.apply(&mut o.table, &mut o.adam, lr_t, decay);
            }
            None => add_candidate_grads(&mut self.item_grad, &g_cand, self.genres.as_mut().map(GenreTable::grads)),
        }
        let hists = batch.iter().map(|&i| ex.hist_of(i as usize));
        add_history_grads(&mut self.item_grad, self.genres.as_mut().map(GenreTable::grads), &g_x, &self.config, hists);
        self.item_grad.apply(&mut self.items, &mut self.item_adam, lr_t, decay);
        if let Some(g) = &mut self.genres {
            g.grad.apply(&mut g.genres.table, &mut g.adam, lr_t, decay);
        }
        for k in 0..self.features.len() {
            for (r, &i) in batch.iter().enumerate() {
                let code = users.code(k, ex.user[i as usize], self.features[k].rows);
                let at = r * width + self.config.feature_at(k);
                self.feature_grad[k].add(code, &g_x[at..at + d], 1.0);
            }
            self.feature_grad[k].apply(&mut self.features[k], &mut self.feature_adam[k], lr_t, decay);
        }
        Ok(loss)
    }

    /// The loss of a batch: tower inputs `x` (one row per example), candidate item rows
    /// `cand`; targets and sampled negatives index `cand` through their slots.
    pub(super) fn loss(
        &self,
        x: &Tensor,
        cand: &Tensor,
        targets: &[i32],
        sampled: &[i32],
        t_slots: &[u32],
        s_slots: &[u32],
    ) -> candle_core::Result<Tensor> {
        let dev = &self.device;
        let b = targets.len();
        let layers: Vec<(&Tensor, &Tensor)> = self.tower.iter().map(|(w, b)| (w.as_tensor(), b.as_tensor())).collect();
        let u = normalize(&tower_forward(&layers, x)?)?;
        let items = normalize(cand)?;
        let inv_t = 1.0 / self.p.temperature;
        let vt = items.index_select(&Tensor::from_slice(t_slots, b, dev)?, 0)?;
        let (logits, labels) = match self.p.loss {
            Loss::SampledSoftmax => {
                // log-Q: the expected count of an item among s draws is s·Q(item).
                let ln_s = (sampled.len() as f32).ln();
                let q_t: Vec<f32> = targets.iter().map(|&t| self.sampler.log_q[t as usize] + ln_s).collect();
                let true_logit =
                    (u.mul(&vt)?.sum_keepdim(1)?.affine(inv_t, 0.0)? - Tensor::from_vec(finite(q_t), (b, 1), dev)?)?;
                let samp = sampled_logits(&u, &items, targets, sampled, s_slots, &self.sampler.log_q, inv_t)?;
                (Tensor::cat(&[&true_logit, &samp], 1)?, vec![0; b])
            }
            // The candidates are every item but the padding row, once each (`step` gives
            // them all a slot), so a target's slot is its label and nothing needs masking.
            Loss::Full => return full_softmax(&u, &items, t_slots, inv_t),
            Loss::InBatch | Loss::Mixed => {
                let q: Vec<f32> = targets.iter().map(|&t| self.log_freq[t as usize]).collect();
                let inb = u.matmul(&vt.t()?)?.affine(inv_t, 0.0)?.broadcast_sub(&Tensor::from_vec(q, (1, b), dev)?)?;
                let inb = (inb + hit_mask(targets, targets, true, dev)?)?;
                let logits = if self.p.loss == Loss::Mixed && !sampled.is_empty() {
                    let samp = sampled_logits(&u, &items, targets, sampled, s_slots, &self.uniform.log_q, inv_t)?;
                    Tensor::cat(&[&inb, &samp], 1)?
                } else {
                    inb
                };
                (logits, (0..b as u32).collect())
            }
        };
        cross_entropy(&logits, &labels)
    }

    pub(super) fn into_model(self) -> Result<Model, StageError> {
        let tower = self.tower.into_iter().map(|(w, b)| (w.as_tensor().clone(), b.as_tensor().clone())).collect();
        let out_items = self.out.map(|o| o.table);
        let genres = self.genres.map(|g| g.genres);
        Ok(Model { config: self.config, items: self.items, out_items, genres, features: self.features, tower })
    }
}

/// Each item's genres and the genre table's gradient rows, for a model with genres.
pub(super) type GenreGrads<'g> = Option<(&'g GenreLists, &'g mut SparseGrad)>;

/// Adds the candidates' row gradients of one step (in slot order, as `g_cand` holds
/// them) to `grad`, whose slots they were given, and each of their genres' share.
pub(super) fn add_candidate_grads(grad: &mut SparseGrad, g_cand: &[f32], mut genres: GenreGrads) {
    for (a, g) in grad.grad.iter_mut().zip(g_cand) {
        *a += g;
    }
    if let Some((lists, genre_grad)) = &mut genres {
        for (&item, g) in grad.rows.iter().zip(g_cand.chunks(grad.dim)) {
            add_genre_grads(lists, genre_grad, item as usize, g, 1.0);
        }
    }
}

/// Adds, through the mean pooling, each history item's share of its example's pooled
/// gradient (the first `dim` columns of `g_x`, a row per example of `config`'s input
/// width) to `grad` (and its genres' to the genre table's); with `short_hist`, also
/// each of the most recent items' share of the next `dim` columns, and with `recent`,
/// each recent item's own block.
pub(super) fn add_history_grads<'h>(
    grad: &mut SparseGrad,
    mut genres: GenreGrads,
    g_x: &[f32],
    config: &ModelConfig,
    hists: impl Iterator<Item = &'h [i32]>,
) {
    let (d, width, short) = (grad.dim, config.input_dim(), config.short_hist);
    for (r, hist) in hists.enumerate() {
        let row = &g_x[r * width..(r + 1) * width];
        add_pooled_grads(grad, &mut genres, hist, &row[..d]);
        if short > 0 {
            add_pooled_grads(grad, &mut genres, &hist[..hist.len().min(short)], &row[d..2 * d]);
        }
        for (j, &h) in hist.iter().take(config.recent).enumerate() {
            add_pooled_grads(grad, &mut genres, &[h], &row[config.recent_at(j)..config.recent_at(j) + d]);
        }
    }
}

/// Each of `items`' share of the gradient `g` of their mean.
fn add_pooled_grads(grad: &mut SparseGrad, genres: &mut GenreGrads, items: &[i32], g: &[f32]) {
    let scale = 1.0 / items.len().max(1) as f32;
    for &h in items {
        grad.add(h as usize, g, scale);
        if let Some((lists, genre_grad)) = genres {
            add_genre_grads(lists, genre_grad, h as usize, g, scale);
        }
    }
}

/// Each of `item`'s genres' share of the gradient `g` (times `scale`) of its vector.
fn add_genre_grads(lists: &GenreLists, grad: &mut SparseGrad, item: usize, g: &[f32], scale: f32) {
    let codes = lists.of(item);
    let share = scale / codes.len().max(1) as f32;
    for &c in codes {
        grad.add(c as usize, g, share);
    }
}

/// The logits of the users `u` against the `sampled` negatives (rows `s_slots` of the
/// candidates `items`), each less its log of expected count s·Q (`log_q`), with the
/// accidental hits masked.
fn sampled_logits(
    u: &Tensor,
    items: &Tensor,
    targets: &[i32],
    sampled: &[i32],
    s_slots: &[u32],
    log_q: &[f32],
    inv_t: f64,
) -> candle_core::Result<Tensor> {
    let (s, dev) = (sampled.len(), u.device());
    let vs = items.index_select(&Tensor::from_slice(s_slots, s, dev)?, 0)?;
    let ln_s = (s as f32).ln();
    let q_s: Vec<f32> = sampled.iter().map(|&i| log_q[i as usize] + ln_s).collect();
    let samp = u.matmul(&vs.t()?)?.affine(inv_t, 0.0)?.broadcast_sub(&Tensor::from_vec(finite(q_s), (1, s), dev)?)?;
    samp + hit_mask(targets, sampled, false, dev)?
}

/// The softmax cross-entropy of the users `u` against every candidate in `items`
/// (row r's label is column `labels[r]`), its gradient worked out by hand. candle's
/// `cross_entropy` of the logits allocates a fresh [batch, items] buffer for each op
/// of the forward and the backward, and the kernel's page faults on those were half
/// of a MovieLens run (50–54 s on one core; 18–20 s by hand). The scalar returned is
/// the loss; its backward is that of Σ u∘(G·items) + Σ items∘(Gᵀ·u) with
/// G = (softmax − one-hot) / (batch · temperature) held fixed, which is the loss's
/// gradient. The parity test pins both against the device path's `cross_entropy`.
fn full_softmax(u: &Tensor, items: &Tensor, labels: &[u32], inv_t: f64) -> candle_core::Result<Tensor> {
    let (u_c, items_c) = (u.detach(), items.detach());
    let logits = u_c.matmul(&items_c.t()?)?;
    let (b, n) = logits.dims2()?;
    let mut g = logits.flatten_all()?.to_vec1::<f32>()?;
    let loss = softmax_grad(&mut g, n, labels, inv_t as f32);
    let g = Tensor::from_vec(g, (b, n), u.device())?;
    let surrogate = (u.mul(&g.matmul(&items_c)?)?.sum_all()? + items.mul(&g.t()?.matmul(&u_c)?)?.sum_all()?)?;
    (&surrogate - surrogate.detach())?.affine(1.0, loss / b as f64)
}

/// The mean softmax cross-entropy of `logits` (row r's label is column `labels[r]`),
/// with its gradient worked out by hand as in `full_softmax`: candle's `cross_entropy`
/// is six [batch, candidates] ops forward and as many backward, each a fresh buffer;
/// by hand the example's `train` stage took 8.69 s against 9.73 s (medians of 8
/// interleaved pairs, `benches/ab.sh`). Its backward is that of Σ logits∘G, G =
/// (softmax − one-hot) / batch held fixed.
pub(super) fn cross_entropy(logits: &Tensor, labels: &[u32]) -> candle_core::Result<Tensor> {
    let (b, n) = logits.dims2()?;
    let mut g = logits.detach().flatten_all()?.to_vec1::<f32>()?;
    let loss = softmax_grad(&mut g, n, labels, 1.0);
    let surrogate = logits.mul(&Tensor::from_vec(g, (b, n), logits.device())?)?.sum_all()?;
    (&surrogate - surrogate.detach())?.affine(1.0, loss / b as f64)
}

/// Turns `z` (rows of `n` raw scores, each scaled by `inv_t` into a logit) into the
/// gradient of the mean cross-entropy, (softmax − one-hot(label)) · inv_t / rows, and
/// returns the summed loss.
fn softmax_grad(z: &mut [f32], n: usize, labels: &[u32], inv_t: f32) -> f64 {
    let scale = inv_t / labels.len() as f32;
    let mut loss = 0f64;
    for (row, &label) in z.chunks_mut(n).zip(labels) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) * inv_t;
        let label_logit = row[label as usize] * inv_t;
        let mut sum = 0f32;
        for x in row.iter_mut() {
            *x = (*x * inv_t - max).exp();
            sum += *x;
        }
        loss += f64::from(sum.ln() + max - label_logit);
        row.iter_mut().for_each(|x| *x *= scale / sum);
        row[label as usize] -= scale;
    }
    loss
}

/// Items never drawn have log Q = -inf; as a target their correction is dropped.
pub(super) fn finite(mut v: Vec<f32>) -> Vec<f32> {
    v.iter_mut().filter(|x| !x.is_finite()).for_each(|x| *x = 0.0);
    v
}

/// -1e9 where column j's item equals row b's target (an accidental hit), 0 elsewhere;
/// with `skip_diagonal`, row b's own column is the positive and stays.
pub(super) fn hit_mask(
    targets: &[i32],
    columns: &[i32],
    skip_diagonal: bool,
    dev: &Device,
) -> candle_core::Result<Tensor> {
    let mut m = vec![0f32; targets.len() * columns.len()];
    for (r, t) in targets.iter().enumerate() {
        for (c, x) in columns.iter().enumerate() {
            if x == t && !(skip_diagonal && r == c) {
                m[r * columns.len() + c] = -1e9;
            }
        }
    }
    Tensor::from_vec(m, (targets.len(), columns.len()), dev)
}

/// The tower input `x` with `dropout` of its values zeroed and the rest scaled up, by
/// a mask from the trainer's seeded generator, so that runs repeat. Without dropout it
/// draws nothing, so the negatives are those of a run without it.
fn dropped(rng: &mut Rng, dropout: f64, x: &Tensor) -> candle_core::Result<Tensor> {
    if dropout == 0.0 {
        return Ok(x.clone());
    }
    let keep = 1.0 - dropout;
    let scale = (1.0 / keep) as f32;
    let mask: Vec<f32> = (0..x.elem_count()).map(|_| if rng.f64() < keep { scale } else { 0.0 }).collect();
    x.mul(&Tensor::from_vec(mask, x.shape(), x.device())?)
}
