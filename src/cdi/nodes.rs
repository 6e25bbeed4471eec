//! A CDI device node's type and numbers: what the spec gives, else the node discovery already
//! stat'ed (the inventory's), else the host's node, stat'ed now.
//!
//! Reads the host only for nodes neither the spec nor the inventory gives. Never decides which
//! nodes a container gets (`inject` does) and never touches config.json.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::edits::CdiNode;
use crate::gpu::{devfs, DeviceNode, Inventory};

/// A spec's node that is not a device on this host.
#[derive(Debug, thiserror::Error)]
#[error("CDI spec {spec}: device node {path} is not a device on this host ({host})")]
pub struct NodeMissing {
    pub spec: String,
    pub path: String,
    pub host: String,
}

/// The spec's nodes with their type and numbers: what the spec gives, the rest from the host.
pub fn nodes_of(
    nodes: &[CdiNode],
    spec: &Path,
    root: &Path,
    inventory: &Inventory,
) -> Result<Vec<DeviceNode>, NodeMissing> {
    nodes
        .iter()
        .map(|n| node(n, spec, root, inventory))
        .collect()
}

fn node(
    n: &CdiNode,
    spec: &Path,
    root: &Path,
    inventory: &Inventory,
) -> Result<DeviceNode, NodeMissing> {
    let relative = n.path.trim_start_matches('/');
    // The node discovery stat'ed already, where the spec's host node is the one under `root`.
    let discovered = n
        .host_path
        .as_deref()
        .is_none_or(|h| joins(h, root, relative) || Path::new(h) == root.join(relative));
    let known = inventory
        .gpus
        .iter()
        .map(|g| &g.node)
        .chain(&inventory.controls)
        .find(|d| discovered && same_path(Path::new(&n.path), &d.path));
    let given = n.kind.is_some() && n.major.is_some() && n.minor.is_some();
    let mut d = match known {
        Some(d) => d.clone(),
        None if given => DeviceNode {
            path: PathBuf::from(&n.path),
            kind: 'c',
            major: 0,
            minor: 0,
            mode: 0o666,
            uid: 0,
            gid: 0,
        },
        None => {
            let host = n
                .host_path
                .as_ref()
                .map_or_else(|| root.join(relative), PathBuf::from);
            let container = PathBuf::from(&n.path);
            devfs::device_node(&host, container).ok_or_else(|| NodeMissing {
                spec: spec.display().to_string(),
                path: n.path.clone(),
                host: host.display().to_string(),
            })?
        }
    };
    if let Some(kind) = n.kind.as_deref().and_then(|k| k.chars().next()) {
        d.kind = if kind == 'b' { 'b' } else { 'c' };
    }
    d.major = n.major.unwrap_or(d.major);
    d.minor = n.minor.unwrap_or(d.minor);
    d.mode = n.file_mode.map_or(d.mode, |m| m & 0o7777);
    d.uid = n.uid.unwrap_or(d.uid);
    d.gid = n.gid.unwrap_or(d.gid);
    Ok(d)
}

/// Whether `path` is `root` joined with `relative`, byte for byte (`Path::join`'s result
/// without building it); where not, the caller compares by components.
fn joins(path: &str, root: &Path, relative: &str) -> bool {
    let root = root.as_os_str().as_bytes();
    let Some(rest) = path.as_bytes().strip_prefix(root) else {
        return false;
    };
    let rest = match root.last() {
        Some(b'/') => Some(rest),
        _ => rest.strip_prefix(b"/"),
    };
    rest == Some(relative.as_bytes())
}

/// `Path`'s equality (by components) of `a` and `b`, compared as bytes where that gives the
/// same answer: both absolute, with no empty or `.` component and no trailing slash.
pub fn same_path(a: &Path, b: &Path) -> bool {
    let (x, y) = (a.as_os_str().as_bytes(), b.as_os_str().as_bytes());
    x == y || (!(plain(x) && plain(y)) && a == b)
}

fn plain(p: &[u8]) -> bool {
    // One pass: after a slash (0), after a slash and a dot (1), inside a component (2).
    let Some((b'/', rest)) = p.split_first() else {
        return false;
    };
    let mut state = 0u8;
    for &b in rest {
        state = match (b, state) {
            (b'/', 2) => 0,
            (b'/', _) => return false,
            (b'.', 0) => 1,
            _ => 2,
        };
    }
    state == 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cdi_node(path: &str) -> CdiNode {
        CdiNode {
            path: path.to_owned(),
            ..CdiNode::default()
        }
    }

    #[test]
    fn nodes_come_from_the_inventory_the_spec_or_the_host() {
        let inv = Inventory::synthetic(2);
        let root = Path::new("/nonexistent-root");
        let spec = Path::new("/etc/cdi/nvidia.yaml");
        // Discovered already: no stat, the inventory's numbers.
        let n = node(&cdi_node("/dev/nvidia-uvm"), spec, root, &inv).unwrap();
        assert_eq!((n.major, n.minor), (510, 0));
        // Given whole by the spec: no stat either.
        let given = CdiNode {
            kind: Some("c".into()),
            major: Some(508),
            minor: Some(1),
            file_mode: Some(0o100640),
            ..cdi_node("/dev/nvidia-caps/nvidia-cap1")
        };
        let n = node(&given, spec, root, &inv).unwrap();
        assert_eq!((n.kind, n.major, n.minor, n.mode), ('c', 508, 1, 0o640));
        // Neither: the host's node, which is not there.
        let e = node(&cdi_node("/dev/nvidia-caps/nvidia-cap2"), spec, root, &inv).unwrap_err();
        assert!(
            e.to_string().contains("/dev/nvidia-caps/nvidia-cap2"),
            "{e}"
        );
    }

    #[test]
    fn paths_compare_as_path_does() {
        let paths = [
            "/dev/nvidia0",
            "/dev//nvidia0",
            "/dev/./nvidia0",
            "/dev/nvidia0/",
            "/dev/nvidia0/.",
            "dev/nvidia0",
            "/dev/../dev/nvidia0",
            "/dev/.nvidia0",
            "/",
            "",
        ];
        for a in paths {
            for b in paths {
                let (a, b) = (Path::new(a), Path::new(b));
                assert_eq!(same_path(a, b), a == b, "{a:?} {b:?}");
            }
        }
        assert!(joins(
            "/host/dev/nvidia0",
            Path::new("/host"),
            "dev/nvidia0"
        ));
        assert!(joins(
            "/host/dev/nvidia0",
            Path::new("/host/"),
            "dev/nvidia0"
        ));
        assert!(!joins(
            "/hostdev/nvidia0",
            Path::new("/host"),
            "dev/nvidia0"
        ));
    }
}
