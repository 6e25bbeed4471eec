//! Helpers shared by the integration tests, the benchmarks and the demo. Each thing the tests do
//! to the outside world has one home here:
//! - the built binaries: [`shim_bin`], [`cli_bin`];
//! - a fake GPU host made with `mknod`: [`FakeGpuHost`], and the shim's config over it:
//!   [`write_shim_config`], [`shim::ShimHost`];
//! - invoking the shim: [`shim::Shim`] (and [`shim::FakeRunc`], a recording stand-in for runc);
//! - bundles: [`bundle::Bundle`] (the docker-like fixture, or runc's spec over busybox);
//! - the metrics agent's config and command line: [`agent::Agent`];
//! - the fake NVML library: [`fake_nvml`], [`fake_nvml_gpus`];
//! - a private dockerd: [`dockerd::Dockerd`]; moto's CloudWatch: [`moto::Moto`].
//! - a stand-in HTTP endpoint answering from a handler: [`http::serve`].
//! - the fake MPS control daemon and a directory of daemons: [`mps::MpsDir`].
#![allow(dead_code)]

pub mod agent;
pub mod bundle;
pub mod cdi;
pub mod dockerd;
pub mod http;
pub mod moto;
pub mod mps;
pub mod shim;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::stat::{makedev, mknod, Mode, SFlag};

// The helpers most tests use, at `common::`; each test binary uses a subset.
#[allow(unused_imports)]
pub use bundle::{busybox_rootfs, Bundle};
#[allow(unused_imports)]
pub use shim::{FakeRunc, Shim, ShimHost};

/// The runtime shim, `gpu-share-runtime`, that cargo built for this test or bench.
pub fn shim_bin() -> PathBuf {
    built(
        option_env!("CARGO_BIN_EXE_gpu-share-runtime"),
        "gpu-share-runtime",
    )
}

/// The operator CLI, `gpu-share`, that cargo built for this test or bench.
pub fn cli_bin() -> PathBuf {
    built(option_env!("CARGO_BIN_EXE_gpu-share"), "gpu-share")
}

/// Cargo names its binaries to tests and benches only; an example finds them beside its own
/// directory (`<target>/<profile>/examples/` holds it, `<target>/<profile>/` the binaries).
fn built(from_cargo: Option<&str>, name: &str) -> PathBuf {
    if let Some(path) = from_cargo {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("own path");
    exe.parent()
        .and_then(Path::parent)
        .map(|profile| profile.join(name))
        .expect("target directory")
}

/// Whether this test can run here: root and the named tools. Where it cannot, it says why, loudly;
/// under CI (`CI` set) a missing piece is a failure, since `.ci/run` installs everything.
pub fn require(test: &str, tools: &[&str]) -> bool {
    let mut missing = Vec::new();
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root (mknod, runc and dockerd need it)".to_owned());
    }
    for tool in tools {
        if which(tool).is_none() {
            missing.push(format!("`{tool}` on PATH"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let reason = format!("{test} needs {}", missing.join(", "));
    if std::env::var_os("CI").is_some() {
        panic!("{reason}: CI must provide it (.ci/run installs runc, docker.io, busybox-static)");
    }
    eprintln!(
        "\n*** SKIPPED: {reason}. Run `sudo make test` after `scripts/install-deps.sh`. ***\n"
    );
    false
}

pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// A host root with NVIDIA device nodes made by `mknod`: `dev/nvidia0..N`, `nvidiactl`,
/// `nvidia-modeset` (major 195) and `nvidia-uvm`, `nvidia-uvm-tools` (a dynamic major, 510 here).
pub struct FakeGpuHost {
    dir: tempfile::TempDir,
}

pub const UVM_MAJOR: u64 = 510;

impl FakeGpuHost {
    pub fn new(gpus: u32) -> FakeGpuHost {
        FakeGpuHost::new_in(&std::env::temp_dir(), gpus)
    }

    /// A fake host in a new directory under `parent`.
    pub fn new_in(parent: &Path, gpus: u32) -> FakeGpuHost {
        let dir = tempfile::Builder::new()
            .prefix("gpu-share-host.")
            .tempdir_in(parent)
            .expect("temp dir");
        let dev = dir.path().join("dev");
        std::fs::create_dir(&dev).expect("mkdir dev");
        let mut nodes: Vec<(String, u64, u64)> = (0..gpus)
            .map(|i| (format!("nvidia{i}"), 195, i as u64))
            .collect();
        if gpus > 0 {
            nodes.push(("nvidiactl".into(), 195, 255));
            nodes.push(("nvidia-modeset".into(), 195, 254));
            nodes.push(("nvidia-uvm".into(), UVM_MAJOR, 0));
            nodes.push(("nvidia-uvm-tools".into(), UVM_MAJOR, 1));
        }
        for (name, major, minor) in nodes {
            let path = dev.join(&name);
            mknod(
                &path,
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o666),
                makedev(major, minor),
            )
            .unwrap_or_else(|e| panic!("mknod {}: {e}", path.display()));
            // mknod obeys the umask; the driver's nodes are 0666.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        }
        let host = FakeGpuHost { dir };
        for i in 0..gpus {
            host.write_driver_entry(i, &format!("0000:00:{:02x}.0", 0x1b + i), i);
        }
        host
    }

    /// The UUID the fake driver reports for the GPU with this minor.
    pub fn uuid(minor: u32) -> String {
        format!("GPU-{minor:08x}-0000-4000-8000-{minor:012x}")
    }

    /// Writes `proc/driver/nvidia/gpus/<bus>/information` as the driver does.
    pub fn write_driver_entry(&self, minor: u32, bus: &str, uuid_of: u32) {
        let dir = self.dir.path().join("proc/driver/nvidia/gpus").join(bus);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("information"),
            format!(
                "Model: \t\t Tesla T4\nIRQ:   \t\t 32\nGPU UUID: \t {}\nVideo BIOS: \t 90.04.38.00.03\nBus Type: \t PCIe\nBus Location: \t {bus}\nDevice Minor: \t {minor}\nGPU Excluded:\t No\n",
                FakeGpuHost::uuid(uuid_of)
            ),
        )
        .unwrap();
    }

    /// Makes the driver's `information` file for the GPU at `bus` unreadable: a directory stands
    /// in its place (root reads any file, whatever its mode).
    pub fn make_driver_entry_unreadable(&self, bus: &str) {
        let info = self
            .root()
            .join("proc/driver/nvidia/gpus")
            .join(bus)
            .join("information");
        std::fs::remove_file(&info).unwrap();
        std::fs::create_dir(&info).unwrap();
    }

    /// Removes the driver's `/proc` entries: a host seen through its device nodes alone.
    pub fn without_driver_entries(self) -> FakeGpuHost {
        let _ = std::fs::remove_dir_all(self.dir.path().join("proc"));
        self
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

/// Writes a shim config for a fake host, with its log and placement state under `dir`;
/// `extra` is appended TOML (sections other than devices, log and state).
pub fn write_shim_config(dir: &Path, devices_root: &Path, extra: &str) -> (PathBuf, PathBuf) {
    let config = dir.join("gpu-share.toml");
    let log = dir.join("gpu-share-runtime.log");
    std::fs::write(
        &config,
        format!(
            "[devices]\nroot = {:?}\n[log]\npath = {:?}\nlevel = \"debug\"\n[state]\ndir = {:?}\n{extra}",
            devices_root.display().to_string(),
            log.display().to_string(),
            dir.join("state").display().to_string()
        ),
    )
    .unwrap();
    (config, log)
}

/// Every file under `dir` with its bytes, to prove a bundle was left as it was.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_symlink() {
                out.push((
                    p.clone(),
                    std::fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                ));
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

/// Builds the fake `libnvidia-ml.so` (tests/fake_nvml/fake_nvml.c) once into `out_dir`.
pub fn fake_nvml_library(out_dir: &Path) -> PathBuf {
    static BUILT: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
    let mut built = BUILT.lock().unwrap();
    if let Some(p) = built.as_ref() {
        return p.clone();
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake_nvml/fake_nvml.c");
    let lib = out_dir.join(format!("libnvidia-ml-fake-{}.so", std::process::id()));
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o"])
        .arg(&lib)
        .arg(&src)
        .status()
        .expect("cc (gcc) to build the fake NVML library");
    assert!(status.success(), "building the fake NVML library failed");
    *built = Some(lib.clone());
    lib
}

/// The fake `libnvidia-ml.so`, built once per process into cargo's temp dir for tests (the
/// system temp dir elsewhere).
pub fn fake_nvml() -> PathBuf {
    let dir = option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    fake_nvml_library(&dir)
}

/// The shim's `[nvml]` section loading `library`.
pub fn nvml_section(library: &Path) -> String {
    format!("[nvml]\nlibrary = {:?}\n", library.display().to_string())
}

/// An `[nvml]` section naming a library that is not there: discovery from devices and /proc alone.
pub const NO_NVML: &str = "[nvml]\nlibrary = \"/nonexistent/libnvidia-ml.so\"\n";

/// `FAKE_NVML_GPUS` for the GPUs of a `FakeGpuHost` with `n` GPUs: NVML index i is minor
/// `minors[i]`, with the host's UUID for that minor, 16 GiB of which `free_gib[i]` free.
pub fn fake_nvml_gpus(minors: &[u32], free_gib: &[u64]) -> String {
    minors
        .iter()
        .zip(free_gib)
        .map(|(&m, &free)| {
            format!(
                "{},Tesla T4,{},{},00000000:00:{:02X}.0,{m}",
                FakeGpuHost::uuid(m),
                16u64 << 30,
                free << 30,
                0x1b + m
            )
        })
        .collect::<Vec<_>>()
        .join(";")
}
