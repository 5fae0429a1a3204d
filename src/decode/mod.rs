//! Decoders: from sampled values to a sparse Fourier representation.
//!
//! * [`spex`]: the SPEX peeling decoder for values of a SPEX design.
//! * [`lasso`]: the LASSO baseline on uniformly random masks.
//! * [`proxyspex`]: ProxySPEX, gradient-boosted trees read off as Fourier coefficients.
//! * [`regress`]: regressions on a fixed support (refits, ridge with cross-validation).
//! * [`exhaustive`]: the exact transform of a function tabulated on all `2^n` masks.

pub mod exhaustive;
pub mod lasso;
pub mod proxyspex;
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
    /// A regression design matrix would be too large.
    #[error(
        "the regression needs {rows} samples × {columns} terms, over the limit of {limit} entries; \
         lower the maximum order or the budget"
    )]
    TooLarge {
        /// Samples.
        rows: usize,
        /// Basis functions.
        columns: usize,
        /// Largest accepted product.
        limit: usize,
    },
    /// ProxySPEX refused its input.
    #[error(transparent)]
    Proxy(#[from] proxyspex::ProxyError),
    /// Too few samples to fit and cross-validate.
    #[error("{samples} samples are too few for this decoder; it needs at least {needed}")]
    TooFewSamples {
        /// Samples given.
        samples: usize,
        /// Samples needed.
        needed: usize,
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
