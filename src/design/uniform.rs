//! Uniformly random masks: the `uniform` baseline design, ProxySPEX's training samples and the
//! held-out masks that faithfulness is measured on.

use rand::RngCore;

use crate::mask::{words_for, MaskBatch};

/// `count` masks over `n` players with every bit an independent fair coin (uniform over subsets).
pub fn random_masks(n: usize, count: usize, rng: &mut impl RngCore) -> MaskBatch {
    let mut batch = MaskBatch::with_capacity(n, count);
    let mut row = vec![0u64; words_for(n)];
    for _ in 0..count {
        row.iter_mut().for_each(|w| *w = rng.next_u64());
        batch.push_words(&row);
    }
    batch
}

/// `count` uniformly random masks drawn in complementary pairs (a mask, then its complement),
/// which cancels the even-order part of the sampling noise in regressions. With an odd `count`
/// the last mask has no partner.
pub fn paired_random_masks(n: usize, count: usize, rng: &mut impl RngCore) -> MaskBatch {
    let mut batch = MaskBatch::with_capacity(n, count);
    let mut row = vec![0u64; words_for(n)];
    for i in 0..count {
        if i % 2 == 0 {
            row.iter_mut().for_each(|w| *w = rng.next_u64());
        } else {
            row.iter_mut().for_each(|w| *w = !*w);
        }
        batch.push_words(&row);
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design::rng;

    #[test]
    fn bits_are_balanced_and_pairs_complementary() {
        let b = random_masks(100, 2000, &mut rng(7, 0));
        let kept: usize = b.iter().map(|m| m.count_kept()).sum();
        let frac = kept as f64 / (100.0 * 2000.0);
        assert!((frac - 0.5).abs() < 0.01, "fraction kept {frac}");
        let p = paired_random_masks(70, 5, &mut rng(7, 0));
        for i in [0, 2] {
            assert_eq!(p.row(i).count_kept() + p.row(i + 1).count_kept(), 70);
            assert!((0..70).all(|j| p.row(i).get(j) != p.row(i + 1).get(j)));
        }
    }
}
