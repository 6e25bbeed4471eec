//! CDI's mounts, hooks and env: the parts of NVIDIA's CDI edits that are not device nodes (those
//! go through `devices` and `cgroup_rules` like any other node).
//!
//! Owns `mounts` entries, `hooks.<stage>` entries and `process.env` names it adds. Applied as
//! JSON, losslessly and idempotently: a mount whose destination is taken, a hook already in its
//! stage, or a variable the container already sets is left as it is (the container's own value
//! wins, and nothing it did not add is removed or changed). `NVIDIA_VISIBLE_DEVICES` is never
//! taken from CDI (NVIDIA's spec sets it to `void`): placement decided it.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::build::PlanError;
use crate::cdi::edits::{CdiHook, CdiMount};
use crate::cdi::text::checksum;
use crate::request::VISIBLE_DEVICES;
use crate::spec::{array_at, as_object, object_at, HOOK_STAGES};

/// `hooks.<stage>` for each of [`HOOK_STAGES`], for errors, without a `format!` per hook.
const SHOWN_STAGES: [&str; 6] = [
    "hooks.prestart",
    "hooks.createRuntime",
    "hooks.createContainer",
    "hooks.startContainer",
    "hooks.poststart",
    "hooks.poststop",
];

/// Where a destination already in use is: an entry of the spec's `mounts`, or a mount added.
#[derive(Clone, Copy)]
enum Taken {
    Spec(usize),
    Added(usize),
}

/// Appends the mounts whose destinations are free.
pub fn add_mounts(root: &mut Map<String, Value>, mounts: &[CdiMount]) -> Result<bool, PlanError> {
    if mounts.is_empty() {
        return Ok(false);
    }
    let list = array_at(root, "mounts", "mounts")?;
    // Each destination in use, with a checksum of it: dozens of driver mounts then cost a
    // compare of numbers each against what is there, and a path compare only where they agree.
    let mut taken: Vec<(u64, Taken)> = Vec::with_capacity(list.len() + mounts.len());
    for (i, e) in list.iter().enumerate() {
        if let Some(dest) = destination(e) {
            taken.push((checksum(dest.as_bytes()), Taken::Spec(i)));
        }
    }
    let before = list.len();
    list.reserve(mounts.len());
    let mut templates: [Option<Map<String, Value>>; 2] = [None, None];
    for (i, m) in mounts.iter().enumerate() {
        let dest = m.container_path.as_str();
        let key = checksum(dest.as_bytes());
        let is_taken = taken.iter().any(|&(k, at)| {
            k == key
                && match at {
                    Taken::Spec(j) => list.get(j).and_then(destination) == Some(dest),
                    Taken::Added(j) => mounts[j].container_path == dest,
                }
        });
        if is_taken {
            continue;
        }
        taken.push((key, Taken::Added(i)));
        list.push(mount_json(m, &mut templates));
    }
    Ok(list.len() > before)
}

fn destination(entry: &Value) -> Option<&str> {
    entry.get("destination").and_then(Value::as_str)
}

/// A mount's entry: `destination`, `type` where the spec gives one, `source`, `options`. Built by
/// filling a copy of an entry with those keys: copying a map does not hash its keys again.
fn mount_json(m: &CdiMount, templates: &mut [Option<Map<String, Value>>; 2]) -> Value {
    let typed = m.kind.is_some();
    let template = templates[usize::from(typed)].get_or_insert_with(|| {
        let mut t = Map::with_capacity(4);
        t.insert("destination".into(), Value::Null);
        if typed {
            t.insert("type".into(), Value::Null);
        }
        t.insert("source".into(), Value::Null);
        t.insert("options".into(), Value::Null);
        t
    });
    let mut entry = template.clone();
    let mut destination = Some(Value::String(m.container_path.clone()));
    let mut kind = m.kind.clone().map(Value::String);
    let mut source = Some(Value::String(m.host_path.clone()));
    let mut options = Some(strings(&m.options));
    for (k, v) in entry.iter_mut() {
        let value = match k.as_str() {
            "destination" => &mut destination,
            "type" => &mut kind,
            "source" => &mut source,
            _ => &mut options,
        };
        if let Some(value) = value.take() {
            *v = value;
        }
    }
    Value::Object(entry)
}

/// Appends each hook to its stage unless the same hook (path, args, env) is there.
pub fn add_hooks(root: &mut Map<String, Value>, hooks: &[CdiHook]) -> Result<bool, PlanError> {
    if hooks.is_empty() {
        return Ok(false);
    }
    let stages = object_at(root, "hooks", "hooks")?;
    let mut changed = false;
    for h in hooks {
        let shown = HOOK_STAGES
            .iter()
            .position(|s| *s == h.hook_name)
            .and_then(|i| SHOWN_STAGES.get(i))
            .map_or_else(
                || Cow::Owned(format!("hooks.{}", h.hook_name)),
                |s| Cow::Borrowed(*s),
            );
        let stage = array_at(stages, &h.hook_name, &shown)?;
        if stage.iter().any(|e| same_hook(e, h)) {
            continue;
        }
        stage.push(hook_json(h));
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

/// Whether `entry` is `h`'s entry as [`hook_json`] writes it, as far as path, args and env go
/// (compared without building that entry).
fn same_hook(entry: &Value, h: &CdiHook) -> bool {
    entry.get("path").and_then(Value::as_str) == Some(h.path.as_str())
        && same_strings(entry.get("args"), &h.args)
        && same_strings(entry.get("env"), &h.env)
}

/// Whether `value` is what [`hook_json`] writes for `items`: absent where they are none.
fn same_strings(value: Option<&Value>, items: &[String]) -> bool {
    match value {
        None => items.is_empty(),
        Some(Value::Array(a)) => {
            !items.is_empty()
                && a.len() == items.len()
                && a.iter()
                    .zip(items)
                    .all(|(v, s)| v.as_str() == Some(s.as_str()))
        }
        Some(_) => false,
    }
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
