//! Per-GPU figures and per-process GPU memory from NVML, behind a trait so everything after
//! the NVML calls is testable.
//!
//! Owns the NVML calls of one sample and what their failure is (`SampleError`). Never looks at
//! `/proc`, containers or sinks, and never keeps state between samples.

use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::enums::device::UsedGpuMemory;

use super::sample::{GpuSample, ProcessUse};
use crate::gpu::nvml::{Nvml, NvmlError};

/// A sample could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error(transparent)]
    Nvml(#[from] NvmlError),
}

pub trait GpuSampler {
    fn sample(&self) -> Result<(Vec<GpuSample>, Vec<ProcessUse>), SampleError>;
}

impl GpuSampler for Nvml {
    fn sample(&self) -> Result<(Vec<GpuSample>, Vec<ProcessUse>), SampleError> {
        let nvml = self.handle();
        let fail = NvmlError::call;
        let count = nvml.device_count().map_err(fail("device count"))?;
        let mut gpus = Vec::with_capacity(count as usize);
        let mut processes = Vec::new();
        for index in 0..count {
            let d = nvml.device_by_index(index).map_err(fail("device"))?;
            let util = d.utilization_rates().map_err(fail("utilization"))?;
            let memory = d.memory_info().map_err(fail("memory"))?;
            gpus.push(GpuSample {
                index,
                uuid: d.uuid().map_err(fail("uuid"))?,
                name: d.name().map_err(fail("name"))?,
                utilization_gpu_percent: util.gpu,
                utilization_memory_percent: util.memory,
                memory_used_bytes: memory.used,
                memory_total_bytes: memory.total,
                temperature_celsius: d
                    .temperature(TemperatureSensor::Gpu)
                    .map_err(fail("temperature"))?,
                power_watts: f64::from(d.power_usage().map_err(fail("power"))?) / 1000.0,
            });
            let compute = d
                .running_compute_processes()
                .map_err(fail("compute processes"))?;
            // Graphics processes are not on every GPU (a T4 in TCC mode has none): not fatal.
            let graphics = d.running_graphics_processes().unwrap_or_default();
            for p in compute.into_iter().chain(graphics) {
                processes.push(ProcessUse {
                    gpu_index: index,
                    pid: p.pid,
                    used_gpu_memory_bytes: match p.used_gpu_memory {
                        UsedGpuMemory::Used(b) => Some(b),
                        UsedGpuMemory::Unavailable => None,
                    },
                });
            }
        }
        Ok((gpus, processes))
    }
}
