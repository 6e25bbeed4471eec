//! The driver's side of `doctor`: device nodes, `/proc/driver/nvidia`, NVML and
//! nvidia-persistenced. Read-only, like every check.

use std::path::Path;

use super::report::{check, Check, Status};
use crate::config::Config;
use crate::gpu::{self, devfs::CONTROL_DEVICES};
use crate::host;

pub(crate) fn driver_devices(config: &Config) -> Check {
    let root = &config.devices.root;
    match gpu::devfs::discover(root) {
        Ok(inv) if inv.gpus.is_empty() => check(
            Status::Fail,
            "driver devices",
            format!(
                "no /dev/nvidiaN under {}: is the NVIDIA driver loaded?",
                root.display()
            ),
        ),
        Ok(inv) => {
            let missing: Vec<&str> = CONTROL_DEVICES
                .iter()
                .copied()
                .filter(|c| !inv.controls.iter().any(|n| n.path.ends_with(c)))
                .collect();
            let gpus = format!("{} GPU node(s)", inv.gpus.len());
            if missing.contains(&"nvidiactl") {
                check(
                    Status::Fail,
                    "driver devices",
                    format!("{gpus}, but no /dev/nvidiactl"),
                )
            } else if missing.is_empty() {
                check(
                    Status::Ok,
                    "driver devices",
                    format!("{gpus}, all control devices"),
                )
            } else {
                check(
                    Status::Warn,
                    "driver devices",
                    format!("{gpus}; missing {}", missing.join(", ")),
                )
            }
        }
        Err(e) => check(Status::Fail, "driver devices", e.to_string()),
    }
}

/// An entry the runtime cannot read is a FAIL: that GPU is never given (a container naming it
/// does not start, and `all` silently gets one fewer), and a healthy driver's entries are
/// always readable, so it needs a person.
pub(crate) fn driver_proc(config: &Config) -> Check {
    let entries = gpu::procfs::read(&config.devices.root);
    let unreadable: Vec<String> = entries
        .iter()
        .filter_map(|e| {
            let why = e.unreadable.as_ref()?;
            Some(format!("{} ({why})", e.pci_bus_id))
        })
        .collect();
    if entries.is_empty() {
        check(
            Status::Warn,
            "driver /proc",
            "no proc/driver/nvidia/gpus entries: GPU UUIDs cannot be selected without NVML",
        )
    } else if !unreadable.is_empty() {
        check(
            Status::Fail,
            "driver /proc",
            format!(
                "{} GPU(s); cannot read the information of {}: containers cannot be given {}",
                entries.len(),
                unreadable.join(", "),
                if unreadable.len() == 1 { "it" } else { "them" }
            ),
        )
    } else {
        check(
            Status::Ok,
            "driver /proc",
            format!("{} GPU(s) with UUIDs", entries.len()),
        )
    }
}

pub(crate) fn nvml(config: &Config) -> Check {
    match host::discover(config) {
        Ok(view) => match view.nvml_error {
            None => {
                let nodes = gpu::devfs::discover(&config.devices.root)
                    .map(|i| i.gpus.len())
                    .unwrap_or(0);
                let seen = view.inventory.gpus.len();
                if seen == nodes {
                    check(Status::Ok, "nvml", format!("{seen} GPU(s)"))
                } else {
                    check(
                        Status::Warn,
                        "nvml",
                        format!("NVML sees {seen} GPU(s) with device nodes, /dev has {nodes}"),
                    )
                }
            }
            Some(e) => check(
                Status::Warn,
                "nvml",
                format!("{e} (the runtime does not need NVML; list shows no memory)"),
            ),
        },
        Err(e) => check(Status::Fail, "nvml", e.to_string()),
    }
}

pub(crate) fn persistence(root: &Path) -> Check {
    let running = std::fs::read_dir(root.join("proc"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            std::fs::read_to_string(e.path().join("comm"))
                .is_ok_and(|c| c.trim() == "nvidia-persistenced")
        });
    if running {
        check(Status::Ok, "persistenced", "nvidia-persistenced is running")
    } else {
        check(
            Status::Warn,
            "persistenced",
            "nvidia-persistenced is not running: the first use of a GPU can take seconds",
        )
    }
}
