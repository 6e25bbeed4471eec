//! The JSON entries edits append to the spec, built directly as `serde_json` values, and the
//! error an edit fails with.
//!
//! Each entry has exactly the field names, order and values runc's spec types give it (the
//! OCI runtime spec's `LinuxDevice`, `LinuxDeviceCgroup` and `Hook`), built without going
//! through typed structs and `to_value` (they were a third of a create's plan cost). A path
//! that is not UTF-8 cannot be written into JSON: that is an error that stops the create,
//! never a piece silently left out.

use std::path::Path;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use crate::gpu::DeviceNode;
use crate::spec::ShapeError;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// A device node whose path names one NVIDIA node and whose number another (or none).
    #[error(
        "config.json: linux.devices gives {given:?} as {found}, but {path} is {expected} on this \
         host: refusing a device node whose path and number disagree"
    )]
    Contradicts {
        given: String,
        found: String,
        path: String,
        expected: String,
    },
    #[error("cannot write {what} into config.json: {path:?} is not UTF-8")]
    NotUtf8 { what: &'static str, path: String },
}

/// `path` as a JSON string, or the error naming `what` it was for.
pub fn path_value(what: &'static str, path: &Path) -> Result<Value, PlanError> {
    match path.to_str() {
        Some(text) => Ok(Value::String(text.to_owned())),
        None => Err(PlanError::NotUtf8 {
            what,
            path: path.display().to_string(),
        }),
    }
}

/// A node's OCI type: `b` for a block device, `c` otherwise.
fn type_value(kind: char) -> Value {
    Value::String(if kind == 'b' { "b" } else { "c" }.to_owned())
}

/// An object with `keys` in order holding `values`. Its keys are hashed once per process: each
/// entry is a clone of a template (a clone copies the hashes) with its values set in place, not
/// a fresh map (a create adds two dozen entries, and SipHash per key was most of their cost).
fn object<const N: usize>(
    template: &'static OnceLock<Map<String, Value>>,
    keys: [&str; N],
    values: [Value; N],
) -> Value {
    let mut map = template
        .get_or_init(|| {
            keys.iter()
                .map(|k| ((*k).to_owned(), Value::Null))
                .collect()
        })
        .clone();
    for (slot, value) in map.values_mut().zip(values) {
        // A template's values are all null: nothing to drop, so no drop call per field.
        std::mem::forget(std::mem::replace(slot, value));
    }
    Value::Object(map)
}

/// A `linux.devices` entry: path, type, major, minor, fileMode, uid, gid.
pub fn device_entry(node: &DeviceNode) -> Result<Value, PlanError> {
    static TEMPLATE: OnceLock<Map<String, Value>> = OnceLock::new();
    Ok(object(
        &TEMPLATE,
        ["path", "type", "major", "minor", "fileMode", "uid", "gid"],
        [
            path_value("a linux.devices entry", &node.path)?,
            type_value(node.kind),
            Value::from(node.major as i64),
            Value::from(node.minor as i64),
            Value::from(node.mode),
            Value::from(node.uid),
            Value::from(node.gid),
        ],
    ))
}

/// A `linux.resources.devices` allow rule: allow, type, major, minor, access `rwm`.
pub fn allow_rule(node: &DeviceNode) -> Value {
    static TEMPLATE: OnceLock<Map<String, Value>> = OnceLock::new();
    object(
        &TEMPLATE,
        ["allow", "type", "major", "minor", "access"],
        [
            Value::Bool(true),
            type_value(node.kind),
            Value::from(node.major as i64),
            Value::from(node.minor as i64),
            Value::String("rwm".to_owned()),
        ],
    )
}

/// A hook entry: path, args.
pub fn hook_entry(what: &'static str, path: &Path, args: &[&str]) -> Result<Value, PlanError> {
    let mut hook = Map::with_capacity(2);
    hook.insert("path".to_owned(), path_value(what, path)?);
    hook.insert(
        "args".to_owned(),
        Value::Array(
            args.iter()
                .map(|a| Value::String((*a).to_owned()))
                .collect(),
        ),
    );
    Ok(Value::Object(hook))
}
