//! The shim as dockerd's default runtime: one private dockerd for this whole test binary, on a
//! fake one-GPU host.

mod common;

use std::sync::OnceLock;

use common::dockerd::{Dockerd, IMAGE};
use common::{require, shim_bin, FakeGpuHost};

fn dockerd() -> Option<&'static Dockerd> {
    static DOCKERD: OnceLock<Option<Dockerd>> = OnceLock::new();
    DOCKERD
        .get_or_init(|| {
            require("the dockerd tests", &["dockerd", "containerd", "runc"])
                .then(|| Dockerd::start(&shim_bin(), 1, ""))
        })
        .as_ref()
}

fn unique(name: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{name}-{}", N.fetch_add(1, Ordering::Relaxed))
}

#[test]
fn default_runtime_is_the_shim() {
    let Some(d) = dockerd() else { return };
    let info = d.docker_ok(&["info", "--format", "{{.DefaultRuntime}}"]);
    assert_eq!(info.trim(), "gpu-share");
}

#[test]
fn two_containers_share_gpu0_at_the_same_time() {
    let Some(d) = dockerd() else { return };
    let names = [unique("share-a"), unique("share-b")];
    for name in &names {
        d.docker_ok(&[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            name,
            IMAGE,
            "sleep",
            "60",
        ]);
    }
    for name in &names {
        let running = d.docker_ok(&["inspect", "--format", "{{.State.Running}}", name]);
        assert_eq!(running.trim(), "true", "{name}");
        let ls = d.docker_ok(&["exec", name, "ls", "-l", "/dev/nvidia0"]);
        assert!(ls.starts_with("crw-rw-rw-"), "{name}: {ls}");
        assert!(ls.contains("195,   0"), "{name}: {ls}");
        // `docker exec` gets docker's own env, so read the one runc gave the container.
        let env = d.docker_ok(&["exec", name, "cat", "/proc/1/environ"]);
        assert!(
            env.split('\0').any(|e| e == "NVIDIA_VISIBLE_DEVICES=0"),
            "{env:?}"
        );
    }
    // Both still running once both have been looked at: they hold the GPU at the same time.
    let ps = d.docker_ok(&["ps", "--format", "{{.Names}}"]);
    for name in &names {
        assert!(ps.lines().any(|l| l == name), "{name} not in {ps}");
    }
    d.docker_ok(&["stop", "-t", "1", &names[0], &names[1]]);
    d.docker_ok(&["rm", &names[0], &names[1]]);
    let all = d.docker_ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(!all.lines().any(|l| names.iter().any(|n| n == l)), "{all}");
    let log = std::fs::read_to_string(&d.shim_log).unwrap();
    assert!(log.contains("gpus=0 "), "{log}");
}

#[test]
fn missing_gpu_index_fails_with_the_reason_in_docker_s_error() {
    let Some(d) = dockerd() else { return };
    let out = d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-e",
        "NVIDIA_VISIBLE_DEVICES=7",
        IMAGE,
        "true",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("NVIDIA_VISIBLE_DEVICES=7: this host has GPUs 0-0"),
        "docker said: {err}"
    );
}

#[test]
fn none_container_gets_no_gpu() {
    let Some(d) = dockerd() else { return };
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-e",
        "NVIDIA_VISIBLE_DEVICES=none",
        IMAGE,
        "ls",
        "/dev",
    ]);
    assert!(!out.contains("nvidia"), "{out}");
}

#[test]
fn runc_runtime_is_left_alone() {
    let Some(d) = dockerd() else { return };
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--runtime",
        "runc",
        IMAGE,
        "ls",
        "/dev",
    ]);
    assert!(!out.contains("nvidia"), "{out}");
}

#[test]
fn exit_status_reaches_docker() {
    let Some(d) = dockerd() else { return };
    let out = d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        IMAGE,
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
}

/// The recorded kind of the container with this id, from the shim's state file.
fn recorded_kind(d: &Dockerd, id: &str) -> String {
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.dir.join("state/placements.json")).unwrap())
            .unwrap();
    state["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .and_then(|e| e["kind"].as_str())
        .unwrap_or_else(|| panic!("{id} is not in {state}"))
        .to_owned()
}

#[test]
fn the_nvidia_runtime_is_the_only_way_to_a_reservation() {
    let Some(d) = dockerd() else { return };
    let env = format!("NVIDIA_VISIBLE_DEVICES={}", FakeGpuHost::uuid(0));
    let ecs = "ECS_CONTAINER_METADATA_URI_V4=http://169.254.170.2/v4/x";
    let mut ids = Vec::new();
    for runtime in ["nvidia", "gpu-share"] {
        let name = unique(&format!("reserve-{runtime}"));
        let id = d.docker_ok(&[
            "run",
            "-d",
            "--network",
            "none",
            "--runtime",
            runtime,
            "--name",
            &name,
            "-e",
            &env,
            "-e",
            ecs,
            IMAGE,
            "sleep",
            "60",
        ]);
        ids.push((name, id.trim().to_owned()));
    }
    assert_eq!(recorded_kind(d, &ids[0].1), "reserved");
    assert_eq!(recorded_kind(d, &ids[1].1), "pinned");
    for (name, _) in &ids {
        let ls = d.docker_ok(&["exec", name, "ls", "/dev/nvidia0"]);
        assert_eq!(ls.trim(), "/dev/nvidia0");
        d.docker_ok(&["rm", "-f", name]);
    }
}

#[test]
fn repeated_visible_devices_give_the_container_what_its_spec_says() {
    let Some(d) = dockerd() else { return };
    let name = unique("repeated");
    d.docker_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        &name,
        "-e",
        "NVIDIA_VISIBLE_DEVICES=1",
        "-e",
        "NVIDIA_VISIBLE_DEVICES=all",
        IMAGE,
        "sleep",
        "60",
    ]);
    // runc gives the container the last entry: the shim decided on that one and wrote its
    // answer into every entry, so what the container sees is what it got.
    let env = d.docker_ok(&["exec", &name, "cat", "/proc/1/environ"]);
    let seen: Vec<&str> = env
        .split('\0')
        .filter(|e| e.starts_with("NVIDIA_VISIBLE_DEVICES="))
        .collect();
    assert_eq!(seen, ["NVIDIA_VISIBLE_DEVICES=0"], "{env}");
    let ls = d.docker_ok(&["exec", &name, "ls", "/dev/nvidia0"]);
    assert_eq!(ls.trim(), "/dev/nvidia0");
    d.docker_ok(&["rm", "-f", &name]);
}
