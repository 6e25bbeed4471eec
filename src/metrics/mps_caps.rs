//! Each container's MPS memory cap (`isolation.mode = "mps"`), for `TaskGPUMemoryLimit` next to
//! its use: read from the placement state file the create path records caps in.
//!
//! Read-only: it reads the state file (under its lock, as `gpu-share list` does) at most once
//! per `REFRESH`, and never writes it or reconciles it. A state it cannot read gives no
//! limits: the use is still published, the limit is absent rather than wrong.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::placement::state;

/// How long one read of the state file answers for: the agent samples every few seconds, and
/// a cap never changes while its container lives.
const REFRESH: Duration = Duration::from_secs(5);
const MIB: u64 = 1 << 20;

/// Container id to its memory cap in bytes, refreshed from `<state.dir>`.
pub struct CapsByContainer {
    dir: PathBuf,
    cached: RefCell<Option<(Instant, HashMap<String, u64>)>>,
}

impl CapsByContainer {
    pub fn new(dir: PathBuf) -> CapsByContainer {
        CapsByContainer {
            dir,
            cached: RefCell::new(None),
        }
    }

    /// The memory cap of container `id`, in bytes, where it was capped.
    pub fn memory_limit(&self, id: &str) -> Option<u64> {
        let mut cached = self.cached.borrow_mut();
        if cached
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() >= REFRESH)
        {
            *cached = Some((Instant::now(), read(&self.dir)));
        }
        cached.as_ref()?.1.get(id).copied()
    }
}

fn read(dir: &std::path::Path) -> HashMap<String, u64> {
    let Ok(assignments) = state::read(dir) else {
        return HashMap::new();
    };
    assignments
        .containers
        .into_iter()
        .filter_map(|e| Some((e.id, e.caps?.memory_mib * MIB)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_recorded_by_the_create_are_read_by_container_id() {
        let dir = tempfile::tempdir().unwrap();
        let text = r#"{"version":1,"containers":[
            {"id":"abc","root":"/run/runc","gpus":[0],"kind":"shared","pid":1,"start_time":0,"created":"t","caps":{"memory_mib":4096,"compute_percent":50}},
            {"id":"old","root":"/run/runc","gpus":[0],"kind":"shared","pid":1,"start_time":0,"created":"t"}]}"#;
        std::fs::write(dir.path().join("placements.json"), text).unwrap();
        let caps = CapsByContainer::new(dir.path().to_path_buf());
        assert_eq!(caps.memory_limit("abc"), Some(4096 * MIB));
        assert_eq!(caps.memory_limit("old"), None);
        assert_eq!(caps.memory_limit("nope"), None);
        let missing = CapsByContainer::new(dir.path().join("none"));
        assert_eq!(missing.memory_limit("abc"), None);
    }
}
