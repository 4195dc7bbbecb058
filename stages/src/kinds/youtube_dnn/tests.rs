//! Tests of the trainer's pieces against hand computations and candle's dense gradients.

use super::host::{add_candidate_grads, add_history_grads, cross_entropy, hit_mask};
use super::sampler::CandidateSampler;
use super::sparse::SparseGrad;
use super::*;
use crate::model::{EmbeddingTable, GenreLists, ItemRows, normalize, tower_forward, user_input};
use candle_core::{DType, Device, Tensor, Var};

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
    assert_eq!(f.log_q[3], f32::NEG_INFINITY, "an item never clicked is never drawn");
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
    let m = hit_mask(&[1, 2], &[2, 3, 1], false, &dev).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(m, [vec![0.0, 0.0, -1e9], vec![-1e9, 0.0, 0.0]]);
    let m = hit_mask(&[1, 1, 2], &[1, 1, 2], true, &dev).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(m, [vec![0.0, -1e9, 0.0], vec![-1e9, 0.0, 0.0], vec![0.0, 0.0, 0.0]]);
}

#[test]
fn pooling_is_the_mean_of_the_history() {
    let t = EmbeddingTable { rows: 3, dim: 2, data: vec![0.0, 0.0, 1.0, 2.0, 3.0, 6.0] };
    let mut out = [9.0; 2];
    let rows = ItemRows { table: &t, genres: None };
    crate::model::pool(rows, &[1, 2], &mut out);
    assert_eq!(out, [2.0, 4.0]);
    crate::model::pool(rows, &[], &mut out);
    assert_eq!(out, [0.0, 0.0], "an empty history pools to zeros");
    // Item 1 has genres 1 and 2, item 2 none: item 1's vector gains their mean.
    let lists = GenreLists { offsets: vec![0, 0, 2, 2], codes: vec![1, 2] };
    let table = EmbeddingTable { rows: 3, dim: 2, data: vec![0.0, 0.0, 10.0, 20.0, 30.0, 40.0] };
    let genres = crate::model::Genres { lists, table };
    crate::model::pool(ItemRows { table: &t, genres: Some(&genres) }, &[1, 2], &mut out);
    assert_eq!(out, [(1.0 + 20.0 + 3.0) / 2.0, (2.0 + 30.0 + 6.0) / 2.0]);
}

/// A trainer over 6 items of dimension 4, no user features.
fn tiny(loss: Loss, sampler: Sampler) -> (Trainer, Examples, Users) {
    tiny_with(loss, sampler, Users { codes: vec![], features: vec![], dense: vec![], dense_names: vec![] })
}

/// `tiny` with one user feature (3 codes) and one dense column.
fn tiny_with_features(loss: Loss) -> (Trainer, Examples, Users) {
    let users = Users {
        codes: vec![vec![0, 2, 1]],
        features: vec![crate::model::Feature { name: "city".into(), vocab: 3 }],
        dense: vec![vec![0.0, 0.25, 1.0]],
        dense_names: vec!["score".into()],
    };
    tiny_with(loss, Sampler::Uniform, users)
}

fn tiny_with(loss: Loss, sampler: Sampler, users: Users) -> (Trainer, Examples, Users) {
    let ex = Examples {
        user: vec![1, 1, 2],
        item: vec![2, 3, 3],
        hist_offsets: vec![0, 1, 3, 5],
        hist: vec![1, 2, 1, 4, 5],
        age: vec![1.0, 0.5, 0.0],
    };
    let config = ModelConfig {
        emb_dim: 4,
        hidden_units: vec![5, 4],
        temperature: 0.5,
        tie_item_embeddings: true,
        short_hist: 0,
        recent: 0,
        items: 6,
        genres: 0,
        features: users.features.clone(),
        dense: users.dense_names.clone(),
        age_max: 1.0,
    };
    let p = TrainParams { emb_dim: 4, loss, sampler, distortion: 1.0, temperature: 0.5, seed: 3, ..Default::default() };
    (Trainer::new(&p, config, &ex, None, Device::Cpu).unwrap(), ex, users)
}

/// The same tiny trainer with `short_hist` and `recent` set (the tower widens to take
/// them).
fn with_history(
    (tr, ex, users): (Trainer, Examples, Users),
    short_hist: usize,
    recent: usize,
) -> (Trainer, Examples, Users) {
    let config = ModelConfig { short_hist, recent, ..tr.config.clone() };
    let p = TrainParams { short_hist, recent, ..tr.p.clone() };
    (Trainer::new(&p, config, &ex, None, Device::Cpu).unwrap(), ex, users)
}

/// Genres of the tiny trainer's 6 items: 1 {1, 2}, 2 {2}, 4 {1}, 5 {1, 2}; items 0
/// and 3 have none.
fn tiny_genres() -> GenreLists {
    GenreLists { offsets: vec![0, 0, 2, 3, 3, 4, 6], codes: vec![1, 2, 2, 1, 1, 2] }
}

/// The same tiny trainer with `genres: true` and [`tiny_genres`].
fn with_genres((tr, ex, users): (Trainer, Examples, Users)) -> (Trainer, Examples, Users) {
    let config = ModelConfig { genres: tiny_genres().rows(), ..tr.config.clone() };
    let p = TrainParams { genres: true, ..tr.p.clone() };
    (Trainer::new(&p, config, &ex, Some(tiny_genres()), Device::Cpu).unwrap(), ex, users)
}

fn inputs(tr: &Trainer, ex: &Examples, users: &Users) -> Vec<f32> {
    let w = tr.config.input_dim();
    let mut x = vec![0f32; ex.len() * w];
    for i in 0..ex.len() {
        user_input(
            &tr.config,
            ItemRows { table: &tr.items, genres: tr.genres.as_ref().map(|g| &g.genres) },
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
    let cand: Vec<f32> = rows.iter().flat_map(|&r| tr.items.row(r).to_vec()).collect();
    let cand_t = Tensor::from_vec(cand.clone(), (2, 4), &dev).unwrap();
    let (targets, sampled) = ([2, 3, 3], [3, 2]);
    let loss = tr.loss(&x, &cand_t, &targets, &sampled, &[0, 1, 1], &[1, 0]).unwrap().to_scalar::<f32>().unwrap();

    let layers: Vec<(&Tensor, &Tensor)> = tr.tower.iter().map(|(w, b)| (w.as_tensor(), b.as_tensor())).collect();
    let u = normalize(&tower_forward(&layers, &x).unwrap()).unwrap().to_vec2::<f32>().unwrap();
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

/// The host path's hand-written cross-entropy has candle's value and gradient, masked
/// (−1e9) entries and a label in every column included.
#[test]
fn the_hand_written_cross_entropy_is_candles() {
    let dev = Device::Cpu;
    let z = [0.3f32, -1.2, 2.5, 0.0, 7.0, -1e9, 0.1, 1.5, -0.4, 3.3, -2.0, 0.9, 1.1, 1.1, 1.1, -1e9];
    let labels = [2u32, 0, 3, 1];
    let hand = Var::from_tensor(&Tensor::from_slice(&z, (4, 4), &dev).unwrap()).unwrap();
    let theirs = Var::from_tensor(&Tensor::from_slice(&z, (4, 4), &dev).unwrap()).unwrap();
    let l_hand = cross_entropy(hand.as_tensor(), &labels).unwrap();
    let label_t = Tensor::from_slice(&labels, 4, &dev).unwrap();
    let l_theirs = candle_nn::loss::cross_entropy(theirs.as_tensor(), &label_t).unwrap();
    close(l_hand.to_scalar::<f32>().unwrap(), l_theirs.to_scalar::<f32>().unwrap(), 1e-5);
    let grad = |l: &Tensor, v: &Var| l.backward().unwrap().get(v).unwrap().flatten_all().unwrap().to_vec1::<f32>();
    let (g_hand, g_theirs) = (grad(&l_hand, &hand).unwrap(), grad(&l_theirs, &theirs).unwrap());
    assert!(g_hand.iter().any(|g| g.abs() > 0.01), "{g_hand:?}");
    for (a, b) in g_hand.iter().zip(&g_theirs) {
        close(*a, *b, 1e-6);
    }
}

#[test]
fn sparse_gradient_matches_candles_dense_one() {
    let cases = [
        (Loss::SampledSoftmax, 0, 0),
        (Loss::InBatch, 0, 0),
        (Loss::Mixed, 0, 0),
        (Loss::SampledSoftmax, 1, 0),
        (Loss::SampledSoftmax, 1, 3),
    ];
    for (loss, short, recent) in cases {
        let (mut tr, ex, users) = with_history(tiny(loss, Sampler::Uniform), short, recent);
        let (dev, d) = (Device::Cpu, 4);
        let sampled = if loss == Loss::InBatch { vec![] } else { vec![5, 1] };
        // Sparse: leaves x and the candidate rows, gradients scattered by hand.
        let sparse = host_gradients(&mut tr, &ex, &users, &sampled).items;
        let targets: Vec<i32> = ex.item.clone();
        let t_slots: Vec<u32> = targets.iter().map(|&t| tr.item_grad.slot_of(t as usize) as u32).collect();
        let s_slots: Vec<u32> = sampled.iter().map(|&s| tr.item_grad.slot_of(s as usize) as u32).collect();
        let cand_rows = tr.item_grad.rows.clone();

        // Dense: the whole table is a variable; lookups and pooling in candle.
        let table = Var::from_tensor(&tr.items.to_tensor(&dev).unwrap()).unwrap();
        let mut rows = Vec::new();
        for i in 0..3 {
            let h: Vec<u32> = ex.hist_of(i).iter().map(|&h| h as u32).collect();
            let mean = |h: &[u32]| {
                let ids = Tensor::from_vec(h.to_vec(), h.len(), &dev).unwrap();
                table.as_tensor().index_select(&ids, 0).unwrap().mean_keepdim(0).unwrap()
            };
            let mut parts = vec![mean(&h)];
            if short > 0 {
                parts.push(mean(&h[..h.len().min(short)]));
            }
            // The recent items one by one, zeros past the history's end.
            for j in 0..recent {
                parts.push(match h.get(j) {
                    Some(_) => mean(&h[j..j + 1]),
                    None => Tensor::zeros((1, d), DType::F32, &dev).unwrap(),
                });
            }
            parts.push(Tensor::from_slice(&crate::model::age_features(ex.age[i], 1.0), (1, 3), &dev).unwrap());
            rows.push(Tensor::cat(&parts, 1).unwrap());
        }
        let x_dense = Tensor::cat(&rows, 0).unwrap();
        let idx: Vec<u32> = cand_rows.clone();
        let cand_dense =
            table.as_tensor().index_select(&Tensor::from_vec(idx, cand_rows.len(), &dev).unwrap(), 0).unwrap();
        let g = tr.loss(&x_dense, &cand_dense, &targets, &sampled, &t_slots, &s_slots).unwrap().backward().unwrap();
        let dense = g.get(&table).unwrap().to_vec2::<f32>().unwrap();

        for (row, dense_row) in dense.iter().enumerate() {
            let s = sparse.slot[row];
            let mine =
                if s == u32::MAX { vec![0.0; d] } else { sparse.grad[s as usize * d..(s as usize + 1) * d].to_vec() };
            for k in 0..d {
                close(mine[k], dense_row[k], 1e-4);
            }
            if s == u32::MAX {
                assert!(dense_row.iter().all(|v| *v == 0.0), "{loss:?}: row {row} untouched but has a dense gradient");
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
        let losses: Vec<f64> = (0..60).map(|_| tr.step(&ex, &users, &[0, 1, 2], 0.05).unwrap()).collect();
        (losses, tr.items.data.clone())
    };
    let (a, ta) = run(1);
    let (b, tb) = run(1);
    assert_eq!(ta, tb, "same seed, same table");
    assert_eq!(a, b);
    assert!(a[55..].iter().sum::<f64>() < a[..5].iter().sum::<f64>(), "{a:?}");
}

/// The host path's gradients of [`host_gradients`]: the item rows scattered as `step`
/// does, the genre rows (with genres), and each feature's whole table.
struct HostGradients {
    loss: f32,
    items: SparseGrad,
    genres: Option<SparseGrad>,
    features: Vec<Vec<f32>>,
}

/// The host path's loss on examples 0..3 against `sampled`, and its gradients.
fn host_gradients(tr: &mut Trainer, ex: &Examples, users: &Users, sampled: &[i32]) -> HostGradients {
    let dev = Device::Cpu;
    let (d, w) = (4, tr.config.input_dim());
    let targets: Vec<i32> = ex.item.clone();
    let t_slots: Vec<u32> = targets.iter().map(|&t| tr.item_grad.slot_of(t as usize) as u32).collect();
    let s_slots: Vec<u32> = sampled.iter().map(|&s| tr.item_grad.slot_of(s as usize) as u32).collect();
    let cand_rows = tr.item_grad.rows.clone();
    let x = Var::from_tensor(&Tensor::from_vec(inputs(tr, ex, users), (3, w), &dev).unwrap()).unwrap();
    let rows = ItemRows { table: &tr.items, genres: tr.genres.as_ref().map(|g| &g.genres) };
    let cand: Vec<f32> = cand_rows
        .iter()
        .flat_map(|&r| {
            let mut v = vec![0f32; d];
            rows.write(r as usize, &mut v);
            v
        })
        .collect();
    let cand_v = Var::from_tensor(&Tensor::from_vec(cand, (cand_rows.len(), d), &dev).unwrap()).unwrap();
    let loss = tr.loss(x.as_tensor(), cand_v.as_tensor(), &targets, sampled, &t_slots, &s_slots).unwrap();
    let g = loss.backward().unwrap();
    let g_x = g.get(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let g_c = g.get(&cand_v).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mut sparse = SparseGrad::new(6, d);
    for &r in &cand_rows {
        sparse.slot_of(r as usize);
    }
    let lists = tr.genres.as_ref().map(|g| g.genres.lists.clone());
    let mut genres = lists.as_ref().map(|_| SparseGrad::new(tr.config.genres, d));
    add_candidate_grads(&mut sparse, &g_c, lists.as_ref().zip(genres.as_mut()));
    let hists = (0..3).map(|i| ex.hist_of(i));
    add_history_grads(&mut sparse, lists.as_ref().zip(genres.as_mut()), &g_x, &tr.config, hists);
    let features = (0..tr.features.len())
        .map(|k| {
            let mut table = vec![0f32; tr.features[k].rows * d];
            for i in 0..3 {
                let code = users.code(k, ex.user[i], tr.features[k].rows);
                for c in 0..d {
                    table[code * d + c] += g_x[i * w + tr.config.feature_at(k) + c];
                }
            }
            table
        })
        .collect();
    HostGradients { loss: loss.to_scalar::<f32>().unwrap(), items: sparse, genres, features }
}

/// A sparse gradient as its whole table of `rows` rows of dimension 4.
fn dense_rows(sparse: &SparseGrad, rows: usize) -> Vec<f32> {
    let mut table = vec![0f32; rows * 4];
    for (s, &row) in sparse.rows.iter().enumerate() {
        table[row as usize * 4..(row as usize + 1) * 4].copy_from_slice(&sparse.grad[s * 4..(s + 1) * 4]);
    }
    table
}

#[test]
fn the_device_path_has_the_host_paths_loss_and_gradients() {
    // (loss, user features, short_hist, recent, genres); histories hold 1, 2 and 2
    // items, so recent 3 has padded slots.
    let cases = [
        (Loss::SampledSoftmax, false, 0, 0, false),
        (Loss::SampledSoftmax, true, 0, 0, false),
        (Loss::InBatch, true, 0, 0, false),
        (Loss::SampledSoftmax, false, 1, 0, false),
        (Loss::InBatch, true, 1, 0, false),
        (Loss::SampledSoftmax, false, 0, 3, false),
        (Loss::InBatch, true, 1, 2, false),
        (Loss::SampledSoftmax, false, 1, 2, true),
        (Loss::InBatch, true, 0, 3, true),
        (Loss::SampledSoftmax, true, 1, 0, true),
        (Loss::Full, true, 1, 0, false),
        (Loss::Full, false, 0, 2, true),
    ];
    for (loss, with_features, short, recent, genres) in cases {
        let tiny = if with_features { tiny_with_features(loss) } else { tiny(loss, Sampler::Uniform) };
        let tiny = with_history(tiny, short, recent);
        let (mut tr, ex, users) = if genres { with_genres(tiny) } else { tiny };
        // Full softmax: the host path's negatives are every item, the device path's none.
        let (sampled, host_sampled): (Vec<i32>, Vec<i32>) = match loss {
            Loss::InBatch => (vec![], vec![]),
            Loss::Full => (vec![], (1..6).collect()),
            _ => (vec![5, 3, 1], vec![5, 3, 1]),
        };
        let host = host_gradients(&mut tr, &ex, &users, &host_sampled);
        let host_items = dense_rows(&host.items, 6);

        let dev = Device::Cpu;
        let data = device::Uploaded::new(&tr, &ex, &users).unwrap();
        let mut dt = device::DeviceTrainer::from_host(&tr).unwrap();
        let batch = Tensor::from_vec(vec![0u32, 1, 2], 3, &dev).unwrap();
        let s: Vec<u32> = sampled.iter().map(|&s| s as u32).collect();
        let s = Tensor::from_vec(s.clone(), s.len(), &dev).unwrap();
        assert!(!dt.pool_by_matrix, "the CPU gathers");
        // Both poolings: through the matrix without features, by gathering rows with them.
        dt.pool_by_matrix = !with_features;
        // The genre means both ways: as one product with features, gathered without.
        if with_features {
            let fits = |g: &device::DeviceGenres| matches!(g.means, device::GenreMeans::Matrix(_));
            assert!(dt.genres.as_ref().is_none_or(fits), "the tiny genre matrix fits");
        } else if let Some(g) = &mut dt.genres {
            let lists = &tr.genres.as_ref().unwrap().genres.lists;
            g.means = device::GenreMeans::new(lists, tr.config.items, lists.rows(), false, &dev).unwrap();
        }
        let l = dt.loss(&data, &batch, &s).unwrap();
        close(l.to_scalar::<f32>().unwrap(), host.loss, 1e-5);
        let g = l.backward().unwrap();
        let items = g.get(&dt.items).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (a, b) in items.iter().zip(&host_items) {
            close(*a, *b, 1e-4);
        }
        assert!(items[..4].iter().all(|v| *v == 0.0), "{loss:?}: the padding row gets no gradient");
        for (k, host) in host.features.iter().enumerate() {
            let dev_g = g.get(&dt.features[k]).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for (a, b) in dev_g.iter().zip(host) {
                close(*a, *b, 1e-4);
            }
        }
        assert_eq!(host.genres.is_some(), dt.genres.is_some());
        if let (Some(host_genres), Some(dev_genres)) = (&host.genres, &dt.genres) {
            let dev_g = g.get(&dev_genres.table).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let host_g = dense_rows(host_genres, 3);
            assert!(host_g[4..].iter().any(|x| x.abs() > 1e-6), "{loss:?}: the genres get a gradient");
            for (a, b) in dev_g.iter().zip(&host_g) {
                close(*a, *b, 1e-4);
            }
        }
    }
}

#[test]
fn full_softmax_on_the_device_path_matches_a_hand_computation() {
    let (tr, ex, users) = tiny_with_features(Loss::Full);
    let dev = Device::Cpu;
    let data = device::Uploaded::new(&tr, &ex, &users).unwrap();
    let dt = device::DeviceTrainer::from_host(&tr).unwrap();
    let batch = Tensor::from_vec(vec![0u32, 1, 2], 3, &dev).unwrap();
    let loss = dt.loss(&data, &batch, &Tensor::zeros(0, DType::U32, &dev).unwrap()).unwrap();

    let w = tr.config.input_dim();
    let x = Tensor::from_vec(inputs(&tr, &ex, &users), (3, w), &dev).unwrap();
    let layers: Vec<(&Tensor, &Tensor)> = tr.tower.iter().map(|(w, b)| (w.as_tensor(), b.as_tensor())).collect();
    let u = normalize(&tower_forward(&layers, &x).unwrap()).unwrap().to_vec2::<f32>().unwrap();
    let unit = |r: usize| {
        let v = tr.items.row(r);
        let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
        v.iter().map(|a| a / n).collect::<Vec<f32>>()
    };
    let mut total = 0.0;
    for (b, &t) in ex.item.iter().enumerate() {
        // Every item but the padding row 0; temperature 0.5.
        let logits: Vec<f32> =
            (1..6).map(|r| unit(r).iter().zip(&u[b]).map(|(a, c)| a * c).sum::<f32>() / 0.5).collect();
        let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let lse = max + logits.iter().map(|z| (z - max).exp()).sum::<f32>().ln();
        total += lse - logits[t as usize - 1];
    }
    close(loss.to_scalar::<f32>().unwrap(), total / 3.0, 1e-4);
}

#[test]
fn the_device_path_learns_and_is_seeded() {
    let run = || {
        let (tr, ex, users) = tiny_with_features(Loss::SampledSoftmax);
        let mut p = tr.p.clone();
        p.epochs = 40;
        p.batch_size = 2;
        p.lr = 0.05;
        let tr = Trainer::new(&p, tr.config.clone(), &ex, None, Device::Cpu).unwrap();
        device::train(tr, &ex, &users, &dagrun_kind::NoProgress).unwrap()
    };
    let ((model_a, log_a), (model_b, _)) = (run(), run());
    assert_eq!(model_a.items.data, model_b.items.data, "same seed, same table");
    let losses: Vec<f64> = log_a.iter().map(|l| l.2).collect();
    assert!(losses[35..].iter().sum::<f64>() < losses[..5].iter().sum::<f64>(), "{losses:?}");
}

/// Untied, a step moves the history's rows in the input table and the candidates'
/// rows in the output table; the model saves and loads both, and training on it
/// still lowers the loss.
#[test]
fn an_untied_model_trains_history_and_candidates_in_tables_of_their_own() {
    let (tied, ex, users) = tiny(Loss::SampledSoftmax, Sampler::Uniform);
    let config = ModelConfig { tie_item_embeddings: false, ..tied.config.clone() };
    let p = TrainParams { tie_item_embeddings: false, ..tied.p.clone() };
    let mut tr = Trainer::new(&p, config.clone(), &ex, None, Device::Cpu).unwrap();
    assert_eq!(tr.items.data, tied.items.data, "the input table starts as a tied model's does");
    let (items, out) = (tr.items.clone(), tr.out.as_ref().unwrap().table.clone());
    let losses: Vec<f64> = (0..60).map(|_| tr.step(&ex, &users, &[0, 1, 2], 0.05).unwrap()).collect();
    assert!(losses[55..].iter().sum::<f64>() < losses[..5].iter().sum::<f64>(), "{losses:?}");
    let moved = |a: &EmbeddingTable, b: &EmbeddingTable, r: usize| a.row(r) != b.row(r);
    // Histories hold items 1, 2, 4, 5; targets are 2 and 3.
    assert!(!moved(&items, &tr.items, 3), "item 3 is only ever a candidate");
    assert!([1, 2, 4, 5].iter().all(|&r| moved(&items, &tr.items, r)));
    let out_now = &tr.out.as_ref().unwrap().table;
    assert!(moved(&out, out_now, 2) && moved(&out, out_now, 3));
    let trained_out = out_now.data.clone();

    let model = tr.into_model().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    model.save(&path).unwrap();
    let loaded = crate::model::Model::load(&path, config, &Device::Cpu).unwrap();
    assert_eq!(loaded.output_items().table.data, trained_out, "export reads the output table");
    assert_ne!(loaded.items.data, trained_out);
}

/// With genres an item's vector is its row plus the mean of its genres' rows. The
/// host path pools and gathers those vectors by hand and scatters their gradients
/// onto item and genre rows; candle's gradients through the same sum, written as
/// dense matrix products, must agree. The model saves and loads its genres.
#[test]
fn genre_gradients_match_candles_through_the_item_vectors() {
    let (tied, ex, users) = tiny(Loss::SampledSoftmax, Sampler::Uniform);
    let lists = tiny_genres();
    let config = ModelConfig { genres: lists.rows(), ..tied.config.clone() };
    let p = TrainParams { genres: true, ..tied.p.clone() };
    let mut tr = Trainer::new(&p, config.clone(), &ex, Some(lists.clone()), Device::Cpu).unwrap();
    assert_eq!(tr.items.data, tied.items.data, "the item table starts as it does without genres");
    let (dev, d, w, n) = (Device::Cpu, 4, tr.config.input_dim(), 6);
    let e = Var::from_tensor(&tr.items.to_tensor(&dev).unwrap()).unwrap();
    let g = Var::from_tensor(&tr.genres.as_ref().unwrap().genres.table.to_tensor(&dev).unwrap()).unwrap();
    let mut mean = vec![0f32; n * 3];
    let mut pooling = vec![0f32; 3 * n];
    for i in 0..n {
        lists.of(i).iter().for_each(|&c| mean[i * 3 + c as usize] += 1.0 / lists.of(i).len() as f32);
    }
    for r in 0..3 {
        ex.hist_of(r).iter().for_each(|&h| pooling[r * n + h as usize] += 1.0 / ex.hist_of(r).len() as f32);
    }
    let mat = |v: Vec<f32>, shape: (usize, usize)| Tensor::from_vec(v, shape, &dev).unwrap();
    let v = (e.as_tensor() + mat(mean, (n, 3)).matmul(g.as_tensor()).unwrap()).unwrap();
    let by_hand = inputs(&tr, &ex, &users);
    let tail = mat(by_hand.clone(), (3, w)).narrow(1, d, w - d).unwrap();
    let x = Tensor::cat(&[&mat(pooling, (3, n)).matmul(&v).unwrap(), &tail], 1).unwrap();
    for (a, b) in x.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().zip(&by_hand) {
        close(*a, *b, 1e-6);
    }
    let (targets, sampled) = (ex.item.clone(), [3, 1]);
    let t_slots: Vec<u32> = targets.iter().map(|&t| tr.item_grad.slot_of(t as usize) as u32).collect();
    let s_slots: Vec<u32> = sampled.iter().map(|&s| tr.item_grad.slot_of(s as usize) as u32).collect();
    let cand_rows = tr.item_grad.rows.clone();
    let cand = v.index_select(&Tensor::from_slice(&cand_rows, cand_rows.len(), &dev).unwrap(), 0).unwrap();
    let dense = tr.loss(&x, &cand, &targets, &sampled, &t_slots, &s_slots).unwrap().backward().unwrap();
    let [g_e, g_g] = [&e, &g].map(|t| dense.get(t).unwrap().to_vec2::<f32>().unwrap());

    // The host path: leaves for the inputs and candidates, their gradients scattered.
    let x_leaf = Var::from_tensor(&x.detach()).unwrap();
    let c_leaf = Var::from_tensor(&cand.detach()).unwrap();
    let leaves = tr.loss(x_leaf.as_tensor(), c_leaf.as_tensor(), &targets, &sampled, &t_slots, &s_slots).unwrap();
    let leaves = leaves.backward().unwrap();
    let flat = |v: &Var| leaves.get(v).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let (mut items, mut genre_rows) = (SparseGrad::new(n, d), SparseGrad::new(3, d));
    cand_rows.iter().for_each(|&r| _ = items.slot_of(r as usize));
    add_candidate_grads(&mut items, &flat(&c_leaf), Some((&lists, &mut genre_rows)));
    let hists = (0..3).map(|i| ex.hist_of(i));
    add_history_grads(&mut items, Some((&lists, &mut genre_rows)), &flat(&x_leaf), &tr.config, hists);
    let row = |s: &SparseGrad, r: usize| match s.slot[r] {
        u32::MAX => vec![0.0; d],
        k => s.grad[k as usize * d..(k as usize + 1) * d].to_vec(),
    };
    for (r, want) in g_e.iter().enumerate() {
        row(&items, r).iter().zip(want).for_each(|(a, b)| close(*a, *b, 1e-5));
    }
    for (r, want) in g_g.iter().enumerate() {
        row(&genre_rows, r).iter().zip(want).for_each(|(a, b)| close(*a, *b, 1e-5));
    }
    assert!(g_g[1].iter().chain(&g_g[2]).any(|x| x.abs() > 1e-6), "the genres get a gradient");

    let losses: Vec<f64> = (0..60).map(|_| tr.step(&ex, &users, &[0, 1, 2], 0.05).unwrap()).collect();
    assert!(losses[55..].iter().sum::<f64>() < losses[..5].iter().sum::<f64>(), "{losses:?}");
    let model = tr.into_model().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    model.save(&path).unwrap();
    let loaded = crate::model::Model::load(&path, config, &Device::Cpu).unwrap();
    let genres = loaded.genres.as_ref().unwrap();
    assert_eq!(genres.lists, lists);
    let (mut got, item) = (vec![0f32; d], loaded.items.row(1));
    loaded.output_items().write(1, &mut got);
    for c in 0..d {
        close(got[c], item[c] + (genres.table.row(1)[c] + genres.table.row(2)[c]) / 2.0, 1e-6);
    }
}
