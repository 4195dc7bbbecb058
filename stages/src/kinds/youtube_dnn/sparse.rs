//! Row-sparse training of the embedding tables: per-step gradient rows and a lazy
//! Adam that touches only the rows a batch used.

use crate::model::EmbeddingTable;

/// Adam moments of one embedding table, updated row by row.
pub(super) struct LazyAdam {
    m: Vec<f32>,
    v: Vec<f32>,
}

pub(super) const BETA1: f32 = 0.9;
pub(super) const BETA2: f32 = 0.999;
const EPS: f32 = 1e-8;

impl LazyAdam {
    pub(super) fn new(len: usize) -> LazyAdam {
        LazyAdam { m: vec![0.0; len], v: vec![0.0; len] }
    }

    /// Applies `grad` to row `row` of `table`; `lr_t` carries the bias correction.
    pub(super) fn update(&mut self, table: &mut EmbeddingTable, row: usize, grad: &[f32], lr_t: f32, decay: f32) {
        let d = table.dim;
        let (m, v) = (&mut self.m[row * d..(row + 1) * d], &mut self.v[row * d..(row + 1) * d]);
        let w = table.row_mut(row);
        for k in 0..d {
            m[k] = BETA1 * m[k] + (1.0 - BETA1) * grad[k];
            v[k] = BETA2 * v[k] + (1.0 - BETA2) * grad[k] * grad[k];
            w[k] -= lr_t * m[k] / (v[k].sqrt() + EPS) + decay * w[k];
        }
    }
}

/// Gradient rows accumulated per item (or feature code) for one step.
pub(super) struct SparseGrad {
    pub(super) dim: usize,
    pub(super) slot: Vec<u32>,
    pub(super) rows: Vec<u32>,
    pub(super) grad: Vec<f32>,
}

impl SparseGrad {
    pub(super) fn new(rows: usize, dim: usize) -> SparseGrad {
        SparseGrad { dim, slot: vec![u32::MAX; rows], rows: Vec::new(), grad: Vec::new() }
    }

    /// The slot of `row`, added (with a zero gradient) if new.
    pub(super) fn slot_of(&mut self, row: usize) -> usize {
        if self.slot[row] == u32::MAX {
            self.slot[row] = self.rows.len() as u32;
            self.rows.push(row as u32);
            self.grad.resize(self.grad.len() + self.dim, 0.0);
        }
        self.slot[row] as usize
    }

    pub(super) fn add(&mut self, row: usize, g: &[f32], scale: f32) {
        let s = self.slot_of(row);
        for (a, b) in self.grad[s * self.dim..(s + 1) * self.dim].iter_mut().zip(g) {
            *a += b * scale;
        }
    }

    /// Applies every accumulated row with Adam, then forgets them.
    pub(super) fn apply(&mut self, table: &mut EmbeddingTable, adam: &mut LazyAdam, lr_t: f32, decay: f32) {
        for (s, &row) in self.rows.iter().enumerate() {
            adam.update(table, row as usize, &self.grad[s * self.dim..(s + 1) * self.dim], lr_t, decay);
            self.slot[row as usize] = u32::MAX;
        }
        self.rows.clear();
        self.grad.clear();
    }
}
