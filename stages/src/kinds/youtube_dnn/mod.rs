//! Kind `youtube_dnn`: trains the YouTubeDNN recall model (Covington et al. 2016,
//! as DeepMatch builds it) with sampled, in-batch or mixed softmax.
//!
//! Why it is split the way it is: candle's backward through an embedding lookup
//! yields a gradient as large as the whole table, and its optimisers then touch every
//! row. So the item and user-feature tables stay plain `Vec<f32>`s: a batch's rows
//! are gathered and pooled by hand, candle runs the tower and the loss on small leaf
//! tensors, and the gradients of those leaves are scattered back into a lazy
//! (row-sparse) Adam update of just the rows the batch touched. That is the host
//! path (`host`), the fastest on a CPU; on a GPU it would leave the device idle, so
//! `device` holds a second path with everything on the device. This file has the
//! params, the stage, and the epoch loop both paths share.

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array};
use serde::{Deserialize, Serialize};

use crate::model::{GenreLists, ModelConfig, Users};
use crate::rng::Rng;
use crate::schema::clicks::ITEM;
use crate::schema::encoded::vocab_rows;
use crate::schema::examples::Examples;
use crate::table::{self, failed};
use dagrun_kind::{Format, KindSpec, OutputSpec, Params, Report, StageCtx, StageError, params};

mod device;
mod host;
mod sampler;
mod sparse;
#[cfg(test)]
mod tests;

use host::{Trainer, finite, host_epochs};
use sparse::{BETA1, BETA2};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// `num_sampled` negatives shared by the batch, drawn from `sampler`.
    SampledSoftmax,
    /// The batch's other targets are the negatives.
    InBatch,
    /// In-batch negatives plus `num_sampled` uniform ones.
    Mixed,
    /// Softmax over the whole catalogue (for catalogues that fit: each step scores
    /// every item).
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
    /// The n most recent history items, each also in a block of its own, in order
    /// (0: off).
    pub recent: usize,
    /// An item's vector gets the mean of its genres' rows added, in the history and
    /// as a candidate; the genres come from input `items` (`encode.items`).
    pub genres: bool,
    /// The share of the tower's input zeroed at random while training, the rest
    /// scaled by 1 / (1 − dropout) (0: off; the host path only).
    pub dropout: f64,
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
            recent: 0,
            genres: false,
            dropout: 0.0,
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
    // Each item's genres, for `genres: true`.
    optional_inputs: &["items"],
    outputs: &[MODEL, CONFIG, LOG],
    fingerprint: crate::fingerprints::YOUTUBE_DNN,
    params: params::check::<TrainParams>,
    needs,
    run,
};

impl TrainParams {
    /// Tower layer sizes, the default filled in.
    fn hidden(&self) -> Vec<usize> {
        self.hidden_units.clone().unwrap_or_else(|| vec![64, self.emb_dim])
    }

    /// The options set that only the host path runs, each as its param and what a
    /// pipeline asking the device path for it is told; `auto` takes the host path
    /// when there is one.
    fn host_only_options(&self) -> Vec<(&'static str, &'static str)> {
        [
            (
                !self.tie_item_embeddings,
                "tie_item_embeddings",
                "false runs on the host path only, so not with path device",
            ),
            (self.dropout != 0.0, "dropout", "runs on the host path only, so not with path device"),
        ]
        .into_iter()
        .filter(|(set, _, _)| *set)
        .map(|(_, key, message)| (key, message))
        .collect()
    }
}

impl Params for TrainParams {
    fn validate(&self) -> Result<(), params::ParamError> {
        params::positive_int("emb_dim", self.emb_dim as u64)?;
        params::at_most("emb_dim", self.emb_dim as u64, MAX_WIDTH)?;
        params::positive("init_std", self.init_std)?;
        let hidden = self.hidden();
        params::ensure(!hidden.contains(&0) && hidden.last() == Some(&self.emb_dim), "hidden_units", || {
            format!(
                "{hidden:?}: sizes are at least 1, and the last is the user vector, so it must equal emb_dim {}",
                self.emb_dim
            )
        })?;
        params::ensure(hidden.iter().all(|&h| h as u64 <= MAX_WIDTH), "hidden_units", || {
            format!("{hidden:?}: sizes are at most {MAX_WIDTH}")
        })?;
        params::at_most("num_sampled", self.num_sampled as u64, MAX_SAMPLED)?;
        params::at_most("recent", self.recent as u64, MAX_RECENT)?;
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
        params::ensure((0.0..1.0).contains(&self.dropout), "dropout", || {
            format!("must lie in [0, 1), not {}", self.dropout)
        })?;
        for (key, message) in self.host_only_options() {
            params::ensure(self.path != TrainPath::Device, key, || message.into())?;
        }
        crate::model::DeviceName::parse(&self.device).map(|_| ()).map_err(|m| params::ParamError::at("device", m))
    }
}

/// Bounds on the params that size the model's tables and each step's tensors, so that
/// a mistyped value is an error when the pipeline loads, not an out-of-memory abort:
/// an embedding or layer width, the shared negatives of a step (a [batch, n] logit
/// block), and the recent items in blocks of their own (each widens the tower's input).
const MAX_WIDTH: u64 = 8192;
const MAX_SAMPLED: u64 = 1 << 16;
const MAX_RECENT: u64 = 64;

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
    let genres = genre_lists(ctx, &p, items)?;
    let age_max = examples.age.iter().copied().fold(1.0f32, f32::max);
    let config = ModelConfig {
        emb_dim: p.emb_dim,
        hidden_units: hidden,
        temperature: p.temperature,
        tie_item_embeddings: p.tie_item_embeddings,
        short_hist: p.short_hist,
        recent: p.recent,
        items,
        genres: genres.as_ref().map_or(0, GenreLists::rows),
        features: users.features.clone(),
        dense: users.dense_names.clone(),
        age_max,
    };
    let on_device = match p.path {
        TrainPath::Host => false,
        TrainPath::Device => true,
        TrainPath::Auto => {
            let host_only = p.loss == Loss::Mixed || !p.host_only_options().is_empty();
            device.is_cuda() && !host_only
        }
    };
    let trainer = Trainer::new(&p, config, &examples, genres, device)?;
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

/// `genres: true` needs input `items`; the pipeline is refused without it.
fn needs(params: &serde_json::Value) -> Vec<dagrun_kind::Need> {
    match params.get("genres") {
        Some(serde_json::Value::Bool(true)) => vec![dagrun_kind::Need::given("genres", "items")],
        _ => Vec::new(),
    }
}

/// Each item's genres from input `items` when param `genres` asks for them.
fn genre_lists(ctx: &StageCtx, p: &TrainParams, items: usize) -> Result<Option<GenreLists>, StageError> {
    if !p.genres {
        return Ok(None);
    }
    let path = ctx.input("items")?;
    let lists = GenreLists::read(path, items)?;
    if lists.codes.is_empty() {
        return Err(StageError::BadInput(format!(
            "{}: no item has a genre (ingest finds them in a RecBole `.item`, `u.item` or `movies.dat`); set genres: false",
            path.display()
        )));
    }
    Ok(Some(lists))
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
            return Err(StageError::Failed(format!(
                "youtube_dnn: the loss diverged in epoch {} ({loss}); lower `lr` (now {:?}), or move `temperature` \
                 ({:?}) or `init_std` ({:?}) toward their defaults",
                epoch + 1,
                p.lr,
                p.temperature,
                p.init_std
            )));
        }
        let secs = started.elapsed().as_secs_f64();
        log.push((epoch as i64 + 1, ((epoch + 1) * steps_per_epoch) as i64, loss, secs, n as f64 / secs));
        progress.set_message(&format!("epoch {} loss {loss:.4}", epoch + 1));
    }
    Ok(log)
}
