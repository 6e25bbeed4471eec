//! The driver's view: `proc/driver/nvidia/gpus/<bus id>/information` under the root.
//!
//! Cheap to read (no device is opened, unlike NVML, whose first open of `/dev/nvidiaN` can take
//! seconds without persistence mode), and it gives what placement and UUID selection need: the
//! model, the UUID, the PCI bus id and the device minor.

use std::path::Path;

use super::inventory::{Gpu, GpuInfo};

/// One GPU as the driver lists it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DriverEntry {
    pub name: Option<String>,
    pub uuid: Option<String>,
    pub pci_bus_id: String,
    pub minor: Option<u64>,
}

/// Parses one `information` file; `dir_name` (the bus id) stands in for a missing `Bus Location`.
pub fn parse_information(text: &str, dir_name: &str) -> DriverEntry {
    let mut entry = DriverEntry {
        pci_bus_id: dir_name.to_owned(),
        ..DriverEntry::default()
    };
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        match key.trim() {
            "Model" => entry.name = Some(value.to_owned()),
            "GPU UUID" => entry.uuid = Some(value.to_owned()),
            "Bus Location" => entry.pci_bus_id = value.to_owned(),
            "Device Minor" => entry.minor = value.parse().ok(),
            _ => {}
        }
    }
    entry
}

/// Every GPU the driver lists, in PCI bus order (the order NVML and nvidia-smi number them).
pub fn read(root: &Path) -> Vec<DriverEntry> {
    let dir = root.join("proc/driver/nvidia/gpus");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found: Vec<DriverEntry> = entries
        .flatten()
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path().join("information")).ok()?;
            Some(parse_information(&text, &e.file_name().to_string_lossy()))
        })
        .collect();
    found.sort_by_key(|e| e.pci_bus_id.to_ascii_lowercase());
    found
}

/// Joins driver entries to device nodes by minor number. Indices follow the driver's order, so
/// a GPU whose node is missing (not injectable) still keeps the others' indices right.
pub fn join(entries: Vec<DriverEntry>, nodes: &[Gpu]) -> Vec<Gpu> {
    entries
        .into_iter()
        .enumerate()
        .filter_map(|(index, e)| {
            let minor = e.minor?;
            let node = nodes.iter().find(|g| g.node.minor == minor)?.node.clone();
            Some(Gpu {
                index: index as u32,
                node,
                info: GpuInfo {
                    uuid: e.uuid,
                    name: e.name,
                    pci_bus_id: Some(e.pci_bus_id),
                    memory_total_bytes: None,
                    memory_free_bytes: None,
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::Inventory;

    const T4: &str = "Model: \t\t Tesla T4\nIRQ:   \t\t 32\nGPU UUID: \t GPU-1d4a6c7e-5b3f-2a19-8e07-6c5d4b3a2910\nVideo BIOS: \t 90.04.38.00.03\nBus Type: \t PCIe\nDMA Size: \t 47 bits\nDMA Mask: \t 0x7fffffffffff\nBus Location: \t 0000:00:1e.0\nDevice Minor: \t 0\nGPU Excluded:\t No\n";

    #[test]
    fn information_file_is_read() {
        let e = parse_information(T4, "0000:00:1e.0");
        assert_eq!(e.name.as_deref(), Some("Tesla T4"));
        assert_eq!(
            e.uuid.as_deref(),
            Some("GPU-1d4a6c7e-5b3f-2a19-8e07-6c5d4b3a2910")
        );
        assert_eq!(e.pci_bus_id, "0000:00:1e.0");
        assert_eq!(e.minor, Some(0));
    }

    #[test]
    fn join_numbers_by_bus_order_and_skips_missing_nodes() {
        let nodes = Inventory::synthetic(4).gpus;
        let entries = vec![
            DriverEntry {
                pci_bus_id: "0000:00:1b.0".into(),
                minor: Some(3),
                ..Default::default()
            },
            DriverEntry {
                pci_bus_id: "0000:00:1c.0".into(),
                minor: Some(9),
                ..Default::default()
            },
            DriverEntry {
                pci_bus_id: "0000:00:1d.0".into(),
                minor: Some(0),
                ..Default::default()
            },
        ];
        let gpus = join(entries, &nodes);
        let got: Vec<(u32, u64)> = gpus.iter().map(|g| (g.index, g.node.minor)).collect();
        assert_eq!(got, vec![(0, 3), (2, 0)]);
    }
}
