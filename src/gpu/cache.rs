//! What only NVML knows (memory), kept in `<state.dir>/gpus.json` by the `gpu-share` commands,
//! so the runtime's create path can use it without ever loading NVML.
//!
//! The cache only ever adds facts to an inventory's GPUs; it never decides anything with them.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::nvml::NvmlGpu;
use super::Inventory;
use crate::atomic::{self, Perms};

pub const CACHE_FILE: &str = "gpus.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedGpu {
    pub uuid: String,
    pub memory_total_bytes: u64,
    pub memory_free_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GpuCache {
    pub updated: String,
    pub gpus: Vec<CachedGpu>,
}

/// Saves NVML's answer. Best effort: a cache that cannot be written only costs tie-breaks.
pub fn write(dir: &Path, gpus: &[NvmlGpu], now: String) -> std::io::Result<()> {
    let cache = GpuCache {
        updated: now,
        gpus: gpus
            .iter()
            .map(|g| CachedGpu {
                uuid: g.uuid.clone(),
                memory_total_bytes: g.memory_total_bytes,
                memory_free_bytes: g.memory_free_bytes,
            })
            .collect(),
    };
    std::fs::create_dir_all(dir)?;
    let bytes = serde_json::to_vec_pretty(&cache).map_err(std::io::Error::other)?;
    let perms = Perms {
        mode: 0o644,
        owner: None,
    };
    atomic::replace(&dir.join(CACHE_FILE), &bytes, perms).map_err(|(_, e)| e)
}

pub fn read(dir: &Path) -> Option<GpuCache> {
    serde_json::from_slice(&std::fs::read(dir.join(CACHE_FILE)).ok()?).ok()
}

/// Fills in memory (total and free) from the cache, matched by UUID.
pub fn overlay(inventory: &mut Inventory, cache: &GpuCache) {
    for gpu in &mut inventory.gpus {
        let Some(uuid) = gpu.info.uuid.as_deref() else {
            continue;
        };
        if let Some(c) = cache
            .gpus
            .iter()
            .find(|c| c.uuid.eq_ignore_ascii_case(uuid))
        {
            gpu.info.memory_total_bytes = Some(c.memory_total_bytes);
            gpu.info.memory_free_bytes = Some(c.memory_free_bytes);
        }
    }
}

/// Reads the cache in `dir` into `inventory`, where there is one; a missing or unreadable cache
/// costs only spread's tie-breaks.
pub fn fill(inventory: &mut Inventory, dir: &Path) {
    if let Some(cache) = read(dir) {
        overlay(inventory, &cache);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_cache_overlays_memory_by_uuid() {
        let dir = tempfile::tempdir().unwrap();
        let mut inv = Inventory::synthetic(2);
        let uuid1 = inv.gpus[1].info.uuid.clone().unwrap();
        let g = NvmlGpu {
            index: 0,
            minor: 1,
            uuid: uuid1,
            name: "Tesla T4".into(),
            pci_bus_id: "x".into(),
            memory_total_bytes: 100,
            memory_free_bytes: 40,
        };
        write(dir.path(), &[g], "now".into()).unwrap();
        let cache = read(dir.path()).unwrap();
        inv.gpus[0].info.memory_total_bytes = None;
        overlay(&mut inv, &cache);
        assert_eq!(inv.gpus[1].info.memory_free_bytes, Some(40));
        assert_eq!(inv.gpus[0].info.memory_free_bytes, None);
        assert_eq!(inv.gpus[1].info.memory_total_bytes, Some(100));
        assert_eq!(inv.gpus[0].info.memory_total_bytes, None);
    }
}
