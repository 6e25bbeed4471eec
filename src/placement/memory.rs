//! Admission by capped memory in `mps` mode: the caps of the live containers on a GPU sum to at
//! most its memory less `isolation.reserved_memory`, and a container capped by gpu-share holds
//! exactly one GPU (its daemon serves one).
//!
//! Pure: the GPUs' totals (the NVML cache `gpu-share list` and `gpu-share mps start` write, read
//! into the inventory), the caps recorded in the flock'd state, and the container's cap in; a
//! verdict per GPU out. It never reads a file and never chooses among GPUs that fit (that is
//! `policy`).

use std::collections::BTreeMap;

use crate::config::ByteSize;
use crate::gpu::Inventory;

const MIB: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    #[error("isolation.mode = \"mps\": the memory of GPU {gpu} is not known (no entry for {uuid} in {cache}); run `gpu-share list` or `gpu-share mps start` on this host, which record it from NVML")]
    UnknownTotal {
        gpu: u32,
        uuid: String,
        cache: String,
    },
    #[error(
        "no GPU has {need} MiB of capped memory free for this container ({free}); not starting it"
    )]
    Full { need: u64, free: String },
    #[error("GPU {gpu} has not {need} MiB of capped memory free for this container ({free}); not starting it")]
    GpuFull { gpu: u32, need: u64, free: String },
    #[error("isolation.mode = \"mps\" caps one GPU per container, and this one would get GPUs {gpus}; ask for one GPU (NVIDIA_VISIBLE_DEVICES), or use sharing.placement = \"spread\" or \"pack\"")]
    NotOneGpu { gpus: String },
}

/// Capped memory on each GPU, and what one more container needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    /// The container's memory cap, MiB.
    pub need_mib: u64,
    /// Per GPU index: what caps may take (its memory less the reserve), MiB.
    capacity: BTreeMap<u32, u64>,
    /// Per GPU index: the live containers' caps, MiB.
    capped: BTreeMap<u32, u64>,
}

impl Room {
    /// The room on `inventory`'s GPUs (every one's total must be known) given the live caps
    /// per GPU (`state::capped_of`). `cache` names where totals come from, for the error.
    pub fn new(
        inventory: &Inventory,
        reserved: ByteSize,
        need_mib: u64,
        capped: BTreeMap<u32, u64>,
        cache: &str,
    ) -> Result<Room, MemoryError> {
        let mut capacity = BTreeMap::new();
        for g in &inventory.gpus {
            let total = g
                .info
                .memory_total_bytes
                .ok_or_else(|| MemoryError::UnknownTotal {
                    gpu: g.index,
                    uuid: g.info.uuid.clone().unwrap_or_else(|| "its UUID".into()),
                    cache: cache.to_owned(),
                })?;
            capacity.insert(g.index, total.saturating_sub(reserved.0) / MIB);
        }
        Ok(Room {
            need_mib,
            capacity,
            capped,
        })
    }

    /// Capped memory still free on GPU `gpu`, MiB (none on a GPU it does not know).
    pub fn free(&self, gpu: u32) -> u64 {
        let cap = self.capacity.get(&gpu).copied().unwrap_or(0);
        cap.saturating_sub(self.capped.get(&gpu).copied().unwrap_or(0))
    }

    /// Whether one more container fits on GPU `gpu`.
    pub fn fits(&self, gpu: u32) -> bool {
        self.free(gpu) >= self.need_mib
    }

    /// "GPU 0: 2048 MiB free of 15360, GPU 1: ...", for refusals.
    pub fn describe(&self) -> String {
        self.capacity
            .iter()
            .map(|(&g, cap)| format!("GPU {g}: {} MiB free of {cap}", self.free(g)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn full(&self) -> MemoryError {
        MemoryError::Full {
            need: self.need_mib,
            free: self.describe(),
        }
    }

    /// Admits a container to `gpus` (one GPU, with room).
    pub fn admit(&self, gpus: &[u32]) -> Result<(), MemoryError> {
        let &[gpu] = gpus else {
            let list: Vec<String> = gpus.iter().map(u32::to_string).collect();
            return Err(MemoryError::NotOneGpu {
                gpus: list.join(","),
            });
        };
        if !self.fits(gpu) {
            return Err(MemoryError::GpuFull {
                gpu,
                need: self.need_mib,
                free: self.describe(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GPUs 0 and 1 of 16GiB, 1GiB reserved, with `capped` MiB of caps live on GPU 0.
    fn room(need: u64, capped: u64) -> Room {
        let mut inv = Inventory::synthetic(2);
        for g in &mut inv.gpus {
            g.info.memory_total_bytes = Some(16 << 30);
        }
        let live = BTreeMap::from([(0, capped)]);
        Room::new(&inv, ByteSize(1 << 30), need, live, "gpus.json").unwrap()
    }

    #[test]
    fn capped_memory_is_what_the_live_caps_leave_under_the_reserve() {
        let r = room(4096, 10240);
        assert_eq!(r.free(0), 15360 - 10240);
        assert_eq!(r.free(1), 15360);
        assert!(r.fits(0));
        let r = room(6144, 10240);
        assert!(!r.fits(0));
        let e = r.admit(&[0]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "GPU 0 has not 6144 MiB of capped memory free for this container (GPU 0: 5120 MiB free of 15360, GPU 1: 15360 MiB free of 15360); not starting it"
        );
        assert!(r.admit(&[1]).is_ok());
        assert_eq!(room(1, 20000).free(0), 0);
    }

    #[test]
    fn a_capped_container_gets_exactly_one_gpu() {
        let e = room(1, 0).admit(&[0, 1]).unwrap_err();
        assert!(matches!(e, MemoryError::NotOneGpu { .. }), "{e}");
    }

    #[test]
    fn an_unknown_total_is_refused_with_what_records_it() {
        let mut inv = Inventory::synthetic(1);
        inv.gpus[0].info.memory_total_bytes = None;
        let e = Room::new(
            &inv,
            ByteSize(0),
            1,
            BTreeMap::new(),
            "/run/gpu-share/gpus.json",
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("run `gpu-share list` or `gpu-share mps start`"),
            "{msg}"
        );
    }
}
