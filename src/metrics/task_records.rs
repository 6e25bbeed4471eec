//! What each task's GPU use publishes: the service-level series, one record per task per
//! sample, and with `metrics.task_dimensions` the per-task series too.
//!
//! The contract (docs/metrics.md): `ServiceGPUUtilization` (Percent, the task's SM utilisation
//! summed over its processes on every GPU it uses) and `ServiceGPUMemoryUsed` (Bytes, its GPU
//! memory likewise), under `[ClusterName, ServiceName]` for a service's task and under
//! `[ClusterName, TaskDefinitionFamily]` for every task. One datum per task makes a series'
//! `Average` the mean over the service's tasks, `Sum` their total, `SampleCount` the
//! task-samples. `TaskArn` and the container ids are properties, not dimensions, so a service
//! is a handful of series however many tasks it ever ran; `task_dimensions` adds
//! `TaskGPUMemoryUsed` and `TaskGPUUtilization` under `TaskArn` (else `ContainerId`).
//!
//! Owns grouping containers into tasks and these records. Never formats them for a sink.

use serde_json::{json, Value};

use super::record::{keys, metric, Metric, Record};
use super::sample::{ContainerInfo, Sample};

const CLUSTER: &str = "ClusterName";
const SERVICE: &str = "ServiceName";
const FAMILY: &str = "TaskDefinitionFamily";

/// Whether CloudWatch takes `v` as a dimension value (1 to 1024 ASCII characters, not all
/// blank). Labels are whatever a container was started with: one bad value must not get a
/// whole PutMetricData batch refused.
fn publishable(v: &str) -> bool {
    v.len() <= 1024 && v.is_ascii() && !v.trim().is_empty()
}

/// One task's GPU use in a sample: its containers on every GPU.
struct TaskUse<'a> {
    /// `TaskArn`, or `ContainerId` for a container of no ECS task.
    key: (&'static str, String),
    info: &'a ContainerInfo,
    container_ids: Vec<&'a str>,
    gpus: Vec<u32>,
    bytes: u64,
    /// The sum of its containers' MPS memory caps; absent unless every container has one.
    limit: Option<u64>,
    /// Absent if any of its GPUs gives no per-process utilisation: a partial sum would read
    /// as less work than the task does.
    sm_util: Option<u32>,
}

fn tasks(sample: &Sample) -> Vec<TaskUse<'_>> {
    let mut tasks: Vec<TaskUse> = Vec::new();
    for c in &sample.containers {
        let key = match &c.info.task_arn {
            Some(arn) => ("TaskArn", arn.clone()),
            None => ("ContainerId", c.container_id.clone()),
        };
        let i = match tasks.iter().position(|t| t.key == key) {
            Some(i) => i,
            None => {
                tasks.push(TaskUse {
                    key,
                    info: &c.info,
                    container_ids: Vec::new(),
                    gpus: Vec::new(),
                    bytes: 0,
                    limit: Some(0),
                    sm_util: Some(0),
                });
                tasks.len() - 1
            }
        };
        let t = &mut tasks[i];
        if !t.container_ids.contains(&c.container_id.as_str()) {
            t.container_ids.push(&c.container_id);
            // Once per container: its cap is per GPU, and a capped container holds one.
            t.limit = t
                .limit
                .zip(c.info.gpu_memory_limit_bytes)
                .map(|(a, b)| a + b);
        }
        if !t.gpus.contains(&c.gpu_index) {
            t.gpus.push(c.gpu_index);
        }
        t.bytes += c.gpu_memory_bytes;
        t.sm_util = t
            .sm_util
            .zip(c.sm_util_percent)
            .map(|(a, b)| a.saturating_add(b));
    }
    tasks
}

/// The task's metrics, named for their series: utilisation where known, memory, and its MPS
/// memory cap (`names.2`) where every container has one.
fn metrics(t: &TaskUse, names: (&'static str, &'static str, &'static str)) -> Vec<Metric> {
    let mut m = Vec::with_capacity(3);
    if let Some(sm) = t.sm_util {
        m.push(metric(names.0, "Percent", json!(sm)));
    }
    m.push(metric(names.1, "Bytes", json!(t.bytes)));
    if let Some(limit) = t.limit {
        m.push(metric(names.2, "Bytes", json!(limit)));
    }
    m
}

/// The service-level record of one task, if it has a cluster and a service or family to be
/// published under. `base` gives the instance's dimensions (as log fields in EMF) and the
/// cluster where the task's label does not.
fn service_record(t: &TaskUse, base: &[(String, String)]) -> Option<Record> {
    let cluster = t
        .info
        .cluster_name
        .clone()
        .or_else(|| {
            base.iter()
                .find(|(k, _)| k == CLUSTER)
                .map(|(_, v)| v.clone())
        })
        .filter(|c| publishable(c))?;
    let mut dimensions: Vec<(String, String)> =
        base.iter().filter(|(k, _)| k != CLUSTER).cloned().collect();
    dimensions.push((CLUSTER.to_owned(), cluster));
    let mut sets = Vec::new();
    for (key, value) in [
        (SERVICE, &t.info.service_name),
        (FAMILY, &t.info.task_family),
    ] {
        if let Some(v) = value.as_ref().filter(|v| publishable(v)) {
            dimensions.push((key.to_owned(), v.clone()));
            sets.push(vec![CLUSTER.to_owned(), key.to_owned()]);
        }
    }
    if sets.is_empty() {
        return None;
    }
    let mut properties: Vec<(String, Value)> = vec![(t.key.0.to_owned(), json!(t.key.1))];
    properties.push(("ContainerIds".to_owned(), json!(t.container_ids)));
    properties.push(("GpuIndices".to_owned(), json!(t.gpus)));
    Some(Record {
        dimensions,
        dimension_sets: sets,
        metrics: metrics(
            t,
            (
                "ServiceGPUUtilization",
                "ServiceGPUMemoryUsed",
                "ServiceGPUMemoryLimit",
            ),
        ),
        properties,
    })
}

/// The per-task record (`metrics.task_dimensions`): `TaskArn` or `ContainerId` a dimension.
fn task_record(t: &TaskUse, base: &[(String, String)]) -> Record {
    let mut dimensions = base.to_vec();
    dimensions.push((t.key.0.to_owned(), t.key.1.clone()));
    let mut properties = Vec::new();
    if let Some(f) = &t.info.task_family {
        properties.push(("TaskFamily".to_owned(), json!(f)));
    }
    if let Some(n) = &t.info.container_name {
        properties.push(("ContainerName".to_owned(), json!(n)));
    }
    properties.push(("GpuIndices".to_owned(), json!(t.gpus)));
    Record {
        dimension_sets: vec![keys(&dimensions)],
        dimensions,
        metrics: metrics(
            t,
            (
                "TaskGPUUtilization",
                "TaskGPUMemoryUsed",
                "TaskGPUMemoryLimit",
            ),
        ),
        properties,
    }
}

/// The records of the sample's tasks: each one's service-level record, and with
/// `task_dimensions` its per-task record after it.
pub fn records(sample: &Sample, base: &[(String, String)], task_dimensions: bool) -> Vec<Record> {
    let mut out = Vec::new();
    for t in tasks(sample) {
        out.extend(service_record(&t, base));
        if task_dimensions && publishable(&t.key.1) {
            out.push(task_record(&t, base));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::sample::ContainerUse;

    fn base() -> Vec<(String, String)> {
        vec![
            ("InstanceId".to_owned(), "i-1".to_owned()),
            (CLUSTER.to_owned(), "from-identity".to_owned()),
        ]
    }

    fn task(n: u32, service: Option<&str>) -> ContainerInfo {
        ContainerInfo {
            task_arn: Some(format!("arn:aws:ecs:us-east-1:1:task/gpu/{n}")),
            task_family: Some("inference".to_owned()),
            cluster_name: Some("gpu".to_owned()),
            service_name: service.map(str::to_owned),
            ..ContainerInfo::default()
        }
    }

    fn used(id: char, gpu: u32, bytes: u64, sm: Option<u32>, info: ContainerInfo) -> ContainerUse {
        ContainerUse {
            container_id: id.to_string().repeat(64),
            gpu_index: gpu,
            gpu_memory_bytes: bytes,
            sm_util_percent: sm,
            processes: 1,
            info,
        }
    }

    fn sample(containers: Vec<ContainerUse>) -> Sample {
        Sample {
            timestamp_ms: 0,
            gpus: Vec::new(),
            containers,
            host_processes: 0,
        }
    }

    fn value(r: &Record, name: &str) -> Option<Value> {
        r.metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value.clone())
    }

    #[test]
    fn a_task_s_mps_caps_are_published_next_to_its_use_when_every_container_has_one() {
        let capped = |gib: u64| ContainerInfo {
            gpu_memory_limit_bytes: Some(gib << 30),
            ..task(1, Some("web"))
        };
        let s = sample(vec![
            used('a', 0, 100, None, capped(4)),
            used('b', 0, 50, None, capped(2)),
        ]);
        let r = records(&s, &base(), true);
        assert_eq!(
            value(&r[0], "ServiceGPUMemoryLimit"),
            Some(json!(6u64 << 30))
        );
        assert_eq!(value(&r[1], "TaskGPUMemoryLimit"), Some(json!(6u64 << 30)));
        assert_eq!(value(&r[1], "TaskGPUMemoryUsed"), Some(json!(150)));
        let partly = sample(vec![
            used('a', 0, 100, None, capped(4)),
            used('b', 0, 50, None, task(1, Some("web"))),
        ]);
        let r = records(&partly, &base(), true);
        assert!(r.iter().all(|r| value(r, "TaskGPUMemoryLimit").is_none()
            && value(r, "ServiceGPUMemoryLimit").is_none()));
    }

    #[test]
    fn a_task_sums_its_containers_over_every_gpu() {
        let s = sample(vec![
            used('a', 0, 100, Some(30), task(1, Some("web"))),
            used('a', 1, 50, Some(20), task(1, Some("web"))),
            used('b', 1, 7, Some(5), task(1, Some("web"))),
        ]);
        let r = records(&s, &base(), false);
        assert_eq!(r.len(), 1);
        assert_eq!(value(&r[0], "ServiceGPUUtilization"), Some(json!(55)));
        assert_eq!(value(&r[0], "ServiceGPUMemoryUsed"), Some(json!(157)));
        assert_eq!(
            r[0].dimension_sets,
            vec![vec![CLUSTER, SERVICE], vec![CLUSTER, FAMILY]]
        );
        let props: Vec<&str> = r[0].properties.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(props, ["TaskArn", "ContainerIds", "GpuIndices"]);
        assert_eq!(r[0].properties[2].1, json!([0, 1]));
        // The task's own cluster label wins over the identity's.
        assert!(r[0]
            .dimensions
            .contains(&(CLUSTER.to_owned(), "gpu".to_owned())));
        assert!(!r[0].dimensions.iter().any(|(k, _)| k == "TaskArn"));
    }

    #[test]
    fn one_record_per_task_so_the_series_average_is_the_mean_over_tasks() {
        let s = sample(vec![
            used('a', 0, 100, Some(30), task(1, Some("web"))),
            used('b', 0, 300, Some(50), task(2, Some("web"))),
            used('c', 0, 10, Some(7), task(3, None)),
        ]);
        let r = records(&s, &base(), false);
        let web: Vec<f64> = r
            .iter()
            .filter(|r| {
                r.dimensions
                    .contains(&(SERVICE.to_owned(), "web".to_owned()))
            })
            .filter_map(|r| value(r, "ServiceGPUUtilization")?.as_f64())
            .collect();
        assert_eq!(web, vec![30.0, 50.0]);
        assert_eq!(web.iter().sum::<f64>() / web.len() as f64, 40.0);
        // A standalone task: under its family alone.
        assert_eq!(r[2].dimension_sets, vec![vec![CLUSTER, FAMILY]]);
    }

    #[test]
    fn utilisation_is_absent_when_any_gpu_of_the_task_does_not_report_it() {
        let s = sample(vec![
            used('a', 0, 100, Some(30), task(1, Some("web"))),
            used('a', 1, 50, None, task(1, Some("web"))),
        ]);
        let r = records(&s, &base(), false);
        assert_eq!(value(&r[0], "ServiceGPUUtilization"), None);
        assert_eq!(value(&r[0], "ServiceGPUMemoryUsed"), Some(json!(150)));
    }

    #[test]
    fn containers_of_no_task_are_published_only_with_task_dimensions() {
        let s = sample(vec![used('a', 0, 100, Some(30), ContainerInfo::default())]);
        assert!(records(&s, &base(), false).is_empty());
        let r = records(&s, &base(), true);
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0].dimension_sets,
            vec![vec!["InstanceId", CLUSTER, "ContainerId"]]
        );
        assert_eq!(value(&r[0], "TaskGPUUtilization"), Some(json!(30)));
        assert_eq!(value(&r[0], "TaskGPUMemoryUsed"), Some(json!(100)));
    }

    #[test]
    fn values_cloudwatch_would_refuse_are_not_dimensions() {
        let mut odd = task(1, Some("  "));
        odd.task_family = Some("famille-été".to_owned());
        let s = sample(vec![used('a', 0, 100, Some(30), odd)]);
        assert!(records(&s, &base(), false).is_empty());
        let mut no_cluster = task(2, Some("web"));
        no_cluster.cluster_name = None;
        let s = sample(vec![used('a', 0, 100, Some(30), no_cluster)]);
        // The identity's cluster stands in for a task without the label.
        let r = records(&s, &base(), false);
        assert!(r[0]
            .dimensions
            .contains(&(CLUSTER.to_owned(), "from-identity".to_owned())));
        assert!(records(&s, &[], false).is_empty());
    }

    #[test]
    fn task_dimensions_add_the_per_task_record_after_the_service_one() {
        let s = sample(vec![used('a', 0, 100, Some(30), task(1, Some("web")))]);
        let r = records(&s, &base(), true);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].metrics[0].name, "ServiceGPUUtilization");
        assert_eq!(
            r[1].dimension_sets,
            vec![vec!["InstanceId", CLUSTER, "TaskArn"]]
        );
    }
}
