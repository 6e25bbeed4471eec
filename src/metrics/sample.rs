//! Per-GPU figures and per-process GPU memory from NVML, behind a trait so everything after
//! the NVML calls is testable.

use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::enums::device::UsedGpuMemory;
use serde::Serialize;

use crate::gpu::nvml::Nvml;

/// One GPU's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuSample {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub utilization_gpu_percent: u32,
    pub utilization_memory_percent: u32,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub temperature_celsius: u32,
    pub power_watts: f64,
}

/// One process using a GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessUse {
    pub gpu_index: u32,
    pub pid: u32,
    /// `None` where the driver does not tell (some GPUs under WDDM, MIG without privileges).
    pub used_gpu_memory_bytes: Option<u64>,
}

pub trait GpuSampler {
    fn sample(&self) -> Result<(Vec<GpuSample>, Vec<ProcessUse>), String>;
}

impl GpuSampler for Nvml {
    fn sample(&self) -> Result<(Vec<GpuSample>, Vec<ProcessUse>), String> {
        let nvml = self.handle();
        let fail = |what: &str, e: nvml_wrapper::error::NvmlError| format!("NVML {what}: {e}");
        let count = nvml.device_count().map_err(|e| fail("device count", e))?;
        let mut gpus = Vec::with_capacity(count as usize);
        let mut processes = Vec::new();
        for index in 0..count {
            let d = nvml.device_by_index(index).map_err(|e| fail("device", e))?;
            let util = d.utilization_rates().map_err(|e| fail("utilization", e))?;
            let memory = d.memory_info().map_err(|e| fail("memory", e))?;
            gpus.push(GpuSample {
                index,
                uuid: d.uuid().map_err(|e| fail("uuid", e))?,
                name: d.name().map_err(|e| fail("name", e))?,
                utilization_gpu_percent: util.gpu,
                utilization_memory_percent: util.memory,
                memory_used_bytes: memory.used,
                memory_total_bytes: memory.total,
                temperature_celsius: d
                    .temperature(TemperatureSensor::Gpu)
                    .map_err(|e| fail("temperature", e))?,
                power_watts: f64::from(d.power_usage().map_err(|e| fail("power", e))?) / 1000.0,
            });
            let compute = d
                .running_compute_processes()
                .map_err(|e| fail("compute processes", e))?;
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
