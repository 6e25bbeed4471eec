//! The default daemons: one per GPU with `isolation.memory` and `isolation.compute_percent`,
//! what `gpu-share mps start` (and so `gpu-share-mps.service`) starts at boot.
//!
//! Finds the GPUs the runtime would see, keeps NVML's memory totals in the cache the create
//! path's admission reads, and starts a daemon on each; it never stops or changes a daemon
//! that already answers.

use crate::config::{Config, IsolationMode};
use crate::gpu::devfs::DiscoveryError;
use crate::host;

use super::daemon::{Daemon, DaemonError, Limits, Started};

#[derive(Debug, thiserror::Error)]
pub enum DefaultsError {
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error("--gpu {index}: this host has {gpus}")]
    NoSuchGpu { index: u32, gpus: String },
}

/// Starts the default daemon on every GPU, or on those in `only`; each daemon's outcome is
/// its own. Nothing when `isolation.mode` is not `mps`.
#[allow(clippy::type_complexity)]
pub fn start_defaults(
    config: &Config,
    only: &[u32],
) -> Result<Vec<(Daemon, Result<Started, DaemonError>)>, DefaultsError> {
    let iso = &config.isolation;
    let Some(memory) = iso.memory.filter(|_| iso.mode == IsolationMode::Mps) else {
        return Ok(Vec::new());
    };
    let view = host::discover(config)?;
    // The GPUs' memory totals, which admission by capped memory reads on every create (the
    // create path never loads NVML): written at boot, before docker, by this unit.
    host::refresh_cache(config, &view);
    if let Some(&index) = only.iter().find(|&&i| view.inventory.gpu(i).is_none()) {
        return Err(DefaultsError::NoSuchGpu {
            index,
            gpus: view.inventory.describe_gpus(),
        });
    }
    let limits = Limits::new(memory, iso.compute_percent);
    Ok(view
        .inventory
        .gpus
        .iter()
        .filter(|g| only.is_empty() || only.contains(&g.index))
        .map(|g| {
            let daemon = Daemon::new(iso, g.index, limits);
            // The UUID, as NVIDIA's MPS docs advise: an index is renumbered by
            // CUDA_DEVICE_ORDER, a UUID is not.
            let visible = g.info.uuid.clone().unwrap_or_else(|| g.index.to_string());
            let outcome = daemon.start(iso, &visible);
            (daemon, outcome)
        })
        .collect())
}
