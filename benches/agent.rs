//! `make bench`, second part: the metrics agent's CPU time per sample and its peak memory.
//!
//! CPU: in-process, the whole per-sample path as the agent runs it (`Pipeline::sample_once`:
//! NVML through the fake library with 4 GPUs and 8 processes in 4 containers of 4 ECS tasks of
//! 2 services, per-process utilisation samples on every GPU, /proc attribution, records,
//! PutMetricData datums), measured with getrusage over many samples. Memory: the real
//! `gpu-share metrics` publishing to moto's CloudWatch API every second, its peak RSS (VmHWM)
//! after a while.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::moto::Moto;
use common::{fake_nvml_library, require};
use gpu_share::gpu::nvml::Nvml;
use gpu_share::metrics::pipeline::{Pipeline, Render, Rendered};
use gpu_share::metrics::publication::{Publication, StorageResolution};
use gpu_share::metrics::{ContainerInfo, NvmlSampler};

const CLI: &str = env!("CARGO_BIN_EXE_gpu-share");

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

fn main() {
    if !require("make bench (agent)", &["cc", "moto_server"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let mut procs = Vec::new();
    let mut util = Vec::new();
    for i in 0..8u32 {
        let pid = 1000 + i;
        let container = format!("{:064x}", i / 2 + 1);
        let p = root.join(format!("proc/{pid}"));
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("cgroup"), format!("0::/docker/{container}\n")).unwrap();
        procs.push(format!("{}:{pid}:{}", i % 4, (i + 1) << 28));
        // No timestamp: always newer than the cursor, so every call returns samples.
        util.push(format!("{}:{pid}:{}:{}", i % 4, 5 + i * 7, i));
    }
    let gpus: Vec<String> = (0..4)
        .map(|i| {
            format!(
                "GPU-{i:08x}-0000-4000-8000-000000000000,Tesla T4,{},{},00000000:00:{:02X}.0,{i},{},{},50,35000",
                16u64 << 30,
                8u64 << 30,
                0x1b + i,
                20 * i,
                10 * i
            )
        })
        .collect();
    std::env::set_var("FAKE_NVML_GPUS", gpus.join(";"));
    std::env::set_var("FAKE_NVML_PROCS", procs.join(";"));
    std::env::set_var("FAKE_NVML_PROC_UTIL", util.join(";"));
    let lib = fake_nvml_library(dir.path());
    let nvml = Nvml::load(lib.as_os_str()).expect("fake NVML");
    let publication = Publication {
        namespace: "GPUShare".into(),
        dimensions: vec![
            ("InstanceId".to_owned(), "i-0abc".to_owned()),
            ("AutoScalingGroupName".to_owned(), "gpu-asg".to_owned()),
            ("ClusterName".to_owned(), "gpu-cluster".to_owned()),
        ],
        storage_resolution: StorageResolution::High,
        task_dimensions: false,
    };
    // The agent's default sink, and the one the memory figure below runs: CloudWatch datums.
    let sampler = NvmlSampler::new(&nvml);
    // Four ECS tasks of two services, as dockerd's labels and the task metadata tell them
    // (both cached in the agent after a task's first sample).
    let describe = |id: &str| {
        let task = id.trim_start_matches('0');
        ContainerInfo {
            task_arn: Some(format!("arn:aws:ecs:us-east-1:1:task/gpu-cluster/{task}")),
            task_family: Some("inference".to_owned()),
            cluster_name: Some("gpu-cluster".to_owned()),
            service_name: Some(format!("svc-{}", u8::from(task.ends_with(['1', '3'])))),
            ..ContainerInfo::default()
        }
    };
    let pipeline = Pipeline {
        sampler: &sampler,
        root: &root,
        describe: &describe,
        publication: &publication,
        render: Render::Datums,
    };
    let one = || {
        let Ok(Rendered::Datums(datums)) = pipeline.sample_once() else {
            panic!("a sample of datums");
        };
        // Every task is attributed: its utilisation under its service and its family.
        let per_task = datums
            .iter()
            .filter(|d| d.metric_name() == Some("ServiceGPUUtilization"))
            .count();
        assert_eq!(per_task, 4 * 2);
        std::hint::black_box(datums.len());
    };
    for _ in 0..50 {
        one();
    }
    let n = std::env::var("BENCH_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let before = cpu_seconds();
    for _ in 0..n {
        one();
    }
    let per_sample_ms = (cpu_seconds() - before) * 1000.0 / f64::from(n);

    // Peak memory of the real agent publishing every second.
    let moto = Moto::start(Moto::free_port());
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[devices]\nroot = {:?}\n[nvml]\nlibrary = {:?}\n[metrics]\ninterval_seconds = 1\ninstance_id = \"i-0abc\"\nauto_scaling_group_name = \"gpu-asg\"\nendpoint_url = {:?}\nregion = \"us-east-1\"\ndiscover = false\ndocker_host = \"unix:///nonexistent.sock\"\n",
            root.display().to_string(),
            lib.display().to_string(),
            moto.url()
        ),
    )
    .unwrap();
    let mut agent = Command::new(CLI)
        .args(["metrics", "--output", "cloudwatch", "--config"])
        .arg(&config)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let secs = std::env::var("BENCH_AGENT_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    std::thread::sleep(Duration::from_secs(secs));
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", agent.id())).unwrap_or_default();
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let _ = agent.kill();
    let _ = agent.wait();

    let rss_mib = hwm_kib as f64 / 1024.0;
    println!();
    println!(
        "metrics agent (4 GPUs, 8 processes in 4 ECS tasks, per-process utilisation, fake NVML)"
    );
    println!(
        "  CPU per sample        {per_sample_ms:>8.3} ms over {n} samples   target < 1 ms {}",
        if per_sample_ms < 1.0 {
            "(met)"
        } else {
            "(MISSED)"
        }
    );
    println!(
        "  peak RSS (VmHWM)      {rss_mib:>8.1} MiB after {secs} s publishing to CloudWatch every second   target < 20 MiB {}",
        if rss_mib < 20.0 { "(met)" } else { "(MISSED)" }
    );
}
