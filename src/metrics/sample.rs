//! What one sample of the host is: each GPU's figures, the GPU memory and SM utilisation each
//! container uses on each GPU, and how many processes belong to no container.
//!
//! Owns these data types and the one figure derived from them alone (the instance's mean
//! utilisation). Never gathers, attributes, formats or sends: they are plain data that the
//! sampler fills, `records` reads, and `--output json` prints as they are.

use serde::Serialize;

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
    /// NVML's per-process SM utilisation since the previous sample (the mean of its samples in
    /// that window; 0 when it had none). `None` where the GPU does not report it
    /// (`NOT_SUPPORTED`): absent, never a false 0.
    pub sm_util_percent: Option<u32>,
}

/// What is known of a container beyond its id: docker labels the ECS agent sets, and the
/// task's service from the agent's task metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContainerInfo {
    pub task_arn: Option<String>,
    pub task_family: Option<String>,
    pub container_name: Option<String>,
    /// The cluster's short name (the label may hold an ARN; this never does).
    pub cluster_name: Option<String>,
    /// The ECS service that started the task; `None` for a standalone task.
    pub service_name: Option<String>,
    /// The container's `ECS_CONTAINER_METADATA_URI_V4`: where the agent serves its task's
    /// metadata. A means of lookup, not a fact to publish.
    #[serde(skip)]
    pub metadata_uri_v4: Option<String>,
    /// Its MPS memory cap (`isolation.mode = "mps"`), from the placement state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_memory_limit_bytes: Option<u64>,
}

/// GPU memory one container uses on one GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerUse {
    pub container_id: String,
    pub gpu_index: u32,
    pub gpu_memory_bytes: u64,
    /// Its processes' SM utilisation on this GPU, summed; `None` where the GPU does not report
    /// per-process utilisation.
    pub sm_util_percent: Option<u32>,
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
