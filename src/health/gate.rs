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

/// The inventory's unhealthy GPUs, under their current indices. While there are any, each
/// create says so in one INFO line, so a decision that left a GPU out reads as such.
pub fn for_create(state_dir: &Path, inventory: &Inventory, log: &LogSection) -> Vec<Unhealthy> {
    match file::read(state_dir) {
        Ok(f) if f.gpus.is_empty() => Vec::new(),
        Ok(f) => {
            let sick = f.on(inventory);
            let log = ShimLog::new(log);
            if !sick.is_empty() && log.enabled(LogLevel::Info) {
                let each: Vec<String> = sick
                    .iter()
                    .map(|u| format!("GPU {} (Xid {} since {})", u.index, u.xid, u.since))
                    .collect();
                log.write(
                    LogLevel::Info,
                    &format!("unhealthy, given no new container: {}", each.join(", ")),
                );
            }
            sick
        }
        Err(e) => {
            ShimLog::new(log).write(
                LogLevel::Warn,
                &format!("GPU health not known, every GPU taken as healthy: {e}"),
            );
            Vec::new()
        }
    }
}
