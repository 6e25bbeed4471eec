//! The live load: how many containers each GPU holds, and how many of them are reservations.
//! Plain data, counted by `state` and read by `policy`.

use std::collections::BTreeMap;

/// Live containers on one GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GpuLoad {
    pub containers: u32,
    pub reserved: u32,
}

/// Load per GPU index.
pub type Load = BTreeMap<u32, GpuLoad>;
