//! What one sample publishes, independent of how: groups of metrics that share dimensions.
//! `emf` renders each group as one line; `cloudwatch` as PutMetricData datums.
//!
//! Three kinds per sample: the instance (mean utilisation over its GPUs, also under
//! `AutoScalingGroupName` alone, since CloudWatch does not aggregate across dimension sets and a
//! group's scaling policy needs the group-wide series), each GPU (`GpuIndex`), and each task or
//! container using a GPU (`TaskArn`, else `ContainerId`), its GPU memory summed over its GPUs.
//!
//! Owns which metrics, dimensions and properties a sample becomes. Never formats them for a
//! sink and never knows the namespace or resolution (that is the `Publication`).

use serde_json::{json, Value};

use super::sample::{ContainerInfo, Sample};

const ASG: &str = "AutoScalingGroupName";

#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    /// A CloudWatch unit name: `Percent`, `Bytes`, `Count`, `None`.
    pub unit: &'static str,
    /// A JSON number, so whole numbers stay whole in EMF.
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Every dimension's value.
    pub dimensions: Vec<(String, String)>,
    /// The combinations of dimension names the metrics are published under.
    pub dimension_sets: Vec<Vec<String>>,
    pub metrics: Vec<Metric>,
    /// Context that is neither metric nor dimension (`GpuUuid`, `TaskFamily`, ...).
    pub properties: Vec<(String, Value)>,
}

fn metric(name: &'static str, unit: &'static str, value: Value) -> Metric {
    Metric { name, unit, value }
}

fn with(base: &[(String, String)], key: &str, value: String) -> Vec<(String, String)> {
    let mut d = base.to_vec();
    d.push((key.to_owned(), value));
    d
}

fn keys(d: &[(String, String)]) -> Vec<String> {
    d.iter().map(|(k, _)| k.clone()).collect()
}

/// The records of one sample, `base` dimensions (instance, group, cluster) on every one.
pub fn records(sample: &Sample, base: &[(String, String)]) -> Vec<Record> {
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
    let mut tasks: Vec<(&str, String, u64, Vec<u32>, &ContainerInfo)> = Vec::new();
    for c in &sample.containers {
        let (key, value) = match &c.info.task_arn {
            Some(arn) => ("TaskArn", arn.clone()),
            None => ("ContainerId", c.container_id.clone()),
        };
        match tasks.iter_mut().find(|t| t.0 == key && t.1 == value) {
            Some(t) => {
                t.2 += c.gpu_memory_bytes;
                t.3.push(c.gpu_index);
            }
            None => tasks.push((key, value, c.gpu_memory_bytes, vec![c.gpu_index], &c.info)),
        }
    }
    for (key, value, bytes, gpus, info) in tasks {
        let dims = with(base, key, value);
        let mut properties = Vec::new();
        if let Some(f) = &info.task_family {
            properties.push(("TaskFamily".to_owned(), json!(f)));
        }
        if let Some(n) = &info.container_name {
            properties.push(("ContainerName".to_owned(), json!(n)));
        }
        properties.push(("GpuIndices".to_owned(), json!(gpus)));
        out.push(Record {
            dimension_sets: vec![keys(&dims)],
            dimensions: dims,
            metrics: vec![metric("TaskGPUMemoryUsed", "Bytes", json!(bytes))],
            properties,
        });
    }
    out
}
