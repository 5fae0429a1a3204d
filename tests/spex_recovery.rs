//! SPEX on planted sparse functions: exact support recovery noise-free, graceful under noise.

use spex::decode::spex::{decode, SpexDecoderConfig};
use spex::design::spex::{choose_parameters, SpexDesign};
use spex::design::{rng, uniform::random_masks};
use spex::faithfulness::faithfulness;
use spex::planted::{planted_fourier, PlantedGame};
use spex::value::ValueFunction;

struct Outcome {
    exact_support: bool,
    r2: f64,
    max_coef_error: f64,
}

fn run(
    n: usize,
    terms: usize,
    degree: usize,
    budget: usize,
    noise: f64,
    seed: u64,
    config: &SpexDecoderConfig,
) -> Outcome {
    let truth = planted_fourier(n, terms, degree, &mut rng(seed, 10));
    let (b, t) = choose_parameters(n, budget, 5).unwrap();
    let design = SpexDesign::new(n, b, t, &mut rng(seed, 0)).unwrap();
    let mut game = PlantedGame::new(truth.clone(), noise, rng(seed, 11));
    let values = game.evaluate(design.masks().as_slice()).unwrap();
    let decoded = decode(&design, &values, config).unwrap();
    let holdout = random_masks(n, 1000, &mut rng(seed, 1));
    let exact = truth.eval_batch(holdout.as_slice());
    let r2 = faithfulness(&decoded.fourier, holdout.as_slice(), &exact).r2.unwrap();
    let mut got: Vec<_> = decoded.fourier.iter().filter(|(_, v)| v.abs() > 1e-6).map(|(k, _)| k.clone()).collect();
    let mut want: Vec<_> = truth.iter().map(|(k, _)| k.clone()).collect();
    got.sort();
    want.sort();
    let max_coef_error = truth.iter().map(|(k, v)| (decoded.fourier.get(k) - v).abs()).fold(0.0, f64::max);
    Outcome { exact_support: got == want, r2, max_coef_error }
}

#[test]
fn noise_free_recovery_is_exact_across_sizes() {
    let config = SpexDecoderConfig::default();
    for (n, terms, budget) in [(16, 10, 6_000), (64, 20, 10_000), (256, 40, 20_000), (1000, 20, 21_504)] {
        for seed in 0..3 {
            let o = run(n, terms, 5, budget, 0.0, seed, &config);
            assert!(o.exact_support, "n={n} seed={seed}: support not recovered");
            assert!(o.r2 > 0.999, "n={n} seed={seed}: R² {}", o.r2);
            assert!(o.max_coef_error < 1e-9, "n={n} seed={seed}: coefficient error {}", o.max_coef_error);
        }
    }
}

#[test]
fn hard_decoding_and_no_refit_also_recover_noise_free() {
    let config = SpexDecoderConfig { soft: false, refit: false, ..Default::default() };
    let o = run(200, 30, 4, 8_000, 0.0, 7, &config);
    assert!(o.exact_support && o.r2 > 0.999 && o.max_coef_error < 1e-9);
}

/// A refit beyond its work limit is skipped, said so, and leaves exactly the peeled values.
#[test]
fn a_refit_too_large_is_skipped_and_reported() {
    let n = 64;
    let truth = planted_fourier(n, 20, 3, &mut rng(4, 10));
    let (b, t) = choose_parameters(n, 10_000, 5).unwrap();
    let design = SpexDesign::new(n, b, t, &mut rng(4, 0)).unwrap();
    let values = PlantedGame::new(truth, 0.3, rng(4, 11)).evaluate(design.masks().as_slice()).unwrap();
    let with = |config: SpexDecoderConfig| decode(&design, &values, &config).unwrap();
    let refit = with(SpexDecoderConfig::default());
    let skipped = with(SpexDecoderConfig { refit_max_work: 1e6, ..Default::default() });
    let peeled = with(SpexDecoderConfig { refit: false, ..Default::default() });
    assert!(!refit.diagnostics.refit_skipped && skipped.diagnostics.refit_skipped);
    assert!(!peeled.diagnostics.refit_skipped, "no refit asked for is not a skipped one");
    assert_eq!(skipped.fourier, peeled.fourier);
    assert_ne!(skipped.fourier, refit.fourier, "under noise the refit moves the coefficients");
}

#[test]
fn noise_degrades_gracefully() {
    let config = SpexDecoderConfig::default();
    // Coefficients are ≥ 0.5 in magnitude; noise of sd 0.1 and 0.3 per sample.
    let mild = run(64, 20, 3, 10_000, 0.1, 3, &config);
    assert!(mild.r2 > 0.99, "R² {} at noise 0.1", mild.r2);
    let strong = run(64, 20, 3, 10_000, 0.3, 3, &config);
    assert!(strong.r2 > 0.95, "R² {} at noise 0.3", strong.r2);
}

#[test]
fn lasso_baseline_recovers_low_order_sparse_function() {
    use spex::decode::lasso::{decode as lasso, LassoConfig};
    let n = 30;
    let truth = planted_fourier(n, 8, 2, &mut rng(5, 10));
    let masks = random_masks(n, 3000, &mut rng(5, 0));
    let values = truth.eval_batch(masks.as_slice());
    let fit = lasso(masks.as_slice(), &values, &LassoConfig::default()).unwrap();
    assert_eq!(fit.diagnostics.max_order, 2);
    let holdout = random_masks(n, 1000, &mut rng(5, 1));
    let r2 = faithfulness(&fit.fourier, holdout.as_slice(), &truth.eval_batch(holdout.as_slice())).r2.unwrap();
    assert!(r2 > 0.999, "LASSO R² {r2}");
    for (k, v) in truth.iter() {
        assert!((fit.fourier.get(k) - v).abs() < 0.01, "coefficient {k}: {} vs {v}", fit.fourier.get(k));
    }
    // A third-order term is outside an order-2 LASSO's reach: R² drops, SPEX would not.
    let mut hard = truth.clone();
    hard.add(spex::subset::Subset::new(vec![1, 2, 3]), 2.0);
    let values = hard.eval_batch(masks.as_slice());
    let fit = lasso(masks.as_slice(), &values, &LassoConfig::default()).unwrap();
    let r2 = faithfulness(&fit.fourier, holdout.as_slice(), &hard.eval_batch(holdout.as_slice())).r2.unwrap();
    assert!(r2 < 0.9, "order-2 LASSO cannot see an order-3 term, yet R² = {r2}");
}

/// Values of any magnitude decode to the same interactions in their units: sums of squares
/// overflowed at 1e200 (SPEX and LASSO found nothing) and tolerances swallowed 1e-20 (R² read
/// "undefined").
#[test]
fn every_method_decodes_values_of_any_magnitude() {
    use spex::explain::Explainer;
    use spex::mask::MaskRef;
    use spex::plan::Method;
    use spex::value::PerMask;
    let f = |m: MaskRef<'_>| 2.0 * m.get(0) as u8 as f64 + 3.0 * (m.get(1) && m.get(2)) as u8 as f64 - 0.5;
    for method in [Method::Spex, Method::Uniform, Method::ProxySpex, Method::Exhaustive] {
        let explain = |unit: f64| {
            let explainer =
                Explainer::new(12).method(method).budget(if method == Method::Spex { 21_504 } else { 5_000 });
            explainer.explain(&mut PerMask(move |m: MaskRef<'_>| unit * f(m))).unwrap()
        };
        let reference = explain(1.0);
        assert!(reference.faithfulness.r2.unwrap() > 0.99, "{method}");
        // SPEX and the exact table are exact; LASSO's and the trees' fits depend a little on the
        // units (their stopping rules), not on whether squares overflow.
        let tol = if matches!(method, Method::Spex | Method::Exhaustive) { 1e-9 } else { 1e-3 };
        for unit in [1e-100, 1e-20, 1e200, 1e300] {
            let scaled = explain(unit);
            let r2 = scaled.faithfulness.r2.unwrap_or(f64::NAN);
            assert!((r2 - reference.faithfulness.r2.unwrap()).abs() < tol, "{method} at {unit}: R² {r2}");
            for (k, v) in reference.fourier.iter().filter(|(_, v)| v.abs() > 0.1) {
                let got = scaled.fourier.get(k) / unit;
                assert!((got - v).abs() < tol * (1.0 + v.abs()), "{method} at {unit}: {k}: {got} vs {v}");
            }
        }
    }
}
