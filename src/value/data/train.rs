//! Batched training: `B` models, one per mask, trained at once as one tensor program.
//!
//! Every model starts from the same seeded initialisation and takes the same number of
//! full-batch gradient-descent steps on the weighted cross-entropy
//!
//! ```text
//! L_b(θ) = Σ_i w_bi · CE(f_θ(x_i), y_i) + (λ/2)·‖weights‖²,   w_bi = m_bi / |S_b|
//! ```
//!
//! where `m_b ∈ {0,1}^n` is mask `b` and `|S_b|` the number of examples it keeps: the mask
//! enters as per-example weights, normalised by the subset size (biases are not decayed). A
//! model whose mask keeps no example takes no step: its value is the untrained initial model's.
//!
//! Because the training inputs `X` are shared by all models, the `B` weight matrices sit side
//! by side in one `[d+1, B·C]` tensor and every step's forward and gradient products are two
//! large GEMMs (`X·W` and `Xᵀ·R`) instead of `2B` small ones; the one-hidden-layer MLP adds
//! `B` small per-model products for its output layer. Biases ride along as a last row of each
//! weight matrix, against a column of ones appended to `X`.
//!
//! The code is written against `candle_core` tensors on any [`Device`]. On the CPU one step is
//! fused into a custom kernel (softmax, minus the one-hot label, times the example weight, in one
//! parallel pass that skips ablated examples); elsewhere, or with [`TrainConfig::fused`] off, the
//! same arithmetic runs as plain tensor operations.

use std::sync::Arc;

use candle_core::{DType, Device, Shape, Tensor, D};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::features::Features;
use super::kernels::{SgdStep, SoftmaxResidual, TanhBackward, TanhInPlace};
use super::DataError;
use crate::mask::MaskSlice;
use crate::planted::standard_normal;

/// Which model is trained on each subset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// Multinomial logistic regression (softmax over `C` classes), zero-initialised; its loss is
    /// convex, so the seed does not matter.
    LogReg,
    /// One hidden layer of `hidden` tanh units, then softmax. Input and output weights are drawn
    /// from `N(0, 1/fan_in)` with the seed; biases start at zero.
    Mlp {
        /// Hidden units.
        hidden: usize,
    },
}

/// Floating-point precision of training.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// 32-bit floats (the default: twice the throughput; the gap to `F64` is tested).
    #[default]
    F32,
    /// 64-bit floats.
    F64,
}

impl Precision {
    fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F64 => DType::F64,
        }
    }
}

/// How every subset model is trained.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// The model.
    pub model: ModelKind,
    /// Full-batch gradient-descent steps.
    pub steps: usize,
    /// Step size; `None` picks `1 / L` for the curvature bound `L` of the full training set
    /// (see [`BatchTrainer::learning_rate`]).
    pub lr: Option<f64>,
    /// L2 penalty `λ` on the weights (not the biases).
    pub l2: f64,
    /// Seed of the initialisation (the MLP's; logistic regression starts at zero).
    pub seed: u64,
    /// Precision.
    pub precision: Precision,
    /// Models trained together in one tensor program; `0` picks a size that keeps each
    /// intermediate tensor near [`AUTO_BLOCK_ELEMENTS`] numbers. The results do not depend on it
    /// beyond floating-point rounding.
    pub block: usize,
    /// Use the fused CPU kernel when the device is the CPU (default). `false` runs the
    /// device-generic tensor operations everywhere — what a GPU runs.
    pub fused: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: ModelKind::LogReg,
            steps: 200,
            lr: None,
            l2: 1e-3,
            seed: 0,
            precision: Precision::F32,
            block: 0,
            fused: true,
        }
    }
}

/// With [`TrainConfig::block`] `= 0`, models per block are chosen so that the largest
/// per-step tensor (`n × block × max(C, hidden)`) holds about this many numbers.
pub const AUTO_BLOCK_ELEMENTS: usize = 1 << 20;

/// One trained model's parameters on the host, biases as the last row of each weight matrix.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelParams {
    /// Logistic regression: `w` is `(dim + 1) × classes`, row-major.
    LogReg {
        /// Input features.
        dim: usize,
        /// Classes.
        classes: usize,
        /// Weights, the last row the bias.
        w: Vec<f64>,
    },
    /// MLP: `w1` is `(dim + 1) × hidden`, `w2` is `(hidden + 1) × classes`, row-major.
    Mlp {
        /// Input features.
        dim: usize,
        /// Hidden units.
        hidden: usize,
        /// Classes.
        classes: usize,
        /// Input weights, the last row the hidden bias.
        w1: Vec<f64>,
        /// Output weights, the last row the output bias.
        w2: Vec<f64>,
    },
}

/// `x (rows × (k+1 with ones)) · w ((k+1) × cols)` for one row given without its ones column.
fn affine_row(x: &[f64], w: &[f64], cols: usize) -> Vec<f64> {
    let k = x.len();
    let mut out = w[k * cols..(k + 1) * cols].to_vec();
    for (i, xi) in x.iter().enumerate() {
        for (o, wi) in out.iter_mut().zip(&w[i * cols..(i + 1) * cols]) {
            *o += xi * wi;
        }
    }
    out
}

impl ModelParams {
    /// The seeded initialisation every subset model starts from.
    pub fn init(model: ModelKind, dim: usize, classes: usize, seed: u64) -> Self {
        match model {
            ModelKind::LogReg => ModelParams::LogReg { dim, classes, w: vec![0.0; (dim + 1) * classes] },
            ModelKind::Mlp { hidden } => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let mut draw = |fan_in: usize, rows: usize, cols: usize| {
                    let sd = 1.0 / (fan_in as f64).sqrt();
                    let mut w: Vec<f64> = (0..rows * cols).map(|_| sd * standard_normal(&mut rng)).collect();
                    w.extend(std::iter::repeat_n(0.0, cols)); // bias row
                    w
                };
                let w1 = draw(dim, dim, hidden);
                let w2 = draw(hidden, hidden, classes);
                ModelParams::Mlp { dim, hidden, classes, w1, w2 }
            }
        }
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        match self {
            ModelParams::LogReg { classes, .. } | ModelParams::Mlp { classes, .. } => *classes,
        }
    }

    /// The logits of one (standardised) input row.
    pub fn logits(&self, x: &[f64]) -> Vec<f64> {
        match self {
            ModelParams::LogReg { classes, w, .. } => affine_row(x, w, *classes),
            ModelParams::Mlp { hidden, classes, w1, w2, .. } => {
                let a: Vec<f64> = affine_row(x, w1, *hidden).into_iter().map(f64::tanh).collect();
                affine_row(&a, w2, *classes)
            }
        }
    }

    /// All parameters, flattened (for comparisons).
    pub fn flat(&self) -> Vec<f64> {
        match self {
            ModelParams::LogReg { w, .. } => w.clone(),
            ModelParams::Mlp { w1, w2, .. } => w1.iter().chain(w2).copied().collect(),
        }
    }
}

/// Trains one model per mask on a fixed, standardised training set.
pub struct BatchTrainer {
    device: Device,
    dtype: DType,
    config: TrainConfig,
    n: usize,
    dim: usize,
    classes: usize,
    lr: f64,
    init: ModelParams,
    /// `[n, d+1]`, last column ones.
    x: Tensor,
    /// `[d+1, n]`, contiguous.
    xt: Tensor,
    /// One-hot labels `[n, 1, C]` and `[1, n, C]` (the generic path's two layouts).
    y_n1c: Tensor,
    y_1nc: Tensor,
    labels: Arc<[u32]>,
}

impl BatchTrainer {
    /// A trainer for `train` (already standardised: the trainer uses the numbers as given).
    /// Needs at least two classes among the rows.
    pub fn new(train: &Features, config: TrainConfig, device: &Device) -> Result<Self, DataError> {
        check_config(&config)?;
        let (n, dim, classes) = (train.rows(), train.dim, train.classes.len());
        if n == 0 {
            return Err(DataError::NoExamples);
        }
        let mut present: Vec<usize> = train.y.clone();
        present.sort_unstable();
        present.dedup();
        if present.len() < 2 {
            return Err(DataError::SingleClass { class: train.classes[present[0]].clone() });
        }
        let dtype = config.precision.dtype();
        let mut xa = Vec::with_capacity(n * (dim + 1));
        for i in 0..n {
            xa.extend_from_slice(train.row(i));
            xa.push(1.0);
        }
        let mut onehot = vec![0.0; n * classes];
        for (i, &c) in train.y.iter().enumerate() {
            onehot[i * classes + c] = 1.0;
        }
        let init = ModelParams::init(config.model, dim, classes, config.seed);
        let lr = match config.lr {
            Some(lr) => lr,
            None => auto_learning_rate(&xa, n, dim + 1, &init, config.l2),
        };
        let x = host_tensor(&xa, (n, dim + 1), dtype, device)?;
        let xt = x.t()?.contiguous()?;
        let y = host_tensor(&onehot, (n, classes), dtype, device)?;
        Ok(BatchTrainer {
            device: device.clone(),
            dtype,
            n,
            dim,
            classes,
            lr,
            init,
            y_n1c: y.reshape((n, 1, classes))?,
            y_1nc: y.reshape((1, n, classes))?,
            x,
            xt,
            labels: train.y.iter().map(|&c| c as u32).collect(),
            config,
        })
    }

    /// Training examples (players).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input features.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The step size used: [`TrainConfig::lr`], or `1 / L` with `L = ½·λ_max(ZᵀZ/n) + λ`, where
    /// `Z` is the training matrix with its ones column (and, for the MLP, the larger of that and
    /// the same bound for the initial hidden activations): the curvature bound of the mean
    /// cross-entropy over the full training set.
    pub fn learning_rate(&self) -> f64 {
        self.lr
    }

    /// The initialisation every model starts from.
    pub fn init(&self) -> &ModelParams {
        &self.init
    }

    /// Models per block for a batch of `rows` masks.
    fn block_size(&self, rows: usize) -> usize {
        let width = match self.config.model {
            ModelKind::LogReg => self.classes,
            ModelKind::Mlp { hidden } => hidden.max(self.classes),
        };
        let block = match self.config.block {
            0 => AUTO_BLOCK_ELEMENTS / (self.n * width).max(1),
            b => b,
        };
        block.clamp(1, rows.max(1))
    }

    /// Trains one model per mask (masks over the `n` training examples).
    pub fn train(&self, masks: MaskSlice<'_>) -> Result<Trained, DataError> {
        if masks.n() != self.n {
            return Err(DataError::MaskWidth { expected: self.n, found: masks.n() });
        }
        let block = self.block_size(masks.len());
        let mut blocks = Vec::new();
        for chunk in masks.chunks(block) {
            blocks.push(self.train_block(chunk)?);
        }
        Ok(Trained { blocks, dim: self.dim, classes: self.classes, dtype: self.dtype, device: self.device.clone() })
    }

    fn fused(&self) -> bool {
        self.config.fused && self.device.is_cpu()
    }

    fn train_block(&self, masks: MaskSlice<'_>) -> Result<Block, DataError> {
        let (n, b, c, d1) = (self.n, masks.len(), self.classes, self.dim + 1);
        let counts: Vec<usize> = masks.iter().map(|m| m.count_kept()).collect();
        let lrs: Vec<f64> = counts.iter().map(|&k| if k > 0 { self.lr } else { 0.0 }).collect();
        // Example weights: [n, B] for logistic regression (examples on the logits' first axis),
        // [B, n] for the MLP (its output layer is per model).
        let example_major = matches!(self.config.model, ModelKind::LogReg);
        let mut weights = vec![0.0; n * b];
        let mut kept: Vec<Vec<u32>> = vec![Vec::new(); if example_major { n } else { b }];
        for (j, m) in masks.iter().enumerate() {
            let w = 1.0 / counts[j].max(1) as f64;
            for i in m.kept() {
                weights[if example_major { i * b + j } else { j * n + i }] = w;
                if example_major {
                    kept[i].push(j as u32);
                } else {
                    kept[j].push(i as u32);
                }
            }
        }
        let kept: Arc<[Vec<u32>]> = kept.into();
        let weights = host_tensor(&weights, if example_major { (n, b) } else { (b, n) }, self.dtype, &self.device)?;
        let tensor = |data: &[f64], shape: &[usize]| host_tensor(data, shape, self.dtype, &self.device);
        let per_column = |width: usize| lrs.iter().flat_map(|&lr| std::iter::repeat_n(lr, width)).collect::<Vec<f64>>();
        match (&self.init, self.config.model) {
            (ModelParams::LogReg { w: w0, .. }, _) => {
                let update = self.update(per_column(c), false, d1, b * c, d1 - 1)?;
                let mut w = tensor(&side_by_side(w0, d1, c, b), &[d1, b * c])?;
                for _ in 0..self.config.steps {
                    let z = self.x.matmul(&w)?.reshape((n, b, c))?; // [n, B, C]
                    let r = self.residual(&z, &weights, &kept, None, 0)?.reshape((n, b * c))?;
                    let g = self.xt.matmul(&r)?; // [d+1, B·C]
                    w = update.apply(w, &g)?;
                }
                Ok(Block { models: b, params: BlockParams::LogReg { w } })
            }
            (ModelParams::Mlp { w1: w10, w2: w20, .. }, ModelKind::Mlp { hidden: h }) => {
                let update1 = self.update(per_column(h), false, d1, b * h, d1 - 1)?;
                let update2 = self.update(lrs.clone(), true, b, h * c, b)?;
                let update_b2 = self.update(lrs.clone(), true, b, c, 0)?;
                let mut w1 = tensor(&side_by_side(w10, d1, h, b), &[d1, b * h])?;
                let (w2_init, b2_init) = w20.split_at(h * c);
                let mut w2 = tensor(&w2_init.repeat(b), &[b, h, c])?;
                let mut b2 = tensor(&b2_init.repeat(b), &[b, 1, c])?;
                for _ in 0..self.config.steps {
                    let a = self.tanh(self.x.matmul(&w1)?)?.reshape((n, b, h))?; // [n, B, H]
                    let a_bnh = a.transpose(0, 1)?; // [B, n, H], a view
                    let z = a_bnh.matmul(&w2)?; // [B, n, C], bias added by the residual
                    let r = self.residual(&z, &weights, &kept, Some(&b2), 1)?; // [B, n, C]
                    let g2 = a_bnh.transpose(1, 2)?.matmul(&r)?; // [B, H, C]
                    let gb2 = r.sum_keepdim(1)?; // [B, 1, C]
                    let da = r.matmul(&w2.transpose(1, 2)?)?; // [B, n, H]
                    let dpre = self.tanh_backward(&a, &da)?.reshape((n, b * h))?; // [n, B·H]
                    let g1 = self.xt.matmul(&dpre)?; // [d+1, B·H]
                    w1 = update1.apply(w1, &g1)?;
                    w2 = update2.apply(w2, &g2)?;
                    b2 = update_b2.apply(b2, &gb2)?;
                }
                Ok(Block { models: b, params: BlockParams::Mlp { w1, w2, b2, hidden: h } })
            }
            _ => unreachable!("the initialisation matches the model"),
        }
    }

    /// `R = w ⊙ (softmax(Z + bias) − onehot(y))` for logits `Z: [P, Q, C]`, example weights
    /// `[P, Q]` (non-zero where `kept` lists them) and an optional bias `[P, 1, C]`, the
    /// examples along `axis` (0 or 1).
    fn residual(
        &self,
        z: &Tensor,
        weights: &Tensor,
        kept: &Arc<[Vec<u32>]>,
        bias: Option<&Tensor>,
        axis: usize,
    ) -> Result<Tensor, DataError> {
        if self.fused() {
            let op = SoftmaxResidual { labels: self.labels.clone(), axis, kept: kept.clone() };
            let z = z.contiguous()?;
            return Ok(match bias {
                Some(bias) => z.apply_op3_no_bwd(weights, &bias.contiguous()?, &op)?,
                None => z.apply_op2_no_bwd(weights, &op)?,
            });
        }
        let z = match bias {
            Some(bias) => z.broadcast_add(bias)?,
            None => z.clone(),
        };
        let y = if axis == 0 { &self.y_n1c } else { &self.y_1nc };
        let max = z.max_keepdim(D::Minus1)?;
        let e = z.broadcast_sub(&max)?.exp()?;
        let p = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
        Ok(p.broadcast_sub(y)?.broadcast_mul(&weights.unsqueeze(2)?)?)
    }

    fn tanh(&self, pre: Tensor) -> Result<Tensor, DataError> {
        if self.fused() {
            pre.inplace_op1(&TanhInPlace)?;
            return Ok(pre);
        }
        Ok(pre.tanh()?)
    }

    /// `dP = dA ⊙ (1 − A²)` for `A: [n, B, H]` and `dA: [B, n, H]`, in the layout of `A`.
    fn tanh_backward(&self, a: &Tensor, da: &Tensor) -> Result<Tensor, DataError> {
        if self.fused() {
            return Ok(a.apply_op2_no_bwd(da, &TanhBackward)?);
        }
        Ok(a.sqr()?.affine(-1.0, 1.0)?.mul(&da.transpose(0, 1)?)?)
    }

    /// A gradient step for a parameter tensor viewed as `[rows, cols]` (see [`SgdStep`]).
    fn update(
        &self,
        lr: Vec<f64>,
        per_row: bool,
        rows: usize,
        cols: usize,
        decay_rows: usize,
    ) -> Result<Update, DataError> {
        let op = SgdStep { lr: lr.into(), per_row, cols, decay_rows, l2: self.config.l2 };
        if self.fused() {
            return Ok(Update { op, generic: None });
        }
        let (mut keep, mut step) = (Vec::with_capacity(rows * cols), Vec::with_capacity(rows * cols));
        for r in 0..rows {
            for k in 0..cols {
                let lr = op.lr[if per_row { r } else { k }];
                step.push(lr);
                keep.push(if r < decay_rows { 1.0 - lr * op.l2 } else { 1.0 });
            }
        }
        let keep = host_tensor(&keep, (rows, cols), self.dtype, &self.device)?;
        let step = host_tensor(&step, (rows, cols), self.dtype, &self.device)?;
        Ok(Update { op, generic: Some((keep, step)) })
    }
}

/// One kind of parameter update: the fused in-place kernel on the CPU, or `w·keep − g·step`.
struct Update {
    op: SgdStep,
    generic: Option<(Tensor, Tensor)>,
}

impl Update {
    fn apply(&self, w: Tensor, g: &Tensor) -> Result<Tensor, DataError> {
        match &self.generic {
            None => {
                w.inplace_op2(&g.contiguous()?, &self.op)?;
                Ok(w)
            }
            Some((keep, step)) => {
                let shape = w.shape().clone();
                let (rows, cols) = keep.dims2()?;
                let (w2, g2) = (w.reshape((rows, cols))?, g.reshape((rows, cols))?);
                Ok((w2.mul(keep)? - g2.mul(step)?)?.reshape(shape)?)
            }
        }
    }
}

fn check_config(config: &TrainConfig) -> Result<(), DataError> {
    let bad = |m: String| Err(DataError::Config(m));
    if let ModelKind::Mlp { hidden: 0 } = config.model {
        return bad("the MLP needs at least one hidden unit".into());
    }
    if config.steps == 0 {
        return bad(
            "training needs at least one gradient step: with 0 every subset's value is the initial model's".into()
        );
    }
    if let Some(lr) = config.lr {
        if !(lr.is_finite() && lr > 0.0) {
            return bad(format!("the learning rate must be a positive number, not {lr}"));
        }
    }
    if !(config.l2.is_finite() && config.l2 >= 0.0) {
        return bad(format!("the L2 penalty must be a non-negative number, not {}", config.l2));
    }
    Ok(())
}

/// `1 / (½·λ_max(ZᵀZ/n) + λ)` (see [`BatchTrainer::learning_rate`]).
fn auto_learning_rate(xa: &[f64], n: usize, d1: usize, init: &ModelParams, l2: f64) -> f64 {
    let mut curvature = top_eigenvalue(xa, n, d1);
    if let ModelParams::Mlp { dim, hidden, w1, .. } = init {
        let mut a = Vec::with_capacity(n * (hidden + 1));
        for row in xa.chunks_exact(d1) {
            a.extend(affine_row(&row[..*dim], w1, *hidden).into_iter().map(f64::tanh));
            a.push(1.0);
        }
        curvature = curvature.max(top_eigenvalue(&a, n, hidden + 1));
    }
    1.0 / (0.5 * curvature + l2)
}

/// Largest eigenvalue of `AᵀA / n` for a row-major `n × k` matrix, by power iteration.
fn top_eigenvalue(a: &[f64], n: usize, k: usize) -> f64 {
    let mut gram = vec![0.0; k * k];
    for row in a.chunks_exact(k) {
        for i in 0..k {
            for j in 0..k {
                gram[i * k + j] += row[i] * row[j] / n as f64;
            }
        }
    }
    let mut v = vec![1.0 / (k as f64).sqrt(); k];
    let mut lambda = 0.0;
    for _ in 0..200 {
        let w: Vec<f64> = (0..k).map(|i| (0..k).map(|j| gram[i * k + j] * v[j]).sum()).collect();
        let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm == 0.0 {
            return 0.0;
        }
        lambda = norm;
        v = w.into_iter().map(|x| x / norm).collect();
    }
    lambda
}

/// `b` copies of a row-major `rows × cols` matrix side by side: `rows × (b·cols)`.
fn side_by_side(m: &[f64], rows: usize, cols: usize, b: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(rows * cols * b);
    for r in 0..rows {
        for _ in 0..b {
            out.extend_from_slice(&m[r * cols..(r + 1) * cols]);
        }
    }
    out
}

/// A host matrix as a tensor of `dtype` on `device`.
pub(crate) fn host_tensor<S: Into<Shape>>(
    data: &[f64],
    shape: S,
    dtype: DType,
    device: &Device,
) -> Result<Tensor, candle_core::Error> {
    match dtype {
        DType::F32 => Tensor::from_vec(data.iter().map(|&v| v as f32).collect::<Vec<f32>>(), shape, device),
        _ => Tensor::from_vec(data.to_vec(), shape, device)?.to_dtype(dtype),
    }
}

/// Parameters of one block of models, on the device.
enum BlockParams {
    LogReg {
        /// `[d+1, B·C]`.
        w: Tensor,
    },
    Mlp {
        /// `[d+1, B·H]`.
        w1: Tensor,
        /// `[B, H, C]`.
        w2: Tensor,
        /// `[B, 1, C]`.
        b2: Tensor,
        hidden: usize,
    },
}

struct Block {
    models: usize,
    params: BlockParams,
}

/// The models trained on a batch of masks, in mask order, still on the device.
pub struct Trained {
    blocks: Vec<Block>,
    dim: usize,
    classes: usize,
    dtype: DType,
    device: Device,
}

impl Trained {
    /// Number of models.
    pub fn len(&self) -> usize {
        self.blocks.iter().map(|b| b.models).sum()
    }

    /// Whether there are no models.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Logits of every model on `rows` standardised inputs (`x` row-major, `rows × dim`):
    /// `[model][row][class]`, flattened.
    pub fn logits(&self, x: &[f64], rows: usize) -> Result<Vec<f64>, DataError> {
        if x.len() != rows * self.dim {
            return Err(DataError::Config(format!("{} values are not {rows} rows of {} features", x.len(), self.dim)));
        }
        let mut xa = Vec::with_capacity(rows * (self.dim + 1));
        for r in x.chunks_exact(self.dim.max(1)) {
            xa.extend_from_slice(r);
            xa.push(1.0);
        }
        let xa = host_tensor(&xa, (rows, self.dim + 1), self.dtype, &self.device)?;
        let c = self.classes;
        let mut out = Vec::with_capacity(self.len() * rows * c);
        for block in &self.blocks {
            let b = block.models;
            let z = match &block.params {
                BlockParams::LogReg { w } => xa.matmul(w)?.reshape((rows, b, c))?.transpose(0, 1)?,
                BlockParams::Mlp { w1, w2, b2, hidden } => {
                    let a = xa.matmul(w1)?.tanh()?.reshape((rows, b, *hidden))?.transpose(0, 1)?;
                    a.matmul(w2)?.broadcast_add(b2)?
                }
            };
            out.extend(z.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?);
        }
        Ok(out)
    }

    /// Every model's parameters, copied to the host.
    pub fn params(&self) -> Result<Vec<ModelParams>, DataError> {
        let (d1, c) = (self.dim + 1, self.classes);
        let host =
            |t: &Tensor| -> Result<Vec<f64>, DataError> { Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?) };
        let mut out = Vec::new();
        for block in &self.blocks {
            let b = block.models;
            match &block.params {
                BlockParams::LogReg { w } => {
                    let w = host(w)?;
                    for j in 0..b {
                        let mut mj = Vec::with_capacity(d1 * c);
                        for r in 0..d1 {
                            mj.extend_from_slice(&w[r * b * c + j * c..r * b * c + (j + 1) * c]);
                        }
                        out.push(ModelParams::LogReg { dim: self.dim, classes: c, w: mj });
                    }
                }
                BlockParams::Mlp { w1, w2, b2, hidden } => {
                    let h = *hidden;
                    let (w1, w2, b2) = (host(w1)?, host(w2)?, host(b2)?);
                    for j in 0..b {
                        let mut m1 = Vec::with_capacity(d1 * h);
                        for r in 0..d1 {
                            m1.extend_from_slice(&w1[r * b * h + j * h..r * b * h + (j + 1) * h]);
                        }
                        let mut m2 = w2[j * h * c..(j + 1) * h * c].to_vec();
                        m2.extend_from_slice(&b2[j * c..(j + 1) * c]);
                        out.push(ModelParams::Mlp { dim: self.dim, hidden: h, classes: c, w1: m1, w2: m2 });
                    }
                }
            }
        }
        Ok(out)
    }
}
