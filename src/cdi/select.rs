//! Which CDI device is which GPU: NVIDIA's naming strategies (`--device-name-strategy` uuid,
//! index, type-index: `GPU-…`, `0`, `gpu0`), and whether a digest covers every GPU discovered.
//!
//! Pure: a digest and an inventory in, an answer out. A device is taken for a GPU only where
//! its device nodes include that GPU's node, so a spec written before the GPUs were renumbered
//! is stale, not silently wrong.

use super::packed::Packed;
use crate::decimal::{decimal, MAX_DIGITS};
use crate::gpu::{Gpu, Inventory};

/// A discovered GPU the spec gives no (or a wrong) device for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("GPU {index} ({uuid}, {node}) has no device in the CDI spec {detail}")]
pub struct NotCovered {
    pub index: u32,
    pub uuid: String,
    pub node: String,
    /// What was looked for, and where.
    pub detail: String,
}

/// The names NVIDIA's strategies give `gpu`, most specific first (for the error; the lookup
/// below compares without building them).
fn names(gpu: &Gpu) -> impl Iterator<Item = String> + '_ {
    let uuid = gpu.info.uuid.clone();
    uuid.into_iter()
        .chain([gpu.index.to_string(), format!("gpu{}", gpu.index)])
}

/// The device the digest gives for `gpu` (its position in `digest.devices`): by UUID, else
/// index, else type-index; and only one whose nodes include the GPU's own.
pub fn device_for(digest: &Packed, gpu: &Gpu) -> Option<usize> {
    let node = gpu.node.path.to_str()?;
    let mut buf = [0u8; MAX_DIGITS];
    let index = decimal(u64::from(gpu.index), &mut buf);
    let named = |is: &dyn Fn(&str) -> bool| {
        digest
            .devices
            .iter()
            .position(|d| is(&d.name))
            .filter(|&i| digest.gives_node(i, node))
    };
    let uuid = gpu.info.uuid.as_deref();
    uuid.and_then(|u| named(&|n| n == u))
        .or_else(|| named(&|n| n == index))
        .or_else(|| named(&|n| n.strip_prefix("gpu") == Some(index)))
}

/// Every discovered GPU's index and device (its position in `digest.devices`), in inventory
/// order; the first GPU without one is the error.
pub fn cover(digest: &Packed, inventory: &Inventory) -> Result<Vec<(u32, usize)>, NotCovered> {
    inventory
        .gpus
        .iter()
        .map(|g| {
            device_for(digest, g).map(|d| (g.index, d)).ok_or_else(|| {
                let tried: Vec<String> = names(g).map(|n| format!("{n:?}")).collect();
                let specs: Vec<String> = digest
                    .specs
                    .iter()
                    .map(|s| s.path.display().to_string())
                    .collect();
                NotCovered {
                    index: g.index,
                    uuid: g
                        .info
                        .uuid
                        .clone()
                        .unwrap_or_else(|| "UUID unknown".to_owned()),
                    node: g.node.path.display().to_string(),
                    detail: format!(
                        "{} (looked for {} with {}): the spec is stale; regenerate it \
                         (nvidia-ctk cdi generate, or restart nvidia-cdi-refresh)",
                        specs.join(", "),
                        tried.join(" or "),
                        g.node.path.display()
                    ),
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdi::digest::{Digest, DigestDevice, DigestSpec};
    use crate::cdi::edits::{CdiNode, ContainerEdits};
    use crate::cdi::packed::{encode, Packed};

    fn device(name: &str, node: &str) -> DigestDevice {
        DigestDevice {
            name: name.to_owned(),
            spec: 0,
            edits: ContainerEdits {
                device_nodes: vec![CdiNode {
                    path: node.to_owned(),
                    ..CdiNode::default()
                }],
                ..ContainerEdits::default()
            },
        }
    }

    fn digest(devices: Vec<DigestDevice>) -> Packed {
        let digest = Digest {
            specs: vec![DigestSpec {
                path: "/etc/cdi/nvidia.yaml".into(),
                edits: ContainerEdits::default(),
            }],
            devices,
            ..Digest::default()
        };
        Packed::parse(encode(&digest).bytes).unwrap()
    }

    #[test]
    fn gpus_are_found_by_uuid_index_or_type_index() {
        let inv = Inventory::synthetic(3);
        let uuid1 = inv.gpus[1].info.uuid.clone().unwrap();
        let d = digest(vec![
            device("0", "/dev/nvidia0"),
            device(&uuid1, "/dev/nvidia1"),
            device("gpu2", "/dev/nvidia2"),
        ]);
        let covered = cover(&d, &inv).unwrap();
        let names: Vec<&str> = covered
            .iter()
            .map(|&(_, i)| d.devices[i].name.as_str())
            .collect();
        assert_eq!(names, ["0", uuid1.as_str(), "gpu2"]);
        // The index is compared whole: "gpu12" and "01" are not GPU 1 or 2.
        let d = digest(vec![
            device("01", "/dev/nvidia1"),
            device("gpu12", "/dev/nvidia1"),
        ]);
        assert_eq!(device_for(&d, &inv.gpus[1]), None);
    }

    #[test]
    fn a_gpu_without_its_device_is_named() {
        let inv = Inventory::synthetic(2);
        let e = cover(&digest(vec![device("0", "/dev/nvidia0")]), &inv).unwrap_err();
        assert_eq!(e.index, 1);
        assert!(e.to_string().contains("GPU 1"), "{e}");
        assert!(e.to_string().contains("/etc/cdi/nvidia.yaml"), "{e}");
        // A device named for the GPU but giving another GPU's node does not cover it.
        let e = cover(
            &digest(vec![
                device("0", "/dev/nvidia1"),
                device("1", "/dev/nvidia1"),
            ]),
            &inv,
        )
        .unwrap_err();
        assert_eq!(e.index, 0);
    }
}
