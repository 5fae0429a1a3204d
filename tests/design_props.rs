//! Property tests of the SPEX design: every sample is `M_c·ℓ + d_p` by definition, the
//! Walsh–Hadamard transform of each block aliases the spectrum exactly as the decoder assumes,
//! and every frequency of weight ≤ t is decoded from its delay signature.

use proptest::prelude::*;
use spex::design::rng;
use spex::design::spex::SpexDesign;
use spex::planted::planted_fourier;
use spex::transform::fwht::fwht;

fn design(n: usize, b: u32, t: usize, seed: u64) -> SpexDesign {
    SpexDesign::new(n, b, t, &mut rng(seed, 0)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn samples_are_span_plus_delay(n in 1usize..200, b in 1u32..6, t in 1usize..6, seed: u64) {
        let d = design(n, b, t, seed);
        let masks = d.masks();
        prop_assert_eq!(masks.len(), d.groups() * d.num_delays() << b);
        prop_assert_eq!(d.delays()[0].as_ref().count_kept(), 0);
        for (index, mask) in masks.iter().enumerate() {
            let per_group = d.num_delays() << b;
            let (c, p, l) = (index / per_group, index % per_group >> b, index % (1 << b));
            for i in 0..n {
                // ℓ's first coordinate is its most significant bit.
                let span = (0..b as usize).fold(false, |acc, j| {
                    acc ^ (d.matrices()[c][j].get(i) && (l >> (b as usize - 1 - j)) & 1 == 1)
                });
                prop_assert_eq!(mask.get(i), span ^ d.delays()[p].get(i), "sample {} player {}", index, i);
            }
        }
    }

    #[test]
    fn block_transforms_alias_the_spectrum(n in 2usize..120, b in 1u32..6, t in 1usize..5, terms in 1usize..30, seed: u64) {
        let d = design(n, b, t, seed);
        let f = planted_fourier(n, terms, t, &mut rng(seed, 9));
        let values = f.eval_batch(d.masks().as_slice());
        let len = d.block_len();
        for (block, chunk) in values.chunks_exact(len).enumerate() {
            let (c, p) = (block / d.num_delays(), block % d.num_delays());
            let mut u = chunk.to_vec();
            fwht(&mut u);
            let mut expected = vec![0.0; len];
            for (k, v) in f.iter() {
                let sign = d.signature(k.players())[p];
                expected[d.bin(c, k.players())] += v * sign;
            }
            for j in 0..len {
                prop_assert!((u[j] / len as f64 - expected[j]).abs() < 1e-9, "group {} delay {} bin {}", c, p, j);
            }
        }
    }

    #[test]
    fn low_weight_frequencies_decode_from_their_signature(n in 1usize..3000, t in 1usize..7, seed: u64) {
        let d = design(n, 1, t, 0);
        let f = planted_fourier(n, 5, t, &mut rng(seed, 3));
        for (k, _) in f.iter() {
            let bits = d.code().signature(k.players());
            let word = d.code().decode_hard(&bits).expect("weight ≤ t decodes");
            prop_assert_eq!(&word.players[..], k.players());
        }
    }
}
