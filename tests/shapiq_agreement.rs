//! Agreement with the reference implementation: shapiq 1.4.1's `MoebiusConverter`.
//!
//! `tests/fixtures/shapiq_indices.json` is produced by `scripts/shapiq_fixtures.py` (run it with the
//! shapiq environment to regenerate). Each case gives sparse Möbius coefficients and shapiq's output
//! for SV, BV, SII, k-SII, STII, FSII and FBII at orders 1–3. We convert the Möbius form to Fourier
//! (our input format), compute the index and compare every entry to 1e-9.

use std::collections::HashMap;

use serde::Deserialize;
use spex::subset::Subset;
use spex::transform::{interactions, Index, Moebius};

#[derive(Deserialize)]
struct Fixture {
    shapiq_version: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    n: usize,
    moebius: Vec<(Subset, f64)>,
    results: Vec<Expected>,
}

#[derive(Deserialize)]
struct Expected {
    index: String,
    order: usize,
    baseline_value: f64,
    values: Vec<(Subset, f64)>,
}

const TOL: f64 = 1e-9;

fn fixture() -> Fixture {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/shapiq_indices.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture present")).expect("fixture parses")
}

#[test]
fn matches_shapiq_moebius_converter() {
    let fixture = fixture();
    assert_eq!(fixture.shapiq_version, "1.4.1");
    assert_eq!(fixture.cases.len(), 3);
    let mut compared = 0;
    for case in &fixture.cases {
        let moebius = Moebius::from_pairs(case.n, case.moebius.iter().cloned());
        let fourier = moebius.to_fourier();
        assert_eq!(case.results.len(), 2 + 5 * 3, "{}: SV, BV and five indices at three orders", case.name);
        for expected in &case.results {
            let index: Index = expected.index.parse().expect("shapiq spelling parses");
            let what = format!("{} {} order {}", case.name, expected.index, expected.order);
            let got = interactions(&fourier, index, expected.order).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(got.max_order, expected.order, "{what}");

            let mut want: HashMap<Subset, f64> = expected.values.iter().cloned().collect();
            // shapiq keeps the empty set out of SII/SV and reports it only as the baseline; where it
            // is stored, it must equal the baseline too.
            let empty = want.entry(Subset::empty()).or_insert(expected.baseline_value);
            assert!((*empty - expected.baseline_value).abs() <= TOL, "{what}: shapiq's ∅ vs baseline");
            let ours: HashMap<Subset, f64> = got.values.iter().cloned().collect();
            assert!(ours.contains_key(&Subset::empty()), "{what}: no ∅ entry");

            let mut keys: Vec<&Subset> = want.keys().chain(ours.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let (w, o) = (want.get(k).copied().unwrap_or(0.0), ours.get(k).copied().unwrap_or(0.0));
                assert!((w - o).abs() <= TOL * (1.0 + w.abs()), "{what} at {k}: shapiq {w}, ours {o}");
                compared += 1;
            }
        }
    }
    assert!(compared > 1000, "fixture too thin: {compared} comparisons");
}

#[test]
fn fixture_round_trips_through_fourier() {
    // The test above feeds shapiq's Möbius input through our Möbius → Fourier conversion; make sure
    // that step alone is lossless on these inputs, so a mismatch points at the index.
    for case in fixture().cases {
        let moebius = Moebius::from_pairs(case.n, case.moebius.iter().cloned());
        let back = moebius.to_fourier().to_moebius();
        assert_eq!(back.len(), moebius.len(), "{}", case.name);
        for (k, v) in moebius.iter() {
            assert!((back.get(k) - v).abs() <= 1e-12, "{} M({k})", case.name);
        }
    }
}
