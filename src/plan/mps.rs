//! The MPS edit: a container capped by one of gpu-share's MPS daemons (docs/isolation.md).
//!
//! It mounts that daemon's pipe directory (and no other MPS pipe directory), points
//! `CUDA_MPS_PIPE_DIRECTORY` at it, strips every other `CUDA_MPS_*` the tenant set, and gives
//! the container a private `/dev/shm` when the spec has none. Spec in, spec out: it never asks a
//! daemon anything and never chooses one (the create path does both, and fails closed first).
//! `Plan::with_mps` adds it, in `mps` mode only, to a container that gets a GPU.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::spec::{array_at, as_object, Appender, ShapeError};

use super::build::PlanError;
use super::env;

/// The variable every MPS client reads to find its daemon.
pub const PIPE_DIRECTORY: &str = "CUDA_MPS_PIPE_DIRECTORY";
/// Where other MPS daemons listen: ECS's `nvidia-mps.service` and CUDA's default. A container
/// that could see one could take an uncapped server there.
pub const FOREIGN_PIPE_DIRS: [&str; 2] = ["/run/mps-ecs", "/tmp/nvidia-mps"];
const SHM: &str = "/dev/shm";

/// The daemon a container is a client of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpsClient {
    /// Its pipe directory on the host, mounted at the same path in the container.
    pub pipe_dir: PathBuf,
    /// `isolation.dir`: pipe directories of gpu-share's other daemons live under it.
    pub owned_root: PathBuf,
}

/// Applies the edit; returns whether the spec changed. A spec without `process` is left for
/// runc to refuse, as `env::set` does. The mounts an earlier edit added (CDI's) are read back
/// first: every mount is checked, whoever added it.
pub fn apply(
    root: &mut Map<String, Value>,
    client: &MpsClient,
    to: &Appender<'_>,
) -> Result<bool, PlanError> {
    let pipe = client.pipe_dir.display().to_string();
    let mut changed = strip_tenant_env(root)?;
    changed |= env::set(root, PIPE_DIRECTORY, &pipe)?;
    let mounts = array_at(root, "mounts", "mounts")?;
    to.read_back(mounts)?;
    let before = mounts.len();
    mounts.retain(|m| !reaches_another_daemon(m, client));
    changed |= mounts.len() != before;
    if !mounts.iter().any(|m| is_pipe_mount(m, &pipe)) {
        mounts.push(json!({
            "destination": pipe,
            "type": "bind",
            "source": pipe,
            "options": ["rbind", "rw", "nosuid", "nodev", "noexec"],
        }));
        changed = true;
    }
    // A task's own /dev/shm (docker's --shm-size, ECS's sharedMemorySize) is kept as it is.
    if !mounts.iter().any(|m| destination(m) == Some(SHM)) {
        mounts.push(json!({
            "destination": SHM,
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        }));
        changed = true;
    }
    Ok(changed)
}

/// Removes every `CUDA_MPS_*` but the pipe directory (set after): a tenant's caps could only
/// lower the daemon's, but a log directory or another daemon's settings have no business here,
/// and one rule is easier to trust than a list.
fn strip_tenant_env(root: &mut Map<String, Value>) -> Result<bool, ShapeError> {
    let Some(process) = root.get_mut("process") else {
        return Ok(false);
    };
    let env = array_at(as_object(process, "process")?, "env", "process.env")?;
    let before = env.len();
    env.retain(|e| {
        e.as_str()
            .and_then(|s| s.split_once('=').map(|(k, _)| k))
            .is_none_or(|k| !k.starts_with("CUDA_MPS_") || k == PIPE_DIRECTORY)
    });
    Ok(env.len() != before)
}

fn destination(mount: &Value) -> Option<&str> {
    mount.get("destination")?.as_str()
}

fn source(mount: &Value) -> Option<&str> {
    mount.get("source")?.as_str()
}

fn is_pipe_mount(mount: &Value, pipe: &str) -> bool {
    destination(mount) == Some(pipe) && source(mount) == Some(pipe)
}

/// A mount that would let the container reach a daemon other than its own: ECS's or CUDA's
/// default pipe directory (or inside one), another of gpu-share's, or anything else at our
/// destination.
fn reaches_another_daemon(mount: &Value, client: &MpsClient) -> bool {
    let pipe = client.pipe_dir.as_path();
    if destination(mount).map(Path::new) == Some(pipe) {
        return source(mount).map(Path::new) != Some(pipe);
    }
    let Some(src) = source(mount).map(Path::new) else {
        return false;
    };
    let foreign = FOREIGN_PIPE_DIRS.iter().any(|d| src.starts_with(d));
    let ours_elsewhere = src.starts_with(&client.owned_root) && !src.starts_with(pipe);
    // A task's mount of a parent (`/run`, `/tmp`) is its own and stays: docs/isolation.md says
    // such a container can reach other daemons.
    foreign || ours_elsewhere
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdi::edits::{CdiMount, Injected};
    use crate::gpu::Inventory;
    use crate::placement::{Assignment, Kind};
    use crate::plan::{Driver, Plan};

    fn client() -> MpsClient {
        MpsClient {
            pipe_dir: PathBuf::from("/run/gpu-share/mps/gpu0-4096M-50pct/pipe"),
            owned_root: PathBuf::from("/run/gpu-share/mps"),
        }
    }

    const PIPE: &str = "/run/gpu-share/mps/gpu0-4096M-50pct/pipe";

    fn spec(env: &[&str], mounts: Value) -> Value {
        json!({"ociVersion": "1.0.2", "process": {"env": env, "args": ["sh"]}, "mounts": mounts, "x-unknown": 1})
    }

    fn run(spec: &mut Value) -> bool {
        apply(spec.as_object_mut().unwrap(), &client(), &Appender::Values).unwrap()
    }

    fn env_of(spec: &Value) -> Vec<&str> {
        spec["process"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect()
    }

    #[test]
    fn mps_client_gets_its_daemon_pipe_dir_and_nothing_of_the_tenants() {
        let mut s = spec(
            &[
                "PATH=/bin",
                "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=81920M",
                "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=100",
                "CUDA_MPS_PIPE_DIRECTORY=/run/mps-ecs",
                "CUDA_MPS_LOG_DIRECTORY=/var/log/nvidia-mps",
            ],
            json!([]),
        );
        assert!(run(&mut s));
        assert_eq!(
            env_of(&s),
            [
                "PATH=/bin",
                &format!("CUDA_MPS_PIPE_DIRECTORY={PIPE}") as &str
            ]
        );
        assert_eq!(s["x-unknown"], 1);
        let mounts = s["mounts"].as_array().unwrap();
        assert_eq!(mounts[0]["destination"], PIPE);
        assert_eq!(mounts[0]["source"], PIPE);
        assert_eq!(mounts[0]["type"], "bind");
        assert_eq!(mounts[1]["destination"], "/dev/shm");
        assert_eq!(mounts[1]["type"], "tmpfs");
    }

    #[test]
    fn mps_client_loses_mounts_of_other_daemons() {
        let mut s = spec(
            &[],
            json!([
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/run/mps-ecs", "type": "bind", "source": "/run/mps-ecs"},
                {"destination": "/mps", "type": "bind", "source": "/tmp/nvidia-mps"},
                {"destination": "/x", "type": "bind", "source": "/run/gpu-share/mps/gpu0-8192M/pipe"},
                {"destination": "/host-tmp", "type": "bind", "source": "/tmp"},
                {"destination": PIPE, "type": "bind", "source": "/tmp/evil"},
                {"destination": "/data", "type": "bind", "source": "/srv/data"},
            ]),
        );
        assert!(run(&mut s));
        let dests: Vec<&str> = s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(destination)
            .collect();
        assert_eq!(dests, ["/proc", "/host-tmp", "/data", PIPE, "/dev/shm"]);
    }

    #[test]
    fn mps_client_keeps_the_tasks_own_dev_shm() {
        let own = json!({"destination": "/dev/shm", "type": "bind",
            "source": "/var/lib/docker/containers/abc/mounts/shm", "options": ["rbind", "size=2g"]});
        let mut s = spec(&[], json!([own.clone()]));
        assert!(run(&mut s));
        let shm: Vec<&Value> = s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| destination(m) == Some("/dev/shm"))
            .collect();
        assert_eq!(shm, [&own]);
    }

    #[test]
    fn mps_edit_twice_is_the_edit_once() {
        let mut s = spec(&["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=10"], json!([]));
        assert!(run(&mut s));
        let once = s.clone();
        assert!(!run(&mut s));
        assert_eq!(s, once);
    }

    #[test]
    fn mps_edit_refuses_mounts_that_are_not_an_array() {
        let mut s = json!({"process": {"env": []}, "mounts": {"a": 1}});
        let e = apply(s.as_object_mut().unwrap(), &client(), &Appender::Values).unwrap_err();
        assert!(e.to_string().contains("mounts"), "{e}");
    }

    fn docker_like() -> Value {
        json!({"process": {"env": ["PATH=/bin"]}, "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}], "linux": {}})
    }

    #[test]
    fn mps_after_cdi_judges_cdi_mounts_kept_as_text_as_it_judges_built_ones() {
        let mount = |dest: &str| CdiMount {
            host_path: dest.to_owned(),
            container_path: dest.to_owned(),
            kind: None,
            options: vec!["ro".into(), "rbind".into()],
        };
        let cdi = Injected {
            nodes: Inventory::synthetic(1).gpus[0..1]
                .iter()
                .map(|g| g.node.clone())
                .collect(),
            // One a CDI spec could carry that would reach another MPS daemon: the MPS edit drops it.
            mounts: vec![mount("/usr/lib64/libcuda.so.1"), mount("/tmp/nvidia-mps")],
            hooks: vec![],
            env: vec![],
        };
        let assignment = Assignment {
            gpus: vec![0],
            kind: Kind::Shared,
            task: None,
        };
        let plan = Plan::new(&assignment, &Inventory::synthetic(1), Driver::Cdi(cdi)).with_mps(
            MpsClient {
                pipe_dir: PathBuf::from("/run/gpu-share/mps/0"),
                owned_root: PathBuf::from("/run/gpu-share/mps"),
            },
        );
        let mut built = docker_like();
        plan.apply(&mut built).unwrap();
        let dests: Vec<&Value> = built["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| &m["destination"])
            .collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/usr/lib64/libcuda.so.1",
                "/run/gpu-share/mps/0",
                "/dev/shm"
            ]
        );

        let text = serde_json::to_vec(&docker_like()).unwrap();
        let (mut kept, mut raw) = crate::spec::parse(text, "config.json").unwrap();
        crate::spec::expand(&mut kept, &raw, &plan.paths(), "config.json").unwrap();
        plan.apply_with(&mut kept, &mut Appender::Text(&mut raw))
            .unwrap();
        let written = crate::spec::to_vec(&kept, &raw);
        assert_eq!(written, serde_json::to_vec(&built).unwrap());
    }
}
