//! Kind `youtube_dnn`: trains the YouTubeDNN recall model (Covington et al. 2016,
//! as DeepMatch builds it) with sampled, in-batch or mixed softmax.
//!
//! Why it is split the way it is: candle's backward through an embedding lookup
//! yields a gradient as large as the whole table, and its optimisers then touch every
//! row. So the item and user-feature tables stay plain `Vec<f32>`s: a batch's rows
//! are gathered and pooled by hand, candle runs the tower and the loss on small leaf
//! tensors, and the gradients of those leaves are scattered back into a lazy
//! (row-sparse) Adam update of just the rows the batch touched. That is the host
//! path, the fastest on a CPU; on a GPU it would leave the device idle, so `device`
//! holds a second path with everything on the device.

use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array};
use serde::{Deserialize, Serialize};

use crate::model::{EmbeddingTable, Model, ModelConfig, Users, normalize, tower_forward, user_input};
use crate::rng::Rng;
use crate::schema::clicks::ITEM;
use crate::schema::encoded::vocab_rows;
use crate::schema::examples::Examples;
use crate::table::{self, failed};
use dagrun_kind::{Format, KindSpec, OutputSpec, Params, Report, StageCtx, StageError, params};

mod device;
mod sampler;
mod sparse;
#[cfg(test)]
mod tests;

use sampler::CandidateSampler;
use sparse::{BETA1, BETA2, LazyAdam, SparseGrad};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// `num_sampled` negatives shared by the batch, drawn from `sampler`.
    SampledSoftmax,
    /// The batch's other targets are the negatives.
    InBatch,
    /// In-batch negatives plus `num_sampled` uniform ones.
    Mixed,
    /// Softmax over the whole catalogue (device path only; for catalogues that fit).
    Full,
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

/// Where a step's work happens (see `device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainPath {
    /// The device path on a GPU, the host path on the CPU.
    Auto,
    /// Tables on the host, row-sparse Adam; candle runs the tower (fastest on a CPU).
    Host,
    /// Everything on the device, examples uploaded once, dense Adam.
    Device,
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
    /// One item table for the history and the candidates (`true`, DeepMatch's
    /// YouTubeDNN), or a second, output table for the candidates that export writes
    /// as the item vectors (`false`; the host path only).
    pub tie_item_embeddings: bool,
    /// The n most recent history items pooled apart as well (0: off).
    pub short_hist: usize,
    pub temperature: f64,
    pub loss: Loss,
    pub num_sampled: usize,
    pub sampler: Sampler,
    pub distortion: f64,
    pub optimizer: Optim,
    /// Standard deviation of the normal the item and user-feature embeddings start
    /// from. DeepMatch (DeepCTR's `SparseFeat`) starts them at 0.0001.
    pub init_std: f64,
    pub weight_decay: f64,
    pub lr: f64,
    /// Decay the learning rate linearly to `lr * lr_end` over the run.
    pub lr_end: f64,
    pub batch_size: usize,
    pub epochs: usize,
    pub seed: u64,
    /// `cpu`, `cuda`, `cuda:N` or `auto`.
    pub device: String,
    pub path: TrainPath,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            emb_dim: 32,
            hidden_units: None,
            use_user_id: true,
            tie_item_embeddings: true,
            short_hist: 0,
            temperature: 0.05,
            loss: Loss::SampledSoftmax,
            num_sampled: 255,
            sampler: Sampler::Frequency,
            distortion: 0.75,
            optimizer: Optim::Adam,
            init_std: 0.1,
            weight_decay: 0.0,
            lr: 0.005,
            lr_end: 1.0,
            batch_size: 256,
            epochs: 5,
            seed: 0,
            device: "cpu".into(),
            path: TrainPath::Auto,
        }
    }
}

pub(crate) const MODEL: OutputSpec = OutputSpec { name: "model", format: Format::Safetensors };
pub(crate) const CONFIG: OutputSpec = OutputSpec { name: "config", format: Format::Json };
const LOG: OutputSpec = OutputSpec { name: "log", format: Format::Parquet };

pub const SPEC: KindSpec = KindSpec {
    name: "youtube_dnn",
    summary: "trains the YouTubeDNN two-tower recall model (candle; CPU, or CUDA with a feature)",
    inputs: &["samples", "users", "vocab"],
    optional_inputs: &[],
    outputs: &[MODEL, CONFIG, LOG],
    fingerprint: crate::fingerprints::YOUTUBE_DNN,
    params: params::check::<TrainParams>,
    run,
};

impl TrainParams {
    /// Tower layer sizes, the default filled in.
    fn hidden(&self) -> Vec<usize> {
        self.hidden_units.clone().unwrap_or_else(|| vec![64, self.emb_dim])
    }
}

impl Params for TrainParams {
    fn validate(&self) -> Result<(), params::ParamError> {
        params::positive_int("emb_dim", self.emb_dim as u64)?;
        params::positive("init_std", self.init_std)?;
        let hidden = self.hidden();
        params::ensure(!hidden.contains(&0) && hidden.last() == Some(&self.emb_dim), "hidden_units", || {
            format!(
                "{hidden:?}: sizes are at least 1, and the last is the user vector, so it must equal emb_dim {}",
                self.emb_dim
            )
        })?;
        params::positive("temperature", self.temperature)?;
        params::positive("lr", self.lr)?;
        params::within("lr_end", self.lr_end, 0.0, 1.0)?;
        params::within("weight_decay", self.weight_decay, 0.0, f64::MAX)?;
        params::within("distortion", self.distortion, 0.0, f64::MAX)?;
        params::positive_int("batch_size", self.batch_size as u64)?;
        params::positive_int("epochs", self.epochs as u64)?;
        params::ensure(self.loss == Loss::InBatch || self.num_sampled >= 1, "num_sampled", || {
            "must be at least 1 unless loss is in_batch".into()
        })?;
        params::ensure(!(self.path == TrainPath::Device && self.loss == Loss::Mixed), "path", || {
            "device: loss mixed runs on the host path only; use sampled_softmax or in_batch, or path host".into()
        })?;
        params::ensure(!(self.path == TrainPath::Host && self.loss == Loss::Full), "path", || {
            "host: loss full runs on the device path only; use path device (or auto on a GPU)".into()
        })?;
        let device_path = self.path == TrainPath::Device || self.loss == Loss::Full;
        params::ensure(self.tie_item_embeddings || !device_path, "tie_item_embeddings", || {
            "false runs on the host path only, so not with path device or loss full".into()
        })?;
        crate::model::DeviceName::parse(&self.device).map(|_| ()).map_err(|m| params::ParamError::at("device", m))
    }
}

fn run(ctx: &StageCtx) -> Result<Report, StageError> {
    // The tower's tensors are tiny: candle's ops run faster on one thread than split
    // over several (measured: 1.72 s vs 2.24 s for 3 epochs of MovieLens-100k).
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().map_err(failed)?;
    pool.install(|| train(ctx))
}

fn train(ctx: &StageCtx) -> Result<Report, StageError> {
    let p: TrainParams = params::typed(ctx.params)?;
    let hidden = p.hidden();
    let (device, note) = crate::model::device(&p.device)?;
    // The item table is as big as the vocabulary; every example's items must fit it.
    let items = vocab_rows(ctx.input("vocab")?, ITEM)?;
    let examples = Examples::read(ctx.input("samples")?, true, items)?;
    if examples.is_empty() {
        return Err(StageError::BadInput("youtube_dnn: the samples hold no positive training example".into()));
    }
    let users = Users::read(ctx.input("users")?, p.use_user_id)?;
    let age_max = examples.age.iter().copied().fold(1.0f32, f32::max);
    let config = ModelConfig {
        emb_dim: p.emb_dim,
        hidden_units: hidden,
        temperature: p.temperature,
        tie_item_embeddings: p.tie_item_embeddings,
        short_hist: p.short_hist,
        items,
        features: users.features.clone(),
        dense: users.dense_names.clone(),
        age_max,
    };
    let on_device = match p.path {
        TrainPath::Host => false,
        TrainPath::Device => true,
        TrainPath::Auto => (device.is_cuda() && p.loss != Loss::Mixed && p.tie_item_embeddings) || p.loss == Loss::Full,
    };
    let trainer = Trainer::new(&p, config, &examples, device)?;
    let (model, log) = if on_device {
        device::train(trainer, &examples, &users, ctx.progress)?
    } else {
        host_epochs(trainer, &examples, &users, ctx.progress)?
    };
    model.save(&ctx.output(&MODEL))?;
    std::fs::write(ctx.output(&CONFIG), serde_json::to_vec_pretty(&model.config).map_err(failed)?)?;
    let rows = table::write(
        &ctx.output(&LOG),
        vec![
            ("epoch", Arc::new(Int64Array::from_iter_values(log.iter().map(|l| l.0))) as ArrayRef),
            ("steps", Arc::new(Int64Array::from_iter_values(log.iter().map(|l| l.1)))),
            ("loss", Arc::new(Float64Array::from_iter_values(log.iter().map(|l| l.2)))),
            ("seconds", Arc::new(Float64Array::from_iter_values(log.iter().map(|l| l.3)))),
            ("samples_per_s", Arc::new(Float64Array::from_iter_values(log.iter().map(|l| l.4)))),
        ],
    )?;
    let mut report = Report::default();
    report.rows.insert("log".into(), rows);
    if let Some(last) = log.last() {
        report.metrics.insert("final_loss".into(), last.2);
    }
    let secs: f64 = log.iter().map(|l| l.3).sum();
    report.metrics.insert("train_seconds".into(), secs);
    report.metrics.insert("samples_per_s".into(), (examples.len() * p.epochs) as f64 / secs);
    report.notes.extend(note);
    if on_device {
        report.notes.push("device path".into());
    }
    Ok(report)
}

/// One epoch's line of the training log: epoch, steps so far, mean loss, seconds, samples/s.
type LogRow = (i64, i64, f64, f64, f64);

/// What the epoch loop drives: the host path or the device path.
trait Steps {
    /// Starts an epoch whose examples come in `order`.
    fn begin_epoch(&mut self, order: &[u32]) -> Result<(), StageError>;
    /// Step `s` of the epoch over `batch` (its slice of the order) at learning rate `lr`.
    fn step(&mut self, s: usize, batch: &[u32], lr: f64) -> Result<(), StageError>;
    /// The summed loss of the epoch's steps.
    fn end_epoch(&mut self) -> Result<f64, StageError>;
}

/// The epochs of either path, one log line each. Both shuffle with the same stream
/// and decay the learning rate linearly from `lr` to `lr * lr_end`.
fn epochs(
    steps: &mut dyn Steps,
    p: &TrainParams,
    n: usize,
    progress: &dyn dagrun_kind::Progress,
) -> Result<Vec<LogRow>, StageError> {
    let mut log = Vec::new();
    let mut order: Vec<u32> = (0..n as u32).collect();
    let steps_per_epoch = n.div_ceil(p.batch_size);
    let total = steps_per_epoch * p.epochs;
    progress.set_length(total as u64);
    let mut rng = Rng::fork(p.seed, 0x5eed);
    for epoch in 0..p.epochs {
        let started = Instant::now();
        // Fisher–Yates over the previous epoch's order.
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        steps.begin_epoch(&order)?;
        for (s, batch) in order.chunks(p.batch_size).enumerate() {
            let done = epoch * steps_per_epoch + s;
            steps.step(s, batch, p.lr * (1.0 - (1.0 - p.lr_end) * done as f64 / total as f64))?;
            if s % 16 == 0 {
                progress.set_position(done as u64);
            }
        }
        let loss = steps.end_epoch()? / steps_per_epoch as f64;
        if !loss.is_finite() {
            return Err(StageError::Failed(format!("youtube_dnn: the loss diverged in epoch {epoch}; lower lr")));
        }
        let secs = started.elapsed().as_secs_f64();
        log.push((epoch as i64 + 1, ((epoch + 1) * steps_per_epoch) as i64, loss, secs, n as f64 / secs));
        progress.set_message(&format!("epoch {} loss {loss:.4}", epoch + 1));
    }
    Ok(log)
}

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
fn host_epochs(
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

struct Trainer {
    p: TrainParams,
    config: ModelConfig,
    device: Device,
    items: EmbeddingTable,
    features: Vec<EmbeddingTable>,
    item_adam: LazyAdam,
    feature_adam: Vec<LazyAdam>,
    tower: Vec<(Var, Var)>,
    /// Host copies of the tower's weights and biases with their Adam moments; a few
    /// thousand floats updated in one loop beat candle's optimiser's dozens of tiny ops.
    tower_host: Vec<(EmbeddingTable, LazyAdam)>,
    sampler: CandidateSampler,
    /// ln of each item's share of training targets (in-batch log-Q correction).
    log_freq: Vec<f32>,
    uniform: CandidateSampler,
    rng: Rng,
    step: u64,
    item_grad: SparseGrad,
    feature_grad: Vec<SparseGrad>,
    /// The candidates' own table, without `tie_item_embeddings`.
    out: Option<OutputTable>,
}

/// The output item table of an untied model, with its optimiser state.
struct OutputTable {
    table: EmbeddingTable,
    adam: LazyAdam,
    grad: SparseGrad,
}

impl Trainer {
    fn new(p: &TrainParams, config: ModelConfig, ex: &Examples, device: Device) -> Result<Trainer, StageError> {
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
        Ok(Trainer {
            out,
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
    fn step(&mut self, ex: &Examples, users: &Users, batch: &[u32], lr: f64) -> Result<f64, StageError> {
        let (b, d) = (batch.len(), self.config.emb_dim);
        // Gather each example's tower input: pooled history, feature rows, dense values.
        let width = self.config.input_dim();
        let mut input = vec![0f32; b * width];
        for (r, &i) in batch.iter().enumerate() {
            let i = i as usize;
            let out = &mut input[r * width..(r + 1) * width];
            user_input(&self.config, &self.items, &self.features, users, ex.user[i], ex.hist_of(i), ex.age[i], out);
        }
        // Candidates: the batch's targets, then the sampled negatives.
        let targets: Vec<i32> = batch.iter().map(|&i| ex.item[i as usize]).collect();
        let sampled: Vec<i32> = match self.p.loss {
            Loss::InBatch | Loss::Full => Vec::new(),
            Loss::SampledSoftmax => (0..self.p.num_sampled).map(|_| self.sampler.draw(&mut self.rng)).collect(),
            Loss::Mixed => (0..self.p.num_sampled).map(|_| self.uniform.draw(&mut self.rng)).collect(),
        };
        let (cand_table, cand_grad) = match &mut self.out {
            Some(o) => (&o.table, &mut o.grad),
            None => (&self.items, &mut self.item_grad),
        };
        let t_slots: Vec<u32> = targets.iter().map(|&t| cand_grad.slot_of(t as usize) as u32).collect();
        let s_slots: Vec<u32> = sampled.iter().map(|&s| cand_grad.slot_of(s as usize) as u32).collect();
        let mut cand = Vec::with_capacity(cand_grad.rows.len() * d);
        for &r in &cand_grad.rows {
            cand.extend_from_slice(cand_table.row(r as usize));
        }
        let n_cand = cand_grad.rows.len();

        let dev = &self.device;
        let f = |e: candle_core::Error| StageError::Failed(format!("youtube_dnn: {e}"));
        let width = self.config.input_dim();
        let x = Var::from_tensor(&Tensor::from_vec(input, (b, width), dev).map_err(f)?).map_err(f)?;
        let cand_v = Var::from_tensor(&Tensor::from_vec(cand, (n_cand, d), dev).map_err(f)?).map_err(f)?;
        let loss_t = self.loss(x.as_tensor(), cand_v.as_tensor(), &targets, &sampled, &t_slots, &s_slots).map_err(f)?;
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
                add_candidate_grads(&mut o.grad, &g_cand);
                o.grad.apply(&mut o.table, &mut o.adam, lr_t, decay);
            }
            None => add_candidate_grads(&mut self.item_grad, &g_cand),
        }
        let hists = batch.iter().map(|&i| ex.hist_of(i as usize));
        add_history_grads(&mut self.item_grad, &g_x, width, self.config.short_hist, hists);
        self.item_grad.apply(&mut self.items, &mut self.item_adam, lr_t, decay);
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
        let layers: Vec<(&Tensor, &Tensor)> = self.tower.iter().map(|(w, b)| (w.as_tensor(), b.as_tensor())).collect();
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
                let q_t: Vec<f32> = targets.iter().map(|&t| self.sampler.log_q[t as usize] + ln_s).collect();
                let q_s: Vec<f32> = sampled.iter().map(|&i| self.sampler.log_q[i as usize] + ln_s).collect();
                let true_logit =
                    (u.mul(&vt)?.sum_keepdim(1)?.affine(inv_t, 0.0)? - Tensor::from_vec(finite(q_t), (b, 1), dev)?)?;
                let samp = u.matmul(&vs.t()?)?.affine(inv_t, 0.0)?.broadcast_sub(&Tensor::from_vec(
                    finite(q_s),
                    (1, s),
                    dev,
                )?)?;
                let samp = (samp + hit_mask(targets, sampled, false, dev)?)?;
                (Tensor::cat(&[&true_logit, &samp], 1)?, Tensor::zeros(b, DType::U32, dev)?)
            }
            Loss::Full => candle_core::bail!("loss full runs on the device path only"),
            Loss::InBatch | Loss::Mixed => {
                let q: Vec<f32> = targets.iter().map(|&t| self.log_freq[t as usize]).collect();
                let inb = u.matmul(&vt.t()?)?.affine(inv_t, 0.0)?.broadcast_sub(&Tensor::from_vec(q, (1, b), dev)?)?;
                let inb = (inb + hit_mask(targets, targets, true, dev)?)?;
                let logits = if self.p.loss == Loss::Mixed && !sampled.is_empty() {
                    let s = sampled.len();
                    let vs = items.index_select(&Tensor::from_slice(s_slots, s, dev)?, 0)?;
                    let q_s: Vec<f32> =
                        sampled.iter().map(|&i| self.uniform.log_q[i as usize] + (s as f32).ln()).collect();
                    let samp =
                        u.matmul(&vs.t()?)?.affine(inv_t, 0.0)?.broadcast_sub(&Tensor::from_vec(q_s, (1, s), dev)?)?;
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
        let tower = self.tower.into_iter().map(|(w, b)| (w.as_tensor().clone(), b.as_tensor().clone())).collect();
        let out_items = self.out.map(|o| o.table);
        Ok(Model { config: self.config, items: self.items, out_items, features: self.features, tower })
    }
}

/// Adds the candidates' row gradients of one step (in slot order, as `g_cand` holds
/// them) to `grad`, whose slots they were given.
fn add_candidate_grads(grad: &mut SparseGrad, g_cand: &[f32]) {
    for (a, g) in grad.grad.iter_mut().zip(g_cand) {
        *a += g;
    }
}

/// Adds, through the mean pooling, each history item's share of its example's pooled
/// gradient (the first `dim` columns of `g_x`) to `grad`; with `short` > 0, also each
/// of the `short` most recent items' share of the next `dim` columns.
fn add_history_grads<'h>(
    grad: &mut SparseGrad,
    g_x: &[f32],
    width: usize,
    short: usize,
    hists: impl Iterator<Item = &'h [i32]>,
) {
    let d = grad.dim;
    for (r, hist) in hists.enumerate() {
        let row = &g_x[r * width..(r + 1) * width];
        add_pooled_grads(grad, hist, &row[..d]);
        if short > 0 {
            add_pooled_grads(grad, &hist[..hist.len().min(short)], &row[d..2 * d]);
        }
    }
}

/// Each of `items`' share of the gradient `g` of their mean.
fn add_pooled_grads(grad: &mut SparseGrad, items: &[i32], g: &[f32]) {
    let scale = 1.0 / items.len().max(1) as f32;
    for &h in items {
        grad.add(h as usize, g, scale);
    }
}

/// Items never drawn have log Q = -inf; as a target their correction is dropped.
fn finite(mut v: Vec<f32>) -> Vec<f32> {
    v.iter_mut().filter(|x| !x.is_finite()).for_each(|x| *x = 0.0);
    v
}

/// -1e9 where column j's item equals row b's target (an accidental hit), 0 elsewhere;
/// with `skip_diagonal`, row b's own column is the positive and stays.
fn hit_mask(targets: &[i32], columns: &[i32], skip_diagonal: bool, dev: &Device) -> candle_core::Result<Tensor> {
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
