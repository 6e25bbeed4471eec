//! `gpu-share metrics` through the fake NVML library: two GPUs, processes in two fake
//! containers (cgroup files under a fake root) and one of the host's, with per-process SM
//! utilisation samples.

mod common;

use std::path::Path;
use std::time::Duration;

use common::agent::Agent;
use common::{fake_nvml, require};
use gpu_share::metrics::emf;
use serde_json::Value;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const GIB: u64 = 1 << 30;

/// The agent sampling every `interval` seconds: two GPUs; container A's processes on both,
/// container B's (a systemd scope) on GPU 1, and one of the host's on GPU 0.
fn agent(interval: u64) -> Agent {
    Agent::new(&fake_nvml())
        .cgroups(&[
            (101, &format!("/docker/{A}")),
            (102, &format!("/docker/{A}")),
            (201, &format!("/system.slice/docker-{B}.scope")),
            (301, "/system.slice/sshd.service"),
        ])
        .interval(interval)
        .instance_id("i-0abc")
        .auto_scaling_group("gpu-asg")
        .cluster("gpu-cluster")
        .no_discovery()
        .gpus(&format!(
            "GPU-11111111-0000-4000-8000-000000000000,Tesla T4,{t},{f0},00000000:00:1E.0,0,20,5,41,27000;GPU-22222222-0000-4000-8000-000000000000,Tesla T4,{t},{f1},00000000:00:1F.0,1,80,40,67,64500",
            t = 16 * GIB,
            f0 = 14 * GIB,
            f1 = 12 * GIB
        ))
        .procs(&format!(
            "0:101:{};1:102:{};1:201:{};0:301:{}",
            GIB,
            GIB / 2,
            2 * GIB,
            GIB / 4
        ))
        .proc_util("0:101:12:3;1:102:30:9;1:201:45:2;0:301:8:1")
}

/// Each line of `text`, parsed as JSON.
fn parsed(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The EMF lines of one sample, parsed.
fn emf_lines(agent: &Agent) -> Vec<Value> {
    parsed(&agent.once("emf"))
}

/// What the agent, left in its loop writing EMF, writes in `run_for`.
fn emf_for(agent: &Agent, run_for: Duration) -> String {
    let out = agent.dir().join("out");
    let mut child = agent
        .command("emf")
        .stdout(std::fs::File::create(&out).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(run_for);
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::read_to_string(&out).unwrap()
}

/// The value of `metric` on the line whose `key` is `value`, if that line has it.
fn find(lines: &[Value], key: &str, value: &str, metric: &str) -> Option<Value> {
    lines
        .iter()
        .find(|l| l[key] == value)
        .and_then(|l| l.get(metric).cloned())
}

#[test]
fn json_sample_has_every_gpu_and_each_container_s_memory_and_sm_use() {
    if !require(
        "json_sample_has_every_gpu_and_each_container_s_memory_and_sm_use",
        &["cc"],
    ) {
        return;
    }
    let h = agent(60);
    let s: Value = serde_json::from_str(&h.once("json")).unwrap();
    let gpus = s["gpus"].as_array().unwrap();
    assert_eq!(gpus.len(), 2);
    assert_eq!(gpus[1]["utilization_gpu_percent"], 80);
    assert_eq!(gpus[1]["utilization_memory_percent"], 40);
    assert_eq!(gpus[1]["memory_used_bytes"], 4 * GIB);
    assert_eq!(gpus[1]["memory_total_bytes"], 16 * GIB);
    assert_eq!(gpus[1]["temperature_celsius"], 67);
    assert_eq!(gpus[1]["power_watts"], 64.5);
    let containers: Vec<(String, u64, u64, u64)> = s["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["container_id"].as_str().unwrap().to_owned(),
                c["gpu_index"].as_u64().unwrap(),
                c["gpu_memory_bytes"].as_u64().unwrap(),
                c["sm_util_percent"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        containers,
        vec![
            (A.to_owned(), 0, GIB, 12),
            (A.to_owned(), 1, GIB / 2, 30),
            (B.to_owned(), 1, 2 * GIB, 45)
        ]
    );
    assert_eq!(s["host_processes"], 1);
}

#[test]
fn emf_lines_follow_the_specification_and_carry_the_values() {
    if !require(
        "emf_lines_follow_the_specification_and_carry_the_values",
        &["cc"],
    ) {
        return;
    }
    let h = agent(60).task_dimensions(true);
    let text = h.once("emf");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 2 + 2, "{text}");
    for l in &lines {
        emf::validate(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
    let v = parsed(&text);
    // Instance: mean utilisation, by the full set and by the group alone.
    assert_eq!(v[0]["GPUUtilization"], 50.0);
    assert_eq!(
        v[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        serde_json::json!([
            ["InstanceId", "AutoScalingGroupName", "ClusterName"],
            ["AutoScalingGroupName"]
        ])
    );
    assert_eq!(
        v[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "GPUShare"
    );
    assert_eq!(
        v[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["StorageResolution"],
        60
    );
    // Per GPU.
    assert_eq!(v[2]["GpuIndex"], "1");
    assert_eq!(v[2]["GPUUtilization"], 80);
    assert_eq!(v[2]["GPUMemoryUsed"], 4 * GIB);
    assert_eq!(v[2]["InstanceId"], "i-0abc");
    // Per container (no ECS labels known here, task dimensions on): memory and SM utilisation
    // over its GPUs.
    assert_eq!(v[3]["ContainerId"], A);
    assert_eq!(v[3]["TaskGPUMemoryUsed"], GIB + GIB / 2);
    assert_eq!(v[3]["TaskGPUUtilization"], 12 + 30);
    assert_eq!(v[4]["ContainerId"], B);
    assert_eq!(v[4]["TaskGPUMemoryUsed"], 2 * GIB);
    assert_eq!(v[4]["TaskGPUUtilization"], 45);
}

#[test]
fn containers_of_no_ecs_task_have_no_series_of_their_own_by_default() {
    if !require(
        "containers_of_no_ecs_task_have_no_series_of_their_own_by_default",
        &["cc"],
    ) {
        return;
    }
    let lines = emf_lines(&agent(60));
    assert_eq!(lines.len(), 1 + 2, "{lines:?}");
    assert!(lines.iter().all(|l| l.get("ContainerId").is_none()));
}

#[test]
fn a_gpu_without_process_utilisation_gives_no_utilisation_datum() {
    if !require(
        "a_gpu_without_process_utilisation_gives_no_utilisation_datum",
        &["cc"],
    ) {
        return;
    }
    // GPU 0 answers NOT_SUPPORTED; A uses GPU 0 and 1, B only GPU 1.
    let lines = emf_lines(&agent(60).task_dimensions(true).proc_util_error("0:3"));
    assert_eq!(find(&lines, "ContainerId", A, "TaskGPUUtilization"), None);
    assert_eq!(
        find(&lines, "ContainerId", A, "TaskGPUMemoryUsed"),
        Some(serde_json::json!(GIB + GIB / 2))
    );
    assert_eq!(
        find(&lines, "ContainerId", B, "TaskGPUUtilization"),
        Some(serde_json::json!(45))
    );
    for l in &lines {
        emf::validate(&l.to_string()).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
}

#[test]
fn a_process_in_both_compute_and_graphics_lists_counts_its_utilisation_once() {
    if !require(
        "a_process_in_both_compute_and_graphics_lists_counts_its_utilisation_once",
        &["cc"],
    ) {
        return;
    }
    // B's process is a CUDA and a graphics process on GPU 1: NVML lists it twice.
    let h = agent(60)
        .task_dimensions(true)
        .procs(&format!("1:201:{};1:201:0:1", 2 * GIB));
    let lines = emf_lines(&h);
    assert_eq!(
        find(&lines, "ContainerId", B, "TaskGPUUtilization"),
        Some(serde_json::json!(45))
    );
}

#[test]
fn each_driver_sample_is_counted_once_and_an_idle_process_reads_zero() {
    if !require(
        "each_driver_sample_is_counted_once_and_an_idle_process_reads_zero",
        &["cc"],
    ) {
        return;
    }
    // Samples the driver took once, long ago: the first call sees them; later calls ask only
    // for newer ones, get NOT_FOUND, and read 0.
    let h = agent(1)
        .task_dimensions(true)
        .proc_util("0:101:12:3:1000;1:102:30:9:1000;1:201:45:2:1000");
    let text = emf_for(&h, Duration::from_millis(2500));
    let b: Vec<Value> = parsed(&text)
        .into_iter()
        .filter(|v| v["ContainerId"] == B)
        .map(|v| v["TaskGPUUtilization"].clone())
        .collect();
    assert!(b.len() >= 2, "{text}");
    assert_eq!(b[0], 45, "{text}");
    assert!(b[1..].iter().all(|v| *v == 0), "{text}");
}

#[test]
fn the_agent_samples_every_interval_at_high_resolution() {
    if !require(
        "the_agent_samples_every_interval_at_high_resolution",
        &["cc"],
    ) {
        return;
    }
    let h = agent(1);
    let text = emf_for(&h, Duration::from_millis(2500));
    let instance_lines: Vec<Value> = parsed(&text)
        .into_iter()
        .filter(|v| v.get("GPUCount").is_some())
        .collect();
    assert!(instance_lines.len() >= 2, "{text}");
    assert_eq!(
        instance_lines[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["StorageResolution"],
        1
    );
    let t0 = instance_lines[0]["_aws"]["Timestamp"].as_u64().unwrap();
    let t1 = instance_lines[1]["_aws"]["Timestamp"].as_u64().unwrap();
    assert!((900..=1500).contains(&(t1 - t0)), "{t0} {t1}");
}

#[test]
fn no_nvml_is_a_clear_error() {
    let h = agent(60).nvml_library(Path::new("/nonexistent/libnvidia-ml.so"));
    let out = h.run_once("json");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("gpu-share: NVML (/nonexistent/libnvidia-ml.so)"),
        "{err}"
    );
}
