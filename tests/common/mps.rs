//! The fake `nvidia-cuda-mps-control` (tests/fake_mps/fake_mps_control.c) and a directory of
//! MPS daemons that are killed when the test ends, whatever it asserted.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds the fake control daemon once per test process into cargo's temp dir.
pub fn fake_mps_control() -> PathBuf {
    static BUILT: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
    let mut built = BUILT.lock().unwrap();
    if let Some(p) = built.as_ref() {
        return p.clone();
    }
    let dir = option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake_mps/fake_mps_control.c");
    let bin = dir.join(format!(
        "nvidia-cuda-mps-control-fake-{}",
        std::process::id()
    ));
    let status = Command::new("cc")
        .args(["-O1", "-Wall", "-Werror", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .expect("cc (gcc) to build the fake MPS control daemon");
    assert!(
        status.success(),
        "building the fake MPS control daemon failed"
    );
    *built = Some(bin.clone());
    bin
}

/// The fake daemon with these directories, started so that it accepts connections and never
/// answers.
pub fn start_hung(control: &Path, pipe_dir: &Path, log_dir: &Path) {
    std::fs::create_dir_all(pipe_dir).unwrap();
    std::fs::create_dir_all(log_dir).unwrap();
    let status = Command::new(control)
        .arg("-d")
        .env("CUDA_MPS_PIPE_DIRECTORY", pipe_dir)
        .env("CUDA_MPS_LOG_DIRECTORY", log_dir)
        .env("FAKE_MPS_HANG", "1")
        .status()
        .unwrap();
    assert!(status.success());
}

/// Writes the NVML cache (`<state_dir>/gpus.json`, as `gpu-share list` does) giving each of
/// `uuids` `total` bytes of memory: where the create path learns GPU totals.
pub fn write_gpu_cache(state_dir: &Path, uuids: &[String], total: u64) {
    let gpus: Vec<serde_json::Value> = uuids
        .iter()
        .map(|u| serde_json::json!({"uuid": u, "memory_total_bytes": total, "memory_free_bytes": total}))
        .collect();
    std::fs::create_dir_all(state_dir).unwrap();
    let cache = serde_json::json!({"updated": "test", "gpus": gpus});
    std::fs::write(state_dir.join("gpus.json"), cache.to_string()).unwrap();
}

/// `isolation.dir` for one test, with the fake control binary; every daemon still running
/// under it is killed on drop.
pub struct MpsDir {
    pub dir: tempfile::TempDir,
    pub control: PathBuf,
}

impl MpsDir {
    pub fn new() -> MpsDir {
        MpsDir {
            dir: tempfile::Builder::new()
                .prefix("gpu-share-mps.")
                .tempdir()
                .expect("temp dir"),
            control: fake_mps_control(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// An `[isolation]` section in `mps` mode over this directory; `extra` is more keys.
    pub fn section(&self, extra: &str) -> String {
        format!(
            "[isolation]\nmode = \"mps\"\ncontrol = {:?}\ndir = {:?}\nmemory = \"4GiB\"\ncompute_percent = 50\n{extra}",
            self.control.display().to_string(),
            self.path().display().to_string()
        )
    }

    /// What the fake daemon named `name` recorded: one `command -> answer` a line, after its
    /// `start CUDA_VISIBLE_DEVICES=...` line.
    pub fn control_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path().join(name).join("log/control.log")).unwrap_or_default()
    }
}

impl Drop for MpsDir {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.path()) else {
            return;
        };
        for e in entries.flatten() {
            let pid_file = e.path().join("pipe/nvidia-cuda-mps-control.pid");
            if let Some(pid) = std::fs::read_to_string(pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
                .filter(|&p| p > 0)
            {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}
