//! Gradient-boosted regression trees specialised for 0/1 inputs (bit-packed masks).
//!
//! A split on a binary feature has a single threshold, so the split search of a node needs only,
//! for every feature `j`, the sum of the residuals and the number of rows in the node whose bit
//! `j` is set (the rows with the bit clear are the node's totals minus those). Those histograms are
//! built straight from the packed words a byte (eight players) at a time: large nodes add each
//! row's residual to one of 256 bins per byte and fold the bins into per-bit sums afterwards,
//! small nodes expand each byte through a lookup table. They are built only for the smaller child
//! of each split (the larger one is the parent minus the smaller, as in LightGBM), and not at all
//! for nodes that cannot be split.
//!
//! The loss is squared error, so the gradient is the residual, the hessian is 1 and the gain of a
//! split is `G_L²/(n_L+λ) + G_R²/(n_R+λ) − G²/(n+λ)`. Trees grow depth-first to `max_depth`
//! (every node that has a split with positive gain and at least `min_samples_leaf` rows on both
//! sides is split), leaves take `learning_rate · G/(n+λ)`, and the ensemble starts from the mean,
//! as LightGBM's regression objective does (`boost_from_average`).
//!
//! Everything is sequential and deterministic for a given input and random generator; the
//! caller parallelises over candidate hyperparameters.

use rand::{Rng, RngCore};

use crate::mask::{MaskSlice, WORD_BITS};

/// `LUT[b][k]` is bit `k` of byte `b` as 0.0 or 1.0: adds a row's residual to the eight
/// features of one byte of its mask without branches.
static LUT: [[f64; 8]; 256] = byte_lut();

const fn byte_lut() -> [[f64; 8]; 256] {
    let mut t = [[0.0; 8]; 256];
    let mut b = 0;
    while b < 256 {
        let mut k = 0;
        while k < 8 {
            if (b >> k) & 1 == 1 {
                t[b][k] = 1.0;
            }
            k += 1;
        }
        b += 1;
    }
    t
}

/// Training rows: packed masks (copied, row after row) and their targets.
#[derive(Clone, Debug)]
pub struct Rows {
    n: usize,
    words_per_row: usize,
    words: Vec<u64>,
    y: Vec<f64>,
}

impl Rows {
    /// The rows `index` of `masks` with targets `values[index]`.
    pub fn gather(masks: MaskSlice<'_>, values: &[f64], index: &[usize]) -> Self {
        let w = masks.words_per_row();
        let mut words = Vec::with_capacity(index.len() * w);
        for &i in index {
            words.extend_from_slice(masks.row(i).words());
        }
        Rows { n: masks.n(), words_per_row: w, words, y: index.iter().map(|&i| values[i]).collect() }
    }

    /// Every row of `masks`.
    pub fn all(masks: MaskSlice<'_>, values: &[f64]) -> Self {
        Rows { n: masks.n(), words_per_row: masks.words_per_row(), words: masks.words().to_vec(), y: values.to_vec() }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// Number of features (players).
    pub fn n(&self) -> usize {
        self.n
    }

    /// The targets.
    pub fn y(&self) -> &[f64] {
        &self.y
    }

    /// The packed mask of row `i`.
    pub fn row(&self, i: usize) -> &[u64] {
        &self.words[i * self.words_per_row..(i + 1) * self.words_per_row]
    }
}

#[inline]
fn bit(row: &[u64], j: usize) -> bool {
    (row[j / WORD_BITS] >> (j % WORD_BITS)) & 1 == 1
}

/// One node of a [`Tree`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Node {
    /// A constant.
    Leaf {
        /// The value added to the prediction.
        value: f64,
    },
    /// A split on one player.
    Split {
        /// The player split on.
        feature: u32,
        /// Index of the child for masks that ablate `feature` (bit 0).
        left: u32,
        /// Index of the child for masks that keep `feature` (bit 1).
        right: u32,
    },
}

/// A regression tree on 0/1 inputs; node 0 is the root.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Tree {
    /// The nodes; children always come after their parent.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// The tree's value at a packed mask.
    pub fn predict(&self, row: &[u64]) -> f64 {
        let mut at = 0usize;
        loop {
            match self.nodes[at] {
                Node::Leaf { value } => return value,
                Node::Split { feature, left, right } => {
                    at = if bit(row, feature as usize) { right } else { left } as usize;
                }
            }
        }
    }

    /// Number of leaves.
    pub fn leaves(&self) -> usize {
        self.nodes.iter().filter(|n| matches!(n, Node::Leaf { .. })).count()
    }
}

/// A boosted ensemble: `base + Σ trees`.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Ensemble {
    /// The starting constant (mean of the training targets).
    pub base: f64,
    /// The trees, in boosting order.
    pub trees: Vec<Tree>,
}

impl Ensemble {
    /// The ensemble's value at a packed mask.
    pub fn predict(&self, row: &[u64]) -> f64 {
        self.base + self.trees.iter().map(|t| t.predict(row)).sum::<f64>()
    }

    /// The ensemble's values at every row of `masks`.
    pub fn predict_masks(&self, masks: MaskSlice<'_>) -> Vec<f64> {
        masks.iter().map(|m| self.predict(m.words())).collect()
    }
}

/// Hyperparameters of one boosting run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoostParams {
    /// Maximum depth of a tree (1 = stumps).
    pub max_depth: usize,
    /// Shrinkage applied to every leaf.
    pub learning_rate: f64,
    /// Maximum number of trees.
    pub max_trees: usize,
    /// Stop when the validation error has not improved for this many trees (0 = never stop early).
    pub early_stopping_rounds: usize,
    /// Fewest training rows on each side of a split.
    pub min_samples_leaf: usize,
    /// L2 penalty `λ` on leaf values.
    pub l2: f64,
    /// Fraction of the training rows each tree sees (1 = all; each row drawn independently).
    pub subsample: f64,
}

/// The result of [`boost`].
#[derive(Clone, Debug)]
pub struct Boosted {
    /// The ensemble, cut to the best number of trees when a validation set was given.
    pub ensemble: Ensemble,
    /// Mean squared error on the validation rows at that number of trees (`None` without them).
    pub validation_mse: Option<f64>,
    /// The validation predictions at that number of trees (empty without validation rows).
    pub validation_pred: Vec<f64>,
}

/// Per-feature sums of residuals and row counts over the rows of a node whose bit is set.
struct Hist {
    sum: Vec<f64>,
    count: Vec<f64>,
}

/// Below this many rows a node's histogram is built feature by feature through [`LUT`]; above,
/// through per-byte tables, whose fixed cost (folding 256 entries per byte of the mask) is then
/// paid back by touching one entry per byte and row instead of eight.
const TABLE_ROWS: usize = 256;

/// Scratch space of the per-byte tables, reused across nodes and trees.
#[derive(Default)]
struct ByteTables {
    sum: Vec<[f64; 256]>,
    count: Vec<[u32; 256]>,
    /// The node's residuals and packed masks, gathered contiguously.
    resid: Vec<f64>,
    words: Vec<u64>,
}

impl Hist {
    fn build(rows: &Rows, index: &[u32], resid: &[f64], tables: &mut ByteTables) -> Hist {
        if index.len() >= TABLE_ROWS {
            Self::build_tables(rows, index, resid, tables)
        } else {
            Self::build_lut(rows, index, resid)
        }
    }

    fn build_lut(rows: &Rows, index: &[u32], resid: &[f64]) -> Hist {
        let len = rows.words_per_row * WORD_BITS;
        let mut sum = vec![0.0; len];
        let mut count = vec![0.0; len];
        for &i in index {
            let r = resid[i as usize];
            let row = rows.row(i as usize);
            let sums = sum.chunks_exact_mut(8);
            let counts = count.chunks_exact_mut(8);
            let bytes = row.iter().flat_map(|w| w.to_le_bytes());
            for ((s, c), byte) in sums.zip(counts).zip(bytes) {
                let lut = &LUT[byte as usize];
                for k in 0..8 {
                    s[k] += r * lut[k];
                    c[k] += lut[k];
                }
            }
        }
        Hist { sum, count }
    }

    /// For every byte position of the mask, sums the residuals (and counts the rows) by the
    /// byte's value (one table entry per byte and row), then folds each 256-entry table into
    /// the sums of its eight bits.
    fn build_tables(rows: &Rows, index: &[u32], resid: &[f64], tables: &mut ByteTables) -> Hist {
        let w = rows.words_per_row;
        let positions = w * 8;
        tables.resid.clear();
        tables.resid.extend(index.iter().map(|&i| resid[i as usize]));
        tables.words.clear();
        for &i in index {
            tables.words.extend_from_slice(rows.row(i as usize));
        }
        tables.sum.clear();
        tables.sum.resize(positions, [0.0; 256]);
        tables.count.clear();
        tables.count.resize(positions, [0; 256]);
        let mut sum = vec![0.0; positions * 8];
        let mut count = vec![0.0; positions * 8];
        for (pos, (s, c)) in tables.sum.iter_mut().zip(tables.count.iter_mut()).enumerate() {
            let (word, shift) = (pos / 8, (pos % 8) * 8);
            for (r, row) in tables.resid.iter().zip(tables.words.chunks_exact(w)) {
                let byte = (row[word] >> shift) as u8 as usize;
                s[byte] += r;
                c[byte] += 1;
            }
            // Fold the top bit away, bit after bit: the upper half holds the values with the bit
            // set; adding it onto the lower half leaves a table over the remaining bits.
            for k in (0..8).rev() {
                let half = 1usize << k;
                let (lo, hi) = s[..2 * half].split_at_mut(half);
                sum[pos * 8 + k] = hi.iter().sum();
                lo.iter_mut().zip(hi.iter()).for_each(|(a, b)| *a += b);
                let (lo, hi) = c[..2 * half].split_at_mut(half);
                count[pos * 8 + k] = hi.iter().map(|&x| x as f64).sum();
                lo.iter_mut().zip(hi.iter()).for_each(|(a, b)| *a += b);
            }
        }
        Hist { sum, count }
    }

    /// `self -= other` (turns a parent's histogram into its larger child's).
    fn subtract(&mut self, other: &Hist) {
        self.sum.iter_mut().zip(&other.sum).for_each(|(a, b)| *a -= b);
        self.count.iter_mut().zip(&other.count).for_each(|(a, b)| *a -= b);
    }
}

/// A node waiting to be split or made a leaf (`hist` is `None` when it cannot be split).
struct Pending {
    id: usize,
    lo: usize,
    hi: usize,
    depth: usize,
    hist: Option<Hist>,
}

/// Buffers reused across the nodes and trees of one boosting run.
#[derive(Default)]
struct Scratch {
    partition: Vec<u32>,
    tables: ByteTables,
}

/// The best split of a node: `(feature, rows with the bit set)`.
fn best_split(hist: &Hist, n: usize, total: f64, rows: usize, p: &BoostParams) -> Option<(usize, usize)> {
    let c = rows as f64;
    let parent = total * total / (c + p.l2);
    let min = p.min_samples_leaf as f64;
    let mut best: Option<(usize, f64)> = None;
    for j in 0..n {
        let c1 = hist.count[j];
        let c0 = c - c1;
        if c1 < min || c0 < min {
            continue;
        }
        let s1 = hist.sum[j];
        let s0 = total - s1;
        let gain = s0 * s0 / (c0 + p.l2) + s1 * s1 / (c1 + p.l2) - parent;
        if gain > 0.0 && best.is_none_or(|(_, g)| gain > g) {
            best = Some((j, gain));
        }
    }
    best.map(|(j, _)| (j, hist.count[j].round() as usize))
}

/// Grows one tree on the rows `index` (reordered in place) and subtracts its predictions from
/// `resid` for those rows.
fn grow(rows: &Rows, index: &mut [u32], resid: &mut [f64], p: &BoostParams, scratch: &mut Scratch) -> Tree {
    let splittable = |depth: usize, len: usize| depth < p.max_depth && len >= p.min_samples_leaf.saturating_mul(2);
    let mut nodes = vec![Node::Leaf { value: 0.0 }];
    let root_hist = splittable(0, index.len()).then(|| Hist::build(rows, index, resid, &mut scratch.tables));
    let mut stack = vec![Pending { id: 0, lo: 0, hi: index.len(), depth: 0, hist: root_hist }];
    while let Some(node) = stack.pop() {
        let here = &index[node.lo..node.hi];
        let total: f64 = here.iter().map(|&i| resid[i as usize]).sum();
        let split = node.hist.as_ref().and_then(|h| best_split(h, rows.n, total, here.len(), p));
        let Some((feature, ones)) = split else {
            let value = p.learning_rate * total / (here.len() as f64 + p.l2);
            nodes[node.id] = Node::Leaf { value };
            for &i in here {
                resid[i as usize] -= value;
            }
            continue;
        };
        // Stable partition: bit-0 rows first, then the `ones` rows with the bit set.
        let part = &mut scratch.partition;
        part.clear();
        part.resize(here.len(), 0);
        let (mut zero_at, mut one_at) = (0, here.len() - ones);
        for &i in here {
            // Branch-free: the bits are coin flips, a branch would be mispredicted half the time.
            let b = bit(rows.row(i as usize), feature) as usize;
            part[zero_at + b * (one_at - zero_at)] = i;
            one_at += b;
            zero_at += 1 - b;
        }
        index[node.lo..node.hi].copy_from_slice(part);
        let mid = node.hi - ones;
        let (left_id, right_id) = (nodes.len(), nodes.len() + 1);
        nodes.push(Node::Leaf { value: 0.0 });
        nodes.push(Node::Leaf { value: 0.0 });
        nodes[node.id] = Node::Split { feature: feature as u32, left: left_id as u32, right: right_id as u32 };
        let (small, large) = if mid - node.lo <= node.hi - mid {
            ((left_id, node.lo, mid), (right_id, mid, node.hi))
        } else {
            ((right_id, mid, node.hi), (left_id, node.lo, mid))
        };
        let depth = node.depth + 1;
        let (small_ok, large_ok) = (splittable(depth, small.2 - small.1), splittable(depth, large.2 - large.1));
        // The larger child's histogram is the parent's minus the smaller's, so the smaller one
        // is built whenever either child will be split.
        let small_hist =
            (small_ok || large_ok).then(|| Hist::build(rows, &index[small.1..small.2], resid, &mut scratch.tables));
        let large_hist = match (large_ok, node.hist, &small_hist) {
            (true, Some(mut h), Some(sh)) => {
                h.subtract(sh);
                Some(h)
            }
            _ => None,
        };
        stack.push(Pending { id: large.0, lo: large.1, hi: large.2, depth, hist: large_hist });
        stack.push(Pending { id: small.0, lo: small.1, hi: small.2, depth, hist: small_hist.filter(|_| small_ok) });
    }
    Tree { nodes }
}

/// Boosts trees on `train`; with `valid` rows, keeps the number of trees with the lowest
/// validation error and stops after `early_stopping_rounds` trees without improvement.
pub fn boost(train: &Rows, valid: Option<&Rows>, p: &BoostParams, rng: &mut impl RngCore) -> Boosted {
    let m = train.len();
    let base = if m == 0 { 0.0 } else { train.y.iter().sum::<f64>() / m as f64 };
    let mut resid: Vec<f64> = train.y.iter().map(|y| y - base).collect();
    let mut trees = Vec::new();
    let mut index: Vec<u32> = (0..m as u32).collect();
    let mut scratch = Scratch::default();
    let mut valid_pred: Vec<f64> = valid.map(|v| vec![base; v.len()]).unwrap_or_default();
    let mut best_pred = valid_pred.clone();
    let mse = |pred: &[f64], v: &Rows| {
        pred.iter().zip(&v.y).map(|(p, y)| (y - p).powi(2)).sum::<f64>() / v.len().max(1) as f64
    };
    let mut best = valid.map(|v| (mse(&valid_pred, v), 0usize));
    let subsampling = p.subsample < 1.0;
    for t in 0..p.max_trees {
        let tree = if subsampling {
            // Trees see a random part of the rows; every row's residual is updated afterwards.
            let mut sample: Vec<u32> = (0..m as u32).filter(|_| rng.random::<f64>() < p.subsample).collect();
            if sample.len() < p.min_samples_leaf.saturating_mul(2) {
                sample = (0..m as u32).collect();
            }
            let mut dummy = resid.clone();
            let tree = grow(train, &mut sample, &mut dummy, p, &mut scratch);
            for (i, r) in resid.iter_mut().enumerate() {
                *r -= tree.predict(train.row(i));
            }
            tree
        } else {
            grow(train, &mut index, &mut resid, p, &mut scratch)
        };
        if let (Some(v), Some((best_mse, best_t))) = (valid, best.as_mut()) {
            for (i, pred) in valid_pred.iter_mut().enumerate() {
                *pred += tree.predict(v.row(i));
            }
            let e = mse(&valid_pred, v);
            if e < *best_mse {
                *best_mse = e;
                *best_t = t + 1;
                best_pred.copy_from_slice(&valid_pred);
            } else if p.early_stopping_rounds > 0 && t + 1 - *best_t >= p.early_stopping_rounds {
                trees.push(tree);
                break;
            }
        }
        trees.push(tree);
    }
    if let Some((_, best_t)) = best {
        trees.truncate(best_t);
    }
    Boosted {
        ensemble: Ensemble { base, trees },
        validation_mse: best.map(|(e, _)| e),
        validation_pred: if valid.is_some() { best_pred } else { Vec::new() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design::{rng, uniform::random_masks};

    fn params(depth: usize) -> BoostParams {
        BoostParams {
            max_depth: depth,
            learning_rate: 0.1,
            max_trees: 200,
            early_stopping_rounds: 0,
            min_samples_leaf: 5,
            l2: 0.0,
            subsample: 1.0,
        }
    }

    #[test]
    fn histogram_matches_direct_sums() {
        let masks = random_masks(77, 300, &mut rng(1, 0));
        let values: Vec<f64> = (0..300).map(|i| (i as f64 * 0.37).sin()).collect();
        let rows = Rows::all(masks.as_slice(), &values);
        let index: Vec<u32> = (0..300).filter(|i| i % 3 != 0).collect();
        let lut = Hist::build_lut(&rows, &index, &values);
        let tables = Hist::build_tables(&rows, &index, &values, &mut ByteTables::default());
        for h in [lut, tables] {
            for j in 0..77 {
                let (mut s, mut c) = (0.0, 0.0);
                for &i in &index {
                    if masks.row(i as usize).get(j) {
                        s += values[i as usize];
                        c += 1.0;
                    }
                }
                assert!((h.sum[j] - s).abs() < 1e-9 && h.count[j] == c, "feature {j}");
            }
            assert!(h.count[77..].iter().all(|&c| c == 0.0), "padding bits must count nothing");
        }
    }

    #[test]
    fn stump_finds_the_only_relevant_player() {
        // y = 3 if player 41 is kept, else -1.
        let masks = random_masks(64, 400, &mut rng(2, 0));
        let y: Vec<f64> = masks.iter().map(|m| if m.get(41) { 3.0 } else { -1.0 }).collect();
        let rows = Rows::all(masks.as_slice(), &y);
        let p = BoostParams { learning_rate: 1.0, max_trees: 1, ..params(1) };
        let fit = boost(&rows, None, &p, &mut rng(0, 0));
        let tree = &fit.ensemble.trees[0];
        let Node::Split { feature, left, right } = tree.nodes[0] else { panic!("root must split") };
        assert_eq!(feature, 41);
        let base = fit.ensemble.base;
        assert_eq!(tree.nodes[left as usize], Node::Leaf { value: -1.0 - base });
        assert!(matches!(tree.nodes[right as usize], Node::Leaf { value } if (value - (3.0 - base)).abs() < 1e-12));
        for m in masks.iter() {
            assert!((fit.ensemble.predict(m.words()) - if m.get(41) { 3.0 } else { -1.0 }).abs() < 1e-12);
        }
    }

    #[test]
    fn min_samples_leaf_is_respected() {
        let masks = random_masks(10, 200, &mut rng(3, 0));
        let y: Vec<f64> = masks.iter().map(|m| m.count_kept() as f64 + if m.get(0) { 5.0 } else { 0.0 }).collect();
        let rows = Rows::all(masks.as_slice(), &y);
        let p = BoostParams { min_samples_leaf: 30, max_trees: 20, ..params(4) };
        let fit = boost(&rows, None, &p, &mut rng(0, 0));
        for tree in &fit.ensemble.trees {
            // Count training rows per leaf by routing them.
            let mut per_node = vec![0usize; tree.nodes.len()];
            for i in 0..rows.len() {
                let mut at = 0usize;
                per_node[0] += 1;
                while let Node::Split { feature, left, right } = tree.nodes[at] {
                    at = if bit(rows.row(i), feature as usize) { right } else { left } as usize;
                    per_node[at] += 1;
                }
            }
            for (k, node) in tree.nodes.iter().enumerate() {
                if matches!(node, Node::Leaf { .. }) {
                    assert!(per_node[k] >= 30, "leaf with {} rows", per_node[k]);
                }
            }
        }
    }

    #[test]
    fn early_stopping_keeps_best_validation_error() {
        let masks = random_masks(20, 600, &mut rng(4, 0));
        // Pure noise: more trees only overfit, so validation picks few trees.
        let y: Vec<f64> = (0..600).map(|i| ((i * 7919) % 101) as f64 / 50.0 - 1.0).collect();
        let train = Rows::gather(masks.as_slice(), &y, &(0..400).collect::<Vec<_>>());
        let valid = Rows::gather(masks.as_slice(), &y, &(400..600).collect::<Vec<_>>());
        let p = BoostParams { max_trees: 300, early_stopping_rounds: 20, ..params(3) };
        let fit = boost(&train, Some(&valid), &p, &mut rng(0, 0));
        assert!(fit.ensemble.trees.len() < 100, "kept {} trees", fit.ensemble.trees.len());
        let pred: Vec<f64> = (0..valid.len()).map(|i| fit.ensemble.predict(valid.row(i))).collect();
        let mse = pred.iter().zip(valid.y()).map(|(p, y)| (p - y).powi(2)).sum::<f64>() / valid.len() as f64;
        assert!((mse - fit.validation_mse.unwrap()).abs() < 1e-12);
        assert_eq!(pred, fit.validation_pred);
    }
}
