//! Discovery from device nodes: `dev/nvidia[0-9]+` and the control devices, under a root.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::inventory::{DeviceNode, Gpu, GpuInfo, Inventory};
use super::procfs::DriverEntry;

/// Control devices a CUDA program needs beside its GPU nodes, in the order they are injected.
pub const CONTROL_DEVICES: &[&str] = &[
    "nvidiactl",
    "nvidia-uvm",
    "nvidia-uvm-tools",
    "nvidia-modeset",
];

#[derive(Debug, thiserror::Error)]
#[error("cannot list {dir}: {source}")]
pub struct DiscoveryError {
    dir: String,
    source: io::Error,
}

/// The N of a `nvidiaN` name, if it is one.
pub fn gpu_index(file_name: &str) -> Option<u32> {
    let digits = file_name.strip_prefix("nvidia")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // "nvidia00" is not a name the driver makes; refusing it keeps index <-> name one to one.
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

/// Reads one device node; `None` when it is missing or not a device.
pub fn device_node(host_path: &Path, container_path: PathBuf) -> Option<DeviceNode> {
    let meta = std::fs::metadata(host_path).ok()?;
    let ft = meta.file_type();
    let kind = if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else {
        return None;
    };
    let rdev = meta.rdev();
    Some(DeviceNode {
        path: container_path,
        kind,
        major: libc::major(rdev) as u64,
        minor: libc::minor(rdev) as u64,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
    })
}

/// The device nodes of the GPUs `entries` name, each found as `dev/nvidia<minor>` with that
/// minor, and the control devices: what [`discover`] would give for them, without listing
/// `dev/`. `None` where a readable entry's node is not there under that name.
pub fn nodes_named_for(root: &Path, entries: &[DriverEntry]) -> Option<Inventory> {
    let dev = root.join("dev");
    let mut gpus = Vec::with_capacity(entries.len());
    for minor in entries
        .iter()
        .filter(|e| e.unreadable.is_none())
        .map(|e| e.minor)
    {
        let index = u32::try_from(minor?).ok()?;
        let name = format!("nvidia{index}");
        let node = device_node(&dev.join(&name), Path::new("/dev").join(&name))?;
        if node.minor != u64::from(index) || gpus.iter().any(|g: &Gpu| g.index == index) {
            return None;
        }
        gpus.push(gpu(index, node));
    }
    Some(inventory(&dev, gpus))
}

fn gpu(index: u32, node: DeviceNode) -> Gpu {
    Gpu {
        index,
        node,
        info: GpuInfo::default(),
    }
}

/// The GPUs found in `dev`, in index order, and the control devices there.
fn inventory(dev: &Path, mut gpus: Vec<Gpu>) -> Inventory {
    gpus.sort_by_key(|g| g.index);
    let controls = CONTROL_DEVICES
        .iter()
        .filter_map(|name| device_node(&dev.join(name), Path::new("/dev").join(name)))
        .collect();
    Inventory {
        gpus,
        controls,
        source: Default::default(),
    }
}

/// Scans `root/dev`. A root without `dev/` is a host without NVIDIA devices, not an error.
pub fn discover(root: &Path) -> Result<Inventory, DiscoveryError> {
    let dev = root.join("dev");
    let entries = match std::fs::read_dir(&dev) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Inventory::default()),
        Err(source) => {
            return Err(DiscoveryError {
                dir: dev.display().to_string(),
                source,
            })
        }
    };
    let mut gpus = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(index) = name.to_str().and_then(gpu_index) else {
            continue;
        };
        let container_path = Path::new("/dev").join(&name);
        if let Some(node) = device_node(&entry.path(), container_path) {
            gpus.push(gpu(index, node));
        }
    }
    Ok(inventory(&dev, gpus))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_names_are_recognised() {
        assert_eq!(gpu_index("nvidia0"), Some(0));
        assert_eq!(gpu_index("nvidia15"), Some(15));
        assert_eq!(gpu_index("nvidiactl"), None);
        assert_eq!(gpu_index("nvidia-uvm"), None);
        assert_eq!(gpu_index("nvidia"), None);
        assert_eq!(gpu_index("nvidia01"), None);
        assert_eq!(gpu_index("nvidia0x"), None);
        assert_eq!(gpu_index("nvidia99999999999"), None);
    }

    #[test]
    fn root_without_dev_has_no_gpus() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(discover(dir.path()).unwrap(), Inventory::default());
    }

    #[test]
    fn regular_files_are_not_devices() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("dev")).unwrap();
        std::fs::write(dir.path().join("dev/nvidia0"), b"").unwrap();
        std::fs::write(dir.path().join("dev/nvidiactl"), b"").unwrap();
        assert_eq!(discover(dir.path()).unwrap(), Inventory::default());
    }
}
