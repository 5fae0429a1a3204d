//! One CUDA device ([`Gpu`]) and the typed errors of the CUDA path ([`CudaError`]).

use std::sync::Arc;

use cudarc::driver::{sys, CudaContext, CudaFunction, CudaModule, CudaStream, DriverError};

/// Why the CUDA path cannot run or failed.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// The CUDA driver library (`libcuda.so`) is not installed: no GPU path on this machine.
    #[error("no CUDA driver found (libcuda could not be loaded): no GPU available on this machine")]
    NoDriver,
    /// The driver is present but the requested device does not exist.
    #[error("CUDA device {ordinal} requested, but {count} device(s) are visible")]
    NoDevice {
        /// The device index asked for.
        ordinal: usize,
        /// Devices the driver reports.
        count: usize,
    },
    /// The binary carries no PTX the device can run.
    #[error(
        "no embedded PTX for {kernel} runs on compute capability {major}.{minor} (built for sm_{built}); \
         rebuild with SPEX_CUDA_ARCHS including {major}{minor}"
    )]
    NoPtx {
        /// Kernel file stem.
        kernel: String,
        /// Device compute capability, major.
        major: i32,
        /// Device compute capability, minor.
        minor: i32,
        /// Architectures embedded, comma-separated.
        built: String,
    },
    /// The device ran out of memory (the caller may retry with a smaller batch).
    #[error("CUDA out of memory")]
    OutOfMemory,
    /// Any other driver error.
    #[error("CUDA driver error: {0}")]
    Driver(DriverError),
    /// Inconsistent arguments to a kernel launch (shapes, lengths).
    #[error("{0}")]
    Input(String),
}

impl From<DriverError> for CudaError {
    fn from(e: DriverError) -> Self {
        if e.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
            CudaError::OutOfMemory
        } else {
            CudaError::Driver(e)
        }
    }
}

impl CudaError {
    /// Whether a smaller batch might succeed (for [`crate::model::memory::sweep_halving`]).
    pub fn is_oom(&self) -> bool {
        matches!(self, CudaError::OutOfMemory)
    }
}

/// Whether a CUDA driver can be loaded and sees at least one device. Never panics.
pub fn device_count() -> Result<usize, CudaError> {
    if !driver_present() {
        return Err(CudaError::NoDriver);
    }
    match CudaContext::device_count() {
        Ok(n) => Ok(n.max(0) as usize),
        // A driver with no usable device (none installed, or CUDA_VISIBLE_DEVICES empty) fails
        // its initialisation this way: that is zero devices, not a driver failure.
        Err(DriverError(sys::CUresult::CUDA_ERROR_NO_DEVICE)) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// The name of CUDA device `ordinal`, e.g. "NVIDIA H200". Never panics.
pub fn device_name(ordinal: usize) -> Result<String, CudaError> {
    let count = device_count()?;
    if ordinal >= count {
        return Err(CudaError::NoDevice { ordinal, count });
    }
    Ok(CudaContext::new(ordinal)?.name()?)
}

/// Whether libcuda can be loaded (cudarc loads it at run time under `cuda`).
#[cfg(not(feature = "candle-cuda"))]
fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the driver library; touches no CUDA state.
    unsafe { sys::is_culib_present() }
}

/// With `candle-cuda`, candle makes cudarc link libcuda at build time: a program that runs has it.
#[cfg(feature = "candle-cuda")]
fn driver_present() -> bool {
    true
}

/// The kernels of one device, loaded from the embedded PTX.
pub(super) struct Modules {
    pub(super) masking: Arc<CudaModule>,
    pub(super) head_gates: Arc<CudaModule>,
    pub(super) score: Arc<CudaModule>,
}

/// One CUDA device with its streams and loaded kernels.
pub struct Gpu {
    ctx: Arc<CudaContext>,
    /// Where kernels run.
    pub(super) compute: Arc<CudaStream>,
    /// Where host↔device copies run, overlapping the compute stream.
    copy: Arc<CudaStream>,
    pub(super) modules: Modules,
    capability: (i32, i32),
}

impl Gpu {
    /// Opens device `ordinal`: probes for the driver first (creating a context without one
    /// panics inside cudarc), then loads the embedded PTX best suited to the device.
    pub fn new(ordinal: usize) -> Result<Self, CudaError> {
        let count = device_count()?;
        if ordinal >= count {
            return Err(CudaError::NoDevice { ordinal, count });
        }
        let ctx = CudaContext::new(ordinal)?;
        let compute = ctx.new_stream()?;
        Gpu::on_stream(ctx, compute)
    }

    /// Kernels launched on candle's stream of `device` (so they order with candle's own work
    /// without events), copies on a stream of their own.
    #[cfg(feature = "candle-cuda")]
    pub fn from_candle(device: &candle_core::CudaDevice) -> Result<Self, CudaError> {
        let compute = device.cuda_stream();
        Gpu::on_stream(compute.context().clone(), compute)
    }

    /// Loads the embedded PTX best suited to the device into `ctx`.
    fn on_stream(ctx: Arc<CudaContext>, compute: Arc<CudaStream>) -> Result<Self, CudaError> {
        let capability = ctx.compute_capability()?;
        let load = |stem: &str| -> Result<Arc<CudaModule>, CudaError> {
            let src = super::ptx::select(stem, capability)?;
            Ok(ctx.load_module(cudarc::nvrtc::Ptx::from_src(src))?)
        };
        let modules = Modules { masking: load("masking")?, head_gates: load("head_gates")?, score: load("score")? };
        Ok(Gpu { compute, copy: ctx.new_stream()?, ctx, modules, capability })
    }

    /// Every visible device, one [`Gpu`] each (one worker per device on a multi-GPU box).
    pub fn all() -> Result<Vec<Gpu>, CudaError> {
        (0..device_count()?).map(Gpu::new).collect()
    }

    /// The device name, e.g. "NVIDIA H100 80GB HBM3".
    pub fn name(&self) -> Result<String, CudaError> {
        Ok(self.ctx.name()?)
    }

    /// Compute capability `(major, minor)`.
    pub fn capability(&self) -> (i32, i32) {
        self.capability
    }

    /// `(free, total)` device memory in bytes.
    pub fn memory(&self) -> Result<(usize, usize), CudaError> {
        Ok(self.ctx.mem_get_info()?)
    }

    /// The CUDA context.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The stream kernels run on.
    pub fn compute_stream(&self) -> &Arc<CudaStream> {
        &self.compute
    }

    /// The stream host↔device copies run on.
    pub fn copy_stream(&self) -> &Arc<CudaStream> {
        &self.copy
    }

    /// Waits for all work on both streams.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        self.copy.synchronize()?;
        Ok(self.compute.synchronize()?)
    }

    pub(super) fn function(&self, module: &Arc<CudaModule>, name: &str) -> Result<CudaFunction, CudaError> {
        Ok(module.load_function(name)?)
    }
}
