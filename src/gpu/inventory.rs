//! The host's GPUs and NVIDIA control devices as plain data: what discovery fills and what
//! placement and the plan read. Nothing here looks at the host.

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
    /// The GPU's index as NVML and nvidia-smi count it: PCI bus order where the driver tells the
    /// bus ids, else the N of `/dev/nvidiaN`.
    pub index: u32,
    pub node: DeviceNode,
    pub info: GpuInfo,
}

/// What is known of a GPU beyond its device node; each source fills what it can.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GpuInfo {
    /// `GPU-xxxxxxxx-xxxx-...`.
    pub uuid: Option<String>,
    /// The model, e.g. `Tesla T4`.
    pub name: Option<String>,
    /// `0000:00:1e.0`.
    pub pci_bus_id: Option<String>,
    pub memory_total_bytes: Option<u64>,
    /// Free memory when NVML last looked (the cache the `gpu-share` commands keep): `spread`
    /// breaks ties with it.
    pub memory_free_bytes: Option<u64>,
}

/// Where the inventory came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    /// Device nodes only.
    #[default]
    Devfs,
    /// Device nodes and the driver's `/proc` entries.
    Procfs,
    /// NVML (the `gpu-share` commands, never the runtime's create path).
    Nvml,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Devfs => "devfs",
            Source::Procfs => "procfs",
            Source::Nvml => "nvml",
        }
    }
}

/// Everything the shim can hand to a container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Inventory {
    /// Sorted by index.
    pub gpus: Vec<Gpu>,
    /// `nvidiactl`, `nvidia-uvm`, ... : the ones that exist.
    pub controls: Vec<DeviceNode>,
    pub source: Source,
}

impl Inventory {
    /// A made-up host of `gpus` GPUs (nodes 195:N, UUIDs `GPU-0000000N-0000-4000-8000-00000000000N`,
    /// control devices when there is a GPU), for tests and benchmarks of the pure code.
    pub fn synthetic(gpus: u32) -> Inventory {
        let node = |path: String, major: u64, minor: u64| DeviceNode {
            path: PathBuf::from(path),
            kind: 'c',
            major,
            minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        };
        Inventory {
            gpus: (0..gpus)
                .map(|i| Gpu {
                    index: i,
                    node: node(format!("/dev/nvidia{i}"), 195, u64::from(i)),
                    info: GpuInfo {
                        uuid: Some(format!("GPU-{i:08x}-0000-4000-8000-{i:012x}")),
                        name: Some("Tesla T4".to_owned()),
                        pci_bus_id: Some(format!("0000:00:{:02x}.0", 0x1b + i)),
                        memory_total_bytes: Some(16 << 30),
                        memory_free_bytes: None,
                    },
                })
                .collect(),
            controls: if gpus > 0 {
                vec![
                    node("/dev/nvidiactl".into(), 195, 255),
                    node("/dev/nvidia-uvm".into(), 510, 0),
                ]
            } else {
                Vec::new()
            },
            source: Source::Procfs,
        }
    }

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
        let mut g = Inventory::synthetic(index + 1).gpus.remove(index as usize);
        g.index = index;
        g
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
