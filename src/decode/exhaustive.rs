//! The exact transform of a fully tabulated function: with every one of the `2^n` masks queried
//! (mask `i` keeps player `j` iff bit `j` of `i` is set), one Walsh–Hadamard transform gives every
//! Fourier coefficient exactly. `--method auto` takes this route whenever `2^n` fits the budget:
//! for a handful of players it is cheaper than any sampled design and leaves nothing to estimate.

use serde::{Deserialize, Serialize};

use super::DecodeError;
use crate::mask::{Mask, MaskBatch};
use crate::subset::Subset;
use crate::transform::fwht::fwht;
use crate::transform::Fourier;

/// Most players tabulated exhaustively (`2^24` masks).
pub const MAX_PLAYERS: usize = 24;

/// What the exhaustive decoder reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExhaustiveDiagnostics {
    /// Masks tabulated, `2^n`.
    pub masks: usize,
    /// Coefficients kept (the non-zero ones).
    pub nonzero: usize,
}

/// Mask `index` of the table over `n` players.
pub fn mask(n: usize, index: usize) -> Mask {
    let bits: Vec<bool> = (0..n).map(|j| index >> j & 1 == 1).collect();
    Mask::from_bools(&bits)
}

/// Every mask over `n` players, in table order.
pub fn masks(n: usize) -> MaskBatch {
    let mut out = MaskBatch::with_capacity(n, 1 << n);
    for i in 0..1usize << n {
        out.push(mask(n, i).as_ref()).expect("same players");
    }
    out
}

/// The Fourier coefficients of the function whose value at mask `i` is `values[i]`; coefficients
/// below `1e-12` of the largest are rounding noise and dropped.
pub fn decode(n: usize, values: &[f64]) -> Result<(Fourier, ExhaustiveDiagnostics), DecodeError> {
    let expected = 1usize << n;
    if values.len() != expected {
        return Err(DecodeError::WrongCount { expected, found: values.len() });
    }
    if let Some(index) = values.iter().position(|v| !v.is_finite()) {
        return Err(DecodeError::NonFinite { index, value: values[index] });
    }
    let mut table = values.to_vec();
    fwht(&mut table);
    let scale = 1.0 / expected as f64;
    let largest = table.iter().fold(0.0f64, |m, v| m.max(v.abs())) * scale;
    let kept = table.iter().enumerate().filter(|(_, v)| (*v * scale).abs() > 1e-12 * largest);
    let pairs =
        kept.map(|(k, v)| (Subset::from_sorted((0..n as u32).filter(|&j| k >> j & 1 == 1).collect()), v * scale));
    let fourier = Fourier::from_pairs(n, pairs);
    let nonzero = fourier.len();
    Ok((fourier, ExhaustiveDiagnostics { masks: expected, nonzero }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_of_a_sparse_function_decodes_to_it() {
        let f = Fourier::from_pairs(
            5,
            [(Subset::empty(), 1.5), (Subset::new(vec![1]), -2.0), (Subset::new(vec![0, 3, 4]), 0.25)],
        );
        let table = masks(5);
        let values = f.eval_batch(table.as_slice());
        let (g, d) = decode(5, &values).unwrap();
        assert_eq!(d, ExhaustiveDiagnostics { masks: 32, nonzero: 3 });
        for (k, v) in f.iter() {
            assert!((g.get(k) - v).abs() < 1e-12, "{k}");
        }
        assert!(decode(5, &values[..31]).is_err());
    }

    #[test]
    fn mask_bits_follow_the_index() {
        assert_eq!(mask(4, 0b1010).to_string(), "0101");
    }
}
