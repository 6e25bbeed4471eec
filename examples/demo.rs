//! `make demo`: a private dockerd whose default runtime is gpu-share-runtime, on a simulated GPU
//! host (device nodes made with mknod under a temp root), and two containers sharing GPU 0.
//!
//! Needs root, runc, dockerd and busybox-static (`make demo` installs them where missing).
//! Usage: `demo [PATH-TO-gpu-share-runtime]` (default: the one built beside this example).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use common::agent::Agent;
use common::dockerd::{Dockerd, IMAGE};

fn shim_path() -> PathBuf {
    std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(common::shim_bin)
}

fn step(text: &str) {
    println!("\n==> {text}");
}

fn main() -> ExitCode {
    if !common::require("the demo", &["runc", "dockerd", "containerd"]) {
        return ExitCode::FAILURE;
    }
    let shim = shim_path();
    if !shim.is_file() {
        eprintln!("{} is not built: run `make demo`", shim.display());
        return ExitCode::FAILURE;
    }

    step("Starting a private dockerd: default runtime gpu-share-runtime, one simulated GPU");
    let d = Dockerd::start(&shim, 1, "");
    println!("    dockerd socket   {}", d.sock.display());
    println!(
        "    simulated host   {}/dev: nvidia0, nvidiactl, nvidia-uvm, ...",
        d.host_root().display()
    );
    println!("    shim config      {}", d.shim_config.display());
    let runtime = d.docker_ok(&["info", "--format", "{{.DefaultRuntime}}"]);
    println!("    docker info      Default Runtime: {}", runtime.trim());

    step("NVIDIA's CDI spec for the simulated GPU, as nvidia-cdi-refresh writes it");
    let spec = common::cdi::write_nvidia_spec(d.host(), "var/run/cdi");
    println!("    {}", spec.display());
    println!("    devices.injection = auto (the default): the driver's libraries come through it");

    let names = ["gpu-share-demo-a", "gpu-share-demo-b"];
    step("Starting two ordinary containers (no --gpus, no NVIDIA_VISIBLE_DEVICES) side by side");
    for name in names {
        let _ = d.docker(&["rm", "-f", name]);
        d.docker_ok(&[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            name,
            IMAGE,
            "sleep",
            "300",
        ]);
    }
    let ps = d.docker_ok(&["ps", "--format", "{{.Names}}\t{{.Status}}\t{{.Command}}"]);
    for line in ps.lines() {
        println!("    {line}");
    }

    step("Each of them sees GPU 0 and the driver's libraries at the same time");
    for name in names {
        let ls = d.docker_ok(&["exec", name, "ls", "-l", "/dev/nvidia0", "/dev/nvidiactl"]);
        for line in ls.lines() {
            println!("    {name}: {line}");
        }
        let libs = d.docker_ok(&["exec", name, "ls", "/usr/lib64"]);
        let cuda: Vec<&str> = libs.lines().filter(|l| l.starts_with("libcuda")).collect();
        println!("    {name}: /usr/lib64: {}", cuda.join(" "));
        let env = d.docker_ok(&["exec", name, "cat", "/proc/1/environ"]);
        if let Some(v) = env
            .split('\0')
            .find(|e| e.starts_with("NVIDIA_VISIBLE_DEVICES="))
        {
            println!("    {name}: {v}");
        }
    }

    let cli = shim.with_file_name("gpu-share");
    if cli.is_file() {
        step("What the operator sees: gpu-share list");
        let out = std::process::Command::new(&cli)
            .args(["list", "--config"])
            .arg(&d.shim_config)
            .output()
            .expect("gpu-share list");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            println!("    {line}");
        }
    }

    if cli.is_file() {
        step("gpu-share metrics: GPU memory per container (NVML simulated by the tests' fake library)");
        let lib = common::fake_nvml_library(&d.dir);
        let procs: Vec<String> = names
            .iter()
            .zip([3u64 << 30, 1 << 30])
            .map(|(name, bytes)| {
                let pid = d.docker_ok(&["inspect", "--format", "{{.State.Pid}}", name]);
                format!("0:{}:{bytes}", pid.trim())
            })
            .collect();
        let out = Agent::new(&lib)
            .binary(&cli)
            .devices_root(Path::new("/"))
            .no_discovery()
            .instance_id("i-demo")
            .docker_host(&d.url())
            .gpus("GPU-00000000-0000-4000-8000-000000000000,Tesla T4,16106127360,11811160064,00000000:00:1B.0,0,63,21,58,41000")
            .procs(&procs.join(";"))
            .run_once("json");
        if let Ok(sample) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
            let g = &sample["gpus"][0];
            println!(
                "    GPU 0: {}% busy, {} MiB of {} MiB used",
                g["utilization_gpu_percent"],
                g["memory_used_bytes"].as_u64().unwrap_or(0) >> 20,
                g["memory_total_bytes"].as_u64().unwrap_or(0) >> 20
            );
            for c in sample["containers"].as_array().into_iter().flatten() {
                let id = c["container_id"].as_str().unwrap_or("");
                println!(
                    "    container {}: {} MiB on GPU {}",
                    &id[..12.min(id.len())],
                    c["gpu_memory_bytes"].as_u64().unwrap_or(0) >> 20,
                    c["gpu_index"]
                );
            }
        }
    }

    step("A container that opts out gets no GPU (NVIDIA_VISIBLE_DEVICES=none)");
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-e",
        "NVIDIA_VISIBLE_DEVICES=none",
        IMAGE,
        "sh",
        "-c",
        "ls /dev | grep nvidia || echo 'no /dev/nvidia*'",
    ]);
    println!("    {}", out.trim());

    step("Asking for a GPU the host lacks fails with a clear reason (NVIDIA_VISIBLE_DEVICES=7)");
    let out = d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-e",
        "NVIDIA_VISIBLE_DEVICES=7",
        IMAGE,
        "true",
    ]);
    println!(
        "    exit {}: {}",
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).trim()
    );

    step("The shim's log: one line per decision");
    let log = std::fs::read_to_string(&d.shim_log).unwrap_or_default();
    for line in log.lines() {
        println!("    {line}");
    }

    step("Cleaning up");
    d.docker_ok(&["rm", "-f", names[0], names[1]]);
    d.stop();
    println!("    private dockerd stopped and its directory removed");
    ExitCode::SUCCESS
}
