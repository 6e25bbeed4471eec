//! GPU health end to end: a critical Xid on GPU 1, heard from a fake NVML event or a fake
//! kernel log by the real metrics agent, keeps the real shim's `spread` creates off GPU 1,
//! shows in `gpu-share list` and `doctor`, and is published as `GPUXidErrors`; an application
//! Xid is counted but leaves the GPU healthy; `gpu-share gpu clear 1` makes it placeable again.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::moto::Moto;
use common::{cli_bin, fake_nvml, fake_nvml_gpus, nvml_section, require, Bundle, FakeGpuHost};
use common::{FakeRunc, ShimHost};
use serde_json::Value;

const CONTAINER: &str = "3f1c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a";
/// The fake host's GPU 1 (minor 1) sits at PCI 0000:00:1c.
const GPU1_BUS: &str = "0000:00:1c";

/// A 2-GPU host under `spread`, where GPU 1 has the more free memory: healthy, it is the one
/// spread picks.
struct Host {
    shim: ShimHost,
    runc: FakeRunc,
    kmsg: PathBuf,
    _kmsg_dir: tempfile::TempDir,
    nvml_gpus: String,
}

impl Host {
    fn new(sources: &str) -> Host {
        Host::with_metrics(sources, "")
    }

    /// `metrics` is more `[metrics]` TOML (a CloudWatch endpoint).
    fn with_metrics(sources: &str, metrics: &str) -> Host {
        let fake = FakeGpuHost::new(2);
        // A process of a container, named by the kernel log's pid.
        let proc = fake.root().join("proc/4321");
        std::fs::create_dir_all(&proc).unwrap();
        std::fs::write(proc.join("cgroup"), format!("0::/docker/{CONTAINER}\n")).unwrap();
        // An MPS server of a gpu-share daemon, as the kernel log would name it.
        let server = fake.root().join("proc/4322");
        std::fs::create_dir_all(&server).unwrap();
        std::fs::write(
            server.join("environ"),
            b"CUDA_MPS_PIPE_DIRECTORY=/run/gpu-share/mps/gpu1-4096M-50pct/pipe\0HOME=/\0",
        )
        .unwrap();
        let kmsg_dir = tempfile::tempdir().unwrap();
        let kmsg = kmsg_dir.path().join("kmsg");
        nix::unistd::mkfifo(&kmsg, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let extra = format!(
            "[sharing]\nplacement = \"spread\"\n{}[metrics]\ninterval_seconds = 1\ndiscover = false\n\
             docker_host = \"unix:///nonexistent.sock\"\n{metrics}[health]\nsources = {sources}\nkmsg = {:?}\n",
            nvml_section(&fake_nvml()),
            kmsg.display().to_string()
        );
        Host {
            shim: ShimHost::on(fake, &extra),
            runc: FakeRunc::new(),
            kmsg,
            _kmsg_dir: kmsg_dir,
            nvml_gpus: fake_nvml_gpus(&[0, 1], &[2, 12]),
        }
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(cli_bin())
            .args(args)
            .arg("--config")
            .arg(&self.shim.config)
            .env("FAKE_NVML_GPUS", &self.nvml_gpus)
            .env_remove("FAKE_NVML_XID")
            .output()
            .unwrap()
    }

    /// `gpu-share list` (which also keeps NVML's free memory for spread); its stdout.
    fn list(&self) -> String {
        let out = self.cli(&["list"]);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// A create through the real shim; the GPU it got (`NVIDIA_VISIBLE_DEVICES`).
    fn create(&self, id: &str) -> String {
        let bundle = Bundle::docker().write(&self.shim.path("bundles").join(id));
        let out = self
            .shim
            .shim()
            .runc(self.runc.path())
            .create(&bundle, id)
            .output();
        assert!(out.status.success(), "{out:?}");
        let spec: Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
        gpu_share::spec::env_value(&spec, "NVIDIA_VISIBLE_DEVICES")
            .unwrap()
            .to_owned()
    }

    /// Runs the agent (EMF) with `env`, lets `feed` write the kernel log, and returns its
    /// stdout lines up to the first `GPUXidErrors` line.
    fn agent_until_xid(&self, env: &[(&str, &str)], feed: &[&str]) -> Vec<String> {
        self.agent_until(env, feed, "GPUXidErrors")
    }

    /// As `agent_until_xid`, up to the first line that names `metric`.
    fn agent_until(&self, env: &[(&str, &str)], feed: &[&str], metric: &str) -> Vec<String> {
        let mut child = Command::new(cli_bin())
            .args(["metrics", "--output", "emf", "--config"])
            .arg(&self.shim.config)
            .env("FAKE_NVML_GPUS", &self.nvml_gpus)
            .env_remove("FAKE_NVML_XID")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(l).is_err() {
                    break;
                }
            }
        });
        if !feed.is_empty() {
            // Opening the FIFO waits for the agent's reader: nothing is written before it reads.
            let mut w = std::fs::OpenOptions::new()
                .write(true)
                .open(&self.kmsg)
                .unwrap();
            for l in feed {
                w.write_all(format!("{l}\n").as_bytes()).unwrap();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Ok(l) = lines.recv_timeout(Duration::from_millis(200)) {
                let done = l.contains(metric);
                seen.push(l);
                if done {
                    break;
                }
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        seen
    }

    fn health_file(&self) -> PathBuf {
        self.shim.path("state").join("health.json")
    }
}

/// The one `GPUXidErrors` line, checked against the EMF specification.
fn xid_line(lines: &[String]) -> Value {
    let line = lines
        .iter()
        .find(|l| l.contains("GPUXidErrors"))
        .unwrap_or_else(|| panic!("no GPUXidErrors line in {lines:?}"));
    gpu_share::metrics::emf::validate(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    serde_json::from_str(line).unwrap()
}

/// Before, after a critical Xid, and after `gpu clear 1`: which GPU spread gives, and what
/// `list` says.
fn critical_xid_steers_spread_until_cleared(h: &Host, lines: Vec<String>) -> Value {
    let m = xid_line(&lines);
    assert_eq!(m["GpuIndex"], "1", "{m}");
    assert_eq!(m["GPUXidErrors"], 1, "{m}");
    assert_eq!(m["Xid"], 79, "{m}");
    assert_eq!(m["XidCritical"], true, "{m}");
    assert!(h.health_file().exists());
    let listed = h.list();
    let row1 = listed.lines().find(|l| l.starts_with("1 ")).unwrap();
    assert!(row1.contains("UNHEALTHY since "), "{listed}");
    assert!(row1.ends_with("Xid 79"), "{listed}");
    for i in 0..3 {
        assert_eq!(
            h.create(&format!("after-{i}")),
            "0",
            "spread must avoid GPU 1"
        );
    }
    let doctor = h.cli(&["doctor"]);
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("WARN gpu health") && l.contains("GPU 1 UNHEALTHY")),
        "{text}"
    );
    let cleared = h.cli(&["gpu", "clear", "1"]);
    assert!(cleared.status.success(), "{cleared:?}");
    assert!(!h.health_file().exists());
    assert_eq!(h.create("cleared"), "1", "a cleared GPU is placeable again");
    assert!(!h.list().contains("UNHEALTHY"));
    m
}

#[test]
fn nvml_critical_xid_keeps_spread_off_the_gpu_until_cleared() {
    if !require(
        "nvml_critical_xid_keeps_spread_off_the_gpu_until_cleared",
        &["cc"],
    ) {
        return;
    }
    let h = Host::new("[\"nvml\"]");
    h.list();
    assert_eq!(
        h.create("before"),
        "1",
        "healthy, GPU 1 has the most free memory"
    );
    let lines = h.agent_until_xid(&[("FAKE_NVML_XID", "1:79")], &[]);
    let m = critical_xid_steers_spread_until_cleared(&h, lines);
    assert!(
        m["GpuUuid"].as_str().unwrap().starts_with("GPU-00000001"),
        "{m}"
    );
}

#[test]
fn kernel_log_critical_xid_keeps_spread_off_the_gpu_and_names_the_container() {
    if !require(
        "kernel_log_critical_xid_keeps_spread_off_the_gpu_and_names_the_container",
        &["cc"],
    ) {
        return;
    }
    let h = Host::new("[\"kmsg\"]");
    h.list();
    assert_eq!(h.create("before"), "1");
    let line = format!(
        "4,1234,5678901,-;NVRM: Xid (PCI:{GPU1_BUS}): 79, pid=4321, name=python3, GPU has fallen off the bus."
    );
    let lines = h.agent_until_xid(&[], &["6,1,1,-;eth0: link up", &line]);
    let m = critical_xid_steers_spread_until_cleared(&h, lines);
    assert_eq!(m["ContainerId"], CONTAINER, "{m}");
}

#[test]
fn an_application_xid_is_counted_but_leaves_the_gpu_healthy() {
    if !require(
        "an_application_xid_is_counted_but_leaves_the_gpu_healthy",
        &["cc"],
    ) {
        return;
    }
    let h = Host::new("[\"nvml\"]");
    h.list();
    let lines = h.agent_until_xid(&[("FAKE_NVML_XID", "1:13")], &[]);
    let m = xid_line(&lines);
    assert_eq!(
        (m["GpuIndex"].as_str(), m["Xid"].as_u64()),
        (Some("1"), Some(13))
    );
    assert_eq!(m["XidCritical"], false, "{m}");
    assert!(!h.health_file().exists());
    assert!(!h.list().contains("UNHEALTHY"));
    assert_eq!(h.create("after"), "1");
}

#[test]
fn an_mps_server_fault_is_counted_per_daemon() {
    if !require("an_mps_server_fault_is_counted_per_daemon", &["cc"]) {
        return;
    }
    let h = Host::new("[\"kmsg\"]");
    let line = format!(
        "4,1235,5678902,-;NVRM: Xid (PCI:{GPU1_BUS}): 31, pid=4322, name=nvidia-cuda-mps, Ch 00000008, intr 10000000. MMU Fault"
    );
    let lines = h.agent_until(&[], &[&line], "MPSServerFaults");
    let fault = lines
        .iter()
        .find(|l| l.contains("MPSServerFaults"))
        .unwrap_or_else(|| panic!("no MPSServerFaults line in {lines:?}"));
    gpu_share::metrics::emf::validate(fault).unwrap_or_else(|e| panic!("{e}: {fault}"));
    let m: Value = serde_json::from_str(fault).unwrap();
    assert_eq!(m["MPSServerFaults"], 1, "{m}");
    assert_eq!(m["GpuIndex"], "1", "{m}");
    assert_eq!(m["MpsDaemon"], "gpu1-4096M-50pct", "{m}");
    // Xid 31 is an application error: counted as an Xid too, the GPU stays healthy.
    assert_eq!(xid_line(&lines)["Xid"], 31);
    assert!(!h.health_file().exists());
}

#[test]
fn a_corrupt_health_file_does_not_stop_containers() {
    let h = Host::new("[]");
    std::fs::create_dir_all(h.shim.path("state")).unwrap();
    std::fs::write(h.health_file(), b"{\"gpus\": [oops").unwrap();
    let visible = h.create("c");
    assert!(visible == "0" || visible == "1", "{visible}");
    let log = std::fs::read_to_string(&h.shim.log).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("every GPU taken as healthy")),
        "{log}"
    );
}

#[test]
fn a_named_unhealthy_gpu_is_refused_and_all_leaves_it_out() {
    let h = Host::new("[]");
    std::fs::create_dir_all(h.shim.path("state")).unwrap();
    std::fs::write(
        h.health_file(),
        format!(
            r#"{{"gpus":[{{"index":1,"uuid":"{}","since":"2026-11-25T12:00:00Z","xid":79,"message":"GPU has fallen off the bus."}}]}}"#,
            FakeGpuHost::uuid(1)
        ),
    )
    .unwrap();
    let named = |id: &str, value: &str| {
        let bundle = Bundle::docker()
            .visible_devices(value)
            .write(&h.shim.path("bundles").join(id));
        let out = h
            .shim
            .shim()
            .runc(h.runc.path())
            .create(&bundle, id)
            .output();
        let spec: Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
        (
            out,
            gpu_share::spec::env_value(&spec, "NVIDIA_VISIBLE_DEVICES").map(str::to_owned),
        )
    };
    let (out, _) = named("one", "1");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("GPU 1 is unhealthy (Xid 79 since 2026-11-25T12:00:00Z)"),
        "{err}"
    );
    let (out, visible) = named("all", "all");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(visible.as_deref(), Some("0"));
    let log = std::fs::read_to_string(&h.shim.log).unwrap();
    assert!(
        log.contains(
            "INFO unhealthy, given no new container: GPU 1 (Xid 79 since 2026-11-25T12:00:00Z)"
        ),
        "{log}"
    );
    let e = h.cli(&["gpu", "clear", "0"]);
    assert!(!e.status.success());
    assert_eq!(
        String::from_utf8_lossy(&e.stderr).trim(),
        "gpu-share: GPU 0 is not marked unhealthy (unhealthy: GPU 1); nothing cleared"
    );
    let ok = h.cli(&["gpu", "clear", &FakeGpuHost::uuid(1)]);
    assert!(ok.status.success(), "{ok:?}");
}

#[test]
fn gpu_xid_errors_reach_cloudwatch() {
    if !require("gpu_xid_errors_reach_cloudwatch", &["moto_server", "cc"]) {
        return;
    }
    let moto = Moto::start(Moto::free_port());
    let h = Host::with_metrics(
        "[\"nvml\"]",
        &format!(
            "endpoint_url = {:?}\nregion = \"us-east-1\"\ninstance_id = \"i-0abc\"\n",
            moto.url()
        ),
    );
    let mut child = Command::new(cli_bin())
        .args(["metrics", "--output", "cloudwatch", "--config"])
        .arg(&h.shim.config)
        .env("FAKE_NVML_GPUS", &h.nvml_gpus)
        .env("FAKE_NVML_XID", "1:79")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_PROFILE")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut found = Vec::new();
    while Instant::now() < deadline && found.is_empty() {
        std::thread::sleep(Duration::from_millis(500));
        found = moto
            .list_metrics("GPUShare")
            .into_iter()
            .filter(|(name, _)| name == "GPUXidErrors")
            .map(|(_, dims)| dims.join(","))
            .collect();
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(found, ["GpuIndex=1,InstanceId=i-0abc"]);
    assert!(h.health_file().exists());
}
