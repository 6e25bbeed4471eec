//! The JSON entries edits append to the spec, built directly as `serde_json` values, and the
//! error an edit fails with.
//!
//! Each entry has exactly the field names, order and values runc's spec types give it (the
//! OCI runtime spec's `LinuxDevice`, `LinuxDeviceCgroup` and `Hook`), built without going
//! through typed structs and `to_value` (they were a third of a create's plan cost). A path
//! that is not UTF-8 cannot be written into JSON: that is an error that stops the create,
//! never a piece silently left out.

use std::path::Path;

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

/// A `linux.devices` entry: path, type, major, minor, fileMode, uid, gid.
pub fn device_entry(node: &DeviceNode) -> Result<Value, PlanError> {
    let mut entry = Map::with_capacity(7);
    entry.insert(
        "path".to_owned(),
        path_value("a linux.devices entry", &node.path)?,
    );
    entry.insert("type".to_owned(), type_value(node.kind));
    entry.insert("major".to_owned(), Value::from(node.major as i64));
    entry.insert("minor".to_owned(), Value::from(node.minor as i64));
    entry.insert("fileMode".to_owned(), Value::from(node.mode));
    entry.insert("uid".to_owned(), Value::from(node.uid));
    entry.insert("gid".to_owned(), Value::from(node.gid));
    Ok(Value::Object(entry))
}

/// A `linux.resources.devices` allow rule: allow, type, major, minor, access `rwm`.
pub fn allow_rule(node: &DeviceNode) -> Value {
    let mut rule = Map::with_capacity(5);
    rule.insert("allow".to_owned(), Value::Bool(true));
    rule.insert("type".to_owned(), type_value(node.kind));
    rule.insert("major".to_owned(), Value::from(node.major as i64));
    rule.insert("minor".to_owned(), Value::from(node.minor as i64));
    rule.insert("access".to_owned(), Value::String("rwm".to_owned()));
    Value::Object(rule)
}

/// A hook entry: path, args.
pub fn hook_entry(what: &'static str, path: &Path, args: &[&str]) -> Result<Value, PlanError> {
    let mut hook = Map::with_capacity(2);
    hook.insert("path".to_owned(), path_value(what, path)?);
    hook.insert(
        "args".to_owned(),
        Value::Array(args.iter().map(|a| Value::String((*a).to_owned())).collect()),
    );
    Ok(Value::Object(hook))
}
