//! The candidate sampler of sampled softmax: draws the negatives a batch shares and
//! knows each item's probability of a draw, for the log-Q correction.

use crate::rng::{Alias, Rng};

use super::Sampler;

/// Draws the shared negatives and knows each item's sampling probability.
pub(super) struct CandidateSampler {
    alias: Option<Alias>,
    /// ln of each item's probability of one draw (0 for items never drawn).
    pub(super) log_q: Vec<f32>,
    items: usize,
}

impl CandidateSampler {
    pub(super) fn new(kind: Sampler, counts: &[f64], distortion: f64) -> CandidateSampler {
        let n = counts.len();
        let weights: Vec<f64> = match kind {
            Sampler::Uniform => (0..n).map(|i| if i == 0 { 0.0 } else { 1.0 }).collect(),
            Sampler::Frequency => {
                counts.iter().enumerate().map(|(i, c)| if i == 0 { 0.0 } else { c.powf(distortion) }).collect()
            }
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
        let log_q =
            weights.iter().map(|w| if *w > 0.0 { (w / total).ln() as f32 } else { f32::NEG_INFINITY }).collect();
        let alias = (kind != Sampler::Uniform).then(|| Alias::new(&weights));
        CandidateSampler { alias, log_q, items: n }
    }

    pub(super) fn draw(&self, rng: &mut Rng) -> i32 {
        match &self.alias {
            Some(a) => a.sample(rng) as i32,
            None => 1 + rng.below(self.items as u64 - 1) as i32,
        }
    }
}
