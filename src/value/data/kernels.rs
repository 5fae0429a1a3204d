//! Fused CPU kernels for one training step (candle custom ops). Each replaces several generic
//! tensor operations by one pass over memory, skips ablated examples, and runs on rayon's pool
//! when the work is large enough to pay for it. On other devices the trainer runs the same
//! arithmetic as generic tensor operations instead (see `train.rs`); tests compare the two.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, InplaceOp1, InplaceOp2, Layout, Shape};
use rayon::prelude::*;

/// Below this many numbers a kernel runs on the calling thread.
const PARALLEL_MIN: usize = 1 << 15;

/// Floats the kernels run on.
pub(crate) trait Real:
    Copy
    + Send
    + Sync
    + PartialEq
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    fn exp(self) -> Self;
    fn tanh(self) -> Self;
    fn max(self, other: Self) -> Self;
    fn from_f64(v: f64) -> Self;
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn exp(self) -> Self {
        fast_exp(self)
    }
    fn tanh(self) -> Self {
        // tanh|x| = (1 − e^{−2|x|}) / (1 + e^{−2|x|}), no overflow; absolute error ~1e-7.
        let e = fast_exp(-2.0 * self.abs());
        ((1.0 - e) / (1.0 + e)).copysign(self)
    }
    fn max(self, other: Self) -> Self {
        f32::max(self, other)
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
    fn max(self, other: Self) -> Self {
        f64::max(self, other)
    }
    fn from_f64(v: f64) -> Self {
        v
    }
}

/// `e^x` in `f32` without a library call, so that loops over it vectorise: `x = k·ln 2 + f`
/// with `k` an integer (Cody–Waite split of ln 2) and `|f| ≤ ½ ln 2`, `e^f` by its degree-7
/// Taylor polynomial (remainder below 5e-9), `2^k` put into the exponent bits. Relative error
/// within a few ulps of `f32`; inputs are clamped to `[−87, 88]` (results stay normal).
#[inline(always)]
pub(crate) fn fast_exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5·2^23: adding it rounds to an integer held in the low bits
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let k_bits = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32); // k as an integer
    let k = t - ROUND;
    let f = (x - k * LN2_HI) - k * LN2_LO;
    let p = 1.0
        + f * (1.0
            + f * (0.5
                + f * (1.0 / 6.0 + f * (1.0 / 24.0 + f * (1.0 / 120.0 + f * (1.0 / 720.0 + f * (1.0 / 5040.0)))))));
    p * f32::from_bits(((k_bits + 127) << 23) as u32)
}

fn contiguous<'a, T>(data: &'a [T], layout: &Layout) -> candle_core::Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("the fused kernels need contiguous inputs"),
    }
}

fn contiguous_mut<'a, T>(data: &'a mut [T], layout: &Layout) -> candle_core::Result<&'a mut [T]> {
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&mut data[a..b]),
        None => candle_core::bail!("the fused kernels need contiguous inputs"),
    }
}

/// Runs `f(index, chunk)` over `chunk`-sized pieces of `out`, in parallel when `out` is large.
fn for_chunks<T: Send>(out: &mut [T], chunk: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    let chunk = chunk.max(1);
    if out.len() >= PARALLEL_MIN {
        out.par_chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
    } else {
        out.chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
    }
}

/// `R = w ⊙ (softmax(Z + bias) − onehot(y))` over the last axis of logits `Z: [P, Q, C]`, with
/// example weights `w: [P, Q]`, the examples along `axis` (0 or 1) and an optional bias
/// `[P, C]` (as a third input). Only the entries listed in `kept` are computed (the rest are
/// zero): the masks are fixed for a whole training run, so the lists are made once.
pub(crate) struct SoftmaxResidual {
    /// Class of every example.
    pub labels: Arc<[u32]>,
    /// The axis of `Z` that runs over examples.
    pub axis: usize,
    /// For every index along the first axis, the indices along the second whose weight is not
    /// zero, ascending.
    pub kept: Arc<[Vec<u32>]>,
}

impl SoftmaxResidual {
    fn run<T: Real>(&self, z: &[T], w: &[T], bias: Option<&[T]>, p: usize, q: usize, c: usize) -> Vec<T> {
        let mut out = vec![T::ZERO; p * q * c];
        for_chunks(&mut out, q * c, |i, out| {
            let (z, w) = (&z[i * q * c..(i + 1) * q * c], &w[i * q..(i + 1) * q]);
            let bias = bias.map(|b| &b[i * c..(i + 1) * c]);
            // Shifted logits of the kept examples, packed, then one exp loop over all of them
            // (branch-free, so it vectorises), then normalise and scatter.
            let kept = &self.kept[i];
            let mut e = Vec::with_capacity(kept.len() * c);
            for &j in kept {
                let j = j as usize;
                let z = &z[j * c..(j + 1) * c];
                let start = e.len();
                match bias {
                    Some(b) => e.extend(z.iter().zip(b).map(|(&z, &b)| z + b)),
                    None => e.extend_from_slice(z),
                }
                let row = &mut e[start..];
                let max = row.iter().fold(row[0], |m, &v| m.max(v));
                row.iter_mut().for_each(|v| *v = *v - max);
            }
            e.iter_mut().for_each(|v| *v = v.exp());
            for (&j, e) in kept.iter().zip(e.chunks_exact(c)) {
                let j = j as usize;
                let label = self.labels[if self.axis == 0 { i } else { j }] as usize;
                let sum = e.iter().fold(T::ZERO, |s, &v| s + v);
                let scale = w[j] / sum;
                let out = &mut out[j * c..(j + 1) * c];
                out.iter_mut().zip(e).for_each(|(o, &v)| *o = v * scale);
                out[label] = out[label] - w[j];
            }
        });
        out
    }

    fn dispatch(
        &self,
        z: (&CpuStorage, &Layout),
        w: (&CpuStorage, &Layout),
        bias: Option<(&CpuStorage, &Layout)>,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (p, q, c) = z.1.shape().dims3()?;
        if w.1.shape().dims() != [p, q] || self.kept.len() != p {
            candle_core::bail!("softmax residual: weights {:?} for logits {:?}", w.1.shape(), z.1.shape());
        }
        if let Some((_, l)) = bias {
            if l.shape().elem_count() != p * c {
                candle_core::bail!("softmax residual: bias {:?} for logits {:?}", l.shape(), z.1.shape());
            }
        }
        const MIXED: &str = "softmax residual: f32 or f64 inputs of one type";
        let out = match (z.0, w.0) {
            (CpuStorage::F32(zs), CpuStorage::F32(ws)) => {
                let bs = match bias {
                    None => None,
                    Some((CpuStorage::F32(bs), l)) => Some(contiguous(bs, l)?),
                    Some(_) => candle_core::bail!("{MIXED}"),
                };
                CpuStorage::F32(self.run(contiguous(zs, z.1)?, contiguous(ws, w.1)?, bs, p, q, c))
            }
            (CpuStorage::F64(zs), CpuStorage::F64(ws)) => {
                let bs = match bias {
                    None => None,
                    Some((CpuStorage::F64(bs), l)) => Some(contiguous(bs, l)?),
                    Some(_) => candle_core::bail!("{MIXED}"),
                };
                CpuStorage::F64(self.run(contiguous(zs, z.1)?, contiguous(ws, w.1)?, bs, p, q, c))
            }
            _ => candle_core::bail!("{MIXED}"),
        };
        Ok((out, z.1.shape().clone()))
    }
}

impl CustomOp2 for SoftmaxResidual {
    fn name(&self) -> &'static str {
        "spex-softmax-residual"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.dispatch((s1, l1), (s2, l2), None)
    }
}

impl CustomOp3 for SoftmaxResidual {
    fn name(&self) -> &'static str {
        "spex-softmax-residual-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.dispatch((s1, l1), (s2, l2), Some((s3, l3)))
    }
}

/// `a ← tanh(a)` in place.
pub(crate) struct TanhInPlace;

impl InplaceOp1 for TanhInPlace {
    fn name(&self) -> &'static str {
        "spex-tanh"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        fn run<T: Real>(a: &mut [T]) {
            for_chunks(a, 1 << 13, |_, a| a.iter_mut().for_each(|v| *v = v.tanh()));
        }
        match storage {
            CpuStorage::F32(a) => run(contiguous_mut(a, layout)?),
            CpuStorage::F64(a) => run(contiguous_mut(a, layout)?),
            _ => candle_core::bail!("tanh: f32 or f64 input"),
        }
        Ok(())
    }
}

/// `dP[i, b, :] = dA[b, i, :] ⊙ (1 − A[i, b, :]²)` for hidden activations `A: [n, B, H]` and
/// their gradient `dA: [B, n, H]` (the output layer's layout): tanh's derivative, transposing on
/// the way so that the input layer's gradient is one GEMM.
pub(crate) struct TanhBackward;

impl TanhBackward {
    fn run<T: Real>(a: &[T], da: &[T], n: usize, b: usize, h: usize) -> Vec<T> {
        let mut out = vec![T::ZERO; n * b * h];
        for_chunks(&mut out, b * h, |i, out| {
            for j in 0..b {
                let a = &a[(i * b + j) * h..(i * b + j + 1) * h];
                let da = &da[(j * n + i) * h..(j * n + i + 1) * h];
                for ((o, &a), &d) in out[j * h..(j + 1) * h].iter_mut().zip(a).zip(da) {
                    *o = d * (T::ONE - a * a);
                }
            }
        });
        out
    }
}

impl CustomOp2 for TanhBackward {
    fn name(&self) -> &'static str {
        "spex-tanh-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, b, h) = l1.shape().dims3()?;
        if l2.shape().dims() != [b, n, h] {
            candle_core::bail!("tanh backward: activations {:?} and gradient {:?}", l1.shape(), l2.shape());
        }
        let out = match (s1, s2) {
            (CpuStorage::F32(a), CpuStorage::F32(d)) => {
                CpuStorage::F32(Self::run(contiguous(a, l1)?, contiguous(d, l2)?, n, b, h))
            }
            (CpuStorage::F64(a), CpuStorage::F64(d)) => {
                CpuStorage::F64(Self::run(contiguous(a, l1)?, contiguous(d, l2)?, n, b, h))
            }
            _ => candle_core::bail!("tanh backward: f32 or f64 inputs of one type"),
        };
        Ok((out, l1.shape().clone()))
    }
}

/// One gradient step in place on a parameter matrix viewed as `[rows, cols]`:
/// `w ← w·(1 − lr·λ) − lr·g` on rows before `decay_rows`, `w ← w − lr·g` on the others, with a
/// step size per column (`per_row = false`) or per row (`per_row = true`).
pub(crate) struct SgdStep {
    /// Step sizes, one per column or per row.
    pub lr: Arc<[f64]>,
    /// Whether `lr` is indexed by row.
    pub per_row: bool,
    /// Columns of the view.
    pub cols: usize,
    /// Rows that are decayed (weights); the rest (biases) are not.
    pub decay_rows: usize,
    /// The L2 penalty `λ`.
    pub l2: f64,
}

impl SgdStep {
    fn run<T: Real>(&self, w: &mut [T], g: &[T]) {
        let cols = self.cols;
        for_chunks(w, cols, |r, w| {
            let g = &g[r * cols..(r + 1) * cols];
            let decay = r < self.decay_rows;
            for (k, (w, &g)) in w.iter_mut().zip(g).enumerate() {
                let lr = self.lr[if self.per_row { r } else { k }];
                let keep = if decay { 1.0 - lr * self.l2 } else { 1.0 };
                *w = *w * T::from_f64(keep) - T::from_f64(lr) * g;
            }
        });
    }
}

impl InplaceOp2 for SgdStep {
    fn name(&self) -> &'static str {
        "spex-sgd-step"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<()> {
        if l1.shape().elem_count() != l2.shape().elem_count() || l1.shape().elem_count() % self.cols.max(1) != 0 {
            candle_core::bail!("sgd step: parameters {:?} and gradient {:?}", l1.shape(), l2.shape());
        }
        match (s1, s2) {
            (CpuStorage::F32(w), CpuStorage::F32(g)) => self.run(contiguous_mut(w, l1)?, contiguous(g, l2)?),
            (CpuStorage::F64(w), CpuStorage::F64(g)) => self.run(contiguous_mut(w, l1)?, contiguous(g, l2)?),
            _ => candle_core::bail!("sgd step: f32 or f64 inputs of one type"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_and_tanh_are_accurate() {
        let mut worst_exp: f64 = 0.0;
        let mut worst_tanh: f64 = 0.0;
        for i in -80_000..=80_000 {
            let x = i as f32 / 1000.0;
            let want = (x as f64).exp();
            worst_exp = worst_exp.max(((fast_exp(x) as f64) - want).abs() / want);
            worst_tanh = worst_tanh.max(((Real::tanh(x) as f64) - (x as f64).tanh()).abs());
        }
        assert!(worst_exp < 4e-7, "exp relative error {worst_exp}");
        assert!(worst_tanh < 2e-7, "tanh absolute error {worst_tanh}");
        assert_eq!(fast_exp(-1000.0), fast_exp(-87.0));
        assert!(fast_exp(-87.0) > 0.0 && fast_exp(1000.0).is_finite());
    }
}
