//! What the create path reads of GPU health: `health.json`, once, matched to the inventory.
//!
//! Owns what a health file that cannot be read means for a create: nothing. It fails open
//! (every GPU healthy) with one WARN line in the shim's log, because a corrupt file must never
//! stop every container on the host; the agent or `gpu-share gpu clear` rewrites it. Never
//! writes the file and never decides placement.

use std::path::Path;

use super::file::{self, Unhealthy};
use crate::config::{LogLevel, LogSection};
use crate::gpu::Inventory;
use crate::shim_log::ShimLog;

/// The inventory's unhealthy GPUs, under their current indices.
pub fn for_create(state_dir: &Path, inventory: &Inventory, log: &LogSection) -> Vec<Unhealthy> {
    match file::read(state_dir) {
        Ok(f) if f.gpus.is_empty() => Vec::new(),
        Ok(f) => f.on(inventory),
        Err(e) => {
            ShimLog::new(log).write(
                LogLevel::Warn,
                &format!("GPU health not known, every GPU taken as healthy: {e}"),
            );
            Vec::new()
        }
    }
}
