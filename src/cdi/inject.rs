//! Choosing how the driver reaches a container (`devices.injection`), and what CDI gives the
//! GPUs it was assigned.
//!
//! `choose` runs before the placement lock: it loads the digest (rebuilding it where the specs
//! changed), checks that it covers every discovered GPU, and fills each device node's type and
//! numbers (from the inventory, which has already stat'ed the same nodes, else by `stat`). After
//! placement, `Resolved::for_gpus` is pure selection. It never decides GPUs and never touches
//! config.json.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::digest::{Digest, DigestError};
use super::edits::{CdiNode, ContainerEdits, Injected};
use super::select::{self, NotCovered};
use super::store::{self, Origin};
use super::text::checksum;
use crate::config::{DevicesSection, InjectionMode};
use crate::gpu::{devfs, DeviceNode, Inventory};

#[derive(Debug, thiserror::Error)]
pub enum CdiError {
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error("no CDI spec of kind nvidia.com/gpu in {dirs}")]
    NoSpec { dirs: String },
    #[error(transparent)]
    NotCovered(#[from] NotCovered),
    #[error("CDI spec {spec}: device node {path} is not a device on this host ({host})")]
    NodeMissing {
        spec: String,
        path: String,
        host: String,
    },
}

/// Under `devices.injection = "cdi"`, CDI that cannot be used stops the create.
#[derive(Debug, thiserror::Error)]
#[error(
    "devices.injection = \"cdi\": {0}; fix the spec, or set devices.injection = \"auto\" to fall \
     back to the legacy hook"
)]
pub struct Required(pub CdiError);

/// How the driver reaches this create's container.
#[derive(Debug)]
pub enum Injection {
    /// NVIDIA's legacy hook; `why` says why not CDI, where `auto` fell back.
    Legacy {
        why: Option<String>,
    },
    Cdi(Resolved),
}

/// The digest's devices for every discovered GPU, with their nodes filled.
#[derive(Debug)]
pub struct Resolved {
    specs: Vec<(PathBuf, ContainerEdits, Vec<DeviceNode>)>,
    /// Per GPU index: its device's spec, its edits, its nodes.
    gpus: Vec<(u32, usize, ContainerEdits, Vec<DeviceNode>)>,
    pub origin: Origin,
}

/// The injection `devices.injection` asks for, on this inventory.
pub fn choose(
    devices: &DevicesSection,
    state_dir: &Path,
    inventory: &Inventory,
) -> Result<Injection, Required> {
    match devices.injection {
        InjectionMode::Legacy => Ok(Injection::Legacy { why: None }),
        InjectionMode::Cdi => resolve(&devices.root, state_dir, inventory)
            .map(Injection::Cdi)
            .map_err(Required),
        InjectionMode::Auto => Ok(resolve(&devices.root, state_dir, inventory).map_or_else(
            |e| Injection::Legacy {
                why: Some(e.to_string()),
            },
            Injection::Cdi,
        )),
    }
}

/// The digest for `root`'s specs, resolved for every GPU in `inventory`. Only the edits of the
/// specs and of the devices that cover a GPU are read out of the digest.
pub fn resolve(root: &Path, state_dir: &Path, inventory: &Inventory) -> Result<Resolved, CdiError> {
    let (digest, origin) = store::load(root, state_dir)?;
    if digest.specs.is_empty() {
        return Err(no_spec(root));
    }
    let covered = select::cover(&digest, inventory)?;
    let damaged = || CdiError::Digest(store::discard(state_dir));
    let mut specs = Vec::with_capacity(digest.specs.len());
    for (i, s) in digest.specs.iter().enumerate() {
        let edits = digest.spec_edits(i).ok_or_else(damaged)?;
        let nodes = nodes_of(&edits.device_nodes, &s.path, root, inventory)?;
        specs.push((s.path.clone(), edits, nodes));
    }
    let mut gpus = Vec::with_capacity(covered.len());
    let mut taken = vec![false; digest.devices.len()];
    for (index, at) in covered {
        // One device given for two GPUs is applied once, with the first.
        if std::mem::replace(&mut taken[at], true) {
            continue;
        }
        let spec = digest.devices[at].spec;
        let edits = digest.device_edits(at).ok_or_else(damaged)?;
        let nodes = nodes_of(&edits.device_nodes, &specs[spec].0, root, inventory)?;
        gpus.push((index, spec, edits, nodes));
    }
    Ok(Resolved {
        specs,
        gpus,
        origin,
    })
}

/// The error for a root with no NVIDIA spec, naming both directories.
pub fn no_spec(root: &Path) -> CdiError {
    let dirs: Vec<String> = Digest::dirs(root)
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    CdiError::NoSpec {
        dirs: dirs.join(" or "),
    }
}

impl Resolved {
    /// What CDI gives a container holding `gpus`: for each GPU, its spec's common edits (once
    /// per spec) then its device's, as CDI applies them; a node, mount or hook given twice is
    /// kept once. Also the first spec used, for the log. Consumes `self`: the edits are moved,
    /// not copied, on the create path.
    pub fn for_gpus(mut self, gpus: &[u32]) -> (Injected, PathBuf) {
        let mut out = Injected::default();
        let mut seen = Vec::new();
        let mut first: Option<usize> = None;
        let mut used = vec![false; self.specs.len()];
        for &index in gpus {
            let Some(at) = self.gpus.iter().position(|g| g.0 == index) else {
                continue;
            };
            let (_, spec, edits, nodes) = std::mem::take(&mut self.gpus[at]);
            if !used[spec] {
                used[spec] = true;
                first.get_or_insert(spec);
                let (_, common, common_nodes) = &mut self.specs[spec];
                let (common, common_nodes) = (std::mem::take(common), std::mem::take(common_nodes));
                add(&mut out, &mut seen, common, common_nodes);
            }
            add(&mut out, &mut seen, edits, nodes);
        }
        let spec = first
            .map(|i| std::mem::take(&mut self.specs[i].0))
            .unwrap_or_default();
        (out, spec)
    }
}

/// Adds what `out` does not have yet. `seen` holds a checksum of each mount destination in
/// `out`, so that dozens of driver mounts cost a compare of numbers each, not of paths.
fn add(out: &mut Injected, seen: &mut Vec<u64>, edits: ContainerEdits, nodes: Vec<DeviceNode>) {
    for n in nodes {
        if !out.nodes.iter().any(|o| same_path(&o.path, &n.path)) {
            out.nodes.push(n);
        }
    }
    for m in edits.mounts {
        let key = checksum(m.container_path.as_bytes());
        let mut same = seen.iter().zip(&out.mounts).filter(|(k, _)| **k == key);
        if !same.any(|(_, o)| o.container_path == m.container_path) {
            seen.push(key);
            out.mounts.push(m);
        }
    }
    for h in edits.hooks {
        if !out.hooks.contains(&h) {
            out.hooks.push(h);
        }
    }
    for e in edits.env {
        if !out.env.contains(&e) {
            out.env.push(e);
        }
    }
}

/// The spec's nodes with their type and numbers: what the spec gives, the rest from the host.
fn nodes_of(
    nodes: &[CdiNode],
    spec: &Path,
    root: &Path,
    inventory: &Inventory,
) -> Result<Vec<DeviceNode>, CdiError> {
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
) -> Result<DeviceNode, CdiError> {
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
            devfs::device_node(&host, container).ok_or_else(|| CdiError::NodeMissing {
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
fn same_path(a: &Path, b: &Path) -> bool {
    let (x, y) = (a.as_os_str().as_bytes(), b.as_os_str().as_bytes());
    x == y || (!(plain(x) && plain(y)) && a == b)
}

fn plain(p: &[u8]) -> bool {
    match p.split_first() {
        Some((b'/', rest)) => {
            !rest.is_empty() && rest.split(|&b| b == b'/').all(|c| !c.is_empty() && c != b".")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdi::edits::CdiMount;

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
    fn a_container_gets_its_gpus_devices_and_the_common_edits_once() {
        let inv = Inventory::synthetic(3);
        let mount = |p: &str| CdiMount {
            host_path: p.to_owned(),
            container_path: p.to_owned(),
            kind: None,
            options: Vec::new(),
        };
        let common = ContainerEdits {
            mounts: vec![mount("/usr/lib64/libcuda.so.1")],
            env: vec!["NVIDIA_VISIBLE_DEVICES=void".into()],
            ..ContainerEdits::default()
        };
        let ctl = inv.controls[0].clone();
        let gpu = |i: usize| {
            let node = inv.gpus[i].node.clone();
            (
                i as u32,
                0,
                ContainerEdits::default(),
                vec![node, ctl.clone()],
            )
        };
        let resolved = Resolved {
            specs: vec![("/var/run/cdi/nvidia.yaml".into(), common, vec![ctl.clone()])],
            gpus: vec![gpu(0), gpu(1), gpu(2)],
            origin: Origin::Current,
        };
        let (got, spec) = resolved.for_gpus(&[2, 0]);
        assert_eq!(spec, PathBuf::from("/var/run/cdi/nvidia.yaml"));
        let paths: Vec<_> = got
            .nodes
            .iter()
            .map(|n| n.path.display().to_string())
            .collect();
        assert_eq!(paths, ["/dev/nvidiactl", "/dev/nvidia2", "/dev/nvidia0"]);
        assert_eq!(got.mounts.len(), 1);
        assert_eq!(got.env.len(), 1);
    }
}
