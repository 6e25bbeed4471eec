//! `gpu-share metrics`: what each GPU and each container on it is doing, for CloudWatch.
//!
//! One sample = NVML's per-GPU figures plus its per-process GPU memory, with every process
//! mapped to the container (and, where dockerd tells it, the ECS task) it belongs to.
//! `sample` gathers; `emf` formats for CloudWatch's Embedded Metric Format.

pub mod attribution;
pub mod cloudwatch;
pub mod docker_labels;
pub mod emf;
pub mod identity;
pub mod records;
pub mod sample;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

pub use sample::{GpuSample, GpuSampler, ProcessUse};

/// What is known of a container beyond its id: docker labels the ECS agent sets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContainerInfo {
    pub task_arn: Option<String>,
    pub task_family: Option<String>,
    pub container_name: Option<String>,
}

/// GPU memory one container uses on one GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerUse {
    pub container_id: String,
    pub gpu_index: u32,
    pub gpu_memory_bytes: u64,
    pub processes: u32,
    #[serde(flatten)]
    pub info: ContainerInfo,
}

/// One sample of the host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    pub timestamp_ms: u64,
    pub gpus: Vec<GpuSample>,
    pub containers: Vec<ContainerUse>,
    /// Processes on a GPU that belong to no container (the host's own).
    pub host_processes: u32,
}

impl Sample {
    /// The mean GPU utilisation over the instance's GPUs: the series scaling policies use.
    pub fn instance_utilization(&self) -> Option<f64> {
        if self.gpus.is_empty() {
            return None;
        }
        let sum: u32 = self.gpus.iter().map(|g| g.utilization_gpu_percent).sum();
        Some(f64::from(sum) / self.gpus.len() as f64)
    }
}

/// Takes one sample: NVML's figures, processes mapped to containers through `<root>/proc`.
pub fn collect(
    sampler: &dyn GpuSampler,
    root: &Path,
    info: impl Fn(&str) -> ContainerInfo,
) -> Result<Sample, String> {
    let (gpus, processes) = sampler.sample()?;
    let (containers, host_processes) =
        by_container(&processes, |pid| attribution::container_of(root, pid), info);
    Ok(Sample {
        timestamp_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        gpus,
        containers,
        host_processes,
    })
}

/// The EMF options a config gives: its namespace, the dimensions of `identity`, the resolution.
pub fn emf_options(
    config: &crate::config::MetricsSection,
    identity: &identity::Identity,
) -> emf::EmfOptions {
    emf::EmfOptions {
        namespace: config.namespace.clone(),
        dimensions: identity.dimensions(),
        high_resolution: config.interval_seconds < 60,
    }
}

/// Groups processes by (container, GPU). `container_of` maps a pid to its container id and
/// `info` describes a container.
pub fn by_container(
    processes: &[ProcessUse],
    container_of: impl Fn(u32) -> Option<String>,
    info: impl Fn(&str) -> ContainerInfo,
) -> (Vec<ContainerUse>, u32) {
    let mut grouped: BTreeMap<(String, u32), (u64, u32)> = BTreeMap::new();
    let mut host = 0;
    for p in processes {
        match container_of(p.pid) {
            Some(id) => {
                let e = grouped.entry((id, p.gpu_index)).or_default();
                e.0 += p.used_gpu_memory_bytes.unwrap_or(0);
                e.1 += 1;
            }
            None => host += 1,
        }
    }
    let uses = grouped
        .into_iter()
        .map(|((id, gpu), (bytes, n))| ContainerUse {
            info: info(&id),
            container_id: id,
            gpu_index: gpu,
            gpu_memory_bytes: bytes,
            processes: n,
        })
        .collect();
    (uses, host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(gpu: u32, pid: u32, bytes: u64) -> ProcessUse {
        ProcessUse {
            gpu_index: gpu,
            pid,
            used_gpu_memory_bytes: Some(bytes),
        }
    }

    #[test]
    fn processes_are_summed_per_container_and_gpu() {
        let procs = [p(0, 10, 100), p(0, 11, 50), p(1, 12, 7), p(0, 99, 1)];
        let container_of = |pid: u32| match pid {
            10 | 11 => Some("aaa".to_owned()),
            12 => Some("bbb".to_owned()),
            _ => None,
        };
        let (uses, host) = by_container(&procs, container_of, |_| ContainerInfo::default());
        assert_eq!(host, 1);
        let got: Vec<(&str, u32, u64, u32)> = uses
            .iter()
            .map(|u| {
                (
                    u.container_id.as_str(),
                    u.gpu_index,
                    u.gpu_memory_bytes,
                    u.processes,
                )
            })
            .collect();
        assert_eq!(got, vec![("aaa", 0, 150, 2), ("bbb", 1, 7, 1)]);
    }
}
