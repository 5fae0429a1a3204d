//! Fourier ↔ Möbius conversion against brute force over all 2^n masks.
//!
//! `F` and `M` are computed independently from the function's values (Walsh–Hadamard definition and
//! Möbius inversion), never from each other.

mod common;

use common::{assert_close, subset_of};
use rand::Rng;
use spex::mask::Mask;
use spex::subset::Subset;
use spex::transform::moebius::{ExpansionError, MAX_EXPANSION_ORDER};
use spex::transform::{Fourier, Moebius, Sparse};

/// Every entry of `got` (absent = 0) against the table `want` indexed by bitmask.
fn assert_matches_table<B: spex::transform::Basis>(got: &Sparse<B>, want: &[f64], tol: f64, what: &str) {
    for (m, &w) in want.iter().enumerate() {
        assert_close(got.get(&subset_of(m as u32)), w, tol, &format!("{what} at {}", subset_of(m as u32)));
    }
    // And nothing outside the table (every stored key is some mask's subset, but check sizes too).
    assert!(got.len() <= want.len(), "{what}: {} entries for {} subsets", got.len(), want.len());
}

#[test]
fn dense_random_functions_match_brute_force() {
    for n in 1..=10 {
        let f = common::dense_function(n, 100 + n as u64);
        let f_table = common::fourier_table(&f, n);
        let m_table = common::moebius_table(&f, n);
        let tol = 1e-11 * (1u64 << n) as f64;

        let moebius = common::fourier_from_table(&f_table, n).to_moebius();
        assert_matches_table(&moebius, &m_table, tol, &format!("n={n} F→M"));
        let fourier = common::moebius_from_table(&m_table, n).to_fourier();
        assert_matches_table(&fourier, &f_table, tol, &format!("n={n} M→F"));
    }
}

#[test]
fn sparse_low_degree_functions_match_brute_force() {
    for (n, seed) in [(6, 1), (8, 2), (10, 3)] {
        let fourier = common::sparse_fourier(n, 15, 4, seed);
        let values = common::values_of_fourier(&fourier);
        let m_table = common::moebius_table(&values, n);
        let moebius = fourier.to_moebius();
        assert_matches_table(&moebius, &m_table, 1e-10, &format!("n={n}"));
        // The Möbius form of a degree-4 Fourier form has degree ≤ 4: nothing spurious above it.
        assert!(moebius.degree() <= 4);
        // Evaluating either form gives the function.
        for (m, v) in values.iter().enumerate() {
            let mask = Mask::from_subset(n, &subset_of(m as u32));
            assert_close(moebius.eval(mask.as_ref()), *v, 1e-10, "Möbius eval");
        }
    }
}

#[test]
fn round_trips_on_many_players() {
    for seed in 0..5 {
        let f = common::sparse_fourier(40, 30, 6, seed);
        let back = f.to_moebius().to_fourier();
        assert_eq!(back.len(), f.iter().filter(|(_, c)| *c != 0.0).count(), "seed {seed}: support changed");
        for (k, c) in f.iter() {
            assert_close(back.get(k), c, 1e-12, &format!("seed {seed} F({k})"));
        }
        let m = Moebius::from_pairs(40, f.iter().map(|(k, c)| (k.clone(), c)));
        let m_back = m.to_fourier().to_moebius();
        assert_eq!(m_back.len(), m.iter().filter(|(_, c)| *c != 0.0).count());
        for (k, c) in m.iter() {
            assert_close(m_back.get(k), c, 1e-12, &format!("seed {seed} M({k})"));
        }
    }
}

#[test]
fn large_inputs_take_the_parallel_path_and_stay_exact() {
    // ~3000 coefficients of order ≤ 6 is ≈ 10^5 subset terms: several parallel chunks.
    let f = common::sparse_fourier(60, 3000, 6, 77);
    let m = f.to_moebius();
    let m2 = f.to_moebius();
    assert_eq!(m, m2, "conversion must be deterministic");
    let back = m.to_fourier();
    for (k, c) in f.iter() {
        assert_close(back.get(k), c, 1e-11, &format!("F({k})"));
    }
    let mut r = common::rng(5);
    for _ in 0..50 {
        let bits: Vec<bool> = (0..60).map(|_| r.random_bool(0.5)).collect();
        let mask = Mask::from_bools(&bits);
        assert_close(m.eval(mask.as_ref()), f.eval(mask.as_ref()), 1e-9, "eval");
    }
}

#[test]
fn and_function_stays_sparse_in_moebius_form() {
    // f = m0 m3 m5: one Möbius term, 8 Fourier terms; converting back must cancel the rest exactly.
    let and = Moebius::from_pairs(8, [(Subset::new(vec![0, 3, 5]), 2.5)]);
    let fourier = and.to_fourier();
    assert_eq!(fourier.len(), 8);
    for (k, c) in fourier.iter() {
        let expected = 2.5 / 8.0 * if k.len() % 2 == 0 { 1.0 } else { -1.0 };
        assert_eq!(c, expected, "F({k})");
    }
    let back = fourier.to_moebius();
    assert_eq!(back.len(), 1);
    assert_eq!(back.get(&Subset::new(vec![0, 3, 5])), 2.5);
}

#[test]
fn order_limit_is_an_error_not_a_hang() {
    let order = MAX_EXPANSION_ORDER + 1;
    let f = Fourier::from_pairs(100, [(Subset::new((0..order as u32).collect()), 1.0)]);
    assert_eq!(f.try_to_moebius(), Err(ExpansionError { order, limit: MAX_EXPANSION_ORDER }));
    let m = Moebius::from_pairs(100, [(Subset::new((0..order as u32).collect()), 1.0)]);
    assert!(m.try_to_fourier().is_err());
}
