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

use super::build::{close_hook, push_strings, separate, PlanError};
use crate::cdi::edits::{CdiHook, CdiMount};
use crate::cdi::text::checksum;
use crate::request::VISIBLE_DEVICES;
use crate::spec::{array_at, as_object, object_at, push_string, Appender, HOOK_STAGES};

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
pub fn add_mounts(
    root: &mut Map<String, Value>,
    mounts: &[CdiMount],
    to: &mut Appender<'_>,
) -> Result<bool, PlanError> {
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
    let mut added = Vec::with_capacity(mounts.iter().map(rendered_len).sum());
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
        mount_entry(&mut added, m);
    }
    to.append(list, &added)?;
    Ok(!added.is_empty())
}

/// About the length of the entries for `mounts` and `hooks` (`Plan::apply_with` reserves it).
pub fn added_len(mounts: &[CdiMount], hooks: &[CdiHook]) -> usize {
    let hooks: usize = hooks
        .iter()
        .map(|h| {
            let strings = h.args.iter().chain(&h.env).map(|s| s.len() + 3);
            96 + h.path.len() + strings.sum::<usize>()
        })
        .sum();
    hooks + mounts.iter().map(rendered_len).sum::<usize>()
}

/// About the length of a mount's entry (its keys and quotes: 64), so that the text is written
/// into one buffer, not copied as it grows.
fn rendered_len(m: &CdiMount) -> usize {
    let strings = [Some(&m.container_path), m.kind.as_ref(), Some(&m.host_path)];
    let options: usize = m.options.iter().map(|o| o.len() + 3).sum();
    64 + options
        + strings
            .into_iter()
            .flatten()
            .map(String::len)
            .sum::<usize>()
}

fn destination(entry: &Value) -> Option<&str> {
    entry.get("destination").and_then(Value::as_str)
}

/// A mount's entry: `destination`, `type` where the spec gives one, `source`, `options`.
fn mount_entry(out: &mut Vec<u8>, m: &CdiMount) {
    separate(out);
    out.extend_from_slice(b"{\"destination\":");
    push_string(out, &m.container_path);
    if let Some(kind) = &m.kind {
        out.extend_from_slice(b",\"type\":");
        push_string(out, kind);
    }
    out.extend_from_slice(b",\"source\":");
    push_string(out, &m.host_path);
    out.extend_from_slice(b",\"options\":");
    push_strings(out, &m.options);
    out.push(b'}');
}

/// Appends each hook to its stage unless the same hook (path, args, env) is there, or was
/// added by an earlier hook of `hooks`.
pub fn add_hooks(
    root: &mut Map<String, Value>,
    hooks: &[CdiHook],
    to: &mut Appender<'_>,
) -> Result<bool, PlanError> {
    if hooks.is_empty() {
        return Ok(false);
    }
    let stages = object_at(root, "hooks", "hooks")?;
    let mut changed = false;
    let mut entry = Vec::with_capacity(256);
    for (i, h) in hooks.iter().enumerate() {
        let added_already = hooks[..i]
            .iter()
            .any(|e| e.hook_name == h.hook_name && same_as(e, h));
        if added_already {
            continue;
        }
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
        entry.clear();
        hook_entry(&mut entry, h);
        to.append(stage, &entry)?;
        changed = true;
    }
    Ok(changed)
}

/// A hook's entry: `path`, then `args`, `env` and `timeout` where it has them.
fn hook_entry(out: &mut Vec<u8>, h: &CdiHook) {
    out.extend_from_slice(b"{\"path\":");
    push_string(out, &h.path);
    close_hook(out, &h.args, &h.env, h.timeout);
}

/// Whether two hooks are one as [`same_hook`] tells: path, args and env.
fn same_as(a: &CdiHook, b: &CdiHook) -> bool {
    a.path == b.path && a.args == b.args && a.env == b.env
}

/// Whether `entry` is `h`'s entry as [`hook_entry`] writes it, as far as path, args and env go
/// (compared without building that entry).
fn same_hook(entry: &Value, h: &CdiHook) -> bool {
    entry.get("path").and_then(Value::as_str) == Some(h.path.as_str())
        && same_strings(entry.get("args"), &h.args)
        && same_strings(entry.get("env"), &h.env)
}

/// Whether `value` is what [`hook_entry`] writes for `items`: absent where they are none.
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
    use crate::cdi::edits::Injected;
    use crate::gpu::Inventory;
    use crate::placement::{Assignment, Kind};
    use crate::plan::{Driver, Edit, Hook, Plan};
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
        assert!(add_mounts(root, &mounts, &mut Appender::Values).unwrap());
        assert!(add_hooks(root, &[ldcache()], &mut Appender::Values).unwrap());
        let env = [
            "NVIDIA_VISIBLE_DEVICES=void".to_owned(),
            "NVIDIA_CTK_DEBUG=false".into(),
            "A=1".into(),
        ];
        assert!(add_env(root, &env).unwrap());
        let once = spec.clone();
        let root = spec.as_object_mut().unwrap();
        assert!(!add_mounts(root, &mounts, &mut Appender::Values).unwrap());
        assert!(!add_hooks(root, &[ldcache()], &mut Appender::Values).unwrap());
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
        assert!(add_mounts(root, &[mount("/a")], &mut Appender::Values).is_err());
        assert!(add_hooks(root, &[ldcache()], &mut Appender::Values).is_err());
    }

    /// An nvidia-ctk-like injection for 4 GPUs: their nodes, 26 driver libraries, two hooks.
    fn ctk_like_plan() -> Plan {
        let inv = Inventory::synthetic(4);
        let lib = |i: usize| format!("/usr/lib64/libnvidia-lib{i:02}.so.570.172.08");
        let options = ["ro", "nosuid", "nodev", "rbind", "rprivate"].map(String::from);
        let mounts = (0..26)
            .map(|i| CdiMount {
                host_path: lib(i),
                container_path: lib(i),
                kind: None,
                options: options.to_vec(),
            })
            .collect();
        let injected = Injected {
            nodes: inv.gpus.iter().map(|g| g.node.clone()).collect(),
            mounts,
            hooks: vec![ldcache(), ldcache()],
            env: vec!["NVIDIA_CTK_LIBCUDA_DIR=/usr/lib64".to_owned()],
        };
        Plan::new(&assignment(4), &inv, Driver::Cdi(injected))
    }

    fn assignment(gpus: u32) -> Assignment {
        Assignment {
            gpus: (0..gpus).collect(),
            kind: Kind::Shared,
            task: None,
        }
    }

    #[test]
    fn the_room_reserved_for_added_entries_holds_them() {
        // `apply_with` reserves the plan's estimate once: an estimate short of what the edits
        // write would grow (and copy) the added text on every create.
        let hook = Hook::Present("/usr/bin/nvidia-container-runtime-hook".into());
        let legacy = Plan::new(
            &assignment(1),
            &Inventory::synthetic(1),
            Driver::Legacy(hook),
        );
        for plan in [legacy, ctk_like_plan()] {
            let text = br#"{"process":{"env":[]},"mounts":[{"destination":"/proc"}]}"#;
            let (mut spec, mut raw) = crate::spec::parse(text.to_vec(), "config.json").unwrap();
            crate::spec::expand(&mut spec, &raw, &plan.paths(), "config.json").unwrap();
            assert!(plan
                .apply_with(&mut spec, &mut Appender::Text(&mut raw))
                .unwrap());
            let estimate: usize = plan.edits.iter().map(Edit::added_len).sum();
            let held = crate::spec::text_held(&raw);
            // Not far over either: room past what is written pushes what comes next onto a new
            // page.
            let fits = held > 0 && held <= estimate && estimate <= 2 * held;
            assert!(fits, "{held} bytes added, {estimate} reserved");
        }
    }
}
