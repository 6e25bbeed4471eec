//! runc's own record of its containers, `<root>/<id>/state.json`: which live containers hold
//! which of the host's GPUs. It is the truth a corrupt placement state is rebuilt from.
//!
//! Owns reading runc's state files. It never writes under a runc root, and a container whose
//! state it cannot read holds nothing here (runc itself would not know it either).

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::gpu::Inventory;

/// runc's state files are tens of KiB; a larger one is not read.
const MAX_STATE_BYTES: u64 = 4 << 20;

/// A live container that holds GPUs, as runc records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    pub id: String,
    /// The root it was found under, as given.
    pub root: String,
    /// Inventory indices, sorted.
    pub gpus: Vec<u32>,
    /// When runc created it.
    pub created: String,
}

/// Every container under `roots` whose device nodes include the host's GPUs. A root that does
/// not exist holds none.
pub fn holding_gpus(roots: &[PathBuf], inventory: &Inventory) -> Vec<Live> {
    let mut found = Vec::new();
    for root in roots {
        let Ok(entries) = std::fs::read_dir(root) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(id) = entry.file_name().into_string() else {
                continue;
            };
            let Some(state) = read(&entry.path().join("state.json")) else {
                continue;
            };
            let gpus = gpus_of(&state, inventory);
            if gpus.is_empty() {
                continue;
            }
            found.push(Live {
                id,
                root: root.display().to_string(),
                gpus,
                created: state
                    .get("created")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
    }
    found.sort_by(|a, b| (&a.root, &a.id).cmp(&(&b.root, &b.id)));
    found
}

fn read(path: &Path) -> Option<Value> {
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_STATE_BYTES).read_to_end(&mut bytes).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The GPUs among the container's device nodes (`config.devices`, the nodes runc made), by
/// type and major:minor, mapped to indices through the inventory: the path inside the container
/// is the spec's choice, the number is what the kernel opens.
fn gpus_of(state: &Value, inventory: &Inventory) -> Vec<u32> {
    let Some(devices) = state
        .get("config")
        .and_then(|c| c.get("devices"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    let mut gpus: Vec<u32> = devices
        .iter()
        .filter(|d| is_char_device(d))
        .filter_map(|d| {
            let major = d.get("major").and_then(Value::as_u64)?;
            let minor = d.get("minor").and_then(Value::as_u64)?;
            inventory
                .gpus
                .iter()
                .find(|g| g.node.kind == 'c' && g.node.major == major && g.node.minor == minor)
                .map(|g| g.index)
        })
        .collect();
    gpus.sort_unstable();
    gpus.dedup();
    gpus
}

/// runc keeps a node's type as a Go rune (`'c'` is 99); a string is taken too.
fn is_char_device(device: &Value) -> bool {
    match device.get("type") {
        Some(Value::String(s)) => s == "c" || s == "u",
        Some(n) => matches!(n.as_u64(), Some(99 | 117)),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write_state(root: &Path, id: &str, devices: Value) {
        let dir = root.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let state = json!({
            "id": id,
            "init_process_pid": 4242,
            "init_process_start": 777,
            "created": "2026-11-25T11:03:57.710497059Z",
            "config": {"devices": devices, "labels": ["bundle=/b"]}
        });
        std::fs::write(dir.join("state.json"), state.to_string()).unwrap();
    }

    fn dev(path: &str, kind: u64, major: u64, minor: u64) -> Value {
        json!({"type": kind, "major": major, "minor": minor, "permissions": "rwm", "allow": true, "path": path})
    }

    #[test]
    fn live_containers_hold_the_gpus_their_nodes_are_by_number() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("runc");
        // Bus order is not minor order: index 0 is minor 1.
        let mut inv = Inventory::synthetic(2);
        inv.gpus[0].node.minor = 1;
        inv.gpus[1].node.minor = 0;
        write_state(
            &root,
            "one",
            json!([
                dev("/dev/null", 99, 1, 3),
                dev("/dev/nvidia1", 99, 195, 1),
                dev("/dev/nvidiactl", 99, 195, 255)
            ]),
        );
        write_state(
            &root,
            "renamed",
            json!([dev("/dev/gpu", 99, 195, 0), dev("/dev/b", 98, 195, 1)]),
        );
        write_state(&root, "none", json!([dev("/dev/null", 99, 1, 3)]));
        std::fs::create_dir_all(root.join("broken")).unwrap();
        std::fs::write(root.join("broken/state.json"), b"{").unwrap();
        let live = holding_gpus(&[root.clone(), dir.path().join("absent")], &inv);
        let root = root.display().to_string();
        assert_eq!(
            live,
            [
                Live {
                    id: "one".into(),
                    root: root.clone(),
                    gpus: vec![0],
                    created: "2026-11-25T11:03:57.710497059Z".into(),
                },
                Live {
                    id: "renamed".into(),
                    root,
                    gpus: vec![1],
                    created: "2026-11-25T11:03:57.710497059Z".into(),
                },
            ]
        );
    }
}
