//! `process.env`: the variables the container is given.

use serde_json::{Map, Value};

use crate::spec::{array_at, as_object, ShapeError};

/// The `NVIDIA_VISIBLE_DEVICES` value for the GPUs given: their indices, comma-separated.
pub fn visible_value(gpus: &[u32]) -> String {
    gpus.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Sets `name=value` in place of every entry for `name` (a spec can repeat a variable, and runc
/// gives the container the last), or appends it. A spec without `process` is left for runc to
/// refuse.
pub fn set(root: &mut Map<String, Value>, name: &str, value: &str) -> Result<bool, ShapeError> {
    let Some(process) = root.get_mut("process") else {
        return Ok(false);
    };
    let process = as_object(process, "process")?;
    let env = array_at(process, "env", "process.env")?;
    let wanted = format!("{name}={value}");
    let mut found = false;
    let mut changed = false;
    for entry in env.iter_mut() {
        let Some(s) = entry.as_str() else { continue };
        if s.split_once('=').map(|(k, _)| k) == Some(name) {
            found = true;
            if s != wanted {
                *entry = Value::String(wanted.clone());
                changed = true;
            }
        }
    }
    if !found {
        env.push(Value::String(wanted));
        changed = true;
    }
    Ok(changed)
}
