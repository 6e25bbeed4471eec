//! The operator's view of the host, for `gpu-share list` and `doctor`: the inventory from the
//! best source there is (NVML, else the driver's `/proc`, else device nodes), and the live
//! assignment after reconciliation.
//!
//! Looking changes nothing, with one exception that is asked for by name: `refresh_cache`
//! writes what NVML said to the cache the runtime's `spread` reads (`gpu-share list` does).

use serde::Serialize;

use crate::config::Config;
use crate::gpu::nvml::{GpuQuery, Nvml, NvmlGpu};
use crate::gpu::{self, Inventory};
use crate::health::file::{self as health_file, HealthFile, Unhealthy};
use crate::health::report;
use crate::placement::state::{self, StateError};
use crate::placement::Load;
use crate::timestamp::now_rfc3339;

/// The inventory, and why NVML was not used where it was not.
pub struct HostView {
    pub inventory: Inventory,
    pub nvml_error: Option<String>,
    /// NVML's own answer, where it gave one: what `refresh_cache` keeps.
    nvml_answer: Vec<NvmlGpu>,
}

/// Discovers GPUs, asking NVML first. Writes nothing.
pub fn discover(config: &Config) -> Result<HostView, gpu::devfs::DiscoveryError> {
    let nodes = gpu::discover(&config.devices.root)?;
    let nvml = Nvml::load(config.nvml.library.as_os_str()).and_then(|nvml| nvml.gpus());
    Ok(match nvml {
        Ok(answer) => HostView {
            inventory: gpu::nvml::inventory(answer.clone(), &nodes),
            nvml_error: None,
            nvml_answer: answer,
        },
        Err(e) => HostView {
            inventory: nodes,
            nvml_error: Some(e.to_string()),
            nvml_answer: Vec::new(),
        },
    })
}

/// Keeps NVML's answer (memory) in the cache `spread` reads. Best effort, and only where NVML
/// answered: a cache that cannot be written costs only tie-breaks.
pub fn refresh_cache(config: &Config, view: &HostView) {
    if view.nvml_error.is_none() {
        let _ = gpu::cache::write(&config.state.dir, &view.nvml_answer, now_rfc3339());
    }
}

/// Live containers per GPU, after dropping the dead (in memory: listing changes nothing).
pub fn live_load(config: &Config) -> Result<Load, StateError> {
    let mut assignments = state::read(&config.state.dir)?;
    assignments.containers.retain(state::is_live);
    Ok(state::load_of(&assignments))
}

/// The GPUs marked unhealthy. An unreadable file lists as all healthy, as creates take it,
/// with a line on stderr saying why.
pub fn health(config: &Config) -> HealthFile {
    health_file::read(&config.state.dir).unwrap_or_else(|e| {
        eprintln!("gpu-share: {e}; creates take every GPU as healthy");
        HealthFile::default()
    })
}

/// One row of `gpu-share list --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuRow {
    pub index: u32,
    pub minor: u64,
    pub uuid: Option<String>,
    pub name: Option<String>,
    pub pci_bus_id: Option<String>,
    pub memory_total_bytes: Option<u64>,
    /// Live containers placed on or pinned to this GPU.
    pub containers: u32,
    /// Of those, containers of ECS tasks that reserved this GPU.
    pub reserved_by_ecs: u32,
    /// Where the facts came from: nvml, procfs or devfs.
    pub source: &'static str,
    /// Set while the GPU is marked unhealthy: no new containers go there.
    pub unhealthy: Option<Unhealthy>,
}

pub fn rows(inventory: &Inventory, load: &Load, health: &HealthFile) -> Vec<GpuRow> {
    inventory
        .gpus
        .iter()
        .map(|g| {
            let l = load.get(&g.index).cloned().unwrap_or_default();
            GpuRow {
                index: g.index,
                minor: g.node.minor,
                uuid: g.info.uuid.clone(),
                name: g.info.name.clone(),
                pci_bus_id: g.info.pci_bus_id.clone(),
                memory_total_bytes: g.info.memory_total_bytes,
                containers: l.containers,
                reserved_by_ecs: l.reserved,
                source: inventory.source.as_str(),
                unhealthy: health.find(g.index, g.info.uuid.as_deref()).cloned(),
            }
        })
        .collect()
}

/// `gpu-share list` as a table.
pub fn table(rows: &[GpuRow]) -> String {
    let mut out = format!(
        "{:<5} {:<40} {:<16} {:>10} {:>10} {:>8}  {}\n",
        "INDEX", "UUID", "NAME", "MEMORY", "CONTAINERS", "RESERVED", "HEALTH"
    );
    for r in rows {
        let memory = r
            .memory_total_bytes
            .map(|b| format!("{} MiB", b >> 20))
            .unwrap_or_else(|| "-".to_owned());
        let health = r
            .unhealthy
            .as_ref()
            .map_or_else(|| "ok".to_owned(), report::describe);
        out.push_str(&format!(
            "{:<5} {:<40} {:<16} {:>10} {:>10} {:>8}  {}\n",
            r.index,
            r.uuid.as_deref().unwrap_or("-"),
            r.name.as_deref().unwrap_or("-"),
            memory,
            r.containers,
            if r.reserved_by_ecs > 0 { "ecs" } else { "-" },
            health
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::GpuLoad;

    #[test]
    fn rows_carry_load_and_source() {
        let inv = Inventory::synthetic(2);
        let load: Load = [(
            1,
            GpuLoad {
                containers: 3,
                reserved: 1,
                reserved_for: vec![Some("t".into())],
            },
        )]
        .into();
        let health = HealthFile {
            gpus: vec![Unhealthy {
                index: 0,
                uuid: inv.gpus[0].info.uuid.clone(),
                since: "2026-11-25T12:00:00Z".into(),
                xid: 79,
                message: String::new(),
            }],
        };
        let rows = rows(&inv, &load, &health);
        assert_eq!(rows[0].containers, 0);
        assert_eq!(rows[1].containers, 3);
        assert_eq!(rows[1].reserved_by_ecs, 1);
        assert_eq!(rows[1].source, "procfs");
        let t = table(&rows);
        assert_eq!(t.lines().count(), 3);
        assert!(t.lines().nth(2).unwrap().ends_with("ecs  ok"), "{t}");
        assert!(
            t.lines()
                .nth(1)
                .unwrap()
                .ends_with("UNHEALTHY since 2026-11-25T12:00:00Z, Xid 79"),
            "{t}"
        );
    }
}
