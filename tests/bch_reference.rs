//! The SPEX delay matrix equals the reference's (sparse-transform 0.2.1 over galois 0.4.11) bit
//! for bit; fixture written by scripts/bch_fixtures.py.

use serde::Deserialize;
use spex::bch::BchCode;

#[derive(Deserialize)]
struct Case {
    n: usize,
    t: usize,
    code: (usize, usize),
    delays: Vec<String>,
}

#[test]
fn delays_match_reference_bit_for_bit() {
    let cases: Vec<Case> = serde_json::from_str(include_str!("fixtures/bch_delays.json")).unwrap();
    assert!(cases.len() >= 5);
    for case in cases {
        let code = BchCode::new(case.n, case.t).unwrap();
        assert_eq!(code.code_size(), case.code, "n={} t={}", case.n, case.t);
        let ours: Vec<String> = code.delays().iter().map(|d| d.to_string()).collect();
        assert_eq!(ours.len(), case.delays.len(), "number of delays for n={} t={}", case.n, case.t);
        for (p, (a, b)) in ours.iter().zip(&case.delays).enumerate() {
            assert_eq!(a, b, "delay row {p} for n={} t={}", case.n, case.t);
        }
    }
}
