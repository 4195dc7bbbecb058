//! Kind `youtube_dnn`: trains the YouTubeDNN recall model (Covington et al. 2016,
//! as DeepMatch builds it) with sampled, in-batch or mixed softmax.
//!
//! Why it is split the way it is: candle's backward through an embedding lookup
//! yields a gradient as large as the whole table, and its optimisers then touch every
//! row. So the item and user-feature tables stay plain `Vec<f32>`s: a batch's rows
//! are gathered and pooled by hand, candle runs the tower and the loss on small leaf
//! tensors, and the gradients of those leaves are scattered back into a lazy
//! (row-sparse) Adam update of just the rows the batch touched.

use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
use serde::{Deserialize, Serialize};

use crate::rng::{Alias, Rng};
use crate::table::{self, failed};
use crate::youtube_dnn::{
    Examples, Model, ModelConfig, Table, Users, normalize, tower_forward, user_input,
};
use crate::{Format, KindSpec, OutputSpec, Report, StageCtx, StageError, params};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// `num_sampled` negatives shared by the batch, drawn from `sampler`.
    SampledSoftmax,
    /// The batch's other targets are the negatives.
    InBatch,
    /// In-batch negatives plus `num_sampled` uniform ones.
    Mixed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampler {
    Uniform,
    /// Unigram counts of training targets raised to `distortion`.
    Frequency,
    /// Zipf over items ranked by popularity (TensorFlow's log-uniform sampler).
    LogUniform,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Optim {
    Adam,
    Adamw,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainParams {
    pub emb_dim: usize,
    /// Tower layer sizes; the last is the user vector and must equal `emb_dim`.
    /// Absent means `[64, emb_dim]`.
    pub hidden_units: Option<Vec<usize>>,
    pub use_user_id: bool,
    pub temperature: f64,
    pub loss: Loss,
    pub num_sampled: usize,
    pub sampler: Sampler,
    pub distortion: f64,
    pub optimizer: Optim,
    pub weight_decay: f64,
    pub lr: f64,
    /// Decay the learning rate linearly to `lr * lr_end` over the run.
    pub lr_end: f64,
    pub batch_size: usize,
    pub epochs: usize,
    pub seed: u64,
    /// `cpu`, `cuda`, `cuda:N` or `auto`.
    pub device: String,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            emb_dim: 32,
            hidden_units: None,
            use_user_id: true,
            temperature: 0.05,
            loss: Loss::SampledSoftmax,
            num_sampled: 255,
            sampler: Sampler::Frequency,
            distortion: 0.75,
            optimizer: Optim::Adam,
            weight_decay: 0.0,
            lr: 0.005,
            lr_end: 1.0,
            batch_size: 256,
            epochs: 5,
            seed: 0,
            device: "cpu".into(),
        }
    }
}

pub(crate) const MODEL: OutputSpec = OutputSpec {
    name: "model",
    format: Format::Safetensors,
};
pub(crate) const CONFIG: OutputSpec = OutputSpec {
    name: "config",
    format: Format::Json,
};
const LOG: OutputSpec = OutputSpec {
    name: "log",
    format: Format::Parquet,
};

pub const SPEC: KindSpec = KindSpec {
    name: "youtube_dnn",
    summary: "trains the YouTubeDNN two-tower recall model (candle; CPU, or CUDA with a feature)",
    inputs: &["samples", "users", "vocab"],
    outputs: &[MODEL, CONFIG, LOG],
    fingerprint: crate::fingerprints::YOUTUBE_DNN,
    params: params::check::<TrainParams>,
    run,
};

fn run(ctx: &StageCtx) -> Result<Report, StageError> {
    // The tower's tensors are tiny: candle's ops run faster on one thread than split
    // over several (measured: 1.72 s vs 2.24 s for 3 epochs of MovieLens-100k).
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(failed)?;
    pool.install(|| train(ctx))
}

fn train(ctx: &StageCtx) -> Result<Report, StageError> {
    let p: TrainParams = params::typed(ctx.params)?;
    let hidden = p
        .hidden_units
        .clone()
        .unwrap_or_else(|| vec![64, p.emb_dim]);
    if hidden.last() != Some(&p.emb_dim) || hidden.contains(&0) || p.emb_dim == 0 {
        return Err(StageError::BadInput(format!(
            "youtube_dnn: the last of hidden_units {hidden:?} is the user vector and must equal emb_dim {}",
            p.emb_dim
        )));
    }
    if p.batch_size == 0 || p.temperature <= 0.0 || p.lr <= 0.0 {
        return Err(StageError::BadInput(
            "youtube_dnn: batch_size, temperature and lr must be positive".into(),
        ));
    }
    let (device, note) = crate::youtube_dnn::device(&p.device)?;
    let examples = Examples::read(ctx.input("samples")?, true)?;
    if examples.is_empty() {
        return Err(StageError::BadInput(
            "youtube_dnn: the samples hold no positive training example".into(),
        ));
    }
    let users = Users::read(ctx.input("users")?, p.use_user_id)?;
    let items = item_count(ctx.input("vocab")?)?
        .max(examples.item.iter().copied().max().unwrap_or(0) as usize + 1);
    let age_max = examples.age.iter().copied().fold(1.0f32, f32::max);
    let config = ModelConfig {
        emb_dim: p.emb_dim,
        hidden_units: hidden,
        temperature: p.temperature,
        items,
        features: users.features.clone(),
        dense: users.dense_names.clone(),
        age_max,
    };
    let mut trainer = Trainer::new(&p, config, &examples, device)?;
    let mut log = Vec::new();
    let mut order: Vec<u32> = (0..examples.len() as u32).collect();
    let steps_per_epoch = examples.len().div_ceil(p.batch_size);
    let total_steps = steps_per_epoch * p.epochs;
    ctx.progress.set_length(total_steps as u64);
    let mut shuffle = Rng::fork(p.seed, 0x5eed);
    for epoch in 0..p.epochs {
        let started = Instant::now();
        for i in (1..order.len()).rev() {
            order.swap(i, shuffle.below(i as u64 + 1) as usize);
        }
        let mut loss_sum = 0.0;
        for (s, batch) in order.chunks(p.batch_size).enumerate() {
            let progress = (epoch * steps_per_epoch + s) as f64 / total_steps as f64;
            let lr = p.lr * (1.0 - (1.0 - p.lr_end) * progress);
            loss_sum += trainer.step(&examples, &users, batch, lr)?;
            if s % 16 == 0 {
                ctx.progress
                    .set_position((epoch * steps_per_epoch + s) as u64);
            }
        }
        let secs = started.elapsed().as_secs_f64();
        let loss = loss_sum / steps_per_epoch as f64;
        if !loss.is_finite() {
            return Err(StageError::Failed(format!(
                "youtube_dnn: the loss diverged in epoch {epoch}; lower lr"
            )));
        }
        ctx.progress
            .set_message(&format!("epoch {} loss {loss:.4}", epoch + 1));
        log.push((
            epoch as i64 + 1,
            ((epoch + 1) * steps_per_epoch) as i64,
            loss,
            secs,
            examples.len() as f64 / secs,
        ));
    }
    let model = trainer.into_model()?;
    model.save(&ctx.output(&MODEL))?;
    std::fs::write(
        ctx.output(&CONFIG),
        serde_json::to_vec_pretty(&model.config).map_err(failed)?,
    )?;
    let rows = table::write(
        &ctx.output(&LOG),
        vec![
            (
                "epoch",
                Arc::new(Int64Array::from_iter_values(log.iter().map(|l| l.0))) as ArrayRef,
            ),
            (
                "steps",
                Arc::new(Int64Array::from_iter_values(log.iter().map(|l| l.1))),
            ),
            (
                "loss",
                Arc::new(Float64Array::from_iter_values(log.iter().map(|l| l.2))),
            ),
            (
                "seconds",
                Arc::new(Float64Array::from_iter_values(log.iter().map(|l| l.3))),
            ),
            (
                "samples_per_s",
                Arc::new(Float64Array::from_iter_values(log.iter().map(|l| l.4))),
            ),
        ],
    )?;
    let mut report = Report::default();
    report.rows.insert("log".into(), rows);
    if let Some(last) = log.last() {
        report.metrics.insert("final_loss".into(), last.2);
    }
    let secs: f64 = log.iter().map(|l| l.3).sum();
    report.metrics.insert("train_seconds".into(), secs);
    report.metrics.insert(
        "samples_per_s".into(),
        (examples.len() * p.epochs) as f64 / secs,
    );
    report.notes.extend(note);
    Ok(report)
}

/// Item table rows (with padding) from `encode.vocab`.
fn item_count(vocab: &std::path::Path) -> Result<usize, StageError> {
    let b = table::read(vocab)?;
    let feature = table::column::<StringArray>(&b, "feature", vocab)?;
    Ok(feature
        .iter()
        .filter(|f| *f == Some(crate::clicks::ITEM))
        .count()
        + 1)
}

/// Draws the shared negatives and knows each item's sampling probability.
struct CandidateSampler {
    alias: Option<Alias>,
    /// ln of each item's probability of one draw (0 for items never drawn).
    log_q: Vec<f32>,
    items: usize,
}

impl CandidateSampler {
    fn new(kind: Sampler, counts: &[f64], distortion: f64) -> CandidateSampler {
        let n = counts.len();
        let weights: Vec<f64> = match kind {
            Sampler::Uniform => (0..n).map(|i| if i == 0 { 0.0 } else { 1.0 }).collect(),
            Sampler::Frequency => counts
                .iter()
                .enumerate()
                .map(|(i, c)| if i == 0 { 0.0 } else { c.powf(distortion) })
                .collect(),
            Sampler::LogUniform => {
                let mut ranked: Vec<usize> = (1..n).collect();
                ranked.sort_by(|&a, &b| counts[b].total_cmp(&counts[a]).then(a.cmp(&b)));
                let mut w = vec![0.0; n];
                for (r, &i) in ranked.iter().enumerate() {
                    w[i] = ((r as f64 + 2.0) / (r as f64 + 1.0)).ln();
                }
                w
            }
        };
        let total: f64 = weights.iter().sum();
        let log_q = weights
            .iter()
            .map(|w| {
                if *w > 0.0 {
                    (w / total).ln() as f32
                } else {
                    f32::NEG_INFINITY
                }
            })
            .collect();
        let alias = (kind != Sampler::Uniform).then(|| Alias::new(&weights));
        CandidateSampler {
            alias,
            log_q,
            items: n,
        }
    }

    fn draw(&self, rng: &mut Rng) -> i32 {
        match &self.alias {
            Some(a) => a.sample(rng) as i32,
            None => 1 + rng.below(self.items as u64 - 1) as i32,
        }
    }
}

/// Adam moments of one embedding table, updated row by row.
struct LazyAdam {
    m: Vec<f32>,
    v: Vec<f32>,
}

const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const EPS: f32 = 1e-8;

impl LazyAdam {
    fn new(len: usize) -> LazyAdam {
        LazyAdam {
            m: vec![0.0; len],
            v: vec![0.0; len],
        }
    }

    /// Applies `grad` to row `row` of `table`; `lr_t` carries the bias correction.
    fn update(&mut self, table: &mut Table, row: usize, grad: &[f32], lr_t: f32, decay: f32) {
        let d = table.dim;
        let (m, v) = (
            &mut self.m[row * d..(row + 1) * d],
            &mut self.v[row * d..(row + 1) * d],
        );
        let w = table.row_mut(row);
        for k in 0..d {
            m[k] = BETA1 * m[k] + (1.0 - BETA1) * grad[k];
            v[k] = BETA2 * v[k] + (1.0 - BETA2) * grad[k] * grad[k];
            w[k] -= lr_t * m[k] / (v[k].sqrt() + EPS) + decay * w[k];
        }
    }
}

/// Gradient rows accumulated per item (or feature code) for one step.
struct SparseGrad {
    dim: usize,
    slot: Vec<u32>,
    rows: Vec<u32>,
    grad: Vec<f32>,
}

impl SparseGrad {
    fn new(rows: usize, dim: usize) -> SparseGrad {
        SparseGrad {
            dim,
            slot: vec![u32::MAX; rows],
            rows: Vec::new(),
            grad: Vec::new(),
        }
    }

    /// The slot of `row`, added (with a zero gradient) if new.
    fn slot_of(&mut self, row: usize) -> usize {
        if self.slot[row] == u32::MAX {
            self.slot[row] = self.rows.len() as u32;
            self.rows.push(row as u32);
            self.grad.resize(self.grad.len() + self.dim, 0.0);
        }
        self.slot[row] as usize
    }

    fn add(&mut self, row: usize, g: &[f32], scale: f32) {
        let s = self.slot_of(row);
        for (a, b) in self.grad[s * self.dim..(s + 1) * self.dim]
            .iter_mut()
            .zip(g)
        {
            *a += b * scale;
        }
    }

    /// Applies every accumulated row with Adam, then forgets them.
    fn apply(&mut self, table: &mut Table, adam: &mut LazyAdam, lr_t: f32, decay: f32) {
        for (s, &row) in self.rows.iter().enumerate() {
            adam.update(
                table,
                row as usize,
                &self.grad[s * self.dim..(s + 1) * self.dim],
                lr_t,
                decay,
            );
            self.slot[row as usize] = u32::MAX;
        }
        self.rows.clear();
        self.grad.clear();
    }
}

struct Trainer {
    p: TrainParams,
    config: ModelConfig,
    device: Device,
    items: Table,
    features: Vec<Table>,
    item_adam: LazyAdam,
    feature_adam: Vec<LazyAdam>,
    tower: Vec<(Var, Var)>,
    /// Host copies of the tower's weights and biases with their Adam moments; a few
    /// thousand floats updated in one loop beat candle's optimiser's dozens of tiny ops.
    tower_host: Vec<(Table, LazyAdam)>,
    sampler: CandidateSampler,
    /// ln of each item's share of training targets (in-batch log-Q correction).
    log_freq: Vec<f32>,
    uniform: CandidateSampler,
    rng: Rng,
    step: u64,
    item_grad: SparseGrad,
    feature_grad: Vec<SparseGrad>,
}

impl Trainer {
    fn new(
        p: &TrainParams,
        config: ModelConfig,
        ex: &Examples,
        device: Device,
    ) -> Result<Trainer, StageError> {
        let mut rng = Rng::new(p.seed);
        let d = config.emb_dim;
        let table = |rows: usize, std: f32, rng: &mut Rng| Table {
            rows,
            dim: d,
            data: (0..rows * d)
                .map(|i| {
                    if i < d {
                        0.0
                    } else {
                        rng.normal() as f32 * std
                    }
                })
                .collect(),
        };
        let items = table(config.items, 0.1, &mut rng);
        let features: Vec<Table> = config
            .features
            .iter()
            .map(|f| table(f.vocab, 0.1, &mut rng))
            .collect();
        let mut tower = Vec::new();
        let mut fan_in = config.input_dim();
        for &out in &config.hidden_units {
            let bound = (6.0 / (fan_in + out) as f64).sqrt();
            let w: Vec<f32> = (0..out * fan_in)
                .map(|_| ((rng.f64() * 2.0 - 1.0) * bound) as f32)
                .collect();
            let w = Var::from_tensor(&Tensor::from_vec(w, (out, fan_in), &device).map_err(failed)?)
                .map_err(failed)?;
            let b = Var::zeros(out, DType::F32, &device).map_err(failed)?;
            tower.push((w, b));
            fan_in = out;
        }
        let mut tower_host = Vec::new();
        for (w, b) in &tower {
            for v in [w, b] {
                let data = v
                    .as_tensor()
                    .flatten_all()
                    .and_then(|t| t.to_vec1::<f32>())
                    .map_err(failed)?;
                tower_host.push((
                    Table {
                        rows: 1,
                        dim: data.len(),
                        data,
                    },
                    LazyAdam::new(v.elem_count()),
                ));
            }
        }
        let mut counts = vec![0f64; config.items];
        for &i in &ex.item {
            counts[i as usize] += 1.0;
        }
        let total = ex.item.len() as f64;
        let log_freq = counts
            .iter()
            .map(|&c| ((c + 1.0) / (total + 1.0)).ln() as f32)
            .collect();
        let sampler = CandidateSampler::new(p.sampler, &counts, p.distortion);
        let uniform = CandidateSampler::new(Sampler::Uniform, &counts, 1.0);
        Ok(Trainer {
            item_adam: LazyAdam::new(items.data.len()),
            feature_adam: features
                .iter()
                .map(|t| LazyAdam::new(t.data.len()))
                .collect(),
            item_grad: SparseGrad::new(config.items, d),
            feature_grad: features
                .iter()
                .map(|t| SparseGrad::new(t.rows, d))
                .collect(),
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
    fn step(
        &mut self,
        ex: &Examples,
        users: &Users,
        batch: &[u32],
        lr: f64,
    ) -> Result<f64, StageError> {
        let (b, d) = (batch.len(), self.config.emb_dim);
        // Gather each example's tower input: pooled history, feature rows, dense values.
        let width = self.config.input_dim();
        let mut input = vec![0f32; b * width];
        for (r, &i) in batch.iter().enumerate() {
            let i = i as usize;
            let out = &mut input[r * width..(r + 1) * width];
            user_input(
                &self.config,
                &self.items,
                &self.features,
                users,
                ex.user[i],
                ex.hist_of(i),
                ex.age[i],
                out,
            );
        }
        // Candidates: the batch's targets, then the sampled negatives.
        let targets: Vec<i32> = batch.iter().map(|&i| ex.item[i as usize]).collect();
        let sampled: Vec<i32> = match self.p.loss {
            Loss::InBatch => Vec::new(),
            Loss::SampledSoftmax => (0..self.p.num_sampled)
                .map(|_| self.sampler.draw(&mut self.rng))
                .collect(),
            Loss::Mixed => (0..self.p.num_sampled)
                .map(|_| self.uniform.draw(&mut self.rng))
                .collect(),
        };
        let t_slots: Vec<u32> = targets
            .iter()
            .map(|&t| self.item_grad.slot_of(t as usize) as u32)
            .collect();
        let s_slots: Vec<u32> = sampled
            .iter()
            .map(|&s| self.item_grad.slot_of(s as usize) as u32)
            .collect();
        let cand_rows = self.item_grad.rows.clone();
        let mut cand = Vec::with_capacity(cand_rows.len() * d);
        for &r in &cand_rows {
            cand.extend_from_slice(self.items.row(r as usize));
        }

        let dev = &self.device;
        let f = |e: candle_core::Error| StageError::Failed(format!("youtube_dnn: {e}"));
        let width = self.config.input_dim();
        let x =
            Var::from_tensor(&Tensor::from_vec(input, (b, width), dev).map_err(f)?).map_err(f)?;
        let cand_v =
            Var::from_tensor(&Tensor::from_vec(cand, (cand_rows.len(), d), dev).map_err(f)?)
                .map_err(f)?;
        let loss_t = self
            .loss(
                x.as_tensor(),
                cand_v.as_tensor(),
                &targets,
                &sampled,
                &t_slots,
                &s_slots,
            )
            .map_err(f)?;
        let loss = loss_t.to_scalar::<f32>().map_err(f)? as f64;
        let grads = loss_t.backward().map_err(f)?;

        self.step += 1;
        let t = self.step as i32;
        let lr_t =
            (lr * (1.0 - (BETA2 as f64).powi(t)).sqrt() / (1.0 - (BETA1 as f64).powi(t))) as f32;
        let decay = if self.p.optimizer == Optim::Adamw {
            (lr * self.p.weight_decay) as f32
        } else {
            0.0
        };
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
            v.set(&Tensor::from_slice(&host.data, v.shape(), dev).map_err(f)?)
                .map_err(f)?;
        }
        // Tables: scatter the input's gradient back onto the rows it came from, lazy Adam.
        let g_x = grad_of(&x)?;
        let g_cand = grad_of(&cand_v)?;
        scatter_item_grads(
            &mut self.item_grad,
            &g_cand,
            &g_x,
            width,
            batch.iter().map(|&i| ex.hist_of(i as usize)),
        );
        self.item_grad
            .apply(&mut self.items, &mut self.item_adam, lr_t, decay);
        for k in 0..self.features.len() {
            for (r, &i) in batch.iter().enumerate() {
                let code = (users.codes[k]
                    .get(ex.user[i as usize] as usize)
                    .copied()
                    .unwrap_or(0) as usize)
                    .min(self.features[k].rows - 1);
                let at = r * width + d * (1 + k);
                self.feature_grad[k].add(code, &g_x[at..at + d], 1.0);
            }
            self.feature_grad[k].apply(
                &mut self.features[k],
                &mut self.feature_adam[k],
                lr_t,
                decay,
            );
        }
        Ok(loss)
    }

    /// The loss of a batch: tower inputs `x` (one row per example), candidate item rows
    /// `cand`; targets and sampled negatives index `cand` through their slots.
    fn loss(
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
        let layers: Vec<(&Tensor, &Tensor)> = self
            .tower
            .iter()
            .map(|(w, b)| (w.as_tensor(), b.as_tensor()))
            .collect();
        let u = normalize(&tower_forward(&layers, x)?)?;
        let items = normalize(cand)?;
        let inv_t = 1.0 / self.p.temperature;
        let vt = items.index_select(&Tensor::from_slice(t_slots, b, dev)?, 0)?;
        let (logits, labels) = match self.p.loss {
            Loss::SampledSoftmax => {
                let s = sampled.len();
                let vs = items.index_select(&Tensor::from_slice(s_slots, s, dev)?, 0)?;
                // log-Q: the expected count of an item among s draws is s·Q(item).
                let ln_s = (s as f32).ln();
                let q_t: Vec<f32> = targets
                    .iter()
                    .map(|&t| self.sampler.log_q[t as usize] + ln_s)
                    .collect();
                let q_s: Vec<f32> = sampled
                    .iter()
                    .map(|&i| self.sampler.log_q[i as usize] + ln_s)
                    .collect();
                let true_logit = (u.mul(&vt)?.sum_keepdim(1)?.affine(inv_t, 0.0)?
                    - Tensor::from_vec(finite(q_t), (b, 1), dev)?)?;
                let samp = u
                    .matmul(&vs.t()?)?
                    .affine(inv_t, 0.0)?
                    .broadcast_sub(&Tensor::from_vec(finite(q_s), (1, s), dev)?)?;
                let samp = (samp + hit_mask(targets, sampled, false, dev)?)?;
                (
                    Tensor::cat(&[&true_logit, &samp], 1)?,
                    Tensor::zeros(b, DType::U32, dev)?,
                )
            }
            Loss::InBatch | Loss::Mixed => {
                let q: Vec<f32> = targets.iter().map(|&t| self.log_freq[t as usize]).collect();
                let inb = u
                    .matmul(&vt.t()?)?
                    .affine(inv_t, 0.0)?
                    .broadcast_sub(&Tensor::from_vec(q, (1, b), dev)?)?;
                let inb = (inb + hit_mask(targets, targets, true, dev)?)?;
                let logits = if self.p.loss == Loss::Mixed && !sampled.is_empty() {
                    let s = sampled.len();
                    let vs = items.index_select(&Tensor::from_slice(s_slots, s, dev)?, 0)?;
                    let q_s: Vec<f32> = sampled
                        .iter()
                        .map(|&i| self.uniform.log_q[i as usize] + (s as f32).ln())
                        .collect();
                    let samp = u
                        .matmul(&vs.t()?)?
                        .affine(inv_t, 0.0)?
                        .broadcast_sub(&Tensor::from_vec(q_s, (1, s), dev)?)?;
                    let samp = (samp + hit_mask(targets, sampled, false, dev)?)?;
                    Tensor::cat(&[&inb, &samp], 1)?
                } else {
                    inb
                };
                (logits, Tensor::arange(0u32, b as u32, dev)?)
            }
        };
        candle_nn::loss::cross_entropy(&logits, &labels)
    }

    fn into_model(self) -> Result<Model, StageError> {
        let tower = self
            .tower
            .into_iter()
            .map(|(w, b)| (w.as_tensor().clone(), b.as_tensor().clone()))
            .collect();
        Ok(Model {
            config: self.config,
            items: self.items,
            features: self.features,
            tower,
        })
    }
}

/// Adds the item-row gradients of one step to `grad`: the candidates' rows (in slot
/// order, as `g_cand` holds them) and, through the mean pooling, each history item's
/// share of its example's pooled gradient (the first `dim` columns of `g_x`).
fn scatter_item_grads<'h>(
    grad: &mut SparseGrad,
    g_cand: &[f32],
    g_x: &[f32],
    width: usize,
    hists: impl Iterator<Item = &'h [i32]>,
) {
    let d = grad.dim;
    for (s, chunk) in g_cand.chunks(d).enumerate() {
        for (a, g) in grad.grad[s * d..(s + 1) * d].iter_mut().zip(chunk) {
            *a += g;
        }
    }
    for (r, hist) in hists.enumerate() {
        if hist.is_empty() {
            continue;
        }
        let scale = 1.0 / hist.len() as f32;
        for &h in hist {
            grad.add(h as usize, &g_x[r * width..r * width + d], scale);
        }
    }
}

/// Items never drawn have log Q = -inf; as a target their correction is dropped.
fn finite(mut v: Vec<f32>) -> Vec<f32> {
    v.iter_mut()
        .filter(|x| !x.is_finite())
        .for_each(|x| *x = 0.0);
    v
}

/// -1e9 where column j's item equals row b's target (an accidental hit), 0 elsewhere;
/// with `skip_diagonal`, row b's own column is the positive and stays.
fn hit_mask(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32, tol: f32) {
        assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{a} != {b}");
    }

    #[test]
    fn log_q_of_each_sampler() {
        let counts = [0.0, 3.0, 1.0, 0.0];
        let u = CandidateSampler::new(Sampler::Uniform, &counts, 1.0);
        close(u.log_q[1], (1.0f32 / 3.0).ln(), 1e-6);
        close(u.log_q[3], (1.0f32 / 3.0).ln(), 1e-6);
        assert_eq!(u.log_q[0], f32::NEG_INFINITY, "padding is never drawn");
        let f = CandidateSampler::new(Sampler::Frequency, &counts, 1.0);
        close(f.log_q[1], 0.75f32.ln(), 1e-6);
        close(f.log_q[2], 0.25f32.ln(), 1e-6);
        assert_eq!(
            f.log_q[3],
            f32::NEG_INFINITY,
            "an item never clicked is never drawn"
        );
        let f = CandidateSampler::new(Sampler::Frequency, &counts, 0.5);
        close(f.log_q[1], (3f32.sqrt() / (3f32.sqrt() + 1.0)).ln(), 1e-6);
        // Log-uniform by popularity rank r: ln((r+2)/(r+1)) / ln(n+1).
        let l = CandidateSampler::new(Sampler::LogUniform, &counts, 1.0);
        close(l.log_q[1], (2f32.ln() / 4f32.ln()).ln(), 1e-6);
        close(l.log_q[3], ((4.0f32 / 3.0).ln() / 4f32.ln()).ln(), 1e-6);
    }

    #[test]
    fn accidental_hits_and_in_batch_duplicates_are_masked() {
        let dev = Device::Cpu;
        let m = hit_mask(&[1, 2], &[2, 3, 1], false, &dev)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(m, [vec![0.0, 0.0, -1e9], vec![-1e9, 0.0, 0.0]]);
        let m = hit_mask(&[1, 1, 2], &[1, 1, 2], true, &dev)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(
            m,
            [
                vec![0.0, -1e9, 0.0],
                vec![-1e9, 0.0, 0.0],
                vec![0.0, 0.0, 0.0]
            ]
        );
    }

    #[test]
    fn pooling_is_the_mean_of_the_history() {
        let t = Table {
            rows: 3,
            dim: 2,
            data: vec![0.0, 0.0, 1.0, 2.0, 3.0, 6.0],
        };
        let mut out = [9.0; 2];
        crate::youtube_dnn::pool(&t, &[1, 2], &mut out);
        assert_eq!(out, [2.0, 4.0]);
        crate::youtube_dnn::pool(&t, &[], &mut out);
        assert_eq!(out, [0.0, 0.0], "an empty history pools to zeros");
    }

    /// A trainer over 6 items of dimension 4, no user features.
    fn tiny(loss: Loss, sampler: Sampler) -> (Trainer, Examples, Users) {
        let ex = Examples {
            user: vec![1, 1, 2],
            item: vec![2, 3, 3],
            hist_offsets: vec![0, 1, 3, 5],
            hist: vec![1, 2, 1, 4, 5],
            age: vec![1.0, 0.5, 0.0],
        };
        let users = Users {
            codes: vec![],
            features: vec![],
            dense: vec![],
            dense_names: vec![],
        };
        let config = ModelConfig {
            emb_dim: 4,
            hidden_units: vec![5, 4],
            temperature: 0.5,
            items: 6,
            features: vec![],
            dense: vec![],
            age_max: 1.0,
        };
        let p = TrainParams {
            emb_dim: 4,
            loss,
            sampler,
            distortion: 1.0,
            temperature: 0.5,
            seed: 3,
            ..Default::default()
        };
        (
            Trainer::new(&p, config, &ex, Device::Cpu).unwrap(),
            ex,
            users,
        )
    }

    fn inputs(tr: &Trainer, ex: &Examples, users: &Users) -> Vec<f32> {
        let w = tr.config.input_dim();
        let mut x = vec![0f32; ex.len() * w];
        for i in 0..ex.len() {
            user_input(
                &tr.config,
                &tr.items,
                &tr.features,
                users,
                ex.user[i],
                ex.hist_of(i),
                ex.age[i],
                &mut x[i * w..(i + 1) * w],
            );
        }
        x
    }

    #[test]
    fn sampled_softmax_matches_a_hand_computation() {
        let (tr, ex, users) = tiny(Loss::SampledSoftmax, Sampler::Frequency);
        let dev = Device::Cpu;
        let w = tr.config.input_dim();
        let x = Tensor::from_vec(inputs(&tr, &ex, &users), (3, w), &dev).unwrap();
        // Candidates: targets 2, 3 and sampled 3, 2: each row has one accidental hit.
        let rows = [2usize, 3];
        let cand: Vec<f32> = rows
            .iter()
            .flat_map(|&r| tr.items.row(r).to_vec())
            .collect();
        let cand_t = Tensor::from_vec(cand.clone(), (2, 4), &dev).unwrap();
        let (targets, sampled) = ([2, 3, 3], [3, 2]);
        let loss = tr
            .loss(&x, &cand_t, &targets, &sampled, &[0, 1, 1], &[1, 0])
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();

        let layers: Vec<(&Tensor, &Tensor)> = tr
            .tower
            .iter()
            .map(|(w, b)| (w.as_tensor(), b.as_tensor()))
            .collect();
        let u = normalize(&tower_forward(&layers, &x).unwrap())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let unit = |r: usize| {
            let v = &cand[r * 4..(r + 1) * 4];
            let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
            v.iter().map(|a| a / n).collect::<Vec<f32>>()
        };
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        // Frequency sampler over target counts: item 2 once, item 3 twice.
        let log_q = |item: i32| {
            if item == 2 {
                (1.0f32 / 3.0).ln()
            } else if item == 3 {
                (2.0f32 / 3.0).ln()
            } else {
                f32::NEG_INFINITY
            }
        };
        let ln_s = 2f32.ln();
        let mut total = 0.0;
        for (b, &t) in targets.iter().enumerate() {
            let slot = if t == 2 { 0 } else { 1 };
            let mut logits = vec![dot(&u[b], &unit(slot)) / 0.5 - (log_q(t) + ln_s)];
            for &s in &sampled {
                let z = dot(&u[b], &unit(if s == 2 { 0 } else { 1 })) / 0.5 - (log_q(s) + ln_s);
                logits.push(if s == t { z - 1e9 } else { z });
            }
            let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let lse = max + logits.iter().map(|z| (z - max).exp()).sum::<f32>().ln();
            total += lse - logits[0];
        }
        close(loss, total / 3.0, 1e-4);
    }

    #[test]
    fn sparse_gradient_matches_candles_dense_one() {
        for loss in [Loss::SampledSoftmax, Loss::InBatch, Loss::Mixed] {
            let (mut tr, ex, users) = tiny(loss, Sampler::Uniform);
            let dev = Device::Cpu;
            let (d, w) = (4, tr.config.input_dim());
            let targets: Vec<i32> = ex.item.clone();
            let sampled = vec![5, 1];
            let t_slots: Vec<u32> = targets
                .iter()
                .map(|&t| tr.item_grad.slot_of(t as usize) as u32)
                .collect();
            let s_slots: Vec<u32> = if loss == Loss::InBatch {
                vec![]
            } else {
                sampled
                    .iter()
                    .map(|&s| tr.item_grad.slot_of(s as usize) as u32)
                    .collect()
            };
            let sampled = if loss == Loss::InBatch {
                vec![]
            } else {
                sampled
            };
            let cand_rows = tr.item_grad.rows.clone();

            // Sparse: leaves x and the candidate rows, gradients scattered by hand.
            let x = Var::from_tensor(
                &Tensor::from_vec(inputs(&tr, &ex, &users), (3, w), &dev).unwrap(),
            )
            .unwrap();
            let cand: Vec<f32> = cand_rows
                .iter()
                .flat_map(|&r| tr.items.row(r as usize).to_vec())
                .collect();
            let cand_v =
                Var::from_tensor(&Tensor::from_vec(cand, (cand_rows.len(), d), &dev).unwrap())
                    .unwrap();
            let g = tr
                .loss(
                    x.as_tensor(),
                    cand_v.as_tensor(),
                    &targets,
                    &sampled,
                    &t_slots,
                    &s_slots,
                )
                .unwrap()
                .backward()
                .unwrap();
            let g_x = g
                .get(&x)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let g_c = g
                .get(&cand_v)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let mut sparse = SparseGrad::new(6, d);
            for &r in &cand_rows {
                sparse.slot_of(r as usize);
            }
            scatter_item_grads(&mut sparse, &g_c, &g_x, w, (0..3).map(|i| ex.hist_of(i)));

            // Dense: the whole table is a variable; lookups and pooling in candle.
            let table = Var::from_tensor(&tr.items.to_tensor(&dev).unwrap()).unwrap();
            let mut rows = Vec::new();
            for i in 0..3 {
                let h: Vec<u32> = ex.hist_of(i).iter().map(|&h| h as u32).collect();
                let pooled = table
                    .as_tensor()
                    .index_select(&Tensor::from_vec(h.clone(), h.len(), &dev).unwrap(), 0)
                    .unwrap()
                    .mean_keepdim(0)
                    .unwrap();
                let age = Tensor::from_slice(
                    &crate::youtube_dnn::age_features(ex.age[i], 1.0),
                    (1, 3),
                    &dev,
                )
                .unwrap();
                rows.push(Tensor::cat(&[&pooled, &age], 1).unwrap());
            }
            let x_dense = Tensor::cat(&rows, 0).unwrap();
            let idx: Vec<u32> = cand_rows.clone();
            let cand_dense = table
                .as_tensor()
                .index_select(&Tensor::from_vec(idx, cand_rows.len(), &dev).unwrap(), 0)
                .unwrap();
            let g = tr
                .loss(
                    &x_dense,
                    &cand_dense,
                    &targets,
                    &sampled,
                    &t_slots,
                    &s_slots,
                )
                .unwrap()
                .backward()
                .unwrap();
            let dense = g.get(&table).unwrap().to_vec2::<f32>().unwrap();

            for (row, dense_row) in dense.iter().enumerate() {
                let s = sparse.slot[row];
                let mine = if s == u32::MAX {
                    vec![0.0; d]
                } else {
                    sparse.grad[s as usize * d..(s as usize + 1) * d].to_vec()
                };
                for k in 0..d {
                    close(mine[k], dense_row[k], 1e-4);
                }
                if s == u32::MAX {
                    assert!(
                        dense_row.iter().all(|v| *v == 0.0),
                        "{loss:?}: row {row} untouched but has a dense gradient"
                    );
                }
            }
            assert_eq!(sparse.slot[0], u32::MAX, "padding is never updated");
        }
    }

    #[test]
    fn training_lowers_the_loss_and_is_seeded() {
        let run = |seed: u64| {
            let (mut tr, ex, users) = tiny(Loss::SampledSoftmax, Sampler::Frequency);
            tr.rng = Rng::new(seed);
            let losses: Vec<f64> = (0..60)
                .map(|_| tr.step(&ex, &users, &[0, 1, 2], 0.05).unwrap())
                .collect();
            (losses, tr.items.data.clone())
        };
        let (a, ta) = run(1);
        let (b, tb) = run(1);
        assert_eq!(ta, tb, "same seed, same table");
        assert_eq!(a, b);
        assert!(
            a[55..].iter().sum::<f64>() < a[..5].iter().sum::<f64>(),
            "{a:?}"
        );
    }
}
