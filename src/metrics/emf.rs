//! CloudWatch Embedded Metric Format: one JSON object per line whose `_aws` member tells
//! CloudWatch (through the CloudWatch agent or Logs) which members are metrics and dimensions.
//! One line per `records::Record`.
//!
//! Owns the EMF line format and the check of a line against the specification. Never writes
//! the lines anywhere (the agent prints them) and never chooses namespace, dimensions or
//! resolution (they come in as the `Publication`).

use serde_json::{json, Map, Value};

use super::publication::Publication;
use super::records::{self, Record};
use super::sample::Sample;

/// One record as one EMF line.
pub fn render(record: &Record, publication: &Publication, timestamp_ms: u64) -> String {
    let resolution = publication.storage_resolution.seconds();
    let directive = json!({
        "Namespace": publication.namespace,
        "Dimensions": record.dimension_sets,
        "Metrics": record
            .metrics
            .iter()
            .map(|m| json!({"Name": m.name, "Unit": m.unit, "StorageResolution": resolution}))
            .collect::<Vec<_>>(),
    });
    let mut root = Map::new();
    root.insert(
        "_aws".to_owned(),
        json!({"Timestamp": timestamp_ms, "CloudWatchMetrics": [directive]}),
    );
    for (k, v) in &record.dimensions {
        root.insert(k.clone(), Value::from(v.as_str()));
    }
    for (k, v) in &record.properties {
        root.insert(k.clone(), v.clone());
    }
    for m in &record.metrics {
        root.insert(m.name.to_owned(), m.value.clone());
    }
    Value::Object(root).to_string()
}

/// The EMF lines for one sample.
pub fn lines(sample: &Sample, publication: &Publication) -> Vec<String> {
    records::records_with(sample, &publication.dimensions, publication.task_dimensions)
        .iter()
        .map(|r| render(r, publication, sample.timestamp_ms))
        .collect()
}

/// Checks one line against the EMF specification; the first rule it breaks, in words (the
/// words are the product here: tests print them next to the line).
pub fn validate(line: &str) -> Result<(), String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let root = v.as_object().ok_or("not an object")?;
    let aws = root
        .get("_aws")
        .and_then(Value::as_object)
        .ok_or("no _aws object")?;
    aws.get("Timestamp")
        .and_then(Value::as_u64)
        .ok_or("_aws.Timestamp is not a whole number of milliseconds")?;
    let directives = aws
        .get("CloudWatchMetrics")
        .and_then(Value::as_array)
        .ok_or("_aws.CloudWatchMetrics is not an array")?;
    for d in directives {
        let ns = d.get("Namespace").and_then(Value::as_str).unwrap_or("");
        if ns.is_empty() || ns.len() > 255 {
            return Err("Namespace must be 1 to 255 characters".into());
        }
        let sets = d
            .get("Dimensions")
            .and_then(Value::as_array)
            .ok_or("Dimensions is not an array")?;
        for set in sets {
            let keys = set.as_array().ok_or("a dimension set is not an array")?;
            if keys.len() > 30 {
                return Err("a dimension set has more than 30 dimensions".into());
            }
            for k in keys {
                let k = k.as_str().ok_or("a dimension key is not a string")?;
                if !root.get(k).is_some_and(Value::is_string) {
                    return Err(format!("dimension {k} has no string member"));
                }
            }
        }
        let metrics = d
            .get("Metrics")
            .and_then(Value::as_array)
            .ok_or("Metrics is not an array")?;
        if metrics.is_empty() || metrics.len() > 100 {
            return Err("Metrics must hold 1 to 100 definitions".into());
        }
        for m in metrics {
            let name = m
                .get("Name")
                .and_then(Value::as_str)
                .ok_or("a metric has no Name")?;
            if !root.get(name).is_some_and(Value::is_number) {
                return Err(format!("metric {name} has no numeric member"));
            }
            if let Some(r) = m.get("StorageResolution") {
                if r != 1 && r != 60 {
                    return Err(format!("metric {name}: StorageResolution must be 1 or 60"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::publication::StorageResolution;
    use crate::metrics::sample::{ContainerInfo, ContainerUse, GpuSample};

    const ASG: &str = "AutoScalingGroupName";

    fn sample() -> Sample {
        let gpu = |index: u32, util: u32| GpuSample {
            index,
            uuid: format!("GPU-{index}"),
            name: "Tesla T4".into(),
            utilization_gpu_percent: util,
            utilization_memory_percent: 10,
            memory_used_bytes: 1 << 30,
            memory_total_bytes: 16 << 30,
            temperature_celsius: 50,
            power_watts: 31.5,
        };
        Sample {
            timestamp_ms: 1_795_542_498_000,
            gpus: vec![gpu(0, 30), gpu(1, 70)],
            containers: vec![
                ContainerUse {
                    container_id: "a".repeat(64),
                    gpu_index: 0,
                    gpu_memory_bytes: 100,
                    sm_util_percent: Some(30),
                    processes: 1,
                    info: ContainerInfo {
                        task_arn: Some("arn:aws:ecs:us-east-1:1:task/c/t1".into()),
                        task_family: Some("inference".into()),
                        cluster_name: Some("c".into()),
                        service_name: Some("web".into()),
                        ..Default::default()
                    },
                },
                ContainerUse {
                    container_id: "a".repeat(64),
                    gpu_index: 1,
                    gpu_memory_bytes: 50,
                    sm_util_percent: Some(20),
                    processes: 1,
                    info: ContainerInfo {
                        task_arn: Some("arn:aws:ecs:us-east-1:1:task/c/t1".into()),
                        task_family: Some("inference".into()),
                        cluster_name: Some("c".into()),
                        service_name: Some("web".into()),
                        ..Default::default()
                    },
                },
                ContainerUse {
                    container_id: "b".repeat(64),
                    gpu_index: 1,
                    gpu_memory_bytes: 7,
                    sm_util_percent: None,
                    processes: 1,
                    info: ContainerInfo::default(),
                },
            ],
            host_processes: 0,
        }
    }

    fn opts(asg: bool, task_dimensions: bool) -> Publication {
        let mut dimensions = vec![("InstanceId".to_owned(), "i-0abc".to_owned())];
        if asg {
            dimensions.push((ASG.to_owned(), "gpu-asg".to_owned()));
        }
        Publication {
            namespace: "GPUShare".into(),
            dimensions,
            storage_resolution: StorageResolution::Standard,
            task_dimensions,
        }
    }

    #[test]
    fn every_line_is_valid_emf() {
        // Instance, two GPUs, the ECS task's service line; with task dimensions, its task line
        // and the bare container's.
        for (task_dimensions, n) in [(false, 1 + 2 + 1), (true, 1 + 2 + 1 + 2)] {
            let lines = lines(&sample(), &opts(true, task_dimensions));
            assert_eq!(lines.len(), n);
            for l in &lines {
                validate(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            }
        }
    }

    #[test]
    fn instance_mean_is_also_published_under_the_group_alone() {
        let l: Value = serde_json::from_str(&lines(&sample(), &opts(true, false))[0]).unwrap();
        assert_eq!(l["GPUUtilization"], json!(50.0));
        assert_eq!(
            l["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([
                ["InstanceId", "AutoScalingGroupName"],
                ["AutoScalingGroupName"]
            ])
        );
        let l: Value = serde_json::from_str(&lines(&sample(), &opts(false, false))[0]).unwrap();
        assert_eq!(
            l["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["InstanceId"]])
        );
    }

    #[test]
    fn a_service_line_carries_the_task_as_properties() {
        let lines = lines(&sample(), &opts(false, false));
        let task: Value = serde_json::from_str(&lines[3]).unwrap();
        assert_eq!(task["TaskArn"], "arn:aws:ecs:us-east-1:1:task/c/t1");
        assert_eq!(task["ServiceName"], "web");
        assert_eq!(task["ServiceGPUMemoryUsed"], 150);
        assert_eq!(task["ServiceGPUUtilization"], 50);
        assert_eq!(task["ContainerIds"], json!(["a".repeat(64)]));
        assert_eq!(
            task["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([
                ["ClusterName", "ServiceName"],
                ["ClusterName", "TaskDefinitionFamily"]
            ])
        );
    }

    #[test]
    fn with_task_dimensions_tasks_sum_their_gpus_and_bare_containers_use_their_id() {
        let lines = lines(&sample(), &opts(false, true));
        let task: Value = serde_json::from_str(&lines[4]).unwrap();
        assert_eq!(task["TaskArn"], "arn:aws:ecs:us-east-1:1:task/c/t1");
        assert_eq!(task["TaskGPUMemoryUsed"], 150);
        assert_eq!(task["GpuIndices"], json!([0, 1]));
        let bare: Value = serde_json::from_str(&lines[5]).unwrap();
        assert_eq!(bare["ContainerId"], "b".repeat(64));
        assert_eq!(
            bare["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["InstanceId", "ContainerId"]])
        );
    }

    #[test]
    fn validation_catches_broken_lines() {
        assert!(validate("{}").is_err());
        let bad = r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["X"]],"Metrics":[{"Name":"M"}]}]},"M":1}"#;
        assert_eq!(
            validate(bad).unwrap_err(),
            "dimension X has no string member"
        );
        let bad = r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[],"Metrics":[{"Name":"M","StorageResolution":5}]}]},"M":1}"#;
        assert!(validate(bad).unwrap_err().contains("StorageResolution"));
    }
}
