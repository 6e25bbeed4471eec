//! The placement policies for a container that names no GPU: `all`, `spread`, `pack`, under the
//! admission limit `sharing.max_per_gpu`.
//!
//! Pure: the policy, the inventory (with the free memory the NVML cache gave it) and the live
//! load in, GPU indices out.

use super::load::Load;
use crate::config::Placement;
use crate::gpu::Inventory;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("every GPU is at sharing.max_per_gpu = {limit} ({loads}); not starting another container here")]
    Full { limit: u32, loads: String },
}

/// The GPUs a container that named none gets under `policy`.
pub fn choose(
    policy: Placement,
    max_per_gpu: Option<u32>,
    inventory: &Inventory,
    load: &Load,
) -> Result<Vec<u32>, PlacementError> {
    let count = |i: u32| load.get(&i).map_or(0, |l| l.containers);
    let reserved = |i: u32| load.get(&i).is_some_and(|l| l.reserved > 0);
    let under_limit = |i: u32| max_per_gpu.is_none_or(|m| count(i) < m);
    let indices: Vec<u32> = inventory.gpus.iter().map(|g| g.index).collect();
    let full = || PlacementError::Full {
        limit: max_per_gpu.unwrap_or(0),
        loads: indices
            .iter()
            .map(|&i| format!("GPU {i}: {}", count(i)))
            .collect::<Vec<_>>()
            .join(", "),
    };
    match policy {
        Placement::All => {
            if indices.iter().all(|&i| under_limit(i)) {
                Ok(indices)
            } else {
                Err(full())
            }
        }
        Placement::Spread => inventory
            .gpus
            .iter()
            .filter(|g| under_limit(g.index))
            .min_by_key(|g| {
                let free = g.info.memory_free_bytes.unwrap_or(0);
                (
                    reserved(g.index),
                    count(g.index),
                    std::cmp::Reverse(free),
                    g.index,
                )
            })
            .map(|g| vec![g.index])
            .ok_or_else(full),
        Placement::Pack => indices
            .iter()
            .copied()
            .filter(|&i| under_limit(i))
            .min_by_key(|&i| (reserved(i), i))
            .map(|i| vec![i])
            .ok_or_else(full),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::GpuLoad;

    fn load(counts: &[(u32, u32, u32)]) -> Load {
        counts
            .iter()
            .map(|&(i, containers, reserved)| {
                (
                    i,
                    GpuLoad {
                        containers,
                        reserved,
                    },
                )
            })
            .collect()
    }

    fn pick(policy: Placement, max: Option<u32>, l: &Load) -> Result<Vec<u32>, PlacementError> {
        choose(policy, max, &Inventory::synthetic(4), l)
    }

    #[test]
    fn all_gives_every_gpu_until_one_is_full() {
        assert_eq!(
            pick(Placement::All, None, &Load::new()).unwrap(),
            vec![0, 1, 2, 3]
        );
        let l = load(&[(2, 3, 0)]);
        let e = pick(Placement::All, Some(3), &l).unwrap_err();
        assert_eq!(
            e.to_string(),
            "every GPU is at sharing.max_per_gpu = 3 (GPU 0: 0, GPU 1: 0, GPU 2: 3, GPU 3: 0); not starting another container here"
        );
    }

    #[test]
    fn spread_takes_the_least_loaded_then_the_lowest_index() {
        let l = load(&[(0, 2, 0), (1, 1, 0), (2, 1, 0), (3, 2, 0)]);
        assert_eq!(pick(Placement::Spread, None, &l).unwrap(), vec![1]);
        assert_eq!(
            pick(Placement::Spread, None, &Load::new()).unwrap(),
            vec![0]
        );
    }

    #[test]
    fn spread_breaks_ties_by_free_memory() {
        let mut inventory = Inventory::synthetic(4);
        for (gpu, free_gib) in inventory.gpus.iter_mut().zip([1u64, 8, 4, 8]) {
            gpu.info.memory_free_bytes = Some(free_gib << 30);
        }
        let got = choose(Placement::Spread, None, &inventory, &Load::new());
        assert_eq!(got.unwrap(), vec![1]);
    }

    #[test]
    fn spread_steers_away_from_reserved_gpus_while_others_are_free() {
        let l = load(&[(0, 1, 1)]);
        assert_eq!(pick(Placement::Spread, None, &l).unwrap(), vec![1]);
        // Every GPU reserved: the least loaded one all the same.
        let l = load(&[(0, 2, 1), (1, 1, 1), (2, 2, 1), (3, 3, 1)]);
        assert_eq!(pick(Placement::Spread, None, &l).unwrap(), vec![1]);
    }

    #[test]
    fn pack_fills_the_lowest_index_up_to_the_limit() {
        assert_eq!(
            pick(Placement::Pack, Some(2), &Load::new()).unwrap(),
            vec![0]
        );
        let l = load(&[(0, 2, 0), (1, 1, 0)]);
        assert_eq!(pick(Placement::Pack, Some(2), &l).unwrap(), vec![1]);
        let l = load(&[(0, 2, 0), (1, 2, 0), (2, 2, 0), (3, 2, 0)]);
        assert!(pick(Placement::Pack, Some(2), &l).is_err());
    }

    #[test]
    fn pack_skips_a_reserved_gpu_while_another_has_room() {
        let l = load(&[(0, 1, 1)]);
        assert_eq!(pick(Placement::Pack, Some(5), &l).unwrap(), vec![1]);
    }
}
