//! Placement under concurrency, with real runc containers on fake GPU hosts: the flock'd state
//! file, spread and pack, the admission limit, ECS reservations, release on delete, and a create
//! killed while it holds the lock.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::shim::Running;
use common::{busybox_rootfs, cli_bin, require, Bundle, FakeGpuHost, Shim, ShimHost, NO_NVML};

struct Cluster {
    host: ShimHost,
    /// Every container's bundle: busybox sleeping, on one read-only root filesystem.
    template: Bundle,
    ids: std::cell::RefCell<Vec<String>>,
}

impl Cluster {
    fn new(gpus: u32, sharing: &str) -> Cluster {
        let host = ShimHost::new(gpus, &format!("[sharing]\n{sharing}\n{NO_NVML}"));
        let rootfs = host.path("rootfs");
        busybox_rootfs(&rootfs);
        let template = Bundle::busybox()
            .shared_rootfs(&rootfs)
            .args(&["sleep", "1000"]);
        Cluster {
            host,
            template,
            ids: Default::default(),
        }
    }

    fn runc_root(&self) -> PathBuf {
        self.host.path("runc")
    }

    fn bundle(&self, id: &str, env: &[&str]) -> PathBuf {
        self.template
            .clone()
            .env(env)
            .write(&self.host.path("bundles").join(id))
    }

    /// A bundle of a container of ECS task `task` (the cgroup parent the ECS agent gives it).
    fn task_bundle(&self, task: &str, id: &str, env: &[&str]) -> PathBuf {
        self.template
            .clone()
            .env(env)
            .cgroups_path(&format!("/ecs/{task}/{id}"))
            .write(&self.host.path("bundles").join(id))
    }

    fn shim(&self) -> Shim {
        self.host.shim().root(self.runc_root())
    }

    fn spawn_create(&self, id: &str, env: &[&str]) -> Running {
        let b = self.bundle(id, env);
        self.ids.borrow_mut().push(id.to_owned());
        self.shim().create(&b, id).spawn()
    }

    fn create(&self, id: &str, env: &[&str]) -> Result<(), String> {
        finish(self.spawn_create(id, env).wait())
    }

    /// A create through the `nvidia` runtime, as the ECS agent starts a task that reserved GPUs.
    fn create_reserved(&self, id: &str, env: &[&str]) -> Result<(), String> {
        let b = self.bundle(id, env);
        self.create_bundle(id, &b, true)
    }

    /// A create of the bundle at `b`, through the `nvidia` runtime or the default one.
    fn create_bundle(&self, id: &str, b: &std::path::Path, via_nvidia: bool) -> Result<(), String> {
        self.ids.borrow_mut().push(id.to_owned());
        let shim = if via_nvidia {
            self.shim().via_nvidia(self.host.dir.path())
        } else {
            self.shim()
        };
        finish(shim.create(b, id).output())
    }

    /// Each container's recorded kind, by id.
    fn kinds(&self) -> Vec<(String, String)> {
        self.state()["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["id"].as_str().unwrap().to_owned(),
                    e["kind"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn delete(&self, id: &str) {
        if let Err(e) = finish(self.shim().args(["delete", "--force", id]).output()) {
            panic!("delete {id}: {e}");
        }
        self.ids.borrow_mut().retain(|i| i != id);
    }

    /// Containers per GPU, as `gpu-share list --json` reports them.
    fn per_gpu(&self) -> Vec<(u64, u64)> {
        let out = Command::new(cli_bin())
            .args(["list", "--json", "--config"])
            .arg(&self.host.config)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        rows.iter()
            .map(|r| {
                (
                    r["containers"].as_u64().unwrap(),
                    r["reserved_by_ecs"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    fn counts(&self) -> Vec<u64> {
        self.per_gpu().into_iter().map(|(c, _)| c).collect()
    }

    fn state(&self) -> serde_json::Value {
        let text = std::fs::read(self.host.path("state/placements.json")).unwrap();
        serde_json::from_slice(&text).expect("the state file is valid JSON")
    }

    fn state_ids(&self) -> Vec<String> {
        self.state()["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The GPU given to a container, from its edited spec.
    fn gpus_of(&self, id: &str) -> String {
        let spec: serde_json::Value = serde_json::from_slice(
            &std::fs::read(self.host.path("bundles").join(id).join("config.json")).unwrap(),
        )
        .unwrap();
        gpu_share::spec::env_value(&spec, "NVIDIA_VISIBLE_DEVICES")
            .unwrap()
            .to_owned()
    }

    fn create_concurrently(&self, n: usize) {
        let running: Vec<(String, Running)> = (0..n)
            .map(|i| {
                let id = format!("c{i:02}");
                let r = self.spawn_create(&id, &[]);
                (id, r)
            })
            .collect();
        for (id, r) in running {
            if let Err(e) = finish(r.wait()) {
                panic!("create {id}: {e}");
            }
        }
    }
}

/// A finished shim run; its stderr on failure.
fn finish(out: Output) -> Result<(), String> {
    if out.status.success() {
        return Ok(());
    }
    Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in self.ids.borrow().iter() {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(self.runc_root())
                .args(["delete", "--force", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[test]
fn forty_concurrent_creates_spread_ten_per_gpu_and_deletes_release_them() {
    if !require("forty_concurrent_creates_spread", &["runc"]) {
        return;
    }
    let c = Cluster::new(4, "placement = \"spread\"");
    c.create_concurrently(40);
    assert_eq!(c.counts(), vec![10, 10, 10, 10]);
    assert_eq!(c.state()["containers"].as_array().unwrap().len(), 40);
    for i in 0..40 {
        c.delete(&format!("c{i:02}"));
    }
    assert_eq!(c.counts(), vec![0, 0, 0, 0]);
}

#[test]
fn forty_concurrent_creates_pack_fifteen_fifteen_ten() {
    if !require("forty_concurrent_creates_pack", &["runc"]) {
        return;
    }
    let c = Cluster::new(4, "placement = \"pack\"\nmax_per_gpu = 15");
    c.create_concurrently(40);
    assert_eq!(c.counts(), vec![15, 15, 10, 0]);
    // The next one still fits on GPU 2.
    c.create("one-more", &[]).unwrap();
    assert_eq!(c.gpus_of("one-more"), "2");
}

#[test]
fn the_limit_refuses_a_create_with_a_clear_error() {
    if !require("the_limit_refuses_a_create_with_a_clear_error", &["runc"]) {
        return;
    }
    let c = Cluster::new(1, "placement = \"spread\"\nmax_per_gpu = 2");
    c.create("a", &[]).unwrap();
    c.create("b", &[]).unwrap();
    let e = c.create("c", &[]).unwrap_err();
    assert!(
        e.ends_with("every GPU is at sharing.max_per_gpu = 2 (GPU 0: 2); not starting another container here"),
        "{e}"
    );
    // Deleting one makes room again.
    c.delete("a");
    c.create("c", &[]).unwrap();
}

#[test]
fn shared_containers_steer_away_from_a_gpu_ecs_reserved() {
    if !require(
        "shared_containers_steer_away_from_a_gpu_ecs_reserved",
        &["runc"],
    ) {
        return;
    }
    let c = Cluster::new(2, "placement = \"spread\"");
    let ecs_env = [
        "ECS_CONTAINER_METADATA_URI_V4=http://169.254.170.2/v4/abc",
        &format!("NVIDIA_VISIBLE_DEVICES={}", FakeGpuHost::uuid(0)),
    ];
    c.create_reserved(
        "ecs-task",
        &ecs_env.iter().map(|s| s.as_ref()).collect::<Vec<&str>>(),
    )
    .unwrap();
    assert_eq!(c.gpus_of("ecs-task"), "0");
    c.create("sidecar-1", &[]).unwrap();
    c.create("sidecar-2", &[]).unwrap();
    assert_eq!(c.gpus_of("sidecar-1"), "1");
    // GPU 0 and GPU 1 now hold one container each; the reserved one is still avoided.
    assert_eq!(c.gpus_of("sidecar-2"), "1");
    assert_eq!(c.per_gpu(), vec![(1, 1), (2, 0)]);
}

#[test]
fn a_create_killed_holding_the_lock_leaks_nothing() {
    if !require("a_create_killed_holding_the_lock_leaks_nothing", &["runc"]) {
        return;
    }
    let c = Cluster::new(2, "placement = \"spread\"");
    let b = c.bundle("victim", &[]);
    let mut victim = c
        .shim()
        .env("GPU_SHARE_TEST_HOLD_LOCK_MS", "30000")
        .create(&b, "victim")
        .spawn();
    // Wait until it has recorded itself: it now holds the lock.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !c.host.path("state/placements.json").exists()
        || !c.state_ids().contains(&"victim".to_owned())
    {
        assert!(
            Instant::now() < deadline,
            "the victim never recorded itself"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    victim.child.kill().unwrap();
    victim.child.wait().unwrap();
    let started = Instant::now();
    c.create("next", &[]).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the lock outlived its holder"
    );
    assert_eq!(c.state_ids(), vec!["next".to_owned()]);
    // The dead one's GPU was free again: spread put the next container on GPU 0.
    assert_eq!(c.gpus_of("next"), "0");
}

#[test]
fn runc_root_keeps_entries_of_live_containers_only() {
    if !require("runc_root_keeps_entries_of_live_containers_only", &["runc"]) {
        return;
    }
    let c = Cluster::new(1, "placement = \"all\"");
    c.create("keep", &[]).unwrap();
    c.create("gone", &[]).unwrap();
    // Removed behind the shim's back (as a lost delete would leave it).
    let ok = Command::new("runc")
        .arg("--root")
        .arg(c.runc_root())
        .args(["delete", "--force", "gone"])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    assert_eq!(c.counts(), vec![1]);
    c.create("third", &[]).unwrap();
    let mut ids = c.state_ids();
    ids.sort();
    assert_eq!(ids, vec!["keep".to_owned(), "third".to_owned()]);
}

// ---- tenant policy: what a container's env may and may not do ----

#[test]
fn under_deny_a_container_s_own_gpus_are_ignored_and_placement_decides() {
    if !require("under_deny_a_container_s_own_gpus_are_ignored", &["runc"]) {
        return;
    }
    let c = Cluster::new(4, "placement = \"spread\"\ncontainer_requests = \"deny\"");
    c.create("greedy", &["NVIDIA_VISIBLE_DEVICES=all"]).unwrap();
    assert_eq!(c.gpus_of("greedy"), "0");
    c.create("pinned", &["NVIDIA_VISIBLE_DEVICES=0"]).unwrap();
    assert_eq!(c.gpus_of("pinned"), "1");
    c.create("opted-out", &["NVIDIA_VISIBLE_DEVICES=none"])
        .unwrap();
    assert_eq!(c.counts(), vec![1, 1, 0, 0]);
    let log = std::fs::read_to_string(&c.host.log).unwrap();
    assert!(
        log.contains("NVIDIA_VISIBLE_DEVICES=all ignored (sharing.container_requests=deny)"),
        "{log}"
    );
}

#[test]
fn named_gpus_count_against_the_limit() {
    if !require("named_gpus_count_against_the_limit", &["runc"]) {
        return;
    }
    let c = Cluster::new(4, "placement = \"pack\"\nmax_per_gpu = 2");
    c.create("all-1", &["NVIDIA_VISIBLE_DEVICES=all"]).unwrap();
    c.create("all-2", &["NVIDIA_VISIBLE_DEVICES=all"]).unwrap();
    let e = c
        .create("all-3", &["NVIDIA_VISIBLE_DEVICES=all"])
        .unwrap_err();
    assert!(e.contains("GPU 0 is at sharing.max_per_gpu = 2"), "{e}");
    assert_eq!(c.counts(), vec![2, 2, 2, 2]);
}

#[test]
fn the_env_cannot_forge_a_reservation() {
    if !require("the_env_cannot_forge_a_reservation", &["runc"]) {
        return;
    }
    let c = Cluster::new(4, "placement = \"spread\"\nreserved = \"exclusive\"");
    let forged = [
        "ECS_CONTAINER_METADATA_URI_V4=anything",
        "NVIDIA_VISIBLE_DEVICES=0,1,2",
    ];
    c.create("forger", &forged).unwrap();
    assert_eq!(c.per_gpu(), vec![(1, 0), (1, 0), (1, 0), (0, 0)]);
    assert_eq!(c.kinds(), vec![("forger".to_owned(), "pinned".to_owned())]);
    // Only the nvidia runtime reserves; under exclusive nobody else gets that GPU, even under
    // a policy that gives every GPU.
    let env = format!("NVIDIA_VISIBLE_DEVICES={}", FakeGpuHost::uuid(3));
    c.create_reserved("ecs-task", &[&env]).unwrap();
    assert_eq!(c.per_gpu()[3], (1, 1));
    c.create("shared", &[]).unwrap();
    assert_ne!(c.gpus_of("shared"), "3");
    let e = c
        .create("pinned-3", &["NVIDIA_VISIBLE_DEVICES=3"])
        .unwrap_err();
    assert!(
        e.contains("GPU 3 is reserved for an ECS task (sharing.reserved = exclusive)"),
        "{e}"
    );
}

#[test]
fn under_placement_all_reservations_keep_others_off() {
    if !require(
        "under_placement_all_reservations_keep_others_off",
        &["runc"],
    ) {
        return;
    }
    let c = Cluster::new(4, "reserved = \"exclusive\"");
    let env = format!("NVIDIA_VISIBLE_DEVICES={}", FakeGpuHost::uuid(0));
    c.create_reserved("ecs-task", &[&env]).unwrap();
    c.create("everyone-else", &[]).unwrap();
    assert_eq!(c.gpus_of("everyone-else"), "1,2,3");
}

#[test]
fn reserved_task_gives_the_sidecar_its_task_s_gpu_and_no_other_task() {
    if !require("reserved_task_gives_the_sidecar_its_task_s_gpu", &["runc"]) {
        return;
    }
    // A g4dn.xlarge: one GPU, reserved by ECS for task A's main container.
    let c = Cluster::new(1, "placement = \"spread\"\nreserved = \"task\"");
    let env = format!("NVIDIA_VISIBLE_DEVICES={}", FakeGpuHost::uuid(0));
    let main = c.task_bundle("aaaa1111", "main", &[&env]);
    c.create_bundle("main", &main, true).unwrap();
    let sidecar = c.task_bundle("aaaa1111", "sidecar", &[]);
    c.create_bundle("sidecar", &sidecar, false).unwrap();
    assert_eq!(c.gpus_of("sidecar"), "0");
    // Another task's container, and one outside any task, start without a GPU.
    let other = c.task_bundle("bbbb2222", "other", &[]);
    c.create_bundle("other", &other, false).unwrap();
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(other.join("config.json")).unwrap()).unwrap();
    assert!(
        !spec.to_string().contains("/dev/nvidia0"),
        "another task got the reserved GPU: {spec}"
    );
    c.create("no-task", &[]).unwrap();
    assert_eq!(c.per_gpu(), vec![(2, 1)]);
    let log = std::fs::read_to_string(&c.host.log).unwrap();
    assert!(
        log.contains("every GPU is reserved for another ECS task"),
        "{log}"
    );
    // Naming it is refused outright.
    let named = c.task_bundle("bbbb2222", "named", &["NVIDIA_VISIBLE_DEVICES=0"]);
    let e = c.create_bundle("named", &named, false).unwrap_err();
    assert!(e.contains("GPU 0 is reserved"), "{e}");
}

#[test]
fn forty_concurrent_tenant_creates_under_deny_spread_ten_per_gpu() {
    if !require("forty_concurrent_tenant_creates_under_deny", &["runc"]) {
        return;
    }
    let c = Cluster::new(
        4,
        "placement = \"spread\"\nmax_per_gpu = 10\ncontainer_requests = \"deny\"",
    );
    let uuid = FakeGpuHost::uuid(2);
    let values: Vec<Vec<String>> = vec![
        vec!["NVIDIA_VISIBLE_DEVICES=all".into()],
        vec!["NVIDIA_VISIBLE_DEVICES=0".into()],
        vec!["NVIDIA_VISIBLE_DEVICES=0,1,2,3".into()],
        vec![format!("NVIDIA_VISIBLE_DEVICES={uuid}")],
        vec![format!("NVIDIA_VISIBLE_DEVICES={}", &uuid[..12])],
        vec![
            "NVIDIA_VISIBLE_DEVICES=1".into(),
            "NVIDIA_VISIBLE_DEVICES=all".into(),
        ],
        vec!["NVIDIA_VISIBLE_DEVICES=junk\nINFO forged".into()],
        vec!["NVIDIA_VISIBLE_DEVICES=99".into()],
        vec![],
        vec!["NVIDIA_VISIBLE_DEVICES=GPU-".into()],
    ];
    let running: Vec<(String, Running)> = (0..40)
        .map(|i| {
            let id = format!("t{i:02}");
            let env = &values[(i * 7) % values.len()];
            let env: Vec<&str> = env.iter().map(String::as_str).collect();
            (id.clone(), c.spawn_create(&id, &env))
        })
        .collect();
    // Tenants who opt out get no GPU and take no place.
    let opt_outs: Vec<(String, Running)> = ["", "none", "void"]
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let id = format!("out{i}");
            let env = format!("NVIDIA_VISIBLE_DEVICES={v}");
            (id.clone(), c.spawn_create(&id, &[&env]))
        })
        .collect();
    for (id, r) in running.into_iter().chain(opt_outs) {
        if let Err(e) = finish(r.wait()) {
            panic!("create {id}: {e}");
        }
    }
    assert_eq!(c.counts(), vec![10, 10, 10, 10]);
    for i in 0..40 {
        let gpus = c.gpus_of(&format!("t{i:02}"));
        assert!(!gpus.contains(','), "t{i:02} got {gpus}");
    }
    for i in 0..3 {
        let id = format!("out{i}");
        let spec: serde_json::Value = serde_json::from_slice(
            &std::fs::read(c.host.path("bundles").join(&id).join("config.json")).unwrap(),
        )
        .unwrap();
        assert!(!spec.to_string().contains("/dev/nvidia"), "{id}: {spec}");
    }
    // Full: the next one is refused, whatever it asks.
    let e = c
        .create("one-too-many", &["NVIDIA_VISIBLE_DEVICES=all"])
        .unwrap_err();
    assert!(
        e.contains("every GPU is at sharing.max_per_gpu = 10"),
        "{e}"
    );
}

/// The temp files `atomic` left in `dir`: `.NAME.gpu-share-PID.tmp`, or `.NAME.gpu-share.tmp`
/// of a writer under the placement lock.
fn temps_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n.ends_with(".tmp"))
        .collect();
    names.sort();
    names
}

impl Cluster {
    /// Starts a create of `id` on `bundle` that stops mid-write of `file` in `dir` (its temp
    /// written, not yet renamed into place), waits until it is there, and kills it.
    fn kill_mid_write(
        &self,
        bundle: &std::path::Path,
        id: &str,
        file: &str,
        dir: &std::path::Path,
    ) {
        let mut victim = self
            .shim()
            .env("GPU_SHARE_TEST_HOLD_TEMP", format!("{file}:30000"))
            .create(bundle, id)
            .spawn();
        let prefix = format!(".{file}.gpu-share");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !temps_in(dir).iter().any(|t| t.starts_with(&prefix)) {
            assert!(
                Instant::now() < deadline,
                "{id} never wrote a temp of {file}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        victim.child.kill().unwrap();
        victim.child.wait().unwrap();
    }
}

#[test]
fn creates_killed_mid_write_leave_no_temp_files_behind() {
    if !require(
        "creates_killed_mid_write_leave_no_temp_files_behind",
        &["runc"],
    ) {
        return;
    }
    let c = Cluster::new(2, "placement = \"spread\"");
    let state_dir = c.host.path("state");
    c.create("first", &[]).unwrap();
    // Killed while writing the state file, under the lock.
    for i in 0..3 {
        let id = format!("victim{i}");
        let b = c.bundle(&id, &[]);
        c.kill_mid_write(&b, &id, "placements.json", &state_dir);
    }
    // Killed while writing one bundle's spec, again and again.
    let b = c.bundle("retried", &[]);
    for _ in 0..3 {
        c.kill_mid_write(&b, "retried", "config.json", &b);
    }
    c.create("next", &[]).unwrap();
    assert_eq!(temps_in(&state_dir), Vec::<String>::new());
    c.create("retried", &[]).unwrap();
    assert_eq!(temps_in(&b), Vec::<String>::new());
    let mut ids = c.state_ids();
    ids.sort();
    assert_eq!(ids, ["first", "next", "retried"]);
}

impl Cluster {
    /// A bundle for `id` whose spec already holds `devices` in `linux.devices`.
    fn bundle_holding(&self, id: &str, devices: serde_json::Value) -> PathBuf {
        let b = self.bundle(id, &[]);
        let path = b.join("config.json");
        let mut spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        spec["linux"]["devices"] = devices;
        std::fs::write(&path, spec.to_string()).unwrap();
        self.ids.borrow_mut().push(id.to_owned());
        b
    }

    /// The recorded entry for `id`.
    fn entry(&self, id: &str) -> serde_json::Value {
        self.state()["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .unwrap_or_else(|| panic!("{id} is not recorded"))
            .clone()
    }
}

fn gpu_node(path: &str, minor: u64) -> serde_json::Value {
    serde_json::json!({"path": path, "type": "c", "major": 195, "minor": minor, "fileMode": 438, "uid": 0, "gid": 0})
}

#[test]
fn a_spec_holding_every_gpu_node_is_recorded_holding_every_gpu() {
    if !require(
        "a_spec_holding_every_gpu_node_is_recorded_holding_every_gpu",
        &["runc"],
    ) {
        return;
    }
    let c = Cluster::new(4, "placement = \"spread\"");
    // Privileged-style: all four nodes already there, one of them under another name.
    let nodes = serde_json::json!([
        gpu_node("/dev/nvidia0", 0),
        gpu_node("/dev/nvidia1", 1),
        gpu_node("/dev/nvidia2", 2),
        gpu_node("/dev/gpu3", 3),
    ]);
    let b = c.bundle_holding("privileged", nodes);
    finish(c.shim().create(&b, "privileged").output()).unwrap();
    assert_eq!(
        c.entry("privileged")["gpus"],
        serde_json::json!([0, 1, 2, 3])
    );
    assert_eq!(c.counts(), vec![1, 1, 1, 1]);
}

#[test]
fn a_gpu_node_whose_number_says_another_gpu_is_refused() {
    if !require(
        "a_gpu_node_whose_number_says_another_gpu_is_refused",
        &["runc"],
    ) {
        return;
    }
    let c = Cluster::new(4, "placement = \"spread\"");
    let b = c.bundle_holding("liar", serde_json::json!([gpu_node("/dev/nvidia0", 3)]));
    let before = common::snapshot(&b);
    let e = finish(c.shim().create(&b, "liar").output()).unwrap_err();
    assert!(
        e.contains("\"/dev/nvidia0\" as c 195:3, but /dev/nvidia0 is c 195:0 on this host"),
        "{e}"
    );
    assert_eq!(common::snapshot(&b), before, "the bundle was changed");
    assert_eq!(c.counts(), vec![0, 0, 0, 0]);
}

impl Cluster {
    /// `gpu-share doctor`'s `state` line.
    fn doctor_state_line(&self) -> String {
        let out = Command::new(cli_bin())
            .args(["doctor", "--config"])
            .arg(&self.host.config)
            .args(["--daemon-json", "/nonexistent/daemon.json"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.get(5..).is_some_and(|l| l.starts_with("state ")))
            .unwrap_or_else(|| panic!("no state line in {out:?}"))
            .to_owned()
    }

    /// The corrupt state files kept aside in the state dir.
    fn kept_aside(&self) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(self.host.path("state"))
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("placements.json.corrupt-")
            })
            .map(|e| e.path())
            .collect();
        found.sort();
        found
    }
}

#[test]
fn a_corrupt_state_file_is_kept_aside_and_rebuilt_from_runcs_state() {
    if !require(
        "a_corrupt_state_file_is_kept_aside_and_rebuilt_from_runcs_state",
        &["runc"],
    ) {
        return;
    }
    let c = Cluster::new(2, "placement = \"spread\"\nmax_per_gpu = 1");
    c.create("a", &[]).unwrap();
    c.create("b", &[]).unwrap();
    let garbage = b"{\"version\": 1, \"containers\": [{\"id\": \"a\", \"gpus\": [0";
    std::fs::write(c.host.path("state/placements.json"), garbage).unwrap();
    let line = c.doctor_state_line();
    assert!(line.starts_with("WARN"), "{line}");
    assert!(line.contains("placements.json is not valid"), "{line}");
    assert!(c.kept_aside().is_empty(), "doctor moved the file: {line}");

    // Both GPUs are still taken: the next container is refused, not placed past the limit.
    let e = c.create("c", &[]).unwrap_err();
    assert!(e.contains("every GPU is at sharing.max_per_gpu = 1"), "{e}");
    let kept = c.kept_aside();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), garbage);
    for (id, gpu) in [("a", 0), ("b", 1)] {
        let entry = c.entry(id);
        assert_eq!(entry["gpus"], serde_json::json!([gpu]), "{entry}");
        assert_eq!(entry["kind"], "shared", "{entry}");
        assert_eq!(
            entry["root"],
            c.runc_root().display().to_string(),
            "{entry}"
        );
    }
    assert_eq!(c.counts(), vec![1, 1]);
    let line = c.doctor_state_line();
    assert!(line.starts_with("WARN"), "{line}");
    assert!(line.contains("2 live container(s)"), "{line}");
    assert!(
        line.contains(&*kept[0].file_name().unwrap().to_string_lossy()),
        "{line}"
    );
    // Deleting one frees its GPU as before.
    c.delete("a");
    c.create("c", &[]).unwrap();
    assert_eq!(c.gpus_of("c"), "0");
}

/// A small tmpfs mounted over `dir` for the life of the value: a disk that can fill up.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &std::path::Path, bytes: u64) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs on {}", dir.display());
        SmallDisk(dir.to_path_buf())
    }

    /// Fills what is left of it.
    fn fill(&self) {
        let chunk = vec![0u8; 4096];
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_state_that_cannot_be_saved_leaves_the_bundle_as_it_was() {
    if !require(
        "a_state_that_cannot_be_saved_leaves_the_bundle_as_it_was",
        &["runc", "mount"],
    ) {
        return;
    }
    let c = Cluster::new(2, "placement = \"spread\"");
    let disk = SmallDisk::mount(&c.host.path("state"), 64 * 1024);
    c.create("a", &[]).unwrap();
    disk.fill();
    let b = c.bundle("b", &[]);
    let before = common::snapshot(&b);
    let e = c.create_bundle("b", &b, false).unwrap_err();
    assert!(e.contains("No space left on device"), "{e}");
    assert_eq!(common::snapshot(&b), before, "the bundle was changed");
    // A retry once there is room is placed like any first try.
    std::fs::remove_file(c.host.path("state/filler")).unwrap();
    c.create_bundle("b", &b, false).unwrap();
    assert_eq!(c.gpus_of("b"), "1");
}
