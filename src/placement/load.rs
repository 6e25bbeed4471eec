//! The live load: how many containers each GPU holds, and which of them are ECS reservations
//! (with the task each was reserved for). Plain data, counted by `state` and read by `policy`
//! and `access`.

use std::collections::BTreeMap;

/// Live containers on one GPU.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GpuLoad {
    pub containers: u32,
    pub reserved: u32,
    /// The ECS task of each reservation on this GPU (`None`: a reservation outside any task).
    pub reserved_for: Vec<Option<String>>,
}

/// Load per GPU index.
pub type Load = BTreeMap<u32, GpuLoad>;
