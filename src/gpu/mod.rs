//! What GPUs and NVIDIA control devices this host has.
//!
//! `Inventory` is plain data; `devfs` fills it from a `dev/` directory under a configurable root
//! (`/` on a real host, a temp dir with `mknod`'d nodes in tests).

pub mod devfs;

use std::path::PathBuf;

/// A device node as the host has it, to be recreated inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    /// Path inside the container, e.g. `/dev/nvidia0`.
    pub path: PathBuf,
    /// `'c'` (character) or `'b'` (block).
    pub kind: char,
    pub major: u64,
    pub minor: u64,
    /// Permission bits, as `stat` reports them.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// One GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    /// The N of `/dev/nvidiaN`.
    pub index: u32,
    pub node: DeviceNode,
}

/// Everything the shim can hand to a container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Inventory {
    /// Sorted by index.
    pub gpus: Vec<Gpu>,
    /// `nvidiactl`, `nvidia-uvm`, ... : the ones that exist.
    pub controls: Vec<DeviceNode>,
}

impl Inventory {
    pub fn gpu(&self, index: u32) -> Option<&Gpu> {
        self.gpus.iter().find(|g| g.index == index)
    }

    /// "GPUs 0-3", "GPUs 0, 2", "no GPU": for error messages.
    pub fn describe_gpus(&self) -> String {
        let idx: Vec<u32> = self.gpus.iter().map(|g| g.index).collect();
        match idx.as_slice() {
            [] => "no NVIDIA GPU".to_owned(),
            [only] => format!("GPUs {only}-{only}"),
            [first, .., last] if (*last - *first) as usize + 1 == idx.len() => {
                format!("GPUs {first}-{last}")
            }
            _ => format!(
                "GPUs {}",
                idx.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(index: u32) -> Gpu {
        Gpu {
            index,
            node: DeviceNode {
                path: PathBuf::from(format!("/dev/nvidia{index}")),
                kind: 'c',
                major: 195,
                minor: index as u64,
                mode: 0o666,
                uid: 0,
                gid: 0,
            },
        }
    }

    #[test]
    fn describes_ranges_and_gaps() {
        let mut inv = Inventory::default();
        assert_eq!(inv.describe_gpus(), "no NVIDIA GPU");
        inv.gpus = vec![gpu(0)];
        assert_eq!(inv.describe_gpus(), "GPUs 0-0");
        inv.gpus = vec![gpu(0), gpu(1), gpu(2), gpu(3)];
        assert_eq!(inv.describe_gpus(), "GPUs 0-3");
        inv.gpus = vec![gpu(0), gpu(2)];
        assert_eq!(inv.describe_gpus(), "GPUs 0, 2");
    }
}
