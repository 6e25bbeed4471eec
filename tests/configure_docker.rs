//! `gpu-share configure docker` / `unconfigure docker` on the three ways ECS hosts configure
//! dockerd, round trip, through the real binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::cli_bin;

const RUNTIME: &str = "/usr/local/bin/gpu-share-runtime";

struct Etc {
    dir: tempfile::TempDir,
}

impl Etc {
    fn new() -> Etc {
        Etc {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    fn run(&self, verb: &str, extra: &[&str]) -> Output {
        Command::new(cli_bin())
            .args([verb, "docker", "--config"])
            .arg(self.path("daemon.json"))
            .arg("--sysconfig")
            .arg(self.path("sysconfig-docker"))
            .arg("--runtimes-dir")
            .arg(self.path("docker-runtimes.d"))
            .arg("--record")
            .arg(self.path("gpu-share/docker-configure.json"))
            .args(["--runtime-path", RUNTIME])
            .args(extra)
            .output()
            .unwrap()
    }

    fn ok(&self, verb: &str, extra: &[&str]) -> String {
        let out = self.run(verb, extra);
        assert!(out.status.success(), "{verb}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every file under the dir (links as their targets), for before/after comparisons.
    fn snapshot(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut stack = vec![self.dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                let name = p
                    .strip_prefix(self.dir.path())
                    .unwrap()
                    .display()
                    .to_string();
                let meta = std::fs::symlink_metadata(&p).unwrap();
                if meta.is_dir() {
                    stack.push(p);
                } else if meta.file_type().is_symlink() {
                    out.push((
                        name,
                        format!("-> {}", std::fs::read_link(&p).unwrap().display()),
                    ));
                } else if !name.contains(".bak") {
                    out.push((name, std::fs::read_to_string(&p).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.read("daemon.json")).unwrap()
    }
}

#[test]
fn daemon_json_keeps_other_keys_and_their_order_and_round_trips() {
    let etc = Etc::new();
    etc.write(
        "daemon.json",
        r#"{"log-driver": "json-file", "log-opts": {"max-size": "10m"}, "runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": []}}, "default-runtime": "nvidia", "zzz-last": true}"#,
    );
    let before = etc.snapshot();
    etc.ok("configure", &[]);
    let j = etc.json();
    let keys: Vec<&String> = j.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "log-driver",
            "log-opts",
            "runtimes",
            "default-runtime",
            "zzz-last"
        ]
    );
    assert_eq!(j["default-runtime"], "gpu-share");
    assert_eq!(j["runtimes"]["gpu-share"]["path"], RUNTIME);
    assert_eq!(j["runtimes"]["nvidia"]["path"], RUNTIME);
    assert_eq!(j["log-opts"]["max-size"], "10m");
    // A timestamped backup of the original beside it.
    let backups: Vec<_> = std::fs::read_dir(etc.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name().to_string_lossy().starts_with("daemon.json.")
                && e.file_name().to_string_lossy().ends_with(".bak")
        })
        .collect();
    assert_eq!(backups.len(), 1);
    // Idempotent.
    let again = etc.ok("configure", &[]);
    assert!(again.contains("nothing to change"), "{again}");
    etc.ok("unconfigure", &[]);
    let restored = etc.json();
    assert_eq!(restored["default-runtime"], "nvidia");
    assert_eq!(
        restored["runtimes"],
        serde_json::json!({"nvidia": {"path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": []}})
    );
    assert_eq!(restored["zzz-last"], true);
    let after: Vec<_> = etc.snapshot();
    let json_before = &before.iter().find(|(n, _)| n == "daemon.json").unwrap().1;
    let v_before: serde_json::Value = serde_json::from_str(json_before).unwrap();
    assert_eq!(restored, v_before);
    assert_eq!(after.len(), before.len(), "{after:?}");
}

#[test]
fn missing_daemon_json_is_created_and_removed_settings_undone() {
    let etc = Etc::new();
    etc.ok("configure", &[]);
    let j = etc.json();
    assert_eq!(j["default-runtime"], "gpu-share");
    assert_eq!(j["runtimes"]["nvidia"]["path"], RUNTIME);
    etc.ok("unconfigure", &[]);
    assert!(
        !etc.path("daemon.json").exists(),
        "the daemon.json configure made is gone again"
    );
}

#[test]
fn invalid_daemon_json_is_refused_and_nothing_written() {
    let etc = Etc::new();
    etc.write("daemon.json", "{\"log-driver\": ");
    let before = etc.snapshot();
    let out = etc.run("configure", &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("daemon.json is not valid JSON"), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert_eq!(etc.snapshot(), before);
}

#[test]
fn sysconfig_default_runtime_flag_is_changed_there_not_added_to_daemon_json() {
    let etc = Etc::new();
    etc.write(
        "sysconfig-docker",
        "# Docker options\nOPTIONS=\"--default-ulimit nofile=32768:65536 --default-runtime=nvidia --add-runtime nvidia=/usr/bin/nvidia-container-runtime\"\nDAEMON_PIDFILE_TIMEOUT=10\n",
    );
    etc.write("daemon.json", r#"{"debug": true}"#);
    etc.ok("configure", &[]);
    let sys = etc.read("sysconfig-docker");
    assert!(
        sys.contains(&format!("--add-runtime gpu-share={RUNTIME}")),
        "{sys}"
    );
    assert!(
        sys.contains(&format!("--add-runtime nvidia={RUNTIME}")),
        "{sys}"
    );
    assert!(sys.contains("--default-runtime gpu-share"), "{sys}");
    assert!(!sys.contains("nvidia-container-runtime"), "{sys}");
    assert!(sys.starts_with("# Docker options\n") && sys.ends_with("DAEMON_PIDFILE_TIMEOUT=10\n"));
    // Nothing of it in daemon.json: dockerd refuses a setting given both ways.
    assert_eq!(etc.json(), serde_json::json!({"debug": true}));
    etc.ok("unconfigure", &[]);
    let sys = etc.read("sysconfig-docker");
    assert!(sys.contains("--default-runtime nvidia"), "{sys}");
    assert!(
        sys.contains("--add-runtime nvidia=/usr/bin/nvidia-container-runtime"),
        "{sys}"
    );
    assert!(!sys.contains("gpu-share"), "{sys}");
}

#[test]
fn runtimes_dir_gets_links_and_the_nvidia_script_comes_back() {
    let etc = Etc::new();
    let dir = etc.path("docker-runtimes.d");
    std::fs::create_dir(&dir).unwrap();
    let script = "#!/bin/sh\nexec /usr/bin/nvidia-container-runtime \"$@\"\n";
    std::fs::write(dir.join("nvidia"), script).unwrap();
    std::fs::set_permissions(
        dir.join("nvidia"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    etc.write("sysconfig-docker", "OPTIONS=\"--default-runtime nvidia\"\n");
    let before = etc.snapshot();
    etc.ok("configure", &[]);
    for name in ["gpu-share", "nvidia"] {
        assert_eq!(
            std::fs::read_link(dir.join(name)).unwrap(),
            Path::new(RUNTIME),
            "{name}"
        );
    }
    assert!(etc
        .read("sysconfig-docker")
        .contains("--default-runtime gpu-share"));
    assert!(!etc.path("daemon.json").exists());
    etc.ok("unconfigure", &[]);
    assert_eq!(etc.snapshot(), before);
    let mode = std::fs::metadata(dir.join("nvidia")).unwrap();
    assert!(std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o111 != 0);
}

#[test]
fn dry_run_prints_a_diff_and_changes_nothing() {
    let etc = Etc::new();
    etc.write("daemon.json", "{\"debug\": true}\n");
    let before = etc.snapshot();
    let out = etc.ok("configure", &["--dry-run"]);
    assert!(
        out.contains("+  \"default-runtime\": \"gpu-share\""),
        "{out}"
    );
    assert!(out.contains("daemon.json (before)"), "{out}");
    assert_eq!(etc.snapshot(), before);
}

#[test]
fn runtimes_in_flags_and_daemon_json_at_once_is_refused() {
    let etc = Etc::new();
    etc.write("daemon.json", r#"{"runtimes": {"x": {"path": "/x"}}}"#);
    etc.write(
        "sysconfig-docker",
        "OPTIONS=\"--add-runtime nvidia=/usr/bin/nvidia-container-runtime\"\n",
    );
    let before = etc.snapshot();
    let out = etc.run("configure", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("both define runtimes"));
    assert_eq!(etc.snapshot(), before);
}

#[test]
fn unconfigure_without_configure_says_so() {
    let etc = Etc::new();
    let out = etc.run("unconfigure", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to undo"));
}
