//! Which GPUs a container gets: the one home of that question.
//!
//! Two steps, both pure, so that a bad request never waits on the lock:
//! - `claim`, before the lock: a request that names GPUs (indices, UUIDs, `all`) is resolved
//!   against the inventory now; one that names none is left to the policy.
//! - `decide`, under the lock: the policy (`policy`) places what is left, given the live load
//!   the flock'd state file (`state`) holds.
//!
//! The answer is an `Assignment`: GPU indices and how the container came to hold them. Only
//! `state` touches the world here; nothing in this module writes the spec.

mod load;
pub mod named;
pub mod policy;
pub mod state;

use crate::config::{Placement, SharingSection};
use crate::gpu::Inventory;
use crate::request::{Request, Wants};

pub use load::{GpuLoad, Load};
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
    /// ECS reserved these GPUs for its task (the agent named them in the task's env).
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
}

/// Why a container gets no GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoGpu {
    /// It asked for none (`none`, `void`, empty, or the `none` default).
    Asked,
    /// It named none, and the host has none to place it on.
    HostHasNone,
}

/// A request read against the inventory, before the load is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// No GPU: the spec is left alone.
    Nothing(NoGpu),
    /// GPUs the container named, already resolved.
    Named(Assignment),
    /// The policy places it.
    ByPolicy,
}

/// Step one: what the request amounts to on this host. Named GPUs that do not exist are an
/// error here, before any lock is taken.
pub fn claim(request: &Request, inventory: &Inventory) -> Result<Claim, SelectError> {
    let named_kind = if request.ecs_task {
        Kind::Reserved
    } else {
        Kind::Pinned
    };
    let named = |gpus| {
        Claim::Named(Assignment {
            gpus,
            kind: named_kind,
        })
    };
    Ok(match &request.wants {
        Wants::Nothing => Claim::Nothing(NoGpu::Asked),
        Wants::Placed if inventory.gpus.is_empty() => Claim::Nothing(NoGpu::HostHasNone),
        Wants::Placed => Claim::ByPolicy,
        Wants::All => named(named::every(inventory, request.shown_value())?),
        Wants::Named(refs) => named(named::resolve(refs, inventory, request.shown_value())?),
    })
}

impl Claim {
    /// Whether the live load decides this container's GPUs: then a state that cannot be read
    /// or written must stop the create. Otherwise the state only counts containers for
    /// `gpu-share list`, and a broken state dir must not stop containers.
    pub fn load_decides(&self, sharing: &SharingSection) -> bool {
        matches!(self, Claim::ByPolicy)
            && (sharing.placement != Placement::All || sharing.max_per_gpu.is_some())
    }

    /// Whether placement will compare free memory (spread's tie-break), so the NVML cache is
    /// worth reading into the inventory.
    pub fn reads_free_memory(&self, sharing: &SharingSection) -> bool {
        matches!(self, Claim::ByPolicy) && sharing.placement == Placement::Spread
    }
}

/// Step two, under the lock: the assignment. Named GPUs (ECS reservations above all) are given
/// even past `sharing.max_per_gpu`: the limit steers placement, it does not overrule a
/// scheduler that already decided.
pub fn decide(
    claim: Claim,
    inventory: &Inventory,
    sharing: &SharingSection,
    load: &Load,
) -> Result<Assignment, PlacementError> {
    match claim {
        Claim::Nothing(_) => Ok(Assignment {
            gpus: Vec::new(),
            kind: Kind::Shared,
        }),
        Claim::Named(assignment) => Ok(assignment),
        Claim::ByPolicy => Ok(Assignment {
            gpus: policy::choose(sharing.placement, sharing.max_per_gpu, inventory, load)?,
            kind: Kind::Shared,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DefaultGpus;
    use serde_json::json;

    fn request(env: &[&str], default: DefaultGpus) -> Request {
        Request::from_spec(&json!({"process": {"env": env}}), default).unwrap()
    }

    #[test]
    fn default_all_on_a_host_without_gpus_gives_nothing() {
        let r = request(&[], DefaultGpus::All);
        assert_eq!(
            claim(&r, &Inventory::synthetic(0)).unwrap(),
            Claim::Nothing(NoGpu::HostHasNone)
        );
    }

    #[test]
    fn named_gpus_are_pinned_or_reserved_and_pass_the_limit() {
        let inv = Inventory::synthetic(4);
        let sharing = SharingSection {
            placement: Placement::Pack,
            max_per_gpu: Some(1),
            ..SharingSection::default()
        };
        let full: Load = (0..4)
            .map(|i| {
                (
                    i,
                    GpuLoad {
                        containers: 1,
                        reserved: 0,
                    },
                )
            })
            .collect();
        let pinned = claim(
            &request(&["NVIDIA_VISIBLE_DEVICES=3,1"], DefaultGpus::All),
            &inv,
        )
        .unwrap();
        assert!(!pinned.load_decides(&sharing));
        let a = decide(pinned, &inv, &sharing, &full).unwrap();
        assert_eq!(
            a,
            Assignment {
                gpus: vec![3, 1],
                kind: Kind::Pinned
            }
        );
        let ecs = request(
            &[
                "ECS_CONTAINER_METADATA_URI_V4=x",
                "NVIDIA_VISIBLE_DEVICES=all",
            ],
            DefaultGpus::All,
        );
        let a = decide(claim(&ecs, &inv).unwrap(), &inv, &sharing, &full).unwrap();
        assert_eq!(a.kind, Kind::Reserved);
        assert_eq!(a.gpus, vec![0, 1, 2, 3]);
        let placed = claim(&request(&[], DefaultGpus::All), &inv).unwrap();
        assert!(placed.load_decides(&sharing));
        assert!(decide(placed, &inv, &sharing, &full).is_err());
    }

    #[test]
    fn only_spread_reads_free_memory_and_only_a_limit_or_policy_needs_the_load() {
        let all = SharingSection::default();
        let spread = SharingSection {
            placement: Placement::Spread,
            ..SharingSection::default()
        };
        assert!(!Claim::ByPolicy.load_decides(&all));
        assert!(Claim::ByPolicy.load_decides(&spread));
        assert!(Claim::ByPolicy.reads_free_memory(&spread));
        assert!(!Claim::ByPolicy.reads_free_memory(&all));
        assert!(!Claim::Nothing(NoGpu::Asked).reads_free_memory(&spread));
    }
}
