//! The masking hooks and the shared building blocks of every model family.
//!
//! These are the functions a later CUDA path is tested against, so each does one thing and can be
//! called on its own:
//!
//! * [`attention_bias`]: the **only** place that turns per-row key visibility into an additive
//!   attention bias `[B, 1, L, L]`.
//! * [`attention`]: scaled dot-product attention with that bias and grouped-query heads, returning
//!   the per-head outputs `[B, L, H, D]` (before the output projection).
//! * [`gate_heads_in_place`]: per-row head gates on `[B, L, H, D]` (zero or mean ablation).
//! * [`score_targets`]: fused teacher-forced scoring: the log-probability of chosen next tokens at
//!   chosen positions, computing LM-head logits only for those positions.
//!
//! On the reference path all tensors are `f32` on the CPU; the hooks are device- and
//! dtype-generic (the GPU path runs them in bf16), and scoring is done in `f32` regardless.

#[cfg(feature = "candle-cuda")]
use candle_core::CudaStorage;
use candle_core::{CpuStorage, DType, Device, InplaceOp2, InplaceOp3, Layout, Tensor, WithDType, D};

use super::{Ids, ModelError};

/// Builds the additive attention bias `[B, 1, L, L]` in f32 on `device` (0 = may attend, −∞ =
/// may not).
///
/// Query `i` of row `b` may attend key `j` when `key_visible[b * len + j]` holds (or `j == i`: a
/// query always sees itself, so no softmax row is empty) and, if `causal`, when `j <= i`.
/// `key_visible = None` means every key is visible. Only the `B × L` flags go to `device`: the
/// bias is made there by tensor ops, so a batch on a GPU uploads no `L × L` rows.
pub fn attention_bias(
    batch: usize,
    len: usize,
    key_visible: Option<&[bool]>,
    causal: bool,
    device: &Device,
) -> Result<Tensor, ModelError> {
    if let Some(v) = key_visible {
        if v.len() != batch * len {
            return Err(ModelError::Input(format!(
                "key visibility has {} entries, expected batch {batch} x length {len}",
                v.len()
            )));
        }
    }
    let shape = (batch, 1, len, len);
    let pos = Tensor::arange(0u32, len as u32, device)?;
    let (query, key) = (pos.reshape((len, 1))?, pos.reshape((1, len))?);
    let flags = match key_visible {
        Some(v) => v.iter().map(|&x| f32::from(u8::from(x))).collect(),
        None => vec![1f32; batch * len],
    };
    let mut seen = Tensor::from_vec(flags, (batch, 1, 1, len), device)?.broadcast_as(shape)?;
    if causal {
        seen = seen.broadcast_mul(&query.broadcast_ge(&key)?.to_dtype(DType::F32)?)?;
    }
    let seen = seen.broadcast_maximum(&query.broadcast_eq(&key)?.to_dtype(DType::F32)?)?;
    let (open, closed) = (Tensor::zeros(shape, DType::F32, device)?, Tensor::full(f32::NEG_INFINITY, shape, device)?);
    Ok(seen.ge(0.5)?.where_cond(&open, &closed)?)
}

/// Scaled dot-product attention.
///
/// `q`: `[B, H, L, D]`; `k`, `v`: `[B, Hkv, Lk, D]` with `H` a multiple of `Hkv` (grouped-query
/// attention: query head `h` reads key/value head `h / (H / Hkv)`) and `Lk = L`, or `P + L` with
/// a prefix's keys first; `bias`: `[B, 1, L, Lk]` from [`attention_bias`] (behind a prefix, with
/// its columns in front). Returns the per-head outputs `[B, L, H, D]`, contiguous.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, bias: &Tensor) -> Result<Tensor, ModelError> {
    let (b, h, _, d) = q.dims4()?;
    let (hkv, lk) = (k.dim(1)?, k.dim(2)?);
    let (k, v) = if hkv != h {
        let rep = h / hkv;
        let expand = |t: &Tensor| -> candle_core::Result<Tensor> {
            t.unsqueeze(2)?.expand((b, hkv, rep, lk, d))?.reshape((b, h, lk, d))
        };
        (expand(k)?, expand(v)?)
    } else {
        (k.clone(), v.clone())
    };
    let scale = 1.0 / (d as f64).sqrt();
    let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(bias)?;
    let probs = candle_nn::ops::softmax_last_dim(&scores)?;
    Ok(probs.matmul(&v.contiguous()?)?.transpose(1, 2)?.contiguous()?)
}

/// Per-row, per-layer head gates: the attention-head ablation hook.
///
/// `gates[layer]` is `None` when no head of that layer is touched in any row, else a `[B, H]`
/// tensor of 1 (kept) / 0 (ablated). `fill[layer]`, when present, is the `[H, D]` value an ablated
/// head takes (mean ablation); without it an ablated head outputs zero.
#[derive(Clone, Debug)]
pub struct HeadGates {
    /// Per layer: `None` (all heads kept in every row) or `[B, H]` gates.
    pub gates: Vec<Option<Tensor>>,
    /// Per layer `[H, D]` replacement values (mean ablation), or `None` for zero ablation.
    pub fill: Option<Vec<Tensor>>,
}

/// Applies one layer's head gates **in place** to the per-head attention outputs
/// `attn: [B, L, H, D]` (contiguous): `attn = g * attn + (1 - g) * fill` with `g: [B, H]` (`f32`)
/// broadcast over positions and `fill: [H, D]` in `attn`'s dtype (zero when `None`).
///
/// Computed in `f32` and rounded once to the storage type, so gates of exactly 1 or 0 give
/// exactly `attn` or `fill` in every dtype; kept heads are not written. On a CUDA tensor this is
/// the `head_gates_*` kernel of `kernels/head_gates.cu` (feature `candle-cuda`); on the CPU its
/// twin, [`gate_heads_slice`].
pub fn gate_heads_in_place(attn: &Tensor, gate: &Tensor, fill: Option<&Tensor>) -> Result<(), ModelError> {
    let (b, l, h, d) = attn.dims4()?;
    let shape_err = |what: &str, got: &[usize], want: &[usize]| {
        ModelError::Input(format!("head gating: {what} has shape {got:?}, expected {want:?}"))
    };
    if gate.dims() != [b, h] || gate.dtype() != DType::F32 {
        return Err(shape_err("the f32 gate", gate.dims(), &[b, h]));
    }
    if !attn.is_contiguous() {
        return Err(ModelError::Input("head gating writes in place: the attention output must be contiguous".into()));
    }
    let op = HeadGateOp { dims: [b, l, h, d] };
    match fill {
        None => attn.inplace_op2(gate, &op)?,
        Some(f) if f.dims() == [h, d] && f.dtype() == attn.dtype() => attn.inplace_op3(gate, f, &op)?,
        Some(f) => return Err(shape_err("the fill (in the attention dtype)", f.dims(), &[h, d])),
    }
    Ok(())
}

/// The CPU twin of `kernels/head_gates.cu` on flat slices: `x: [B, L, H, D]`, `gate: [B, H]`,
/// `fill: [H, D]` (zero when `None`); `dims = [B, L, H, D]`.
pub fn gate_heads_slice<T: WithDType>(x: &mut [T], gate: &[f32], fill: Option<&[T]>, dims: [usize; 4]) {
    let [_, l, h, d] = dims;
    for (row, heads) in x.chunks_mut(h * d).enumerate() {
        let b = row / l;
        for (head, out) in heads.chunks_mut(d).enumerate() {
            let g = gate[b * h + head];
            if g == 1.0 {
                continue;
            }
            for (k, v) in out.iter_mut().enumerate() {
                let f = fill.map_or(0.0, |f| f[head * d + k].to_f64() as f32);
                *v = T::from_f64(f64::from(g * (v.to_f64() as f32) + (1.0 - g) * f));
            }
        }
    }
}

/// The in-place head-gating op on candle storage: `(attn, gate)` for zero ablation,
/// `(attn, gate, fill)` for mean ablation.
struct HeadGateOp {
    dims: [usize; 4],
}

/// The contiguous elements a layout covers (an error for a strided operand).
pub(crate) fn contiguous_range(l: &Layout) -> candle_core::Result<std::ops::Range<usize>> {
    l.contiguous_offsets()
        .map(|(a, b)| a..b)
        .ok_or_else(|| candle_core::Error::Msg("head gating: operand not contiguous".into()))
}

impl HeadGateOp {
    fn cpu(
        &self,
        x: &mut CpuStorage,
        lx: &Layout,
        g: &CpuStorage,
        lg: &Layout,
        fill: Option<(&CpuStorage, &Layout)>,
    ) -> candle_core::Result<()> {
        let (rx, rg) = (contiguous_range(lx)?, contiguous_range(lg)?);
        let CpuStorage::F32(g) = g else { candle_core::bail!("head gating: gates must be f32") };
        let g = &g[rg];
        macro_rules! run {
            ($v:ident, $x:expr) => {{
                let f = match fill {
                    Some((CpuStorage::$v(f), lf)) => Some(&f[contiguous_range(lf)?]),
                    Some(_) => candle_core::bail!("head gating: fill dtype differs from the attention output"),
                    None => None,
                };
                gate_heads_slice(&mut $x[rx], g, f, self.dims);
            }};
        }
        match x {
            CpuStorage::F32(x) => run!(F32, x),
            CpuStorage::BF16(x) => run!(BF16, x),
            CpuStorage::F16(x) => run!(F16, x),
            _ => candle_core::bail!("head gating: attention output must be f32, bf16 or f16"),
        }
        Ok(())
    }
}

impl InplaceOp2 for HeadGateOp {
    fn name(&self) -> &'static str {
        "head-gates"
    }

    fn cpu_fwd(&self, x: &mut CpuStorage, lx: &Layout, g: &CpuStorage, lg: &Layout) -> candle_core::Result<()> {
        self.cpu(x, lx, g, lg, None)
    }

    #[cfg(feature = "candle-cuda")]
    fn cuda_fwd(&self, x: &mut CudaStorage, lx: &Layout, g: &CudaStorage, lg: &Layout) -> candle_core::Result<()> {
        crate::cuda::candle_ops::gate_heads(x, lx, g, lg, None, self.dims)
    }
}

impl InplaceOp3 for HeadGateOp {
    fn name(&self) -> &'static str {
        "head-gates-fill"
    }

    fn cpu_fwd(
        &self,
        x: &mut CpuStorage,
        lx: &Layout,
        g: &CpuStorage,
        lg: &Layout,
        f: &CpuStorage,
        lf: &Layout,
    ) -> candle_core::Result<()> {
        self.cpu(x, lx, g, lg, Some((f, lf)))
    }

    #[cfg(feature = "candle-cuda")]
    fn cuda_fwd(
        &self,
        x: &mut CudaStorage,
        lx: &Layout,
        g: &CudaStorage,
        lg: &Layout,
        f: &CudaStorage,
        lf: &Layout,
    ) -> candle_core::Result<()> {
        crate::cuda::candle_ops::gate_heads(x, lx, g, lg, Some((f, lf)), self.dims)
    }
}

/// Fused teacher-forced scoring: for each `(row, position, token)` returns
/// `log softmax(lm_head · hidden[row, position])[token]`.
///
/// `hidden`: `[B, L, E]` (after the final norm); `lm_head`: `[V, E]`. Only the picked positions go
/// through the LM head, so the cost is `picks × V × E`, not `B × L × V × E`; picks are scored
/// [`SCORE_CHUNK`] at a time so the `[picks, V]` logits never all exist at once.
pub fn score_targets(hidden: &Tensor, lm_head: &Tensor, picks: &[(usize, usize, u32)]) -> Result<Vec<f32>, ModelError> {
    let vocab = lm_head.dim(0)?;
    if let Some(&(_, _, tok)) = picks.iter().find(|p| p.2 as usize >= vocab) {
        return Err(ModelError::Input(format!("target token id {tok} outside the vocabulary of {vocab}")));
    }
    let mut out = Vec::with_capacity(picks.len());
    for chunk in picks.chunks(SCORE_CHUNK) {
        let at: Vec<(usize, usize)> = chunk.iter().map(|&(r, p, _)| (r, p)).collect();
        // Log-softmax in f32 whatever the model's dtype (bf16 logits would lose the small
        // differences the explanation is made of).
        let logits = logits_at(hidden, lm_head, &at)?; // [N, V]
        let lse = log_sum_exp_rows(&logits)?;
        let idx = Tensor::from_vec(chunk.iter().map(|p| p.2).collect::<Vec<u32>>(), (chunk.len(), 1), hidden.device())?;
        let picked = logits.gather(&idx, 1)?.squeeze(1)?.to_vec1::<f32>()?;
        out.extend(picked.iter().zip(lse).map(|(x, l)| x - l));
    }
    Ok(out)
}

/// Picks scored per LM-head product in [`score_targets`] (bounds its `[picks, V]` logits).
pub const SCORE_CHUNK: usize = 512;

/// LM-head logits `[N, V]` in `f32` (whatever the model's dtype) at the given `(row, position)`
/// pairs of `hidden: [B, L, E]`.
pub fn logits_at(hidden: &Tensor, lm_head: &Tensor, at: &[(usize, usize)]) -> Result<Tensor, ModelError> {
    let (b, l, e) = hidden.dims3()?;
    let mut idx = Vec::with_capacity(at.len());
    for &(r, p) in at {
        if r >= b || p >= l {
            return Err(ModelError::Input(format!("scoring position ({r}, {p}) outside a batch of {b} x {l}")));
        }
        idx.push((r * l + p) as u32);
    }
    let idx = Tensor::from_vec(idx, at.len(), hidden.device())?;
    let rows = hidden.reshape((b * l, e))?.index_select(&idx, 0)?;
    Ok(rows.matmul(&lm_head.t()?)?.to_dtype(DType::F32)?)
}

/// Row-wise log-sum-exp of a `[N, V]` matrix (max-shifted, `f32`).
fn log_sum_exp_rows(logits: &Tensor) -> Result<Vec<f32>, ModelError> {
    let max = logits.max_keepdim(D::Minus1)?;
    let sum = logits.broadcast_sub(&max)?.exp()?.sum_keepdim(D::Minus1)?;
    let out = (sum.log()? + max)?.squeeze(1)?;
    Ok(out.to_dtype(DType::F32)?.to_vec1::<f32>()?)
}

/// `x · wᵀ (+ b)` for `x: [N, in]`, `w: [out, in]`.
pub(crate) fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> candle_core::Result<Tensor> {
    let y = x.matmul(&w.t()?)?;
    match b {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// Rotary position embedding on `x: [B, H, L, D]` at positions `cos`, `sin` (from
/// [`rope_cos_sin`]: `[B, L, D/2]` per row, or `[L, D/2]` shared by every row). `interleaved`
/// pairs dimensions (2i, 2i+1) (GGUF Llama weights, whose Q/K rows llama.cpp permuted); otherwise
/// (i, i + D/2) (Hugging Face weights).
pub fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor, interleaved: bool) -> Result<Tensor, ModelError> {
    let x = x.contiguous()?;
    Ok(if interleaved {
        candle_nn::rotary_emb::rope_i(&x, cos, sin)?
    } else {
        candle_nn::rotary_emb::rope(&x, cos, sin)?
    })
}

/// `cos` and `sin` tables (`f32`, on `device`) for the positions of a batch (`batch · len` of
/// them, row-major, on the host or already on a device) and the inverse frequencies (`D/2` of
/// them), computed on `device` from the positions (not built on the host and copied up):
/// `[L, D/2]` when every row of host positions is the same (the full-length form, and any
/// unpadded batch: one row's tables instead of `B` copies), else `[B, L, D/2]`.
pub fn rope_cos_sin(
    positions: &Ids,
    batch: usize,
    len: usize,
    inv_freq: &[f32],
    device: &Device,
) -> Result<(Tensor, Tensor), ModelError> {
    let shared = match positions {
        Ids::Host(p) => len > 0 && p.chunks(len).all(|row| row == &p[..len]),
        Ids::Device(_) => false,
    };
    let (pos, shape): (Tensor, &[usize]) = match positions {
        Ids::Host(p) if shared => (Tensor::from_slice(&p[..len], len, device)?, &[len, inv_freq.len()]),
        _ => (positions.to_tensor(device)?, &[batch, len, inv_freq.len()]),
    };
    let inv = Tensor::from_slice(inv_freq, (1, inv_freq.len()), device)?;
    let angle = pos.to_dtype(DType::F32)?.unsqueeze(1)?.broadcast_mul(&inv)?;
    Ok((angle.cos()?.reshape(shape)?, angle.sin()?.reshape(shape)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bias_hides_invisible_keys_but_not_self() {
        let vis = [true, false, true];
        let b = attention_bias(1, 3, Some(&vis), true, &Device::Cpu).unwrap();
        let v: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
        let ninf = f32::NEG_INFINITY;
        assert_eq!(v, vec![0.0, ninf, ninf, 0.0, 0.0, ninf, 0.0, ninf, 0.0]);
        let b = attention_bias(1, 2, None, false, &Device::Cpu).unwrap();
        assert_eq!(b.flatten_all().unwrap().to_vec1::<f32>().unwrap(), vec![0.0; 4]);
        assert!(attention_bias(2, 3, Some(&vis), true, &Device::Cpu).is_err());
    }

    /// Random visibility, causal and not, against the definition written out element by element.
    #[test]
    fn bias_matches_its_definition() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (b, l) = (3, 7);
        let vis: Vec<bool> = (0..b * l).map(|_| rng.random_bool(0.5)).collect();
        for causal in [false, true] {
            let got: Vec<f32> = attention_bias(b, l, Some(&vis), causal, &Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            for (at, x) in got.iter().enumerate() {
                let (r, i, j) = (at / (l * l), at / l % l, at % l);
                let seen = j == i || (!(causal && j > i) && vis[r * l + j]);
                assert_eq!(*x, if seen { 0.0 } else { f32::NEG_INFINITY }, "causal {causal} row {r} ({i}, {j})");
            }
        }
    }

    /// `gate_heads_in_place` on a copy of `attn`, flattened.
    fn gated(attn: &Tensor, gate: &Tensor, fill: Option<&Tensor>) -> Vec<f32> {
        let x = attn.copy().unwrap();
        gate_heads_in_place(&x, gate, fill).unwrap();
        x.flatten_all().unwrap().to_dtype(DType::F32).unwrap().to_vec1().unwrap()
    }

    #[test]
    fn head_gates_zero_and_fill() {
        let dev = Device::Cpu;
        let attn = Tensor::arange(0f32, 16.0, &dev).unwrap().reshape((2, 1, 2, 4)).unwrap();
        let gate = Tensor::new(&[[1f32, 0.0], [0.0, 1.0]], &dev).unwrap();
        assert_eq!(gated(&attn, &gate, None), vec![0., 1., 2., 3., 0., 0., 0., 0., 0., 0., 0., 0., 12., 13., 14., 15.]);
        let fill = Tensor::new(&[[9f32; 4], [7f32; 4]], &dev).unwrap();
        let f = gated(&attn, &gate, Some(&fill));
        assert_eq!(f, vec![0., 1., 2., 3., 7., 7., 7., 7., 9., 9., 9., 9., 12., 13., 14., 15.]);
        // More than one position: the fill broadcasts over positions.
        let attn = Tensor::arange(0f32, 8.0, &dev).unwrap().reshape((1, 2, 2, 2)).unwrap();
        let gate = Tensor::new(&[[0f32, 1.0]], &dev).unwrap();
        let fill = Tensor::new(&[[9f32, 8.0], [7.0, 6.0]], &dev).unwrap();
        assert_eq!(gated(&attn, &gate, Some(&fill)), vec![9., 8., 2., 3., 9., 8., 6., 7.]);
    }

    #[test]
    fn head_gates_in_every_dtype_match_f32_and_take_gate_views() {
        let dev = Device::Cpu;
        let (b, l, h, d) = (3, 2, 4, 5);
        let attn = (Tensor::arange(0f32, (b * l * h * d) as f32, &dev).unwrap() * 0.37)
            .unwrap()
            .reshape((b, l, h, d))
            .unwrap();
        let fill = Tensor::arange(0f32, (h * d) as f32, &dev).unwrap().neg().unwrap().reshape((h, d)).unwrap();
        // The gates of layer 1 of a [layers, B, H] tensor: a view with an offset, as the GPU path
        // slices them; fractional gates exercise the f32 arithmetic.
        let all =
            Tensor::from_vec((0..2 * b * h).map(|i| [1.0f32, 0.0, 0.25][i % 3]).collect::<Vec<_>>(), (2, b, h), &dev)
                .unwrap();
        let gate = all.get(1).unwrap();
        let g: Vec<f32> = gate.flatten_all().unwrap().to_vec1().unwrap();
        for dt in [DType::F32, DType::BF16, DType::F16] {
            let round = |v: &Tensor| v.to_dtype(dt).unwrap();
            let got = gated(&round(&attn), &gate, Some(&round(&fill)));
            // Reference: each element from its (rounded) inputs in f64, rounded once to dt.
            let xr: Vec<f32> = round(&attn).flatten_all().unwrap().to_dtype(DType::F32).unwrap().to_vec1().unwrap();
            let fr: Vec<f32> = round(&fill).flatten_all().unwrap().to_dtype(DType::F32).unwrap().to_vec1().unwrap();
            for (i, &v) in got.iter().enumerate() {
                let (bb, hh, k) = (i / (l * h * d), (i / d) % h, i % d);
                let gv = g[bb * h + hh];
                let want = f64::from(gv) * f64::from(xr[i]) + (1.0 - f64::from(gv)) * f64::from(fr[hh * d + k]);
                let want = Tensor::new(&[want as f32], &dev)
                    .unwrap()
                    .to_dtype(dt)
                    .unwrap()
                    .to_dtype(DType::F32)
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()[0];
                assert_eq!(v, want, "{dt:?} element {i}");
                if gv == 1.0 {
                    assert_eq!(v, xr[i], "a kept head is untouched");
                }
            }
        }
        // Wrong shapes, a non-contiguous output and a fill of another dtype are errors.
        assert!(gate_heads_in_place(&attn, &gate.t().unwrap(), None).is_err());
        assert!(gate_heads_in_place(&attn.transpose(1, 2).unwrap(), &gate, None).is_err());
        assert!(gate_heads_in_place(&attn, &gate, Some(&fill.to_dtype(DType::BF16).unwrap())).is_err());
    }

    #[test]
    fn score_targets_matches_log_softmax() {
        let dev = Device::Cpu;
        let hidden = Tensor::new(&[[[1f32, 0.0], [0.5, -1.0]]], &dev).unwrap();
        let head = Tensor::new(&[[1f32, 0.0], [0.0, 1.0], [1.0, 1.0]], &dev).unwrap();
        let got = score_targets(&hidden, &head, &[(0, 1, 2), (0, 0, 0)]).unwrap();
        let lp = |l: [f64; 3], t: usize| l[t] - l.iter().map(|x| x.exp()).sum::<f64>().ln();
        assert!((got[0] as f64 - lp([0.5, -1.0, -0.5], 2)).abs() < 1e-6);
        assert!((got[1] as f64 - lp([1.0, 0.0, 1.0], 0)).abs() < 1e-6);
        assert!(score_targets(&hidden, &head, &[(0, 0, 3)]).is_err());
        assert!(score_targets(&hidden, &head, &[(1, 0, 0)]).is_err());
    }
}
