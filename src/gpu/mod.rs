//! What GPUs and NVIDIA control devices this host has.
//!
//! `Inventory` is plain data. `discover` fills it without NVML, fast enough for every create:
//! device nodes from `dev/` and, where the driver is loaded, UUID, model, PCI bus id and minor
//! from `proc/driver/nvidia/gpus/*/information`, both under a configurable root (`/` on a real
//! host, a temp dir with `mknod`'d nodes in tests).

pub mod cache;
pub mod devfs;
mod inventory;
pub mod nvml;
pub mod procfs;

use std::path::Path;

pub use inventory::{DeviceNode, Gpu, GpuInfo, Inventory, Source};

/// Discovery without NVML: the `/proc` driver entries joined to the device nodes by minor
/// number where the driver has them, else the device nodes alone. An entry that cannot be read
/// keeps its place (the others keep their indices); where none can be read, the device nodes
/// alone answer, as on a host without the entries.
///
/// Where the driver names every minor, each GPU's node is looked up as `dev/nvidia<minor>` (the
/// name the driver and NVIDIA's toolkit give it) instead of listing `dev/`, which holds
/// hundreds of entries on a real host; any node not found so falls back to the listing.
pub fn discover(root: &Path) -> Result<Inventory, devfs::DiscoveryError> {
    let entries = procfs::read(root);
    if !entries.iter().any(|e| e.unreadable.is_none()) {
        return devfs::discover(root);
    }
    let mut inventory = match devfs::nodes_named_for(root, &entries) {
        Some(named) => named,
        None => devfs::discover(root)?,
    };
    inventory.gpus = procfs::join(entries, &inventory.gpus);
    inventory.source = Source::Procfs;
    Ok(inventory)
}
