//! Per-task attribution end to end: a real container of a private dockerd, with the labels the
//! ECS agent sets, whose real pid the fake NVML reports on GPU 0. The agent maps the pid through
//! /proc to the container and asks dockerd for its labels.

mod common;

use std::path::Path;

use common::agent::Agent;
use common::dockerd::{Dockerd, EcsLabels};
use common::{fake_nvml, require, shim_bin};
use serde_json::Value;

const ARN: &str = "arn:aws:ecs:us-east-1:123456789012:task/gpu-cluster/0123456789abcdef";

#[test]
fn gpu_memory_is_reported_per_ecs_task() {
    if !require(
        "gpu_memory_is_reported_per_ecs_task",
        &["dockerd", "containerd", "runc", "cc"],
    ) {
        return;
    }
    let d = Dockerd::start(&shim_bin(), 1, "");
    let (id, pid) = d.run_ecs_task_container(
        &EcsLabels {
            task_arn: ARN,
            family: "inference",
            container_name: "model",
            cluster: "gpu-cluster",
        },
        &[],
    );
    let agent = Agent::new(&fake_nvml())
        .devices_root(Path::new("/"))
        .instance_id("i-0abc")
        .no_discovery()
        .docker_host(&d.url())
        .gpus("GPU-11111111-0000-4000-8000-000000000000,Tesla T4,16000000000,12000000000,00000000:00:1E.0,0,55,20,50,40000")
        .procs(&format!("0:{pid}:3000000000"))
        .proc_util(&format!("0:{pid}:42:10"));
    let sample: Value = serde_json::from_str(&agent.once("json")).unwrap();
    let c = &sample["containers"][0];
    assert_eq!(c["container_id"], id.as_str());
    assert_eq!(c["task_arn"], ARN);
    assert_eq!(c["task_family"], "inference");
    assert_eq!(c["container_name"], "model");
    assert_eq!(c["cluster_name"], "gpu-cluster");
    assert_eq!(c["gpu_memory_bytes"], 3_000_000_000u64);
    assert_eq!(c["sm_util_percent"], 42);
    // By default: the family's series, the task a property. No metadata URI in this container's
    // environment, so no service is looked up.
    let service: Value = agent
        .once("emf")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v.get("ServiceGPUMemoryUsed").is_some())
        .expect("a service-level line");
    assert_eq!(service["TaskArn"], ARN);
    assert_eq!(service["TaskDefinitionFamily"], "inference");
    assert_eq!(service["ServiceGPUUtilization"], 42);
    assert_eq!(
        service["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        serde_json::json!([["ClusterName", "TaskDefinitionFamily"]])
    );
    let task: Value = agent
        .task_dimensions(true)
        .once("emf")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v.get("TaskGPUMemoryUsed").is_some())
        .expect("a per-task line");
    assert_eq!(task["TaskArn"], ARN);
    assert_eq!(task["TaskFamily"], "inference");
    assert_eq!(task["TaskGPUMemoryUsed"], 3_000_000_000u64);
    assert_eq!(
        task["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        serde_json::json!([["InstanceId", "TaskArn"]])
    );
    d.docker_ok(&["rm", "-f", &id]);
    d.stop();
}
