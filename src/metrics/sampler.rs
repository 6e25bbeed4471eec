//! Per-GPU figures, per-process GPU memory and per-process SM utilisation from NVML, behind a
//! trait so everything after the NVML calls is testable.
//!
//! Owns the NVML calls of one sample, what their failure is (`SampleError`), and the one piece
//! of state NVML asks its callers to keep between samples: the per-GPU cursor of process
//! utilisation samples (`process_util::Cursors`). Never looks at `/proc`, containers or sinks.

use std::cell::RefCell;

use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError as Cause;
use nvml_wrapper::Device;

use super::process_util::{Cursors, Reading, UtilSample};
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

/// NVML as the agent samples it: the loaded library and the utilisation cursors.
pub struct NvmlSampler<'a> {
    nvml: &'a Nvml,
    cursors: RefCell<Cursors>,
}

impl<'a> NvmlSampler<'a> {
    pub fn new(nvml: &'a Nvml) -> NvmlSampler<'a> {
        NvmlSampler {
            nvml,
            cursors: RefCell::new(Cursors::default()),
        }
    }
}

/// One GPU's process utilisation samples since `since`, as NVML answers.
fn utilization(device: &Device, since: u64) -> Reading {
    match device.process_utilization_stats(since) {
        Ok(samples) => Reading::Samples(
            samples
                .into_iter()
                .map(|s| UtilSample {
                    pid: s.pid,
                    timestamp_us: s.timestamp,
                    sm_util: s.sm_util,
                })
                .collect(),
        ),
        Err(Cause::NotFound) => Reading::NoneSince,
        // NOT_SUPPORTED, a driver without the call, or a failure of it: no figure, but the
        // GPU's other figures are still worth publishing.
        Err(_) => Reading::Absent,
    }
}

impl GpuSampler for NvmlSampler<'_> {
    fn sample(&self) -> Result<(Vec<GpuSample>, Vec<ProcessUse>), SampleError> {
        let nvml = self.nvml.handle();
        let fail = NvmlError::call;
        let count = nvml.device_count().map_err(fail("device count"))?;
        let mut gpus = Vec::with_capacity(count as usize);
        let mut processes = Vec::new();
        let mut cursors = self.cursors.borrow_mut();
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
            let reading = utilization(&d, cursors.since(index));
            let per_pid = cursors.per_pid(index, reading);
            // A process in both lists (CUDA and graphics) has one utilisation, counted once.
            let mut counted: Vec<u32> = Vec::new();
            for p in compute.into_iter().chain(graphics) {
                let sm_util_percent = if counted.contains(&p.pid) {
                    per_pid.of(p.pid).map(|_| 0)
                } else {
                    per_pid.of(p.pid)
                };
                counted.push(p.pid);
                processes.push(ProcessUse {
                    gpu_index: index,
                    pid: p.pid,
                    used_gpu_memory_bytes: match p.used_gpu_memory {
                        UsedGpuMemory::Used(b) => Some(b),
                        UsedGpuMemory::Unavailable => None,
                    },
                    sm_util_percent,
                });
            }
        }
        Ok((gpus, processes))
    }
}
