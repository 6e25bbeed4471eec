//! GPU discovery through NVML (a fake libnvidia-ml built from C) and through the driver's /proc
//! entries, UUID selection by both, and `gpu-share list` / `doctor` on fake roots.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{
    cli_bin, fake_nvml, fake_nvml_gpus, nvml_section, require, shim_bin, Bundle, FakeGpuHost,
    FakeRunc, ShimHost, NO_NVML,
};
use gpu_share::config::{Config, SharingSection};
use gpu_share::host;
use gpu_share::placement::{self, SelectError};
use gpu_share::request::{Channel, Request};

/// The shim on a fake host whose NVML is the fake library.
struct Host(ShimHost);

/// The fake NVML library is loaded into this process and reads its GPUs from the environment:
/// tests that use it in-process take turns.
static IN_PROCESS_NVML: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn use_nvml_gpus(gpus: &str) -> std::sync::MutexGuard<'static, ()> {
    let guard = IN_PROCESS_NVML.lock().unwrap_or_else(|e| e.into_inner());
    std::env::set_var("FAKE_NVML_GPUS", gpus);
    std::env::remove_var("FAKE_NVML_INIT_ERROR");
    guard
}

impl Host {
    fn new(gpus: u32) -> Host {
        Host::on(FakeGpuHost::new(gpus))
    }

    fn on(host: FakeGpuHost) -> Host {
        Host(ShimHost::on(host, &nvml_section(&fake_nvml())))
    }

    /// A host whose devices root is `root` as it is (no GPUs made), and no NVML.
    fn on_root(root: &Path) -> Host {
        Host(ShimHost::on_root(root, NO_NVML))
    }

    fn config_path(&self) -> &Path {
        &self.0.config
    }

    fn config(&self) -> Config {
        Config::load(self.config_path()).unwrap()
    }

    fn cli(&self, nvml_gpus: Option<&str>, args: &[&str]) -> Output {
        let mut c = Command::new(cli_bin());
        c.args(args)
            .arg("--config")
            .arg(self.config_path())
            .stdin(std::process::Stdio::null());
        match nvml_gpus {
            Some(g) => c
                .env("FAKE_NVML_GPUS", g)
                .env_remove("FAKE_NVML_INIT_ERROR"),
            // NVML_ERROR_DRIVER_NOT_LOADED, as on a host whose driver is gone.
            None => c.env("FAKE_NVML_INIT_ERROR", "9"),
        };
        c.output().unwrap()
    }

    fn list_json(&self, nvml_gpus: Option<&str>) -> Vec<serde_json::Value> {
        let out = self.cli(nvml_gpus, &["list", "--json"]);
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Runs `create` through the shim with a recording runc; returns the spec runc was given.
    fn create(&self, visible: &str) -> Result<serde_json::Value, String> {
        let bundle = Bundle::docker().visible_devices(visible).write(
            &self
                .0
                .path(&format!("bundle-{}", visible.replace(',', "_"))),
        );
        let runc = FakeRunc::new();
        let out = self
            .0
            .shim()
            .runc(runc.path())
            .create(&bundle, "c1")
            .output();
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap())
    }
}

fn gpu_paths(spec: &serde_json::Value) -> Vec<String> {
    spec["linux"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["path"].as_str())
        .filter(|p| p.starts_with("/dev/nvidia") && p[11..].bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_owned)
        .collect()
}

fn visible(spec: &serde_json::Value) -> String {
    gpu_share::spec::env_value(spec, "NVIDIA_VISIBLE_DEVICES")
        .unwrap()
        .to_owned()
}

/// Resolves a selection against the inventory `gpu-share` builds (NVML first).
fn select(h: &Host, value: &str) -> Result<Vec<u32>, SelectError> {
    let view = host::discover(&h.config()).unwrap();
    let env = format!("NVIDIA_VISIBLE_DEVICES={value}");
    let spec = serde_json::json!({"process": {"env": [env]}});
    let request = Request::from_spec(&spec, &SharingSection::default(), Channel::Default).unwrap();
    match placement::claim(&request, &view.inventory)? {
        placement::Claim::Named(a) | placement::Claim::Every(a) => Ok(a.gpus),
        other => panic!("{value}: {other:?}"),
    }
}

// ---- NVML, through the fake library ----

#[test]
fn nvml_one_gpu_uuid_index_prefix_and_errors() {
    if !require("nvml_one_gpu_uuid_index_prefix_and_errors", &["cc"]) {
        return;
    }
    let h = Host::new(1);
    let _nvml = use_nvml_gpus(&fake_nvml_gpus(&[0], &[15]));
    let view = host::discover(&h.config()).unwrap();
    assert_eq!(view.nvml_error, None);
    assert_eq!(view.inventory.source.as_str(), "nvml");
    let uuid = FakeGpuHost::uuid(0);
    assert_eq!(select(&h, &uuid).unwrap(), vec![0]);
    assert_eq!(select(&h, &uuid[..12]).unwrap(), vec![0]);
    assert_eq!(select(&h, "0").unwrap(), vec![0]);
    assert!(matches!(
        select(&h, "1"),
        Err(SelectError::NoSuchGpu { .. })
    ));
    assert!(matches!(
        select(&h, "GPU-ffffffff"),
        Err(SelectError::NoSuchUuid { .. })
    ));
    assert!(matches!(
        select(&h, "GPU-0000"),
        Err(SelectError::ShortUuid { .. })
    ));
}

#[test]
fn nvml_four_gpus_are_numbered_as_nvml_numbers_them() {
    if !require("nvml_four_gpus_are_numbered_as_nvml_numbers_them", &["cc"]) {
        return;
    }
    let h = Host::new(4);
    // NVML's order is not the minors' order here: index 0 is /dev/nvidia3.
    let gpus = fake_nvml_gpus(&[3, 0, 1, 2], &[1, 2, 3, 4]);
    let rows = h.list_json(Some(&gpus));
    assert_eq!(rows.len(), 4);
    for (i, minor) in [3u64, 0, 1, 2].iter().enumerate() {
        let r = &rows[i];
        assert_eq!(r["index"], i);
        assert_eq!(r["minor"], *minor);
        assert_eq!(r["uuid"], FakeGpuHost::uuid(*minor as u32));
        assert_eq!(r["name"], "Tesla T4");
        assert_eq!(r["memory_total_bytes"], 16u64 << 30);
        assert_eq!(r["containers"], 0);
        assert_eq!(r["source"], "nvml");
    }
    let _nvml = use_nvml_gpus(&gpus);
    assert_eq!(select(&h, &FakeGpuHost::uuid(2)).unwrap(), vec![3]);
    assert_eq!(select(&h, "GPU-00000001,0").unwrap(), vec![2, 0]);
    assert_eq!(select(&h, "all").unwrap(), vec![0, 1, 2, 3]);
    assert!(matches!(select(&h, "GPU-00000000-0000"), Ok(v) if v == vec![1]));
    assert!(matches!(
        select(&h, "4"),
        Err(SelectError::NoSuchGpu { .. })
    ));
}

#[test]
fn nvml_failure_falls_back_to_the_driver_s_proc_entries() {
    if !require(
        "nvml_failure_falls_back_to_the_driver_s_proc_entries",
        &["cc"],
    ) {
        return;
    }
    let h = Host::new(2);
    let rows = h.list_json(None);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["uuid"], FakeGpuHost::uuid(1));
    assert_eq!(rows[1]["source"], "procfs");
    assert_eq!(rows[1]["memory_total_bytes"], serde_json::Value::Null);
    let table = h.cli(None, &["list"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("source: procfs (NVML"), "{text}");
}

// ---- the driver's /proc entries, through the shim's create ----

#[test]
fn procfs_one_gpu_uuid_index_prefix_and_errors() {
    if !require("procfs_one_gpu_uuid_index_prefix_and_errors", &[]) {
        return;
    }
    let h = Host::new(1);
    let uuid = FakeGpuHost::uuid(0);
    for v in [uuid.as_str(), &uuid[..12], "0", &uuid.to_lowercase()] {
        let spec = h.create(v).unwrap();
        assert_eq!(gpu_paths(&spec), ["/dev/nvidia0"], "{v}");
        assert_eq!(visible(&spec), "0", "{v}");
    }
    let e = h.create("GPU-ffffffff").unwrap_err();
    assert!(
        e.contains("no GPU on this host has UUID GPU-ffffffff"),
        "{e}"
    );
    let e = h.create("GPU-0000").unwrap_err();
    assert!(e.contains("at least 8 hex digits"), "{e}");
    let e = h.create("3").unwrap_err();
    assert!(e.contains("this host has GPUs 0-0"), "{e}");
}

#[test]
fn procfs_four_gpus_follow_bus_order() {
    if !require("procfs_four_gpus_follow_bus_order", &[]) {
        return;
    }
    let host = FakeGpuHost::new(4);
    // Reorder the bus ids: the GPU with minor 3 sits first on the bus, so it is GPU 0.
    let _ = std::fs::remove_dir_all(host.root().join("proc"));
    for (minor, bus) in [
        (3, "0000:00:1b.0"),
        (0, "0000:00:1c.0"),
        (1, "0000:00:1d.0"),
        (2, "0000:00:1e.0"),
    ] {
        host.write_driver_entry(minor, bus, minor);
    }
    let h = Host::on(host);
    let spec = h.create(&FakeGpuHost::uuid(3)).unwrap();
    assert_eq!(gpu_paths(&spec), ["/dev/nvidia3"]);
    assert_eq!(visible(&spec), "0");
    let spec = h.create("GPU-00000001,0").unwrap();
    assert_eq!(gpu_paths(&spec), ["/dev/nvidia1", "/dev/nvidia3"]);
    assert_eq!(visible(&spec), "2,0");
    let spec = h.create("all").unwrap();
    assert_eq!(visible(&spec), "0,1,2,3");
    let spec = h.create("GPU-00000002-0000-4000").unwrap();
    assert_eq!(gpu_paths(&spec), ["/dev/nvidia2"]);
    assert_eq!(visible(&spec), "3");
}

/// Discovery looks each GPU's node up as `dev/nvidia<minor>`; a node named otherwise is still
/// found by its minor, through the listing of `dev/` it falls back to.
#[test]
fn a_node_named_apart_from_its_minor_is_found_by_its_minor() {
    if !require(
        "a_node_named_apart_from_its_minor_is_found_by_its_minor",
        &[],
    ) {
        return;
    }
    let host = FakeGpuHost::new(2);
    std::fs::rename(
        host.root().join("dev/nvidia1"),
        host.root().join("dev/nvidia7"),
    )
    .unwrap();
    let h = Host::on(host);
    let spec = h.create(&FakeGpuHost::uuid(1)).unwrap();
    assert_eq!(gpu_paths(&spec), ["/dev/nvidia7"]);
    assert_eq!(visible(&spec), "1");
    let spec = h.create("all").unwrap();
    assert_eq!(gpu_paths(&spec), ["/dev/nvidia0", "/dev/nvidia7"]);
    assert_eq!(visible(&spec), "0,1");
}

#[test]
fn an_unreadable_proc_entry_keeps_the_other_gpus_indices() {
    if !require("an_unreadable_proc_entry_keeps_the_other_gpus_indices", &[]) {
        return;
    }
    let host = FakeGpuHost::new(4);
    // GPU 1's information file cannot be read: a directory stands in its place (root reads any
    // file, whatever its mode).
    host.make_driver_entry_unreadable("0000:00:1c.0");
    let h = Host::on(host);
    let spec = h.create("2").unwrap();
    assert_eq!(gpu_paths(&spec), ["/dev/nvidia2"]);
    assert_eq!(visible(&spec), "2");
    let spec = h.create(&FakeGpuHost::uuid(3)).unwrap();
    assert_eq!(gpu_paths(&spec), ["/dev/nvidia3"]);
    assert_eq!(visible(&spec), "3");
    // Its minor is unknown, so it cannot be given.
    let e = h.create("1").unwrap_err();
    assert!(e.ends_with("this host has GPUs 0, 2, 3"), "{e}");
    assert_eq!(visible(&h.create("all").unwrap()), "0,2,3");
}

#[test]
fn devices_alone_select_by_index_and_refuse_uuids() {
    if !require("devices_alone_select_by_index_and_refuse_uuids", &[]) {
        return;
    }
    let h = Host::on(FakeGpuHost::new(2).without_driver_entries());
    assert_eq!(gpu_paths(&h.create("1").unwrap()), ["/dev/nvidia1"]);
    let e = h.create(&FakeGpuHost::uuid(1)).unwrap_err();
    assert!(e.contains("no GPU whose UUID the driver reports"), "{e}");
}

// ---- gpu-share doctor ----

fn doctor(
    h: &Host,
    env_runc: Option<&Path>,
    path: Option<&str>,
    daemon_json: &Path,
) -> (bool, String) {
    let mut c = Command::new(cli_bin());
    c.args(["doctor", "--config"])
        .arg(h.config_path())
        .arg("--daemon-json")
        .arg(daemon_json)
        .env("FAKE_NVML_GPUS", fake_nvml_gpus(&[0], &[15]))
        .env_remove("FAKE_NVML_INIT_ERROR")
        .env_remove("GPU_SHARE_RUNC");
    if let Some(r) = env_runc {
        c.env("GPU_SHARE_RUNC", r);
    }
    if let Some(p) = path {
        c.env("PATH", p);
    }
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn line<'a>(report: &'a str, name: &str) -> &'a str {
    report
        .lines()
        .find(|l| l[5..].starts_with(name))
        .unwrap_or_else(|| panic!("no {name} line in\n{report}"))
}

#[test]
fn doctor_on_a_healthy_host() {
    if !require("doctor_on_a_healthy_host", &["cc"]) {
        return;
    }
    let host = FakeGpuHost::new(1);
    let comm = host.root().join("proc/4242");
    std::fs::create_dir_all(&comm).unwrap();
    std::fs::write(comm.join("comm"), "nvidia-persistenced\n").unwrap();
    let hook = host.root().join("nvidia-container-runtime-hook");
    std::fs::write(&hook, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let h = Host::on(host);
    let mut config = std::fs::read_to_string(h.config_path()).unwrap();
    config.push_str(&format!(
        "[hook]\npath = {:?}\n",
        hook.display().to_string()
    ));
    std::fs::write(h.config_path(), config).unwrap();
    let daemon_json = h.0.path("daemon.json");
    std::fs::write(
        &daemon_json,
        r#"{"default-runtime": "gpu-share", "runtimes": {}}"#,
    )
    .unwrap();
    let runc = FakeRunc::new();
    // No docker CLI on this PATH, so doctor reads daemon.json.
    let (ok, report) = doctor(&h, Some(&runc.path()), Some("/nonexistent"), &daemon_json);
    assert!(ok, "{report}");
    for name in [
        "config",
        "driver devices",
        "driver /proc",
        "nvml",
        "persistenced",
        "runc",
        "nvidia hook",
        "docker runtime",
        "state",
    ] {
        assert!(line(&report, name).starts_with("OK"), "{name}: {report}");
    }
    assert!(line(&report, "docker runtime").contains("default is gpu-share"));
}

#[test]
fn doctor_fails_without_a_driver() {
    let empty = tempfile::tempdir().unwrap();
    let h = Host::on_root(empty.path());
    let (ok, report) = doctor(&h, None, None, Path::new("/nonexistent/daemon.json"));
    assert!(!ok, "{report}");
    assert!(
        line(&report, "driver devices").starts_with("FAIL"),
        "{report}"
    );
    assert!(
        line(&report, "persistenced").starts_with("WARN"),
        "{report}"
    );
    assert_eq!(h.list_json(None), Vec::<serde_json::Value>::new());
}

#[test]
fn doctor_fails_without_runc() {
    if !require("doctor_fails_without_runc", &[]) {
        return;
    }
    let h = Host::new(1);
    let empty = tempfile::tempdir().unwrap();
    let (ok, report) = doctor(
        &h,
        None,
        Some(empty.path().to_str().unwrap()),
        Path::new("/x"),
    );
    assert!(!ok, "{report}");
    assert!(line(&report, "runc").starts_with("FAIL"), "{report}");
    assert!(line(&report, "runc").contains("no runc found"), "{report}");
}

#[test]
fn doctor_fails_on_a_bad_config() {
    let empty = tempfile::tempdir().unwrap();
    let h = Host::on_root(empty.path());
    std::fs::write(h.config_path(), "[sharing]\nplacement = \"random\"\n").unwrap();
    let (ok, report) = doctor(&h, None, None, Path::new("/x"));
    assert!(!ok);
    assert!(line(&report, "config").starts_with("FAIL"), "{report}");
    assert!(
        line(&report, "config").contains("sharing.placement"),
        "{report}"
    );
}

#[test]
fn doctor_only_looks_and_list_refreshes_the_memory_cache() {
    if !require(
        "doctor_only_looks_and_list_refreshes_the_memory_cache",
        &["cc"],
    ) {
        return;
    }
    let h = Host::new(1);
    let state_dir = h.0.path("state");
    let runc = FakeRunc::new();
    let (_, report) = doctor(&h, Some(&runc.path()), None, Path::new("/x"));
    assert!(line(&report, "nvml").starts_with("OK"), "{report}");
    assert!(line(&report, "state").starts_with("OK"), "{report}");
    assert!(
        !state_dir.exists(),
        "doctor created {}",
        state_dir.display()
    );
    h.list_json(Some(&fake_nvml_gpus(&[0], &[15])));
    let cache: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state_dir.join("gpus.json")).unwrap()).unwrap();
    assert_eq!(cache["gpus"][0]["memory_free_bytes"], 15u64 << 30);
}

#[test]
fn doctor_reports_the_policy_in_force() {
    let empty = tempfile::tempdir().unwrap();
    let h = Host::on_root(empty.path());
    let mut config = std::fs::read_to_string(h.config_path()).unwrap();
    config.push_str(
        "[sharing]\nplacement = \"spread\"\ncontainer_requests = \"deny\"\nreserved = \"task\"\n",
    );
    std::fs::write(h.config_path(), config).unwrap();
    let (_, report) = doctor(&h, None, None, Path::new("/x"));
    assert_eq!(
        line(&report, "policy"),
        "OK   policy           placement=spread max_per_gpu=none default=all container_requests=deny reserved=task"
    );
}

#[test]
fn doctor_fails_when_runc_is_the_shim_itself() {
    let empty = tempfile::tempdir().unwrap();
    let h = Host::on_root(empty.path());
    // gpu-share finds the runtime beside itself, as `make install` puts them.
    let (ok, report) = doctor(&h, Some(&shim_bin()), None, Path::new("/x"));
    assert!(!ok, "{report}");
    let runc = line(&report, "runc");
    assert!(runc.starts_with("FAIL"), "{report}");
    assert!(
        runc.contains("is the gpu-share runtime itself, not runc"),
        "{report}"
    );
    // The runtime installed as `runc` on PATH is passed over, as the runtime passes over itself.
    let decoy = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(shim_bin(), decoy.path().join("runc")).unwrap();
    let real = FakeRunc::new();
    let path = std::env::join_paths([decoy.path(), real.dir.path()]).unwrap();
    let (_, report) = doctor(&h, None, path.to_str(), Path::new("/x"));
    let runc = line(&report, "runc");
    assert!(runc.starts_with("OK"), "{report}");
    assert!(
        runc.ends_with(&real.path().display().to_string()),
        "{report}"
    );
    let (_, report) = doctor(&h, None, decoy.path().to_str(), Path::new("/x"));
    assert!(line(&report, "runc").contains("no runc found"), "{report}");
}

#[test]
fn doctor_fails_on_an_unreadable_proc_entry() {
    if !require("doctor_fails_on_an_unreadable_proc_entry", &[]) {
        return;
    }
    let host = FakeGpuHost::new(2);
    host.make_driver_entry_unreadable("0000:00:1c.0");
    let h = Host::on(host);
    let runc = FakeRunc::new();
    let (ok, report) = doctor(&h, Some(&runc.path()), None, Path::new("/x"));
    assert!(!ok, "{report}");
    let proc = line(&report, "driver /proc");
    assert!(proc.starts_with("FAIL"), "{report}");
    assert!(proc.contains("0000:00:1c.0"), "{report}");
}
