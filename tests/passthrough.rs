//! What runc receives through the shim: the identical argv, the same process, stdin, stdout,
//! working directory and exit status. A recording stand-in for runc makes each visible.

mod common;

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::shim::Running;
use common::{require, shim_bin, snapshot, Bundle, FakeRunc, Shim, ShimHost};

/// The shim with no config, exec'ing `runc`.
fn shim(runc: &FakeRunc) -> Shim {
    Shim::without_config().runc(runc.path())
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
        let status = shim(&runc).args(&args).status();
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
    let host = ShimHost::new(1, "");
    let bundle = Bundle::docker().write(&host.path("bundle"));
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
        let status = host.shim().runc(runc.path()).args(&args).status();
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
    let host = ShimHost::new(1, "");
    let dir = Bundle::docker().write(host.dir.path());
    let status = host
        .shim()
        .runc(runc.path())
        .current_dir(&dir)
        .args(["create", "id"])
        .status();
    assert!(status.success());
    let spec = std::fs::read_to_string(dir.join("config.json")).unwrap();
    assert!(spec.contains("/dev/nvidia0"));
    let cwd = runc.recorded("cwd").unwrap();
    assert_eq!(Path::new(cwd.trim()), dir.canonicalize().unwrap());
}

#[test]
fn the_shim_becomes_runc_in_the_same_process() {
    let runc = FakeRunc::new();
    let running = shim(&runc).args(["state", "x"]).spawn();
    let pid = running.child.id();
    assert!(running.wait().status.success());
    assert_eq!(runc.recorded("pid").unwrap().trim(), pid.to_string());
}

#[test]
fn exit_status_is_runc_s() {
    let runc = FakeRunc::new();
    for code in [0, 1, 7, 255] {
        let status = shim(&runc)
            .env("FAKE_RUNC_EXIT", code.to_string())
            .args(["kill", "x", "9"])
            .status();
        assert_eq!(status.code(), Some(code));
    }
}

#[test]
fn stdin_is_left_for_runc() {
    let runc = FakeRunc::new();
    let mut running = shim(&runc)
        .env("FAKE_RUNC_STDIN", "1")
        .args(["update", "--resources=-", "x"])
        .stdin(Stdio::piped())
        .spawn();
    let resources = br#"{"memory":{"limit":1048576}}"#;
    running
        .child
        .stdin
        .take()
        .unwrap()
        .write_all(resources)
        .unwrap();
    assert!(running.wait().status.success());
    assert_eq!(runc.recorded("stdin").unwrap().as_bytes(), resources);
}

#[test]
fn stdout_and_stderr_are_runc_s_alone() {
    let runc = FakeRunc::new();
    let out = shim(&runc).args(["features"]).output();
    assert_eq!(out.stdout, b"runc-stdout");
    assert_eq!(out.stderr, b"runc-stderr");
}

#[test]
fn create_writes_nothing_to_stdout() {
    let runc = FakeRunc::new();
    let empty_root = tempfile::tempdir().unwrap();
    let host = ShimHost::on_root(empty_root.path(), "");
    let bundle = Bundle::docker().write(host.dir.path());
    let out = host
        .shim()
        .runc(runc.path())
        .args(["create", "--bundle", bundle.to_str().unwrap(), "id"])
        .output();
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
    let mut running = Shim::new(&fifo)
        .runc(runc.path())
        .args(["delete", "--force", "x"])
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = running.child.try_wait().unwrap() {
            assert!(status.success());
            break;
        }
        if Instant::now() > deadline {
            running.child.kill().unwrap();
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
    std::os::unix::fs::symlink(shim_bin(), decoy.path().join("runc")).unwrap();
    let path = std::env::join_paths([decoy.path(), runc.dir.path()]).unwrap();
    let status = Shim::without_config()
        .env("PATH", path)
        .args(["state", "x"])
        .status();
    assert!(status.success());
    assert!(runc.argv().is_some());
}

#[test]
fn no_runc_anywhere_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.json");
    let out = Shim::without_config()
        .env("PATH", dir.path())
        .log(&log, "json")
        .args(["start", "x"])
        .output();
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
    let empty_root = tempfile::tempdir().unwrap();
    let other = FakeRunc::new();
    let extra = format!(
        "[runtime]\npath = {:?}\n",
        other.path().display().to_string()
    );
    let host = ShimHost::on_root(empty_root.path(), &extra);
    let bundle = Bundle::docker().write(host.dir.path());
    let args = ["create", "--bundle", bundle.to_str().unwrap(), "id"];
    let out = host.shim().runc(runc.path()).args(args).output();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not the runc other commands use"), "{err}");
    assert!(runc.argv().is_none() && other.argv().is_none());
    // Pointing GPU_SHARE_RUNC at the same runc makes them agree.
    let out = host.shim().runc(other.path()).args(args).output();
    assert!(out.status.success(), "{out:?}");
    assert!(other.argv().is_some());
}

/// Waits up to ten seconds for the shim; one still running then is killed and fails the test.
fn within_ten_seconds(mut running: Running, what: &str) -> Output {
    let deadline = Instant::now() + Duration::from_secs(10);
    while running.child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            running.child.kill().unwrap();
            panic!("{what}: still running after 10s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    running.wait()
}

#[test]
fn a_runc_that_is_the_shim_itself_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("runc");
    std::os::unix::fs::symlink(shim_bin(), &link).unwrap();
    let log = dir.path().join("log.json");
    for runc in [shim_bin(), link] {
        let _ = std::fs::remove_file(&log);
        let running = Shim::without_config()
            .runc(&runc)
            .log(&log, "json")
            .args(["state", "x"])
            .spawn();
        let out = within_ten_seconds(running, &runc.display().to_string());
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        let why = format!(
            "GPU_SHARE_RUNC={} is the gpu-share runtime itself, not runc",
            runc.display()
        );
        assert!(err.contains(&why), "{err}");
        let line: serde_json::Value =
            serde_json::from_str(std::fs::read_to_string(&log).unwrap().trim()).unwrap();
        assert!(line["msg"].as_str().unwrap().contains(&why), "{line}");
    }
}

#[test]
fn create_refuses_a_runc_that_is_the_shim_itself() {
    let empty_root = tempfile::tempdir().unwrap();
    let host = ShimHost::on_root(empty_root.path(), "");
    let bundle = Bundle::docker().write(&host.path("bundle"));
    let before = snapshot(&bundle);
    let running = host.shim().runc(shim_bin()).create(&bundle, "id").spawn();
    let out = within_ten_seconds(running, "create");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("gpu-share-runtime: create id: GPU_SHARE_RUNC="),
        "{err}"
    );
    assert!(err.contains("is the gpu-share runtime itself"), "{err}");
    assert_eq!(snapshot(&bundle), before);
    let log = std::fs::read_to_string(&host.log).unwrap();
    assert_eq!(log.lines().count(), 1, "{log}");
    // runtime.path naming the shim is refused as such, not as a mismatch.
    let runc = FakeRunc::new();
    let extra = format!("[runtime]\npath = {:?}\n", shim_bin().display().to_string());
    let host = ShimHost::on_root(empty_root.path(), &extra);
    let out = host.shim().runc(runc.path()).create(&bundle, "id").output();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("runtime.path = "), "{err}");
    assert!(err.contains("is the gpu-share runtime itself"), "{err}");
    assert!(runc.argv().is_none());
    assert_eq!(snapshot(&bundle), before);
}
