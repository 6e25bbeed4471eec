//! `hooks.prestart`: NVIDIA's legacy hook, which mounts the driver libraries into the container.

use std::path::{Path, PathBuf};

use oci_spec::runtime::HookBuilder;
use serde_json::{Map, Value};

use super::build::{built, PlanError};
use crate::spec::{array_at, object_at};

/// Names the NVIDIA prestart hook has gone by; one of these in the spec means it is there.
const NVIDIA_HOOK_NAMES: &[&str] = &["nvidia-container-runtime-hook", "nvidia-container-toolkit"];

/// The hook as this host has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    /// It is there: add it as a prestart hook (unless the spec has it already).
    Present(PathBuf),
    /// It is not on this host: devices only.
    Missing(PathBuf),
}

impl Hook {
    /// The hook at `path`, present where it is an executable file.
    pub fn at(path: &Path) -> Hook {
        if crate::runc_exec::is_executable(path) {
            Hook::Present(path.to_path_buf())
        } else {
            Hook::Missing(path.to_path_buf())
        }
    }
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

/// The NVIDIA hook, unless any NVIDIA hook is there already (docker's `--gpus` adds one, and
/// two break the container).
pub fn add(root: &mut Map<String, Value>, path: &Path) -> Result<bool, PlanError> {
    let hooks = object_at(root, "hooks", "hooks")?;
    for stage in ["prestart", "createRuntime"] {
        if let Some(list) = hooks.get(stage).and_then(Value::as_array) {
            if list.iter().any(|h| is_nvidia_hook(h, path)) {
                return Ok(false);
            }
        }
    }
    let prestart = array_at(hooks, "prestart", "hooks.prestart")?;
    let hook = HookBuilder::default()
        .path(path.to_path_buf())
        .args(vec![
            "nvidia-container-runtime-hook".to_owned(),
            "prestart".to_owned(),
        ])
        .build();
    prestart.push(built("the NVIDIA prestart hook", hook)?);
    Ok(true)
}
