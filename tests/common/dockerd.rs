//! A private dockerd whose default runtime is the shim, on a fake GPU host.
//!
//! It has its own data root, exec root and socket under one temp dir, no iptables, no bridge and
//! the vfs storage driver, so it runs beside anything else on the machine and needs no registry:
//! the busybox image is made with `docker import`. Started once per test binary; it is stopped
//! and its directory removed when the process exits (and killed by the kernel if the process dies
//! first). Directories left by a process that died are removed by the next start.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{busybox_rootfs, write_shim_config, FakeGpuHost};

/// The image every test container runs.
pub const IMAGE: &str = "gpu-share-test/busybox:latest";

const DIR_PREFIX: &str = "gpu-share-dockerd.";

/// The labels the ECS agent puts on the containers of a task (`com.amazonaws.ecs.*`).
pub struct EcsLabels<'a> {
    pub task_arn: &'a str,
    pub family: &'a str,
    pub container_name: &'a str,
    pub cluster: &'a str,
}

pub struct Dockerd {
    pub dir: PathBuf,
    pub sock: PathBuf,
    pub pid: i32,
    pub shim_config: PathBuf,
    pub shim_log: PathBuf,
    host: Option<FakeGpuHost>,
}

/// The docker CLI of the same release as the daemon where there is one (Debian's docker.io).
pub fn docker_cli() -> PathBuf {
    let debian = PathBuf::from("/usr/bin/docker");
    if debian.is_file() {
        debian
    } else {
        PathBuf::from("docker")
    }
}

impl Dockerd {
    /// Starts dockerd with `shim` registered as `gpu-share` and made the default runtime, and as
    /// `nvidia` through a link named `nvidia` (the trusted channel, as `gpu-share configure
    /// docker` registers it), on a fake host with `gpus` GPUs. `shim_extra` is appended to the
    /// shim's TOML config.
    pub fn start(shim: &Path, gpus: u32, shim_extra: &str) -> Dockerd {
        // dockerd runs the runtime from its own working directory: the path must be absolute.
        let shim = &shim
            .canonicalize()
            .unwrap_or_else(|e| panic!("runtime {}: {e}", shim.display()));
        let dir = private_dir();
        let host = FakeGpuHost::new_in(&dir, gpus);
        let (shim_config, shim_log) = write_shim_config(&dir, host.root(), shim_extra);
        let daemon_json = dir.join("daemon.json");
        let nvidia = dir.join("runtimes/nvidia");
        std::fs::create_dir_all(dir.join("runtimes")).unwrap();
        std::os::unix::fs::symlink(shim, &nvidia).unwrap();
        let config = serde_json::json!({
            "iptables": false,
            "ip-masq": false,
            "bridge": "none",
            "storage-driver": "vfs",
            "runtimes": {"gpu-share": {"path": shim}, "nvidia": {"path": nvidia}},
            "default-runtime": "gpu-share",
        });
        std::fs::write(&daemon_json, config.to_string()).unwrap();
        let flags = [
            "--config-file".to_owned(),
            daemon_json.display().to_string(),
        ];
        Dockerd::launch(dir, &flags, shim_config, shim_log, Some(host))
    }

    /// Starts dockerd configured by `flags` alone (plus its private data root, exec root, pid
    /// file and socket), with the shim reading `shim_config`. For configurations made by
    /// something else, as the AMI's provisioning script makes them.
    pub fn start_configured(flags: &[String], shim_config: PathBuf, shim_log: PathBuf) -> Dockerd {
        Dockerd::launch(private_dir(), flags, shim_config, shim_log, None)
    }

    fn launch(
        dir: PathBuf,
        flags: &[String],
        shim_config: PathBuf,
        shim_log: PathBuf,
        host: Option<FakeGpuHost>,
    ) -> Dockerd {
        let sock = dir.join("docker.sock");
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let mut cmd = Command::new("dockerd");
        cmd.args(flags)
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("--host")
            .arg(format!("unix://{}", sock.display()))
            .env("GPU_SHARE_CONFIG", &shim_config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let pid = spawn_tied_to_process(cmd);
        register_exit_stop(pid, dir.clone());
        let dockerd = Dockerd {
            dir,
            sock,
            pid,
            shim_config,
            shim_log,
            host,
        };
        dockerd.wait_ready();
        dockerd.import_busybox();
        dockerd
    }

    /// The daemon's address, `unix:///.../docker.sock`, for `-H` and `docker_host`.
    pub fn url(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    pub fn host_root(&self) -> &Path {
        self.host().root()
    }

    /// The fake GPU host the shim's `devices.root` points at.
    pub fn host(&self) -> &FakeGpuHost {
        self.host
            .as_ref()
            .expect("a dockerd started on a fake host")
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.sock.exists() && self.docker(&["version"]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("dockerd did not come up in 60 s; its log:\n{}", self.log());
    }

    fn import_busybox(&self) {
        let rootfs = self.dir.join("busybox-rootfs");
        busybox_rootfs(&rootfs);
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .expect("tar");
        let out = Command::new(docker_cli())
            .arg("-H")
            .arg(self.url())
            .args(["import", "-", IMAGE])
            .stdin(tar.stdout.take().expect("tar stdout"))
            .output()
            .expect("docker import");
        assert!(tar.wait().expect("tar").success(), "tar failed");
        assert!(
            out.status.success(),
            "docker import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs the docker CLI against this daemon.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new(docker_cli())
            .arg("-H")
            .arg(self.url())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("docker CLI")
    }

    /// Like `docker`, but panics with docker's stderr unless it succeeds; returns stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a detached container of `IMAGE` (no network, sleeping two minutes) labelled as the
    /// ECS agent labels a task's container, with `env` (`NAME=value`) set; its (id, pid).
    pub fn run_ecs_task_container(&self, labels: &EcsLabels, env: &[&str]) -> (String, String) {
        let label_args = [
            format!("com.amazonaws.ecs.task-arn={}", labels.task_arn),
            format!("com.amazonaws.ecs.task-definition-family={}", labels.family),
            format!("com.amazonaws.ecs.container-name={}", labels.container_name),
            format!("com.amazonaws.ecs.cluster={}", labels.cluster),
        ];
        let mut args = vec!["run", "-d", "--network", "none"];
        for label in &label_args {
            args.extend(["--label", label.as_str()]);
        }
        for e in env {
            args.extend(["--env", e]);
        }
        args.extend([IMAGE, "sleep", "120"]);
        let id = self.docker_ok(&args).trim().to_owned();
        let pid = self
            .docker_ok(&["inspect", "--format", "{{.State.Pid}}", &id])
            .trim()
            .to_owned();
        (id, pid)
    }

    /// Stops dockerd, waits for it, and removes its directory.
    pub fn stop(&self) {
        stop_and_remove(self.pid, &self.dir);
    }
}

/// A new directory for one private dockerd, after removing those of dead test processes.
fn private_dir() -> PathBuf {
    remove_stale_dirs();
    tempfile::Builder::new()
        .prefix(&format!("{DIR_PREFIX}{}.", std::process::id()))
        .tempdir()
        .expect("temp dir")
        .keep()
}

/// Spawns `cmd` from a thread that lives as long as the process, so the child's parent-death
/// signal (which follows the spawning *thread*) fires only when the whole process is gone.
/// An `atexit` handler stops it cleanly on a normal exit.
fn spawn_tied_to_process(mut cmd: Command) -> i32 {
    use std::os::unix::process::CommandExt;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn();
        let _ = tx.send(child.map(|c| c.id() as i32));
        loop {
            std::thread::park();
        }
    });
    rx.recv().unwrap().expect("start dockerd")
}

static STARTED: std::sync::Mutex<Vec<(i32, PathBuf)>> = std::sync::Mutex::new(Vec::new());

/// Stops the dockerd and removes its directory when this process exits normally.
fn register_exit_stop(pid: i32, dir: PathBuf) {
    extern "C" fn at_exit() {
        let started = STARTED.lock().map(|p| p.clone()).unwrap_or_default();
        for (pid, dir) in started {
            stop_and_remove(pid, &dir);
        }
    }
    let mut started = STARTED.lock().unwrap();
    if started.is_empty() {
        // SAFETY: registering a plain extern "C" function.
        unsafe {
            libc::atexit(at_exit);
        }
    }
    started.push((pid, dir));
}

fn stop_and_remove(pid: i32, dir: &Path) {
    // SAFETY: plain syscalls on a pid this process started.
    unsafe {
        if libc::kill(pid, libc::SIGTERM) == 0 {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut status = 0;
            while Instant::now() < deadline {
                if libc::waitpid(pid, &mut status, libc::WNOHANG) != 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    remove_dir(dir);
}

/// Unmounts whatever is still mounted below `dir`, then removes it.
fn remove_dir(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut below: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect();
    below.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in below {
        if let Ok(c) = std::ffi::CString::new(m) {
            // SAFETY: umount2 with a valid C string.
            unsafe {
                libc::umount2(c.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Removes the directories of private dockerds whose test process is gone.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(DIR_PREFIX) else {
            continue;
        };
        let owner: Option<i32> = rest.split('.').next().and_then(|p| p.parse().ok());
        let alive = owner.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let leftover = std::fs::read_to_string(e.path().join("dockerd.pid"))
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
                .filter(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|c| c.trim() == "dockerd")
                });
            if let Some(pid) = leftover {
                // SAFETY: a signal to a leftover dockerd, if one still runs under that pid.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            remove_dir(&e.path());
        }
    }
}
