//! One MPS control daemon gpu-share owns: one GPU, one cap class, its own pipe and log
//! directories under `isolation.dir`, named for what it holds (`gpu0-4096M-50pct`).
//!
//! Starting it, setting its limits, asking whether it answers, and stopping it. The name is
//! the contract: a daemon's limits are set once, before its first client starts its server, so
//! two containers with the same caps on one GPU share a daemon, and different caps never do.
//! This module never touches a daemon it does not own (ECS's at `/run/mps-ecs`, NVIDIA's
//! default `/tmp/nvidia-mps`): it only addresses directories under `isolation.dir`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::caps::Caps;
use crate::config::{ByteSize, IsolationSection};

use super::control::{self, ControlError};

/// The systemd unit that starts the default daemons at boot, named in every "not running".
pub const UNIT: &str = "gpu-share-mps.service";
/// The socket every control daemon listens on, in its pipe directory.
pub const CONTROL_SOCKET: &str = "control";
/// The control daemon's pid, in its pipe directory (NVIDIA's MPS docs, "Tools and Interface
/// Reference").
pub const PID_FILE: &str = "nvidia-cuda-mps-control.pid";

/// The caps a daemon's servers give each client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Limits {
    /// Pinned device memory per client, whole MiB (MPS's unit).
    pub memory_mib: u64,
    /// Active thread percentage; `None`: MPS's default, 100.
    pub compute_percent: Option<u8>,
}

impl Limits {
    pub fn new(memory: ByteSize, compute_percent: Option<u8>) -> Limits {
        Limits {
            memory_mib: memory.mib(),
            compute_percent,
        }
    }
}

impl From<Caps> for Limits {
    fn from(c: Caps) -> Limits {
        Limits {
            memory_mib: c.memory_mib,
            compute_percent: c.compute_percent,
        }
    }
}

/// An MPS control daemon on one GPU with one set of limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Daemon {
    /// The GPU's index in gpu-share's inventory.
    pub gpu: u32,
    pub limits: Limits,
    /// The client UID a non-root container's daemon serves (a daemon runs one server per UID
    /// at a time, so users never share one); `None`: root's, the default daemons.
    pub uid: Option<u32>,
    pub pipe_dir: PathBuf,
    pub log_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("MPS daemon {name} is not running: no control socket in {pipe_dir} (start it: systemctl start {UNIT}, or gpu-share mps start)")]
    NotRunning { name: String, pipe_dir: String },
    #[error("MPS daemon {name} (pipe dir {pipe_dir}) does not answer: {source} (check {UNIT} and {log})")]
    NoAnswer {
        name: String,
        pipe_dir: String,
        log: String,
        source: Box<ControlError>,
    },
    #[error("MPS daemon {name}: cannot start it: {source} (see {log}; the default daemons are {UNIT}'s)")]
    Start {
        name: String,
        log: String,
        source: Box<ControlError>,
    },
    #[error("MPS daemon {name}: cannot make or remove {path}: {source}")]
    Dir {
        name: String,
        path: String,
        source: std::io::Error,
    },
    #[error("MPS daemon {name} (pipe dir {pipe_dir}) was told to quit and is still running after {ms} ms")]
    StillRunning {
        name: String,
        pipe_dir: String,
        ms: u128,
    },
}

/// What `start` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    Started,
    /// It was answering already, with these limits (they are in its name).
    AlreadyRunning,
}

/// What `stop` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    Stopped,
    NotRunning,
}

impl Daemon {
    /// The daemon for `limits` on GPU `gpu`, under `isolation.dir`.
    pub fn new(isolation: &IsolationSection, gpu: u32, limits: Limits) -> Daemon {
        Daemon::for_user(isolation, gpu, limits, None)
    }

    /// The daemon for `limits` on GPU `gpu` serving clients of `uid` (`None` or root: the
    /// daemon root's containers share).
    pub fn for_user(
        isolation: &IsolationSection,
        gpu: u32,
        limits: Limits,
        uid: Option<u32>,
    ) -> Daemon {
        let uid = uid.filter(|&u| u != 0);
        let home = isolation.dir.join(name(gpu, limits, uid));
        Daemon {
            gpu,
            limits,
            uid,
            pipe_dir: home.join("pipe"),
            log_dir: home.join("log"),
        }
    }

    /// The daemon a directory under `isolation.dir` belongs to, if its name is one of ours.
    pub fn from_dir_name(isolation: &IsolationSection, dir_name: &str) -> Option<Daemon> {
        let (gpu, limits, uid) = parse_name(dir_name)?;
        let d = Daemon::for_user(isolation, gpu, limits, uid);
        (d.name() == dir_name).then_some(d)
    }

    pub fn name(&self) -> String {
        name(self.gpu, self.limits, self.uid)
    }

    /// Starts the daemon for the GPU `visible` names (its UUID, else its index) and sets its
    /// limits; a daemon already answering is left as it is.
    pub fn start(
        &self,
        isolation: &IsolationSection,
        visible: &str,
    ) -> Result<Started, DaemonError> {
        match self.status(isolation) {
            Ok(_) => return Ok(Started::AlreadyRunning),
            Err(DaemonError::NotRunning { .. }) => {}
            // A daemon that is there but does not answer is never replaced behind its back;
            // a socket whose daemon is gone (killed, host crashed into a kept /run) is.
            Err(e) if self.pid().is_some_and(process_exists) => return Err(e),
            // Cleared first, so that waiting for the new socket cannot find the old one.
            Err(_) => {
                let _ = std::fs::remove_file(self.socket());
                let _ = std::fs::remove_file(self.pipe_dir.join(PID_FILE));
            }
        }
        for dir in [&self.pipe_dir, &self.log_dir] {
            std::fs::create_dir_all(dir).map_err(|source| DaemonError::Dir {
                name: self.name(),
                path: dir.display().to_string(),
                source,
            })?;
        }
        let timeout = timeout(isolation);
        let env = [
            ("CUDA_MPS_PIPE_DIRECTORY", self.pipe_dir.as_path()),
            ("CUDA_MPS_LOG_DIRECTORY", self.log_dir.as_path()),
        ];
        control::daemonise(&isolation.control, &env, visible, timeout).map_err(|source| {
            DaemonError::Start {
                name: self.name(),
                log: self.control_log(),
                source: Box::new(source),
            }
        })?;
        // `-d` may return before the socket is bound; its limits must be set before any client
        // starts a server, so nothing is mounted until they are.
        let deadline = Instant::now() + timeout;
        while !self.socket().exists() {
            if Instant::now() >= deadline {
                return Err(DaemonError::Start {
                    name: self.name(),
                    log: self.control_log(),
                    source: Box::new(ControlError::Timeout {
                        ms: timeout.as_millis(),
                    }),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.send(isolation, &self.limit_commands())?;
        Ok(Started::Started)
    }

    /// The daemon's servers' pids (`get_server_list`); an error when it does not answer in
    /// `isolation.answer_timeout_ms`.
    pub fn status(&self, isolation: &IsolationSection) -> Result<Vec<u32>, DaemonError> {
        let answer = self.send(isolation, "get_server_list")?;
        Ok(answer
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect())
    }

    /// `quit`, then waits (up to the answer timeout) for the daemon to be gone, and removes its
    /// pipe directory (its log stays), so that it is no longer listed. A daemon already gone
    /// (no socket, or a socket whose pid is dead) is only cleaned up; one that is alive but
    /// does not answer is an error, and left as it is.
    pub fn stop(&self, isolation: &IsolationSection) -> Result<Stopped, DaemonError> {
        let pid = self.pid();
        match self.send(isolation, "quit") {
            Ok(_) => {}
            Err(e @ DaemonError::NoAnswer { .. }) if pid.is_some_and(process_exists) => {
                return Err(e)
            }
            Err(DaemonError::NotRunning { .. } | DaemonError::NoAnswer { .. }) => {
                self.forget()?;
                return Ok(Stopped::NotRunning);
            }
            Err(e) => return Err(e),
        }
        let timeout = timeout(isolation);
        let deadline = Instant::now() + timeout;
        while self.alive(pid) {
            if Instant::now() >= deadline {
                return Err(DaemonError::StillRunning {
                    name: self.name(),
                    pipe_dir: self.pipe_dir.display().to_string(),
                    ms: timeout.as_millis(),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.forget()?;
        Ok(Stopped::Stopped)
    }

    fn forget(&self) -> Result<(), DaemonError> {
        match std::fs::remove_dir_all(&self.pipe_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DaemonError::Dir {
                name: self.name(),
                path: self.pipe_dir.display().to_string(),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// The commands that give its servers this daemon's limits. The daemon sees one GPU
    /// (`CUDA_VISIBLE_DEVICES`), which it numbers 0.
    pub fn limit_commands(&self) -> String {
        let mut cmds = format!(
            "set_default_device_pinned_mem_limit 0 {}M\n",
            self.limits.memory_mib
        );
        if let Some(p) = self.limits.compute_percent {
            cmds.push_str(&format!("set_default_active_thread_percentage {p}\n"));
        }
        cmds
    }

    fn send(&self, isolation: &IsolationSection, commands: &str) -> Result<String, DaemonError> {
        // A missing socket is a down daemon: say so at once rather than run the front-end,
        // which would look for it.
        if !self.socket().exists() {
            return Err(DaemonError::NotRunning {
                name: self.name(),
                pipe_dir: self.pipe_dir.display().to_string(),
            });
        }
        control::send(
            &isolation.control,
            &self.pipe_dir,
            commands,
            timeout(isolation),
        )
        .map_err(|source| DaemonError::NoAnswer {
            name: self.name(),
            pipe_dir: self.pipe_dir.display().to_string(),
            log: self.control_log(),
            source: Box::new(source),
        })
    }

    pub(super) fn socket(&self) -> PathBuf {
        self.pipe_dir.join(CONTROL_SOCKET)
    }

    pub(super) fn control_log(&self) -> String {
        self.log_dir.join("control.log").display().to_string()
    }

    pub(super) fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.pipe_dir.join(PID_FILE))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Whether the daemon is still there: its pid, where it wrote one, else its socket.
    fn alive(&self, pid: Option<i32>) -> bool {
        match pid {
            Some(p) if p > 0 => process_exists(p),
            _ => self.socket().exists(),
        }
    }
}

pub(super) fn process_exists(pid: i32) -> bool {
    use nix::sys::signal::kill;
    use nix::unistd::Pid;
    // A zombie still answers signal 0; it is gone for our purpose once it is reaped or a
    // zombie, so look at its state too.
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false);
    !zombie && kill(Pid::from_raw(pid), None).is_ok()
}

pub(super) fn timeout(isolation: &IsolationSection) -> Duration {
    Duration::from_millis(isolation.answer_timeout_ms)
}

fn name(gpu: u32, limits: Limits, uid: Option<u32>) -> String {
    let mut name = format!("gpu{gpu}-{}M", limits.memory_mib);
    if let Some(p) = limits.compute_percent {
        name.push_str(&format!("-{p}pct"));
    }
    if let Some(u) = uid {
        name.push_str(&format!("-u{u}"));
    }
    name
}

fn parse_name(text: &str) -> Option<(u32, Limits, Option<u32>)> {
    let mut parts = text.split('-').peekable();
    let gpu = parts.next()?.strip_prefix("gpu")?.parse().ok()?;
    let memory_mib = parts.next()?.strip_suffix('M')?.parse().ok()?;
    let compute_percent = match parts.next_if(|p| p.ends_with("pct")) {
        Some(p) => Some(p.strip_suffix("pct")?.parse().ok()?),
        None => None,
    };
    let uid = match parts.next() {
        Some(u) => Some(u.strip_prefix('u')?.parse().ok()?),
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    let limits = Limits {
        memory_mib,
        compute_percent,
    };
    Some((gpu, limits, uid))
}

/// The daemons gpu-share owns under `isolation.dir` and has not stopped, in name order; none
/// when the directory is missing.
pub fn owned(isolation: &IsolationSection) -> Vec<Daemon> {
    let Ok(entries) = std::fs::read_dir(&isolation.dir) else {
        return Vec::new();
    };
    let mut out: Vec<Daemon> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| Daemon::from_dir_name(isolation, e.file_name().to_str()?))
        // A stopped daemon keeps its log but not its pipe directory.
        .filter(|d| d.pipe_dir.is_dir())
        .collect();
    out.sort_by_key(|d| (d.gpu, d.limits, d.uid));
    out
}

#[cfg(test)]
mod tests;
