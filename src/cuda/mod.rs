//! The CUDA path: the masking and scoring kernels of `kernels/*.cu`, compiled to PTX at build
//! time and embedded (`ptx`), launched through cudarc's driver API (feature `cuda`).
//!
//! * [`launch`]: the launch shapes of every kernel, plain arithmetic compiled in every build, so
//!   the kernels' host emulation (`tests/kernels_emulated.rs`) runs them exactly as launched.
//! * `Gpu`: one device — context, compute and copy streams, the loaded kernels. Creating one on
//!   a machine without a driver or device is a `CudaError`, never a panic.
//! * `kernels`: typed launches of every kernel; each has a CPU twin in the reference path
//!   (`model::ops`, `value::ablate`) that the GPU tests (`tests/gpu.rs`) compare against.
//! * `candle_ops` (feature `candle-cuda`): kernels applied to candle's CUDA tensors in place.
//! * `stream`: pinned host memory, double-buffered so that the upload of batch `i + 1`
//!   overlaps the compute of batch `i`, and pinned read-back of values.
//!
//! cudarc loads `libcuda` when first used (dynamic loading), so this module builds and links on
//! machines with no CUDA driver; `Gpu::new` probes for the library before touching it.

#[cfg(feature = "candle-cuda")]
pub(crate) mod candle_ops;
#[cfg(feature = "cuda")]
mod device;
#[cfg(feature = "cuda")]
pub mod kernels;
pub mod launch;
#[cfg(feature = "candle-cuda")]
pub mod lm;
#[cfg(feature = "cuda")]
pub mod ptx;
#[cfg(feature = "cuda")]
pub mod stream;

#[cfg(feature = "cuda")]
pub use device::{device_count, device_name, CudaError, Gpu};
