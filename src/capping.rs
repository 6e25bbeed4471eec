//! The create path's `mps` steps (docs/isolation.md), so that `create` calls each in one line:
//! the container's caps (before the lock), the capped memory on each GPU (under it), and the
//! daemon for its GPU and cap class, made ready (started on first use) before its spec points
//! at it.
//!
//! It owns the order and the fail-closed rule only: a container that should be capped and
//! cannot be is refused, never started uncapped. It never edits a spec (`plan::mps` does) and
//! never chooses a GPU (`placement` does). In `isolation.mode = "none"` it is never reached.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::caps::{Caps, CapsError};
use crate::config::{Config, IsolationMode};
use crate::gpu::Inventory;
use crate::mps::{Daemon, DaemonError, Limits, Ready};
use crate::placement::state::Assignments;
use crate::placement::{MemoryError, Room};
use crate::plan::mps::MpsClient;
use crate::request::Request;

/// One container's caps, and the user its daemon serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capping {
    pub caps: Caps,
    /// `process.user.uid` when not root: non-root users get daemons of their own (a daemon
    /// runs one server per UID at a time).
    pub uid: Option<u32>,
}

/// The daemon a container was pointed at, for the shim's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub client: MpsClient,
    pub daemon: String,
    pub ready: Ready,
}

impl Capping {
    /// The caps of a container that wants a GPU, in `mps` mode; `None` otherwise.
    pub fn read(
        spec: &Value,
        config: &Config,
        request: &Request,
    ) -> Result<Option<Capping>, CapsError> {
        let iso = &config.isolation;
        if iso.mode != IsolationMode::Mps || !request.wants_gpus() {
            return Ok(None);
        }
        let caps = Caps::from_spec(spec, iso, request.channel)?;
        let uid = spec
            .pointer("/process/user/uid")
            .and_then(Value::as_u64)
            .and_then(|u| u32::try_from(u).ok())
            .filter(|&u| u != 0);
        Ok(Some(Capping { caps, uid }))
    }

    /// The capped memory on each GPU given the live `assignments`.
    pub fn room(
        &self,
        inventory: &Inventory,
        config: &Config,
        assignments: &Assignments,
    ) -> Result<Room, MemoryError> {
        let cache = config.state.dir.join(crate::gpu::cache::CACHE_FILE);
        Room::new(
            inventory,
            config.isolation.reserved_memory,
            self.caps.memory_mib,
            capped_of(assignments),
            &cache.display().to_string(),
        )
    }

    /// The daemon for `gpu` and these caps, ready (started now if it was not running): the
    /// client the spec edit points the container at. Any doubt is an error.
    pub fn client(
        &self,
        config: &Config,
        inventory: &Inventory,
        gpu: u32,
    ) -> Result<Client, DaemonError> {
        let iso = &config.isolation;
        let daemon = Daemon::for_user(iso, gpu, Limits::from(self.caps), self.uid);
        // The UUID, as NVIDIA's MPS docs advise (as `gpu-share mps start` gives it).
        let visible = inventory
            .gpu(gpu)
            .and_then(|g| g.info.uuid.clone())
            .unwrap_or_else(|| gpu.to_string());
        let ready = daemon.ready(iso, &visible)?;
        Ok(Client {
            client: MpsClient {
                pipe_dir: daemon.pipe_dir.clone(),
                owned_root: iso.dir.clone(),
            },
            daemon: daemon.name(),
            ready,
        })
    }
}

/// The live caps per GPU (`Entry::caps`), MiB: what admission by memory counts.
fn capped_of(assignments: &Assignments) -> BTreeMap<u32, u64> {
    let mut capped = BTreeMap::new();
    for e in &assignments.containers {
        let Some(c) = e.caps else { continue };
        for &g in &e.gpus {
            *capped.entry(g).or_insert(0) += c.memory_mib;
        }
    }
    capped
}

impl Client {
    /// `mps=gpu0-4096M-50pct (started)`, for the shim's log.
    pub fn describe(&self) -> String {
        let how = match self.ready {
            Ready::Started => "started",
            Ready::Answered => "answered",
            Ready::Listening => "listening",
        };
        format!("{} ({how})", self.daemon)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ByteSize;
    use crate::request::Channel;
    use serde_json::json;

    fn config(mode: IsolationMode) -> Config {
        let mut c = Config::default();
        c.isolation.mode = mode;
        c.isolation.memory = Some(ByteSize(1 << 30));
        c
    }

    fn read(spec: Value, mode: IsolationMode) -> Option<Capping> {
        let c = config(mode);
        let r = Request::from_spec(&spec, &c.sharing, Channel::Default).unwrap();
        Capping::read(&spec, &c, &r).unwrap()
    }

    #[test]
    fn only_mps_mode_and_a_gpu_are_capped() {
        let spec = json!({"process": {"env": ["NVIDIA_VISIBLE_DEVICES=0"]}});
        assert_eq!(read(spec.clone(), IsolationMode::None), None);
        let got = read(spec, IsolationMode::Mps).unwrap();
        assert_eq!(got.caps.memory_mib, 1024);
        let none = json!({"process": {"env": ["NVIDIA_VISIBLE_DEVICES=none"]}});
        assert_eq!(read(none, IsolationMode::Mps), None);
    }

    #[test]
    fn a_non_root_user_gets_a_daemon_of_its_own_and_root_the_shared_one() {
        let user = |uid: u64| json!({"process": {"env": ["NVIDIA_VISIBLE_DEVICES=0"], "user": {"uid": uid, "gid": 0}}});
        assert_eq!(read(user(0), IsolationMode::Mps).unwrap().uid, None);
        assert_eq!(
            read(user(1000), IsolationMode::Mps).unwrap().uid,
            Some(1000)
        );
    }
}
