//! What one sample publishes, independent of how: groups of metrics that share dimensions.
//! `emf` renders each group as one line; `cloudwatch` as PutMetricData datums.
//!
//! Per sample: the instance (mean utilisation over its GPUs, also under `AutoScalingGroupName`
//! alone, since CloudWatch does not aggregate across dimension sets and a group's scaling policy
//! needs the group-wide series), each GPU (`GpuIndex`), and each task's GPU use
//! (`task_records`: per service and task family, and per task when asked).
//!
//! Owns which metrics, dimensions and properties the instance and its GPUs become, and the
//! order of the records. Never formats them for a sink and never knows the namespace or
//! resolution (that is the `Publication`).

use serde_json::json;

use super::record::{keys, metric};
pub use super::record::{Metric, Record};
use super::sample::Sample;
use super::task_records;

const ASG: &str = "AutoScalingGroupName";

fn with(base: &[(String, String)], key: &str, value: String) -> Vec<(String, String)> {
    let mut d = base.to_vec();
    d.push((key.to_owned(), value));
    d
}

/// The records of one sample, `base` dimensions (instance, group, cluster) on the instance's
/// and GPUs' ones; tasks under the service-level series alone (`metrics.task_dimensions` off).
pub fn records(sample: &Sample, base: &[(String, String)]) -> Vec<Record> {
    records_with(sample, base, false)
}

/// The records of one sample; `task_dimensions` adds the per-task series (`TaskArn` or
/// `ContainerId` as a dimension).
pub fn records_with(
    sample: &Sample,
    base: &[(String, String)],
    task_dimensions: bool,
) -> Vec<Record> {
    let mut out = Vec::new();
    if let Some(mean) = sample.instance_utilization() {
        let mut sets = vec![keys(base)];
        if base.iter().any(|(k, _)| k == ASG) {
            sets.push(vec![ASG.to_owned()]);
        }
        out.push(Record {
            dimensions: base.to_vec(),
            dimension_sets: sets,
            metrics: vec![
                metric("GPUUtilization", "Percent", json!(mean)),
                metric("GPUCount", "Count", json!(sample.gpus.len())),
            ],
            properties: Vec::new(),
        });
    }
    for g in &sample.gpus {
        let dims = with(base, "GpuIndex", g.index.to_string());
        out.push(Record {
            dimension_sets: vec![keys(&dims)],
            dimensions: dims,
            metrics: vec![
                metric(
                    "GPUUtilization",
                    "Percent",
                    json!(g.utilization_gpu_percent),
                ),
                metric(
                    "GPUMemoryUtilization",
                    "Percent",
                    json!(g.utilization_memory_percent),
                ),
                metric("GPUMemoryUsed", "Bytes", json!(g.memory_used_bytes)),
                metric("GPUMemoryTotal", "Bytes", json!(g.memory_total_bytes)),
                metric("GPUTemperature", "None", json!(g.temperature_celsius)),
                metric("GPUPowerDraw", "None", json!(g.power_watts)),
            ],
            properties: vec![("GpuUuid".to_owned(), json!(g.uuid))],
        });
    }
    out.extend(task_records::records(sample, base, task_dimensions));
    out
}
