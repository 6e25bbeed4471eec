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
    run(program, cmd, None, timeout).map(|_| ())
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
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    run(program, cmd, Some(commands), timeout)
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

fn run(
    program: &Path,
    mut cmd: Command,
    input: Option<&str>,
    timeout: Duration,
) -> Result<String, ControlError> {
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
    if let Some(text) = input {
        // The answers are a few lines, well inside a pipe's buffer, so writing all of stdin
        // before reading stdout cannot deadlock.
        if let Some(mut stdin) = child.stdin.take() {
            let mut line = text.to_owned();
            if !line.ends_with('\n') {
                line.push('\n');
            }
            // A front-end that found no daemon exits without reading: its exit status says so.
            match stdin.write_all(line.as_bytes()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    kill(&mut child);
                    return Err(io(e));
                }
                _ => {}
            }
        }
    }
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
