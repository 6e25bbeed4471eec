//! MPS control daemons gpu-share owns, against the fake `nvidia-cuda-mps-control`: start with
//! limits, status, stop, a daemon that is down or never answers, `gpu-share mps`, and the
//! `[isolation]` section.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::mps::{start_hung, MpsDir};
use common::{cli_bin, write_shim_config, FakeGpuHost};
use gpu_share::config::{ByteSize, Config, IsolationMode, IsolationSection};
use gpu_share::mps::{Daemon, DaemonError, Limits, Started, Stopped};

fn isolation(mps: &MpsDir, timeout_ms: u64) -> IsolationSection {
    let text = mps.section(&format!("answer_timeout_ms = {timeout_ms}\n"));
    Config::parse(&text).unwrap().isolation
}

fn daemon(iso: &IsolationSection, gpu: u32) -> Daemon {
    Daemon::new(iso, gpu, Limits::new(ByteSize(4 << 30), Some(50)))
}

#[test]
fn start_gives_the_daemon_its_gpu_and_limits() {
    let mps = MpsDir::new();
    let iso = isolation(&mps, 2000);
    let d = daemon(&iso, 0);
    assert_eq!(d.start(&iso, "GPU-0000abcd").unwrap(), Started::Started);
    let log = mps.control_log("gpu0-4096M-50pct");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines,
        [
            "start CUDA_VISIBLE_DEVICES=GPU-0000abcd",
            "set_default_device_pinned_mem_limit 0 4096M -> ",
            "set_default_active_thread_percentage 50 -> 50.0",
        ],
        "{log}"
    );
    assert_eq!(d.status(&iso).unwrap(), Vec::<u32>::new());
    assert!(d.pipe_dir.join("control").exists());
}

#[test]
fn start_leaves_a_running_daemon_as_it_is() {
    let mps = MpsDir::new();
    let iso = isolation(&mps, 2000);
    let d = daemon(&iso, 1);
    assert_eq!(d.start(&iso, "1").unwrap(), Started::Started);
    assert_eq!(d.start(&iso, "1").unwrap(), Started::AlreadyRunning);
    let log = mps.control_log(&d.name());
    assert_eq!(
        log.matches("start CUDA_VISIBLE_DEVICES").count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("set_default_device_pinned_mem_limit").count(),
        1,
        "{log}"
    );
}

#[test]
fn stop_quits_the_daemon_and_waits_for_it() {
    let mps = MpsDir::new();
    let iso = isolation(&mps, 2000);
    let d = daemon(&iso, 0);
    d.start(&iso, "0").unwrap();
    let pid: i32 = std::fs::read_to_string(d.pipe_dir.join("nvidia-cuda-mps-control.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(d.stop(&iso).unwrap(), Stopped::Stopped);
    assert!(mps.control_log(&d.name()).ends_with("quit -> \n"));
    assert!(!d.pipe_dir.exists());
    assert!(d.log_dir.join("control.log").exists());
    let gone = unsafe { libc::kill(pid, 0) } != 0
        || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z"));
    assert!(gone, "daemon {pid} still running");
    assert_eq!(d.stop(&iso).unwrap(), Stopped::NotRunning);
}

#[test]
fn status_of_a_daemon_never_started_names_it_its_pipe_dir_and_unit_at_once() {
    let mps = MpsDir::new();
    let iso = isolation(&mps, 2000);
    let d = daemon(&iso, 2);
    let t = Instant::now();
    let e = d.status(&iso).unwrap_err();
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    assert!(matches!(e, DaemonError::NotRunning { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("gpu2-4096M-50pct"), "{msg}");
    assert!(msg.contains(&d.pipe_dir.display().to_string()), "{msg}");
    assert!(msg.contains("gpu-share-mps.service"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
}

#[test]
fn status_of_a_stale_socket_is_an_error_not_a_hang() {
    let mps = MpsDir::new();
    let iso = isolation(&mps, 2000);
    let d = daemon(&iso, 0);
    std::fs::create_dir_all(&d.pipe_dir).unwrap();
    // A socket file nobody listens on: what a daemon killed with SIGKILL leaves behind.
    drop(std::os::unix::net::UnixListener::bind(d.pipe_dir.join("control")).unwrap());
    let t = Instant::now();
    let e = d.status(&iso).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert!(matches!(e, DaemonError::NoAnswer { .. }), "{e:?}");
    assert!(
        e.to_string().contains("Cannot find MPS control daemon"),
        "{e}"
    );
    // Nothing holds that socket: start replaces it with a daemon that answers.
    assert_eq!(d.start(&iso, "0").unwrap(), Started::Started);
    assert_eq!(d.status(&iso).unwrap(), Vec::<u32>::new());
}

#[test]
fn status_of_a_daemon_that_never_answers_times_out() {
    let mps = MpsDir::new();
    let iso = isolation(&mps, 300);
    let d = daemon(&iso, 0);
    start_hung(&mps.control, &d.pipe_dir, &d.log_dir);
    let t = Instant::now();
    let e = d.status(&iso).unwrap_err();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("no answer within 300 ms"), "{msg}");
    assert!(msg.contains("gpu0-4096M-50pct"), "{msg}");
    // start must not hang on it either: it finds the daemon not answering and fails.
    let e = d.start(&iso, "0").unwrap_err();
    assert!(e.to_string().contains("no answer within 300 ms"), "{e}");
}

#[test]
fn start_with_a_missing_control_binary_names_it() {
    let mps = MpsDir::new();
    let mut iso = isolation(&mps, 500);
    iso.control = "/nonexistent/nvidia-cuda-mps-control".into();
    let e = daemon(&iso, 0).start(&iso, "0").unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("/nonexistent/nvidia-cuda-mps-control"),
        "{msg}"
    );
    assert!(msg.contains("gpu0-4096M-50pct"), "{msg}");
}

fn gpu_share(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(cli_bin())
        .arg("mps")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fake host with `gpus` GPUs and a shim config whose `[isolation]` points at a fresh
/// daemon directory; the host and the config's directory live as long as the values returned.
fn cli_host(gpus: u32) -> (FakeGpuHost, MpsDir, tempfile::TempDir, PathBuf) {
    let host = FakeGpuHost::new(gpus);
    let mps = MpsDir::new();
    let work = tempfile::tempdir().unwrap();
    let extra = format!("{}{}", common::NO_NVML, mps.section(""));
    let (config, _) = write_shim_config(work.path(), host.root(), &extra);
    (host, mps, work, config)
}

#[test]
fn gpu_share_mps_starts_one_daemon_per_gpu_reports_and_stops_them() {
    if !common::require("gpu_share_mps_starts_one_daemon_per_gpu", &["cc"]) {
        return;
    }
    let (_host, mps, _work, config) = cli_host(2);

    let (code, out, err) = gpu_share(&config, &["start"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        "gpu0-4096M-50pct: started\ngpu1-4096M-50pct: started\n"
    );
    let log = mps.control_log("gpu1-4096M-50pct");
    assert!(
        log.starts_with(&format!(
            "start CUDA_VISIBLE_DEVICES={}\n",
            FakeGpuHost::uuid(1)
        )),
        "{log}"
    );

    let (code, out, _) = gpu_share(&config, &["status"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("gpu0-4096M-50pct: answering, 0 server(s)"),
        "{out}"
    );
    assert!(out.contains("gpu1-4096M-50pct: answering"), "{out}");

    let (code, out, err) = gpu_share(&config, &["stop"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        "gpu0-4096M-50pct: stopped\ngpu1-4096M-50pct: stopped\n"
    );

    let (code, out, _) = gpu_share(&config, &["status"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        format!("no MPS daemon under {}\n", mps.path().display())
    );
}

#[test]
fn gpu_share_mps_status_reports_a_daemon_that_died_and_stop_cleans_it_up() {
    let mps = MpsDir::new();
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("c.toml");
    std::fs::write(&config, mps.section("")).unwrap();
    let iso = Config::load(&config).unwrap().isolation;
    let d = daemon(&iso, 0);
    d.start(&iso, "0").unwrap();
    let pid: i32 = std::fs::read_to_string(d.pipe_dir.join("nvidia-cuda-mps-control.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    unsafe { libc::kill(pid, libc::SIGKILL) };
    while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z")) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let (code, out, _) = gpu_share(&config, &["status"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("gpu0-4096M-50pct: down: MPS daemon gpu0-4096M-50pct (pipe dir"),
        "{out}"
    );
    let (code, out, err) = gpu_share(&config, &["stop"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "gpu0-4096M-50pct: not running\n"),
        "{err}"
    );
    let (code, out, _) = gpu_share(&config, &["status"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn gpu_share_mps_start_names_a_gpu_the_host_lacks() {
    if !common::require("gpu_share_mps_start_names_a_gpu_the_host_lacks", &["cc"]) {
        return;
    }
    let (_host, mps, _work, config) = cli_host(1);
    let (code, out, err) = gpu_share(&config, &["start", "--gpu", "3"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("--gpu 3"), "{err}");
    assert_eq!(std::fs::read_dir(mps.path()).unwrap().count(), 0);
}

#[test]
fn gpu_share_mps_start_in_mode_none_starts_nothing() {
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("c.toml");
    std::fs::write(&config, "[isolation]\nmode = \"none\"\n").unwrap();
    let (code, out, err) = gpu_share(&config, &["start"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("isolation.mode is \"none\": no MPS daemon to start"),
        "{out}"
    );
}

#[test]
fn isolation_defaults_to_none_and_reads_sizes_with_units() {
    let c = Config::parse("").unwrap();
    assert_eq!(c.isolation.mode, IsolationMode::None);
    assert_eq!(c.isolation.control, Path::new("nvidia-cuda-mps-control"));
    let c = Config::parse(
        "[isolation]\nmode = \"mps\"\nmemory = \"4GiB\"\nmax_memory = 17179869184\nreserved_memory = \"512MiB\"\ncompute_percent = 25\nmax_compute_percent = 50\n",
    )
    .unwrap();
    assert_eq!(c.isolation.memory, Some(ByteSize(4 << 30)));
    assert_eq!(c.isolation.max_memory, Some(ByteSize(16 << 30)));
    assert_eq!(c.isolation.reserved_memory, ByteSize(512 << 20));
    assert_eq!(c.isolation.compute_percent, Some(25));
    // The runtime reads [isolation]: a create will need it.
    let r = Config::parse_for_runtime("[isolation]\nmode = \"mps\"\nmemory = \"1GiB\"\n").unwrap();
    assert_eq!(r.isolation.memory, Some(ByteSize(1 << 30)));
}

#[test]
fn isolation_refuses_bad_sizes_and_caps_with_the_key() {
    let cases = [
        ("memory = \"4GB\"", "isolation.memory"),
        ("memory = \"4 gigs\"", "isolation.memory"),
        ("memory = -1", "isolation.memory"),
        ("memory = \"512KiB\"", "isolation.memory"),
        ("max_memory = \"1.5GiB\"", "isolation.max_memory"),
        ("compute_percent = 0", "isolation.compute_percent"),
        ("compute_percent = 101", "isolation.compute_percent"),
        (
            "memory = \"8GiB\"\nmax_memory = \"4GiB\"",
            "isolation.memory",
        ),
        (
            "compute_percent = 60\nmax_compute_percent = 50",
            "isolation.compute_percent",
        ),
        ("mode = \"mps\"", "isolation.memory"),
        ("mode = \"hami\"", "isolation.mode"),
        ("dir = \"run/mps\"", "isolation.dir"),
        ("answer_timeout_ms = 0", "isolation.answer_timeout_ms"),
    ];
    for (keys, key) in cases {
        let e = Config::parse(&format!("[isolation]\n{keys}\n")).unwrap_err();
        assert!(e.contains(key), "{keys}: {e}");
        assert!(!e.contains('\n'), "{keys}: {e}");
    }
}

#[test]
fn start_fails_when_the_daemon_never_opens_its_socket() {
    let mps = MpsDir::new();
    let mut iso = isolation(&mps, 200);
    // `true -d` exits 0 and listens nowhere: a daemon that died at once.
    iso.control = common::which("true").unwrap();
    let t = Instant::now();
    let e = daemon(&iso, 0).start(&iso, "0").unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let msg = e.to_string();
    assert!(
        msg.contains("gpu0-4096M-50pct: cannot start it: no answer within 200 ms"),
        "{msg}"
    );
    assert!(msg.contains("control.log"), "{msg}");
}

#[test]
fn gpu_share_mps_stop_leaves_daemons_it_does_not_own() {
    let mps = MpsDir::new();
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("c.toml");
    std::fs::write(&config, mps.section("")).unwrap();
    // ECS's daemon, as if its pipe directory sat under isolation.dir with a name not ours.
    // Under `pipe/`, so MpsDir's drop kills it whatever this test asserts.
    let ecs = mps.path().join("mps-ecs/pipe");
    std::fs::create_dir_all(&ecs).unwrap();
    let status = Command::new(&mps.control)
        .arg("-d")
        .env("CUDA_MPS_PIPE_DIRECTORY", &ecs)
        .env("CUDA_MPS_LOG_DIRECTORY", &ecs)
        .status()
        .unwrap();
    assert!(status.success());
    let (code, out, err) = gpu_share(&config, &["stop"]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    let log = std::fs::read_to_string(ecs.join("control.log")).unwrap();
    assert!(!log.contains("quit"), "{log}");
    assert!(ecs.join("control").exists());
}
