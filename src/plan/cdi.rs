//! CDI's mounts, hooks and env: the parts of NVIDIA's CDI edits that are not device nodes (those
//! go through `devices` and `cgroup_rules` like any other node).
//!
//! Owns `mounts` entries, `hooks.<stage>` entries and `process.env` names it adds. Applied as
//! JSON, losslessly and idempotently: a mount whose destination is taken, a hook already in its
//! stage, or a variable the container already sets is left as it is (the container's own value
//! wins, and nothing it did not add is removed or changed). `NVIDIA_VISIBLE_DEVICES` is never
//! taken from CDI (NVIDIA's spec sets it to `void`): placement decided it.

use serde_json::{Map, Value};

use super::build::PlanError;
use crate::cdi::edits::{CdiHook, CdiMount};
use crate::request::VISIBLE_DEVICES;
use crate::spec::{array_at, as_object, object_at};

/// Appends the mounts whose destinations are free.
pub fn add_mounts(root: &mut Map<String, Value>, mounts: &[CdiMount]) -> Result<bool, PlanError> {
    if mounts.is_empty() {
        return Ok(false);
    }
    let list = array_at(root, "mounts", "mounts")?;
    // The destinations there before, read once: a lookup per mount per entry would hash
    // "destination" thousands of times on a spec given dozens of driver mounts.
    let taken: Vec<String> = list
        .iter()
        .filter_map(|e| e.get("destination").and_then(Value::as_str))
        .map(str::to_owned)
        .collect();
    let mut changed = false;
    for (i, m) in mounts.iter().enumerate() {
        let dest = m.container_path.as_str();
        if taken.iter().any(|t| t == dest) || mounts[..i].iter().any(|o| o.container_path == dest) {
            continue;
        }
        let mut entry = Map::with_capacity(4);
        entry.insert("destination".into(), m.container_path.clone().into());
        if let Some(kind) = &m.kind {
            entry.insert("type".into(), kind.clone().into());
        }
        entry.insert("source".into(), m.host_path.clone().into());
        entry.insert("options".into(), strings(&m.options));
        list.push(Value::Object(entry));
        changed = true;
    }
    Ok(changed)
}

/// Appends each hook to its stage unless the same hook (path, args, env) is there.
pub fn add_hooks(root: &mut Map<String, Value>, hooks: &[CdiHook]) -> Result<bool, PlanError> {
    if hooks.is_empty() {
        return Ok(false);
    }
    let stages = object_at(root, "hooks", "hooks")?;
    let mut changed = false;
    for h in hooks {
        let entry = hook_json(h);
        let shown = format!("hooks.{}", h.hook_name);
        let stage = array_at(stages, &h.hook_name, &shown)?;
        if stage.iter().any(|e| same_hook(e, &entry)) {
            continue;
        }
        stage.push(entry);
        changed = true;
    }
    Ok(changed)
}

fn hook_json(h: &CdiHook) -> Value {
    let mut entry = Map::with_capacity(4);
    entry.insert("path".into(), h.path.clone().into());
    if !h.args.is_empty() {
        entry.insert("args".into(), strings(&h.args));
    }
    if !h.env.is_empty() {
        entry.insert("env".into(), strings(&h.env));
    }
    if let Some(t) = h.timeout {
        entry.insert("timeout".into(), t.into());
    }
    Value::Object(entry)
}

/// A JSON array of strings, built directly (not through serde's serializer: this runs for every
/// mount of every create).
fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| Value::String(s.clone())).collect())
}

fn same_hook(a: &Value, b: &Value) -> bool {
    ["path", "args", "env"].iter().all(|k| a.get(k) == b.get(k))
}

/// Appends each `NAME=value` whose name the container does not set, `NVIDIA_VISIBLE_DEVICES`
/// excepted. A spec without `process` is left for runc to refuse.
pub fn add_env(root: &mut Map<String, Value>, env: &[String]) -> Result<bool, PlanError> {
    let Some(process) = root.get_mut("process") else {
        return Ok(false);
    };
    let process = as_object(process, "process")?;
    let list = array_at(process, "env", "process.env")?;
    let mut changed = false;
    for e in env {
        let name = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
        if name == VISIBLE_DEVICES || name.is_empty() {
            continue;
        }
        let set = list
            .iter()
            .filter_map(Value::as_str)
            .any(|s| s.split_once('=').map_or(s, |(k, _)| k) == name);
        if !set {
            list.push(Value::String(e.clone()));
            changed = true;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mount(dest: &str) -> CdiMount {
        CdiMount {
            host_path: format!("/host{dest}"),
            container_path: dest.to_owned(),
            kind: None,
            options: vec!["ro".into(), "rbind".into()],
        }
    }

    fn ldcache() -> CdiHook {
        CdiHook {
            hook_name: "createContainer".into(),
            path: "/usr/bin/nvidia-cdi-hook".into(),
            args: vec!["nvidia-cdi-hook".into(), "update-ldcache".into()],
            env: vec![],
            timeout: None,
        }
    }

    #[test]
    fn mounts_hooks_and_env_are_added_once_keeping_what_is_there() {
        let mut spec = json!({
            "process": {"env": ["NVIDIA_CTK_DEBUG=true", "NVIDIA_VISIBLE_DEVICES=0"]},
            "mounts": [{"destination": "/usr/lib64/libcuda.so.1", "source": "/mine", "x-keep": 1}],
            "hooks": {"createContainer": [{"path": "/other"}]}
        });
        let root = spec.as_object_mut().unwrap();
        let mounts = [
            mount("/usr/lib64/libcuda.so.1"),
            mount("/usr/bin/nvidia-smi"),
        ];
        assert!(add_mounts(root, &mounts).unwrap());
        assert!(add_hooks(root, &[ldcache()]).unwrap());
        let env = [
            "NVIDIA_VISIBLE_DEVICES=void".to_owned(),
            "NVIDIA_CTK_DEBUG=false".into(),
            "A=1".into(),
        ];
        assert!(add_env(root, &env).unwrap());
        let once = spec.clone();
        let root = spec.as_object_mut().unwrap();
        assert!(!add_mounts(root, &mounts).unwrap());
        assert!(!add_hooks(root, &[ldcache()]).unwrap());
        assert!(!add_env(root, &env).unwrap());
        assert_eq!(spec, once);
        assert_eq!(
            spec["mounts"],
            json!([
                {"destination": "/usr/lib64/libcuda.so.1", "source": "/mine", "x-keep": 1},
                {"destination": "/usr/bin/nvidia-smi", "source": "/host/usr/bin/nvidia-smi", "options": ["ro", "rbind"]}
            ])
        );
        assert_eq!(
            spec["hooks"]["createContainer"][1]["args"][1],
            "update-ldcache"
        );
        assert_eq!(
            spec["process"]["env"],
            json!(["NVIDIA_CTK_DEBUG=true", "NVIDIA_VISIBLE_DEVICES=0", "A=1"])
        );
    }

    #[test]
    fn wrong_shapes_are_refused() {
        let mut spec = json!({"mounts": {}, "hooks": {"createContainer": 1}});
        let root = spec.as_object_mut().unwrap();
        assert!(add_mounts(root, &[mount("/a")]).is_err());
        assert!(add_hooks(root, &[ldcache()]).is_err());
    }
}
