//! Decoders: from sampled values to a sparse Fourier representation.

pub mod regress;
pub mod proxyspex;
