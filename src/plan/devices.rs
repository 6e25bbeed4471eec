//! `linux.devices`: the device nodes runc creates inside the container.
//!
//! Owns reading what the spec's nodes are: a node is what its type and major:minor say, since
//! that is what the kernel opens, whatever its path. So a node already in the spec is kept only
//! where its number agrees with its path, and the GPUs a spec holds are counted by number. It
//! never decides GPUs and never drops or changes a node that is there.

use std::borrow::Cow;
use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value};

use super::build::{device_entry, PlanError};
use crate::cdi::nodes::same_path;
use crate::gpu::{DeviceNode, Inventory};
use crate::spec::{array_at, field, object_at, Appender};

/// The NVIDIA driver's character major: `/dev/nvidiaN` is always `195:N`.
const NVIDIA_MAJOR: u64 = 195;

/// One entry per node, unless an entry with that path is there. An NVIDIA node already there
/// whose number disagrees with its path is refused: kept, it would give the container another
/// GPU than the one recorded and allowed.
pub fn add(
    root: &mut Map<String, Value>,
    nodes: &[DeviceNode],
    to: &mut Appender<'_>,
) -> Result<bool, PlanError> {
    let linux = object_at(root, "linux", "linux")?;
    let devices = array_at(linux, "devices", "linux.devices")?;
    for d in devices.iter() {
        check_agrees(d, nodes)?;
    }
    // Only the entries that were there are looked through: one added here is for an earlier
    // node of `nodes`, checked directly (every create would otherwise scan its own new entries).
    let mut added = Vec::with_capacity(128 * nodes.len());
    for (i, node) in nodes.iter().enumerate() {
        let added_already = nodes[..i]
            .iter()
            .any(|n| n.path.as_os_str() == node.path.as_os_str());
        if added_already
            || devices
                .iter()
                .any(|d| entry_path(d).is_some_and(|p| same_path(&p, &node.path)))
        {
            continue;
        }
        device_entry(&mut added, node)?;
    }
    to.append(devices, &added)?;
    Ok(!added.is_empty())
}

/// The host's GPUs (inventory indices, sorted) whose nodes the spec's `linux.devices` already
/// holds, matched by type and major:minor: a privileged-style spec holds every GPU, whatever it
/// asked for. A node whose number disagrees with its path is an error, as in [`add`]. Parts of
/// the wrong shape hold nothing here; applying the plan refuses them.
pub fn held_gpus(spec: &Value, inventory: &Inventory) -> Result<Vec<u32>, PlanError> {
    let Some(devices) = field(spec, "linux")
        .and_then(|l| field(l, "devices"))
        .and_then(Value::as_array)
    else {
        return Ok(Vec::new());
    };
    let known: Vec<DeviceNode> = inventory
        .gpus
        .iter()
        .map(|g| g.node.clone())
        .chain(inventory.controls.iter().cloned())
        .collect();
    let mut held = Vec::new();
    for d in devices {
        check_agrees(d, &known)?;
        let number = Number::of(d);
        held.extend(
            inventory
                .gpus
                .iter()
                .filter(|g| number.is(&g.node))
                .map(|g| g.index),
        );
    }
    held.sort_unstable();
    held.dedup();
    Ok(held)
}

/// An entry's type and major:minor, as far as the spec gives them.
struct Number<'a> {
    kind: Option<&'a str>,
    major: Option<u64>,
    minor: Option<u64>,
}

impl<'a> Number<'a> {
    fn of(entry: &'a Value) -> Number<'a> {
        Number {
            kind: field(entry, "type").and_then(Value::as_str),
            major: field(entry, "major").and_then(Value::as_u64),
            minor: field(entry, "minor").and_then(Value::as_u64),
        }
    }

    /// Whether this is `node`'s number. OCI's `u` (unbuffered) is a character device too.
    fn is(&self, node: &DeviceNode) -> bool {
        let kind_agrees = match node.kind {
            'c' => matches!(self.kind, Some("c" | "u")),
            k => self.kind.and_then(|s| s.chars().next()) == Some(k),
        };
        kind_agrees && self.major == Some(node.major) && self.minor == Some(node.minor)
    }

    fn shown(&self) -> String {
        let part = |n: Option<u64>| n.map_or("?".to_owned(), |n| n.to_string());
        format!(
            "{} {}:{}",
            self.kind.unwrap_or("?"),
            part(self.major),
            part(self.minor)
        )
    }
}

/// An entry's path as runc will create it: `.`, `..` and doubled slashes resolved.
fn entry_path(entry: &Value) -> Option<Cow<'_, Path>> {
    let text = field(entry, "path")?.as_str()?;
    // Docker's and our own entries are already clean: compared as they are, with no copy (every
    // create compares each node with each entry).
    if is_clean(text) {
        return Some(Cow::Borrowed(Path::new(text)));
    }
    let mut clean = PathBuf::from("/");
    for c in Path::new(text).components() {
        match c {
            Component::Normal(part) => clean.push(part),
            Component::ParentDir => {
                clean.pop();
            }
            _ => {}
        }
    }
    Some(Cow::Owned(clean))
}

/// Whether `path` is absolute, with no empty, `.` or `..` component and no trailing slash.
fn is_clean(path: &str) -> bool {
    path.as_bytes().strip_prefix(b"/").is_some_and(|rest| {
        rest.split(|&b| b == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b"..")
    })
}

/// The GPU minor `/dev/nvidiaN` names (`path` is an [`entry_path`]).
fn gpu_minor_of(path: &Path) -> Option<u64> {
    let name = path.to_str()?.strip_prefix("/dev/")?;
    if name.contains('/') {
        return None;
    }
    let digits = name.strip_prefix("nvidia")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The node an NVIDIA path names: the host's node at that path, else for `/dev/nvidiaN` the
/// driver's `c 195:N`. `None` for a path that is not NVIDIA's.
fn named_by(path: &Path, known: &[DeviceNode]) -> Option<DeviceNode> {
    if let Some(node) = known.iter().find(|n| same_path(path, &n.path)) {
        return Some(node.clone());
    }
    gpu_minor_of(path).map(|minor| DeviceNode {
        path: path.to_path_buf(),
        kind: 'c',
        major: NVIDIA_MAJOR,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
}

/// Refuses an entry at an NVIDIA node's path whose type or number is not that node's.
fn check_agrees(entry: &Value, known: &[DeviceNode]) -> Result<(), PlanError> {
    let Some(path) = entry_path(entry) else {
        return Ok(());
    };
    let Some(node) = named_by(&path, known) else {
        return Ok(());
    };
    let number = Number::of(entry);
    if number.is(&node) {
        return Ok(());
    }
    Err(PlanError::Contradicts {
        given: field(entry, "path")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        found: number.shown(),
        path: node.path.display().to_string(),
        expected: format!("{} {}:{}", node.kind, node.major, node.minor),
    })
}
