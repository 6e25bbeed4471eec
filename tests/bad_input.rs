//! Bad input on the create path: one clear line on stderr and in runc's `--log` (in its
//! `--log-format`), exit status 1, runc never called, and the bundle byte-for-byte as it was.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{require, snapshot, Bundle, FakeGpuHost, FakeRunc, ShimHost};

struct Case {
    host: ShimHost,
    bundle: PathBuf,
    runc: FakeRunc,
}

impl Case {
    /// A bundle holding the docker-like fixture spec, and a shim config over `devices_root`.
    fn new(devices_root: &Path) -> Case {
        let host = ShimHost::on_root(devices_root, "");
        let bundle = Bundle::docker().write(&host.path("bundle"));
        std::fs::create_dir_all(bundle.join("rootfs/bin")).unwrap();
        std::fs::write(bundle.join("rootfs/bin/sh"), b"not really a shell").unwrap();
        Case {
            host,
            bundle,
            runc: FakeRunc::new(),
        }
    }

    fn set_spec(&self, bytes: &[u8]) {
        std::fs::write(self.bundle.join("config.json"), bytes).unwrap();
    }

    fn set_env(&self, value: &str) {
        self.set_spec(&Bundle::docker().visible_devices(value).spec_bytes());
    }

    /// Runs `create` and checks every promise about a refused create; returns the message.
    fn expect_refusal(&self, bundle: &Path, format: &str) -> String {
        let before = snapshot(&self.bundle);
        let log = self.host.path("runc-log");
        let _ = std::fs::remove_file(&log);
        let out = self
            .host
            .shim()
            .runc(self.runc.path())
            .root("/run/x")
            .log(&log, format)
            .args(["create", "--bundle"])
            .arg(bundle)
            .args(["--pid-file", "/run/x/pid", "ctr-1"])
            .output();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("gpu-share-runtime: create ctr-1: "),
            "{err}"
        );
        assert!(self.runc.argv().is_none(), "runc ran after a refusal");
        assert_eq!(snapshot(&self.bundle), before, "the bundle changed");
        let logged = std::fs::read_to_string(&log).unwrap();
        assert_eq!(logged.lines().count(), 1, "{logged}");
        let message = err.trim_end().to_owned();
        if format == "json" {
            let line: serde_json::Value = serde_json::from_str(logged.trim()).unwrap();
            assert_eq!(line["level"], "error");
            assert_eq!(line["msg"], message.as_str());
            assert!(line["time"].as_str().unwrap().ends_with('Z'));
        } else {
            assert!(logged.starts_with("time=\""), "{logged}");
            assert!(logged.contains(" level=error msg=\""), "{logged}");
        }
        message
    }
}

fn no_gpu_root() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn malformed_spec_is_refused() {
    let root = no_gpu_root();
    let c = Case::new(root.path());
    c.set_spec(br#"{"process": {"env": ["A=1"],"#);
    let msg = c.expect_refusal(&c.bundle, "json");
    assert!(msg.contains("config.json is not valid JSON"), "{msg}");
    assert!(msg.contains("line 1"), "{msg}");
}

#[test]
fn empty_spec_is_refused() {
    let root = no_gpu_root();
    let c = Case::new(root.path());
    c.set_spec(b"");
    assert!(c
        .expect_refusal(&c.bundle, "json")
        .contains("config.json is empty"));
}

#[test]
fn huge_spec_is_refused() {
    let root = no_gpu_root();
    let c = Case::new(root.path());
    let mut huge = vec![b' '; 17 * 1024 * 1024];
    huge.extend_from_slice(b"{}");
    c.set_spec(&huge);
    let msg = c.expect_refusal(&c.bundle, "text");
    assert!(msg.contains("over the 16777216-byte limit"), "{msg}");
}

#[test]
fn spec_that_is_not_an_object_is_refused() {
    let root = no_gpu_root();
    let c = Case::new(root.path());
    c.set_spec(b"[1, 2, 3]");
    let msg = c.expect_refusal(&c.bundle, "json");
    assert!(
        msg.contains("config.json is an array, expected an object"),
        "{msg}"
    );
}

#[test]
fn missing_bundle_is_refused() {
    let root = no_gpu_root();
    let c = Case::new(root.path());
    let msg = c.expect_refusal(&c.host.path("no-such-bundle"), "json");
    assert!(msg.contains("no-such-bundle: no such directory"), "{msg}");
}

#[test]
fn bundle_without_spec_is_refused() {
    let root = no_gpu_root();
    let c = Case::new(root.path());
    std::fs::remove_file(c.bundle.join("config.json")).unwrap();
    let msg = c.expect_refusal(&c.bundle, "json");
    assert!(msg.contains("config.json: no such file"), "{msg}");
}

#[test]
fn spec_symlinked_out_of_the_bundle_is_refused() {
    let root = no_gpu_root();
    let c = Case::new(root.path());
    let outside = c.host.path("elsewhere.json");
    std::fs::write(&outside, Bundle::docker().spec_bytes()).unwrap();
    std::fs::remove_file(c.bundle.join("config.json")).unwrap();
    std::os::unix::fs::symlink(&outside, c.bundle.join("config.json")).unwrap();
    let before = std::fs::read(&outside).unwrap();
    let msg = c.expect_refusal(&c.bundle, "json");
    assert!(msg.contains("is a symbolic link"), "{msg}");
    assert_eq!(std::fs::read(&outside).unwrap(), before);
}

#[test]
fn bad_config_file_is_refused_with_the_key_named() {
    let root = no_gpu_root();
    let c = Case::new(root.path());
    std::fs::write(&c.host.config, "[sharing]\ndefault = \"most\"\n").unwrap();
    let msg = c.expect_refusal(&c.bundle, "json");
    assert!(msg.contains("line 2: sharing.default"), "{msg}");
    std::fs::write(&c.host.config, "[log]\nlevle = \"info\"\n").unwrap();
    let msg = c.expect_refusal(&c.bundle, "text");
    assert!(msg.contains("log.levle"), "{msg}");
}

#[test]
fn a_bad_metrics_section_does_not_stop_containers() {
    if !require("a_bad_metrics_section_does_not_stop_containers", &[]) {
        return;
    }
    let host = FakeGpuHost::new(1);
    let c = Case::new(host.root());
    let mut config = std::fs::read_to_string(&c.host.config).unwrap();
    config.push_str("[metrics]\nnamespace = \"\"\nno_such_key = 1\n[nvml]\nlibrary = 5\n");
    std::fs::write(&c.host.config, config).unwrap();
    let out = c
        .host
        .shim()
        .runc(c.runc.path())
        .create(&c.bundle, "ctr-1")
        .output();
    assert!(out.status.success(), "{out:?}");
    assert!(c.runc.argv().is_some(), "runc did not run");
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(c.bundle.join("config.json")).unwrap()).unwrap();
    assert!(
        spec["linux"]["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["path"] == "/dev/nvidia0"),
        "{spec}"
    );
}

#[test]
fn unreadable_config_file_is_refused() {
    let root = no_gpu_root();
    let c = Case::new(root.path());
    std::fs::remove_file(&c.host.config).unwrap();
    std::fs::create_dir(&c.host.config).unwrap();
    let msg = c.expect_refusal(&c.bundle, "json");
    assert!(msg.contains("cannot read"), "{msg}");
}

#[test]
fn bad_env_value_is_refused() {
    let root = no_gpu_root();
    let c = Case::new(root.path());
    c.set_env("gpu0");
    let msg = c.expect_refusal(&c.bundle, "json");
    assert!(
        msg.ends_with("NVIDIA_VISIBLE_DEVICES=gpu0: \"gpu0\" is not a GPU index, a GPU-<uuid>, all, none or void"),
        "{msg}"
    );
}

#[test]
fn spec_of_the_wrong_shape_is_refused() {
    if !require("spec_of_the_wrong_shape_is_refused", &[]) {
        return;
    }
    let host = FakeGpuHost::new(1);
    let c = Case::new(host.root());
    c.set_spec(br#"{"process": {"env": "NVIDIA_VISIBLE_DEVICES=all"}}"#);
    let msg = c.expect_refusal(&c.bundle, "json");
    assert!(
        msg.contains("process.env is a string, expected an array"),
        "{msg}"
    );
}

#[test]
fn gpu_index_the_host_lacks_is_refused() {
    if !require("gpu_index_the_host_lacks_is_refused", &[]) {
        return;
    }
    let host = FakeGpuHost::new(1);
    let c = Case::new(host.root());
    c.set_env("0,7");
    let msg = c.expect_refusal(&c.bundle, "json");
    assert!(
        msg.ends_with("NVIDIA_VISIBLE_DEVICES=0,7: this host has GPUs 0-0"),
        "{msg}"
    );
}

/// A config whose state dir cannot be made (a regular file stands where it should be).
fn broken_state_config(c: &Case, devices_root: &Path, sharing: &str) {
    let blocker = c.host.path("not-a-dir");
    std::fs::write(&blocker, b"").unwrap();
    std::fs::write(
        &c.host.config,
        format!(
            "[devices]\nroot = {:?}\n[state]\ndir = {:?}\n[log]\npath = {:?}\n[sharing]\n{sharing}\n",
            devices_root.display().to_string(),
            blocker.join("state").display().to_string(),
            c.host.path("shim.log").display().to_string()
        ),
    )
    .unwrap();
}

#[test]
fn a_broken_state_dir_does_not_stop_containers_placement_does_not_need() {
    if !require("a_broken_state_dir_does_not_stop_containers", &[]) {
        return;
    }
    let host = FakeGpuHost::new(1);
    let c = Case::new(host.root());
    broken_state_config(&c, host.root(), "placement = \"all\"");
    let out = c
        .host
        .shim()
        .runc(c.runc.path())
        .create(&c.bundle, "ctr-2")
        .output();
    assert!(out.status.success(), "{out:?}");
    assert!(c.runc.argv().is_some());
    let spec = std::fs::read_to_string(c.bundle.join("config.json")).unwrap();
    assert!(spec.contains("/dev/nvidia0"));
    let log = std::fs::read_to_string(c.host.path("shim.log")).unwrap();
    assert!(log.contains("state=unrecorded"), "{log}");
}

#[test]
fn a_broken_state_dir_refuses_containers_placement_needs_it_for() {
    if !require("a_broken_state_dir_refuses_containers", &[]) {
        return;
    }
    let host = FakeGpuHost::new(1);
    let c = Case::new(host.root());
    broken_state_config(&c, host.root(), "placement = \"spread\"");
    let msg = c.expect_refusal(&c.bundle, "json");
    assert!(msg.contains("not-a-dir/state"), "{msg}");
}

/// A value that tries to start lines of its own: a newline and a forged shim log line, a carriage
/// return, an escape sequence, and the line breaks other readers know (NEL, U+2028).
const FORGERY: &str =
    "gpu0\n2026-01-01T00:00:00.000000Z INFO create id=forged gpus=0\r\x1b[2K\u{85}\u{2028}x";

/// Whether `line` holds a control character or a Unicode line break.
fn has_breaks(line: &str) -> bool {
    line.chars()
        .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
}

#[test]
fn a_newline_in_the_request_cannot_forge_a_log_line() {
    let root = no_gpu_root();
    let c = Case::new(root.path());
    c.set_env(FORGERY);
    for format in ["json", "text"] {
        let msg = c.expect_refusal(&c.bundle, format);
        assert!(!has_breaks(&msg), "{msg:?}");
        assert!(msg.contains("gpu0\\n2026-01-01"), "{msg:?}");
        let logged = std::fs::read_to_string(c.host.path("runc-log")).unwrap();
        assert!(!has_breaks(logged.trim_end_matches('\n')), "{logged:?}");
    }
    let shim_log = std::fs::read_to_string(&c.host.log).unwrap();
    assert_eq!(shim_log.lines().count(), 2, "{shim_log:?}");
    for line in shim_log.lines() {
        assert!(line.contains(" ERROR create id=ctr-1 failed: "), "{line:?}");
        assert!(!has_breaks(line), "{line:?}");
    }
}

#[test]
fn a_newline_in_the_container_id_cannot_forge_a_log_line() {
    let root = no_gpu_root();
    let c = Case::new(root.path());
    let out = c
        .host
        .shim()
        .runc(c.runc.path())
        .create(&c.bundle, FORGERY)
        .output();
    assert!(out.status.success(), "{out:?}");
    let shim_log = std::fs::read_to_string(&c.host.log).unwrap();
    assert_eq!(shim_log.lines().count(), 1, "{shim_log:?}");
    assert!(!has_breaks(shim_log.trim_end_matches('\n')), "{shim_log:?}");
}

#[test]
fn a_closed_stderr_still_writes_runc_s_log_and_exits_1() {
    let root = no_gpu_root();
    let c = Case::new(root.path());
    c.set_env("gpu0");
    let log = c.host.path("runc-log");
    let shim = c
        .host
        .shim()
        .runc(c.runc.path())
        .log(&log, "json")
        .create(&c.bundle, "ctr-1")
        .into_command();
    // As a caller that ignores SIGPIPE would start it: a write to the closed pipe fails (EPIPE)
    // instead of killing the shim.
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(r#"trap "" PIPE; exec "$0" "$@""#)
        .arg(shim.get_program())
        .args(shim.get_args());
    for (key, value) in shim.get_envs() {
        match value {
            Some(v) => sh.env(key, v),
            None => sh.env_remove(key),
        };
    }
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    drop(read_end);
    let status = sh
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(write_end))
        .status()
        .unwrap();
    // Not a signal (SIGABRT under panic=abort), not a panic's 101.
    assert_eq!(status.code(), Some(1), "{status:?}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(logged.lines().count(), 1, "{logged}");
    let line: serde_json::Value = serde_json::from_str(logged.trim()).unwrap();
    assert!(
        line["msg"]
            .as_str()
            .unwrap()
            .starts_with("gpu-share-runtime: create ctr-1: NVIDIA_VISIBLE_DEVICES=gpu0"),
        "{line}"
    );
    assert!(c.runc.argv().is_none());
}

#[test]
fn a_key_repeated_in_the_spec_is_refused() {
    let root = no_gpu_root();
    let c = Case::new(root.path());
    // runc (Go) merges the two "process" objects; the shim would have read only the last.
    c.set_spec(
        br#"{"ociVersion":"1.0.2","process":{"env":["PATH=/bin"],"cwd":"/"},"root":{"path":"rootfs"},"process":{"args":["sh"]}}"#,
    );
    let msg = c.expect_refusal(&c.bundle, "json");
    assert!(
        msg.contains(r#"config.json: "process" appears twice at the top level (line 1, column "#),
        "{msg}"
    );
    c.set_spec(
        br#"{"process":{"env":["PATH=/bin"],"cwd":"/","env":["NVIDIA_VISIBLE_DEVICES=all"]}}"#,
    );
    let msg = c.expect_refusal(&c.bundle, "text");
    assert!(msg.contains(r#""env" appears twice in process"#), "{msg}");
}

#[test]
fn keys_runc_takes_for_one_are_refused() {
    let root = no_gpu_root();
    let c = Case::new(root.path());
    // Go's encoding/json matches a struct's keys case-insensitively: to runc (and the NVIDIA
    // hook) "Process" is more of "process", its env replacing the one the shim read.
    c.set_spec(
        br#"{"process":{"env":["PATH=/bin"],"cwd":"/"},"Process":{"env":["NVIDIA_VISIBLE_DEVICES=all"]}}"#,
    );
    let msg = c.expect_refusal(&c.bundle, "json");
    assert!(
        msg.contains(r#""Process" and "process" are one key to runc"#),
        "{msg}"
    );
    assert!(msg.contains("at the top level"), "{msg}");
}

#[test]
fn an_unknown_injection_mode_is_refused_with_the_key_named() {
    let root = no_gpu_root();
    let c = Case::new(root.path());
    std::fs::write(&c.host.config, "[devices]\ninjection = \"nvidia\"\n").unwrap();
    let msg = c.expect_refusal(&c.bundle, "json");
    assert!(msg.contains("line 2: devices.injection"), "{msg}");
    assert!(msg.contains("nvidia"), "{msg}");
}

/// A case over `host` whose config asks for `devices.injection = "cdi"`.
fn cdi_case(host: &FakeGpuHost) -> Case {
    let c = Case::new(host.root());
    common::cdi::set_injection(&c.host.config, "cdi");
    c
}

#[test]
fn cdi_injection_without_a_spec_is_refused_naming_the_spec_dirs() {
    let host = FakeGpuHost::new(1);
    let c = cdi_case(&host);
    let msg = c.expect_refusal(&c.bundle, "json");
    assert!(
        msg.contains("devices.injection = \"cdi\": no CDI spec of kind nvidia.com/gpu in "),
        "{msg}"
    );
    assert!(msg.contains("/etc/cdi or "), "{msg}");
    assert!(msg.contains("/var/run/cdi"), "{msg}");
}

#[test]
fn cdi_injection_with_a_spec_of_an_unknown_major_is_refused() {
    let host = FakeGpuHost::new(1);
    let c = cdi_case(&host);
    let spec = host.root().join("etc/cdi/nvidia.json");
    std::fs::create_dir_all(spec.parent().unwrap()).unwrap();
    std::fs::write(
        &spec,
        r#"{"cdiVersion":"1.0.0","kind":"nvidia.com/gpu","devices":[{"name":"0","containerEdits":{"deviceNodes":[{"path":"/dev/nvidia0"}]}}]}"#,
    )
    .unwrap();
    let msg = c.expect_refusal(&c.bundle, "text");
    assert!(msg.contains("cdiVersion \"1.0.0\""), "{msg}");
    assert!(msg.contains("etc/cdi/nvidia.json"), "{msg}");
}

#[test]
fn cdi_injection_with_a_stale_spec_is_refused_naming_the_gpu() {
    if !require("cdi_injection_with_a_stale_spec_is_refused", &["cc"]) {
        return;
    }
    let host = FakeGpuHost::new(2);
    let spec = common::cdi::write_nvidia_spec(&host, "var/run/cdi");
    let text = std::fs::read_to_string(&spec).unwrap();
    let uuid1 = FakeGpuHost::uuid(1);
    std::fs::write(
        &spec,
        text.replace("name: \"1\"", "name: \"7\"")
            .replace(&uuid1, "GPU-x"),
    )
    .unwrap();
    let c = cdi_case(&host);
    let msg = c.expect_refusal(&c.bundle, "json");
    assert!(
        msg.contains(&format!("GPU 1 ({uuid1}, /dev/nvidia1) has no device")),
        "{msg}"
    );
}
