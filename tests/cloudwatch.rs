//! Publishing to a real local CloudWatch API (moto's server on 127.0.0.1), read back with
//! ListMetrics and GetMetricData; and an outage: the server stopped for several intervals.

mod common;

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use common::agent::Agent;
use common::moto::Moto;
use common::{fake_nvml, require};

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const GIB: u64 = 1 << 30;

/// The agent publishing to `moto` every `interval` seconds, buffering up to `buffer` datums:
/// two GPUs, container A's process on GPU 0 and container B's on GPU 1.
fn agent(moto: &Moto, interval: u64, buffer: usize) -> Agent {
    Agent::new(&fake_nvml())
        .cgroups(&[(101, &format!("/docker/{A}")), (102, &format!("/docker/{B}"))])
        .interval(interval)
        .instance_id("i-0abc")
        .auto_scaling_group("gpu-asg")
        .cloudwatch(&moto.url())
        .buffer_max_datums(buffer)
        .no_discovery()
        .without_docker()
        .gpus(&format!(
            "GPU-11111111-0000-4000-8000-000000000000,Tesla T4,{t},{f},00000000:00:1E.0,0,20,5,41,27000;GPU-22222222-0000-4000-8000-000000000000,Tesla T4,{t},{f},00000000:00:1F.0,1,80,40,67,64500",
            t = 16 * GIB,
            f = 12 * GIB
        ))
        .procs(&format!("0:101:{GIB};1:102:{}", GIB / 2))
}

/// The agent running, its stderr in a file.
fn spawn(agent: &Agent) -> (Child, PathBuf) {
    let stderr = agent.dir().join("agent.err");
    let child = agent
        .command("cloudwatch")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    (child, stderr)
}

fn dims(pairs: &[(&str, &str)]) -> Vec<Dimension> {
    pairs
        .iter()
        .map(|(k, v)| Dimension::builder().name(*k).value(*v).build())
        .collect()
}

/// The values of one series over the last ten minutes, oldest first, with their timestamps.
fn series(moto: &Moto, name: &str, dimensions: &[(&str, &str)], period: i32) -> Vec<(i64, f64)> {
    let (rt, client) = moto.client();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let query = MetricDataQuery::builder()
        .id("q")
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace("GPUShare")
                        .metric_name(name)
                        .set_dimensions(Some(dims(dimensions)))
                        .build(),
                )
                .period(period)
                .stat("Average")
                .build(),
        )
        .build();
    let out = rt
        .block_on(
            client
                .get_metric_data()
                .metric_data_queries(query)
                .start_time(DateTime::from_secs(now - 600))
                .end_time(DateTime::from_secs(now + 60))
                .send(),
        )
        .expect("GetMetricData");
    let r = &out.metric_data_results()[0];
    let mut points: Vec<(i64, f64)> = r
        .timestamps()
        .iter()
        .map(|t| t.secs())
        .zip(r.values().iter().copied())
        .collect();
    points.sort_by_key(|p| p.0);
    points
}

#[test]
fn metric_names_dimensions_and_values_arrive() {
    if !require(
        "metric_names_dimensions_and_values_arrive",
        &["moto_server", "cc"],
    ) {
        return;
    }
    let moto = Moto::start(Moto::free_port());
    // Containers of no ECS task have series of their own only with task dimensions on.
    let agent = agent(&moto, 60, 10_000)
        .task_dimensions(true)
        .proc_util("0:101:35:5;1:102:60:5");
    let out = agent.run_once("cloudwatch");
    assert!(out.status.success(), "{out:?}");

    let seen = moto.list_metrics("GPUShare");
    let expect = |name: &str, d: &[&str]| {
        let mut d: Vec<String> = d.iter().map(|s| s.to_string()).collect();
        d.sort();
        (name.to_owned(), d)
    };
    let base = ["InstanceId=i-0abc", "AutoScalingGroupName=gpu-asg"];
    let mut wanted = vec![
        expect("GPUUtilization", &base),
        expect("GPUUtilization", &["AutoScalingGroupName=gpu-asg"]),
        expect("GPUCount", &base),
        expect("GPUCount", &["AutoScalingGroupName=gpu-asg"]),
        expect(
            "TaskGPUMemoryUsed",
            &[base[0], base[1], &format!("ContainerId={A}")],
        ),
        expect(
            "TaskGPUMemoryUsed",
            &[base[0], base[1], &format!("ContainerId={B}")],
        ),
        expect(
            "TaskGPUUtilization",
            &[base[0], base[1], &format!("ContainerId={A}")],
        ),
        expect(
            "TaskGPUUtilization",
            &[base[0], base[1], &format!("ContainerId={B}")],
        ),
    ];
    for gpu in ["GpuIndex=0", "GpuIndex=1"] {
        for name in [
            "GPUUtilization",
            "GPUMemoryUtilization",
            "GPUMemoryUsed",
            "GPUMemoryTotal",
            "GPUTemperature",
            "GPUPowerDraw",
        ] {
            wanted.push(expect(name, &[base[0], base[1], gpu]));
        }
    }
    wanted.sort();
    assert_eq!(seen, wanted);

    let b = [
        ("InstanceId", "i-0abc"),
        ("AutoScalingGroupName", "gpu-asg"),
    ];
    assert_eq!(
        series(&moto, "GPUUtilization", &b, 60).last().unwrap().1,
        50.0
    );
    assert_eq!(
        series(
            &moto,
            "GPUUtilization",
            &[("AutoScalingGroupName", "gpu-asg")],
            60
        )
        .last()
        .unwrap()
        .1,
        50.0
    );
    let gpu1 = [b[0], b[1], ("GpuIndex", "1")];
    assert_eq!(
        series(&moto, "GPUUtilization", &gpu1, 60).last().unwrap().1,
        80.0
    );
    assert_eq!(
        series(&moto, "GPUMemoryUsed", &gpu1, 60).last().unwrap().1,
        (4 * GIB) as f64
    );
    assert_eq!(
        series(&moto, "GPUPowerDraw", &gpu1, 60).last().unwrap().1,
        64.5
    );
    // Two containers: each one's memory under its own series.
    for (id, bytes, sm) in [(A, GIB, 35.0), (B, GIB / 2, 60.0)] {
        let task = [b[0], b[1], ("ContainerId", id)];
        let got = series(&moto, "TaskGPUMemoryUsed", &task, 60);
        assert_eq!(got.last().unwrap().1, bytes as f64, "{id}");
        let got = series(&moto, "TaskGPUUtilization", &task, 60);
        assert_eq!(got.last().unwrap().1, sm, "{id}");
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Watches a running agent for `ticks` half-seconds: it must not exit. Its peak RSS in KiB.
fn watch(child: &mut Child, ticks: u32) -> u64 {
    let mut peak = 0;
    for _ in 0..ticks {
        std::thread::sleep(Duration::from_millis(500));
        assert!(child.try_wait().unwrap().is_none(), "the agent exited");
        peak = peak.max(rss_kib(child.id()));
    }
    peak
}

#[test]
fn an_outage_is_bridged_by_the_buffer_and_memory_stays_bounded() {
    if !require(
        "an_outage_is_bridged_by_the_buffer_and_memory_stays_bounded",
        &["moto_server", "cc"],
    ) {
        return;
    }
    let mut moto = Moto::start(Moto::free_port());
    // 1-second samples of 16 datums each; room for the whole outage.
    let agent = agent(&moto, 1, 1000);
    let (mut child, stderr) = spawn(&agent);
    std::thread::sleep(Duration::from_millis(2500));
    moto.stop();
    let down_from = unix_now();
    let peak = watch(&mut child, 14);
    let down_until = unix_now();
    moto.restart();
    // Backoff after several failures is a few seconds; the buffer then drains.
    let b = [
        ("InstanceId", "i-0abc"),
        ("AutoScalingGroupName", "gpu-asg"),
    ];
    let deadline = Instant::now() + Duration::from_secs(40);
    let during = loop {
        let points = series(&moto, "GPUUtilization", &b, 1);
        let during: Vec<i64> = points
            .iter()
            .map(|p| p.0)
            .filter(|t| (down_from..=down_until).contains(t))
            .collect();
        if during.len() >= 4 || Instant::now() > deadline {
            break during;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(child.try_wait().unwrap().is_none(), "the agent exited");
    child.kill().unwrap();
    child.wait().unwrap();
    let log = std::fs::read_to_string(&stderr).unwrap();
    assert!(
        during.len() >= 4,
        "samples taken during the outage did not arrive: {during:?}\n{log}"
    );
    assert!(log.contains("PutMetricData failed"), "{log}");
    assert!(!log.contains("dropped"), "{log}");
    assert!(peak > 0 && peak < 64 * 1024, "RSS {peak} KiB");
}

#[test]
fn a_full_buffer_drops_the_oldest_and_says_so() {
    if !require(
        "a_full_buffer_drops_the_oldest_and_says_so",
        &["moto_server", "cc"],
    ) {
        return;
    }
    // A port nothing listens on: CloudWatch is down for the whole run.
    let mut moto = Moto::start(Moto::free_port());
    moto.stop();
    let agent = agent(&moto, 1, 40);
    let (mut child, stderr) = spawn(&agent);
    let peak = watch(&mut child, 8);
    child.kill().unwrap();
    child.wait().unwrap();
    let log = std::fs::read_to_string(&stderr).unwrap();
    // 4 samples of 16 datums into room for 40.
    assert!(log.contains("buffer full (40 datums)"), "{log}");
    assert!(log.contains("oldest datums dropped so far"), "{log}");
    assert!(peak > 0 && peak < 64 * 1024, "RSS {peak} KiB");
}
