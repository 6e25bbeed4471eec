//! The driver's view: `proc/driver/nvidia/gpus/<bus id>/information` under the root.
//!
//! Cheap to read (no device is opened, unlike NVML, whose first open of `/dev/nvidiaN` can take
//! seconds without persistence mode), and it gives what placement and UUID selection need: the
//! model, the UUID, the PCI bus id and the device minor.
//!
//! The GPUs are numbered by bus order, and the directory's name is the bus id, so an entry whose
//! `information` cannot be read still holds its place: the GPUs after it keep their indices, and
//! it is never given to a container (its minor, hence its device node, is unknown). This module
//! never guesses a minor.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::inventory::{Gpu, GpuInfo};

/// One GPU as the driver lists it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DriverEntry {
    pub name: Option<String>,
    pub uuid: Option<String>,
    pub pci_bus_id: String,
    pub minor: Option<u64>,
    /// Why `information` could not be read, where it could not: the entry then holds only its
    /// place in bus order.
    pub unreadable: Option<String>,
}

/// An `information` file is a few hundred bytes; more than this is not the driver's.
const MAX_INFORMATION_BYTES: usize = 64 * 1024;

/// Parses one `information` file; `dir_name` (the bus id) stands in for a missing `Bus Location`.
pub fn parse_information(text: &str, dir_name: &str) -> DriverEntry {
    let mut entry = DriverEntry {
        pci_bus_id: dir_name.to_owned(),
        ..DriverEntry::default()
    };
    // Byte by byte on ASCII separators (every create reads one of these per GPU): the keys and
    // separators are ASCII, so the splits below always fall on char boundaries.
    let mut start = 0;
    while start < text.len() {
        let rest = &text.as_bytes()[start..];
        let end = start + rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let line = &text[start..end];
        start = end + 1;
        let Some(colon) = line.bytes().position(|b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        if value.is_empty() {
            continue;
        }
        match line[..colon].trim_ascii() {
            "Model" => entry.name = Some(value.to_owned()),
            "GPU UUID" => entry.uuid = Some(value.to_owned()),
            "Bus Location" => entry.pci_bus_id = value.to_owned(),
            "Device Minor" => entry.minor = value.parse().ok(),
            _ => {}
        }
    }
    entry
}

/// Every GPU the driver lists, in PCI bus order (the order NVML and nvidia-smi number them),
/// readable or not.
pub fn read(root: &Path) -> Vec<DriverEntry> {
    let dir = root.join("proc/driver/nvidia/gpus");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found: Vec<DriverEntry> = entries
        .flatten()
        .map(|e| {
            let bus_id = e.file_name().to_string_lossy().into_owned();
            match read_information(&e.path().join("information")) {
                Ok(text) => parse_information(&text, &bus_id),
                Err(why) => DriverEntry {
                    pci_bus_id: bus_id,
                    unreadable: Some(why),
                    ..DriverEntry::default()
                },
            }
        })
        .collect();
    // Bus order, case aside, compared in place (a sort key would be a new string per compare).
    found.sort_by(|a, b| {
        a.pci_bus_id
            .bytes()
            .map(|c| c.to_ascii_lowercase())
            .cmp(b.pci_bus_id.bytes().map(|c| c.to_ascii_lowercase()))
    });
    found
}

/// One `information` file's text. Opened without blocking, so a FIFO in its place cannot hang a
/// create, and read only if it is a regular file.
fn read_information(path: &Path) -> Result<String, String> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| e.to_string())?;
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Err("not a regular file".to_owned());
    }
    // Room for the whole file up front: a /proc file has no size to go by.
    let bytes = crate::read_whole::read_to_end(&mut file, 4096, MAX_INFORMATION_BYTES)
        .map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|_| "not valid UTF-8".to_owned())
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

    /// Reads the driver's entries under `root` on a thread; `None` if that does not end.
    fn read_within_five_seconds(root: &Path) -> Option<Vec<DriverEntry>> {
        let root = root.to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(read(&root)));
        rx.recv_timeout(std::time::Duration::from_secs(5)).ok()
    }

    #[test]
    fn an_unreadable_entry_holds_its_place_in_bus_order() {
        let root = tempfile::tempdir().unwrap();
        let gpus = root.path().join("proc/driver/nvidia/gpus");
        for (minor, bus) in [
            (0, "0000:00:1b.0"),
            (1, "0000:00:1c.0"),
            (2, "0000:00:1d.0"),
        ] {
            std::fs::create_dir_all(gpus.join(bus)).unwrap();
            let text = T4
                .replace("0000:00:1e.0", bus)
                .replace("Minor: \t 0", &format!("Minor: \t {minor}"));
            std::fs::write(gpus.join(bus).join("information"), text).unwrap();
        }
        // A FIFO with no writer: opening it to read would wait for ever.
        let info = gpus.join("0000:00:1c.0/information");
        std::fs::remove_file(&info).unwrap();
        nix::unistd::mkfifo(&info, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let entries = read_within_five_seconds(root.path()).expect("read waited on a FIFO");
        let got: Vec<(&str, Option<u64>)> = entries
            .iter()
            .map(|e| (e.pci_bus_id.as_str(), e.minor))
            .collect();
        assert_eq!(
            got,
            [
                ("0000:00:1b.0", Some(0)),
                ("0000:00:1c.0", None),
                ("0000:00:1d.0", Some(2))
            ]
        );
        assert!(entries[1].unreadable.is_some());
        let gpus = join(entries, &Inventory::synthetic(3).gpus);
        let got: Vec<(u32, u64)> = gpus.iter().map(|g| (g.index, g.node.minor)).collect();
        assert_eq!(got, vec![(0, 0), (2, 2)]);
    }
}
