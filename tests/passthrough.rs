//! What runc receives through the shim: the identical argv, the same process, stdin, stdout,
//! working directory and exit status. A recording stand-in for runc makes each visible.

mod common;

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{require, write_shim_config, FakeGpuHost, FakeRunc};

const SHIM: &str = env!("CARGO_BIN_EXE_gpu-share-runtime");
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/docker-config.json"
);

fn shim(runc: &FakeRunc) -> Command {
    let mut c = Command::new(SHIM);
    c.env("GPU_SHARE_RUNC", runc.path())
        .env_remove("GPU_SHARE_CONFIG")
        .stdin(Stdio::null());
    c
}

fn bytes(args: &[OsString]) -> Vec<Vec<u8>> {
    args.iter().map(|a| a.as_bytes().to_vec()).collect()
}

#[test]
fn passthrough_argv_reaches_runc_identical() {
    let runc = FakeRunc::new();
    let cases: Vec<Vec<OsString>> = vec![
        vec!["start".into(), "abc".into()],
        vec![
            "--root".into(),
            "/run/docker/runtime-runc/moby".into(),
            "--log".into(),
            "/x/log.json".into(),
            "--log-format".into(),
            "json".into(),
            "exec".into(),
            "--process".into(),
            "/tmp/p.json".into(),
            "--detach".into(),
            "--pid-file".into(),
            "/x/pid".into(),
            "abc".into(),
        ],
        vec!["kill".into(), "abc".into(), "15".into()],
        vec!["delete".into(), "--force".into(), "abc".into()],
        vec!["--version".into()],
        vec!["features".into()],
        vec![
            "--rootless=auto".into(),
            "--pidfd-socket".into(),
            "/s".into(),
            "--some-flag-from-2030".into(),
            "state".into(),
            "abc".into(),
        ],
        vec![
            "".into(),
            " spaced arg ".into(),
            OsString::from_vec(vec![0xff, 0xfe]),
        ],
        vec![],
    ];
    for args in cases {
        let status = shim(&runc).args(&args).status().unwrap();
        assert!(status.success(), "{args:?}");
        assert_eq!(runc.argv(), Some(bytes(&args)), "{args:?}");
    }
}

#[test]
fn create_argv_reaches_runc_identical_after_the_edit() {
    if !require("create_argv_reaches_runc_identical_after_the_edit", &[]) {
        return;
    }
    let runc = FakeRunc::new();
    let host = FakeGpuHost::new(1);
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = write_shim_config(dir.path(), host.root(), "");
    let bundle = dir.path().join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    std::fs::copy(FIXTURE, bundle.join("config.json")).unwrap();
    let b = bundle.to_str().unwrap();
    let bundle_eq = format!("--bundle={b}");
    let forms: Vec<Vec<&str>> = vec![
        vec![
            "--root",
            "/r",
            "--log",
            "/dev/null",
            "--log-format",
            "json",
            "create",
            "--bundle",
            b,
            "--pid-file",
            "/p",
            "id1",
        ],
        vec![
            "--systemd-cgroup",
            "create",
            "-b",
            b,
            "--no-new-keyring",
            "id2",
        ],
        vec!["create", &bundle_eq, "--console-socket", "/c.sock", "id3"],
        vec![
            "--unknown-global=1",
            "run",
            "-d",
            "--keep",
            "-b",
            b,
            "--preserve-fds",
            "2",
            "id4",
        ],
    ];
    for args in forms {
        let status = shim(&runc)
            .env("GPU_SHARE_CONFIG", &config)
            .args(&args)
            .status()
            .unwrap();
        assert!(status.success(), "{args:?}");
        let want: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        assert_eq!(runc.argv(), Some(want), "{args:?}");
        let spec = std::fs::read_to_string(bundle.join("config.json")).unwrap();
        assert!(spec.contains("NVIDIA_VISIBLE_DEVICES=0"), "{args:?}");
    }
}

#[test]
fn create_without_bundle_flag_edits_the_working_directory() {
    if !require(
        "create_without_bundle_flag_edits_the_working_directory",
        &[],
    ) {
        return;
    }
    let runc = FakeRunc::new();
    let host = FakeGpuHost::new(1);
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = write_shim_config(dir.path(), host.root(), "");
    std::fs::copy(FIXTURE, dir.path().join("config.json")).unwrap();
    let status = shim(&runc)
        .env("GPU_SHARE_CONFIG", &config)
        .current_dir(dir.path())
        .args(["create", "id"])
        .status()
        .unwrap();
    assert!(status.success());
    let spec = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    assert!(spec.contains("/dev/nvidia0"));
    let cwd = runc.recorded("cwd").unwrap();
    assert_eq!(Path::new(cwd.trim()), dir.path().canonicalize().unwrap());
}

#[test]
fn the_shim_becomes_runc_in_the_same_process() {
    let runc = FakeRunc::new();
    let mut child = shim(&runc).args(["state", "x"]).spawn().unwrap();
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    assert_eq!(runc.recorded("pid").unwrap().trim(), pid.to_string());
}

#[test]
fn exit_status_is_runc_s() {
    let runc = FakeRunc::new();
    for code in [0, 1, 7, 255] {
        let status = shim(&runc)
            .env("FAKE_RUNC_EXIT", code.to_string())
            .args(["kill", "x", "9"])
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(code));
    }
}

#[test]
fn stdin_is_left_for_runc() {
    let runc = FakeRunc::new();
    let mut child = shim(&runc)
        .env("FAKE_RUNC_STDIN", "1")
        .args(["update", "--resources=-", "x"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let resources = br#"{"memory":{"limit":1048576}}"#;
    child.stdin.take().unwrap().write_all(resources).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(runc.recorded("stdin").unwrap().as_bytes(), resources);
}

#[test]
fn stdout_and_stderr_are_runc_s_alone() {
    let runc = FakeRunc::new();
    let out = shim(&runc).args(["features"]).output().unwrap();
    assert_eq!(out.stdout, b"runc-stdout");
    assert_eq!(out.stderr, b"runc-stderr");
}

#[test]
fn create_writes_nothing_to_stdout() {
    let runc = FakeRunc::new();
    let dir = tempfile::tempdir().unwrap();
    let empty_root = tempfile::tempdir().unwrap();
    let (config, _) = write_shim_config(dir.path(), empty_root.path(), "");
    std::fs::copy(FIXTURE, dir.path().join("config.json")).unwrap();
    let out = shim(&runc)
        .env("GPU_SHARE_CONFIG", &config)
        .args(["create", "--bundle", dir.path().to_str().unwrap(), "id"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"runc-stdout");
    assert_eq!(out.stderr, b"runc-stderr");
}

#[test]
fn passthrough_reads_no_config() {
    // A FIFO with no writer: reading it would block forever.
    let runc = FakeRunc::new();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("config.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut child = shim(&runc)
        .env("GPU_SHARE_CONFIG", &fifo)
        .args(["delete", "--force", "x"])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success());
            break;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("a pass-through command read the config file");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(runc.argv().is_some());
}

#[test]
fn a_shim_installed_as_runc_on_path_is_skipped() {
    let runc = FakeRunc::new();
    let decoy = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(SHIM, decoy.path().join("runc")).unwrap();
    let path = std::env::join_paths([decoy.path(), runc.dir.path()]).unwrap();
    let status = Command::new(SHIM)
        .env_remove("GPU_SHARE_RUNC")
        .env("PATH", path)
        .args(["state", "x"])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(runc.argv().is_some());
}

#[test]
fn no_runc_anywhere_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.json");
    let out = Command::new(SHIM)
        .env_remove("GPU_SHARE_RUNC")
        .env("PATH", dir.path())
        .args([
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "start",
            "x",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no runc found"), "{err}");
    let line: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&log).unwrap().trim()).unwrap();
    assert_eq!(line["level"], "error");
    assert!(line["msg"].as_str().unwrap().contains("no runc found"));
}

#[test]
fn runtime_path_must_be_the_runc_other_commands_reach() {
    let runc = FakeRunc::new();
    let dir = tempfile::tempdir().unwrap();
    let empty_root = tempfile::tempdir().unwrap();
    let other = FakeRunc::new();
    let extra = format!(
        "[runtime]\npath = {:?}\n",
        other.path().display().to_string()
    );
    let (config, _) = write_shim_config(dir.path(), empty_root.path(), &extra);
    std::fs::copy(FIXTURE, dir.path().join("config.json")).unwrap();
    let args = ["create", "--bundle", dir.path().to_str().unwrap(), "id"];
    let out = shim(&runc)
        .env("GPU_SHARE_CONFIG", &config)
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not the runc other commands use"), "{err}");
    assert!(runc.argv().is_none() && other.argv().is_none());
    // Pointing GPU_SHARE_RUNC at the same runc makes them agree.
    let out = shim(&other)
        .env("GPU_SHARE_CONFIG", &config)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(other.argv().is_some());
}
