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

use super::gbt::{Ensemble, Node, Tree};
use crate::subset::Subset;
use crate::transform::Fourier;

/// Frequencies are keyed by their sorted players while summing.
type Key = Vec<u32>;

/// The exact Fourier expansion of `ensemble` over `n` players (its base goes to the empty set).
/// Coefficients that cancel to exactly zero are dropped.
pub fn ensemble_to_fourier(ensemble: &Ensemble, n: usize) -> Fourier {
    let mut acc: HashMap<Key, f64> = HashMap::new();
    acc.insert(Vec::new(), ensemble.base);
    let mut path = Vec::new();
    for tree in &ensemble.trees {
        if !tree.nodes.is_empty() {
            add_subtree(tree, 0, &mut path, &mut acc);
        }
    }
    Fourier::from_pairs(n, acc.into_iter().filter(|&(_, v)| v != 0.0).map(|(k, v)| (Subset::from_sorted(k), v)))
}

/// The exact Fourier expansion of one tree.
pub fn tree_to_fourier(tree: &Tree, n: usize) -> Fourier {
    ensemble_to_fourier(&Ensemble { base: 0.0, trees: vec![tree.clone()] }, n)
}

/// Adds the leaves under `at` to `acc`; `path` holds `(player, sign)` of the splits above it.
fn add_subtree(tree: &Tree, at: usize, path: &mut Vec<(u32, f64)>, acc: &mut HashMap<Key, f64>) {
    match tree.nodes[at] {
        Node::Leaf { value } => add_leaf(value, path, acc),
        Node::Split { feature, left, right } => {
            path.push((feature, 1.0));
            add_subtree(tree, left as usize, path, acc);
            path.last_mut().expect("just pushed").1 = -1.0;
            add_subtree(tree, right as usize, path, acc);
            path.pop();
        }
    }
}

fn add_leaf(value: f64, path: &[(u32, f64)], acc: &mut HashMap<Key, f64>) {
    if value == 0.0 {
        return;
    }
    let d = path.len();
    let scale = value / (1u64 << d) as f64;
    // A player met twice on one path would make `[m_j = b]` squared; our trees never split on a
    // player twice (one side would be empty), and the XOR below would still be exact if they did.
    for bits in 0u64..(1u64 << d) {
        let mut sign = scale;
        let mut key: Vec<u32> = Vec::with_capacity(bits.count_ones() as usize);
        for (i, &(player, s)) in path.iter().enumerate() {
            if bits >> i & 1 == 1 {
                sign *= s;
                match key.binary_search(&player) {
                    Ok(pos) => {
                        key.remove(pos);
                    }
                    Err(pos) => key.insert(pos, player),
                }
            }
        }
        *acc.entry(key).or_insert(0.0) += sign;
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
