//! The fast Walsh–Hadamard transform against its O(N²) definition.

mod common;

use rand::Rng;
use spex::transform::fwht::{fwht, fwht_blocks};

/// `y[j] = Σ_l x[l] (−1)^{popcount(j ∧ l)}`, term by term.
fn slow_wht(x: &[f64]) -> Vec<f64> {
    (0..x.len())
        .map(|j| x.iter().enumerate().map(|(l, &v)| if (j & l).count_ones() % 2 == 0 { v } else { -v }).sum())
        .collect()
}

fn random_vec(len: usize, seed: u64) -> Vec<f64> {
    let mut r = common::rng(seed);
    (0..len).map(|_| r.random_range(-1.0..1.0)).collect()
}

#[test]
fn matches_definition_for_every_size_up_to_2_pow_11() {
    for b in 0..=11 {
        let x = random_vec(1 << b, b as u64);
        let mut y = x.clone();
        fwht(&mut y);
        let want = slow_wht(&x);
        for (j, (a, w)) in y.iter().zip(&want).enumerate() {
            common::assert_close(*a, *w, 1e-11 * (1 << b) as f64, &format!("b={b} j={j}"));
        }
    }
}

#[test]
fn unit_vectors_give_rows_of_the_hadamard_matrix() {
    // Exact: a unit impulse at l transforms to the signs (−1)^{popcount(j ∧ l)}.
    let len = 64;
    for l in [0, 1, 5, 42, 63] {
        let mut x = vec![0.0; len];
        x[l] = 1.0;
        fwht(&mut x);
        for (j, v) in x.iter().enumerate() {
            assert_eq!(*v, if (j & l).count_ones() % 2 == 0 { 1.0 } else { -1.0 }, "l={l} j={j}");
        }
    }
}

#[test]
fn applying_twice_scales_by_length() {
    let x = random_vec(256, 7);
    let mut y = x.clone();
    fwht(&mut y);
    fwht(&mut y);
    for (a, b) in y.iter().zip(&x) {
        common::assert_close(*a, 256.0 * b, 1e-10, "double transform");
    }
}

#[test]
fn blocks_are_transformed_independently() {
    let block = 32;
    let x = random_vec(block * 7, 11);
    let mut y = x.clone();
    fwht_blocks(&mut y, block);
    for (got, chunk) in y.chunks(block).zip(x.chunks(block)) {
        let want = slow_wht(chunk);
        for (a, w) in got.iter().zip(&want) {
            common::assert_close(*a, *w, 1e-12, "block");
        }
    }
}

#[test]
#[should_panic(expected = "not a power of two")]
fn rejects_non_power_of_two() {
    fwht(&mut [1.0, 2.0, 3.0]);
}
