//! The plan's edits on docker-like specs: added, kept, idempotent, refused on wrong shapes.

use std::path::PathBuf;

use serde_json::{json, Value};

use super::*;
use crate::placement::Kind;
use crate::spec::env_value;

fn one_gpu_host() -> Inventory {
    Inventory::synthetic(1)
}

fn plan(hook: bool) -> Plan {
    let inv = one_gpu_host();
    let assignment = Assignment {
        gpus: vec![0],
        kind: Kind::Shared,
    };
    let path = PathBuf::from("/usr/bin/nvidia-container-runtime-hook");
    let hook = if hook {
        Hook::Present(path)
    } else {
        Hook::Missing(path)
    };
    Plan::new(&assignment, &inv, &hook)
}

fn docker_like_spec() -> Value {
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {"args": ["sh"], "env": ["PATH=/bin", "HOSTNAME=x"], "ioPriority": {"class": "IOPRIO_CLASS_IDLE"}},
        "hooks": {"prestart": [{"path": "/proc/1/exe", "args": ["libnetwork-setkey", "-exec-root=/run/docker", "abc", "def"]}]},
        "linux": {
            "netDevices": {"eth9": {"name": "eth0"}},
            "resources": {"devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]},
            "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]
        },
        "x-unknown": [1, 2.5, {"deep": null}]
    })
}

#[test]
fn devices_rules_env_and_hook_are_added() {
    let mut spec = docker_like_spec();
    assert!(plan(true).apply(&mut spec).unwrap());
    let devices = spec["linux"]["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 4);
    assert_eq!(
        devices[1],
        json!({"path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 0, "fileMode": 438, "uid": 0, "gid": 0})
    );
    let rules = spec["linux"]["resources"]["devices"].as_array().unwrap();
    assert_eq!(rules[0], json!({"allow": false, "access": "rwm"}));
    assert_eq!(
        rules[2],
        json!({"allow": true, "type": "c", "major": 195, "minor": 0, "access": "rwm"})
    );
    assert_eq!(rules.len(), 5);
    assert_eq!(env_value(&spec, "NVIDIA_VISIBLE_DEVICES"), Some("0"));
    let prestart = spec["hooks"]["prestart"].as_array().unwrap();
    assert_eq!(prestart.len(), 2);
    assert_eq!(prestart[0]["args"][0], "libnetwork-setkey");
    assert_eq!(
        prestart[1],
        json!({"path": "/usr/bin/nvidia-container-runtime-hook", "args": ["nvidia-container-runtime-hook", "prestart"]})
    );
}

#[test]
fn fields_not_owned_are_kept() {
    let mut spec = docker_like_spec();
    plan(true).apply(&mut spec).unwrap();
    assert_eq!(
        spec["linux"]["netDevices"],
        json!({"eth9": {"name": "eth0"}})
    );
    assert_eq!(spec["process"]["ioPriority"]["class"], "IOPRIO_CLASS_IDLE");
    assert_eq!(spec["x-unknown"], json!([1, 2.5, {"deep": null}]));
    let keys: Vec<&String> = spec.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["ociVersion", "process", "hooks", "linux", "x-unknown"]
    );
}

#[test]
fn second_edit_changes_nothing() {
    let mut spec = docker_like_spec();
    assert!(plan(true).apply(&mut spec).unwrap());
    let once = spec.clone();
    assert!(!plan(true).apply(&mut spec).unwrap());
    assert_eq!(spec, once);
}

#[test]
fn docker_gpus_hook_is_not_added_twice() {
    let mut spec = docker_like_spec();
    spec["hooks"]["prestart"].as_array_mut().unwrap().push(
        json!({"path": "/usr/local/bin/nvidia-container-runtime-hook", "args": ["nvidia-container-runtime-hook", "prestart"]}),
    );
    plan(true).apply(&mut spec).unwrap();
    assert_eq!(spec["hooks"]["prestart"].as_array().unwrap().len(), 2);
}

#[test]
fn missing_hook_means_devices_only() {
    let mut spec = docker_like_spec();
    plan(false).apply(&mut spec).unwrap();
    assert_eq!(spec["hooks"]["prestart"].as_array().unwrap().len(), 1);
    assert_eq!(spec["linux"]["devices"].as_array().unwrap().len(), 4);
}

#[test]
fn existing_visible_devices_is_replaced_in_place() {
    let mut spec = json!({"process": {"env": ["A=1", "NVIDIA_VISIBLE_DEVICES=all", "B=2"]}});
    plan(false).apply(&mut spec).unwrap();
    assert_eq!(
        spec["process"]["env"],
        json!(["A=1", "NVIDIA_VISIBLE_DEVICES=0", "B=2"])
    );
}

#[test]
fn present_devices_and_rules_are_not_repeated() {
    let mut spec = json!({
        "process": {"env": []},
        "linux": {
            "devices": [{"path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 0}],
            "resources": {"devices": [{"allow": true, "type": "c", "major": 195, "minor": 0, "access": "rwm"}]}
        }
    });
    plan(false).apply(&mut spec).unwrap();
    let devices = spec["linux"]["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 3);
    assert_eq!(
        devices[0],
        json!({"path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 0})
    );
    assert_eq!(
        spec["linux"]["resources"]["devices"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn missing_sections_are_created() {
    let mut spec = json!({"process": {}});
    plan(true).apply(&mut spec).unwrap();
    assert_eq!(spec["linux"]["devices"].as_array().unwrap().len(), 3);
    assert_eq!(spec["process"]["env"], json!(["NVIDIA_VISIBLE_DEVICES=0"]));
}

#[test]
fn wrong_shapes_are_errors() {
    for (spec, path) in [
        (json!([]), "the document"),
        (json!({"linux": 3}), "linux"),
        (json!({"linux": {"devices": {}}}), "linux.devices"),
        (json!({"linux": {"resources": []}}), "linux.resources"),
        (json!({"process": {"env": "A=1"}}), "process.env"),
        (json!({"hooks": {"prestart": {}}}), "hooks.prestart"),
    ] {
        let mut s = spec.clone();
        let e = plan(true).apply(&mut s).unwrap_err();
        assert!(e.to_string().contains(path), "{e} for {spec}");
    }
}

/// The spec with `hook` in `hooks[stage]`, and the plan's legacy hook applied to it.
fn with_hook_applied(stage: &str, hook: Value) -> Value {
    let mut spec = docker_like_spec();
    spec["hooks"][stage] = json!([hook]);
    plan(true).apply(&mut spec).unwrap();
    spec
}

fn legacy_hooks_added(spec: &Value) -> usize {
    spec["hooks"]["prestart"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["path"] == "/usr/bin/nvidia-container-runtime-hook")
        .count()
}

#[test]
fn a_renamed_legacy_hook_is_recognised_by_its_args0() {
    for stage in ["prestart", "createRuntime"] {
        for args0 in [
            "nvidia-container-runtime-hook",
            "/usr/local/bin/nvidia-container-toolkit",
        ] {
            let spec = with_hook_applied(
                stage,
                json!({"path": "/opt/nv/renamed-hook", "args": [args0, "prestart"]}),
            );
            assert_eq!(legacy_hooks_added(&spec), 0, "{stage} {args0}: {spec}");
        }
    }
}

#[test]
fn a_spec_injected_through_cdi_gets_no_legacy_hook() {
    for (stage, hook) in [
        (
            "createContainer",
            json!({"path": "/usr/bin/nvidia-cdi-hook", "args": ["nvidia-cdi-hook", "update-ldcache", "--folder", "/usr/lib64"], "env": ["NVIDIA_CTK_DEBUG=false"]}),
        ),
        (
            "createContainer",
            json!({"path": "/usr/bin/nvidia-ctk", "args": ["nvidia-ctk", "hook", "update-ldcache", "--folder", "/usr/lib64"]}),
        ),
        (
            "createContainer",
            json!({"path": "/usr/local/nvidia/toolkit/nvidia-cdi-hook", "args": ["nvidia-cdi-hook", "create-symlinks", "--link", "libcuda.so.1::/usr/lib64/libcuda.so"]}),
        ),
        (
            "createRuntime",
            json!({"path": "/opt/bin/ctk", "args": ["nvidia-ctk", "hook", "chmod", "--mode", "755"]}),
        ),
        (
            "startContainer",
            json!({"path": "/usr/bin/nvidia-cdi-hook", "args": ["nvidia-cdi-hook", "disable-device-node-modification"]}),
        ),
    ] {
        let spec = with_hook_applied(stage, hook.clone());
        assert_eq!(legacy_hooks_added(&spec), 0, "{stage} {hook}: {spec}");
    }
}

#[test]
fn other_hooks_and_late_stages_do_not_stand_in_for_the_legacy_hook() {
    for (stage, hook) in [
        (
            "prestart",
            json!({"path": "/usr/bin/other", "args": ["other", "nvidia-container-runtime-hook"]}),
        ),
        (
            "poststop",
            json!({"path": "/usr/bin/nvidia-container-runtime-hook", "args": ["nvidia-container-runtime-hook", "poststop"]}),
        ),
        (
            "createContainer",
            json!({"path": "/usr/bin/ldconfig", "args": ["ldconfig"]}),
        ),
    ] {
        let spec = with_hook_applied(stage, hook.clone());
        assert_eq!(legacy_hooks_added(&spec), 1, "{stage} {hook}: {spec}");
    }
}
