//! Which GPUs a container gets: the one home of that question.
//!
//! Two steps, both pure, so that a bad request never waits on the lock:
//! - `claim`, before the lock: a request that names GPUs (indices, UUIDs, `all`) is resolved
//!   against the inventory now; one that names none is left to the policy.
//! - `decide`, under the lock: named GPUs are admitted (the limit and the reservations apply to
//!   them, unless ECS reserved them through the trusted `nvidia` channel), and the policy
//!   (`policy`) places what is left, given the live load the flock'd state file (`state`) holds.
//!
//! The answer is an `Assignment`: GPU indices, how the container came to hold them, and its ECS
//! task. Only `state` touches the world here; nothing in this module writes the spec.

pub mod access;
mod load;
pub mod memory;
pub mod named;
pub mod policy;
pub mod state;

use crate::config::{Placement, SharingSection};
use crate::gpu::Inventory;
use crate::health::file::Unhealthy;
use crate::request::{Request, Wants};

pub use load::{GpuLoad, Load};
pub use memory::{MemoryError, Room};
pub use named::SelectError;
pub use policy::PlacementError;

/// How a container came to hold its GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Placed by the policy: it named no GPU.
    Shared,
    /// It named its GPUs itself.
    Pinned,
    /// ECS reserved these GPUs for its task (through the trusted `nvidia` runtime).
    Reserved,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Shared => "shared",
            Kind::Pinned => "pinned",
            Kind::Reserved => "reserved",
        }
    }
}

/// The GPUs one container gets, in the order it gets them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// GPU indices; never empty once decided.
    pub gpus: Vec<u32>,
    pub kind: Kind,
    /// The container's ECS task (from its cgroup parent), where it has one.
    pub task: Option<String>,
}

/// Why a container gets no GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoGpu {
    /// It asked for none (`none`, `void`, empty, or the `none` default).
    Asked,
    /// It named none, and the host has none to place it on.
    HostHasNone,
    /// It named none, and every GPU is reserved for other ECS tasks (`sharing.reserved`).
    AllReserved,
}

/// A request read against the inventory, before the load is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// No GPU: the spec is left alone.
    Nothing(NoGpu),
    /// GPUs the container named, already resolved.
    Named(Assignment),
    /// `all`, named by the container: every GPU, less those unhealthy when decided.
    Every(Assignment),
    /// The policy places it.
    ByPolicy { task: Option<String> },
}

/// What `decide` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    Gpus(Assignment),
    Nothing(NoGpu),
}

/// Step one: what the request amounts to on this host. Named GPUs that do not exist are an
/// error here, before any lock is taken.
pub fn claim(request: &Request, inventory: &Inventory) -> Result<Claim, SelectError> {
    let named = |gpus| {
        Claim::Named(Assignment {
            gpus,
            kind: if request.reserves() {
                Kind::Reserved
            } else {
                Kind::Pinned
            },
            task: request.task.clone(),
        })
    };
    Ok(match &request.wants {
        Wants::Nothing => Claim::Nothing(NoGpu::Asked),
        Wants::Placed if inventory.gpus.is_empty() => Claim::Nothing(NoGpu::HostHasNone),
        Wants::Placed => Claim::ByPolicy {
            task: request.task.clone(),
        },
        Wants::All => match named(named::every(inventory, request.shown_value())?) {
            Claim::Named(a) => Claim::Every(a),
            other => other,
        },
        Wants::Named(refs) => named(named::resolve(refs, inventory, request.shown_value())?),
    })
}

impl Claim {
    /// Whether the live load decides this container's GPUs: then a state that cannot be read
    /// or written must stop the create. Otherwise the state only counts containers for
    /// `gpu-share list`, and a broken state dir must not stop containers.
    pub fn load_decides(&self, sharing: &SharingSection) -> bool {
        let limited = sharing.max_per_gpu.is_some();
        let reservations_bind = sharing.reserved != crate::config::Reserved::Shared;
        match self {
            Claim::Nothing(_) => false,
            Claim::Named(a) | Claim::Every(a) => {
                a.kind == Kind::Pinned && (limited || reservations_bind)
            }
            Claim::ByPolicy { .. } => {
                sharing.placement != Placement::All || limited || reservations_bind
            }
        }
    }

    /// Whether placement will compare free memory (spread's tie-break), so the NVML cache is
    /// worth reading into the inventory.
    pub fn reads_free_memory(&self, sharing: &SharingSection) -> bool {
        matches!(self, Claim::ByPolicy { .. }) && sharing.placement == Placement::Spread
    }
}

/// Step two, under the lock: the assignment. GPUs ECS reserved through the trusted channel are
/// given whatever the load: the limit steers placement, it does not overrule a scheduler that
/// already decided. GPUs a container named itself count against the limit and the reservations
/// like placed ones.
///
/// `unhealthy` (the GPUs the agent marked after a critical Xid) overrules everything: a named
/// or reserved unhealthy GPU is refused, `all` and the policies leave them out.
pub fn decide(
    claim: Claim,
    inventory: &Inventory,
    sharing: &SharingSection,
    load: &Load,
    unhealthy: &[Unhealthy],
) -> Result<Decided, PlacementError> {
    decide_within(claim, inventory, sharing, load, unhealthy, None)
}

/// `decide`, where `room` is given (`isolation.mode = "mps"`), also within capped memory:
/// the policy places only where the cap fits, and named GPUs, ECS's reserved ones included
/// (a cap is memory the GPU must have), are admitted only where it fits.
pub fn decide_within(
    claim: Claim,
    inventory: &Inventory,
    sharing: &SharingSection,
    load: &Load,
    unhealthy: &[Unhealthy],
    room: Option<&Room>,
) -> Result<Decided, PlacementError> {
    let admit_memory = |gpus: &[u32]| room.map_or(Ok(()), |r| r.admit(gpus));
    let claim = match claim {
        Claim::Every(mut a) => {
            a.gpus = policy::healthy_of(a.gpus, unhealthy)?;
            Claim::Named(a)
        }
        Claim::Named(a) => {
            policy::refuse_unhealthy(&a.gpus, unhealthy)?;
            Claim::Named(a)
        }
        other => other,
    };
    match claim {
        Claim::Nothing(why) => Ok(Decided::Nothing(why)),
        Claim::Named(a) | Claim::Every(a) if a.kind == Kind::Reserved => {
            admit_memory(&a.gpus)?;
            Ok(Decided::Gpus(a))
        }
        Claim::Named(a) | Claim::Every(a) => {
            policy::admit_named(&a.gpus, sharing, inventory, load, a.task.as_deref())?;
            admit_memory(&a.gpus)?;
            Ok(Decided::Gpus(a))
        }
        Claim::ByPolicy { task } => Ok(
            match policy::choose_within(sharing, inventory, load, task.as_deref(), unhealthy, room)?
            {
                Some(gpus) => Decided::Gpus(Assignment {
                    gpus,
                    kind: Kind::Shared,
                    task,
                }),
                None => Decided::Nothing(NoGpu::AllReserved),
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DefaultGpus, Reserved};
    use crate::request::Channel;
    use serde_json::json;

    fn request(env: &[&str], channel: Channel) -> Request {
        let spec = json!({"process": {"env": env}, "linux": {"cgroupsPath": "/ecs/t1/c"}});
        Request::from_spec(&spec, &SharingSection::default(), channel).unwrap()
    }

    fn full_load() -> Load {
        (0..4)
            .map(|i| {
                (
                    i,
                    GpuLoad {
                        containers: 1,
                        ..GpuLoad::default()
                    },
                )
            })
            .collect()
    }

    fn gpus(d: Decided) -> Assignment {
        match d {
            Decided::Gpus(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn default_all_on_a_host_without_gpus_gives_nothing() {
        let spec = json!({"process": {"env": []}});
        let sharing = SharingSection {
            default: DefaultGpus::All,
            ..SharingSection::default()
        };
        let r = Request::from_spec(&spec, &sharing, Channel::Default).unwrap();
        assert_eq!(
            claim(&r, &Inventory::synthetic(0)).unwrap(),
            Claim::Nothing(NoGpu::HostHasNone)
        );
    }

    #[test]
    fn only_the_nvidia_channel_reserves_and_passes_the_limit() {
        let inv = Inventory::synthetic(4);
        let sharing = SharingSection {
            placement: Placement::Pack,
            max_per_gpu: Some(1),
            ..SharingSection::default()
        };
        let pinned = claim(
            &request(&["NVIDIA_VISIBLE_DEVICES=3,1"], Channel::Default),
            &inv,
        )
        .unwrap();
        assert!(pinned.load_decides(&sharing));
        assert!(decide(pinned, &inv, &sharing, &full_load(), &[]).is_err());
        let via_ecs = claim(
            &request(&["NVIDIA_VISIBLE_DEVICES=3,1"], Channel::Nvidia),
            &inv,
        )
        .unwrap();
        assert!(!via_ecs.load_decides(&sharing));
        let a = gpus(decide(via_ecs, &inv, &sharing, &full_load(), &[]).unwrap());
        assert_eq!(a.gpus, vec![3, 1]);
        assert_eq!(a.kind, Kind::Reserved);
        assert_eq!(a.task.as_deref(), Some("t1"));
        let env_only = request(
            &[
                "ECS_CONTAINER_METADATA_URI_V4=x",
                "NVIDIA_VISIBLE_DEVICES=all",
            ],
            Channel::Default,
        );
        let a = gpus(
            decide(
                claim(&env_only, &inv).unwrap(),
                &inv,
                &SharingSection::default(),
                &Load::new(),
                &[],
            )
            .unwrap(),
        );
        assert_eq!(a.kind, Kind::Pinned);
        let placed = claim(&request(&[], Channel::Default), &inv).unwrap();
        assert!(placed.load_decides(&sharing));
        assert!(decide(placed, &inv, &sharing, &full_load(), &[]).is_err());
    }

    #[test]
    fn a_placed_container_with_every_gpu_reserved_for_others_gets_none() {
        let inv = Inventory::synthetic(1);
        let load: Load = [(
            0,
            GpuLoad {
                containers: 1,
                reserved: 1,
                reserved_for: vec![Some("other".into())],
            },
        )]
        .into();
        let sharing = SharingSection {
            reserved: Reserved::Task,
            ..SharingSection::default()
        };
        let placed = claim(&request(&[], Channel::Default), &inv).unwrap();
        assert!(placed.load_decides(&sharing));
        assert_eq!(
            decide(placed, &inv, &sharing, &load, &[]).unwrap(),
            Decided::Nothing(NoGpu::AllReserved)
        );
    }

    #[test]
    fn only_spread_reads_free_memory_and_only_a_limit_or_policy_needs_the_load() {
        let all = SharingSection::default();
        let spread = SharingSection {
            placement: Placement::Spread,
            ..SharingSection::default()
        };
        let by_policy = Claim::ByPolicy { task: None };
        assert!(!by_policy.load_decides(&all));
        assert!(by_policy.load_decides(&spread));
        assert!(by_policy.reads_free_memory(&spread));
        assert!(!by_policy.reads_free_memory(&all));
        assert!(!Claim::Nothing(NoGpu::Asked).reads_free_memory(&spread));
    }

    #[test]
    fn all_named_leaves_unhealthy_gpus_out_and_a_named_one_is_refused() {
        let inv = Inventory::synthetic(3);
        let sick = [Unhealthy {
            index: 1,
            uuid: None,
            since: "t".into(),
            xid: 79,
            message: String::new(),
        }];
        let sharing = SharingSection::default();
        let all = claim(
            &request(&["NVIDIA_VISIBLE_DEVICES=all"], Channel::Default),
            &inv,
        )
        .unwrap();
        let a = gpus(decide(all, &inv, &sharing, &Load::new(), &sick).unwrap());
        assert_eq!(a.gpus, vec![0, 2]);
        for channel in [Channel::Default, Channel::Nvidia] {
            let one = claim(&request(&["NVIDIA_VISIBLE_DEVICES=1"], channel), &inv).unwrap();
            let e = decide(one, &inv, &sharing, &Load::new(), &sick).unwrap_err();
            assert!(e.to_string().starts_with("GPU 1 is unhealthy"), "{e}");
        }
    }

    #[test]
    fn capped_memory_steers_spread_and_pack_and_names_every_gpu_when_full() {
        let inv = Inventory::synthetic(3); // 16 GiB each
        let capped = std::collections::BTreeMap::from([(0, 12288), (1, 4096), (2, 15360)]);
        let room = Room::new(&inv, crate::config::ByteSize(0), 4096, capped, "c").unwrap();
        let place = |placement| {
            let s = SharingSection {
                placement,
                ..SharingSection::default()
            };
            let c = claim(&request(&[], Channel::Default), &inv).unwrap();
            decide_within(c, &inv, &s, &Load::new(), &[], Some(&room))
        };
        assert_eq!(gpus(place(Placement::Spread).unwrap()).gpus, vec![1]);
        assert_eq!(gpus(place(Placement::Pack).unwrap()).gpus, vec![0]);
        let e = place(Placement::All).unwrap_err();
        assert!(e.to_string().contains("caps one GPU per container"), "{e}");
        let reserved = claim(
            &request(&["NVIDIA_VISIBLE_DEVICES=2"], Channel::Nvidia),
            &inv,
        );
        let s = SharingSection::default();
        let e = decide_within(reserved.unwrap(), &inv, &s, &Load::new(), &[], Some(&room));
        assert_eq!(
            e.unwrap_err().to_string(),
            "GPU 2 has not 4096 MiB of capped memory free for this container (GPU 0: 4096 MiB free of 16384, GPU 1: 12288 MiB free of 16384, GPU 2: 1024 MiB free of 16384); not starting it"
        );
    }
}
