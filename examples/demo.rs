//! `make demo`: a private dockerd whose default runtime is gpu-share-runtime, on a simulated GPU
//! host (device nodes made with mknod under a temp root), and two containers sharing GPU 0.
//!
//! Needs root, runc, dockerd and busybox-static (`make demo` installs them where missing).
//! Usage: `demo [PATH-TO-gpu-share-runtime]` (default: the one built beside this example).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::ExitCode;

use common::dockerd::{Dockerd, IMAGE};

fn shim_path() -> PathBuf {
    if let Some(given) = std::env::args_os().nth(1) {
        return PathBuf::from(given);
    }
    // The demo binary sits in <target>/<profile>/examples/, the shim in <target>/<profile>/.
    let exe = std::env::current_exe().expect("own path");
    exe.parent()
        .and_then(|examples| examples.parent())
        .map(|profile| profile.join("gpu-share-runtime"))
        .expect("target directory")
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

    step("Each of them sees GPU 0 at the same time");
    for name in names {
        let ls = d.docker_ok(&["exec", name, "ls", "-l", "/dev/nvidia0", "/dev/nvidiactl"]);
        for line in ls.lines() {
            println!("    {name}: {line}");
        }
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
