//! A plain `f64` reference trainer: one model, one mask, textbook loops, no tensors.
//!
//! It runs exactly the training of [`super::train`] (same initialisation, weights, steps, step
//! size and L2 penalty) and exists so that tests can check the batched tensor program against an
//! independent implementation, and measure the gap of `f32` training to `f64`.

use super::features::Features;
use super::train::{ModelKind, ModelParams, TrainConfig};
use crate::mask::MaskRef;

/// Trains one model on the examples `mask` keeps, with step size `lr` (the batched trainer's
/// [`super::BatchTrainer::learning_rate`]); `train` must be standardised already.
pub fn train(train: &Features, mask: MaskRef<'_>, config: &TrainConfig, lr: f64) -> ModelParams {
    let (dim, classes) = (train.dim, train.classes.len());
    let mut params = ModelParams::init(config.model, dim, classes, config.seed);
    let kept: Vec<usize> = mask.kept().collect();
    if kept.is_empty() {
        return params;
    }
    let weight = 1.0 / kept.len() as f64;
    for _ in 0..config.steps {
        match (&mut params, config.model) {
            (ModelParams::LogReg { w, .. }, _) => {
                let mut g = vec![0.0; w.len()];
                for &i in &kept {
                    let x = train.row(i);
                    let r = residual(&params_logits_logreg(w, x, classes), train.y[i], weight);
                    accumulate(&mut g, x, &r);
                }
                step(w, &g, dim, classes, lr, config.l2);
            }
            (ModelParams::Mlp { w1, w2, .. }, ModelKind::Mlp { hidden }) => {
                let (mut g1, mut g2) = (vec![0.0; w1.len()], vec![0.0; w2.len()]);
                for &i in &kept {
                    let x = train.row(i);
                    let a: Vec<f64> = params_logits_logreg(w1, x, hidden).into_iter().map(f64::tanh).collect();
                    let r = residual(&params_logits_logreg(w2, &a, classes), train.y[i], weight);
                    accumulate(&mut g2, &a, &r);
                    // dL/da_h = Σ_c r_c w2[h][c]; through tanh: (1 − a_h²).
                    let da: Vec<f64> = (0..hidden)
                        .map(|h| (0..classes).map(|c| r[c] * w2[h * classes + c]).sum::<f64>() * (1.0 - a[h] * a[h]))
                        .collect();
                    accumulate(&mut g1, x, &da);
                }
                step(w1, &g1, dim, hidden, lr, config.l2);
                step(w2, &g2, hidden, classes, lr, config.l2);
            }
            _ => unreachable!("the initialisation matches the model"),
        }
    }
    params
}

/// `[x, 1] · w` for `w` of `(len(x) + 1) × cols`.
fn params_logits_logreg(w: &[f64], x: &[f64], cols: usize) -> Vec<f64> {
    let mut out = w[x.len() * cols..(x.len() + 1) * cols].to_vec();
    for (i, xi) in x.iter().enumerate() {
        for c in 0..cols {
            out[c] += xi * w[i * cols + c];
        }
    }
    out
}

/// `weight · (softmax(z) − onehot(label))`.
fn residual(z: &[f64], label: usize, weight: f64) -> Vec<f64> {
    let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (v - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().enumerate().map(|(c, v)| weight * (v / sum - if c == label { 1.0 } else { 0.0 })).collect()
}

/// `g += [x, 1]ᵀ r`.
fn accumulate(g: &mut [f64], x: &[f64], r: &[f64]) {
    let cols = r.len();
    for (i, xi) in x.iter().chain(std::iter::once(&1.0)).enumerate() {
        for c in 0..cols {
            g[i * cols + c] += xi * r[c];
        }
    }
}

/// `w ← w − lr·(g + λ·w)` on weight rows, `w ← w − lr·g` on the bias row (the last of `rows + 1`).
fn step(w: &mut [f64], g: &[f64], rows: usize, cols: usize, lr: f64, l2: f64) {
    for (k, (wk, gk)) in w.iter_mut().zip(g).enumerate() {
        let decay = if k / cols < rows { l2 * *wk } else { 0.0 };
        *wk -= lr * (gk + decay);
    }
}
