//! The PTX that `build.rs` compiled from `kernels/*.cu`, one per target architecture, and the
//! choice of which to load on a given device.

use super::CudaError;

include!(concat!(env!("OUT_DIR"), "/spex_kernels.rs"));

/// The PTX of kernel file `stem` for a device of compute capability `(major, minor)`: the
/// newest embedded architecture not newer than the device (PTX is forward-compatible: the driver
/// JIT-compiles it for newer devices, never for older ones).
pub fn select(stem: &str, (major, minor): (i32, i32)) -> Result<&'static str, CudaError> {
    let cc = (major * 10 + minor).max(0) as u32;
    PTX.iter()
        .filter(|(s, arch, _)| *s == stem && *arch <= cc)
        .max_by_key(|(_, arch, _)| *arch)
        .map(|(_, _, ptx)| *ptx)
        .ok_or_else(|| CudaError::NoPtx {
            kernel: stem.into(),
            major,
            minor,
            built: PTX.iter().filter(|(s, ..)| *s == stem).map(|(_, a, _)| a.to_string()).collect::<Vec<_>>().join(","),
        })
}

/// Architectures embedded for `stem`, ascending.
pub fn archs(stem: &str) -> Vec<u32> {
    let mut v: Vec<u32> = PTX.iter().filter(|(s, ..)| *s == stem).map(|(_, a, _)| *a).collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_file_is_embedded_with_its_entry_points() {
        for (stem, entries) in [
            ("masking", &["attention_bias_bf16", "replace_ids", "head_gates_from_masks", "compact_rows_bf16"][..]),
            ("head_gates", &["head_gates_f32", "head_gates_bf16", "head_gates_f16"][..]),
            ("score", &["score_init", "score_tile_bf16", "score_direct_f16", "score_finish"][..]),
        ] {
            assert!(!archs(stem).is_empty(), "{stem} not embedded");
            for &arch in &archs(stem) {
                let ptx = select(stem, ((arch / 10) as i32, (arch % 10) as i32)).unwrap();
                assert!(ptx.contains(&format!(".target sm_{arch}")), "{stem} sm_{arch}");
                for e in entries {
                    assert!(ptx.contains(&format!(".entry {e}(")), "{stem} sm_{arch} lacks {e}");
                }
            }
        }
    }

    #[test]
    fn selection_takes_the_newest_arch_the_device_runs() {
        let archs = archs("score");
        let newest = *archs.last().unwrap();
        let ptx = select("score", (12, 0)).unwrap();
        assert!(ptx.contains(&format!(".target sm_{newest}")));
        let oldest = archs[0];
        assert!(select("score", ((oldest / 10) as i32, (oldest % 10) as i32)).is_ok());
        assert!(matches!(select("score", (5, 0)), Err(CudaError::NoPtx { .. })));
        assert!(matches!(select("nope", (9, 0)), Err(CudaError::NoPtx { .. })));
    }
}
