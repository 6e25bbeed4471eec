//! OCI bundles for the shim to edit: the docker-like fixture spec, or runc's own default spec over
//! a busybox root filesystem; either with its process's args and env changed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// The config.json dockerd writes for `docker run IMAGE sh`: its rootfs lives elsewhere, so a
/// bundle made from it can be edited by the shim but not run by a real runc.
pub const DOCKER_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/docker-config.json"
);

/// A bundle to be written into a directory: its spec, and whether a root filesystem goes with it.
#[derive(Clone)]
pub struct Bundle {
    spec: Value,
    busybox_rootfs: bool,
}

impl Bundle {
    /// The docker-like spec of [`DOCKER_FIXTURE`], with no root filesystem.
    pub fn docker() -> Bundle {
        let bytes = std::fs::read(DOCKER_FIXTURE).expect("the docker-like fixture");
        Bundle {
            spec: serde_json::from_slice(&bytes).expect("the fixture is JSON"),
            busybox_rootfs: false,
        }
    }

    /// runc's default spec (`runc spec`), made non-interactive, over a busybox root filesystem
    /// written into the bundle: a bundle a real runc runs.
    pub fn busybox() -> Bundle {
        let mut spec = runc_default_spec().clone();
        spec["process"]["terminal"] = false.into();
        Bundle {
            spec,
            busybox_rootfs: true,
        }
    }

    /// Its root filesystem is `rootfs`, shared and read-only, instead of a copy in the bundle.
    pub fn shared_rootfs(mut self, rootfs: &Path) -> Bundle {
        self.spec["root"] = serde_json::json!({"path": rootfs, "readonly": true});
        self.busybox_rootfs = false;
        self
    }

    /// The container runs `args`.
    pub fn args(mut self, args: &[&str]) -> Bundle {
        self.spec["process"]["args"] = args.iter().map(|a| Value::from(*a)).collect();
        self
    }

    /// `env` (`NAME=value` each) appended to the process's environment.
    pub fn env(mut self, env: &[&str]) -> Bundle {
        let envs = self.spec["process"]["env"]
            .as_array_mut()
            .expect("process.env is an array");
        envs.extend(env.iter().map(|e| Value::from(*e)));
        self
    }

    /// Its cgroup path, as dockerd writes it from a cgroup parent: the ECS agent's
    /// `/ecs/<task id>/<container>` marks a container of an ECS task.
    pub fn cgroups_path(mut self, path: &str) -> Bundle {
        self.spec["linux"]["cgroupsPath"] = Value::from(path);
        self
    }

    /// The container asks for `NVIDIA_VISIBLE_DEVICES=value`.
    pub fn visible_devices(self, value: &str) -> Bundle {
        self.env(&[&format!("NVIDIA_VISIBLE_DEVICES={value}")])
    }

    pub fn spec(&self) -> &Value {
        &self.spec
    }

    /// The spec as dockerd writes it: compact, one line. The unchanged fixture comes out as the
    /// fixture file's own bytes.
    pub fn spec_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(&self.spec).unwrap();
        bytes.push(b'\n');
        bytes
    }

    /// Writes the bundle into `dir` (made if missing): config.json, and the root filesystem if
    /// it has one. Returns `dir`.
    pub fn write(&self, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        if self.busybox_rootfs {
            busybox_rootfs(&dir.join("rootfs"));
        }
        std::fs::write(dir.join("config.json"), self.spec_bytes()).unwrap();
        dir.to_path_buf()
    }
}

/// `runc spec`'s output, asked of runc once per process.
fn runc_default_spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("runc")
            .args(["spec", "--bundle"])
            .arg(dir.path())
            .status()
            .expect("runc spec");
        assert!(status.success(), "runc spec failed");
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap()
    })
}

/// The static busybox from Debian's busybox-static.
pub fn busybox() -> PathBuf {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| super::which("busybox"))
        .expect("busybox (busybox-static) is installed")
}

/// A root filesystem with busybox and a symlink per applet.
pub fn busybox_rootfs(rootfs: &Path) {
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for d in ["proc", "sys", "dev", "etc", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy(busybox(), bin.join("busybox")).unwrap();
    // Ask the host's busybox: executing the fresh copy races with other threads' forks, which
    // can still hold it open for writing (ETXTBSY).
    let list = Command::new(busybox())
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
        }
    }
}
