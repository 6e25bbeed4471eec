//! `gpu-share configure docker` / `unconfigure docker` on the three ways ECS hosts configure
//! dockerd, round trip, through the real binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::cli_bin;

struct Etc {
    dir: tempfile::TempDir,
    /// The runtime configure is given, outside `dir` so that snapshots do not hold it.
    bin: tempfile::TempDir,
}

impl Etc {
    fn new() -> Etc {
        let bin = tempfile::tempdir().unwrap();
        let runtime = bin.path().join("gpu-share-runtime");
        std::fs::write(&runtime, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            &runtime,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        Etc {
            dir: tempfile::tempdir().unwrap(),
            bin,
        }
    }

    /// The runtime path configure is given.
    fn runtime(&self) -> String {
        self.bin
            .path()
            .join("gpu-share-runtime")
            .display()
            .to_string()
    }

    /// Where configure is told to make the link named `nvidia`.
    fn channel_dir(&self) -> PathBuf {
        self.path("libexec/gpu-share")
    }

    /// `nvidia`'s runtime path is one dockerd execs with argv[0]'s file name `nvidia`, and it
    /// runs the runtime given.
    fn assert_nvidia_channel(&self, nvidia: &Path) {
        assert_eq!(
            nvidia.file_name().and_then(|n| n.to_str()),
            Some("nvidia"),
            "{}",
            nvidia.display()
        );
        assert_eq!(
            nvidia.canonicalize().unwrap(),
            Path::new(&self.runtime()).canonicalize().unwrap(),
            "{}",
            nvidia.display()
        );
    }

    /// After unconfigure: the link and the directories configure made for it are gone.
    fn assert_no_channel(&self) {
        assert!(
            std::fs::symlink_metadata(self.channel_dir().join("nvidia")).is_err(),
            "the nvidia link is still there"
        );
        assert!(
            !self.path("libexec").exists(),
            "the channel dir is still there"
        );
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
        self.run_with_channel_dir(verb, &self.channel_dir(), extra)
    }

    /// `run`, with the link named `nvidia` made in `channel_dir`.
    fn run_with_channel_dir(&self, verb: &str, channel_dir: &Path, extra: &[&str]) -> Output {
        Command::new(cli_bin())
            .args([verb, "docker", "--config"])
            .arg(self.path("daemon.json"))
            .arg("--sysconfig")
            .arg(self.path("sysconfig-docker"))
            .arg("--runtimes-dir")
            .arg(self.path("docker-runtimes.d"))
            .arg("--record")
            .arg(self.path("gpu-share/docker-configure.json"))
            .arg("--channel-dir")
            .arg(channel_dir)
            .arg("--runtime-path")
            .arg(self.runtime())
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
        snapshot_with_modes(self)
            .into_iter()
            .filter(|(_, content, _)| content != DIR)
            .map(|(name, content, _)| (name, content))
            .collect()
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
    assert_eq!(j["runtimes"]["gpu-share"]["path"], etc.runtime().as_str());
    // nvidia's path is the link named nvidia, so the runtime is run with that argv[0].
    etc.assert_nvidia_channel(Path::new(j["runtimes"]["nvidia"]["path"].as_str().unwrap()));
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
    etc.assert_no_channel();
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
    etc.assert_nvidia_channel(Path::new(j["runtimes"]["nvidia"]["path"].as_str().unwrap()));
    etc.ok("unconfigure", &[]);
    assert!(
        !etc.path("daemon.json").exists(),
        "the daemon.json configure made is gone again"
    );
    etc.assert_no_channel();
    assert_eq!(etc.snapshot(), []);
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
    let before = etc.snapshot();
    etc.ok("configure", &[]);
    let sys = etc.read("sysconfig-docker");
    assert!(
        sys.contains(&format!("--add-runtime gpu-share={}", etc.runtime())),
        "{sys}"
    );
    let nvidia = sys
        .split(['"', ' '])
        .find_map(|w| w.strip_prefix("nvidia="))
        .unwrap_or_else(|| panic!("no --add-runtime nvidia=: {sys}"));
    etc.assert_nvidia_channel(Path::new(nvidia));
    assert!(sys.contains("--default-runtime gpu-share"), "{sys}");
    assert!(!sys.contains("nvidia-container-runtime"), "{sys}");
    assert!(sys.starts_with("# Docker options\n") && sys.ends_with("DAEMON_PIDFILE_TIMEOUT=10\n"));
    // Nothing of it in daemon.json: dockerd refuses a setting given both ways.
    assert_eq!(etc.json(), serde_json::json!({"debug": true}));
    etc.ok("unconfigure", &[]);
    etc.assert_no_channel();
    // Every file is there again byte for byte, and none more.
    assert_eq!(etc.snapshot(), before);
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
            Path::new(&etc.runtime()),
            "{name}"
        );
    }
    // The entry is itself the link named nvidia: dockerd runs it with argv[0]
    // `<runtimes dir>/nvidia`, and no other link is made.
    etc.assert_nvidia_channel(&dir.join("nvidia"));
    assert!(!etc.path("libexec").exists());
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
    let link = format!(
        "link {} -> {}",
        etc.channel_dir().join("nvidia").display(),
        etc.runtime()
    );
    assert!(out.contains(&link), "{out}");
    assert_eq!(etc.snapshot(), before);
    assert!(!etc.path("libexec").exists());
}

#[test]
fn a_file_where_the_nvidia_link_goes_is_refused_and_nothing_written() {
    let etc = Etc::new();
    etc.write("daemon.json", "{\"debug\": true}\n");
    std::fs::create_dir_all(etc.channel_dir()).unwrap();
    std::fs::write(etc.channel_dir().join("nvidia"), "someone else's\n").unwrap();
    let before = etc.snapshot();
    let out = etc.run("configure", &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--channel-dir"), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert_eq!(etc.snapshot(), before);
}

#[test]
fn channel_dir_that_was_there_is_kept_by_unconfigure() {
    let etc = Etc::new();
    std::fs::create_dir_all(etc.channel_dir()).unwrap();
    etc.ok("configure", &[]);
    etc.assert_nvidia_channel(&etc.channel_dir().join("nvidia"));
    etc.ok("unconfigure", &[]);
    assert!(std::fs::symlink_metadata(etc.channel_dir().join("nvidia")).is_err());
    assert!(
        etc.channel_dir().is_dir(),
        "a directory configure did not make"
    );
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

#[test]
fn a_record_from_before_the_nvidia_link_loads_and_the_link_is_added_and_undone() {
    let etc = Etc::new();
    // What configure left before nvidia became a link: nvidia's path was the runtime itself,
    // and the record had no link fields.
    let runtime = etc.runtime();
    etc.write(
        "daemon.json",
        &serde_json::json!({
            "runtimes": {"gpu-share": {"path": runtime}, "nvidia": {"path": runtime}},
            "default-runtime": "gpu-share",
        })
        .to_string(),
    );
    std::fs::create_dir_all(etc.path("gpu-share")).unwrap();
    etc.write(
        "gpu-share/docker-configure.json",
        r#"{"runtimes_in": "daemon-json", "default_in": "daemon-json", "previous_default": null, "previous_nvidia": {"kind": "absent"}, "created_daemon_json": true}"#,
    );
    etc.ok("configure", &[]);
    let j = etc.json();
    etc.assert_nvidia_channel(Path::new(j["runtimes"]["nvidia"]["path"].as_str().unwrap()));
    let record = etc.read("gpu-share/docker-configure.json");
    assert!(record.contains("\"created_daemon_json\": true"), "{record}");
    etc.ok("unconfigure", &[]);
    assert!(!etc.path("daemon.json").exists());
    etc.assert_no_channel();
}

/// dockerd's flags from the files as the ECS AMIs' docker unit passes them: `$OPTIONS` split the
/// way systemd splits it, `--add-runtime` per runtimes.d entry, and daemon.json if it is there.
fn unit_flags(etc: &Etc) -> Vec<String> {
    let sys = etc.read("sysconfig-docker");
    let mut flags = gpu_share::docker::sysconfig::Options::parse(&sys).words;
    let dir = etc.path("docker-runtimes.d");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        flags.push("--add-runtime".into());
        flags.push(format!(
            "{}={}",
            e.file_name().to_string_lossy(),
            e.path().display()
        ));
    }
    if etc.path("daemon.json").exists() {
        flags.push("--config-file".into());
        flags.push(etc.path("daemon.json").display().to_string());
    }
    flags
}

/// Starts a real dockerd from the files and asks it for its default runtime.
fn dockerd_default_runtime(etc: &Etc) -> String {
    // One at a time: two dockerds on one host fight over the bridge and iptables.
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let d = common::dockerd::Dockerd::start_configured(
        &unit_flags(etc),
        etc.bin.path().join("config.toml"),
        etc.bin.path().join("shim.log"),
    );
    let out = d.docker_ok(&["info", "--format", "{{.DefaultRuntime}}"]);
    d.stop();
    out.trim().to_owned()
}

/// Configure, check that dockerd starts with gpu-share as its default, unconfigure, and check
/// that every file is as it was, byte for byte.
fn round_trip_with_dockerd(sysconfig: &str, daemon_json: Option<&str>) -> Etc {
    let etc = Etc::new();
    etc.write("sysconfig-docker", sysconfig);
    if let Some(j) = daemon_json {
        etc.write("daemon.json", j);
    }
    let before = etc.snapshot();
    etc.ok("configure", &[]);
    let j: serde_json::Value =
        serde_json::from_str(&etc.read("daemon.json")).unwrap_or(serde_json::Value::Null);
    assert!(
        j.get("default-runtime").is_none(),
        "default-runtime also in daemon.json: dockerd refuses to start\n{}\n{}",
        etc.read("sysconfig-docker"),
        etc.read("daemon.json")
    );
    assert_eq!(dockerd_default_runtime(&etc), "gpu-share");
    etc.ok("unconfigure", &[]);
    let default =
        |s: &str| gpu_share::docker::sysconfig::Options::parse(s).values("default-runtime");
    assert_eq!(default(&etc.read("sysconfig-docker")), default(sysconfig));
    assert_eq!(etc.snapshot().len(), before.len());
    etc
}

#[test]
fn a_continued_options_line_keeps_its_default_runtime_flag_there() {
    round_trip_with_dockerd(
        "OPTIONS=\"--default-ulimit nofile=32768:65536 \\\n  --default-runtime nvidia\"\n",
        Some("{\"debug\": true}\n"),
    );
}

#[test]
fn the_last_options_assignment_is_the_one_changed() {
    round_trip_with_dockerd(
        "OPTIONS=\"--debug\"\n# the one systemd uses\nOPTIONS=\"--default-runtime=nvidia\"\n",
        Some("{\"debug\": true}\n"),
    );
}

#[test]
fn a_quoted_label_with_spaces_stays_one_word() {
    let etc = round_trip_with_dockerd(
        "; ops\nOPTIONS='--label \"team=a b\" --default-runtime nvidia'\n",
        None,
    );
    // And the words configure wrote are the ones systemd passes.
    etc.ok("configure", &[]);
    let words = gpu_share::docker::sysconfig::Options::parse(&etc.read("sysconfig-docker")).words;
    assert_eq!(
        words[..4],
        ["--label", "team=a b", "--default-runtime", "gpu-share"]
    );
}

#[test]
fn a_comment_after_options_is_refused_and_nothing_written() {
    let etc = Etc::new();
    etc.write(
        "sysconfig-docker",
        "OPTIONS=\"--default-runtime nvidia\" # set by ops\n",
    );
    etc.write("daemon.json", "{\"debug\": true}\n");
    let before = etc.snapshot();
    let out = etc.run("configure", &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("# set by ops") || err.contains("#"), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert_eq!(etc.snapshot(), before);
}

#[test]
fn a_relative_record_path_is_taken_from_the_working_directory() {
    let etc = Etc::new();
    etc.write("daemon.json", "{\"debug\": true}\n");
    let before = etc.snapshot();
    let rel = |verb: &str| {
        let out = Command::new(cli_bin())
            .current_dir(etc.dir.path())
            .args([verb, "docker", "--config", "daemon.json"])
            .args(["--sysconfig", "sysconfig-docker"])
            .args([
                "--runtimes-dir",
                "docker-runtimes.d",
                "--record",
                "rec.json",
            ])
            .args(["--channel-dir", "libexec/gpu-share", "--runtime-path"])
            .arg(etc.runtime())
            .output()
            .unwrap();
        assert!(out.status.success(), "{verb}: {out:?}");
    };
    rel("configure");
    assert!(etc.path("rec.json").is_file());
    // dockerd runs from / : the paths it is given must not depend on where configure ran.
    let nvidia = etc.json()["runtimes"]["nvidia"]["path"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(Path::new(&nvidia).is_absolute(), "{nvidia}");
    rel("unconfigure");
    etc.assert_no_channel();
    assert_eq!(etc.snapshot(), before);
}

#[test]
fn a_record_that_cannot_be_written_leaves_every_file_as_it_was() {
    let etc = Etc::new();
    etc.write("daemon.json", "{\"debug\": true}\n");
    etc.write("sysconfig-docker", "OPTIONS=\"--default-runtime nvidia\"\n");
    // The record's directory is a file: the record cannot be written.
    etc.write("gpu-share", "not a directory\n");
    let before = etc.snapshot();
    let out = etc.run("configure", &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(etc.snapshot(), before);
    assert!(!etc.path("libexec").exists());
    // Once it can be, a retry records the originals, and unconfigure puts them back.
    std::fs::remove_file(etc.path("gpu-share")).unwrap();
    let before = etc.snapshot();
    etc.ok("configure", &[]);
    etc.ok("unconfigure", &[]);
    assert_eq!(etc.snapshot(), before);
}

fn mode(p: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions()) & 0o7777
}

#[test]
fn a_symlinked_daemon_json_is_written_through_and_keeps_its_mode() {
    let etc = Etc::new();
    std::fs::create_dir(etc.path("real")).unwrap();
    etc.write(
        "real/daemon.json",
        "{\n    \"runtimes\": {},\n    \"debug\": true\n}\n",
    );
    std::fs::set_permissions(
        etc.path("real/daemon.json"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::symlink("real/daemon.json", etc.path("daemon.json")).unwrap();
    // Another owner, where the tests may give one (they run as root here).
    let _ = std::os::unix::fs::chown(etc.path("real/daemon.json"), Some(1234), Some(1234));
    let owner = |p: &Path| std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(p).unwrap());
    let uid = owner(&etc.path("real/daemon.json"));
    let before = etc.snapshot();
    etc.ok("configure", &[]);
    assert_eq!(owner(&etc.path("real/daemon.json")), uid);
    let link = std::fs::symlink_metadata(etc.path("daemon.json")).unwrap();
    assert!(
        link.file_type().is_symlink(),
        "daemon.json is no longer a link"
    );
    assert_eq!(etc.json()["default-runtime"], "gpu-share");
    assert_eq!(mode(&etc.path("real/daemon.json")), 0o600);
    etc.ok("unconfigure", &[]);
    // `"runtimes": {}` and the four-space indent come back too.
    assert_eq!(etc.snapshot(), before);
    assert_eq!(mode(&etc.path("real/daemon.json")), 0o600);
    assert_eq!(owner(&etc.path("real/daemon.json")), uid);
}

#[test]
fn runs_again_and_again_keep_one_backup() {
    let etc = Etc::new();
    etc.write("daemon.json", "{\"debug\": true}\n");
    for _ in 0..3 {
        etc.ok("configure", &[]);
        etc.ok("unconfigure", &[]);
    }
    etc.ok("configure", &[]);
    let backups: Vec<_> = std::fs::read_dir(etc.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".bak"))
        .collect();
    assert_eq!(backups, ["daemon.json.gpu-share.bak"]);
    assert_eq!(etc.read("daemon.json.gpu-share.bak"), "{\"debug\": true}\n");
}

/// What `snapshot_with_modes` shows for a directory's content.
const DIR: &str = "<directory>";

/// Every entry under the dir with its mode and kind (links as their targets, backups left out).
fn snapshot_with_modes(etc: &Etc) -> Vec<(String, String, u32)> {
    let mut out = Vec::new();
    let mut stack = vec![etc.dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let name = p
                .strip_prefix(etc.dir.path())
                .unwrap()
                .display()
                .to_string();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let m = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777;
            if meta.is_dir() {
                stack.push(p);
                out.push((name, DIR.into(), m));
            } else if meta.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap().display().to_string();
                out.push((name, format!("-> {t}"), 0));
            } else if !name.ends_with(".bak") {
                out.push((name, std::fs::read_to_string(&p).unwrap(), m));
            }
        }
    }
    out.sort();
    out
}

mod round_trip {
    use super::*;
    use proptest::prelude::*;

    fn daemon_json() -> impl Strategy<Value = Option<String>> {
        let entry = prop_oneof![
            Just(r#""debug": true"#),
            Just(r#""runtimes": {}"#),
            Just(
                r#""runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": []}}"#
            ),
            Just(r#""default-runtime": "nvidia""#),
            Just(r#""default-runtime": "runc""#),
            Just(r#""log-opts": {"max-size": "10m"}"#),
        ];
        let sep = prop_oneof![Just(", "), Just(",\n    "), Just(",\n\t")];
        proptest::option::of(
            (proptest::sample::subsequence(vec![0usize, 1, 2, 3, 4, 5], 0..=4), sep, any::<bool>())
                .prop_map(move |(keys, sep, nl)| (keys, sep, nl))
                .prop_flat_map(move |(keys, sep, nl)| {
                    entry.clone().prop_map(move |_| {
                        let all = [
                            r#""debug": true"#,
                            r#""runtimes": {}"#,
                            r#""runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": []}}"#,
                            r#""default-runtime": "nvidia""#,
                            r#""default-runtime": "runc""#,
                            r#""log-opts": {"max-size": "10m"}"#,
                        ];
                        // One runtimes and one default-runtime at most: JSON keys are unique.
                        let mut seen = std::collections::HashSet::new();
                        let picked: Vec<&str> = keys
                            .iter()
                            .map(|&k| all[k])
                            .filter(|e| seen.insert(e.split(':').next().unwrap_or("")))
                            .collect();
                        format!("{{{}}}{}", picked.join(sep), if nl { "\n" } else { "" })
                    })
                }),
        )
    }

    fn sysconfig() -> impl Strategy<Value = Option<String>> {
        let words = proptest::sample::subsequence(
            vec![
                "--debug",
                "--default-runtime nvidia",
                "--default-runtime=runc",
                "--label \"team=a b\"",
                "--default-ulimit nofile=1024:4096",
            ],
            0..=4,
        );
        let line = (words, 0..4usize).prop_map(|(w, style)| match style {
            0 => format!("OPTIONS=\"{}\"", w.join(" ").replace('"', "'")),
            1 => format!("OPTIONS='{}'", w.join(" ")),
            2 => format!("OPTIONS=\"{}\"", w.join(" \\\n  ").replace('"', "'")),
            _ => format!(
                "OPTIONS={}",
                w.join(" ").replace(['"', ' '], "").replace("--", " --")
            ),
        });
        proptest::option::of(
            (
                proptest::collection::vec(line, 0..=2),
                any::<bool>(),
                any::<bool>(),
            )
                .prop_map(|(lines, comment, tail)| {
                    let mut t = String::new();
                    if comment {
                        t.push_str("# Docker options\n; more\n");
                    }
                    for l in lines {
                        t.push_str(&l);
                        t.push('\n');
                    }
                    if tail {
                        t.push_str("DAEMON_PIDFILE_TIMEOUT=10");
                    }
                    t
                }),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn configure_then_unconfigure_is_the_identity(
            json in daemon_json(),
            sys in sysconfig(),
            json_mode in prop_oneof![Just(0o600u32), Just(0o644), Just(0o640)],
            json_link in any::<bool>(),
            runtimes_dir in 0..4usize,
            script_mode in prop_oneof![Just(0o755u32), Just(0o700), Just(0o750)],
        ) {
            let etc = Etc::new();
            if let Some(j) = &json {
                let at = if json_link {
                    std::fs::create_dir(etc.path("real")).unwrap();
                    std::os::unix::fs::symlink("real/daemon.json", etc.path("daemon.json")).unwrap();
                    "real/daemon.json"
                } else {
                    "daemon.json"
                };
                etc.write(at, j);
                std::fs::set_permissions(
                    etc.path(at),
                    std::os::unix::fs::PermissionsExt::from_mode(json_mode),
                )
                .unwrap();
            }
            if let Some(s) = &sys {
                etc.write("sysconfig-docker", s);
            }
            if runtimes_dir > 0 {
                let dir = etc.path("docker-runtimes.d");
                std::fs::create_dir(&dir).unwrap();
                match runtimes_dir {
                    1 => {}
                    2 => std::os::unix::fs::symlink("/usr/bin/nvidia-container-runtime", dir.join("nvidia")).unwrap(),
                    _ => {
                        std::fs::write(dir.join("nvidia"), "#!/bin/sh\nexec true\n").unwrap();
                        std::fs::set_permissions(
                            dir.join("nvidia"),
                            std::os::unix::fs::PermissionsExt::from_mode(script_mode),
                        )
                        .unwrap();
                    }
                }
            }
            let before = snapshot_with_modes(&etc);
            let out = etc.run("configure", &[]);
            if out.status.success() {
                etc.ok("unconfigure", &[]);
            }
            prop_assert_eq!(snapshot_with_modes(&etc), before, "{:?}", out);
        }
    }
}

#[test]
fn dry_run_prints_the_diff_the_real_run_applies() {
    let etc = Etc::new();
    etc.write("daemon.json", "{\n    \"debug\": true\n}\n");
    etc.write("sysconfig-docker", "OPTIONS=\"--default-runtime nvidia\"\n");
    let dry = etc.ok("configure", &["--dry-run"]);
    let real = etc.ok("configure", &[]);
    assert_eq!(
        real.strip_suffix("restart docker to apply the change (or pass --restart)\n"),
        Some(dry.as_str())
    );
}

#[test]
fn daemon_json_keeps_its_indent() {
    let etc = Etc::new();
    etc.write("daemon.json", "{\n    \"debug\": true\n}\n");
    etc.ok("configure", &[]);
    let text = etc.read("daemon.json");
    assert!(text.contains("\n    \"debug\": true"), "{text}");
    assert!(text.contains("\n        \"gpu-share\": {"), "{text}");
}

#[test]
fn a_failure_after_the_record_is_written_takes_everything_back() {
    let etc = Etc::new();
    etc.write("daemon.json", "{\"debug\": true}\n");
    // The link named nvidia cannot be made: its directory's parent is a file.
    etc.write("blocker", "a file\n");
    let before = snapshot_with_modes(&etc);
    let out = etc.run_with_channel_dir("configure", &etc.path("blocker/gpu-share"), &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("blocker"),
        "{out:?}"
    );
    // The record and its directory are gone again, and daemon.json was never changed.
    assert_eq!(snapshot_with_modes(&etc), before);
}

#[test]
fn the_runtimes_dir_with_a_continued_options_line_starts_dockerd() {
    let etc = Etc::new();
    let dir = etc.path("docker-runtimes.d");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::symlink(etc.runtime(), dir.join("nvidia")).unwrap();
    let sys = "# Docker options\nOPTIONS=\"--default-ulimit nofile=32768:65536 \\\n --default-runtime=nvidia\"\n";
    etc.write("sysconfig-docker", sys);
    let before = etc.snapshot();
    etc.ok("configure", &[]);
    assert!(!etc.path("daemon.json").exists());
    assert_eq!(dockerd_default_runtime(&etc), "gpu-share");
    etc.ok("unconfigure", &[]);
    assert_eq!(etc.snapshot(), before);
}

#[test]
fn a_daemon_json_edited_since_configure_is_undone_setting_by_setting() {
    let etc = Etc::new();
    etc.write("daemon.json", "{\"debug\": true}\n");
    etc.ok("configure", &[]);
    let mut j = etc.json();
    j["log-level"] = "warn".into();
    etc.write("daemon.json", &j.to_string());
    etc.ok("unconfigure", &[]);
    // The edit made since stays; what configure added goes.
    assert_eq!(
        etc.json(),
        serde_json::json!({"debug": true, "log-level": "warn"})
    );
    etc.assert_no_channel();
}
