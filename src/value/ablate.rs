//! From masks to model inputs: the one place where a batch of masks becomes per-row token ids,
//! position ids, key visibility (→ [`crate::model::ops::attention_bias`]) and head gates.
//!
//! Mask layout: bits `0..n_token_players` are the token players, the next `heads.len()` bits the
//! head players (tokens and heads are players of one game). Bit 1 = kept, 0 = ablated.
//!
//! Per row, each base position (prompt tokens, then the always-kept target tokens) is either
//! *included* in the row's sequence or not:
//!
//! * [`TokenMode::Attention`]: a masked token is hidden, as a key, from every other query;
//!   positions keep their original ids. Since nothing reads a hidden token's output, the row
//!   includes only kept tokens and the positions whose outputs are read (`read`, e.g. the last
//!   prompt token that predicts the target); this is exactly the full-length masked-attention
//!   forward, at a fraction of the cost.
//! * [`TokenMode::Replace`]: every position is included; masked ids are substituted.
//! * [`TokenMode::Remove`]: masked tokens are deleted and positions re-numbered from 0.
//!
//! Rows are right-padded to a common length with invisible keys.

use candle_core::Tensor;

use super::players::{HeadPlayer, TokenMode};
use crate::mask::MaskSlice;
use crate::model::{cpu, ops, HeadGates, ModelError, ModelInput};

/// Everything needed to turn masks into model inputs for one explained input.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Base token ids: the prompt, then any appended (always kept) target tokens.
    pub ids: Vec<u32>,
    /// Per base position, the token player owning it (`None` = fixed).
    pub owners: Vec<Option<usize>>,
    /// Per base position, whether its output is read (kept in the sequence even when masked in
    /// attention mode).
    pub read: Vec<bool>,
    /// Number of token players (mask bits `0..n_token_players`).
    pub n_token_players: usize,
    /// Head players (mask bits after the token players).
    pub heads: Vec<HeadPlayer>,
    /// How masked tokens are removed.
    pub mode: TokenMode,
    /// Per layer `[H, D]` values for mean ablation of heads; `None` = zero ablation.
    pub head_fill: Option<Vec<Tensor>>,
    /// Causal attention (decoders).
    pub causal: bool,
    /// Model layers.
    pub num_layers: usize,
    /// Query heads per layer.
    pub num_heads: usize,
    /// Token id used for padding rows (never visible).
    pub pad_id: u32,
}

/// A batch of ablated inputs and how its rows map back to base positions.
#[derive(Clone, Debug)]
pub struct AblatedBatch {
    /// The model input.
    pub input: ModelInput,
    /// Per row, the base positions included, in order (row position `i` holds base position
    /// `included[row][i]`).
    pub included: Vec<Vec<usize>>,
    /// `[B × L]`: whether the row position holds a token the other positions can see (kept or,
    /// in replace mode, substituted; not hidden, not padding): the positions an encoder pools
    /// over, exactly the keys of the row's attention.
    pub present: Vec<bool>,
}

impl AblatedBatch {
    /// The row position whose output predicts base position `q` (the last included position
    /// before `q`), or `None` when nothing precedes it in that row.
    pub fn predictor(&self, row: usize, q: usize) -> Option<usize> {
        self.included[row].partition_point(|&p| p < q).checked_sub(1)
    }
}

impl Layout {
    /// Total players: token players then head players.
    pub fn n_players(&self) -> usize {
        self.n_token_players + self.heads.len()
    }

    /// Builds the model input for a batch of masks.
    pub fn build(&self, masks: MaskSlice<'_>) -> Result<AblatedBatch, ModelError> {
        if masks.n() != self.n_players() {
            return Err(ModelError::Input(format!(
                "masks have {} players, this game has {} ({} token + {} head players)",
                masks.n(),
                self.n_players(),
                self.n_token_players,
                self.heads.len()
            )));
        }
        if masks.is_empty() {
            return Err(ModelError::Input("empty batch of masks".into()));
        }
        let b = masks.len();
        let n = self.ids.len();
        let mut rows: Vec<(Vec<usize>, Vec<bool>)> = Vec::with_capacity(b); // (included, kept flags)
        let mut any_hidden = false;
        for m in masks.iter() {
            let kept: Vec<bool> = self.owners.iter().map(|o| o.is_none_or(|i| m.get(i))).collect();
            let included: Vec<usize> = match self.mode {
                TokenMode::Attention => (0..n).filter(|&p| kept[p] || self.read[p]).collect(),
                TokenMode::Replace(_) => (0..n).collect(),
                TokenMode::Remove => (0..n).filter(|&p| kept[p]).collect(),
            };
            if included.is_empty() {
                return Err(ModelError::Input(
                    "a mask removes every token of the input (add a fixed prefix)".into(),
                ));
            }
            any_hidden |= self.mode == TokenMode::Attention && included.iter().any(|&p| !kept[p]);
            rows.push((included, kept));
        }
        let len = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let padded = rows.iter().any(|r| r.0.len() != len);
        let mut tokens = vec![self.pad_id; b * len];
        let mut positions = vec![0u32; b * len];
        let mut visible = vec![false; b * len];
        for (r, (included, kept)) in rows.iter().enumerate() {
            for (i, &p) in included.iter().enumerate() {
                let at = r * len + i;
                tokens[at] = match self.mode {
                    TokenMode::Replace(id) if !kept[p] => id,
                    _ => self.ids[p],
                };
                positions[at] = match self.mode {
                    TokenMode::Remove => i as u32,
                    _ => p as u32,
                };
                visible[at] = match self.mode {
                    TokenMode::Attention => kept[p],
                    _ => true,
                };
            }
        }
        let attn_bias = if padded || any_hidden {
            Some(ops::attention_bias(b, len, Some(&visible), self.causal, cpu())?)
        } else {
            None
        };
        let head_gates = self.head_gates(masks)?;
        Ok(AblatedBatch {
            input: ModelInput {
                batch: b,
                len,
                tokens,
                positions,
                attn_bias,
                head_gates,
                capture_head_means: false,
            },
            included: rows.into_iter().map(|r| r.0).collect(),
            present: visible,
        })
    }

    /// Per-layer `[B, H]` gates from the head bits of the masks (`None` when there are no head
    /// players).
    fn head_gates(&self, masks: MaskSlice<'_>) -> Result<Option<HeadGates>, ModelError> {
        if self.heads.is_empty() {
            return Ok(None);
        }
        let (b, h) = (masks.len(), self.num_heads);
        let mut per_layer: Vec<Option<Vec<f32>>> = vec![None; self.num_layers];
        for (k, hp) in self.heads.iter().enumerate() {
            let bit = self.n_token_players + k;
            for (r, m) in masks.iter().enumerate() {
                if !m.get(bit) {
                    per_layer[hp.layer].get_or_insert_with(|| vec![1.0; b * h])[r * h + hp.head] = 0.0;
                }
            }
        }
        let gates = per_layer
            .into_iter()
            .map(|g| g.map(|g| Tensor::from_vec(g, (b, h), cpu())).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(HeadGates {
            gates,
            fill: self.head_fill.clone(),
        }))
    }
}
