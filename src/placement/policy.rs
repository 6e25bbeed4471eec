//! The placement policies for a container that names no GPU: `all`, `spread`, `pack`, under the
//! admission limit `sharing.max_per_gpu` and `sharing.reserved`.
//!
//! Pure: the policy, the inventory (with the free memory the NVML cache gave it), the live load
//! and the container's ECS task in, GPU indices out.

use super::access::{open_to, preference};
use super::load::Load;
use super::memory::{MemoryError, Room};
use crate::config::{Placement, SharingSection};
use crate::gpu::Inventory;
use crate::health::file::Unhealthy;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("every GPU is at sharing.max_per_gpu = {limit} ({loads}); not starting another container here")]
    Full { limit: u32, loads: String },
    #[error("GPU {gpu} is at sharing.max_per_gpu = {limit} ({loads}); not starting another container on it")]
    GpuFull { gpu: u32, limit: u32, loads: String },
    #[error("GPU {gpu} is reserved for an ECS task (sharing.reserved = {policy}); not giving it to this container")]
    Reserved { gpu: u32, policy: &'static str },
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error("GPU {gpu} is unhealthy (Xid {xid} since {since}); not starting a container on it (`gpu-share gpu clear {gpu}` once it is fixed)")]
    Unhealthy { gpu: u32, xid: u64, since: String },
    #[error("every GPU this container may use is unhealthy ({gpus}); not starting it here (`gpu-share list` shows why)")]
    AllUnhealthy { gpus: String },
}

/// The marked entry of GPU `i`, if it is unhealthy.
pub fn sick(unhealthy: &[Unhealthy], i: u32) -> Option<&Unhealthy> {
    unhealthy.iter().find(|u| u.index == i)
}

fn all_unhealthy(unhealthy: &[Unhealthy]) -> PlacementError {
    PlacementError::AllUnhealthy {
        gpus: unhealthy
            .iter()
            .map(|u| format!("GPU {}: Xid {}", u.index, u.xid))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The GPUs of `all` that are healthy, for `NVIDIA_VISIBLE_DEVICES=all`: a sick GPU is left
/// out rather than the container refused, since CUDA images set `all` by default.
pub fn healthy_of(all: Vec<u32>, unhealthy: &[Unhealthy]) -> Result<Vec<u32>, PlacementError> {
    let healthy: Vec<u32> = all
        .into_iter()
        .filter(|&i| sick(unhealthy, i).is_none())
        .collect();
    if healthy.is_empty() {
        return Err(all_unhealthy(unhealthy));
    }
    Ok(healthy)
}

/// "GPU 0: 2, GPU 1: 0": for messages about the limit.
pub fn describe_loads(inventory: &Inventory, load: &Load) -> String {
    inventory
        .gpus
        .iter()
        .map(|g| format!("GPU {}: {}", g.index, count(load, g.index)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Live containers on GPU `i`.
pub fn count(load: &Load, i: u32) -> u32 {
    load.get(&i).map_or(0, |l| l.containers)
}

/// The GPUs a container of `task` that named none gets; `None` when every GPU is reserved
/// for others. Unhealthy GPUs are never chosen (`all` leaves them out); with only unhealthy
/// ones open, the container is refused.
pub fn choose(
    sharing: &SharingSection,
    inventory: &Inventory,
    load: &Load,
    task: Option<&str>,
    unhealthy: &[Unhealthy],
) -> Result<Option<Vec<u32>>, PlacementError> {
    choose_within(sharing, inventory, load, task, unhealthy, None)
}

/// `choose` within `room` (mps): only GPUs the cap fits on; spread prefers the most free.
pub fn choose_within(
    sharing: &SharingSection,
    inventory: &Inventory,
    load: &Load,
    task: Option<&str>,
    unhealthy: &[Unhealthy],
    room: Option<&Room>,
) -> Result<Option<Vec<u32>>, PlacementError> {
    let limit_ok = |i: u32| sharing.max_per_gpu.is_none_or(|m| count(load, i) < m);
    let under_limit = |i: u32| limit_ok(i) && room.is_none_or(|r| r.fits(i));
    // Free capped memory (mps) decides spread before the count does.
    let capped_free = |i: u32| std::cmp::Reverse(room.map_or(0, |r| r.free(i)));
    let open: Vec<&crate::gpu::Gpu> = inventory
        .gpus
        .iter()
        .filter(|g| open_to(sharing.reserved, load.get(&g.index), task))
        .collect();
    if open.is_empty() {
        return Ok(None);
    }
    let open: Vec<&crate::gpu::Gpu> = open
        .into_iter()
        .filter(|g| sick(unhealthy, g.index).is_none())
        .collect();
    if open.is_empty() {
        return Err(all_unhealthy(unhealthy));
    }
    // A refusal says what stopped it: memory where some GPU was under the limit.
    let full = || match room {
        Some(r) if open.iter().any(|g| limit_ok(g.index)) => PlacementError::Memory(r.full()),
        _ => PlacementError::Full {
            limit: sharing.max_per_gpu.unwrap_or(0),
            loads: describe_loads(inventory, load),
        },
    };
    let rank = |i: u32| preference(sharing.reserved, load.get(&i));
    let chosen = match sharing.placement {
        Placement::All => {
            // Capped (mps): one GPU, with room, says more than the limit would.
            let all: Vec<u32> = open.iter().map(|g| g.index).collect();
            room.map_or(Ok(()), |r| r.admit(&all))?;
            if !open.iter().all(|g| limit_ok(g.index)) {
                return Err(full());
            }
            all
        }
        Placement::Spread => open
            .iter()
            .filter(|g| under_limit(g.index))
            .min_by_key(|g| {
                let free = g.info.memory_free_bytes.unwrap_or(0);
                (
                    rank(g.index),
                    capped_free(g.index),
                    count(load, g.index),
                    std::cmp::Reverse(free),
                    g.index,
                )
            })
            .map(|g| vec![g.index])
            .ok_or_else(full)?,
        Placement::Pack => open
            .iter()
            .filter(|g| under_limit(g.index))
            .min_by_key(|g| (rank(g.index), g.index))
            .map(|g| vec![g.index])
            .ok_or_else(full)?,
    };
    Ok(Some(chosen))
}

/// Refuses GPUs named one by one (by index or UUID, or reserved by ECS) that are unhealthy: the
/// container asked for that very GPU, and would only fail on it.
pub fn refuse_unhealthy(gpus: &[u32], unhealthy: &[Unhealthy]) -> Result<(), PlacementError> {
    match gpus.iter().find_map(|&i| sick(unhealthy, i)) {
        Some(u) => Err(PlacementError::Unhealthy {
            gpu: u.index,
            xid: u.xid,
            since: u.since.clone(),
        }),
        None => Ok(()),
    }
}

/// Checks GPUs a container named itself (not through the trusted channel) against the limit
/// and the reservations: a named GPU counts like a placed one.
pub fn admit_named(
    gpus: &[u32],
    sharing: &SharingSection,
    inventory: &Inventory,
    load: &Load,
    task: Option<&str>,
) -> Result<(), PlacementError> {
    for &gpu in gpus {
        if !open_to(sharing.reserved, load.get(&gpu), task) {
            return Err(PlacementError::Reserved {
                gpu,
                policy: sharing.reserved.as_str(),
            });
        }
        if let Some(limit) = sharing.max_per_gpu.filter(|&m| count(load, gpu) >= m) {
            return Err(PlacementError::GpuFull {
                gpu,
                limit,
                loads: describe_loads(inventory, load),
            });
        }
    }
    Ok(())
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
                        reserved_for: vec![Some("t".to_owned()); reserved as usize],
                    },
                )
            })
            .collect()
    }

    fn sharing(placement: Placement, max_per_gpu: Option<u32>) -> SharingSection {
        SharingSection {
            placement,
            max_per_gpu,
            ..SharingSection::default()
        }
    }

    fn pick(policy: Placement, max: Option<u32>, l: &Load) -> Result<Vec<u32>, PlacementError> {
        choose(
            &sharing(policy, max),
            &Inventory::synthetic(4),
            l,
            None,
            &[],
        )
        .map(Option::unwrap)
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
        let got = choose(
            &sharing(Placement::Spread, None),
            &inventory,
            &Load::new(),
            None,
            &[],
        );
        assert_eq!(got.unwrap(), Some(vec![1]));
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

    #[test]
    fn reserved_gpus_are_closed_to_other_tasks_under_task_and_to_all_under_exclusive() {
        use crate::config::Reserved;
        // GPU 0 reserved for task "t" (see `load`), the others free.
        let l = load(&[(0, 1, 1)]);
        let inv = Inventory::synthetic(4);
        for placement in [Placement::All, Placement::Spread, Placement::Pack] {
            let task = SharingSection {
                reserved: Reserved::Task,
                ..sharing(placement, None)
            };
            let sidecar = choose(&task, &inv, &l, Some("t"), &[]).unwrap().unwrap();
            assert_eq!(
                sidecar[0], 0,
                "{placement:?}: the sidecar goes to its task's GPU"
            );
            let other = choose(&task, &inv, &l, Some("u"), &[]).unwrap().unwrap();
            assert!(!other.contains(&0), "{placement:?}: {other:?}");
            let exclusive = SharingSection {
                reserved: Reserved::Exclusive,
                ..sharing(placement, None)
            };
            let s = choose(&exclusive, &inv, &l, Some("t"), &[])
                .unwrap()
                .unwrap();
            assert!(!s.contains(&0), "{placement:?}: {s:?}");
        }
        let one = Inventory::synthetic(1);
        let task = SharingSection {
            reserved: Reserved::Task,
            ..sharing(Placement::Spread, None)
        };
        assert_eq!(choose(&task, &one, &l, Some("u"), &[]).unwrap(), None);
        let e = admit_named(&[0], &task, &one, &l, Some("u")).unwrap_err();
        assert!(e.to_string().contains("GPU 0 is reserved"), "{e}");
        assert!(admit_named(&[0], &task, &one, &l, Some("t")).is_ok());
    }

    #[test]
    fn named_gpus_count_against_the_limit() {
        let l = load(&[(1, 2, 0)]);
        let s = sharing(Placement::Pack, Some(2));
        let inv = Inventory::synthetic(4);
        assert!(admit_named(&[0, 2], &s, &inv, &l, None).is_ok());
        let e = admit_named(&[0, 1], &s, &inv, &l, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "GPU 1 is at sharing.max_per_gpu = 2 (GPU 0: 0, GPU 1: 2, GPU 2: 0, GPU 3: 0); not starting another container on it"
        );
    }

    fn sick_gpu(index: u32) -> Unhealthy {
        Unhealthy {
            index,
            uuid: None,
            since: "2026-11-25T12:00:00Z".into(),
            xid: 79,
            message: String::new(),
        }
    }

    #[test]
    fn no_policy_chooses_an_unhealthy_gpu() {
        let inv = Inventory::synthetic(4);
        let sick = [sick_gpu(0), sick_gpu(2)];
        let l = Load::new();
        let got = |p| {
            choose(&sharing(p, None), &inv, &l, None, &sick)
                .unwrap()
                .unwrap()
        };
        assert_eq!(got(Placement::All), vec![1, 3]);
        assert_eq!(got(Placement::Spread), vec![1]);
        assert_eq!(got(Placement::Pack), vec![1]);
        let every = [sick_gpu(0), sick_gpu(1), sick_gpu(2), sick_gpu(3)];
        let e = choose(&sharing(Placement::Spread, None), &inv, &l, None, &every).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("every GPU this container may use is unhealthy (GPU 0: Xid 79"),
            "{e}"
        );
    }

    #[test]
    fn a_named_unhealthy_gpu_is_refused_and_all_leaves_it_out() {
        let sick = [sick_gpu(1)];
        assert!(refuse_unhealthy(&[0, 2], &sick).is_ok());
        let e = refuse_unhealthy(&[2, 1], &sick).unwrap_err();
        assert_eq!(
            e.to_string(),
            "GPU 1 is unhealthy (Xid 79 since 2026-11-25T12:00:00Z); not starting a container on it (`gpu-share gpu clear 1` once it is fixed)"
        );
        assert_eq!(healthy_of(vec![0, 1, 2], &sick).unwrap(), vec![0, 2]);
        assert!(healthy_of(vec![1], &sick).is_err());
    }
}
