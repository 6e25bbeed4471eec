//! `hooks.prestart`: NVIDIA's legacy hook, which mounts the driver libraries into the container.
//!
//! Owns recognising NVIDIA's hooks already in a spec, so the legacy hook is never added twice
//! (two break the container) nor on top of a CDI injection (which already did its work). It
//! must never remove or change a hook it did not add.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::build::{hook_entry, PlanError};
use crate::spec::{array_at, field, member, object_at, Appender, HOOK_STAGES};

/// Names the legacy hook's executable has gone by (the toolkit's `isNVIDIAContainerRuntimeHook`
/// knows these two). docker's `--gpus` puts the bare name in `args[0]`; the toolkit's own
/// runtime puts the full path there.
const LEGACY_HOOK_NAMES: &[&str] = &["nvidia-container-runtime-hook", "nvidia-container-toolkit"];

/// The stages the legacy hook runs in: prestart, or createRuntime where a runtime moved it there.
const LEGACY_STAGES: &[&str] = &["prestart", "createRuntime"];

/// The executables of the toolkit's CDI hooks (`nvidia-ctk cdi generate` writes
/// `nvidia-cdi-hook <hook>` or `nvidia-ctk hook <hook>`, in createContainer). One in any stage
/// means the spec's NVIDIA pieces came through CDI, which the legacy hook must not redo.
const CDI_HOOK_NAMES: &[&str] = &["nvidia-cdi-hook", "nvidia-ctk"];

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

/// The file names a hook runs under: its `path`'s and its `args[0]`'s. A hook can be renamed
/// on disk, but what it is called as (`args[0]`) still says what it is, and the reverse.
fn names(hook: &Value) -> impl Iterator<Item = &str> {
    let path = field(hook, "path").and_then(Value::as_str);
    let args0 = field(hook, "args")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str);
    [path, args0]
        .into_iter()
        .flatten()
        .filter_map(|p| Path::new(p).file_name().and_then(|n| n.to_str()))
}

fn is_legacy_hook(hook: &Value, path: &Path) -> bool {
    field(hook, "path").and_then(Value::as_str).map(Path::new) == Some(path)
        || names(hook).any(|n| LEGACY_HOOK_NAMES.contains(&n))
}

fn is_cdi_hook(hook: &Value) -> bool {
    names(hook).any(|n| CDI_HOOK_NAMES.contains(&n))
}

fn stage<'a>(hooks: &'a Map<String, Value>, name: &str) -> &'a [Value] {
    member(hooks, name)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Whether the spec already has NVIDIA's hooks: the legacy one (docker's `--gpus` adds it), or
/// the toolkit's CDI hooks.
fn has_nvidia_hooks(hooks: &Map<String, Value>, path: &Path) -> bool {
    LEGACY_STAGES
        .iter()
        .any(|s| stage(hooks, s).iter().any(|h| is_legacy_hook(h, path)))
        || HOOK_STAGES
            .iter()
            .any(|s| stage(hooks, s).iter().any(is_cdi_hook))
}

/// The NVIDIA hook, unless the spec has NVIDIA's hooks already (two break the container).
pub fn add(
    root: &mut Map<String, Value>,
    path: &Path,
    to: &mut Appender<'_>,
) -> Result<bool, PlanError> {
    let hooks = object_at(root, "hooks", "hooks")?;
    if has_nvidia_hooks(hooks, path) {
        return Ok(false);
    }
    let prestart = array_at(hooks, "prestart", "hooks.prestart")?;
    let mut entry = Vec::with_capacity(128);
    hook_entry(
        &mut entry,
        "the NVIDIA prestart hook",
        path,
        &["nvidia-container-runtime-hook", "prestart"],
    )?;
    to.append(prestart, &entry)?;
    Ok(true)
}
