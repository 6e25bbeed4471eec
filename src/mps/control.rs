//! Running `nvidia-cuda-mps-control`, as a daemon (`-d`) or as the front-end that sends one
//! batch of commands on stdin, with a deadline.
//!
//! The wire between the front-end and its daemon is NVIDIA's and undocumented, so commands go
//! through the front-end, as NVIDIA's device plugin and the ECS agent send them. This module
//! owns the process handling only (environment, stdin, deadline, exit status); it never knows
//! which daemon it talks to, and never waits past its deadline: a child still running then is
//! killed.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::unistd::pipe2;

/// POSIX's smallest PIPE_BUF: a write this long is atomic and never waits on an empty pipe.
const PIPE_BUF: usize = 4096;

/// The client's own MPS settings, never inherited by a daemon or a front-end gpu-share runs:
/// a daemon given them would hand them to its servers.
const INHERITED: [&str; 4] = [
    "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE",
    "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT",
    "CUDA_MPS_PIPE_DIRECTORY",
    "CUDA_MPS_LOG_DIRECTORY",
];

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("no answer within {ms} ms")]
    Timeout { ms: u128 },
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("talking to {program}: {source}")]
    Io {
        program: String,
        source: std::io::Error,
    },
}

/// `program -d` with these environment variables set; returns once it has daemonised.
pub fn daemonise(
    program: &Path,
    env: &[(&str, &Path)],
    visible: &str,
    timeout: Duration,
) -> Result<(), ControlError> {
    let mut cmd = command(program, env);
    // No pipes: the daemon it forks would hold them open, and reading one would wait for it.
    cmd.arg("-d")
        .env("CUDA_VISIBLE_DEVICES", visible)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    run(program, cmd, timeout).map(|_| ())
}

/// Sends `commands` (one per line) to the daemon whose pipe directory is `pipe_dir` and returns
/// what it printed.
pub fn send(
    program: &Path,
    pipe_dir: &Path,
    commands: &str,
    timeout: Duration,
) -> Result<String, ControlError> {
    let mut cmd = command(program, &[("CUDA_MPS_PIPE_DIRECTORY", pipe_dir)]);
    cmd.stdin(stdin_with(program, commands)?)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    run(program, cmd, timeout)
}

fn command(program: &Path, env: &[(&str, &Path)]) -> Command {
    let mut cmd = Command::new(program);
    for name in INHERITED {
        cmd.env_remove(name);
    }
    for (name, value) in env {
        cmd.env(name, value);
    }
    cmd
}

/// A stdin that already holds `commands`, written before the child starts: the write can
/// neither block on a child that does not read nor raise SIGPIPE (which the runtime, a
/// `no_main` program, does not ignore) on one that has exited.
fn stdin_with(program: &Path, commands: &str) -> Result<Stdio, ControlError> {
    let io = |source: std::io::Error| ControlError::Io {
        program: program.display().to_string(),
        source,
    };
    let mut text = commands.to_owned();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    // Within PIPE_BUF, one write fills the pipe without waiting for a reader.
    if text.len() > PIPE_BUF {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "commands longer than one pipe buffer",
        )));
    }
    let (read, write) = pipe2(OFlag::O_CLOEXEC).map_err(|e| io(e.into()))?;
    std::fs::File::from(write)
        .write_all(text.as_bytes())
        .map_err(io)?;
    Ok(Stdio::from(read))
}

fn run(program: &Path, mut cmd: Command, timeout: Duration) -> Result<String, ControlError> {
    let name = program.display().to_string();
    let io = |source| ControlError::Io {
        program: name.clone(),
        source,
    };
    let deadline = Instant::now() + timeout;
    let mut child = cmd.spawn().map_err(|source| ControlError::Spawn {
        program: name.clone(),
        source,
    })?;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                kill(&mut child);
                return Err(ControlError::Timeout {
                    ms: timeout.as_millis(),
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => {
                kill(&mut child);
                return Err(io(e));
            }
        }
    };
    let stdout = read_all(child.stdout.take());
    if !status.success() {
        let stderr = read_all(child.stderr.take());
        let detail = [stderr.trim(), stdout.trim()]
            .into_iter()
            .find(|s| !s.is_empty())
            .unwrap_or("no output")
            .escape_debug()
            .to_string();
        return Err(ControlError::Failed {
            program: name,
            status,
            stderr: detail,
        });
    }
    Ok(stdout)
}

/// What a child that has exited printed, capped at 64 KiB.
fn read_all(pipe: Option<impl Read>) -> String {
    let mut out = Vec::new();
    if let Some(p) = pipe {
        let _ = p.take(64 * 1024).read_to_end(&mut out);
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}
