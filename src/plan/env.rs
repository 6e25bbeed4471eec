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

/// Sets `name=value` in place of the first entry for `name`, or appends it. A spec without
/// `process` is left for runc to refuse.
pub fn set(root: &mut Map<String, Value>, name: &str, value: &str) -> Result<bool, ShapeError> {
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
