//! # spex — batch ablation engine for interaction attribution
//!
//! spex explains a black-box function of `n` players (input tokens, attention heads, training
//! examples) by querying it on many masks, where a mask keeps (1) or ablates (0) each player, and
//! decoding the answers into a sparse set of *interactions*: the groups of players that jointly
//! move the output.
//!
//! The crate is layered so that the math knows nothing of models:
//!
//! * [`mask`], [`subset`]: bit-packed masks and player sets.
//! * [`design`]: which masks to query.
//! * [`transform`]: sparse Fourier and Möbius representations, the Walsh–Hadamard transform.
//! * [`decode`]: from sampled values back to a sparse Fourier representation.
//! * [`faithfulness`]: R² of a representation on held-out masks.
//! * [`value`]: the one trait that connects anything that can be queried, the driver protocol,
//!   and the built-in demo.
//! * [`plan`], [`engine`], [`explain`]: a method's plan, the batched evaluation loop, and the
//!   [`explain::Explainer`] front door that ties them to the decoders.
//! * [`store`], [`rundir`], [`runner`]: the crash-safe sample store, run directories, and
//!   running a plan into one (resume, shards, merge).
//! * [`io`], [`report`]: text formats, the result schema and the reports (CSV, shapiq, HTML).
//! * [`bch`], [`planted`], [`bench`](mod@bench): BCH codes for the SPEX delays, planted test functions, and
//!   benchmarks that print figures.
#![warn(missing_docs)]

pub mod bch;
pub mod bench;
pub mod cuda;
pub mod decode;
pub mod design;
pub mod engine;
pub mod explain;
pub mod faithfulness;
pub mod io;
pub mod mask;
pub mod model;
pub mod plan;
pub mod planted;
pub mod report;
pub mod rundir;
pub mod runner;
pub mod store;
pub mod subset;
pub mod sweep;
pub mod transform;
pub mod value;
