//! `isolation.mode = "mps"` on the create path, with the fake `nvidia-cuda-mps-control` and real
//! runc: the daemon for each (GPU, cap class) started with its limits, a container that sees
//! only its own daemon's pipe directory, the caps a container asks for (and the maxima), the
//! fail-closed refusals, and admission by capped memory under concurrency.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::mps::{start_hung, write_gpu_cache, MpsDir};
use common::shim::Running;
use common::{busybox_rootfs, require, snapshot, Bundle, FakeGpuHost, Shim, ShimHost, NO_NVML};
use serde_json::{json, Value};

const GIB: u64 = 1 << 30;

/// A fake host in `mps` mode (defaults 4GiB and 50%, max 8GiB and 80%), whose GPUs have
/// `total` bytes each in the NVML cache, with runc's state in its dir.
struct MpsHost {
    mps: MpsDir,
    host: ShimHost,
}

impl MpsHost {
    fn new(gpus: u32, total: u64, extra: &str) -> MpsHost {
        let mps = MpsDir::new();
        let section = mps.section(&format!(
            "max_memory = \"8GiB\"\nmax_compute_percent = 80\n{extra}"
        ));
        let host = ShimHost::new(
            gpus,
            &format!("[sharing]\nplacement = \"spread\"\n{NO_NVML}{section}"),
        );
        let uuids: Vec<String> = (0..gpus).map(FakeGpuHost::uuid).collect();
        write_gpu_cache(&host.path("state"), &uuids, total);
        MpsHost { mps, host }
    }

    fn shim(&self) -> Shim {
        self.host.shim().root(self.host.path("runc"))
    }

    fn bundle(&self, id: &str, bundle: Bundle) -> PathBuf {
        bundle.write(&self.host.path("bundles").join(id))
    }

    /// A busybox bundle whose config.json is `spec`.
    fn bundle_with_spec(&self, id: &str, spec: &Value) -> PathBuf {
        let dir = self.bundle(id, Bundle::busybox());
        std::fs::write(dir.join("config.json"), serde_json::to_vec(spec).unwrap()).unwrap();
        dir
    }

    fn pipe_dir(&self, daemon: &str) -> PathBuf {
        self.mps.path().join(daemon).join("pipe")
    }

    fn state(&self) -> Value {
        std::fs::read(self.host.path("state/placements.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }
}

impl Drop for MpsHost {
    fn drop(&mut self) {
        let root = self.host.path("runc");
        let Ok(entries) = std::fs::read_dir(&root) else {
            return;
        };
        for e in entries.flatten() {
            let _ = std::process::Command::new("runc")
                .arg("--root")
                .arg(&root)
                .args(["delete", "--force"])
                .arg(e.file_name())
                .output();
        }
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

fn spec_env(bundle: &Path) -> Vec<String> {
    let spec: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    spec["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_capped_container_sees_only_its_own_daemon_and_none_of_its_own_mps_env() {
    if !require(
        "a_capped_container_sees_only_its_own_daemon",
        &["runc", "cc"],
    ) {
        return;
    }
    let h = MpsHost::new(2, 16 * GIB, "");
    // Another class's daemon on the same GPU, already running: the container must not see it.
    let other = h.pipe_dir("gpu1-1024M");
    let iso = gpu_share::config::Config::load(&h.host.config)
        .unwrap()
        .isolation;
    let other_daemon = gpu_share::mps::Daemon::new(
        &iso,
        1,
        gpu_share::mps::Limits {
            memory_mib: 1024,
            compute_percent: None,
        },
    );
    other_daemon.start(&iso, "1").unwrap();
    let ours = h.pipe_dir("gpu1-2048M-50pct");
    let script = format!(
        "env | grep ^CUDA_MPS_ | sort; ls {ours}; ls {other} 2>&1; ls /run/mps-ecs 2>&1; echo end",
        ours = ours.display(),
        other = other.display()
    );
    let b = Bundle::busybox().args(&["sh", "-c", &script]).env(&[
        "NVIDIA_VISIBLE_DEVICES=1",
        "GPU_SHARE_MEMORY=2GiB",
        // A tenant's own MPS settings: not a request from this channel, and gone.
        "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=65536M",
        "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=100",
        "CUDA_MPS_PIPE_DIRECTORY=/run/mps-ecs",
        "CUDA_MPS_LOG_DIRECTORY=/tmp",
    ]);
    // ECS's daemon dir and another class's, mounted by the task: both dropped.
    let mut spec = b.spec().clone();
    let mounts = spec["mounts"].as_array_mut().unwrap();
    for dir in ["/run/mps-ecs".to_owned(), other.display().to_string()] {
        mounts
            .push(json!({"destination": dir, "type": "bind", "source": dir, "options": ["rbind"]}));
    }
    let dir = h.bundle_with_spec("c1", &spec);

    let out = h.shim().run(&dir, "c1").output();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!("CUDA_MPS_PIPE_DIRECTORY={}", ours.display()),
        "{text}"
    );
    assert!(
        lines[1..].iter().all(|l| !l.starts_with("CUDA_MPS_")),
        "{text}"
    );
    assert!(lines.contains(&"control"), "its daemon's socket: {text}");
    let missing = lines.iter().filter(|l| l.contains("No such file")).count();
    assert_eq!(
        missing, 2,
        "neither ECS's nor the other class's dir: {text}"
    );
    assert_eq!(lines.last(), Some(&"end"));

    // The daemon was started on first use, on GPU 1 by UUID, with the container's caps.
    let log = h.mps.control_log("gpu1-2048M-50pct");
    assert!(
        log.starts_with(&format!(
            "start CUDA_VISIBLE_DEVICES={}\n",
            FakeGpuHost::uuid(1)
        )),
        "{log}"
    );
    assert!(
        log.contains("set_default_device_pinned_mem_limit 0 2048M"),
        "{log}"
    );
    assert!(
        log.contains("set_default_active_thread_percentage 50"),
        "{log}"
    );
    let state = h.state();
    assert_eq!(
        state["containers"][0]["caps"]["memory_mib"], 2048,
        "{state}"
    );
    let shim_log = std::fs::read_to_string(&h.host.log).unwrap();
    assert!(
        shim_log.contains("mps=gpu1-2048M-50pct (started)"),
        "{shim_log}"
    );
}

#[test]
fn ecs_mps_env_through_the_nvidia_runtime_is_the_request_and_does_not_survive() {
    if !require("ecs_mps_env_through_the_nvidia_runtime", &["runc", "cc"]) {
        return;
    }
    let h = MpsHost::new(1, 16 * GIB, "");
    let env = [
        "NVIDIA_VISIBLE_DEVICES=0",
        "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=3072M",
        "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=25",
        "CUDA_MPS_PIPE_DIRECTORY=/run/mps-ecs",
    ];
    let dir = h.bundle("via-nvidia", Bundle::busybox().args(&["true"]).env(&env));
    let out = h
        .shim()
        .via_nvidia(h.host.dir.path())
        .create(&dir, "via-nvidia")
        .output();
    assert!(out.status.success(), "{}", stderr(&out));
    let log = h.mps.control_log("gpu0-3072M-25pct");
    assert!(
        log.contains("set_default_device_pinned_mem_limit 0 3072M"),
        "{log}"
    );
    let mps_env: Vec<String> = spec_env(&dir)
        .into_iter()
        .filter(|e| e.starts_with("CUDA_MPS_"))
        .collect();
    assert_eq!(
        mps_env,
        vec![format!(
            "CUDA_MPS_PIPE_DIRECTORY={}",
            h.pipe_dir("gpu0-3072M-25pct").display()
        )]
    );
}

#[test]
fn a_non_root_container_gets_a_daemon_of_its_own_user() {
    if !require("a_non_root_container_gets_a_daemon", &["runc", "cc"]) {
        return;
    }
    let h = MpsHost::new(1, 16 * GIB, "");
    let mut spec = Bundle::busybox().args(&["true"]).spec().clone();
    spec["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    let dir = h.bundle_with_spec("u", &spec);
    let out = h.shim().create(&dir, "u").output();
    assert!(out.status.success(), "{}", stderr(&out));
    let log = h.mps.control_log("gpu0-4096M-50pct-u1000");
    assert!(
        log.contains("set_default_device_pinned_mem_limit 0 4096M"),
        "{log}"
    );
}

/// A create refused before anything was written: its stderr, after checking the bundle and
/// the state are as they were.
fn refused(h: &MpsHost, id: &str, bundle: Bundle) -> (String, Duration) {
    let dir = h.bundle(id, bundle);
    let before = snapshot(&dir);
    let state_before = h.state();
    let t = Instant::now();
    let out = h.shim().create(&dir, id).output();
    let took = t.elapsed();
    assert!(!out.status.success(), "{id} was created");
    assert_eq!(snapshot(&dir), before, "{id}: the bundle changed");
    assert_eq!(h.state(), state_before, "{id}: the state changed");
    (stderr(&out), took)
}

#[test]
fn a_hung_daemon_refuses_the_create_quickly_and_leaves_the_bundle() {
    if !require("a_hung_daemon_refuses_the_create", &["runc", "cc"]) {
        return;
    }
    let h = MpsHost::new(1, 16 * GIB, "answer_timeout_ms = 300\n");
    let home = h.mps.path().join("gpu0-4096M-50pct");
    start_hung(&h.mps.control, &home.join("pipe"), &home.join("log"));
    let b = Bundle::busybox().args(&["true"]);
    let (err, took) = refused(&h, "hung", b);
    assert!(err.contains("gpu0-4096M-50pct"), "{err}");
    assert!(err.contains("does not answer"), "{err}");
    assert!(err.contains("gpu-share-mps.service"), "{err}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn a_daemon_that_is_down_and_cannot_start_refuses_the_create() {
    if !require("a_daemon_that_is_down_refuses_the_create", &["runc"]) {
        return;
    }
    let h = MpsHost::new(1, 16 * GIB, "");
    // The control binary is gone (the driver was removed, or the path is wrong).
    let cfg = std::fs::read_to_string(&h.host.config).unwrap();
    let control = format!("control = {:?}", h.mps.control.display().to_string());
    let broken = cfg.replace(
        &control,
        "control = \"/nonexistent/nvidia-cuda-mps-control\"",
    );
    std::fs::write(&h.host.config, broken).unwrap();
    let (err, took) = refused(&h, "down", Bundle::busybox().args(&["true"]));
    assert!(
        err.contains("MPS daemon gpu0-4096M-50pct: cannot start it"),
        "{err}"
    );
    assert!(err.contains("gpu-share-mps.service"), "{err}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn caps_above_the_maxima_or_malformed_are_refused_with_a_clear_line() {
    if !require("caps_above_the_maxima_are_refused", &["runc"]) {
        return;
    }
    let h = MpsHost::new(1, 16 * GIB, "");
    let cases = [
        (
            "GPU_SHARE_MEMORY=9GiB",
            "GPU_SHARE_MEMORY=9GiB: above isolation.max_memory (8GiB); ask for at most 8GiB",
        ),
        (
            "GPU_SHARE_COMPUTE_PERCENT=90",
            "GPU_SHARE_COMPUTE_PERCENT=90: above isolation.max_compute_percent (80); ask for at most 80",
        ),
        ("GPU_SHARE_MEMORY=4GB", "GPU_SHARE_MEMORY=4GB: \"4GB\" is not a size"),
    ];
    for (i, (env, message)) in cases.iter().enumerate() {
        let b = Bundle::busybox().args(&["true"]).env(&[env]);
        let (err, _) = refused(&h, &format!("bad{i}"), b);
        assert!(err.contains(message), "{env}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    // Nothing was started for a refused request.
    assert!(gpu_share::mps::owned(
        &gpu_share::config::Config::load(&h.host.config)
            .unwrap()
            .isolation
    )
    .is_empty());
}

#[test]
fn an_unknown_gpu_memory_total_is_refused_naming_what_records_it() {
    if !require("an_unknown_gpu_memory_total_is_refused", &["runc"]) {
        return;
    }
    let h = MpsHost::new(1, 16 * GIB, "");
    std::fs::remove_file(h.host.path("state/gpus.json")).unwrap();
    let (err, _) = refused(&h, "nototal", Bundle::busybox().args(&["true"]));
    assert!(err.contains("the memory of GPU 0 is not known"), "{err}");
    assert!(err.contains("gpu-share list"), "{err}");
}

#[test]
fn mode_none_leaves_ecs_mps_env_and_mounts_alone() {
    let fake = common::FakeRunc::new();
    let host = ShimHost::new(1, &format!("[sharing]\nplacement = \"spread\"\n{NO_NVML}"));
    let env = [
        "NVIDIA_VISIBLE_DEVICES=0",
        "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=3072M",
        "CUDA_MPS_PIPE_DIRECTORY=/run/mps-ecs",
    ];
    let mut spec = Bundle::docker().env(&env).spec().clone();
    spec["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/run/mps-ecs", "type": "bind", "source": "/run/mps-ecs"}));
    let dir = host.path("b");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), serde_json::to_vec(&spec).unwrap()).unwrap();
    let out = host.shim().runc(fake.path()).create(&dir, "none").output();
    assert!(out.status.success(), "{out:?}");
    let edited: Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(edited["mounts"], spec["mounts"]);
    let env_after = spec_env(&dir);
    for e in &env[1..] {
        assert!(env_after.iter().any(|a| a == e), "{e} gone: {env_after:?}");
    }
}

/// 40 creates at once on one GPU of 16GiB, 3GiB reserved, each capped at 1GiB: exactly 13 fit.
#[test]
fn admission_by_memory_is_exact_under_40_concurrent_creates() {
    if !require("admission_by_memory_is_exact", &["runc", "cc"]) {
        return;
    }
    let h = MpsHost::new(1, 16 * GIB, "reserved_memory = \"3GiB\"\n");
    let rootfs = h.host.path("rootfs");
    busybox_rootfs(&rootfs);
    let template = Bundle::busybox()
        .shared_rootfs(&rootfs)
        .args(&["sleep", "1000"])
        .env(&["GPU_SHARE_MEMORY=1GiB"]);
    let running: Vec<(String, Running)> = (0..40)
        .map(|i| {
            let id = format!("m{i:02}");
            let dir = h.bundle(&id, template.clone());
            let r = h.shim().create(&dir, &id).spawn();
            (id, r)
        })
        .collect();
    let mut admitted = 0;
    for (id, r) in running {
        let out = r.wait();
        if out.status.success() {
            admitted += 1;
        } else {
            let err = stderr(&out);
            assert!(
                err.contains("has not 1024 MiB of capped memory free")
                    || err.contains("no GPU has 1024 MiB of capped memory free"),
                "{id}: {err}"
            );
            assert!(err.contains("GPU 0: 0 MiB free of 13312"), "{id}: {err}");
        }
    }
    assert_eq!(admitted, 13);
    let state = h.state();
    let capped: u64 = state["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["caps"]["memory_mib"].as_u64().unwrap())
        .sum();
    assert_eq!(capped, 13 * 1024, "{state}");
}

/// `gpu-share mps start` (the AMI's unit, at boot) leaves NVML's totals where the create path's
/// admission reads them: after it, a capped create is admitted with no `gpu-share list`.
#[test]
fn gpu_share_mps_start_records_the_totals_admission_reads() {
    if !require("gpu_share_mps_start_records_the_totals", &["cc"]) {
        return;
    }
    let mps = MpsDir::new();
    let nvml = common::nvml_section(&common::fake_nvml());
    let host = ShimHost::new(1, &format!("{nvml}{}", mps.section("")));
    let out = std::process::Command::new(common::cli_bin())
        .args(["mps", "start", "--config"])
        .arg(&host.config)
        .env("FAKE_NVML_GPUS", common::fake_nvml_gpus(&[0], &[10]))
        .env_remove("FAKE_NVML_INIT_ERROR")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let cache: Value =
        serde_json::from_slice(&std::fs::read(host.path("state/gpus.json")).unwrap()).unwrap();
    assert_eq!(cache["gpus"][0]["uuid"], FakeGpuHost::uuid(0));
    assert_eq!(cache["gpus"][0]["memory_total_bytes"], 16 * GIB);

    let fake = common::FakeRunc::new();
    let dir = host.path("b");
    Bundle::docker().visible_devices("0").write(&dir);
    let out = host
        .shim()
        .runc(fake.path())
        .create(&dir, "after-boot")
        .output();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(fake.argv().is_some(), "runc was not reached");
}
