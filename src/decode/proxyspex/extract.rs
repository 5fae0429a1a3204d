//! Exact Fourier coefficients of a tree ensemble on `{0,1}^n`.
//!
//! A leaf reached by the path `(j_1, b_1), …, (j_d, b_d)` (split player, side taken) is the
//! indicator `Π_i [m_{j_i} = b_i]`, and `[m_j = b] = (1 + s·(−1)^{m_j}) / 2` with `s = +1` on
//! the ablated side (`b = 0`, the left child) and `s = −1` on the kept side. Expanding the product,
//! a leaf of value `v` contributes `v · 2^{−d} · Π_{i∈T} s_i` to the frequency `T` for every
//! subset `T` of its path. Summed over the leaves this is the recursion of Gorji et al. (2024) used
//! by ProxySPEX: a split on `j` with children `L` (left, `m_j = 0`) and `R` gives `(L+R)/2` on every
//! frequency `S` of the children and `(L−R)/2` on `S ∪ {j}`.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use super::gbt::{Ensemble, Node, Tree};
use crate::subset::Subset;
use crate::transform::Fourier;

/// Frequencies (sorted players) → coefficient, while summing.
type Acc = HashMap<Vec<u32>, f64, FastHash>;

/// The exact Fourier expansion of `ensemble` over `n` players (its base goes to the empty set).
/// Coefficients that cancel to exactly zero are dropped.
pub fn ensemble_to_fourier(ensemble: &Ensemble, n: usize) -> Fourier {
    let mut acc = Acc::default();
    acc.insert(Vec::new(), ensemble.base);
    let mut walk = Walk::default();
    for tree in &ensemble.trees {
        if !tree.nodes.is_empty() {
            walk.subtree(tree, 0, &mut acc);
        }
    }
    Fourier::from_pairs(n, acc.into_iter().filter(|&(_, v)| v != 0.0).map(|(k, v)| (Subset::from_sorted(k), v)))
}

/// The exact Fourier expansion of one tree.
pub fn tree_to_fourier(tree: &Tree, n: usize) -> Fourier {
    ensemble_to_fourier(&Ensemble { base: 0.0, trees: vec![tree.clone()] }, n)
}

/// Buffers of the tree walk.
#[derive(Default)]
struct Walk {
    /// `(player, sign)` of the splits above the current node.
    path: Vec<(u32, f64)>,
    /// The path of a leaf, sorted by player, each player once.
    sorted: Vec<(u32, f64)>,
    /// The frequency being added.
    key: Vec<u32>,
}

impl Walk {
    fn subtree(&mut self, tree: &Tree, at: usize, acc: &mut Acc) {
        match tree.nodes[at] {
            Node::Leaf { value } => self.leaf(value, acc),
            Node::Split { feature, left, right } => {
                self.path.push((feature, 1.0));
                self.subtree(tree, left as usize, acc);
                self.path.last_mut().expect("just pushed").1 = -1.0;
                self.subtree(tree, right as usize, acc);
                self.path.pop();
            }
        }
    }

    fn leaf(&mut self, value: f64, acc: &mut Acc) {
        if value == 0.0 {
            return;
        }
        // Our trees never split on a player twice (one side would be empty), but the expansion
        // stays exact if a path does: `[m_j = b]·[m_j = b] = [m_j = b]`, and a path that asks for
        // both values of `m_j` is never reached.
        self.sorted.clear();
        self.sorted.extend_from_slice(&self.path);
        self.sorted.sort_by_key(|&(player, _)| player);
        let mut reachable = true;
        self.sorted.dedup_by(|b, a| {
            let same = a.0 == b.0;
            reachable &= !same || a.1 == b.1;
            same
        });
        if !reachable {
            return;
        }
        let d = self.sorted.len();
        let scale = value / (d as f64).exp2();
        for bits in 0u64..(1u64 << d) {
            self.key.clear();
            let mut coef = scale;
            for (i, &(player, s)) in self.sorted.iter().enumerate() {
                if bits >> i & 1 == 1 {
                    coef *= s;
                    self.key.push(player);
                }
            }
            // Look up by slice; allocate only for a frequency not seen before.
            match acc.get_mut(&self.key[..]) {
                Some(c) => *c += coef,
                None => {
                    acc.insert(self.key.clone(), coef);
                }
            }
        }
    }
}

/// A multiplicative hash (the rustc/Firefox "Fx" scheme): the keys are short lists of player
/// indices from our own trees, so SipHash's protection against chosen keys buys nothing, and
/// hashing is most of the extraction's time.
#[derive(Clone, Copy, Default)]
struct FastHash;

struct FastHasher(u64);

impl BuildHasher for FastHash {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher(0)
    }
}

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::proxyspex::gbt::{boost, BoostParams, Rows};
    use crate::design::{rng, uniform::random_masks};
    use crate::mask::{Mask, MaskBatch};

    fn all_masks(n: usize) -> MaskBatch {
        let mut b = MaskBatch::with_capacity(n, 1 << n);
        for x in 0u64..(1 << n) {
            b.push_words(&[x]);
        }
        b
    }

    #[test]
    fn sign_convention_on_a_hand_built_stump() {
        // Player 2 ablated -> 1.0, kept -> 3.0: f = 2 − (−1)^{m_2}.
        let tree = Tree {
            nodes: vec![
                Node::Split { feature: 2, left: 1, right: 2 },
                Node::Leaf { value: 1.0 },
                Node::Leaf { value: 3.0 },
            ],
        };
        let f = tree_to_fourier(&tree, 4);
        assert_eq!(f.get(&Subset::empty()), 2.0);
        assert_eq!(f.get(&Subset::new(vec![2])), -1.0);
        assert_eq!(f.len(), 2);
        assert_eq!(f.eval(Mask::parse("0000").unwrap().as_ref()), 1.0);
        assert_eq!(f.eval(Mask::parse("0010").unwrap().as_ref()), 3.0);
    }

    #[test]
    fn fitted_ensemble_matches_brute_force_on_every_mask() {
        for (n, depth, seed) in [(6, 3, 1u64), (8, 5, 2), (10, 4, 3)] {
            let train = random_masks(n, 600, &mut rng(seed, 0));
            let y: Vec<f64> = train
                .iter()
                .map(|m| {
                    let k = m.count_kept() as f64;
                    (k * 0.7).sin() + if m.get(1) && !m.get(3) { 2.0 } else { 0.0 } + if m.get(0) { 0.5 } else { -0.25 }
                })
                .collect();
            let p = BoostParams {
                max_depth: depth,
                learning_rate: 0.3,
                max_trees: 40,
                early_stopping_rounds: 0,
                min_samples_leaf: 3,
                l2: 0.5,
                subsample: 1.0,
            };
            let fit = boost(&Rows::all(train.as_slice(), &y), None, &p, &mut rng(0, 0));
            assert!(fit.ensemble.trees.iter().any(|t| t.leaves() > 4), "trees must be deep enough to test");
            let f = ensemble_to_fourier(&fit.ensemble, n);
            assert!(f.degree() <= depth);
            let all = all_masks(n);
            let from_fourier = f.eval_batch(all.as_slice());
            for (m, ff) in all.iter().zip(from_fourier) {
                let direct = fit.ensemble.predict(m.words());
                assert!((direct - ff).abs() < 1e-10, "n={n} mask {m}: ensemble {direct} vs Fourier {ff}");
            }
        }
    }

    #[test]
    fn repeated_player_on_a_path_is_still_exact() {
        // Not produced by our trainer, but the extraction must not depend on that.
        let tree = Tree {
            nodes: vec![
                Node::Split { feature: 0, left: 1, right: 2 },
                Node::Split { feature: 0, left: 3, right: 4 },
                Node::Leaf { value: 5.0 },
                Node::Leaf { value: -2.0 },
                Node::Leaf { value: 7.0 }, // unreachable: m_0 = 0 and m_0 = 1
            ],
        };
        let f = tree_to_fourier(&tree, 2);
        for m in all_masks(2).iter() {
            assert!((f.eval(m) - tree.predict(m.words())).abs() < 1e-12, "mask {m}");
        }
    }
}
