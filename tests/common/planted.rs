//! Planted test functions shared by the ProxySPEX tests and benchmark.
#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use spex::decode::proxyspex::gbt::{Node, Tree};
use spex::mask::MaskSlice;
use spex::transform::Fourier;

/// `terms` Fourier coefficients on random supports over `n` players (degrees uniform in
/// `1..=max_degree`, coefficients `±U(0.5, 1.5)`), no constant term: the crate's planted
/// function with its constant removed.
pub fn planted_fourier(n: usize, terms: usize, max_degree: usize, seed: u64) -> Fourier {
    let f = spex::planted::planted_fourier(n, terms, max_degree, &mut ChaCha8Rng::seed_from_u64(seed));
    Fourier::from_pairs(n, f.iter().filter(|(k, _)| !k.is_empty()).map(|(k, v)| (k.clone(), v)))
}

/// A random full binary tree of depth `depth` over `n` players (no player twice on a path),
/// leaves `U(−2, 2)`.
pub fn planted_tree(n: usize, depth: usize, seed: u64) -> Tree {
    fn grow(nodes: &mut Vec<Node>, at: usize, depth: usize, path: &mut Vec<u32>, n: usize, r: &mut ChaCha8Rng) {
        if depth == 0 {
            nodes[at] = Node::Leaf { value: r.random_range(-2.0..2.0) };
            return;
        }
        let feature = loop {
            let f = r.random_range(0..n as u32);
            if !path.contains(&f) {
                break f;
            }
        };
        let (left, right) = (nodes.len(), nodes.len() + 1);
        nodes.push(Node::Leaf { value: 0.0 });
        nodes.push(Node::Leaf { value: 0.0 });
        nodes[at] = Node::Split { feature, left: left as u32, right: right as u32 };
        path.push(feature);
        grow(nodes, left, depth - 1, path, n, r);
        grow(nodes, right, depth - 1, path, n, r);
        path.pop();
    }
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let mut nodes = vec![Node::Leaf { value: 0.0 }];
    grow(&mut nodes, 0, depth, &mut Vec::new(), n, &mut r);
    Tree { nodes }
}

/// `count` planted trees of depth `depth`; the planted function is their sum.
pub fn planted_forest(n: usize, count: usize, depth: usize, seed: u64) -> Vec<Tree> {
    (0..count).map(|t| planted_tree(n, depth, seed.wrapping_mul(1000).wrapping_add(t as u64))).collect()
}

/// The value of the sum of `trees` at every mask.
pub fn forest_values(trees: &[Tree], masks: MaskSlice<'_>) -> Vec<f64> {
    masks.iter().map(|m| trees.iter().map(|t| t.predict(m.words())).sum()).collect()
}
