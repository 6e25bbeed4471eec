//! Which Xids are MPS server faults: an Xid whose process is an MPS server
//! (`nvidia-cuda-mps-server`; the kernel log gives its 15-byte `comm`, `nvidia-cuda-mps`) is a
//! fault every client of that server sees (NVIDIA's MPS docs, "Volta MPS error containment"),
//! so it is counted apart as `MPSServerFaults`, with the daemon it belongs to where the server's
//! environment names it (`CUDA_MPS_PIPE_DIRECTORY`, inherited from its control daemon:
//! `<isolation.dir>/<daemon>/pipe`).
//!
//! Owns recognising an MPS server and naming its daemon. Reads `/proc` under the devices root
//! and never anything else; never decides what a fault means for placement.

use std::path::Path;

/// The kernel's `comm` of `nvidia-cuda-mps-server` (and of the control daemon, which holds no
/// GPU context and so never faults on one), cut to 15 bytes.
const MPS_COMM: &str = "nvidia-cuda-mps";

/// An MPS server that faulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpsServer {
    pub pid: u32,
    /// The daemon's name under `isolation.dir` (`gpu0-4096M-50pct`), or the pipe directory
    /// itself for a daemon that is not gpu-share's (ECS's `/run/mps-ecs`); `None` where the
    /// server is gone or its environment cannot be read.
    pub daemon: Option<String>,
}

/// The MPS server behind an Xid's `pid` and process name, if it is one.
pub fn server_of(root: &Path, pid: Option<u32>, process: Option<&str>) -> Option<MpsServer> {
    let pid = pid?;
    if !process?.starts_with(MPS_COMM) {
        return None;
    }
    let environ = std::fs::read(root.join(format!("proc/{pid}/environ"))).ok();
    let daemon = environ.as_deref().and_then(daemon_in);
    Some(MpsServer { pid, daemon })
}

/// The daemon named by `CUDA_MPS_PIPE_DIRECTORY` in a NUL-separated environment.
fn daemon_in(environ: &[u8]) -> Option<String> {
    let dir = environ
        .split(|&b| b == 0)
        .find_map(|e| e.strip_prefix(b"CUDA_MPS_PIPE_DIRECTORY="))?;
    let dir = Path::new(std::str::from_utf8(dir).ok()?);
    // gpu-share's daemons keep their pipes in `<name>/pipe`; another daemon is named by its dir.
    let named = if dir.file_name().is_some_and(|n| n == "pipe") {
        dir.parent()?.file_name()?.to_str()?.to_owned()
    } else {
        dir.to_str()?.to_owned()
    };
    Some(named)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_mps_server_is_named_by_its_daemon_s_pipe_directory() {
        let root = tempfile::tempdir().unwrap();
        let proc = root.path().join("proc/77");
        std::fs::create_dir_all(&proc).unwrap();
        std::fs::write(
            proc.join("environ"),
            b"PATH=/bin\0CUDA_MPS_PIPE_DIRECTORY=/run/gpu-share/mps/gpu0-4096M-50pct/pipe\0",
        )
        .unwrap();
        let s = server_of(root.path(), Some(77), Some("nvidia-cuda-mps")).unwrap();
        assert_eq!(s.daemon.as_deref(), Some("gpu0-4096M-50pct"));
        assert_eq!(
            daemon_in(b"CUDA_MPS_PIPE_DIRECTORY=/run/mps-ecs\0").as_deref(),
            Some("/run/mps-ecs")
        );
    }

    #[test]
    fn other_processes_and_unnamed_ones_are_not_servers() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(server_of(root.path(), Some(5), Some("python3")), None);
        assert_eq!(server_of(root.path(), None, Some("nvidia-cuda-mps")), None);
        assert_eq!(server_of(root.path(), Some(5), None), None);
        // A server gone before its environment was read is still counted, without a daemon.
        let gone = server_of(root.path(), Some(5), Some("nvidia-cuda-mps")).unwrap();
        assert_eq!(gone.daemon, None);
    }
}
