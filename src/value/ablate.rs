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

use candle_core::{Device, Tensor};

use super::players::{HeadPlayer, TokenMode};
use crate::mask::{MaskRef, MaskSlice};
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

    /// Builds the model input for a batch of masks: ids and positions on the host, the bias and
    /// head gates on `device` (the model's: only `B × L` and `B × H` flags travel there).
    pub fn build(&self, masks: MaskSlice<'_>, device: &Device) -> Result<AblatedBatch, ModelError> {
        self.build_after(masks, device, 0)
    }

    /// Fixed base positions every row begins with (no player owns them): their keys and values
    /// are the same in every row unless a head is a player, so a prefix cache can hold them.
    pub fn fixed_prefix(&self) -> usize {
        self.owners.iter().take_while(|o| o.is_none()).count()
    }

    /// The layout of rows behind a prefix cache of the first `skip` base positions (at most
    /// [`Layout::fixed_prefix`]): the base positions from `skip` on, indexed from 0. Its device
    /// forms (the kernels' maps, [`Layout::build_compacted`], [`Layout::build_full_length`])
    /// number positions from 0: add `skip` to them for the rows' positions behind the prefix.
    pub fn after(&self, skip: usize) -> Result<Layout, ModelError> {
        self.check_skip(skip)?;
        Ok(Layout {
            ids: self.ids[skip..].to_vec(),
            owners: self.owners[skip..].to_vec(),
            read: self.read[skip..].to_vec(),
            ..self.clone()
        })
    }

    /// [`Layout::build`] for rows that continue a prefix cache of the first `skip` base
    /// positions (at most [`Layout::fixed_prefix`]): each row holds only its positions from
    /// `skip` on, numbered as they would be behind the prefix.
    pub fn build_after(&self, masks: MaskSlice<'_>, device: &Device, skip: usize) -> Result<AblatedBatch, ModelError> {
        self.check_width(masks)?;
        if masks.is_empty() {
            return Err(ModelError::Input("empty batch of masks".into()));
        }
        self.check_skip(skip)?;
        let b = masks.len();
        let n = self.ids.len();
        let mut rows: Vec<(Vec<usize>, Vec<bool>)> = Vec::with_capacity(b); // (included, kept flags)
        let mut any_hidden = false;
        for m in masks.iter() {
            let kept: Vec<bool> = self.owners.iter().map(|o| o.is_none_or(|i| m.get(i))).collect();
            let included: Vec<usize> = match self.mode {
                TokenMode::Attention => (skip..n).filter(|&p| kept[p] || self.read[p]).collect(),
                TokenMode::Replace(_) => (skip..n).collect(),
                TokenMode::Remove => (skip..n).filter(|&p| kept[p]).collect(),
            };
            if included.is_empty() {
                return Err(ModelError::Input("a mask removes every token of the input (add a fixed prefix)".into()));
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
                    TokenMode::Remove => (skip + i) as u32,
                    _ => p as u32,
                };
                visible[at] = match self.mode {
                    TokenMode::Attention => kept[p],
                    _ => true,
                };
            }
        }
        let attn_bias = if padded || any_hidden {
            Some(ops::attention_bias(b, len, Some(&visible), self.causal, device)?)
        } else {
            None
        };
        let head_gates = self.head_gates(masks, device)?;
        Ok(AblatedBatch {
            input: ModelInput::rows(b, len, tokens, positions, attn_bias, head_gates),
            included: rows.into_iter().map(|r| r.0).collect(),
            present: visible,
        })
    }

    /// Per mask, the positions of its row in [`Layout::build`] (and in the compacted form): what
    /// a forward pass of it runs before padding, to batch rows of similar lengths together.
    pub fn row_lengths(&self, masks: MaskSlice<'_>) -> Result<Vec<usize>, ModelError> {
        self.check_width(masks)?;
        Ok(match self.mode {
            TokenMode::Replace(_) => vec![self.ids.len(); masks.len()],
            _ => row_lengths(masks, &self.owner_map(), &self.compaction_read()),
        })
    }

    /// A prefix cache may hold only fixed positions.
    fn check_skip(&self, skip: usize) -> Result<(), ModelError> {
        let fixed = self.fixed_prefix();
        if skip > fixed {
            return Err(ModelError::Input(format!(
                "a prefix cache of {skip} positions holds more than the {fixed} fixed ones"
            )));
        }
        Ok(())
    }

    /// Masks must have this game's players.
    fn check_width(&self, masks: MaskSlice<'_>) -> Result<(), ModelError> {
        if masks.n() == self.n_players() {
            return Ok(());
        }
        Err(ModelError::Input(format!(
            "masks have {} players, this game has {} ({} token + {} head players)",
            masks.n(),
            self.n_players(),
            self.n_token_players,
            self.heads.len()
        )))
    }

    /// Per-layer `[B, H]` gates on `device` from the head bits of the masks (`None` when there
    /// are no head players).
    fn head_gates(&self, masks: MaskSlice<'_>, device: &Device) -> Result<Option<HeadGates>, ModelError> {
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
            .map(|g| g.map(|g| Tensor::from_vec(g, (b, h), device)).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(HeadGates { gates, fill: self.head_fill.clone() }))
    }
}

/// The device-side ("full-length") form of a batch: every row keeps all `ids.len()` base
/// positions at their own position ids, and masking is carried only by what the kernels in
/// `kernels/masking.cu` build on the device from the bit-packed masks. These are their CPU twins,
/// and the maps they take are what the device receives once per explained input.
///
/// In [`TokenMode::Attention`] the full-length forward gives the same outputs at the read
/// positions as [`Layout::build`]'s compacted rows (a hidden key is seen by no query, and a
/// query that is never read does not matter), at the cost of computing the hidden positions; on
/// a GPU that is cheaper than compacting every row on the host.
impl Layout {
    /// Per base position, the mask bit of its token player, or −1 for a fixed token (the
    /// `owners` map of the kernels).
    pub fn owner_map(&self) -> Vec<i32> {
        self.owners.iter().map(|o| o.map_or(-1, |p| p as i32)).collect()
    }

    /// Per `(layer, head)`, layer-major (`num_layers × num_heads`), the mask bit of its head
    /// player, or −1 for a head that is never ablated (the `bits` map of the kernels).
    pub fn head_bit_map(&self) -> Vec<i32> {
        let mut bits = vec![-1i32; self.num_layers * self.num_heads];
        for (k, hp) in self.heads.iter().enumerate() {
            bits[hp.layer * self.num_heads + hp.head] = (self.n_token_players + k) as i32;
        }
        bits
    }
}

impl Layout {
    /// The full-length model input for a batch of masks, built on the host from the same twins
    /// as the device path: the CPU reference for a masked forward on the GPU. Remove mode is not
    /// full-length (positions shift per row) and is refused.
    pub fn build_full_length(&self, masks: MaskSlice<'_>) -> Result<ModelInput, ModelError> {
        if masks.n() != self.n_players() || masks.is_empty() {
            return Err(ModelError::Input(format!(
                "expected a non-empty batch of masks over {} players",
                self.n_players()
            )));
        }
        let (b, len, owners) = (masks.len(), self.ids.len(), self.owner_map());
        let (tokens, attn_bias) = match self.mode {
            TokenMode::Remove => {
                return Err(ModelError::Input("remove mode has no full-length form".into()));
            }
            TokenMode::Replace(id) => (replaced_ids(masks, &self.ids, &owners, id), None),
            TokenMode::Attention => {
                let vis = full_length_visibility(masks, &owners);
                let bias = ops::attention_bias(b, len, Some(&vis), self.causal, cpu())?;
                (self.ids.repeat(b), Some(bias))
            }
        };
        let head_gates = if self.heads.is_empty() {
            None
        } else {
            let (l, h) = (self.num_layers, self.num_heads);
            let dense = dense_head_gates(masks, &self.head_bit_map(), l, h);
            let gates = dense
                .chunks(b * h)
                .map(|g| Tensor::from_slice(g, (b, h), cpu()).map(Some))
                .collect::<Result<Vec<_>, _>>()?;
            Some(HeadGates { gates, fill: self.head_fill.clone() })
        };
        Ok(ModelInput::full_rows(b, len, tokens, attn_bias, head_gates))
    }
}

impl Layout {
    /// The base positions every compacted row includes even when ablated (the `read` map of the
    /// `compact_rows_*` kernels): the read ones in attention mode, none in remove mode (an
    /// ablated token is deleted, whoever reads its position).
    pub fn compaction_read(&self) -> Vec<bool> {
        match self.mode {
            TokenMode::Remove => vec![false; self.read.len()],
            _ => self.read.clone(),
        }
    }

    /// Slots the compacted form of `masks` needs ([`compacted_len`] with this layout's maps).
    pub fn compacted_len(&self, masks: MaskSlice<'_>) -> usize {
        compacted_len(masks, &self.owner_map(), &self.compaction_read())
    }

    /// The compacted form of an attention- or remove-mode batch as the GPU builds it
    /// (`compact_rows_*` in `kernels/masking.cu`; [`compacted_rows`] is the twin): every row holds,
    /// in order, the base positions it keeps (and in attention mode those it reads),
    /// right-aligned in `slots` slots so that the end of the input (the target and the token that
    /// predicts it) sits at the same slots in every row — base position `p ≥ L − slots` at slot
    /// `slots − L + p` when every row includes the positions from `p` on. Attention mode keeps
    /// the base positions, remove mode numbers each row from 0. `slots`: at least
    /// [`Layout::compacted_len`]. The CPU reference for the device path's compaction; it computes
    /// what [`Layout::build`] computes, right-aligned.
    pub fn build_compacted(&self, masks: MaskSlice<'_>, slots: usize) -> Result<ModelInput, ModelError> {
        let compacts = matches!(self.mode, TokenMode::Attention | TokenMode::Remove);
        if !compacts || masks.n() != self.n_players() || masks.is_empty() {
            return Err(ModelError::Input(format!(
                "the compacted form takes a non-empty attention- or remove-mode batch of masks over {} players",
                self.n_players()
            )));
        }
        let (owners, read, b) = (self.owner_map(), self.compaction_read(), masks.len());
        if slots < compacted_len(masks, &owners, &read) {
            return Err(ModelError::Input(format!("{slots} slots cannot hold every row's positions")));
        }
        let renumber = self.mode == TokenMode::Remove;
        let (ids, positions, visible) = compacted_rows(masks, &owners, &read, &self.ids, slots, self.pad_id, renumber);
        let bias = ops::attention_bias(b, slots, Some(&visible), self.causal, cpu())?;
        let head_gates = self.head_gates(masks, cpu())?;
        Ok(ModelInput::rows(b, slots, ids, positions, Some(bias), head_gates))
    }
}

/// Whether base position `p` is in row `m`'s compacted sequence: kept (owner −1 or its bit set)
/// or read.
fn included(m: MaskRef<'_>, owners: &[i32], read: &[bool], p: usize) -> bool {
    read[p] || keeps(m, owners[p])
}

/// Whether mask `m` keeps the player of mask bit `bit` (−1: a fixed token or an ungated head,
/// always kept); the kernels' `row_keeps`.
fn keeps(m: MaskRef<'_>, bit: i32) -> bool {
    bit < 0 || m.get(bit as usize)
}

/// Slots the compacted form of `masks` needs: the most base positions any row keeps or reads.
pub fn compacted_len(masks: MaskSlice<'_>, owners: &[i32], read: &[bool]) -> usize {
    row_lengths(masks, owners, read).into_iter().max().unwrap_or(0)
}

/// Per row of `masks`, the base positions it keeps or reads: its length in the compacted form.
pub fn row_lengths(masks: MaskSlice<'_>, owners: &[i32], read: &[bool]) -> Vec<usize> {
    masks.iter().map(|m| (0..owners.len()).filter(|&p| included(m, owners, read, p)).count()).collect()
}

/// Token ids, positions and key visibility `[B × slots]` of the compacted form
/// ([`Layout::build_compacted`]): row `b` holds its kept or read base positions in order,
/// right-aligned; the padding slots before them hold `pad_id` at position 0, invisible; a kept
/// position is visible, a read but ablated one is not. Positions that do not fit are dropped
/// from the front. Each slot's position is its base position, or with `renumber` (remove mode)
/// its rank in the row from 0. CPU twin of the `compact_rows_*` kernels.
pub fn compacted_rows(
    masks: MaskSlice<'_>,
    owners: &[i32],
    read: &[bool],
    ids: &[u32],
    slots: usize,
    pad_id: u32,
    renumber: bool,
) -> (Vec<u32>, Vec<u32>, Vec<bool>) {
    let b = masks.len();
    let (mut out_ids, mut out_pos, mut visible) =
        (vec![pad_id; b * slots], vec![0u32; b * slots], vec![false; b * slots]);
    for (r, m) in masks.iter().enumerate() {
        let row: Vec<usize> = (0..owners.len()).filter(|&p| included(m, owners, read, p)).collect();
        for (k, &p) in row.iter().rev().take(slots).enumerate() {
            let at = r * slots + slots - 1 - k;
            out_ids[at] = ids[p];
            out_pos[at] = if renumber { (row.len() - 1 - k) as u32 } else { p as u32 };
            visible[at] = keeps(m, owners[p]);
        }
    }
    (out_ids, out_pos, visible)
}

/// Key visibility `[B × L]` of the full-length form (L = `owners.len()`): position `p` of row
/// `b` is visible when `owners[p]` is −1 or mask bit `owners[p]` of row `b` is set. With
/// [`ops::attention_bias`], the CPU twin of the `attention_bias_*` kernels.
pub fn full_length_visibility(masks: MaskSlice<'_>, owners: &[i32]) -> Vec<bool> {
    masks.iter().flat_map(|m| owners.iter().map(move |&o| keeps(m, o))).collect()
}

/// Token ids `[B × L]` of replace mode: `replacement` where the position's owner is ablated,
/// else `ids[p]`. CPU twin of the `replace_ids` kernel.
pub fn replaced_ids(masks: MaskSlice<'_>, ids: &[u32], owners: &[i32], replacement: u32) -> Vec<u32> {
    let visible = full_length_visibility(masks, owners);
    visible.iter().enumerate().map(|(i, &v)| if v { ids[i % ids.len()] } else { replacement }).collect()
}

/// Dense head gates `[layers × B × H]` (1 kept, 0 ablated) from a [`Layout::head_bit_map`].
/// CPU twin of the `head_gates_from_masks` kernel.
pub fn dense_head_gates(masks: MaskSlice<'_>, bits: &[i32], layers: usize, heads: usize) -> Vec<f32> {
    let b = masks.len();
    let mut out = vec![1f32; layers * b * heads];
    for l in 0..layers {
        for (r, m) in masks.iter().enumerate() {
            for h in 0..heads {
                let bit = bits[l * heads + h];
                if !keeps(m, bit) {
                    out[(l * b + r) * heads + h] = 0.0;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design::{rng, uniform::random_masks as spex_random_masks};
    use crate::mask::MaskBatch;

    /// A layout of 7 base positions (a fixed prefix token, 5 token players owning one or two
    /// positions, a read target) and 3 head players over 2 layers × 4 heads.
    fn layout(mode: TokenMode) -> Layout {
        Layout {
            ids: vec![11, 12, 13, 14, 15, 16, 17],
            owners: vec![None, Some(0), Some(1), Some(1), Some(2), Some(3), None],
            read: vec![false, false, false, false, false, true, false],
            n_token_players: 4,
            heads: vec![
                HeadPlayer { layer: 0, head: 2 },
                HeadPlayer { layer: 1, head: 0 },
                HeadPlayer { layer: 1, head: 3 },
            ],
            mode,
            head_fill: None,
            causal: true,
            num_layers: 2,
            num_heads: 4,
            pad_id: 0,
        }
    }

    /// Uniform random masks, seeded.
    fn random_masks(n: usize, rows: usize, seed: u64) -> MaskBatch {
        spex_random_masks(n, rows, &mut rng(seed, 0))
    }

    /// The rows behind a prefix cache hold the positions after it: every row is shorter by the
    /// prefix alone. A prefix beyond the fixed positions is refused.
    #[test]
    fn layout_after_a_prefix_drops_only_its_positions() {
        let lay = layout(TokenMode::Attention);
        let after = lay.after(1).unwrap();
        assert_eq!((after.ids.as_slice(), &after.owners[..2]), (&lay.ids[1..], &[Some(0), Some(1)][..]));
        assert_eq!((after.read.len(), after.n_players()), (6, lay.n_players()));
        let masks = random_masks(lay.n_players(), 12, 3);
        let lengths: Vec<usize> = lay.row_lengths(masks.as_slice()).unwrap().iter().map(|l| l - 1).collect();
        assert_eq!(after.row_lengths(masks.as_slice()).unwrap(), lengths);
        assert!(matches!(lay.after(2), Err(ModelError::Input(_))));
        assert!(lay.build_after(masks.as_slice(), cpu(), 2).is_err());
    }

    #[test]
    fn replaced_ids_equal_replace_mode_rows() {
        let lay = layout(TokenMode::Replace(99));
        let masks = random_masks(lay.n_players(), 40, 1);
        let built = lay.build(masks.as_slice(), cpu()).unwrap();
        let got = replaced_ids(masks.as_slice(), &lay.ids, &lay.owner_map(), 99);
        assert_eq!(got, built.input.tokens.host().unwrap());
        assert!(got.contains(&99) && got.contains(&13), "the masks should both keep and replace");
    }

    #[test]
    fn dense_head_gates_equal_per_layer_gates() {
        let lay = layout(TokenMode::Attention);
        let masks = random_masks(lay.n_players(), 40, 2);
        let built = lay.build(masks.as_slice(), cpu()).unwrap().input.head_gates.unwrap();
        let dense = dense_head_gates(masks.as_slice(), &lay.head_bit_map(), 2, 4);
        for (l, g) in built.gates.iter().enumerate() {
            let want: Vec<f32> = match g {
                Some(t) => t.flatten_all().unwrap().to_vec1().unwrap(),
                None => vec![1.0; 40 * 4],
            };
            assert_eq!(&dense[l * 160..(l + 1) * 160], &want[..], "layer {l}");
        }
        assert!(dense.contains(&0.0));
    }

    /// The compaction twin against the CPU path's rows: the same positions in the same order and
    /// the same visibility, right-aligned after invisible padding; too few slots drop positions
    /// from the front.
    #[test]
    fn compacted_rows_are_the_built_rows_right_aligned() {
        let lay = layout(TokenMode::Attention);
        let masks = random_masks(lay.n_players(), 40, 4);
        let built = lay.build(masks.as_slice(), cpu()).unwrap();
        let owners = lay.owner_map();
        let slots = compacted_len(masks.as_slice(), &owners, &lay.read);
        assert_eq!(slots, built.input.len);
        let (ids, pos, vis) = compacted_rows(masks.as_slice(), &owners, &lay.read, &lay.ids, slots, 9, false);
        for (r, included) in built.included.iter().enumerate() {
            let pad = slots - included.len();
            let at = |k: usize| r * slots + k;
            assert!((0..pad).all(|k| ids[at(k)] == 9 && pos[at(k)] == 0 && !vis[at(k)]), "row {r} padding");
            for (k, &p) in included.iter().enumerate() {
                assert_eq!((ids[at(pad + k)], pos[at(pad + k)]), (lay.ids[p], p as u32), "row {r} slot {k}");
                assert_eq!(vis[at(pad + k)], built.present[r * built.input.len + k], "row {r} slot {k}");
            }
        }
        assert!(vis.iter().any(|&v| !v) && built.included.iter().any(|i| i.len() < slots), "a weak case");
        let (_, short, _) = compacted_rows(masks.as_slice().slice(0..1), &owners, &lay.read, &lay.ids, 3, 9, false);
        let full = &built.included[0];
        assert_eq!(short, full[full.len() - 3..].iter().map(|&p| p as u32).collect::<Vec<_>>());
    }

    #[test]
    fn row_lengths_are_the_built_rows_lengths() {
        for mode in [TokenMode::Attention, TokenMode::Replace(99), TokenMode::Remove] {
            let lay = layout(mode);
            let masks = random_masks(lay.n_players(), 40, 5);
            let built = lay.build(masks.as_slice(), cpu()).unwrap();
            let want: Vec<usize> = built.included.iter().map(Vec::len).collect();
            assert_eq!(lay.row_lengths(masks.as_slice()).unwrap(), want, "{mode:?}");
            assert!(want.iter().any(|&l| l != want[0]) || mode == TokenMode::Replace(99), "{mode:?}: a weak case");
        }
        let narrow = random_masks(3, 4, 6);
        assert!(layout(TokenMode::Attention).row_lengths(narrow.as_slice()).is_err());
    }

    /// The case docs/gpu.md counts: 1 024 uniform masks over a 128-token prompt (every token a
    /// player) with a 4-token target, planned with the GPU's smallest floor (a 1B model's),
    /// against one pass.
    #[test]
    fn planning_uniform_masks_cuts_the_padding() {
        use crate::model::memory::{plan_forwards, GPU_MIN_FORWARD_TOKENS};
        let (n, t) = (128, 4);
        let mut lay = layout(TokenMode::Attention);
        lay.ids = (0..(n + t) as u32).collect();
        lay.owners = (0..n).map(Some).chain(std::iter::repeat_n(None, t)).collect();
        lay.read = (0..n + t).map(|p| p + 1 >= n && p + 1 < n + t).collect();
        (lay.n_token_players, lay.heads) = (n, Vec::new());
        let masks = random_masks(n, 1024, 7);
        let lengths = lay.row_lengths(masks.as_slice()).unwrap();
        let one = plan_forwards(&lengths, 4096, usize::MAX);
        let plan = plan_forwards(&lengths, 4096, GPU_MIN_FORWARD_TOKENS);
        let (padded, planned) = (one.slots_run(), plan.slots_run());
        println!(
            "one pass: {} slots; planned: {:?} pieces, slots {:?}, {planned} in all",
            one.slots[0], plan.pieces, plan.slots
        );
        assert_eq!(one.slots[0], lay.compacted_len(masks.as_slice()));
        assert!(plan.pieces.len() >= 2 && (planned as f64) < 0.9 * padded as f64, "{planned} of {padded}");
    }

    /// The visibility twin against the compacted attention-mode rows: a base position is
    /// included and visible in a compacted row exactly when it is visible in the full-length row,
    /// and hidden-but-read positions are included and invisible.
    #[test]
    fn full_length_visibility_agrees_with_compacted_rows() {
        let lay = layout(TokenMode::Attention);
        let masks = random_masks(lay.n_players(), 40, 3);
        let built = lay.build(masks.as_slice(), cpu()).unwrap();
        let vis = full_length_visibility(masks.as_slice(), &lay.owner_map());
        let n = lay.ids.len();
        for r in 0..masks.len() {
            let len = built.input.len;
            for p in 0..n {
                let at = built.included[r].iter().position(|&q| q == p);
                let full = vis[r * n + p];
                match at {
                    Some(i) => assert_eq!(built.present[r * len + i], full, "row {r} position {p}"),
                    None => assert!(!full && !lay.read[p], "row {r}: visible position {p} dropped"),
                }
            }
        }
    }
}
