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
        task: None,
    };
    let path = PathBuf::from("/usr/bin/nvidia-container-runtime-hook");
    let hook = if hook {
        Hook::Present(path)
    } else {
        Hook::Missing(path)
    };
    Plan::new(&assignment, &inv, Driver::Legacy(hook))
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

fn spec_with_devices(devices: Value) -> Value {
    json!({"process": {"env": []}, "linux": {"devices": devices}})
}

fn node(path: &str, kind: &str, major: u64, minor: u64) -> Value {
    json!({"path": path, "type": kind, "major": major, "minor": minor})
}

#[test]
fn a_gpu_node_whose_number_contradicts_its_path_is_refused() {
    for (entry, shown) in [
        // The path says GPU 0, the number GPU 3.
        (
            node("/dev/nvidia0", "c", 195, 3),
            "\"/dev/nvidia0\" as c 195:3",
        ),
        // Not an NVIDIA number at all (/dev/null).
        (node("/dev/nvidia0", "c", 1, 3), "\"/dev/nvidia0\" as c 1:3"),
        (
            node("/dev//nvidia0", "b", 195, 0),
            "\"/dev//nvidia0\" as b 195:0",
        ),
        // A GPU the plan does not give, under another GPU's number.
        (
            node("/dev/nvidia2", "c", 195, 0),
            "\"/dev/nvidia2\" as c 195:0",
        ),
        // A control node's path over a GPU's number.
        (
            node("/dev/nvidiactl", "c", 195, 0),
            "\"/dev/nvidiactl\" as c 195:0",
        ),
        (
            json!({"path": "/dev/nvidia0", "type": "c"}),
            "\"/dev/nvidia0\" as c ?:?",
        ),
    ] {
        let mut spec = spec_with_devices(json!([entry]));
        let before = spec.clone();
        let e = plan(false).apply(&mut spec).unwrap_err().to_string();
        assert!(e.contains(shown), "{e}");
        assert!(e.contains("path and number disagree"), "{e}");
        let e = devices::held_gpus(&before, &Inventory::synthetic(4)).unwrap_err();
        assert!(e.to_string().contains(shown), "{e}");
    }
}

#[test]
fn nodes_whose_path_and_number_agree_are_kept_as_they_are() {
    let devices = json!([
        node("/dev/nvidia0", "c", 195, 0),
        node("/dev/nvidia3", "u", 195, 3),
        node("/dev/nvidia9", "c", 195, 9),
        node("/dev/nvidia-uvm", "c", 510, 0),
        node("/dev/fuse", "c", 10, 229),
    ]);
    let mut spec = spec_with_devices(devices.clone());
    plan(false).apply(&mut spec).unwrap();
    let after = spec["linux"]["devices"].as_array().unwrap();
    assert_eq!(after[..5], devices.as_array().unwrap()[..]);
    // Only nvidiactl was missing.
    assert_eq!(after.len(), 6);
    assert_eq!(after[5]["path"], "/dev/nvidiactl");
}

#[test]
fn held_gpus_are_the_hosts_gpu_nodes_in_the_spec_by_number() {
    let inv = Inventory::synthetic(4);
    // A privileged-style spec: every node of the host.
    let all = spec_with_devices(json!([
        node("/dev/nvidiactl", "c", 195, 255),
        node("/dev/nvidia3", "c", 195, 3),
        node("/dev/nvidia1", "c", 195, 1),
        node("/dev/nvidia0", "c", 195, 0),
        node("/dev/nvidia2", "c", 195, 2),
    ]));
    assert_eq!(devices::held_gpus(&all, &inv).unwrap(), vec![0, 1, 2, 3]);
    // By number, whatever the path; not the host's GPU, not held.
    let odd = spec_with_devices(json!([
        node("/dev/gpu-b", "c", 195, 2),
        node("/dev/nvidia9", "c", 195, 9),
        node("/dev/blk", "b", 195, 1),
    ]));
    assert_eq!(devices::held_gpus(&odd, &inv).unwrap(), vec![2]);
    assert_eq!(
        devices::held_gpus(&json!({"process": {}}), &inv).unwrap(),
        Vec::<u32>::new()
    );
    // Indices come from the inventory, not from the minor.
    let mut reordered = Inventory::synthetic(2);
    reordered.gpus[0].node.minor = 1;
    reordered.gpus[0].node.path = PathBuf::from("/dev/nvidia1");
    reordered.gpus[1].node.minor = 0;
    reordered.gpus[1].node.path = PathBuf::from("/dev/nvidia0");
    let one = spec_with_devices(json!([node("/dev/nvidia1", "c", 195, 1)]));
    assert_eq!(devices::held_gpus(&one, &reordered).unwrap(), vec![0]);
}
