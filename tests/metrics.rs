//! `gpu-share metrics` through the fake NVML library: two GPUs, processes in two fake
//! containers (cgroup files under a fake root) and one of the host's.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{fake_nvml_library, require};
use gpu_share::metrics::emf;
use serde_json::Value;

const CLI: &str = env!("CARGO_BIN_EXE_gpu-share");
const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const GIB: u64 = 1 << 30;

struct Host {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Host {
    fn new(interval: u64) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        for (pid, cgroup) in [
            (101, format!("/docker/{A}")),
            (102, format!("/docker/{A}")),
            (201, format!("/system.slice/docker-{B}.scope")),
            (301, "/system.slice/sshd.service".to_owned()),
        ] {
            let p = root.join(format!("proc/{pid}"));
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("cgroup"), format!("0::{cgroup}\n")).unwrap();
        }
        let lib = fake_nvml_library(Path::new(env!("CARGO_TARGET_TMPDIR")));
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[devices]\nroot = {:?}\n[nvml]\nlibrary = {:?}\n[metrics]\ninterval_seconds = {interval}\ninstance_id = \"i-0abc\"\nauto_scaling_group_name = \"gpu-asg\"\ncluster_name = \"gpu-cluster\"\ndiscover = false\n",
                root.display().to_string(),
                lib.display().to_string()
            ),
        )
        .unwrap();
        Host { dir, config }
    }

    fn command(&self, output: &str, once: bool) -> Command {
        let mut c = Command::new(CLI);
        c.args(["metrics", "--output", output, "--config"])
            .arg(&self.config)
            .env(
                "FAKE_NVML_GPUS",
                format!(
                    "GPU-11111111-0000-4000-8000-000000000000,Tesla T4,{t},{f0},00000000:00:1E.0,0,20,5,41,27000;GPU-22222222-0000-4000-8000-000000000000,Tesla T4,{t},{f1},00000000:00:1F.0,1,80,40,67,64500",
                    t = 16 * GIB,
                    f0 = 14 * GIB,
                    f1 = 12 * GIB
                ),
            )
            .env(
                "FAKE_NVML_PROCS",
                format!("0:101:{};1:102:{};1:201:{};0:301:{}", GIB, GIB / 2, 2 * GIB, GIB / 4),
            )
            .env_remove("FAKE_NVML_INIT_ERROR")
            .stdin(Stdio::null());
        if once {
            c.arg("--once");
        }
        c
    }

    fn once(&self, output: &str) -> String {
        let out = self.command(output, true).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }
}

#[test]
fn json_sample_has_every_gpu_and_each_container_s_memory() {
    if !require(
        "json_sample_has_every_gpu_and_each_container_s_memory",
        &["cc"],
    ) {
        return;
    }
    let h = Host::new(60);
    let s: Value = serde_json::from_str(&h.once("json")).unwrap();
    let gpus = s["gpus"].as_array().unwrap();
    assert_eq!(gpus.len(), 2);
    assert_eq!(gpus[1]["utilization_gpu_percent"], 80);
    assert_eq!(gpus[1]["utilization_memory_percent"], 40);
    assert_eq!(gpus[1]["memory_used_bytes"], 4 * GIB);
    assert_eq!(gpus[1]["memory_total_bytes"], 16 * GIB);
    assert_eq!(gpus[1]["temperature_celsius"], 67);
    assert_eq!(gpus[1]["power_watts"], 64.5);
    let containers: Vec<(String, u64, u64)> = s["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["container_id"].as_str().unwrap().to_owned(),
                c["gpu_index"].as_u64().unwrap(),
                c["gpu_memory_bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        containers,
        vec![
            (A.to_owned(), 0, GIB),
            (A.to_owned(), 1, GIB / 2),
            (B.to_owned(), 1, 2 * GIB)
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
    let h = Host::new(60);
    let text = h.once("emf");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 2 + 2, "{text}");
    for l in &lines {
        emf::validate(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
    let v: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
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
    // Per container (no ECS labels known here): memory over its GPUs.
    assert_eq!(v[3]["ContainerId"], A);
    assert_eq!(v[3]["TaskGPUMemoryUsed"], GIB + GIB / 2);
    assert_eq!(v[4]["ContainerId"], B);
    assert_eq!(v[4]["TaskGPUMemoryUsed"], 2 * GIB);
}

#[test]
fn the_agent_samples_every_interval_at_high_resolution() {
    if !require(
        "the_agent_samples_every_interval_at_high_resolution",
        &["cc"],
    ) {
        return;
    }
    let h = Host::new(1);
    let out = h.dir.path().join("out");
    let mut child = h
        .command("emf", false)
        .stdout(std::fs::File::create(&out).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    child.kill().unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    let instance_lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
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
    let h = Host::new(60);
    let text = std::fs::read_to_string(&h.config).unwrap().replace(
        "library = ",
        "library = \"/nonexistent/libnvidia-ml.so\"\n# ",
    );
    std::fs::write(&h.config, text).unwrap();
    let out = h.command("json", true).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("gpu-share: NVML (/nonexistent/libnvidia-ml.so)"),
        "{err}"
    );
}
