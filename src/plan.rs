//! The edits one container gets, as plain data, and the spec modifiers that apply them.
//!
//! Each modifier owns one part of the spec and only appends to it or sets one entry, so every
//! field it does not own stays exactly as it was, known to oci-spec or not. Each is idempotent:
//! what is already there (docker's `--gpus` hook, a device, a rule) is not added again, so
//! editing twice gives the same spec as editing once.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    HookBuilder, LinuxDeviceBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType,
};
use serde_json::{Map, Value};

use crate::gpu::{DeviceNode, Gpu, Inventory};
use crate::request::{visible_value, VISIBLE_DEVICES};

/// Names the NVIDIA prestart hook has gone by; one of these in the spec means it is there.
const NVIDIA_HOOK_NAMES: &[&str] = &["nvidia-container-runtime-hook", "nvidia-container-toolkit"];

/// What to do about the NVIDIA hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookPlan {
    /// Add it as a prestart hook (unless the spec has it already).
    Add(PathBuf),
    /// It is not on this host: devices only.
    Missing(PathBuf),
}

/// Everything one container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// GPU indices given, in order.
    pub gpus: Vec<u32>,
    /// GPU nodes, then control nodes.
    pub devices: Vec<DeviceNode>,
    /// The `NVIDIA_VISIBLE_DEVICES` value written to the container.
    pub visible: String,
    pub hook: HookPlan,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("config.json: {path} is {found}, expected {expected}")]
pub struct ShapeError {
    path: String,
    found: &'static str,
    expected: &'static str,
}

impl Plan {
    /// The plan for `gpus` (already resolved, never empty) on `inventory`.
    pub fn new(gpus: &[&Gpu], inventory: &Inventory, hook_path: &Path, hook_exists: bool) -> Plan {
        let mut devices: Vec<DeviceNode> = gpus.iter().map(|g| g.node.clone()).collect();
        devices.extend(inventory.controls.iter().cloned());
        Plan {
            gpus: gpus.iter().map(|g| g.index).collect(),
            devices,
            visible: visible_value(gpus),
            hook: if hook_exists {
                HookPlan::Add(hook_path.to_path_buf())
            } else {
                HookPlan::Missing(hook_path.to_path_buf())
            },
        }
    }

    /// Applies every modifier to `spec`. Returns whether anything changed.
    pub fn apply(&self, spec: &mut Value) -> Result<bool, ShapeError> {
        let root = as_object(spec, "the document")?;
        let mut changed = false;
        changed |= add_devices(root, &self.devices)?;
        changed |= add_cgroup_rules(root, &self.devices)?;
        changed |= set_env(root, VISIBLE_DEVICES, &self.visible)?;
        if let HookPlan::Add(path) = &self.hook {
            changed |= add_hook(root, path)?;
        }
        Ok(changed)
    }
}

/// "an array", "a string", ...: for messages about a spec of the wrong shape.
pub fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn as_object<'a>(v: &'a mut Value, path: &str) -> Result<&'a mut Map<String, Value>, ShapeError> {
    let found = kind_name(v);
    v.as_object_mut().ok_or(ShapeError {
        path: path.to_owned(),
        found,
        expected: "an object",
    })
}

/// `parent[key]` as an object, created when absent (or null).
fn object_at<'a>(
    parent: &'a mut Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a mut Map<String, Value>, ShapeError> {
    let slot = parent
        .entry(key)
        .and_modify(|v| {
            if v.is_null() {
                *v = Value::Object(Map::new());
            }
        })
        .or_insert_with(|| Value::Object(Map::new()));
    as_object(slot, path)
}

/// `parent[key]` as an array, created when absent (or null).
fn array_at<'a>(
    parent: &'a mut Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a mut Vec<Value>, ShapeError> {
    let slot = parent
        .entry(key)
        .and_modify(|v| {
            if v.is_null() {
                *v = Value::Array(Vec::new());
            }
        })
        .or_insert_with(|| Value::Array(Vec::new()));
    let found = kind_name(slot);
    slot.as_array_mut().ok_or(ShapeError {
        path: path.to_owned(),
        found,
        expected: "an array",
    })
}

fn device_type(kind: char) -> LinuxDeviceType {
    if kind == 'b' {
        LinuxDeviceType::B
    } else {
        LinuxDeviceType::C
    }
}

fn to_value<T: serde::Serialize>(v: T) -> Value {
    // Serialising oci-spec's plain structs into a Value cannot fail.
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// `linux.devices`: one entry per node, unless an entry with that path is there.
fn add_devices(root: &mut Map<String, Value>, nodes: &[DeviceNode]) -> Result<bool, ShapeError> {
    let linux = object_at(root, "linux", "linux")?;
    let devices = array_at(linux, "devices", "linux.devices")?;
    let mut changed = false;
    for node in nodes {
        let path = node.path.to_string_lossy();
        if devices
            .iter()
            .any(|d| d.get("path").and_then(Value::as_str) == Some(&path))
        {
            continue;
        }
        let built = LinuxDeviceBuilder::default()
            .path(node.path.clone())
            .typ(device_type(node.kind))
            .major(node.major as i64)
            .minor(node.minor as i64)
            .file_mode(node.mode)
            .uid(node.uid)
            .gid(node.gid)
            .build();
        if let Ok(device) = built {
            devices.push(to_value(device));
            changed = true;
        }
    }
    Ok(changed)
}

fn rule_allows(rule: &Value, node: &DeviceNode) -> bool {
    let kind = node.kind.to_string();
    rule.get("allow").and_then(Value::as_bool) == Some(true)
        && rule.get("type").and_then(Value::as_str) == Some(kind.as_str())
        && rule.get("major").and_then(Value::as_u64) == Some(node.major)
        && rule.get("minor").and_then(Value::as_u64) == Some(node.minor)
        && rule
            .get("access")
            .and_then(Value::as_str)
            .is_some_and(|a| a.contains('r') && a.contains('w') && a.contains('m'))
}

/// `linux.resources.devices`: an allow rule per node, appended after whatever is there (docker
/// leads with a deny-all, so the allows must come after it).
fn add_cgroup_rules(
    root: &mut Map<String, Value>,
    nodes: &[DeviceNode],
) -> Result<bool, ShapeError> {
    let linux = object_at(root, "linux", "linux")?;
    let resources = object_at(linux, "resources", "linux.resources")?;
    let rules = array_at(resources, "devices", "linux.resources.devices")?;
    let mut changed = false;
    for node in nodes {
        if rules.iter().any(|r| rule_allows(r, node)) {
            continue;
        }
        let built = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(device_type(node.kind))
            .major(node.major as i64)
            .minor(node.minor as i64)
            .access("rwm")
            .build();
        if let Ok(rule) = built {
            rules.push(to_value(rule));
            changed = true;
        }
    }
    Ok(changed)
}

/// `process.env`: sets `name=value` in place, or appends it. A spec without `process` is left
/// for runc to refuse.
fn set_env(root: &mut Map<String, Value>, name: &str, value: &str) -> Result<bool, ShapeError> {
    let Some(process) = root.get_mut("process") else {
        return Ok(false);
    };
    let process = as_object(process, "process")?;
    let env = array_at(process, "env", "process.env")?;
    let wanted = format!("{name}={value}");
    for entry in env.iter_mut() {
        let Some(s) = entry.as_str() else { continue };
        if s.split_once('=').map(|(k, _)| k) == Some(name) {
            if s == wanted {
                return Ok(false);
            }
            *entry = Value::String(wanted);
            return Ok(true);
        }
    }
    env.push(Value::String(wanted));
    Ok(true)
}

/// The first `NAME=value` of `process.env`: what `getenv` in the container would see.
pub fn env_value<'a>(spec: &'a Value, name: &str) -> Option<&'a str> {
    spec.get("process")?
        .get("env")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|e| {
            e.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v)
        })
}

fn is_nvidia_hook(hook: &Value, path: &Path) -> bool {
    let Some(p) = hook.get("path").and_then(Value::as_str) else {
        return false;
    };
    let p = Path::new(p);
    p == path
        || p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| NVIDIA_HOOK_NAMES.contains(&n))
}

/// `hooks.prestart`: the NVIDIA hook, unless any NVIDIA hook is there already (docker's
/// `--gpus` adds one, and two break the container).
fn add_hook(root: &mut Map<String, Value>, path: &Path) -> Result<bool, ShapeError> {
    let hooks = object_at(root, "hooks", "hooks")?;
    for stage in ["prestart", "createRuntime"] {
        if let Some(list) = hooks.get(stage).and_then(Value::as_array) {
            if list.iter().any(|h| is_nvidia_hook(h, path)) {
                return Ok(false);
            }
        }
    }
    let prestart = array_at(hooks, "prestart", "hooks.prestart")?;
    let built = HookBuilder::default()
        .path(path.to_path_buf())
        .args(vec![
            "nvidia-container-runtime-hook".to_owned(),
            "prestart".to_owned(),
        ])
        .build();
    match built {
        Ok(hook) => {
            prestart.push(to_value(hook));
            Ok(true)
        }
        Err(_) => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one_gpu_host() -> Inventory {
        Inventory::synthetic(1)
    }

    fn plan(hook: bool) -> Plan {
        let inv = one_gpu_host();
        let gpus: Vec<&Gpu> = inv.gpus.iter().collect();
        Plan::new(
            &gpus,
            &inv,
            Path::new("/usr/bin/nvidia-container-runtime-hook"),
            hook,
        )
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

    #[test]
    fn env_value_reads_the_first_entry() {
        let spec = json!({"process": {"env": ["NVIDIA_VISIBLE_DEVICES=1", "NVIDIA_VISIBLE_DEVICES=2", 7]}});
        assert_eq!(env_value(&spec, "NVIDIA_VISIBLE_DEVICES"), Some("1"));
        assert_eq!(env_value(&json!({}), "NVIDIA_VISIBLE_DEVICES"), None);
    }
}
