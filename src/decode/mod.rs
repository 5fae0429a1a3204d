//! Decoders: from sampled values to a sparse Fourier representation.
//!
//! * [`spex`]: the SPEX peeling decoder for values of a SPEX design.
//! * [`regress`]: regressions on a fixed support (refits, ridge with cross-validation).

pub mod regress;
pub mod spex;

/// Why a decoder refused its input.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    /// The number of values differs from the number of masks.
    #[error("expected {expected} values (one per mask), got {found}")]
    WrongCount {
        /// Masks in the design.
        expected: usize,
        /// Values given.
        found: usize,
    },
    /// A value is NaN or infinite.
    #[error("value of sample {index} (0-based) is {value}; values must be finite numbers")]
    NonFinite {
        /// 0-based sample index.
        index: usize,
        /// The offending value.
        value: f64,
    },
}

/// Checks that there is one finite value per mask.
pub(crate) fn check_values(values: &[f64], expected: usize) -> Result<(), DecodeError> {
    if values.len() != expected {
        return Err(DecodeError::WrongCount { expected, found: values.len() });
    }
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(DecodeError::NonFinite { index, value: values[index] }),
        None => Ok(()),
    }
}
