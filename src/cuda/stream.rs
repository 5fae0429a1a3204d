//! Host↔device streaming of a sweep: masks go up through pinned, write-combined host buffers,
//! two of them, so that while the kernels of batch `i` run on the compute stream the masks of
//! batch `i + 1` are written and copied on the copy stream; values come back through pinned
//! (not write-combined: the CPU reads them) memory.
//!
//! Ordering is by events: the compute stream waits for the upload of the buffer it reads, and
//! the copy into a device buffer waits until the compute that last read it is done.

use cudarc::driver::{CudaEvent, CudaSlice, CudaView, PinnedHostSlice};

use super::kernels::DeviceMasks;
use super::{CudaError, Gpu};
use crate::mask::MaskSlice;

/// One slot of the double buffer.
struct Slot {
    host: PinnedHostSlice<u64>,
    device: CudaSlice<u64>,
    /// Recorded on the copy stream after the upload into `device`.
    uploaded: Option<CudaEvent>,
    /// Recorded on the compute stream after the last kernel that read `device`.
    released: Option<CudaEvent>,
    rows: usize,
}

/// Double-buffered mask uploads for batches of up to `max_rows` masks of one width.
pub struct MaskUploader {
    slots: [Slot; 2],
    next: usize,
    words_per_row: usize,
}

/// A batch of masks resident on the device (valid until the slot is reused two uploads later).
pub struct UploadedMasks<'a> {
    /// The words, `rows × words_per_row`.
    pub words: CudaView<'a, u64>,
    /// Masks in the batch.
    pub rows: usize,
    /// Words per mask.
    pub words_per_row: usize,
    /// Which slot (for [`MaskUploader::release`]).
    pub slot: usize,
}

impl UploadedMasks<'_> {
    /// The masks as the kernels take them.
    pub fn device_masks(&self) -> DeviceMasks<'_> {
        DeviceMasks { words: &self.words, rows: self.rows, words_per_row: self.words_per_row }
    }
}

impl MaskUploader {
    /// Buffers for batches of up to `max_rows` masks of `words_per_row` words each.
    pub fn new(gpu: &Gpu, max_rows: usize, words_per_row: usize) -> Result<Self, CudaError> {
        let n = (max_rows * words_per_row).max(1);
        let slot = || -> Result<Slot, CudaError> {
            Ok(Slot {
                // SAFETY: write-combined pinned memory, written before every copy and never read
                // by the CPU (it would be slow, not wrong).
                host: unsafe { gpu.context().alloc_pinned::<u64>(n)? },
                device: gpu.copy_stream().alloc_zeros::<u64>(n)?,
                uploaded: None,
                released: None,
                rows: 0,
            })
        };
        Ok(MaskUploader { slots: [slot()?, slot()?], next: 0, words_per_row })
    }

    /// Starts the upload of `masks` into the next slot and makes the compute stream wait for
    /// it; returns at once (the copy overlaps whatever the compute stream is doing).
    pub fn upload(&mut self, gpu: &Gpu, masks: MaskSlice<'_>) -> Result<usize, CudaError> {
        let k = self.next;
        let slot = &mut self.slots[k];
        let n = masks.len() * masks.words_per_row();
        if masks.words_per_row() != self.words_per_row || n > slot.host.len() {
            return Err(CudaError::Input(format!(
                "batch of {} masks x {} words does not fit the uploader ({} words per row, {} words)",
                masks.len(),
                masks.words_per_row(),
                self.words_per_row,
                slot.host.len()
            )));
        }
        // Waits (inside as_mut_slice) only for this slot's previous copy, two batches ago.
        slot.host.as_mut_slice()?[..n].copy_from_slice(masks.words());
        if let Some(e) = &slot.released {
            gpu.copy_stream().wait(e)?;
        }
        // The whole pinned buffer goes up (a few kilobytes past the batch at most): a pinned
        // source is what keeps the copy asynchronous (a plain slice makes cudarc synchronise).
        gpu.copy_stream().memcpy_htod(&slot.host, &mut slot.device)?;
        let ev = gpu.copy_stream().record_event(None)?;
        gpu.compute_stream().wait(&ev)?;
        slot.uploaded = Some(ev);
        slot.rows = masks.len();
        self.next = 1 - k;
        Ok(k)
    }

    /// The masks of slot `k` (after [`MaskUploader::upload`] returned `k`).
    pub fn masks(&self, k: usize) -> UploadedMasks<'_> {
        let slot = &self.slots[k];
        UploadedMasks {
            words: slot.device.slice(..slot.rows * self.words_per_row),
            rows: slot.rows,
            words_per_row: self.words_per_row,
            slot: k,
        }
    }

    /// Marks slot `k` free for reuse once the compute stream's work queued so far is done.
    pub fn release(&mut self, gpu: &Gpu, k: usize) -> Result<(), CudaError> {
        self.slots[k].released = Some(gpu.compute_stream().record_event(None)?);
        Ok(())
    }
}

/// Pinned, CPU-readable landing buffer for per-mask values.
pub struct ValueDownloader {
    host: PinnedHostSlice<f32>,
}

impl ValueDownloader {
    /// Room for `max_values` values per batch.
    pub fn new(gpu: &Gpu, max_values: usize) -> Result<Self, CudaError> {
        // Flags 0: plain page-locked memory. Write-combined memory (alloc_pinned) is very slow
        // for the CPU to read.
        // SAFETY: every value read back is first written by the copy in `download`.
        let host = unsafe { gpu.context().alloc_pinned_with_flags::<f32>(max_values.max(1), 0)? };
        Ok(ValueDownloader { host })
    }

    /// Copies `values` (queued on the compute stream, so after the kernels that produce them)
    /// and returns them as `f64` — the engine's value type — once they have arrived.
    pub fn download(&mut self, gpu: &Gpu, values: &CudaView<'_, f32>) -> Result<Vec<f64>, CudaError> {
        let n = values.len();
        if n > self.host.len() {
            return Err(CudaError::Input(format!("{n} values exceed the download buffer of {}", self.host.len())));
        }
        gpu.compute_stream().memcpy_dtoh(values, &mut self.host)?;
        // as_slice waits for the copy (recorded on the buffer's event).
        Ok(self.host.as_slice()?[..n].iter().map(|&v| f64::from(v)).collect())
    }
}
