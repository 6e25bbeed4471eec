//! The shim in front of real runc, on a fake GPU host made with mknod.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{require, snapshot, Bundle, Shim, ShimHost};

/// A bundle named `name` in the host's dir: busybox running `args`, with `env` added.
fn bundle(s: &ShimHost, name: &str, args: &[&str], env: &[&str]) -> PathBuf {
    Bundle::busybox().args(args).env(env).write(&s.path(name))
}

/// The shim with runc's state under the host's dir.
fn shim(s: &ShimHost) -> Shim {
    s.shim().root(s.path("runc-state"))
}

/// `gpu-share-runtime --root R run --bundle B ID`, as dockerd's shim would call runc.
fn run(s: &ShimHost, bundle: &Path, id: &str) -> Output {
    shim(s).run(bundle, id).output()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn container_sees_gpu0_as_char_195_0() {
    if !require("container_sees_gpu0_as_char_195_0", &["runc"]) {
        return;
    }
    let s = ShimHost::new(1, "");
    let b = bundle(
        &s,
        "b",
        &["ls", "-l", "/dev/nvidia0", "/dev/nvidiactl"],
        &[],
    );
    let out = run(&s, &b, "gpu0");
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let line = text.lines().find(|l| l.ends_with("/dev/nvidia0")).unwrap();
    assert!(line.starts_with("crw-rw-rw-"), "{line}");
    assert!(line.contains("195,   0"), "{line}");
    assert!(text.contains("195, 255"), "{text}");
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(log.contains("create id=gpu0 gpus=0 "), "{log}");
}

#[test]
fn container_env_says_which_gpus_it_got() {
    if !require("container_env_says_which_gpus_it_got", &["runc"]) {
        return;
    }
    let s = ShimHost::new(4, "");
    let b = bundle(
        &s,
        "b",
        &["sh", "-c", "echo $NVIDIA_VISIBLE_DEVICES; ls /dev"],
        &[],
    );
    let out = run(&s, &b, "env-all");
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert_eq!(text.lines().next(), Some("0,1,2,3"));
    for n in [
        "nvidia0",
        "nvidia1",
        "nvidia2",
        "nvidia3",
        "nvidia-uvm",
        "nvidia-uvm-tools",
    ] {
        assert!(text.lines().any(|l| l == n), "{n} missing from {text}");
    }
}

#[test]
fn an_index_gets_only_that_gpu() {
    if !require("an_index_gets_only_that_gpu", &["runc"]) {
        return;
    }
    let s = ShimHost::new(4, "");
    let b = bundle(
        &s,
        "b",
        &["sh", "-c", "ls /dev"],
        &["NVIDIA_VISIBLE_DEVICES=2"],
    );
    let out = run(&s, &b, "idx2");
    assert!(out.status.success(), "{out:?}");
    let gpus: Vec<String> = stdout(&out)
        .lines()
        .filter(|l| l.starts_with("nvidia") && l[6..].bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_owned)
        .collect();
    assert_eq!(gpus, ["nvidia2"]);
}

#[test]
fn none_container_has_no_nvidia_devices() {
    if !require("none_container_has_no_nvidia_devices", &["runc"]) {
        return;
    }
    let s = ShimHost::new(1, "");
    for value in ["none", "void"] {
        let b = bundle(
            &s,
            value,
            &["sh", "-c", "ls /dev; echo env=$NVIDIA_VISIBLE_DEVICES"],
            &[&format!("NVIDIA_VISIBLE_DEVICES={value}")],
        );
        let before = std::fs::read(b.join("config.json")).unwrap();
        let out = run(&s, &b, &format!("c-{value}"));
        assert!(out.status.success(), "{out:?}");
        let text = stdout(&out);
        assert!(!text.contains("nvidia"), "{text}");
        assert!(text.contains(&format!("env={value}")), "{text}");
        assert_eq!(std::fs::read(b.join("config.json")).unwrap(), before);
    }
}

#[test]
fn default_none_leaves_unasking_containers_alone() {
    if !require("default_none_leaves_unasking_containers_alone", &["runc"]) {
        return;
    }
    let s = ShimHost::new(1, "[sharing]\ndefault = \"none\"\n");
    let b = bundle(&s, "plain", &["ls", "/dev"], &[]);
    let out = run(&s, &b, "plain");
    assert!(out.status.success(), "{out:?}");
    assert!(!stdout(&out).contains("nvidia"));
    let b = bundle(&s, "asks", &["ls", "/dev"], &["NVIDIA_VISIBLE_DEVICES=0"]);
    let out = run(&s, &b, "asks");
    assert!(stdout(&out).lines().any(|l| l == "nvidia0"), "{out:?}");
}

#[test]
fn runc_exit_status_comes_back_unchanged() {
    if !require("runc_exit_status_comes_back_unchanged", &["runc"]) {
        return;
    }
    let s = ShimHost::new(1, "");
    for code in [0, 3, 42] {
        let b = bundle(
            &s,
            &format!("exit{code}"),
            &["sh", "-c", &format!("exit {code}")],
            &[],
        );
        let out = run(&s, &b, &format!("exit{code}"));
        assert_eq!(out.status.code(), Some(code), "{out:?}");
    }
}

#[test]
fn host_without_gpus_runs_containers_unchanged() {
    if !require("host_without_gpus_runs_containers_unchanged", &["runc"]) {
        return;
    }
    let s = ShimHost::new(0, "");
    let b = bundle(&s, "b", &["ls", "/dev"], &[]);
    let before = std::fs::read(b.join("config.json")).unwrap();
    let out = run(&s, &b, "nogpu");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read(b.join("config.json")).unwrap(), before);
    let b = bundle(&s, "asks", &["ls", "/dev"], &["NVIDIA_VISIBLE_DEVICES=0"]);
    let out = run(&s, &b, "asks");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("NVIDIA_VISIBLE_DEVICES=0: this host has no NVIDIA GPU"),
        "{err}"
    );
}

#[test]
fn nvidia_hook_runs_as_prestart_when_present() {
    if !require("nvidia_hook_runs_as_prestart_when_present", &["runc"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("hook-ran");
    let hook = dir.path().join("nvidia-container-runtime-hook");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho \"$@\" > {m}\ncat >> {m}\n",
            m = marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let s = ShimHost::new(
        1,
        &format!("[hook]\npath = {:?}\n", hook.display().to_string()),
    );
    let b = bundle(&s, "b", &["true"], &[]);
    let out = run(&s, &b, "hooked");
    assert!(out.status.success(), "{out:?}");
    let ran = std::fs::read_to_string(&marker).unwrap();
    let (args, state) = ran.split_once('\n').unwrap();
    assert_eq!(args, "prestart");
    // runc hands the hook the container state on stdin.
    let state: serde_json::Value = serde_json::from_str(state.trim()).unwrap();
    assert_eq!(state["id"], "hooked");
}

#[test]
fn create_start_state_delete_all_go_through() {
    if !require("create_start_state_delete_all_go_through", &["runc"]) {
        return;
    }
    let s = ShimHost::new(1, "");
    let b = bundle(&s, "b", &["sleep", "30"], &[]);
    let out = shim(&s).create(&b, "lc").output();
    assert!(out.status.success(), "{out:?}");
    let out = shim(&s).args(["start", "lc"]).output();
    assert!(out.status.success(), "{out:?}");
    let out = shim(&s).args(["state", "lc"]).output();
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["status"], "running");
    let out = shim(&s).args(["exec", "lc", "ls", "/dev/nvidia0"]).output();
    assert_eq!(stdout(&out).trim(), "/dev/nvidia0");
    let out = shim(&s).args(["kill", "lc", "KILL"]).output();
    assert!(out.status.success(), "{out:?}");
    let out = shim(&s).args(["delete", "--force", "lc"]).output();
    assert!(out.status.success(), "{out:?}");
    let out = shim(&s).args(["state", "lc"]).output();
    assert!(!out.status.success());
}

/// An executable script at `dir/name` that appends its argv to `dir/ran`.
fn recording_hook(dir: &Path, name: &str) -> PathBuf {
    let hook = dir.join(name);
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho \"{name} $*\" >> {}\n",
            dir.join("ran").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    hook
}

#[test]
fn a_spec_injected_through_cdi_runs_no_legacy_hook() {
    if !require("a_spec_injected_through_cdi_runs_no_legacy_hook", &["runc"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let legacy = recording_hook(dir.path(), "nvidia-container-runtime-hook");
    let cdi = recording_hook(dir.path(), "nvidia-cdi-hook");
    let s = ShimHost::new(
        1,
        &format!("[hook]\npath = {:?}\n", legacy.display().to_string()),
    );
    // As `nvidia-ctk cdi generate` writes it, injected by a CDI-aware engine.
    let b = Bundle::busybox().args(&["true"]).write(&s.path("b"));
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    value["hooks"] = serde_json::json!({"createContainer": [{
        "path": cdi,
        "args": ["nvidia-cdi-hook", "update-ldcache", "--folder", "/usr/lib64"],
        "env": ["NVIDIA_CTK_DEBUG=false"]
    }]});
    std::fs::write(b.join("config.json"), value.to_string()).unwrap();
    let out = run(&s, &b, "cdi");
    assert!(out.status.success(), "{out:?}");
    let ran = std::fs::read_to_string(dir.path().join("ran")).unwrap();
    assert_eq!(ran, "nvidia-cdi-hook update-ldcache --folder /usr/lib64\n");
}

#[test]
fn help_flags_reach_runc_untouched() {
    if !require("help_flags_reach_runc_untouched", &["runc"]) {
        return;
    }
    let s = ShimHost::new(1, "");
    let empty = s.path("empty");
    std::fs::create_dir(&empty).unwrap();
    let with_spec = Bundle::docker().write(&s.path("with-spec"));
    let cases: &[&[&str]] = &[
        &["create", "-h"],
        &["run", "--help"],
        &["create", "-help"],
        &["create", "--h=true"],
        &["create", "id", "-h"],
        &["run", "--bundle", ".", "--help", "id"],
        &["--help", "create", "id"],
        &["-h", "run", "id"],
        &["--version", "create", "id"],
    ];
    for args in cases {
        for dir in [&empty, &with_spec] {
            let before = snapshot(dir);
            let through = s.shim().current_dir(dir).args(*args).output();
            let direct = Command::new("runc")
                .args(*args)
                .current_dir(dir)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(direct.status.success(), "{args:?}: {direct:?}");
            assert_eq!(through.status.code(), direct.status.code(), "{args:?}");
            assert_eq!(stdout(&through), stdout(&direct), "{args:?}");
            assert_eq!(through.stderr, direct.stderr, "{args:?}");
            assert_eq!(snapshot(dir), before, "{args:?} in {}", dir.display());
        }
    }
}

#[test]
fn a_spec_runc_would_merge_is_refused() {
    if !require("a_spec_runc_would_merge_is_refused", &["runc"]) {
        return;
    }
    let s = ShimHost::new(1, "");
    let b = bundle(&s, "b", &["echo", "first"], &[]);
    // A second "process": runc decodes it into the same struct, so its args replace the first's
    // and everything else (cwd, user, env) stays.
    let mut spec = std::fs::read(b.join("config.json")).unwrap();
    let end = spec.iter().rposition(|&c| c == b'}').unwrap();
    spec.truncate(end);
    spec.extend_from_slice(br#","process":{"args":["echo","merged"]}}"#);
    std::fs::write(b.join("config.json"), &spec).unwrap();
    let direct = Command::new("runc")
        .arg("--root")
        .arg(s.path("runc-state"))
        .args(["run", "--bundle"])
        .arg(&b)
        .arg("direct")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(direct.status.success(), "{direct:?}");
    assert_eq!(stdout(&direct).trim(), "merged");
    let before = snapshot(&b);
    let out = run(&s, &b, "merged");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#""process" appears twice at the top level"#),
        "{err}"
    );
    assert_eq!(snapshot(&b), before);
}
