//! Choosing how the driver reaches a container (`devices.injection`), and what CDI gives the
//! GPUs it was assigned.
//!
//! `choose` runs before the placement lock: it loads the digest (rebuilding it where the specs
//! changed), checks that it covers every discovered GPU, and fills each device node's type and
//! numbers (from the inventory, which has already stat'ed the same nodes, else by `stat`). After
//! placement, `Resolved::for_gpus` is pure selection. It never decides GPUs and never touches
//! config.json.

use std::path::{Path, PathBuf};

use super::digest::{Digest, DigestError};
use super::edits::{ContainerEdits, Injected};
use super::nodes::{nodes_of, same_path, NodeMissing};
use super::select::{self, NotCovered};
use super::store::{self, Origin};
use super::text::checksum;
use crate::config::{DevicesSection, InjectionMode};
use crate::gpu::{DeviceNode, Inventory};

#[derive(Debug, thiserror::Error)]
pub enum CdiError {
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error("no CDI spec of kind nvidia.com/gpu in {dirs}")]
    NoSpec { dirs: String },
    #[error(transparent)]
    NotCovered(#[from] NotCovered),
    #[error(transparent)]
    NodeMissing(#[from] NodeMissing),
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
    // The mounts are moved in whole (the first block's Vec is taken as it is), then the later of
    // two with one destination is taken out again: rare, where moving each one is not.
    let mut at = out.mounts.len();
    seen.reserve(edits.mounts.len());
    if at == 0 {
        out.mounts = edits.mounts;
    } else {
        out.mounts.extend(edits.mounts);
    }
    while let Some(m) = out.mounts.get(at) {
        let key = checksum(m.container_path.as_bytes());
        let mut same = seen.iter().zip(&out.mounts).filter(|(k, _)| **k == key);
        if same.any(|(_, o)| o.container_path == m.container_path) {
            out.mounts.remove(at);
        } else {
            seen.push(key);
            at += 1;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdi::edits::CdiMount;

    #[test]
    fn a_digest_whose_edits_do_not_read_is_removed_and_rebuilt_by_the_next_create() {
        use crate::cdi::digest::fixtures::write;
        use crate::cdi::packed::tests::{body, seal};
        use crate::cdi::store::DIGEST_FILE;
        let (root, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let spec = "cdiVersion: 0.6.0\nkind: nvidia.com/gpu\ndevices:\n- name: \"0\"\n  \
                    containerEdits:\n    deviceNodes:\n    - {path: /dev/nvidia0}\n\
                    containerEdits:\n  mounts:\n  - {hostPath: /a, containerPath: /b}\n";
        write(root.path(), "etc/cdi/nvidia.yaml", spec);
        let inv = Inventory::synthetic(1);
        let resolved = resolve(root.path(), state.path(), &inv).unwrap();
        assert_eq!(resolved.origin, Origin::Rebuilt);
        let file = state.path().join(DIGEST_FILE);
        let bytes = std::fs::read(&file).unwrap();
        // The checksum holds, the keys are current, but the mount line is not one we write.
        std::fs::write(&file, seal(&body(&bytes).replace("m2:/a", "m9:/a"))).unwrap();
        let e = resolve(root.path(), state.path(), &inv).unwrap_err();
        assert!(e.to_string().contains("damaged"), "{e}");
        assert!(!file.exists());
        let resolved = resolve(root.path(), state.path(), &inv).unwrap();
        assert_eq!(resolved.origin, Origin::Rebuilt);
        assert_eq!(std::fs::read(&file).unwrap(), bytes);
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
            mounts: [
                "/usr/lib64/libcuda.so.1",
                "/usr/bin/nvidia-smi",
                "/usr/lib64/libcuda.so.1",
            ]
            .map(mount)
            .to_vec(),
            env: vec!["NVIDIA_VISIBLE_DEVICES=void".into()],
            ..ContainerEdits::default()
        };
        let ctl = inv.controls[0].clone();
        let gpu = |i: usize| {
            let node = inv.gpus[i].node.clone();
            let own = ContainerEdits {
                mounts: vec![mount("/usr/bin/nvidia-smi"), mount(&format!("/gpu{i}"))],
                ..ContainerEdits::default()
            };
            (i as u32, 0, own, vec![node, ctl.clone()])
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
        // A destination given twice, in one block or two, is mounted once: the first.
        let dests: Vec<_> = got
            .mounts
            .iter()
            .map(|m| m.container_path.as_str())
            .collect();
        assert_eq!(
            dests,
            [
                "/usr/lib64/libcuda.so.1",
                "/usr/bin/nvidia-smi",
                "/gpu2",
                "/gpu0"
            ]
        );
        assert_eq!(got.env.len(), 1);
    }
}
