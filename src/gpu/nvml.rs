//! GPU facts from NVML (through `nvml-wrapper`), behind a small trait so the merge is testable.
//!
//! NVML can take seconds on its first open of a GPU where the driver is not kept loaded
//! (no persistence mode), so the runtime's create path never calls it: the `gpu-share` commands
//! and the metrics agent do, and leave what only NVML knows (memory) in the cache file.
//!
//! Owns loading the library and the discovery query, and the one error type every NVML failure
//! becomes. Never decides what a failure means for the caller (fall back, fail, retry).

use std::ffi::OsStr;
use std::path::PathBuf;

use nvml_wrapper::error::NvmlError as Cause;

use super::{Gpu, GpuInfo, Inventory, Source};

/// NVML failed: the library would not load, or one of its calls failed.
#[derive(Debug, thiserror::Error)]
pub enum NvmlError {
    /// No driver, or `nvml.library` names a file that is not there or not NVML.
    #[error("NVML ({}): {source}", .library.display())]
    Load { library: PathBuf, source: Cause },
    /// One call on a loaded library; `what` names it (`device count`, `uuid`, ...).
    #[error("NVML {what}: {source}")]
    Call { what: &'static str, source: Cause },
}

impl NvmlError {
    /// For `map_err`: the failure of the call named `what`.
    pub fn call(what: &'static str) -> impl FnOnce(Cause) -> NvmlError {
        move |source| NvmlError::Call { what, source }
    }
}

/// One GPU as NVML reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmlGpu {
    pub index: u32,
    pub minor: u32,
    pub uuid: String,
    pub name: String,
    pub pci_bus_id: String,
    pub memory_total_bytes: u64,
    pub memory_free_bytes: u64,
}

/// What the rest of the code needs of NVML.
pub trait GpuQuery {
    fn gpus(&self) -> Result<Vec<NvmlGpu>, NvmlError>;
}

/// The real NVML, loaded from `library` (a name for the dynamic loader, or a path).
pub struct Nvml {
    nvml: nvml_wrapper::Nvml,
}

impl Nvml {
    pub fn load(library: &OsStr) -> Result<Nvml, NvmlError> {
        nvml_wrapper::Nvml::builder()
            .lib_path(library)
            .init()
            .map(|nvml| Nvml { nvml })
            .map_err(|source| NvmlError::Load {
                library: PathBuf::from(library),
                source,
            })
    }
}

impl Nvml {
    /// The loaded library, for callers that need more of NVML than discovery does.
    pub fn handle(&self) -> &nvml_wrapper::Nvml {
        &self.nvml
    }
}

impl GpuQuery for Nvml {
    fn gpus(&self) -> Result<Vec<NvmlGpu>, NvmlError> {
        let fail = NvmlError::call;
        let count = self.nvml.device_count().map_err(fail("device count"))?;
        (0..count)
            .map(|index| {
                let d = self.nvml.device_by_index(index).map_err(fail("device"))?;
                let memory = d.memory_info().map_err(fail("memory"))?;
                Ok(NvmlGpu {
                    index,
                    minor: d.minor_number().map_err(fail("minor number"))?,
                    uuid: d.uuid().map_err(fail("uuid"))?,
                    name: d.name().map_err(fail("name"))?,
                    pci_bus_id: d.pci_info().map_err(fail("pci info"))?.bus_id,
                    memory_total_bytes: memory.total,
                    memory_free_bytes: memory.free,
                })
            })
            .collect()
    }
}

/// The inventory as NVML numbers it, joined to the device nodes found under the root by minor.
/// A GPU NVML lists but whose node is missing is left out (it cannot be injected).
pub fn inventory(answer: Vec<NvmlGpu>, nodes: &Inventory) -> Inventory {
    let gpus = answer
        .into_iter()
        .filter_map(|g| {
            let node = nodes
                .gpus
                .iter()
                .find(|n| n.node.minor == u64::from(g.minor))?
                .node
                .clone();
            Some(Gpu {
                index: g.index,
                node,
                info: GpuInfo {
                    uuid: Some(g.uuid),
                    name: Some(g.name),
                    pci_bus_id: Some(g.pci_bus_id),
                    memory_total_bytes: Some(g.memory_total_bytes),
                    memory_free_bytes: Some(g.memory_free_bytes),
                },
            })
        })
        .collect();
    Inventory {
        gpus,
        controls: nodes.controls.clone(),
        source: Source::Nvml,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nvml_gpu(index: u32, minor: u32) -> NvmlGpu {
        NvmlGpu {
            index,
            minor,
            uuid: format!("GPU-{index}"),
            name: "Tesla T4".into(),
            pci_bus_id: format!("00000000:00:{index:02x}.0"),
            memory_total_bytes: 16 << 30,
            memory_free_bytes: 15 << 30,
        }
    }

    #[test]
    fn nvml_numbering_wins_and_nodes_join_by_minor() {
        let nodes = Inventory::synthetic(2);
        let inv = inventory(vec![nvml_gpu(0, 1), nvml_gpu(1, 0), nvml_gpu(2, 7)], &nodes);
        let got: Vec<(u32, u64, &str)> = inv
            .gpus
            .iter()
            .map(|g| (g.index, g.node.minor, g.info.uuid.as_deref().unwrap()))
            .collect();
        assert_eq!(got, vec![(0, 1, "GPU-0"), (1, 0, "GPU-1")]);
        assert_eq!(inv.source, Source::Nvml);
        assert_eq!(inv.controls, nodes.controls);
    }
}
