//! `linux.devices`: the device nodes runc creates inside the container.

use oci_spec::runtime::LinuxDeviceBuilder;
use serde_json::{Map, Value};

use super::build::{built, device_type, PlanError};
use crate::gpu::DeviceNode;
use crate::spec::{array_at, object_at};

/// One entry per node, unless an entry with that path is there.
pub fn add(root: &mut Map<String, Value>, nodes: &[DeviceNode]) -> Result<bool, PlanError> {
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
        let device = LinuxDeviceBuilder::default()
            .path(node.path.clone())
            .typ(device_type(node.kind))
            .major(node.major as i64)
            .minor(node.minor as i64)
            .file_mode(node.mode)
            .uid(node.uid)
            .gid(node.gid)
            .build();
        devices.push(built("a linux.devices entry", device)?);
        changed = true;
    }
    Ok(changed)
}
